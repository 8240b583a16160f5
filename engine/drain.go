package engine

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// Drains and moves, the scheduler's side.
//
// A draining machine (registry.DrainRecord) takes no new placement: check
// rejects it for any unit not already there. StepDrains then takes the units
// off it one step at a time. Every step is decided from the model and the
// states agents published, never from memory of an earlier step, so a new
// leader resumes a drain from what etcd holds:
//
//   - make-before-break: a unit that may run twice for a moment is placed on
//     a second machine; once that machine's agent reports it active (current
//     hash), its placement on the draining machine is deleted. While both
//     placements stand, the duplicate rule of stays keeps both.
//   - break-before-make: a unit that runs at most once, or whose Conflicts
//     match its own name (its copies must never run together), has its
//     placement on the draining machine rewritten to "loaded" (its agent
//     stops it, and runRefresh leaves it so); once that agent reports it
//     stopped, the placement is deleted and the unit placed elsewhere.
//   - stays: units pinned to the machine by MachineID, global units (unless
//     the drain includes them: they are stopped once nothing else is left),
//     units whose options cannot be read, and units no other machine can
//     take. MachineOf followers move with their peer (break-before-make,
//     as the engine always moves them).
//   - after the deadline every placement that does not stay is deleted.
//
// A move (registry.MoveRecord, fleetctl mv) is the same step for one unit
// with the target given.

// drainState is what the scheduler knows of drains and moves.
type drainState struct {
	drains map[string]registry.DrainRecord // by machine ID
	moves  map[string]registry.MoveRecord  // by unit name
	skip   string                          // machine whyNowhere leaves out (whyNowhereBut)
}

// StateFunc returns the state machine's agent last published for unit; ok
// is false when it published none. A caller that does not know yet answers
// ActiveState "unknown", ok true: a copy then counts as running, not active.
type StateFunc func(machine, unit string) (registry.UnitState, bool)

// DrainStatus is where one drain stands after a step.
type DrainStatus struct {
	Machine string
	// Done: nothing the drain moves or stops is left on the machine; what
	// stays is in Staying.
	Done bool
	// Moving lists the units on their way off the machine, sorted.
	Moving []string
	// Staying says, per unit that stays on the machine, why.
	Staying map[string]string
}

// MoveStatus is where one move stands after a step.
type MoveStatus struct {
	Unit string
	// Over: the unit runs only on the target now, or the move can no
	// longer be made (Err says why); its record can go.
	Over bool
	Err  string
}

// ErrInfeasible is wrapped by CheckMove's errors when the target machine
// may not take the unit.
var ErrInfeasible = errors.New("the machine cannot take the unit")

// SetDrain records that machine d.Machine is draining (or drained).
func (s *Scheduler) SetDrain(d registry.DrainRecord) {
	if s.dr.drains == nil {
		s.dr.drains = map[string]registry.DrainRecord{}
	}
	if _, ok := s.dr.drains[d.Machine]; !ok {
		s.staleSmall = true // reasons may name the machine as draining now
	}
	s.dr.drains[d.Machine] = d
}

// RemoveDrain records that machine id is no longer draining: it takes
// placements again, and a move off it cut short is undone (a copy being
// stopped runs again; of two copies, the duplicate rule keeps one).
func (s *Scheduler) RemoveDrain(id string) {
	if _, ok := s.dr.drains[id]; !ok {
		return
	}
	delete(s.dr.drains, id)
	s.staleSmall = true
	m := s.machines[id]
	if m == nil {
		return
	}
	for name := range m.units {
		s.refresh[name] = struct{}{}
		s.checks[[2]string{name, id}] = struct{}{}
	}
	s.freed[id] = struct{}{}
}

// SetMove records a pending move of unit m.Unit to machine m.To.
func (s *Scheduler) SetMove(m registry.MoveRecord) {
	if s.dr.moves == nil {
		s.dr.moves = map[string]registry.MoveRecord{}
	}
	s.dr.moves[m.Unit] = m
}

