package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Unit is what the scheduler knows of a submitted unit.
type Unit struct {
	Name  string
	Hash  string
	State registry.State
	Fleet unit.Fleet
}

// Snapshot is the scheduler's whole input: present machines, submitted
// units and the current schedule (which may name machines that are gone).
type Snapshot struct {
	Machines   []machine.Machine
	Units      []Unit
	Placements []registry.Placement
}

// Plan is the scheduler's output: the schedule changes to write, and for
// every unit that should run but fits nowhere, why.
type Plan struct {
	Ops      []registry.PlanOp
	Unplaced map[string]string
}

// Schedule computes the changes that bring the schedule in line with the
// snapshot. It is pure: same snapshot, same plan.
//
// Units already placed on a present machine that still satisfies them stay
// where they are (no churn); only units that must move or are new are
// placed, each on the least-loaded feasible machine (ties by machine ID).
func Schedule(s Snapshot) Plan {
	st := newState(s)
	plan := Plan{Unplaced: map[string]string{}}

	// Stage 1: drop placements that can no longer stand (unit gone or
	// inactive, machine gone, constraints no longer met), so their load does
	// not count when placing others.
	for _, p := range s.Placements {
		u, ok := st.units[p.Name]
		_, present := st.machines[p.Machine]
		switch {
		case !ok || u.State == registry.StateInactive || !present:
			st.remove(&plan, p)
		}
	}
	// Drop duplicates of non-global units (a crashed leader may have left
	// two) and placements whose machine no longer satisfies the unit. The
	// first placement in machine order wins, to stay deterministic.
	for _, name := range st.unitNames {
		u := st.units[name]
		ms := st.placedOn(name)
		for i, m := range ms {
			if (!u.Fleet.Global && i > 0) || st.rejects(u, st.machines[m], true) != "" {
				st.remove(&plan, registry.Placement{Machine: m, Name: name})
			}
		}
	}

	// Stage 2: global units go to every feasible machine and leave the
	// others. They come first so that the normal units see their load.
	for _, name := range st.unitNames {
		u := st.units[name]
		if !u.Fleet.Global || u.State == registry.StateInactive {
			continue
		}
		placed := 0
		for _, id := range st.machineIDs {
			if st.rejects(u, st.machines[id], false) == "" {
				st.place(&plan, u, id)
				placed++
			}
		}
		if placed == 0 {
			plan.Unplaced[name] = st.whyNowhere(u)
		}
	}

	// Stage 3: normal units. Units without MachineOf first; followers wait
	// for their peers and are retried while progress is made.
	var pending []Unit
	for _, name := range st.unitNames {
		u := st.units[name]
		if u.Fleet.Global || u.State == registry.StateInactive {
			continue
		}
		pending = append(pending, u)
	}
	sort.SliceStable(pending, func(i, j int) bool {
		return len(pending[i].Fleet.MachineOf) < len(pending[j].Fleet.MachineOf)
	})
	for progress := true; progress && len(pending) > 0; {
		progress = false
		var next []Unit
		for _, u := range pending {
			if m := st.placedOn(u.Name); len(m) == 1 {
				// A peer may have moved earlier in this pass: check again.
				if st.rejects(u, st.machines[m[0]], true) == "" {
					st.place(&plan, u, m[0]) // refresh hash/state if changed
					progress = true
					continue
				}
				st.remove(&plan, registry.Placement{Machine: m[0], Name: u.Name})
			}
			if peer := st.unplacedPeer(u); peer != "" {
				next = append(next, u)
				continue
			}
			if id := st.best(u); id != "" {
				st.place(&plan, u, id)
				progress = true
				continue
			}
			plan.Unplaced[u.Name] = st.whyNowhere(u)
		}
		pending = next
	}
	for _, u := range pending {
		plan.Unplaced[u.Name] = fmt.Sprintf("waiting for MachineOf peer %s to be placed", st.unplacedPeer(u))
	}
	return plan
}

