package engine

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// A warm standby: an engine that does not lead follows what the leader
// follows (units, machines) and what the leader writes (the schedule, the
// unplaced reasons), feeding the same leaderState and Scheduler a leader
// keeps. It also watches the bodies: a create writes a unit and its body in
// one transaction, so a new unit's body arrives with it instead of costing
// a read (after a 100,000-unit bulk, reads of the bodies left a standby
// minutes behind). It never plans and never writes: the leader decides. When it wins
// the election it does not read and plan the cluster from scratch; it reads
// what changed under each prefix since the revision its model reflects (a
// count and a filtered range, see registry.Since), applies that, and plans
// only the work its events left: the units nobody placed yet.
//
// What the events leave for a planner is of two kinds. Placing units,
// spreading globals and refreshing hashes are what a new leader must do
// first; the standby keeps them queued. Re-checking every placement the
// leader wrote (SetPlacement queues a check of each) is what a new leader
// does to trust nothing it did not decide itself; the standby sets those
// checks aside and the new leader runs them right after its first plan is
// written, so they no longer delay it.

// standby is a standby's model and how far it has followed each prefix: a
// prefix's part of the model is etcd's at that revision (every event up to
// it applied, none after).
type standby struct {
	st                                    *leaderState
	unitRev, machineRev, placeRev, whyRev int64
	// Checks the leader is trusted with while it leads; run by the next
	// leader after its first plan (see above).
	deferredFirst, deferred map[[2]string]struct{}
	queuePruned             int
	// The schedule as etcd holds it, from the schedule's watch alone. The
	// four watches deliver in no common order, and a unit or machine event
	// makes the Scheduler predict the leader's deletes (a unit made
	// inactive loses its placements): events applied out of order would
	// leave a prediction standing over a later placement. So after each
	// burst the placements of every unit an event touched are set to
	// this mirror's.
	mirror  scheduleMirror
	touched map[string]struct{}
}

// scheduleMirror is a copy of etcd's schedule.
type scheduleMirror struct {
	byUnit    map[string]map[string]registry.Placement // unit -> machine -> placement
	byMachine map[string]map[string]struct{}           // machine -> units
	n         int
}

func newScheduleMirror(ps []registry.Placement) scheduleMirror {
	m := scheduleMirror{byUnit: map[string]map[string]registry.Placement{}, byMachine: map[string]map[string]struct{}{}}
	for _, p := range ps {
		m.put(p)
	}
	return m
}

func (m *scheduleMirror) put(p registry.Placement) {
	if m.byUnit[p.Name] == nil {
		m.byUnit[p.Name] = map[string]registry.Placement{}
	}
	if _, ok := m.byUnit[p.Name][p.Machine]; !ok {
		m.n++
	}
	m.byUnit[p.Name][p.Machine] = p
	if m.byMachine[p.Machine] == nil {
		m.byMachine[p.Machine] = map[string]struct{}{}
	}
	m.byMachine[p.Machine][p.Name] = struct{}{}
}

func (m *scheduleMirror) del(id, name string) {
	if _, ok := m.byUnit[name][id]; !ok {
		return
	}
	m.n--
	delete(m.byUnit[name], id)
	if len(m.byUnit[name]) == 0 {
		delete(m.byUnit, name)
	}
	delete(m.byMachine[id], name)
	if len(m.byMachine[id]) == 0 {
		delete(m.byMachine, id)
	}
}

func (m *scheduleMirror) list() []registry.Placement {
	out := make([]registry.Placement, 0, m.n)
	for _, ps := range m.byUnit {
		for _, p := range ps {
			out = append(out, p)
		}
	}
	return out
}

// touchMachine has the units the schedule places on machine id reconciled.
func (sb *standby) touchMachine(id string) {
	for name := range sb.mirror.byMachine[id] {
		sb.touched[name] = struct{}{}
	}
}

// reconcile sets the Scheduler's placements of every touched unit to the
// mirror's.
func (sb *standby) reconcile() {
	s := sb.st.sched
	for _, name := range sortedKeys(sb.touched) {
		want := sb.mirror.byUnit[name]
		for _, id := range sortedKeys(want) {
			p := want[id]
			if cur, ok := s.placement(id, name); ok && cur == p {
				continue
			}
			if cur, ok := s.orphans[[2]string{id, name}]; ok && cur == p {
				continue
			}
			s.SetPlacement(p)
		}
		if u := s.units[name]; u != nil {
			for _, id := range u.on.ids() {
				if _, ok := want[id]; !ok {
					s.RemovePlacement(id, name)
				}
			}
		}
		for _, id := range sortedKeys(s.parked[name]) {
			if _, ok := want[id]; !ok {
				s.RemovePlacement(id, name)
			}
		}
	}
	clear(sb.touched)
}