// RemoveMove records that the move of unit name is over.
func (s *Scheduler) RemoveMove(name string) {
	if _, ok := s.dr.moves[name]; !ok {
		return
	}
	delete(s.dr.moves, name)
	if u := s.units[name]; u != nil {
		s.refresh[name] = struct{}{}
		for _, id := range u.on.ids() {
			s.checks[[2]string{name, id}] = struct{}{}
		}
	}
}

func (s *Scheduler) isDraining(id string) bool {
	if len(s.dr.drains) == 0 {
		return false
	}
	_, ok := s.dr.drains[id]
	return ok
}

// drainRejects is check's rule: a draining machine takes no unit that is not
// on it already.
func (s *Scheduler) drainRejects(u *ustate, m *mstate) bool {
	return len(s.dr.drains) > 0 && s.isDraining(m.ID) && !u.on.has(m.ID)
}

// staysMoving is stays' rule for a unit with two placements because it is
// being moved (off a draining machine, or by a move): both stay while they
// may, and StepDrains decides when the old one goes. ok is false when the
// unit is not being moved.
func (s *Scheduler) staysMoving(u *ustate, m *mstate) (stay, ok bool) {
	if u.Fleet.Global || u.on.len() < 2 || (len(s.dr.drains) == 0 && len(s.dr.moves) == 0) {
		return false, false
	}
	_, moving := s.dr.moves[u.Name]
	for _, id := range u.on.ids() {
		moving = moving || s.isDraining(id)
	}
	if !moving {
		return false, false
	}
	return s.blocked(u) == "" && s.check(u, m).ok(), true
}

// stoppedForMove reports whether u's placement on machine id was rewritten
// to "loaded" by a break-before-make step, which runRefresh must leave so.
func (s *Scheduler) stoppedForMove(u *ustate, id string) bool {
	if len(s.dr.drains) == 0 && len(s.dr.moves) == 0 {
		return false
	}
	p, ok := u.on.get(id)
	if !ok || p.DesiredState != registry.StateLoaded || u.State != registry.StateLaunched {
		return false
	}
	if mv, ok := s.dr.moves[u.Name]; ok && mv.To != id {
		return true
	}
	return s.isDraining(id)
}

// breaksFirst reports whether u must stop where it runs before it starts
// elsewhere: it runs at most once, or its Conflicts match its own name, so
// two copies of it must never run together.
func breaksFirst(u *ustate) bool {
	return u.AtMostOnce || u.conflicts.match(u.Name)
}

func isActive(st registry.UnitState, ok bool, hash string) bool {
	return ok && st.ActiveState == "active" && st.Reason == "" && (st.Hash == "" || st.Hash == hash)
}

// stillRunning reports whether a copy may still run: its agent published a
// state that is not stopped (one not known yet counts as running). No state
// at all means its agent forgot the unit: it is not there.
func stillRunning(st registry.UnitState, ok bool) bool {
	return ok && st.ActiveState != "inactive" && st.ActiveState != "failed"
}

// moveResult is where one unit's move off one machine stands.
type moveResult int

const (
	moveGone    moveResult = iota // off the machine
	moveWaiting                   // on its way
	moveStuck                     // nowhere else to go: stays
)

