package engine

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Machines events.

// SetMachine records a machine that joined or changed. A machine that joins
// is offered to global units and to units waiting for room; one whose
// metadata changed has its units checked again.
func (s *Scheduler) SetMachine(m machine.Machine) {
	old, ok := s.machines[m.ID]
	if !ok {
		s.addMachine(m)
		s.restoreParked(s.machines[m.ID])
		s.freed[m.ID] = struct{}{}
		return
	}
	if maps.Equal(old.Metadata, m.Metadata) {
		changed := !sameCapacity(old.Capacity, m.Capacity)
		old.Machine = m
		if changed {
			s.capacityChanged(old)
		}
		return
	}
	s.unindexMachine(old)
	old.Machine = m
	s.rerank(old) // its capacity may have changed too
	s.indexMachine(old)
	s.staleSmall = true
	for name := range old.units {
		s.checks[[2]string{name, m.ID}] = struct{}{}
	}
	s.freed[m.ID] = struct{}{}
}

func (s *Scheduler) addMachine(m machine.Machine) {
	if _, ok := s.machines[m.ID]; ok {
		return
	}
	ms := &mstate{Machine: m, units: map[string]*ustate{}}
	s.machines[m.ID] = ms
	s.indexShort(ms)
	s.labelMachine(ms)
	s.indexMachine(ms)
}

func (s *Scheduler) indexShort(ms *mstate) {
	if len(ms.ID) > shortIDLen {
		s.short[ms.ID[:shortIDLen]] = append(s.short[ms.ID[:shortIDLen]], ms)
	}
}

// labelMachine gives a joining machine an order label between those of its
// neighbours in ID order, so that ranks compare as integers and still break
// ties by machine ID. When two neighbours' labels are adjacent, every
// machine is relabelled (rare: labels start 2^32/n apart).
func (s *Scheduler) labelMachine(ms *mstate) {
	i, _ := slices.BinarySearchFunc(s.order, ms.ID, func(x *mstate, id string) int { return strings.Compare(x.ID, id) })
	s.order = slices.Insert(s.order, i, ms)
	lo, hi := uint64(0), uint64(1)<<32
	if i > 0 {
		lo = uint64(s.order[i-1].label)
	}
	if i+1 < len(s.order) {
		hi = uint64(s.order[i+1].label)
	}
	if hi-lo < 2 {
		s.relabel()
		return
	}
	ms.label = uint32(lo + (hi-lo)/2)
	ms.key, ms.room = rankOf(s.load(ms), ms.label), roomOf(ms)
	s.byLabel[ms.label] = ms
}

// relabel spreads the labels of all machines evenly again, rewriting the
// ranks the pools hold.
func (s *Scheduler) relabel() {
	step := (uint64(1) << 32) / uint64(len(s.order)+1)
	renamed := make(map[uint32]uint32, len(s.order))
	s.byLabel = make(map[uint32]*mstate, len(s.order))
	for i, m := range s.order {
		l := uint32(uint64(i+1) * step)
		renamed[m.label] = l
		m.label, m.key, m.room = l, rankOf(s.load(m), l), roomOf(m)
		s.byLabel[l] = m
	}
	f := func(l uint32) uint32 { return renamed[l] }
	s.all.ranked.relabel(f)
	for _, p := range s.pools {
		p.ranked.relabel(f)
	}
}

