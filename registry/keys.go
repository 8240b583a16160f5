package registry

import "strings"

// DefaultPrefix is fleet's historical key prefix.
const DefaultPrefix = "/_coreos.com/fleet/"

// keys builds every etcd key the registry uses; nothing else in the package
// concatenates key strings.
type keys struct{ prefix string }

func newKeys(prefix string) keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return keys{prefix: prefix}
}

func (k keys) units() string                  { return k.prefix + "units/" }
func (k keys) unit(name string) string        { return k.units() + name }
func (k keys) bodies() string                 { return k.prefix + "bodies/" }
func (k keys) body(hash string) string        { return k.bodies() + hash }
func (k keys) machines() string               { return k.prefix + "machines/" }
func (k keys) machine(id string) string       { return k.machines() + id }
func (k keys) schedules() string              { return k.prefix + "schedule/" }
func (k keys) schedule(machine string) string { return k.schedules() + machine + "/" }
func (k keys) placement(machine, name string) string {
	return k.schedule(machine) + name
}

// The unit->placement index: the schedule's entries again, keyed unit
// first, so one unit's placements are one short prefix read. Written in the
// same transactions as the schedule; trusted by readers only while the
// version marker says it is complete (see EnsurePlacementIndex).
func (k keys) placedAll() string                  { return k.prefix + "placed/" }
func (k keys) placedOf(name string) string        { return k.placedAll() + name + "/" }
func (k keys) placed(name, machine string) string { return k.placedOf(name) + machine }
func (k keys) placedVersion() string              { return k.prefix + "placed-version" }

func (k keys) states() string                      { return k.prefix + "states/" }
func (k keys) machineStates(machine string) string { return k.states() + machine + "/" }
func (k keys) state(machine, name string) string {
	return k.machineStates(machine) + name
}
func (k keys) unplaced() string                { return k.prefix + "unplaced/" }
func (k keys) unplacedUnit(name string) string { return k.unplaced() + name }

// Machines the engine leader saw absent while the schedule still held
// placements for them (see Registry.AbsentMachines).
func (k keys) absent() string                 { return k.prefix + "absent/" }
func (k keys) absentMachine(id string) string { return k.absent() + id }

// Audit records live under a lease (AuditTTL); their IDs sort by time.
func (k keys) audit() string                { return k.prefix + "audit/" }
func (k keys) auditRecord(id string) string { return k.audit() + id }

func (k keys) election() string      { return k.prefix + "engine/leader" }
func (k keys) engineVersion() string { return k.prefix + "engine/version" }

// Dynamic machine metadata (fleet's PATCH /machines) lives apart from the
// lease-bound machine record, so it survives a machine leaving and rejoining.
func (k keys) metadata() string { return k.prefix + "metadata/" }
func (k keys) machineMetadata(machine string) string {
	return k.metadata() + machine
}

// splitMachineKey splits "<machine>/<name>" (what is left of a schedule or
// state key after its collection prefix).
func splitMachineKey(rest string) (machine, name string, ok bool) {
	return strings.Cut(rest, "/")
}
