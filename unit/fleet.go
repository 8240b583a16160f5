package unit

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// maxValues bounds MachineOf, Conflicts and Replaces, which Validate pairs
// with each other: real units list a handful, and a unit file padded with
// thousands must not cost the API seconds to check.
const maxValues = 1000

// fleetSection is the unit file section fleet reads its options from;
// systemd ignores sections starting with "X-".
const fleetSection = "X-Fleet"

// Fleet holds a unit's [X-Fleet] options, specifiers expanded.
type Fleet struct {
	// MachineID pins the unit to one machine.
	MachineID string
	// MachineOf names units the unit must share a machine with.
	MachineOf []string
	// MachineMetadata maps each metadata key to the values accepted for it:
	// a machine must match one value of every key.
	MachineMetadata map[string][]string
	// Conflicts holds glob patterns of units the unit must not share a
	// machine with.
	Conflicts []string
	// Replaces names units the unit displaces from their machine.
	Replaces []string
	// Global runs the unit on every machine that satisfies its other options.
	Global bool
	// AtMostOnce, when set, says whether the unit must never run on two
	// machines at once, even while a machine is cut off from etcd (nil:
	// the cluster's default, agent_at_most_once_default).
	AtMostOnce *bool
	// Constraints are the MachineMetadata= terms other than key=value
	// (k!=v, k in (a,b), k exists, k>=n, k~=re, ...), ANDed with each other
	// and with MachineMetadata.
	Constraints []Constraint
	// CPU is the unit's CPU demand in millicores (1000 = one core): its own
	// CPUQuota=, else [X-Fleet] CPU=. 0: none.
	CPU int64
	// Memory is the unit's memory demand in bytes: its own MemoryMax= (or
	// MemoryLimit=), else MemoryLow=, else [X-Fleet] Memory=. 0: none.
	Memory int64
	// Group names the set of units SpreadBy and MaxPerMachine apply to:
	// [X-Fleet] Group=, else, for an instance of a template, the template.
	Group string
	// SpreadBy is a metadata key whose values the group's units are spread
	// evenly across; machines without the key take none of them.
	SpreadBy string
	// MaxPerMachine bounds how many units of the group run on one machine
	// (0: no bound).
	MaxPerMachine int
}

// RunsAtMostOnce reports whether the unit must never run on two machines at
// once, given the cluster's default for units that do not say. A global
// unit runs on every machine by design, so it never is.
func (x Fleet) RunsAtMostOnce(clusterDefault bool) bool {
	if x.Global {
		return false
	}
	if x.AtMostOnce != nil {
		return *x.AtMostOnce
	}
	return clusterDefault
}

// shortIDLen is the length of the short machine IDs fleetctl prints.
const shortIDLen = 8

// MatchMachineID is fleet's MachineID= rule: want is machineID in full, or
// its 8-character short form as fleetctl prints it. Other prefixes do not
// match.
func MatchMachineID(machineID, want string) bool {
	return machineID == want || (len(machineID) > shortIDLen && len(want) == shortIDLen && machineID[:shortIDLen] == want)
}

// PinnedTo reports whether the unit's MachineID= names machine id.
func (x Fleet) PinnedTo(id string) bool {
	return x.MachineID != "" && MatchMachineID(id, x.MachineID)
}