// RemoveMachine records a machine that left (its lease expired): its
// placements are deleted and its units placed elsewhere, except those of
// units that can run nowhere else (global units, units whose MachineID is
// this machine). Those are parked: kept in the schedule, counted nowhere,
// and back in force if the machine returns, so that a host cut off for a
// while finds its schedule unchanged instead of stopping and restarting
// them.
func (s *Scheduler) RemoveMachine(id string) {
	ms, ok := s.machines[id]
	if !ok {
		return
	}
	delete(s.machines, id)
	delete(s.freed, id)
	for _, name := range sortedKeys(ms.units) {
		u := ms.units[name]
		if parkable(u, id) {
			p, _ := u.on.get(id)
			s.unplace(u, ms, false)
			s.park(u, p)
		} else {
			s.unplace(u, ms, true)
		}
		if u.wants() && !u.Fleet.Global {
			s.enqueue(u)
		}
		if u.Fleet.Global && u.on.len() == 0 {
			s.gqueue[u.Name] = struct{}{}
		}
	}
	s.unindexMachine(ms)
	s.staleSmall = true
	if i, ok := slices.BinarySearchFunc(s.order, id, func(x *mstate, id string) int { return strings.Compare(x.ID, id) }); ok {
		s.order = slices.Delete(s.order, i, i+1)
	}
	delete(s.byLabel, ms.label)
	if len(id) > shortIDLen {
		k := id[:shortIDLen]
		s.short[k] = slices.DeleteFunc(s.short[k], func(o *mstate) bool { return o == ms })
		if len(s.short[k]) == 0 {
			delete(s.short, k)
		}
	}
}

func (s *Scheduler) indexMachine(ms *mstate) {
	for k, v := range ms.Metadata {
		if s.mdIndex[k] == nil {
			s.mdIndex[k] = map[string]map[string]*mstate{}
		}
		if s.mdIndex[k][v] == nil {
			s.mdIndex[k][v] = map[string]*mstate{}
		}
		s.mdIndex[k][v][ms.ID] = ms
	}
	s.all.add(ms)
	for k, v := range ms.Metadata {
		for _, p := range s.poolIndex[kv(k, v)] {
			if !p.has(ms) && p.matches(ms.Metadata) {
				p.add(ms)
			}
		}
	}
	for _, p := range s.opPools {
		if !p.has(ms) && p.matches(ms.Metadata) {
			p.add(ms)
		}
	}
}

func (s *Scheduler) unindexMachine(ms *mstate) {
	for k, v := range ms.Metadata {
		delete(s.mdIndex[k][v], ms.ID)
		if len(s.mdIndex[k][v]) == 0 {
			delete(s.mdIndex[k], v)
		}
		if len(s.mdIndex[k]) == 0 {
			delete(s.mdIndex, k)
		}
	}
	for _, p := range ms.pools {
		p.ranked.delete(ms.key)
		delete(p.members, ms.ID)
	}
	ms.pools = nil
}

// rerank moves ms to its new place in every pool after its load changed.
func (s *Scheduler) rerank(ms *mstate) {
	k, room := rankOf(s.load(ms), ms.label), roomOf(ms)
	if k == ms.key && room == ms.room {
		return
	}
	for _, p := range ms.pools {
		p.ranked.delete(ms.key)
		p.ranked.insert(k, room)
	}
	ms.key, ms.room = k, room
}

// Unit events.

// SetUnit records a unit that was submitted or changed. A new unit is
// placed; a unit whose options changed is checked where it runs (it is the
// one that moves if it now conflicts); a changed hash or desired state is
// written to its placements in place; an inactive unit is unscheduled.
func (s *Scheduler) SetUnit(nu Unit) {
	u, ok := s.units[nu.Name]
	if !ok {
		u = &ustate{Unit: nu}
		s.units[nu.Name] = u
		s.register(u)
		s.want(u)
		return
	}
	wanted, oldHash, oldState, oldRollout := u.wants(), u.Hash, u.State, u.Rollout
	if u.Invalid != nu.Invalid || !reflect.DeepEqual(u.Fleet, nu.Fleet) {
		s.unregister(u)
		for _, id := range u.on.ids() {
			if m := s.machines[id]; m != nil && u.excludes() {
				m.excluders = slices.DeleteFunc(m.excluders, func(x *ustate) bool { return x == u })
			}
			if m := s.machines[id]; m != nil {
				s.account(u, m, false) // its demand and group may change
			}
		}
		u.Unit = nu
		s.register(u)
		for _, id := range u.on.ids() {
			m := s.machines[id]
			if m == nil {
				continue
			}
			s.account(u, m, true)
			s.rerank(m)
			if u.excludes() {
				m.excluders = append(m.excluders, u)
			}
			// The changed unit is checked first, so that it, not its
			// neighbours, moves when it now conflicts with them.
			s.first[[2]string{u.Name, id}] = struct{}{}
			for other := range m.units {
				s.checks[[2]string{other, id}] = struct{}{}
			}
			s.freed[id] = struct{}{}
		}
		s.want(u)
	}
	u.Unit = nu
	switch {
	case wanted && !u.wants():
		for _, id := range u.on.ids() {
			s.unplace(u, s.machines[id], true)
		}
		s.clearReason(u)
	case !wanted && u.wants():
		s.want(u)
	case u.wants() && (u.Hash != oldHash || u.State != oldState || !u.Rollout.Equal(oldRollout)):
		s.refresh[u.Name] = struct{}{}
	}
	s.checkParked(u)
}