// moveOff takes one step moving u off machine from, to machine to (nil: the
// best machine that may take it). why says why it is stuck.
func (s *Scheduler) moveOff(u *ustate, from, to *mstate, state StateFunc) (res moveResult, why string) {
	if !u.wants() || !u.on.has(from.ID) {
		return moveGone, ""
	}
	// A copy already started elsewhere for this move.
	var other *mstate
	for _, id := range u.on.ids() {
		if id == from.ID || s.isDraining(id) || (to != nil && id != to.ID) {
			continue
		}
		if m := s.machines[id]; m != nil {
			other = m
			break
		}
	}
	target := func() (*mstate, string) {
		if to != nil {
			if r := s.check(u, to); !r.ok() {
				return nil, fmt.Sprintf("%s cannot take it: %s", to.ID, describeRejection(u, r))
			}
			return to, ""
		}
		if s.blocked(u) == "" {
			if m := s.best(u); m != nil {
				return m, ""
			}
		}
		return nil, s.whyNowhereBut(u, from.ID)
	}
	launched := u.State == registry.StateLaunched
	if !launched || !breaksFirst(u) {
		if other != nil {
			if st, ok := state(other.ID, u.Name); !launched || isActive(st, ok, u.hashOn(other.ID)) {
				s.unplace(u, from, true)
				return moveGone, ""
			}
			return moveWaiting, ""
		}
		m, why := target()
		if m == nil {
			return moveStuck, why
		}
		s.place(u, m)
		if !launched {
			s.unplace(u, from, true)
			return moveGone, ""
		}
		return moveWaiting, ""
	}
	// Break before make.
	p, _ := u.on.get(from.ID)
	if other != nil {
		s.unplace(u, from, true)
		return moveGone, ""
	}
	m, why := target()
	if m == nil {
		if p.DesiredState != u.State {
			// It was being stopped for a move that cannot be made now: it
			// runs here again.
			p.DesiredState = u.State
			u.on.put(p)
			s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Put: true, Placement: p})
		}
		return moveStuck, why
	}
	if p.DesiredState == registry.StateLaunched {
		p.DesiredState = registry.StateLoaded
		u.on.put(p)
		s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Put: true, Placement: p})
		return moveWaiting, ""
	}
	if stillRunning(state(from.ID, u.Name)) {
		return moveWaiting, ""
	}
	s.unplace(u, from, true)
	s.place(u, m)
	return moveGone, ""
}

// StepDrains takes the next step of every drain and move (see the comment at
// the top of this file) and returns where each stands. The steps' writes
// join the next Plan's. state answers from the states agents published;
// now decides whether a drain's deadline has passed.
func (s *Scheduler) StepDrains(now time.Time, state StateFunc) ([]DrainStatus, []MoveStatus) {
	var ds []DrainStatus
	for _, id := range sortedKeys(s.dr.drains) {
		ds = append(ds, s.stepDrain(s.dr.drains[id], now, state))
	}
	var ms []MoveStatus
	for _, name := range sortedKeys(s.dr.moves) {
		ms = append(ms, s.stepMove(s.dr.moves[name], state))
	}
	return ds, ms
}

func (s *Scheduler) stepDrain(rec registry.DrainRecord, now time.Time, state StateFunc) DrainStatus {
	st := DrainStatus{Machine: rec.Machine, Staying: map[string]string{}}
	m := s.machines[rec.Machine]
	if m == nil {
		// Away: its movable units were placed elsewhere when it left; what
		// is parked there stays.
		for name := range s.parkedOn[rec.Machine] {
			st.Staying[name] = "its machine is away; its placement is kept there"
		}
		st.Done = true
		return st
	}
	expired := !rec.Deadline.IsZero() && !now.Before(rec.Deadline)
	var globals, followers []*ustate
	for _, name := range sortedKeys(m.units) {
		u := m.units[name]
		if u == nil || !u.on.has(m.ID) {
			continue
		}
		switch {
		case u.Invalid == "" && u.Fleet.Global:
			if rec.IncludeGlobal {
				globals = append(globals, u)
			} else {
				st.Staying[name] = "global unit (drain with --include-global to stop it)"
			}
		case u.Invalid == "" && u.Fleet.PinnedTo(m.ID):
			st.Staying[name] = fmt.Sprintf("MachineID=%s pins it to this machine", u.Fleet.MachineID)
		case expired:
			s.unplace(u, m, true)
			if u.on.len() == 0 && u.wants() {
				s.enqueue(u)
			}
		case u.Invalid != "":
			st.Staying[name] = "its options cannot be read (" + u.Invalid + ")"
		case len(u.Fleet.MachineOf) > 0:
			followers = append(followers, u)
		default:
			switch res, why := s.moveOff(u, m, nil, state); res {
			case moveWaiting:
				st.Moving = append(st.Moving, name)
			case moveStuck:
				st.Staying[name] = why
			}
		}
	}
	for _, f := range followers {
		if !f.on.has(m.ID) {
			continue
		}
		peer := f.Fleet.MachineOf[0]
		if why, stays := st.Staying[peer]; stays {
			st.Staying[f.Name] = fmt.Sprintf("runs next to its MachineOf peer %s, which stays: %s", peer, why)
			continue
		}
		if p := s.units[peer]; p == nil || !p.on.has(m.ID) {
			continue // its peer left: the check unplace queued takes it off in this plan
		}
		st.Moving = append(st.Moving, f.Name) // it leaves with its peer
	}
	if len(st.Moving) == 0 || expired {
		for _, g := range globals {
			s.unplace(g, m, true)
		}
		// Followers of units that just left are checked by the next Plan;
		// expired, nothing is waited for.
		if expired {
			st.Moving = nil
		}
	}
	sort.Strings(st.Moving)
	st.Done = len(st.Moving) == 0
	return st
}