// read builds a standby's model from a full read, as a new leader's sync
// does, without planning.
func (e *Engine) readStandby(ctx context.Context) (*standby, error) {
	c, err := e.cfg.Registry.ReadCluster(ctx, true)
	if err != nil {
		return nil, err
	}
	st := e.newState()
	hashes := make(map[string]bool, len(c.Units))
	for _, u := range c.Units {
		hashes[u.Hash] = true
	}
	st.parseBodies(hashes, c.Bodies)
	st.model(c, e.cfg.Placement)
	st.reasons = c.Unplaced
	st.bodyRev, st.unitSeen = c.Rev, c.Rev
	sb := &standby{st: st, unitRev: c.Rev, machineRev: c.Rev, placeRev: c.Rev, whyRev: c.Rev,
		deferredFirst: map[[2]string]struct{}{}, deferred: map[[2]string]struct{}{},
		mirror: newScheduleMirror(c.Placements), touched: map[string]struct{}{}}
	sb.settle()
	return sb, nil
}

// standBy keeps *sbp current until ctx ends (it returns nil then) or a
// read or watch fails. A nil *sbp is read in full first; a standby kept
// from an earlier wait catches up first.
func (e *Engine) standBy(ctx context.Context, sbp **standby) error {
	if *sbp == nil {
		start := time.Now()
		sb, err := e.readStandby(ctx)
		if err != nil {
			return err
		}
		*sbp = sb
		e.log.Info("standby: model read", "units", len(sb.st.units), "machines", len(sb.st.machines), "took", time.Since(start))
	} else if _, err := e.catchUp(ctx, *sbp); err != nil {
		return err
	}
	sb := *sbp
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := sb.watch(wctx, e.cfg.Registry)
	for {
		if err := e.burst(ctx, sb, w, true); err != nil {
			return err
		}
	}
}

// standbyWatches are a standby's five watches.
type standbyWatches struct {
	units    <-chan registry.Event[registry.Unit]
	machines <-chan registry.Event[machine.Machine]
	places   <-chan registry.Event[registry.Placement]
	whys     <-chan registry.Event[string]
	bodies   <-chan registry.Event[string]
}

func (sb *standby) watch(ctx context.Context, reg *registry.Registry) standbyWatches {
	return standbyWatches{
		units:    reg.WatchUnits(ctx, sb.unitRev),
		machines: reg.WatchMachines(ctx, sb.machineRev),
		places:   reg.WatchPlacements(ctx, sb.placeRev),
		whys:     reg.WatchUnplaced(ctx, sb.whyRev),
		bodies:   reg.WatchBodies(ctx, sb.st.bodyRev),
	}
}

// burst applies the events that have arrived (waiting for the first when
// block is set) and sets their work aside. The bodies its new units need
// come from the bodies' watch; only a body not put at its unit's revision
// or before is read.
func (e *Engine) burst(ctx context.Context, sb *standby, w standbyWatches, block bool) error {
	err := sb.next(ctx, w, block)
	for err == nil {
		err = sb.next(ctx, w, false)
	}
	if !errors.Is(err, errNoEvent) {
		return err
	}
	if err := sb.st.awaitBodies(ctx, w.bodies); err != nil {
		return err
	}
	if err := e.fetchPending(ctx, sb.st); err != nil {
		return err
	}
	sb.reconcile()
	sb.settle()
	return nil
}

var errNoEvent = errors.New("no event waiting")

// closed is always ready: next selects it to wait for no event.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// next applies one event, waiting for it when block is set (errNoEvent
// when not and none is waiting).
func (sb *standby) next(ctx context.Context, w standbyWatches, block bool) error {
	var none <-chan struct{}
	if !block {
		none = closed
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-none:
		return errNoEvent
	case ev, ok := <-w.units:
		if !ok || ev.Err != nil {
			return watchErr(ev.Err)
		}
		sb.st.unitEvent(ev)
		sb.touched[ev.Key] = struct{}{}
		sb.unitRev = ev.Rev
	case ev, ok := <-w.machines:
		if !ok || ev.Err != nil {
			return watchErr(ev.Err)
		}
		sb.st.machineEvent(ev)
		sb.touchMachine(ev.Key)
		sb.machineRev = ev.Rev
	case ev, ok := <-w.places:
		if !ok || ev.Err != nil {
			return watchErr(ev.Err)
		}
		sb.placementEvent(ev)
		sb.placeRev = ev.Rev
	case ev, ok := <-w.whys:
		if !ok || ev.Err != nil {
			return watchErr(ev.Err)
		}
		if ev.Deleted {
			delete(sb.st.reasons, ev.Key)
		} else {
			sb.st.reasons[ev.Key] = ev.Value
		}
		sb.whyRev = ev.Rev
	case ev, ok := <-w.bodies:
		if !ok || ev.Err != nil {
			return watchErr(ev.Err)
		}
		sb.st.bodyEvent(ev)
	}
	return nil
}