// want queues u for a decision if it should run.
func (s *Scheduler) want(u *ustate) {
	if !u.wants() {
		return
	}
	if u.Fleet.Global && u.Invalid == "" {
		s.gqueue[u.Name] = struct{}{}
		return
	}
	s.enqueue(u)
}

// RemoveUnit records a destroyed unit: its placements are deleted.
func (s *Scheduler) RemoveUnit(name string) {
	u, ok := s.units[name]
	if !ok {
		return
	}
	for _, id := range u.on.ids() {
		s.unplace(u, s.machines[id], true)
	}
	for _, id := range sortedKeys(s.parked[name]) {
		s.unpark(name, id, true)
	}
	s.clearReason(u)
	s.unregister(u)
	delete(s.units, name)
	delete(s.refresh, name)
	delete(s.gqueue, name)
	delete(s.stale, name)
	// Followers placed with it were queued for a check by unplace; those
	// waiting keep waiting, for a reason that may read differently now.
	for f := range s.followers[name] {
		s.stale[f] = struct{}{}
	}
}

// register indexes u: its pool, MachineOf peers, Replaces, global list.
func (s *Scheduler) register(u *ustate) {
	u.pool, u.conflicts, u.replaces = nil, patterns{}, patterns{}
	if u.Invalid != "" {
		return
	}
	u.conflicts = compilePatterns(u.Fleet.Conflicts)
	u.replaces = compilePatterns(u.Fleet.Replaces)
	if sel, cons := selectorOf(u.Fleet); len(sel) > 0 || len(cons) > 0 {
		u.pool = s.poolFor(sel, cons)
		u.pool.refs++
	}
	s.registerGroup(u)
	for _, peer := range u.Fleet.MachineOf {
		if s.followers[peer] == nil {
			s.followers[peer] = map[string]*ustate{}
		}
		s.followers[peer][u.Name] = u
	}
	if u.Fleet.Global {
		i, _ := slices.BinarySearch(s.globals, u.Name)
		s.globals = slices.Insert(s.globals, i, u.Name)
	}
	if !u.replaces.empty() {
		s.replacers[u.Name] = u
		s.replacersChanged()
	}
}

func (s *Scheduler) unregister(u *ustate) {
	s.unregisterGroup(u)
	if u.pool != nil {
		u.pool.refs--
		if u.pool.refs == 0 {
			s.dropPool(u.pool)
		}
		u.pool = nil
	}
	for _, peer := range u.Fleet.MachineOf {
		delete(s.followers[peer], u.Name)
		if len(s.followers[peer]) == 0 {
			delete(s.followers, peer)
		}
	}
	if i, ok := slices.BinarySearch(s.globals, u.Name); ok && u.Fleet.Global {
		s.globals = slices.Delete(s.globals, i, i+1)
	}
	if _, ok := s.replacers[u.Name]; ok {
		delete(s.replacers, u.Name)
		s.replacersChanged()
	}
}

