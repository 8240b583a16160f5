package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// Rolling updates (registry.Rollout): the engine leader steps each active
// rollout along. All it needs is in etcd: the rollout record (steps and
// their states), the unit records (their markers say which placements
// still lag at the old body) and the states agents publish (the hash a
// copy runs, whether it is active, its health check's result). A new
// leader reads them and carries on; only how long a copy has been seen
// healthy lives in memory, so after a failover a copy in flight waits its
// full MinHealthy again.

// rolloutTick is how often the leader looks at active rollouts' copies.
const rolloutTick = 500 * time.Millisecond

// rolloutGrace is how long beyond MinHealthy a released copy may take to
// become healthy (or a reverted one to run again) before it counts as
// failed.
const rolloutGrace = 2 * time.Minute

func (u *ustate) hashOn(machine string) string { return u.Rollout.HashOn(u.Hash, machine) }

// rollouter runs the rollouts of one leadership term.
type rollouter struct {
	reg  *registry.Registry
	lead *registry.Leadership
	log  *slog.Logger
	now  func() time.Time
	good map[string]time.Time // step -> since when this term saw its copy healthy
	bad  map[string]time.Time // step -> since when its health check fails
}

func newRollouter(reg *registry.Registry, lead *registry.Leadership, log *slog.Logger, now func() time.Time) *rollouter {
	return &rollouter{reg: reg, lead: lead, log: log.With("component", "rollout"), now: now,
		good: map[string]time.Time{}, bad: map[string]time.Time{}}
}

// runRollouts steps the active rollouts along until ctx ends or the
// leadership is lost: at each change of a rollout record, and every
// rolloutTick while one is active.
func (e *Engine) runRollouts(ctx context.Context, lead *registry.Leadership) {
	c := newRollouter(e.cfg.Registry, lead, e.log, time.Now)
	for ctx.Err() == nil {
		err := c.follow(ctx)
		if errors.Is(err, registry.ErrNotLeader) || ctx.Err() != nil {
			return
		}
		c.log.Warn("rollouts; reading again", "err", err)
		sleep(ctx, time.Second)
	}
}

// follow watches the rollout records and syncs the active ones until an
// error.
func (c *rollouter) follow(ctx context.Context) error {
	ros, rev, err := c.reg.Rollouts(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := c.reg.WatchRollouts(wctx, rev)
	ticker := time.NewTicker(rolloutTick)
	defer ticker.Stop()
	for {
		active := false
		for _, ro := range ros {
			if !ro.Active() {
				continue
			}
			active = true
			if err := c.sync(ctx, ro); err != nil && !errors.Is(err, registry.ErrConflict) {
				return err
			}
		}
		var tick <-chan time.Time
		if active {
			tick = ticker.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
		case <-tick:
		}
		if ros, _, err = c.reg.Rollouts(ctx); err != nil {
			return err
		}
	}
}

// rolloutView is what etcd says about a rollout's units right now.
type rolloutView struct {
	units      map[string]registry.Unit // missing: destroyed
	placements map[string][]string      // unit -> machines it is scheduled on
	states     map[[2]string]registry.UnitState
	// absent holds the machines of global steps in flight or next in line
	// that are not present: no copy there can be seen, and none need be.
	absent map[string]bool
}

// gone says why a global unit's step has no copy to wait for: its machine
// is absent (the placement, parked, carries the new body when it returns)
// or the unit is not scheduled there any more; "" when it has one.
func (v rolloutView) gone(s registry.RolloutStep) string {
	switch {
	case s.Machine == "":
		return ""
	case v.absent[s.Machine]:
		return "machine absent; its copy follows when it returns"
	case !slices.Contains(v.placements[s.Unit], s.Machine):
		return "no longer scheduled on this machine"
	}
	return ""
}

// read gathers the view of ro's units.
func (c *rollouter) read(ctx context.Context, ro registry.Rollout) (rolloutView, error) {
	v := rolloutView{units: map[string]registry.Unit{}, placements: map[string][]string{}, states: map[[2]string]registry.UnitState{}, absent: map[string]bool{}}
	var names []string
	for _, ru := range ro.Units {
		u, err := c.reg.Unit(ctx, ru.Name)
		if errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return v, err
		}
		v.units[ru.Name] = u
		ps, err := c.reg.PlacementsOf(ctx, ru.Name)
		if err != nil {
			return v, err
		}
		for _, p := range ps {
			v.placements[ru.Name] = append(v.placements[ru.Name], p.Machine)
		}
		names = append(names, ru.Name)
	}
	// Presence of the machines a global step waits on or is about to: a
	// few keys, however many machines the unit runs on.
	next := 0
	for _, s := range ro.Steps {
		inLine := s.State == registry.StepPending && next < max(ro.MaxUnavailable, 1)
		if s.Machine == "" || !(s.State == registry.StepUpdating || s.State == registry.StepReverting || inLine) {
			continue
		}
		if inLine {
			next++
		}
		if _, err := c.reg.Machine(ctx, s.Machine); errors.Is(err, registry.ErrNotFound) {
			v.absent[s.Machine] = true
		} else if err != nil {
			return v, err
		}
	}
	// States of the copies in flight only, each where its unit is placed:
	// decide looks at no other, and every unit against every machine
	// (StatesOf's product) would be units x machines reads every tick.
	inFlight := map[string]bool{}
	for _, s := range ro.Steps {
		if s.State == registry.StepUpdating || s.State == registry.StepReverting {
			inFlight[s.Unit] = true
		}
	}
	for _, name := range names {
		if !inFlight[name] || len(v.placements[name]) == 0 {
			continue
		}
		states, err := c.reg.StatesOf(ctx, []string{name}, v.placements[name])
		if err != nil {
			return v, err
		}
		for _, s := range states {
			v.states[[2]string{s.Name, s.Machine}] = s
		}
	}
	return v, nil
}

