package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// checker decides whether machine m can run unit u given the units already
// placed; it returns "" when it can, otherwise why not. staying is true when
// u is already on m (a unit does not conflict with itself).
type checker func(st *state, u Unit, m machine.Machine, staying bool) string

func (st *state) rejects(u Unit, m machine.Machine, staying bool) string {
	// Cheapest and most selective first: a pinned MachineID rules out all
	// but one machine before metadata or conflicts are looked at.
	for _, c := range [...]checker{checkMachineID, checkMetadata, checkMachineOf, checkConflicts} {
		if r := c(st, u, m, staying); r != "" {
			return r
		}
	}
	return ""
}

func checkMachineID(_ *state, u Unit, m machine.Machine, _ bool) string {
	id := u.Fleet.MachineID
	if id == "" || m.ID == id || (len(id) >= 8 && strings.HasPrefix(m.ID, id)) {
		return ""
	}
	return fmt.Sprintf("MachineID=%s is not present", id)
}

func checkMetadata(_ *state, u Unit, m machine.Machine, _ bool) string {
	if u.Fleet.MatchesMetadata(m.Metadata) {
		return ""
	}
	keys := make([]string, 0, len(u.Fleet.MachineMetadata))
	for k := range u.Fleet.MachineMetadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var want []string
	for _, k := range keys {
		for _, v := range u.Fleet.MachineMetadata[k] {
			want = append(want, k+"="+v)
		}
	}
	return fmt.Sprintf("no machine has metadata %s", strings.Join(want, " or "))
}

func checkMachineOf(st *state, u Unit, m machine.Machine, _ bool) string {
	for _, peer := range u.Fleet.MachineOf {
		if !st.onMachine[m.ID][peer] {
			return fmt.Sprintf("MachineOf peer %s does not run there", peer)
		}
	}
	return ""
}

// checkConflicts is symmetric, as fleet's was: u is blocked when its
// patterns match a unit on m, or a unit on m has a pattern matching u.
func checkConflicts(st *state, u Unit, m machine.Machine, _ bool) string {
	for other := range st.onMachine[m.ID] {
		if other == u.Name {
			continue
		}
		if u.Fleet.ConflictsWith(other) {
			return fmt.Sprintf("conflicts with %s", other)
		}
		if o, ok := st.units[other]; ok && o.Fleet.ConflictsWith(u.Name) {
			return fmt.Sprintf("conflicts with %s", other)
		}
	}
	return ""
}