// poolFor returns the pool of a selector, building it from the metadata
// index on first use.
func (s *Scheduler) poolFor(sel map[string][]string, cons []unit.Constraint) *pool {
	key := poolKey(sel, cons)
	if p, ok := s.pools[key]; ok {
		return p
	}
	p := &pool{key: key, sel: sel, members: map[string]*mstate{}}
	for _, c := range cons {
		p.cons = append(p.cons, c.Matcher())
	}
	s.pools[key] = p
	if len(sel) == 0 {
		// No key=value term to index it by: tested against every machine,
		// now and whenever one joins. Distinct such selectors are few.
		s.opPools = append(s.opPools, p)
		for _, m := range s.order {
			if p.matches(m.Metadata) {
				p.add(m)
			}
		}
		return p
	}
	// Start from the key whose values cover the fewest machines.
	var (
		bestKey string
		bestN   = -1
	)
	for k, vs := range sel {
		n := 0
		for _, v := range vs {
			n += len(s.mdIndex[k][v])
		}
		if bestN < 0 || n < bestN || (n == bestN && k < bestKey) {
			bestKey, bestN = k, n
		}
	}
	for _, v := range sel[bestKey] {
		for _, m := range s.mdIndex[bestKey][v] {
			if !p.has(m) && p.matches(m.Metadata) {
				p.add(m)
			}
		}
	}
	fk := firstKey(sel)
	for _, v := range uniqSorted(sel[fk]) {
		s.poolIndex[kv(fk, v)] = append(s.poolIndex[kv(fk, v)], p)
	}
	return p
}

func (s *Scheduler) dropPool(p *pool) {
	delete(s.pools, p.key)
	s.opPools = slices.DeleteFunc(s.opPools, func(o *pool) bool { return o == p })
	fk := firstKey(p.sel)
	for _, v := range uniqSorted(p.sel[fk]) {
		k := kv(fk, v)
		s.poolIndex[k] = slices.DeleteFunc(s.poolIndex[k], func(o *pool) bool { return o == p })
		if len(s.poolIndex[k]) == 0 {
			delete(s.poolIndex, k)
		}
	}
	for _, m := range p.members {
		m.pools = slices.DeleteFunc(m.pools, func(o *pool) bool { return o == p })
	}
}

// Schedule events: what etcd holds, for a scheduler being loaded or
// resynchronised. Plans need not be fed back.

// SetPlacement records that the schedule holds p.
func (s *Scheduler) SetPlacement(p registry.Placement) {
	u, m := s.units[p.Name], s.machines[p.Machine]
	if u != nil && m == nil && parkable(u, p.Machine) {
		if cur, ok := s.parked[u.Name][p.Machine]; !ok || cur != p {
			s.park(u, p)
			s.refresh[u.Name] = struct{}{}
			// Its reason may read differently now.
			s.want(u)
		}
		return
	}
	if u == nil || m == nil {
		s.orphans[[2]string{p.Machine, p.Name}] = p
		return
	}
	if cur, ok := u.on.get(m.ID); ok {
		if cur != p {
			u.on.put(p)
			s.refresh[u.Name] = struct{}{}
		}
		return
	}
	s.record(u, m, p)
	s.checks[[2]string{u.Name, m.ID}] = struct{}{}
	s.refresh[u.Name] = struct{}{}
}

// RemovePlacement records that the schedule does not hold unit name on
// machine id.
func (s *Scheduler) RemovePlacement(id, name string) {
	delete(s.orphans, [2]string{id, name})
	if _, ok := s.parked[name][id]; ok {
		s.unpark(name, id, false)
		s.want(s.units[name])
		return
	}
	u, m := s.units[name], s.machines[id]
	if u == nil || m == nil {
		return
	}
	if !u.on.has(id) {
		return
	}
	s.unplace(u, m, false)
	s.want(u)
}

// record notes u on m without writing anything.
func (s *Scheduler) record(u *ustate, m *mstate, p registry.Placement) {
	u.on.put(p)
	m.units[u.Name] = u
	if u.excludes() {
		m.excluders = append(m.excluders, u)
	}
	s.account(u, m, true)
	s.rerank(m)
	s.clearReason(u)
}