// FleetOptions extracts the [X-Fleet] options of f for the unit called name
// (which must be a valid unit name), expanding the specifiers %n (full name),
// %N (name without type suffix), %p (prefix) and %i (instance) in every value.
//
// A line may hold several whitespace-separated values; double quotes keep
// whitespace inside one value (MachineMetadata="region=us east" role=web).
// Repeated lines add up (repeated values are dropped), except that, as in
// fleet, MachineID keeps only its first value and the last Global value wins.
// fleet's legacy names (X-ConditionMachineID, X-ConditionMachineOf,
// X-ConditionMachineMetadata, X-Conflicts) are accepted.
//
// Unknown options, legacy names, the retired X-ConditionMachineBootID and
// ignored values come back as warnings. A malformed MachineMetadata value or
// an unclosed quote is an error.
func (f *File) FleetOptions(name string) (Fleet, []string, error) {
	n, err := ParseName(name)
	if err != nil {
		return Fleet{}, nil, fmt.Errorf("[%s] options: %w", fleetSection, err)
	}
	// A template has no instance yet: its %i stays as written, so that
	// MachineMetadata=hostname=%i validates as key=value at submit and is
	// expanded for each instance made from it.
	instance := n.Instance
	if n.Template {
		instance = "%i"
	}
	// A Replacer substitutes in one left-to-right pass, as systemd does.
	expand := strings.NewReplacer(
		"%n", name,
		"%N", strings.TrimSuffix(name, "."+n.Type),
		"%p", n.Prefix,
		"%i", instance,
	)

	var (
		x                            Fleet
		warnings                     []string
		warned                       = map[string]bool{}
		machineIDs, legacyMachineIDs []string
		globalValue, atMostOnceValue string
		haveGlobal, haveAtMostOnce   bool
		cpuValue, memValue, maxValue string
	)
	warnOnce := func(option, format string, args ...any) {
		if !warned[option] {
			warned[option] = true
			warnings = append(warnings, fmt.Sprintf(format, args...))
		}
	}

	for _, o := range f.Options {
		if o.Section != fleetSection {
			continue
		}
		key, known := fleetKey(o.Name)
		switch {
		case !known:
			warnOnce(o.Name, "unknown [%s] option %q ignored", fleetSection, o.Name)
			continue
		case key == "":
			warnOnce(o.Name, "[%s] option %q is no longer supported and is ignored; use MachineID", fleetSection, o.Name)
			continue
		case key != o.Name:
			warnOnce(o.Name, "[%s] option %q is deprecated; use %q", fleetSection, o.Name, key)
		case isUpdateKey(key):
			continue // the update policy (UpdatePolicy), not placement
		}

		if key == "MachineMetadata" {
			// Parsed from the line as written, so that an error can say
			// at which column it is.
			eq, cons, err := parseMetadataLine(o.Value, expand.Replace)
			if err != nil {
				return Fleet{}, nil, fmt.Errorf("[%s] %s=%s: %w", fleetSection, o.Name, clip(o.Value), err)
			}
			for _, kv := range eq {
				if x.MachineMetadata == nil {
					x.MachineMetadata = map[string][]string{}
				}
				x.MachineMetadata[kv[0]] = append(x.MachineMetadata[kv[0]], kv[1])
			}
			x.Constraints = append(x.Constraints, cons...)
			continue
		}
		values, err := splitValues(o.Value)
		if err != nil {
			return Fleet{}, nil, fmt.Errorf("[%s] %s: %w", fleetSection, o.Name, err)
		}
		for i, v := range values {
			values[i] = expand.Replace(v)
		}

		switch key {
		case "MachineID":
			if o.Name == key {
				machineIDs = append(machineIDs, values...)
			} else {
				legacyMachineIDs = append(legacyMachineIDs, values...)
			}
		case "MachineOf":
			x.MachineOf = append(x.MachineOf, values...)
		case "Conflicts":
			x.Conflicts = append(x.Conflicts, values...)
		case "Replaces":
			x.Replaces = append(x.Replaces, values...)
		case "Global":
			if len(values) > 0 {
				globalValue, haveGlobal = values[len(values)-1], true
			}
		case "AtMostOnce":
			if len(values) > 0 {
				atMostOnceValue, haveAtMostOnce = values[len(values)-1], true
			}
		// The last value wins for the single-valued options, as in systemd.
		case "CPU":
			cpuValue = last(values)
		case "Memory":
			memValue = last(values)
		case "Group":
			x.Group = last(values)
		case "SpreadBy":
			x.SpreadBy = last(values)
		case "MaxPerMachine":
			maxValue = last(values)
		}
	}
	if err := x.resources(f, n, cpuValue, memValue, &warnings); err != nil {
		return Fleet{}, nil, err
	}
	if maxValue != "" {
		v, err := strconv.Atoi(maxValue)
		if err != nil || v < 1 {
			return Fleet{}, nil, fmt.Errorf("[%s] MaxPerMachine=%s: want a whole number of units, at least 1", fleetSection, clip(maxValue))
		}
		x.MaxPerMachine = v
	}
	if x.Group == "" && (n.Instance != "" || n.Template) && (x.SpreadBy != "" || x.MaxPerMachine > 0) {
		x.Group = n.Prefix + "@." + n.Type
	}

	// Repeats mean nothing, and dropping them keeps Validate, which pairs
	// MachineOf with patterns, from growing with a padded file.
	x.MachineOf, x.Conflicts, x.Replaces = uniq(x.MachineOf), uniq(x.Conflicts), uniq(x.Replaces)
	for k, v := range x.MachineMetadata {
		x.MachineMetadata[k] = uniq(v)
	}

	// fleet prefers the current name over the legacy one, whatever their order.
	ids := append(machineIDs, legacyMachineIDs...)
	if len(ids) > 0 {
		x.MachineID = ids[0]
		if len(ids) > 1 {
			warnings = append(warnings, fmt.Sprintf("[%s] MachineID has %d values; only the first, %q, is used",
				fleetSection, len(ids), ids[0]))
		}
	}
	if haveGlobal {
		var ok bool
		x.Global, ok = parseBool(globalValue)
		if !ok {
			warnings = append(warnings, fmt.Sprintf("[%s] Global=%q is not a boolean; the unit is not global",
				fleetSection, globalValue))
		}
	}
	if haveAtMostOnce {
		if b, ok := parseBool(atMostOnceValue); ok {
			x.AtMostOnce = &b
		} else {
			warnings = append(warnings, fmt.Sprintf("[%s] AtMostOnce=%q is not a boolean; the cluster's default applies",
				fleetSection, atMostOnceValue))
		}
	}
	return x, warnings, nil
}