func (sb *standby) placementEvent(ev registry.Event[registry.Placement]) {
	if !ev.Deleted {
		sb.mirror.put(ev.Value)
		sb.st.sched.SetPlacement(ev.Value)
		return
	}
	id, name, ok := strings.Cut(ev.Key, "/")
	if !ok {
		return
	}
	sb.mirror.del(id, name)
	sb.st.sched.RemovePlacement(id, name)
	delete(sb.deferred, [2]string{name, id})
	delete(sb.deferredFirst, [2]string{name, id})
}

// settle sets aside the work of the events the leader does: the checks of
// placements (run after a takeover's first plan) and the schedule writes
// the events implied (deleting the placements of a destroyed unit or a
// machine that left: the leader writes those, and its deletes arrive as
// events). Hash and state refreshes the leader has already written and
// units it placed are dropped from the queues, so that they cost nothing
// at a takeover.
func (sb *standby) settle() {
	s := sb.st.sched
	// A placement seen before its unit or machine is known is held as an
	// orphan; once both are, it is an ordinary placement.
	for k, p := range s.orphans {
		if u := s.units[p.Name]; u != nil && (s.machines[p.Machine] != nil || parkable(u, p.Machine)) {
			delete(s.orphans, k)
			s.SetPlacement(p)
		}
	}
	maps.Copy(sb.deferredFirst, s.first)
	maps.Copy(sb.deferred, s.checks)
	clear(s.first)
	clear(s.checks)
	s.plan.Ops = nil
	for name := range s.refresh {
		if s.current(name) {
			delete(s.refresh, name)
		}
	}
	// The queue holds every unit submitted since the standby began; drop
	// the placed ones now and then (amortised: when it has doubled).
	if n := len(s.queue.pending); n > 2*sb.queuePruned+1024 {
		s.queue.pending = slices.DeleteFunc(s.queue.pending, func(u *ustate) bool {
			if s.units[u.Name] == u && u.on.len() == 0 {
				return false
			}
			u.queued = false
			return true
		})
		sb.queuePruned = len(s.queue.pending)
	}
}

// current reports whether every placement of unit name carries its hash
// and desired state (a refresh would write nothing).
func (s *Scheduler) current(name string) bool {
	u := s.units[name]
	if u == nil || !u.wants() || u.Invalid != "" {
		return true
	}
	for _, p := range u.on.list {
		if p.Hash != u.Hash || p.DesiredState != u.State {
			return false
		}
	}
	for _, p := range s.parked[name] {
		if p.Hash != u.Hash || p.DesiredState != u.State {
			return false
		}
	}
	return true
}