// place puts u on m and writes it.
func (s *Scheduler) place(u *ustate, m *mstate) {
	p := registry.Placement{Machine: m.ID, Name: u.Name, Hash: u.hashOn(m.ID), DesiredState: u.State}
	s.record(u, m, p)
	if u.epoch != s.epoch {
		u.epoch, u.moves = s.epoch, 0
	}
	u.moves++
	s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Put: true, Placement: p})
	// Followers waiting for u may go now.
	for _, f := range s.followers[u.Name] {
		if f.on.len() == 0 && f.wants() {
			s.enqueue(f)
		}
	}
	// Units u replaces leave m: checking them finds them replaced.
	if !u.replaces.empty() {
		for name := range m.units {
			if name != u.Name && u.replaces.match(name) {
				s.checks[[2]string{name, m.ID}] = struct{}{}
			}
		}
	}
}

// unplace takes u off m, deleting the placement when write is set.
func (s *Scheduler) unplace(u *ustate, m *mstate, write bool) {
	if !u.on.has(m.ID) {
		return
	}
	u.on.del(m.ID)
	delete(m.units, u.Name)
	if u.excludes() {
		m.excluders = slices.DeleteFunc(m.excluders, func(x *ustate) bool { return x == u })
	}
	s.account(u, m, false)
	s.rerank(m)
	if write {
		s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Placement: registry.Placement{Machine: m.ID, Name: u.Name}})
	}
	// Followers move with their peer.
	for name := range s.followers[u.Name] {
		if _, ok := m.units[name]; ok {
			s.checks[[2]string{name, m.ID}] = struct{}{}
		}
	}
	// A rival of u may run now that u does not.
	if u.on.len() == 0 {
		for _, r := range s.rivalsOf(u) {
			if ru := s.units[r]; ru != nil && ru.on.len() == 0 && ru.wants() {
				s.enqueue(ru)
			}
		}
	}
	if s.machines[m.ID] == m {
		s.freed[m.ID] = struct{}{}
	}
}

func (s *Scheduler) setReason(u *ustate, why string) {
	u.reason = why
	s.unplaced[u.Name] = u
	s.plan.Unplaced[u.Name] = why
	delete(s.cleared, u.Name)
}

func (s *Scheduler) clearReason(u *ustate) {
	if _, ok := s.unplaced[u.Name]; !ok {
		return
	}
	u.reason = ""
	delete(s.unplaced, u.Name)
	delete(s.plan.Unplaced, u.Name)
	s.cleared[u.Name] = struct{}{}
}

func (s *Scheduler) enqueue(u *ustate) {
	if !u.queued {
		u.queued = true
		s.queue.push(u)
	}
}

// snapshot returns what the scheduler holds, as a Snapshot: the state a
// full pass would start from.
func (s *Scheduler) snapshot() Snapshot {
	snap := Snapshot{Policy: s.policy}
	for _, id := range sortedKeys(s.machines) {
		snap.Machines = append(snap.Machines, s.machines[id].Machine)
	}
	for _, name := range sortedKeys(s.units) {
		u := s.units[name]
		snap.Units = append(snap.Units, u.Unit)
		for _, id := range u.on.ids() {
			p, _ := u.on.get(id)
			snap.Placements = append(snap.Placements, p)
		}
		for _, id := range sortedKeys(s.parked[name]) {
			snap.Placements = append(snap.Placements, s.parked[name][id])
		}
	}
	return snap
}

// placement returns the placement of unit name on machine id, if the
// scheduler's model holds one.
func (s *Scheduler) placement(id, name string) (registry.Placement, bool) {
	u := s.units[name]
	if u == nil {
		return registry.Placement{}, false
	}
	if p, ok := s.parked[name][id]; ok {
		return p, true
	}
	return u.on.get(id)
}

// placements lists every placement the scheduler's model holds.
func (s *Scheduler) placements() []registry.Placement {
	var out []registry.Placement
	for _, u := range s.units {
		for _, p := range u.on.list {
			out = append(out, p)
		}
	}
	for _, ps := range s.parked {
		for _, p := range ps {
			out = append(out, p)
		}
	}
	return out
}

// Parked placements: a unit's placement on a machine that left, kept in the
// schedule because the unit can run nowhere else. They are outside the model
// of present machines (no load, no conflicts, no MachineOf peer, no rival
// running), so they change no decision for present machines; they only
// keep the unit from being placed elsewhere and from losing its entry.