// fleetKey maps an [X-Fleet] option name, current or legacy, to its current
// name. Known options with no current meaning map to "".
func fleetKey(option string) (key string, known bool) {
	switch option {
	case "MachineID", "MachineOf", "MachineMetadata", "Conflicts", "Replaces", "Global", "AtMostOnce",
		"CPU", "Memory", "Group", "SpreadBy", "MaxPerMachine":
		return option, true
	case updateMaxUnavailable, updateMinHealthy, updateAutoRevert, healthCheck:
		return option, true
	case "X-ConditionMachineID":
		return "MachineID", true
	case "X-ConditionMachineOf":
		return "MachineOf", true
	case "X-ConditionMachineMetadata":
		return "MachineMetadata", true
	case "X-Conflicts":
		return "Conflicts", true
	case "X-ConditionMachineBootID":
		// A boot ID changes on every boot, so it never named a machine for long.
		return "", true
	}
	return "", false
}

// splitValues splits one option value into its whitespace-separated values.
// Double quotes group, and are removed; empty values are dropped.
func splitValues(s string) ([]string, error) {
	toks, err := splitTokens(s)
	if err != nil {
		return nil, err
	}
	values := make([]string, 0, len(toks))
	for _, t := range toks {
		values = append(values, t.text)
	}
	return values, nil
}