func (s *Scheduler) stepMove(rec registry.MoveRecord, state StateFunc) MoveStatus {
	st := MoveStatus{Unit: rec.Unit}
	u, to := s.units[rec.Unit], s.machines[rec.To]
	switch {
	case u == nil:
		st.Over, st.Err = true, "the unit was destroyed"
	case !u.wants():
		st.Over, st.Err = true, "the unit was made inactive"
	case u.Invalid != "" || u.Fleet.Global:
		st.Over, st.Err = true, "the unit cannot be moved"
	case to == nil:
		st.Over, st.Err = true, fmt.Sprintf("machine %s left", rec.To)
	}
	if st.Over {
		return st
	}
	for _, id := range u.on.ids() {
		from := s.machines[id]
		if id == to.ID || from == nil {
			continue
		}
		if res, why := s.moveOff(u, from, to, state); res == moveStuck {
			return MoveStatus{Unit: rec.Unit, Over: true, Err: why}
		}
	}
	st.Over = u.on.len() == 1 && u.on.has(to.ID)
	return st
}

// describeRejection turns one machine's rejection of u into a sentence part.
func describeRejection(u *ustate, r rejection) string {
	switch r.kind {
	case rejMachineID:
		return "not MachineID=" + u.Fleet.MachineID
	case rejMetadata:
		return "no metadata " + describeSelector(u.Fleet.MachineMetadata)
	case rejMachineOf:
		return "MachineOf peer " + r.other + " not there"
	case rejConflict:
		return "conflicts with " + r.other
	case rejReplaced:
		return "replaced by " + r.other
	case rejDraining:
		return "it is draining"
	}
	return "no reason"
}

// CheckMove returns why unit name may not move to machine to now, nil if
// it may. The errors are sentences; an infeasible target wraps
// ErrInfeasible.
func (s *Scheduler) CheckMove(name, to string) error {
	u := s.units[name]
	m := s.machines[to]
	switch {
	case u == nil:
		return fmt.Errorf("unit %s does not exist", name)
	case m == nil:
		return fmt.Errorf("machine %s is not present", to)
	case !u.wants() || u.on.len() == 0:
		return fmt.Errorf("%w: %s runs nowhere (not loaded or launched, or unplaced), so there is nothing to move", ErrInfeasible, name)
	case u.Fleet.Global:
		return fmt.Errorf("%w: %s is a global unit: it runs on every machine that may take it", ErrInfeasible, name)
	case u.Invalid != "":
		return fmt.Errorf("%w: %s's options cannot be read: %s", ErrInfeasible, name, u.Invalid)
	case u.on.has(to):
		return fmt.Errorf("%w: %s runs on %s already", ErrInfeasible, name, to)
	}
	if r := s.check(u, m); !r.ok() {
		return fmt.Errorf("%w: %s cannot run on %s: %s", ErrInfeasible, name, to, describeRejection(u, r))
	}
	if s.displaces(u, m) {
		return fmt.Errorf("%w: %s would displace a unit it replaces on %s", ErrInfeasible, name, to)
	}
	return nil
}