// parkable reports whether u's placement on the absent machine id is kept:
// u should run, its options are known, and it is global or pinned to id by
// MachineID, or it runs at most once (then only until Release).
func parkable(u *ustate, id string) bool {
	if !u.wants() || u.Invalid != "" {
		return false
	}
	return u.Fleet.Global || u.Fleet.PinnedTo(id) || u.AtMostOnce
}

// held reports whether u's placement on the absent machine id is parked
// only because u runs at most once: it could run elsewhere, but not before
// its copy on id has surely stopped.
func held(u *ustate, id string) bool {
	return u.AtMostOnce && !u.Fleet.Global && !u.Fleet.PinnedTo(id)
}

// Held returns the absent machines with held placements (see held), sorted.
// The engine releases each a margin after the machine left.
func (s *Scheduler) Held() []string {
	var out []string
	for _, id := range sortedKeys(s.parkedOn) {
		if len(s.HeldOn(id)) > 0 {
			out = append(out, id)
		}
	}
	return out
}

// HeldOn returns the units whose placements on the absent machine id are
// held, sorted.
func (s *Scheduler) HeldOn(id string) []string {
	var out []string
	for _, name := range sortedKeys(s.parkedOn[id]) {
		if held(s.units[name], id) {
			out = append(out, name)
		}
	}
	return out
}

// Release forgets the held placements of names on the absent machine id,
// which the caller has deleted from the schedule (registry.ReleaseHeld),
// and has those units placed by the next Plan like any unit without a
// machine.
func (s *Scheduler) Release(id string, names []string) {
	if s.machines[id] != nil {
		return // back: they stand
	}
	for _, name := range names {
		u := s.units[name]
		if u == nil || !held(u, id) {
			continue
		}
		if _, ok := s.parked[name][id]; !ok {
			continue
		}
		s.unpark(name, id, false)
		s.want(u)
	}
}

// park records p, of u on an absent machine, as kept, without writing.
func (s *Scheduler) park(u *ustate, p registry.Placement) {
	if s.parked[u.Name] == nil {
		s.parked[u.Name] = map[string]registry.Placement{}
	}
	s.parked[u.Name][p.Machine] = p
	if s.parkedOn[p.Machine] == nil {
		s.parkedOn[p.Machine] = map[string]struct{}{}
	}
	s.parkedOn[p.Machine][u.Name] = struct{}{}
}

// unpark forgets the parked placement of unit name on machine id, deleting
// it from the schedule when write is set.
func (s *Scheduler) unpark(name, id string, write bool) {
	if _, ok := s.parked[name][id]; !ok {
		return
	}
	delete(s.parked[name], id)
	if len(s.parked[name]) == 0 {
		delete(s.parked, name)
	}
	delete(s.parkedOn[id], name)
	if len(s.parkedOn[id]) == 0 {
		delete(s.parkedOn, id)
	}
	if write {
		s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Placement: registry.Placement{Machine: id, Name: name}})
	}
}

// checkParked deletes the parked placements of u that its options or
// desired state no longer keep (it stopped being global, its MachineID
// changed, it was made inactive) and has u decided again.
func (s *Scheduler) checkParked(u *ustate) {
	changed := false
	for _, id := range sortedKeys(s.parked[u.Name]) {
		if !parkable(u, id) {
			s.unpark(u.Name, id, true)
			changed = true
		}
	}
	if changed {
		s.want(u)
	}
}

// restoreParked puts the placements parked on a returning machine back on
// it, as they are in the schedule (nothing is written), and has each
// checked like any other placement: one that may not stay there now (its
// metadata changed, a conflict) comes off in the next plan.
func (s *Scheduler) restoreParked(m *mstate) {
	for _, name := range sortedKeys(s.parkedOn[m.ID]) {
		u := s.units[name]
		p := s.parked[name][m.ID]
		s.unpark(name, m.ID, false)
		s.record(u, m, p)
		s.checks[[2]string{name, m.ID}] = struct{}{}
		for _, f := range s.followers[name] {
			if f.on.len() == 0 && f.wants() {
				s.enqueue(f)
			}
		}
	}
}