// uniq returns s without repeated values, keeping first occurrences in order.
func uniq(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

func last(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

// resources sets x.CPU and x.Memory: the unit's own systemd limits where it
// sets them, else [X-Fleet] CPU= and Memory=. A declared amount that does
// not parse is an error; one the unit's own setting overrides is a warning.
func (x *Fleet) resources(f *File, n Name, cpuValue, memValue string, warnings *[]string) error {
	cpu, mem, ws := f.systemdLimits(n.Type)
	*warnings = append(*warnings, ws...)
	if (cpuValue != "" || memValue != "") && resourceSections[n.Type] == "" {
		*warnings = append(*warnings, fmt.Sprintf("[%s] CPU= and Memory= count for placement, but systemd cannot limit a .%s unit", fleetSection, n.Type))
	}
	x.CPU, x.Memory = cpu, mem
	if cpuValue != "" {
		v, err := ParseCPU(cpuValue)
		if err != nil {
			return fmt.Errorf("[%s] CPU=%s: %w", fleetSection, clip(cpuValue), err)
		}
		if cpu == 0 {
			x.CPU = v
		} else {
			*warnings = append(*warnings, fmt.Sprintf("[%s] CPU=%s ignored: the unit's own CPUQuota= gives its demand", fleetSection, cpuValue))
		}
	}
	if memValue != "" {
		v, err := ParseMemory(memValue)
		if err != nil {
			return fmt.Errorf("[%s] Memory=%s: %w", fleetSection, clip(memValue), err)
		}
		if mem == 0 {
			x.Memory = v
		} else {
			*warnings = append(*warnings, fmt.Sprintf("[%s] Memory=%s ignored: the unit's own memory setting gives its demand", fleetSection, memValue))
		}
	}
	return nil
}

// parseBool reads fleet's truthy values; ok is false when s is neither truthy
// nor one of the matching falsy values.
func parseBool(s string) (b, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "1", "on", "t":
		return true, true
	case "false", "no", "0", "off", "f":
		return false, true
	}
	return false, false
}

// Validate applies fleet's rules for combining [X-Fleet] options to the unit
// called name. Each broken rule is reported, joined into one error:
//   - MachineID cannot be combined with MachineOf, Conflicts, Global or Replaces;
//   - Global cannot be combined with MachineOf or Replaces;
//   - Conflicts cannot be combined with Replaces;
//   - MachineOf, Conflicts and Replaces hold at most 1000 values each;
//   - Conflicts and Replaces patterns must be valid path.Match globs;
//   - no MachineOf unit may match the unit's own Conflicts or Replaces
//     patterns, as it could then never be placed;
//   - a unit cannot name itself in MachineOf.
func (x Fleet) Validate(name string) error {
	var errs []error
	refuse := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	combine := []struct {
		a, b         string
		haveA, haveB bool
	}{
		{"MachineID", "MachineOf", x.MachineID != "", len(x.MachineOf) > 0},
		{"MachineID", "Conflicts", x.MachineID != "", len(x.Conflicts) > 0},
		{"MachineID", "Global", x.MachineID != "", x.Global},
		{"MachineID", "Replaces", x.MachineID != "", len(x.Replaces) > 0},
		{"Global", "MachineOf", x.Global, len(x.MachineOf) > 0},
		{"Global", "Replaces", x.Global, len(x.Replaces) > 0},
		{"Conflicts", "Replaces", len(x.Conflicts) > 0, len(x.Replaces) > 0},
	}
	for _, c := range combine {
		if c.haveA && c.haveB {
			refuse("%s cannot be combined with %s", c.a, c.b)
		}
	}

	lists := []struct {
		option string
		values []string
	}{{"MachineOf", x.MachineOf}, {"Conflicts", x.Conflicts}, {"Replaces", x.Replaces}}
	tooMany := false
	for _, l := range lists {
		if len(l.values) > maxValues {
			refuse("%s has %d values, more than the %d allowed", l.option, len(l.values), maxValues)
			tooMany = true
		}
	}
	if tooMany {
		// Pairing every MachineOf unit with every pattern is what the limit
		// guards, and the unit is refused anyway.
		return errors.Join(errs...)
	}

	// Conflicts and Replaces are patterns; a MachineOf unit they match could
	// never be placed next to this one.
	for _, l := range lists[1:] {
		for _, p := range l.values {
			if _, err := path.Match(p, ""); err != nil {
				refuse("%s pattern %q is malformed: %w", l.option, p, err)
				continue
			}
			for _, peer := range x.MachineOf {
				if ok, _ := path.Match(p, peer); ok {
					refuse("MachineOf unit %q matches %s pattern %q", peer, l.option, p)
				}
			}
		}
	}

	if slices.Contains(x.MachineOf, name) {
		refuse("unit %q cannot name itself in MachineOf", name)
	}
	if x.Group == "" && (x.SpreadBy != "" || x.MaxPerMachine > 0) {
		refuse("SpreadBy and MaxPerMachine apply to a group: set Group=, or use them in a template")
	}
	if x.Global && (x.SpreadBy != "" || x.MaxPerMachine > 0) {
		refuse("Global cannot be combined with SpreadBy or MaxPerMachine")
	}
	return errors.Join(errs...)
}

// MatchesMetadata reports whether a machine with metadata md satisfies
// x.MachineMetadata (for every required key, md holds one of its values) and
// every one of x.Constraints.
func (x Fleet) MatchesMetadata(md map[string]string) bool {
	for key, values := range x.MachineMetadata {
		v, ok := md[key]
		if !ok || !slices.Contains(values, v) {
			return false
		}
	}
	for _, c := range x.Constraints {
		if !c.Matcher()(md) {
			return false
		}
	}
	return true
}

// ConflictsWith reports whether the unit called name matches one of
// x.Conflicts.
func (x Fleet) ConflictsWith(name string) bool {
	for _, p := range x.Conflicts {
		// A malformed pattern matches nothing; Validate reports it.
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