// DrainPlan is what draining a machine would do now (PreviewDrain).
type DrainPlan struct {
	Machine string `json:"machineID"`
	// Move lists the units that move to other machines.
	Move []string `json:"move,omitempty"`
	// Stop lists the global units stopped there (--include-global).
	Stop []string `json:"stop,omitempty"`
	// Stay says, per unit that stays on the machine, why.
	Stay map[string]string `json:"stay,omitempty"`
	// Unplaced says, per unit that would be stopped there and run nowhere
	// (the machine is the last one that may run it), why.
	Unplaced map[string]string `json:"unplaced,omitempty"`
}

// PreviewDrain returns what draining machine id would do, given every other
// drain the scheduler holds: which units move, stop, stay, or would run
// nowhere. It simulates the drain on the scheduler, which is of no further
// use afterwards.
func (s *Scheduler) PreviewDrain(id string, includeGlobal bool) DrainPlan {
	plan := DrainPlan{Machine: id, Stay: map[string]string{}, Unplaced: map[string]string{}}
	s.Plan() // settle what the snapshot left undecided
	m := s.machines[id]
	if m == nil {
		return plan
	}
	s.SetDrain(registry.DrainRecord{Machine: id, IncludeGlobal: includeGlobal})
	var moved []string
	for _, name := range sortedKeys(m.units) {
		u := m.units[name]
		switch {
		case u.Invalid == "" && u.Fleet.Global:
			if includeGlobal {
				plan.Stop = append(plan.Stop, name)
			} else {
				plan.Stay[name] = "global unit (drain with --include-global to stop it)"
			}
		case u.Invalid == "" && u.Fleet.PinnedTo(id):
			plan.Stay[name] = fmt.Sprintf("MachineID=%s pins it to this machine", u.Fleet.MachineID)
		case u.Invalid != "":
			plan.Stay[name] = "its options cannot be read (" + u.Invalid + ")"
		case len(u.Fleet.MachineOf) > 0:
			moved = append(moved, name) // with its peer, or not at all
		default:
			moved = append(moved, name)
			s.unplace(u, m, false)
			if u.wants() {
				s.enqueue(u)
			}
		}
	}
	// Units still waiting to leave other draining machines need a home
	// too: previewed without them, two drains planned one after the other
	// (before the engine moved anything) could each look harmless.
	leaving := map[string]string{}
	for _, other := range sortedKeys(s.dr.drains) {
		d, om := s.dr.drains[other], s.machines[other]
		if other == id || !d.Draining() || om == nil {
			continue
		}
		for _, name := range sortedKeys(om.units) {
			u := om.units[name]
			if u.Invalid != "" || u.Fleet.Global || u.Fleet.PinnedTo(other) || len(u.Fleet.MachineOf) > 0 || u.on.len() > 1 {
				continue
			}
			leaving[name] = other
			s.unplace(u, om, false)
			if u.wants() {
				s.enqueue(u)
			}
		}
	}
	s.Plan()
	for _, name := range sortedKeys(leaving) {
		if u := s.units[name]; u.reason != "" {
			plan.Unplaced[name] = fmt.Sprintf("leaving draining machine %s: %s", leaving[name], s.whyNowhereBut(u, id))
		}
	}
	for _, name := range moved {
		u := s.units[name]
		switch {
		case u.on.has(id):
			peer := u.Fleet.MachineOf[0]
			plan.Stay[name] = fmt.Sprintf("runs next to its MachineOf peer %s, which stays", peer)
		case u.reason != "" && s.blocked(u) != "":
			plan.Unplaced[name] = u.reason
		case u.reason != "":
			plan.Unplaced[name] = s.whyNowhereBut(u, id)
		default:
			plan.Move = append(plan.Move, name)
		}
	}
	return plan
}

// whyNowhereBut is whyNowhere for a unit that may not stay on machine skip
// (it is being drained): why no other machine takes it.
func (s *Scheduler) whyNowhereBut(u *ustate, skip string) string {
	if s.dr.skip != "" {
		return s.whyNowhere(u)
	}
	s.dr.skip = skip
	defer func() { s.dr.skip = "" }()
	why := s.whyNowhere(u)
	switch {
	case why != "no machine can take it" && why != "no machines are present":
		return why
	case u.pool != nil:
		return "no other machine has metadata " + describeSelector(u.Fleet.MachineMetadata)
	}
	return "no other machine can take it"
}
