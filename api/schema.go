package api

// Wire types of fleet's v1 API. Field names and JSON keys follow CoreOS
// fleet's schema/v1 so existing API clients keep working.

import "github.com/seed-a1ce88ea/fleet/machine"

// Unit is a submitted unit: its file as options, its desired (target) state
// and, when scheduled, the state and machine the schedule gives it.
type Unit struct {
	Name    string        `json:"name"`
	Options []*UnitOption `json:"options"`
	// DesiredState is the target state: inactive, loaded or launched.
	DesiredState string `json:"desiredState,omitempty"`
	// CurrentState is the state the unit is scheduled in once the agent of
	// its machine has reported it (GET /state/{name} then answers), and
	// "inactive" before that or when it is in no machine's schedule, as in
	// fleet. Empty for global units, which are scheduled on many machines.
	CurrentState string `json:"currentState,omitempty"`
	// MachineID is the machine the unit is scheduled to, if any.
	MachineID string `json:"machineID,omitempty"`
	// UnplacedReason (an extension of fleet's schema) says why the engine
	// could place the unit on no machine, for instance "no machine has
	// metadata disk=ssd". Empty when the unit is placed or not to be placed.
	UnplacedReason string `json:"unplacedReason,omitempty"`
}

// UnitOption is one Name=Value line of a unit file and its section.
type UnitOption struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// UnitState is what a machine's agent last saw of a unit in its systemd.
type UnitState struct {
	Name               string `json:"name"`
	Hash               string `json:"hash"`
	MachineID          string `json:"machineID"`
	SystemdLoadState   string `json:"systemdLoadState"`
	SystemdActiveState string `json:"systemdActiveState"`
	SystemdSubState    string `json:"systemdSubState"`
	// Reason is fleet's extension of the v1 schema: why the machine's
	// agent does not run the unit although it is scheduled there (a unit
	// of the host's own has its name; the states then read
	// error/failed/refused). Omitted when empty.
	Reason string `json:"reason,omitempty"`
}

// Machine is a present member of the cluster.
type Machine struct {
	ID        string            `json:"id"`
	PrimaryIP string            `json:"primaryIP"`
	Metadata  map[string]string `json:"metadata"`
	// State (an extension of fleet's schema) is active, draining, drained
	// or rebooting (registry.StateOf).
	State string `json:"state,omitempty"`
	// Capacity, an extension, is what units may use of the machine (its
	// cores and memory less reserved_cpu and reserved_memory); absent when
	// its fleetd does not report it.
	Capacity *machine.Capacity `json:"capacity,omitempty"`
}

// UnitPage is one page of GET /fleet/v1/units. NextPageToken is absent on
// the last page, as in fleet: "no token" means "no more pages".
type UnitPage struct {
	Units         []*Unit `json:"units"`
	NextPageToken string  `json:"nextPageToken,omitempty"`
}

// UnitStatePage is one page of GET /fleet/v1/state.
type UnitStatePage struct {
	States        []*UnitState `json:"states"`
	NextPageToken string       `json:"nextPageToken,omitempty"`
}

// MachinePage is one page of GET /fleet/v1/machines.
type MachinePage struct {
	Machines      []Machine `json:"machines"`
	NextPageToken string    `json:"nextPageToken,omitempty"`
}

// StateFilter narrows UnitStates to the given machines and units (either
// empty: all). GET /fleet/v1/state takes them as ?machineID= and ?unitName=.
type StateFilter struct {
	MachineIDs []string
	UnitNames  []string
}

// JournalOptions select what UnitJournal returns.
type JournalOptions struct {
	// Lines is how many recent entries to print first (0: none, which makes
	// sense with Follow).
	Lines int
	// Follow keeps the stream open, sending entries as they are appended.
	Follow bool
	// Output is journalctl's output mode (short, json, cat, ...; default
	// short).
	Output string
}

// errorBody is the JSON of every error answer:
// {"error":{"code":404,"message":"unit x.service not found"}}.
type errorBody struct {
	Error errorEntity `json:"error"`
}

type errorEntity struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}
