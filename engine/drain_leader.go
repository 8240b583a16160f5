package engine

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// drainFeed follows, for one leadership term, the drain and move records in
// etcd and, while any drain or move is in progress, the unit states agents
// publish: a make-before-break step waits for the new copy to be active, a
// break-before-make step for the old one to stop. It pokes the leader loop
// (kick) after every change and at each drain's deadline; the loop reads
// the records and states from it and decides (leaderState.stepDrains).
//
// States are followed only while something is in progress, because a
// cluster's state changes are many and drains are rare.
type drainFeed struct {
	reg  *registry.Registry
	log  *slog.Logger
	kick chan struct{} // capacity 1: pokes coalesce
	// ready is closed once the records were read the first time: the
	// term's first plan must know which machines are draining.
	ready chan struct{}

	wake chan struct{} // capacity 1: the leader loop changed wanted

	mu     sync.Mutex
	wanted bool // the leader loop waits for states (a drain done but moving a unit again)
	drains map[string]registry.DrainRecord
	moves  map[string]registry.MoveRecord
	states map[[2]string]registry.UnitState // (machine, unit), while active
}

func newDrainFeed(reg *registry.Registry, log *slog.Logger) *drainFeed {
	return &drainFeed{reg: reg, log: log, kick: make(chan struct{}, 1), wake: make(chan struct{}, 1), ready: make(chan struct{})}
}

func (f *drainFeed) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run follows the records until ctx ends, reading everything again after a
// failed read or watch.
func (f *drainFeed) run(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		err := f.follow(ctx, &first)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("drain and move records: reading them again", "err", err)
		sleep(ctx, time.Second)
	}
}

func (f *drainFeed) follow(ctx context.Context, first *bool) error {
	drains, drev, err := f.reg.Drains(ctx)
	if err != nil {
		return err
	}
	moves, mrev, err := f.reg.Moves(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.drains, f.moves, f.states = drains, moves, nil
	f.mu.Unlock()
	if *first {
		close(f.ready)
		*first = false
	}
	f.poke()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dch := f.reg.WatchDrains(wctx, drev)
	mch := f.reg.WatchMoves(wctx, mrev)
	var (
		sch        <-chan registry.Event[registry.UnitState]
		stopStates = func() {}
	)
	defer func() { stopStates() }()
	for {
		active, next := f.activity()
		switch {
		case active && sch == nil:
			states, rev, err := f.reg.AllStates(ctx)
			if err != nil {
				return err
			}
			m := make(map[[2]string]registry.UnitState, len(states))
			for _, s := range states {
				m[[2]string{s.Machine, s.Name}] = s
			}
			f.mu.Lock()
			f.states = m
			f.mu.Unlock()
			sctx, scancel := context.WithCancel(wctx)
			sch, stopStates = f.reg.WatchStates(sctx, "", rev), scancel
			f.poke()
		case !active && sch != nil:
			stopStates()
			sch, stopStates = nil, func() {}
			f.mu.Lock()
			f.states = nil
			f.mu.Unlock()
		}
		var deadline <-chan time.Time
		stopTimer := func() bool { return false }
		if !next.IsZero() {
			t := time.NewTimer(time.Until(next))
			deadline, stopTimer = t.C, t.Stop
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-dch:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			f.mu.Lock()
			if ev.Deleted {
				delete(f.drains, ev.Key)
			} else {
				ev.Value.Rev = ev.Rev
				f.drains[ev.Key] = ev.Value
			}
			f.mu.Unlock()
		case ev, ok := <-mch:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			f.mu.Lock()
			if ev.Deleted {
				delete(f.moves, ev.Key)
			} else {
				ev.Value.Rev = ev.Rev
				f.moves[ev.Key] = ev.Value
			}
			f.mu.Unlock()
		case ev, ok := <-sch:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			f.mu.Lock()
			if m, n, ok := splitStateKey(ev.Key); ok {
				if ev.Deleted {
					delete(f.states, [2]string{m, n})
				} else {
					f.states[[2]string{m, n}] = ev.Value
				}
			}
			f.mu.Unlock()
		case <-deadline:
		case <-f.wake:
			stopTimer()
			continue // only whether states are followed may change
		}
		stopTimer()
		f.poke()
	}
}

// activity reports whether a drain or move is in progress, and the next
// deadline of a drain (zero: none).
func (f *drainFeed) activity() (active bool, next time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	active = len(f.moves) > 0 || f.wanted
	for _, d := range f.drains {
		active = active || d.Draining()
		// A drain done may still hold units that had nowhere to go: they
		// stop at its deadline too.
		if !d.Deadline.IsZero() && d.Deadline.After(now) && (next.IsZero() || d.Deadline.Before(next)) {
			next = d.Deadline
		}
	}
	return active, next
}

func splitStateKey(k string) (machine, unit string, ok bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:], i > 0 && i < len(k)-1
		}
	}
	return "", "", false
}