// sync reads ro's units, decides and writes the next steps.
func (c *rollouter) sync(ctx context.Context, ro registry.Rollout) error {
	v, err := c.read(ctx, ro)
	if err != nil {
		return err
	}
	next, units, changed := c.decide(ro, v)
	if !changed {
		return nil
	}
	if _, err := c.reg.AdvanceRollout(ctx, c.lead, next, units); err != nil {
		return err
	}
	c.logChanges(ro, next)
	return nil
}

func (c *rollouter) logChanges(prev, next registry.Rollout) {
	for i, s := range next.Steps {
		if i >= len(prev.Steps) || prev.Steps[i].State != s.State {
			c.log.Info("rollout step", "rollout", next.ID, "unit", s.Unit, "machine", s.Machine, "state", s.State, "reason", s.Reason)
		}
	}
	if prev.Phase != next.Phase {
		c.log.Info("rollout phase", "rollout", next.ID, "from", prev.Phase, "to", next.Phase, "message", next.Message)
	}
}

func stepKey(id string, s registry.RolloutStep) string {
	return id + "\x00" + s.Unit + "\x00" + s.Machine
}

// decide is the controller's logic, free of I/O: from a rollout and the
// view of its units it returns the rollout's next record and the unit
// records to write with it (changed is false when nothing is to be
// written). It is level-based: deciding again on the same input writes
// nothing new.
func (c *rollouter) decide(ro registry.Rollout, v rolloutView) (next registry.Rollout, units []registry.Unit, changed bool) {
	now := c.now()
	next = ro
	next.Steps = slices.Clone(ro.Steps)
	touched := map[string]registry.Unit{}
	unitOf := func(name string) (registry.Unit, bool) {
		if u, ok := touched[name]; ok {
			return u, true
		}
		u, ok := v.units[name]
		if ok && u.Rollout != nil {
			m := *u.Rollout
			m.Updated = slices.Clone(m.Updated)
			u.Rollout = &m
		}
		return u, ok && u.Rollout != nil && u.Rollout.ID == ro.ID
	}
	set := func(i int, state, reason string) {
		next.Steps[i].State, next.Steps[i].Since, next.Steps[i].Reason = state, now, reason
		delete(c.good, stepKey(ro.ID, next.Steps[i]))
		delete(c.bad, stepKey(ro.ID, next.Steps[i]))
		changed = true
	}

	// A global unit's machines are its steps; one that joined meanwhile
	// lags at the old body and gets a step of its own.
	for _, ru := range ro.Units {
		if !ru.Global {
			continue
		}
		for _, m := range v.placements[ru.Name] {
			if !slices.ContainsFunc(next.Steps, func(s registry.RolloutStep) bool { return s.Unit == ru.Name && s.Machine == m }) {
				next.Steps = append(next.Steps, registry.RolloutStep{Unit: ru.Name, Machine: m, State: registry.StepPending, Since: now})
				changed = true
			}
		}
	}

	// Watch the copies in flight.
	for i, s := range next.Steps {
		ru, _ := ro.Unit(s.Unit)
		u, ok := unitOf(s.Unit)
		if !ok && (s.State == registry.StepUpdating || s.State == registry.StepReverting) {
			// Destroyed, or its marker is gone: nothing left to watch.
			set(i, map[string]string{registry.StepUpdating: registry.StepHealthy, registry.StepReverting: registry.StepReverted}[s.State], "unit destroyed")
			continue
		}
		if why := v.gone(s); why != "" && (s.State == registry.StepUpdating || s.State == registry.StepReverting) {
			set(i, map[string]string{registry.StepUpdating: registry.StepHealthy, registry.StepReverting: registry.StepReverted}[s.State], why)
			continue
		}
		switch s.State {
		case registry.StepUpdating:
			if u.DesiredState != registry.StateLaunched {
				set(i, registry.StepHealthy, "not launched")
				continue
			}
			st, found := v.copyOf(s, ro.To)
			key := stepKey(ro.ID, s)
			good := found && st.ActiveState == "active" && (ro.HealthCheck == "" || st.Health == registry.HealthPass)
			failing := found && strings.HasPrefix(st.Health, registry.HealthFail)
			switch {
			case found && st.ActiveState == "failed":
				set(i, registry.StepFailed, fmt.Sprintf("the new copy failed (%s)", st.SubState))
				continue
			case good:
				delete(c.bad, key)
				if _, ok := c.good[key]; !ok {
					c.good[key] = now
				}
				if now.Sub(c.good[key]) >= ro.MinHealthy {
					set(i, registry.StepHealthy, "")
				}
				continue
			case failing:
				delete(c.good, key)
				if _, ok := c.bad[key]; !ok {
					c.bad[key] = now
				}
				if now.Sub(c.bad[key]) >= ro.MinHealthy {
					set(i, registry.StepFailed, "health check: "+st.Health)
					continue
				}
			default:
				delete(c.good, key)
				delete(c.bad, key)
			}
			if now.Sub(s.Since) > ro.MinHealthy+rolloutGrace {
				set(i, registry.StepFailed, fmt.Sprintf("not healthy within %s", ro.MinHealthy+rolloutGrace))
			}
		case registry.StepReverting:
			st, found := v.copyOf(s, ru.From)
			switch {
			case u.DesiredState != registry.StateLaunched:
				set(i, registry.StepReverted, "not launched")
			case found && st.ActiveState == "active":
				set(i, registry.StepReverted, "")
			case now.Sub(s.Since) > ro.MinHealthy+rolloutGrace:
				set(i, registry.StepReverted, "the old body did not become active again")
			}
		}
	}

	count := func(states ...string) int {
		n := 0
		for _, s := range next.Steps {
			if slices.Contains(states, s.State) {
				n++
			}
		}
		return n
	}
	// release moves step i forward (to the new body) or back.
	release := func(i int, forward bool) {
		s := next.Steps[i]
		ru, _ := ro.Unit(s.Unit)
		u, ok := unitOf(s.Unit)
		if !ok {
			set(i, map[bool]string{true: registry.StepHealthy, false: registry.StepReverted}[forward], "unit destroyed")
			return
		}
		m := u.Rollout
		switch {
		case s.Machine == "" && forward:
			m.Hash = ""
		case s.Machine == "":
			m.Hash = ru.From
		case forward:
			if !slices.Contains(m.Updated, s.Machine) {
				m.Updated = append(m.Updated, s.Machine)
				slices.Sort(m.Updated)
			}
		default:
			m.Updated = slices.DeleteFunc(m.Updated, func(id string) bool { return id == s.Machine })
		}
		touched[u.Name] = u
		// A step with no copy to wait for is through at once, without
		// taking a place of MaxUnavailable.
		why := v.gone(s)
		switch {
		case forward && why != "":
			set(i, registry.StepHealthy, why)
		case forward:
			set(i, registry.StepUpdating, "")
		case why != "":
			set(i, registry.StepReverted, why)
		default:
			set(i, registry.StepReverting, "")
		}
	}

	switch next.Phase {
	case registry.RolloutRunning:
		if i := slices.IndexFunc(next.Steps, func(s registry.RolloutStep) bool { return s.State == registry.StepFailed }); i >= 0 {
			s := next.Steps[i]
			what := s.Unit
			if s.Machine != "" {
				what += " on " + s.Machine
			}
			next.Message = fmt.Sprintf("%s: %s", what, s.Reason)
			if ro.AutoRevert {
				next.Phase, next.Reverting = registry.RolloutReverting, now
				next.Message += "; reverting"
			} else {
				next.Phase = registry.RolloutFailed
				next.Message += "; fleetctl rollout resume to wait for it again, undo to revert"
			}
			changed = true
			break
		}
		if !next.Paused {
			for i := range next.Steps {
				if count(registry.StepUpdating) >= max(ro.MaxUnavailable, 1) {
					break
				}
				if next.Steps[i].State == registry.StepPending {
					release(i, true)
				}
			}
		}
		if count(registry.StepHealthy) == len(next.Steps) {
			units = c.finish(ro, v, touched, false)
			next.Phase, next.Ended, next.Message, changed = registry.RolloutDone, now, "", true
		}
	case registry.RolloutReverting:
		if !next.Paused {
			// Failed copies are down already: they go back first, whatever
			// the budget; then the rest, the last replaced first.
			for i, s := range next.Steps {
				if s.State == registry.StepFailed {
					release(i, false)
				}
			}
			for _, state := range []string{registry.StepUpdating, registry.StepHealthy} {
				for i := len(next.Steps) - 1; i >= 0; i-- {
					if count(registry.StepReverting) >= max(ro.MaxUnavailable, 1) {
						break
					}
					if next.Steps[i].State == state {
						release(i, false)
					}
				}
			}
		}
		if count(registry.StepUpdating, registry.StepHealthy, registry.StepFailed, registry.StepReverting) == 0 {
			units = c.finish(ro, v, touched, true)
			next.Phase, next.Ended, changed = registry.RolloutReverted, now, true
		}
	}
	if units == nil {
		for _, name := range sortedKeys(touched) {
			units = append(units, touched[name])
		}
	}
	if changed {
		next.Changed = now
	}
	return next, units, changed
}

// finish drops the markers of ro's units; reverted puts their old hash
// back on them. Their placements carry that body already, so nothing
// restarts.
func (c *rollouter) finish(ro registry.Rollout, v rolloutView, touched map[string]registry.Unit, reverted bool) []registry.Unit {
	var out []registry.Unit
	for _, ru := range ro.Units {
		u, ok := touched[ru.Name]
		if !ok {
			if u, ok = v.units[ru.Name]; !ok {
				continue
			}
		}
		if u.Rollout == nil || u.Rollout.ID != ro.ID {
			continue
		}
		u.Rollout = nil
		if reverted {
			u.Hash = ru.From
		}
		out = append(out, u)
	}
	return out
}

// copyOf returns the published state of step s's copy running body hash:
// on the step's machine, or for a unit that is not global on any machine
// it is scheduled on.
func (v rolloutView) copyOf(s registry.RolloutStep, hash string) (registry.UnitState, bool) {
	machines := v.placements[s.Unit]
	if s.Machine != "" {
		machines = []string{s.Machine}
	}
	for _, m := range machines {
		if st, ok := v.states[[2]string{s.Unit, m}]; ok && st.Hash == hash {
			return st, true
		}
	}
	return registry.UnitState{}, false
}