// catchUp brings the model to etcd's current revision: per prefix, the keys
// put since the model's revision are applied; a prefix whose key count then
// differs from the model's lost keys the model did not see go, and is read
// in full and compared. It returns the prefixes it read in full.
func (e *Engine) catchUp(ctx context.Context, sb *standby) (full []string, err error) {
	reg := e.cfg.Registry
	st := sb.st
	start := time.Now()
	// The four reads go at once: at a takeover they are what stands
	// between the election and the first plan.
	var (
		us                     registry.Since[registry.Unit]
		ms                     registry.Since[machine.Machine]
		ps                     registry.Since[registry.Placement]
		ws                     registry.Since[registry.UnplacedReason]
		uerr, merr, perr, werr error
		wg                     sync.WaitGroup
	)
	wg.Go(func() { us, uerr = reg.UnitsSince(ctx, sb.unitRev) })
	wg.Go(func() { ms, merr = reg.MachinesSince(ctx, sb.machineRev) })
	wg.Go(func() { ps, perr = reg.PlacementsSince(ctx, sb.placeRev) })
	wg.Go(func() { ws, werr = reg.UnplacedSince(ctx, sb.whyRev) })
	wg.Wait()
	if err := errors.Join(uerr, merr, perr, werr); err != nil {
		return nil, err
	}
	for _, m := range ms.Changed {
		st.machineEvent(registry.Event[machine.Machine]{Key: m.ID, Value: m})
		sb.touchMachine(m.ID)
	}
	for _, u := range us.Changed {
		st.unitEvent(registry.Event[registry.Unit]{Key: u.Name, Value: u})
		sb.touched[u.Name] = struct{}{}
	}
	if err := e.fetchPending(ctx, st); err != nil {
		return nil, err
	}
	for _, p := range ps.Changed {
		sb.mirror.put(p)
		sb.touched[p.Name] = struct{}{}
	}
	for _, w := range ws.Changed {
		st.reasons[w.Name] = w.Reason
	}
	// Deletes leave nothing to read since a revision: a count that differs
	// says some were missed, and that prefix is compared in full.
	if int64(len(st.machines)) != ms.Count {
		full = append(full, "machines")
		machines, _, err := reg.Machines(ctx)
		if err != nil {
			return nil, err
		}
		st.resync(st.unitList(), machines, st.sched.placements())
	}
	if int64(len(st.units)) != us.Count {
		full = append(full, "units")
		units, _, err := reg.Units(ctx)
		if err != nil {
			return nil, err
		}
		hashes := make(map[string]bool, len(units))
		for _, u := range units {
			hashes[u.Hash] = true
		}
		if err := e.fetchBodies(ctx, st, hashes); err != nil {
			return nil, err
		}
		st.resync(units, st.machineList(), st.sched.placements())
	}
	if int64(sb.mirror.n) != ps.Count {
		full = append(full, "schedule")
		placements, _, err := reg.Placements(ctx)
		if err != nil {
			return nil, err
		}
		sb.mirror = newScheduleMirror(placements)
	}
	if len(full) > 0 {
		for name := range sb.mirror.byUnit {
			sb.touched[name] = struct{}{}
		}
		for name := range st.sched.units {
			sb.touched[name] = struct{}{}
		}
	}
	sb.reconcile()
	// Orphans (placements naming something unknown) are the mirror's too.
	for k := range st.sched.orphans {
		if _, ok := sb.mirror.byUnit[k[1]][k[0]]; !ok {
			delete(st.sched.orphans, k)
		}
	}
	if int64(len(st.reasons)) != ws.Count {
		full = append(full, "unplaced")
		reasons, _, err := reg.Unplaced(ctx)
		if err != nil {
			return nil, err
		}
		st.reasons = reasons
	}
	// Each prefix was read at its own revision; the watches resume from
	// it, and what a later full read already applied arrives again as a
	// no-op.
	// The bodies were read (when missing) after the units: their watch
	// resumes from the units' revision too.
	sb.unitRev, sb.machineRev, sb.placeRev, sb.whyRev = us.Rev, ms.Rev, ps.Rev, ws.Rev
	st.bodyRev, st.unitSeen = us.Rev, us.Rev
	sb.settle()
	e.log.Info("standby: caught up", "units", len(us.Changed), "machines", len(ms.Changed), "placements", len(ps.Changed),
		"reasons", len(ws.Changed), "read_in_full", full, "took", time.Since(start))
	return full, nil
}

func (st *leaderState) unitList() []registry.Unit {
	return slices.Collect(maps.Values(st.units))
}

func (st *leaderState) machineList() []machine.Machine {
	return slices.Collect(maps.Values(st.machines))
}

// takeOver starts a term from a standby's model: catch up with etcd, plan
// what nobody placed yet and write it, then run the checks set aside while
// following and write what they change. It returns the revisions the
// leader's watches resume from.
func (e *Engine) takeOver(ctx context.Context, lead *registry.Leadership, sb *standby) (unitRev, machineRev int64, err error) {
	start := time.Now()
	if _, err := e.catchUp(ctx, sb); err != nil {
		return 0, 0, err
	}
	st := sb.st
	st.pending = map[string]registry.Unit{}
	if err := e.decide(ctx, lead, st, start); err != nil {
		return 0, 0, err
	}
	e.mu.Lock()
	e.unplaced = st.sched.Unplaced()
	e.mu.Unlock()
	e.log.Info("standby: first plan written", "took", time.Since(start))
	maps.Copy(st.sched.first, sb.deferredFirst)
	maps.Copy(st.sched.checks, sb.deferred)
	checks := len(sb.deferred) + len(sb.deferredFirst)
	clear(sb.deferred)
	clear(sb.deferredFirst)
	vstart := time.Now()
	if err := e.decide(ctx, lead, st, vstart); err != nil {
		return 0, 0, err
	}
	e.mu.Lock()
	e.unplaced = st.sched.Unplaced()
	e.mu.Unlock()
	e.log.Info("standby: inherited schedule checked", "placements", checks, "took", time.Since(vstart))
	return sb.unitRev, sb.machineRev, nil
}

// startStandby follows the cluster into *sbp while the engine campaigns;
// the returned stop ends it and waits, leaving *sbp as far as it got.
// After a failed read or watch the model is kept and caught up (a few
// cheap reads) rather than read again in full, so that an etcd too busy to
// answer in time is not sent the largest reads there are. Without
// Config.Standby it does nothing.
func (e *Engine) startStandby(ctx context.Context, sbp **standby) (stop func()) {
	if !e.cfg.Standby {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		backoff := time.Second
		for ctx.Err() == nil {
			err := e.standBy(ctx, sbp)
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("standby: catch up after error", "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
		}
	}()
	return func() { cancel(); <-done }
}