// state is the scheduler's working copy of the cluster while it plans.
type state struct {
	machines   map[string]machine.Machine
	machineIDs []string // sorted
	units      map[string]Unit
	unitNames  []string // sorted
	// placed maps unit -> machine -> the placement currently in the schedule
	// (as amended by the plan so far).
	placed map[string]map[string]registry.Placement
	// onMachine maps machine -> unit names placed there.
	onMachine map[string]map[string]bool
}

func newState(s Snapshot) *state {
	st := &state{
		machines:  make(map[string]machine.Machine, len(s.Machines)),
		units:     make(map[string]Unit, len(s.Units)),
		placed:    map[string]map[string]registry.Placement{},
		onMachine: map[string]map[string]bool{},
	}
	for _, m := range s.Machines {
		st.machines[m.ID] = m
		st.machineIDs = append(st.machineIDs, m.ID)
	}
	sort.Strings(st.machineIDs)
	for _, u := range s.Units {
		st.units[u.Name] = u
		st.unitNames = append(st.unitNames, u.Name)
	}
	sort.Strings(st.unitNames)
	for _, p := range s.Placements {
		st.record(p)
	}
	return st
}

func (st *state) record(p registry.Placement) {
	if st.placed[p.Name] == nil {
		st.placed[p.Name] = map[string]registry.Placement{}
	}
	st.placed[p.Name][p.Machine] = p
	if st.onMachine[p.Machine] == nil {
		st.onMachine[p.Machine] = map[string]bool{}
	}
	st.onMachine[p.Machine][p.Name] = true
}

func (st *state) remove(plan *Plan, p registry.Placement) {
	if _, ok := st.placed[p.Name][p.Machine]; !ok {
		return
	}
	delete(st.placed[p.Name], p.Machine)
	delete(st.onMachine[p.Machine], p.Name)
	plan.Ops = append(plan.Ops, registry.PlanOp{Placement: registry.Placement{Machine: p.Machine, Name: p.Name}})
}

// place puts u on machine id, emitting a write only when the stored
// placement differs.
func (st *state) place(plan *Plan, u Unit, id string) {
	want := registry.Placement{Machine: id, Name: u.Name, Hash: u.Hash, DesiredState: u.State}
	if cur, ok := st.placed[u.Name][id]; ok && cur == want {
		return
	}
	st.record(want)
	plan.Ops = append(plan.Ops, registry.PlanOp{Put: true, Placement: want})
}

// placedOn returns the machines u is placed on, sorted.
func (st *state) placedOn(name string) []string {
	ms := make([]string, 0, len(st.placed[name]))
	for m := range st.placed[name] {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	return ms
}

func (st *state) load(id string) int { return len(st.onMachine[id]) }

// best ranks the feasible machines for u: least loaded first, then lowest ID.
func (st *state) best(u Unit) string {
	best, bestLoad := "", 0
	for _, id := range st.machineIDs {
		if st.rejects(u, st.machines[id], false) != "" {
			continue
		}
		if l := st.load(id); best == "" || l < bestLoad {
			best, bestLoad = id, l
		}
	}
	return best
}

func (st *state) unplacedPeer(u Unit) string {
	for _, peer := range u.Fleet.MachineOf {
		if len(st.placedOn(peer)) == 0 {
			return peer
		}
	}
	return ""
}

// whyNowhere explains why no machine takes u: the distinct reasons the
// machines gave.
func (st *state) whyNowhere(u Unit) string {
	if len(st.machineIDs) == 0 {
		return "no machines are present"
	}
	seen := map[string]bool{}
	var reasons []string
	for _, id := range st.machineIDs {
		r := st.rejects(u, st.machines[id], false)
		if r != "" && !seen[r] {
			seen[r] = true
			reasons = append(reasons, r)
		}
	}
	if len(reasons) == 0 {
		return "no machine can take it"
	}
	if len(reasons) > 3 {
		reasons = append(reasons[:3], "...")
	}
	return strings.Join(reasons, "; ")
}