// want tells the feed whether the leader loop waits for states beyond what
// the records say: a drain marked done moves a unit again (a machine joined
// that takes a unit which had nowhere to go).
func (f *drainFeed) want(v bool) {
	f.mu.Lock()
	changed := f.wanted != v
	f.wanted = v
	f.mu.Unlock()
	if changed {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// records returns copies of the drain and move records.
func (f *drainFeed) records() (map[string]registry.DrainRecord, map[string]registry.MoveRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.drains), maps.Clone(f.moves)
}

// state is a StateFunc over the followed states.
func (f *drainFeed) state(machine, unit string) (registry.UnitState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states == nil {
		// Not followed (yet): a copy may run, and is not known active.
		return registry.UnitState{Name: unit, Machine: machine, ActiveState: "unknown"}, true
	}
	s, ok := f.states[[2]string{machine, unit}]
	return s, ok
}

// drained notes a drain marked done, before its watch event arrives, so
// that it is not marked twice.
func (f *drainFeed) drained(d registry.DrainRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.drains[d.Machine]; ok && cur.Rev == d.Rev {
		f.drains[d.Machine] = d
	}
}

// moved notes a move record deleted, before its watch event arrives.
func (f *drainFeed) moved(m registry.MoveRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.moves[m.Unit]; ok && cur.Rev == m.Rev {
		delete(f.moves, m.Unit)
	}
}

// drainRun is what a term's leader loop keeps about drains: the feed, and
// the statuses of the last step, acted on once its plan is written.
type drainRun struct {
	feed   *drainFeed
	drains []DrainStatus
	moves  []MoveStatus
}

// kick is the feed's poke channel; nil (never ready) without a feed.
func (st *leaderState) drainKick() <-chan struct{} {
	if st.dr.feed == nil {
		return nil
	}
	return st.dr.feed.kick
}

// stepDrains brings the scheduler's drains and moves in line with the feed
// and takes their next steps; the next Plan carries the writes.
func (st *leaderState) stepDrains(now time.Time) {
	if st.dr.feed == nil {
		return
	}
	drains, moves := st.dr.feed.records()
	s := st.sched
	for id := range s.dr.drains {
		if _, ok := drains[id]; !ok {
			s.RemoveDrain(id)
		}
	}
	for _, id := range sortedKeys(drains) {
		s.SetDrain(drains[id])
	}
	for name := range s.dr.moves {
		if _, ok := moves[name]; !ok {
			s.RemoveMove(name)
		}
	}
	for _, name := range sortedKeys(moves) {
		s.SetMove(moves[name])
	}
	st.dr.drains, st.dr.moves = s.StepDrains(now, st.dr.feed.state)
	moving := false
	for _, ds := range st.dr.drains {
		moving = moving || len(ds.Moving) > 0
	}
	st.dr.feed.want(moving)
}

// finishDrains, once the step's plan is written, marks drains with nothing
// movable left done and ends moves that are over. A record that changed
// meanwhile (undrained, drained again) fails the write's fence: that is
// logged, and the next step decides again.
func (e *Engine) finishDrains(ctx context.Context, lead *registry.Leadership, st *leaderState) {
	if st.dr.feed == nil {
		return
	}
	for _, ds := range st.dr.drains {
		rec, ok := st.sched.dr.drains[ds.Machine]
		if !ok || !ds.Done || !rec.Draining() {
			continue
		}
		at := time.Now().UTC()
		if err := e.cfg.Registry.SetDrainDone(ctx, lead, rec, at); err != nil {
			e.log.Info("drain not marked done", "machine", ds.Machine, "err", err)
			continue
		}
		rec.Done = at
		st.dr.feed.drained(rec)
		st.sched.SetDrain(rec)
		e.log.Info("machine drained", "machine", ds.Machine, "staying", sortedKeys(ds.Staying), "by", rec.By,
			"took", at.Sub(rec.Since).Round(time.Millisecond))
	}
	for _, ms := range st.dr.moves {
		rec, ok := st.sched.dr.moves[ms.Unit]
		if !ok || !ms.Over {
			continue
		}
		if err := e.cfg.Registry.EndMove(ctx, lead, rec); err != nil {
			e.log.Info("move record not deleted", "unit", ms.Unit, "err", err)
			continue
		}
		st.dr.feed.moved(rec)
		st.sched.RemoveMove(ms.Unit)
		if ms.Err != "" {
			e.log.Warn("move abandoned", "unit", ms.Unit, "to", rec.To, "why", ms.Err)
		} else {
			e.log.Info("unit moved", "unit", ms.Unit, "to", rec.To, "took", time.Since(rec.Since).Round(time.Millisecond))
		}
	}
	st.dr.drains, st.dr.moves = nil, nil
}

// LoadScheduler reads the cluster from etcd (units and their bodies,
// present machines, the schedule, drains) into a Scheduler, for answers that
// need the engine's rules outside the leader: a drain's plan
// (PreviewDrain), whether a move may be made (CheckMove), why a unit is
// where it is (Explain). policy and atMostOnceDefault are the engine's
// (Config.Placement, Config.AtMostOnceDefault), so that the answers are
// the leader's. It costs a full read of the cluster.
func LoadScheduler(ctx context.Context, reg *registry.Registry, policy Policy, atMostOnceDefault bool) (*Scheduler, error) {
	e := &Engine{cfg: Config{Registry: reg, Placement: policy, AtMostOnceDefault: atMostOnceDefault}}
	units, _, err := reg.Units(ctx)
	if err != nil {
		return nil, err
	}
	machines, _, err := reg.Machines(ctx)
	if err != nil {
		return nil, err
	}
	placements, _, err := reg.Placements(ctx)
	if err != nil {
		return nil, err
	}
	drains, _, err := reg.Drains(ctx)
	if err != nil {
		return nil, err
	}
	st := e.newState()
	hashes := make(map[string]bool, len(units))
	for _, u := range units {
		hashes[u.Hash] = true
	}
	if err := e.fetchBodies(ctx, st, hashes); err != nil {
		return nil, err
	}
	st.model(registry.Cluster{Units: units, Machines: machines, Placements: placements}, policy)
	s := st.sched
	for _, id := range sortedKeys(drains) {
		s.SetDrain(drains[id])
	}
	return s, nil
}
