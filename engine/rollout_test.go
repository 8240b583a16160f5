package engine

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// fakeClock is the controller's clock in these tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)} }
func testRollouter(c *fakeClock) *rollouter {
	return newRollouter(nil, nil, slog.New(slog.DiscardHandler), c.now)
}

// rolloutFixture is a rollout of web@1..n from "old" to "new", each unit on
// machine m<i>, every copy active on the body its placement carries.
type rolloutFixture struct {
	ro registry.Rollout
	v  rolloutView
}

func newRolloutFixture(n, maxUnavailable int, autoRevert bool) *rolloutFixture {
	f := &rolloutFixture{
		ro: registry.Rollout{ID: "web@*.service", To: "new", MaxUnavailable: maxUnavailable, MinHealthy: 10 * time.Second,
			AutoRevert: autoRevert, Phase: registry.RolloutRunning},
		v: rolloutView{units: map[string]registry.Unit{}, placements: map[string][]string{}, states: map[[2]string]registry.UnitState{}},
	}
	for i := 1; i <= n; i++ {
		name, m := "web@"+string(rune('0'+i))+".service", "m"+string(rune('0'+i))
		f.ro.Units = append(f.ro.Units, registry.RolloutUnit{Name: name, From: "old"})
		f.ro.Steps = append(f.ro.Steps, registry.RolloutStep{Unit: name, State: registry.StepPending})
		f.v.units[name] = registry.Unit{Name: name, Hash: "new", DesiredState: registry.StateLaunched,
			Rollout: &registry.UnitRollout{ID: f.ro.ID, Hash: "old"}}
		f.v.placements[name] = []string{m}
	}
	f.settle("active", "")
	return f
}

// apply stores a decision as etcd would, and has every copy run the body
// its placement now carries, in state active (health as given).
func (f *rolloutFixture) apply(next registry.Rollout, units []registry.Unit) {
	f.ro = next
	for _, u := range units {
		f.v.units[u.Name] = u
	}
}

func (f *rolloutFixture) settle(active, health string) {
	for name, u := range f.v.units {
		for _, m := range f.v.placements[name] {
			f.v.states[[2]string{name, m}] = registry.UnitState{Name: name, Machine: m, Hash: u.Rollout.HashOn(u.Hash, m), ActiveState: active, Health: health}
		}
	}
}

func (f *rolloutFixture) stepStates() []string {
	var out []string
	for _, s := range f.ro.Steps {
		out = append(out, s.State)
	}
	return out
}

func TestRolloutStepsOneAtATime(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	f := newRolloutFixture(3, 1, false)

	next, units, changed := c.decide(f.ro, f.v)
	require.True(t, changed)
	require.Equal(t, []string{"updating", "pending", "pending"}, stepsOf(next))
	require.Len(t, units, 1)
	require.Equal(t, "web@1.service", units[0].Name)
	require.Empty(t, units[0].Rollout.Hash, "its placement now carries the new body")
	f.apply(next, units)

	// Deciding again on the same input writes nothing.
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed)

	// The new copy is active, but not yet for MinHealthy.
	f.settle("active", "")
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed)
	clock.add(9 * time.Second)
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed)
	// It stopped being active for a moment: the wait starts again.
	f.v.states[[2]string{"web@1.service", "m1"}] = registry.UnitState{Hash: "new", ActiveState: "activating"}
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed)
	f.settle("active", "")
	clock.add(5 * time.Second)
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed, "MinHealthy counts from the last time it became active")

	for want := range [][]string{{"healthy", "updating", "pending"}, {"healthy", "healthy", "updating"}} {
		clock.add(10 * time.Second)
		next, units, changed = c.decide(f.ro, f.v)
		require.True(t, changed)
		require.Equal(t, [][]string{{"healthy", "updating", "pending"}, {"healthy", "healthy", "updating"}}[want], stepsOf(next))
		f.apply(next, units)
		f.settle("active", "")
		_, _, changed = c.decide(f.ro, f.v) // starts the MinHealthy wait
		require.False(t, changed)
	}
	clock.add(10 * time.Second)
	next, units, changed = c.decide(f.ro, f.v)
	require.True(t, changed)
	require.Equal(t, registry.RolloutDone, next.Phase)
	require.Len(t, units, 3)
	for _, u := range units {
		require.Nil(t, u.Rollout, "markers are dropped at the end")
		require.Equal(t, "new", u.Hash)
	}
}

func stepsOf(ro registry.Rollout) []string {
	var out []string
	for _, s := range ro.Steps {
		out = append(out, s.State)
	}
	return out
}

func TestRolloutMaxUnavailable(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	f := newRolloutFixture(5, 2, false)
	for range 20 {
		next, units, changed := c.decide(f.ro, f.v)
		if changed {
			f.apply(next, units)
		}
		updating := 0
		for _, s := range f.ro.Steps {
			if s.State == registry.StepUpdating {
				updating++
			}
		}
		require.LessOrEqual(t, updating, 2)
		f.settle("active", "")
		clock.add(6 * time.Second)
	}
	require.Equal(t, registry.RolloutDone, f.ro.Phase)
}

func TestRolloutPausedReleasesNothing(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	f := newRolloutFixture(2, 1, false)
	f.ro.Paused = true
	_, _, changed := c.decide(f.ro, f.v)
	require.False(t, changed)
}

func TestRolloutAutoRevert(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	f := newRolloutFixture(3, 1, true)
	f.ro.HealthCheck = "curl -f http://localhost/"
	// The instances' template took the new body with them; it gets the old
	// one back with them (the loop at the end).
	f.ro.Units = append(f.ro.Units, registry.RolloutUnit{Name: "web@.service", From: "old", Template: true})
	f.v.units["web@.service"] = registry.Unit{Name: "web@.service", Hash: "new", DesiredState: registry.StateInactive,
		Rollout: &registry.UnitRollout{ID: f.ro.ID, Hash: "old"}}
	step := func() bool {
		next, units, changed := c.decide(f.ro, f.v)
		if changed {
			f.apply(next, units)
		}
		return changed
	}
	// web@1 goes through, healthy.
	require.True(t, step())
	f.settle("active", registry.HealthPass)
	step()
	clock.add(10 * time.Second)
	require.True(t, step())
	require.Equal(t, []string{"healthy", "updating", "pending"}, f.stepStates())

	// web@2's new copy runs but fails its check: for MinHealthy, then it
	// counts as failed and the rollout reverts.
	f.settle("active", registry.HealthPass)
	f.v.states[[2]string{"web@2.service", "m2"}] = registry.UnitState{Hash: "new", ActiveState: "active", Health: "fail: exit status 1"}
	require.False(t, step())
	clock.add(10 * time.Second)
	require.True(t, step())
	require.Equal(t, registry.RolloutReverting, f.ro.Phase)
	require.Equal(t, clock.now(), f.ro.Reverting)
	require.Contains(t, f.ro.Message, "health check: fail: exit status 1")

	// The failed copy goes back first; web@1 waits for it (MaxUnavailable).
	require.True(t, step())
	require.Equal(t, []string{"healthy", "reverting", "pending"}, f.stepStates())
	require.Equal(t, "old", f.v.units["web@2.service"].Rollout.Hash)
	f.settle("active", "")
	require.True(t, step())
	require.Equal(t, []string{"reverting", "reverted", "pending"}, f.stepStates())
	f.settle("active", "")
	require.True(t, step())
	require.Equal(t, registry.RolloutReverted, f.ro.Phase)
	for _, u := range f.v.units {
		require.Nil(t, u.Rollout)
		require.Equal(t, "old", u.Hash, "the old body is the unit's again")
	}
}

func TestRolloutFailedCopyWithoutRevert(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	f := newRolloutFixture(2, 1, false)
	next, units, _ := c.decide(f.ro, f.v)
	f.apply(next, units)
	f.v.states[[2]string{"web@1.service", "m1"}] = registry.UnitState{Hash: "new", ActiveState: "failed", SubState: "failed"}
	next, units, changed := c.decide(f.ro, f.v)
	require.True(t, changed)
	f.apply(next, units)
	require.Equal(t, registry.RolloutFailed, f.ro.Phase)
	require.Equal(t, []string{"failed", "pending"}, f.stepStates())
	_, _, changed = c.decide(f.ro, f.v)
	require.False(t, changed, "a failed rollout waits for the operator")
}

// A global unit's placements carry the old body on machines the rollout has
// not reached, the new one on the rest.
func TestScheduleLagsGlobalPlacements(t *testing.T) {
	g := mkUnit(t, "g.service", "Global=true")
	g.Hash = "new"
	g.Rollout = &registry.UnitRollout{ID: "g.service", Hash: "old", Updated: []string{"m2"}}
	var ps []registry.Placement
	for _, id := range []string{"m1", "m2", "m3"} {
		ps = append(ps, registry.Placement{Machine: id, Name: "g.service", Hash: "old", DesiredState: registry.StateLaunched})
	}
	s := NewScheduler(Snapshot{Machines: machines("m1", "m2", "m3"), Units: []Unit{g}, Placements: ps})
	ps = apply(ps, s.Plan())
	require.Equal(t, []string{"old", "new", "old"}, hashes(ps))

	g.Rollout = &registry.UnitRollout{ID: "g.service", Hash: "old", Updated: []string{"m1", "m2"}}
	s.SetUnit(g)
	plan := s.Plan()
	require.Len(t, plan.Ops, 1, "only the machine whose turn came is rewritten")
	ps = apply(ps, plan)
	require.Equal(t, []string{"new", "new", "old"}, hashes(ps))

	// A machine joining mid-rollout gets the old body until its turn.
	s.SetMachine(machine.Machine{ID: "m4"})
	ps = apply(ps, s.Plan())
	require.Equal(t, []string{"new", "new", "old", "old"}, hashes(ps))

	g.Rollout = nil
	s.SetUnit(g)
	ps = apply(ps, s.Plan())
	require.Equal(t, []string{"new", "new", "new", "new"}, hashes(ps))
}

func hashes(ps []registry.Placement) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Hash)
	}
	return out
}

// A global unit is rolled out machine by machine: each step adds its machine
// to the marker's updated list, and a machine that joins gets a step.
func TestRolloutGlobalMachineByMachine(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	ro := registry.Rollout{ID: "g.service", To: "new", MaxUnavailable: 1, MinHealthy: time.Second, Phase: registry.RolloutRunning,
		Units: []registry.RolloutUnit{{Name: "g.service", From: "old", Global: true}},
		Steps: []registry.RolloutStep{{Unit: "g.service", Machine: "m1", State: registry.StepPending}, {Unit: "g.service", Machine: "m2", State: registry.StepPending}}}
	v := rolloutView{
		units:      map[string]registry.Unit{"g.service": {Name: "g.service", Hash: "new", DesiredState: registry.StateLaunched, Rollout: &registry.UnitRollout{ID: "g.service", Hash: "old"}}},
		placements: map[string][]string{"g.service": {"m1", "m2"}},
		states:     map[[2]string]registry.UnitState{},
	}
	publish := func() {
		u := v.units["g.service"]
		for _, m := range v.placements["g.service"] {
			v.states[[2]string{"g.service", m}] = registry.UnitState{Hash: u.Rollout.HashOn(u.Hash, m), ActiveState: "active"}
		}
	}
	step := func() bool {
		next, units, changed := c.decide(ro, v)
		if changed {
			ro = next
			for _, u := range units {
				v.units[u.Name] = u
			}
		}
		publish()
		return changed
	}
	publish()
	require.True(t, step())
	require.Equal(t, []string{"m1"}, v.units["g.service"].Rollout.Updated)
	require.Equal(t, "old", v.states[[2]string{"g.service", "m2"}].Hash, "m2 still runs the old body")

	// m3 joins: it gets the old body and a step of its own.
	v.placements["g.service"] = append(v.placements["g.service"], "m3")
	publish()
	require.True(t, step())
	require.Len(t, ro.Steps, 3)
	require.Equal(t, "old", v.states[[2]string{"g.service", "m3"}].Hash)

	for range 10 {
		clock.add(time.Second)
		step()
	}
	require.Equal(t, registry.RolloutDone, ro.Phase)
	require.Nil(t, v.units["g.service"].Rollout)
	require.Equal(t, []string{"healthy", "healthy", "healthy"}, stepsOf(ro))
}

// A global step whose machine is absent has no copy to wait for: it is
// through at once and takes no place of MaxUnavailable.
func TestRolloutGlobalAbsentMachine(t *testing.T) {
	clock := newFakeClock()
	c := testRollouter(clock)
	ro := registry.Rollout{ID: "g.service", To: "new", MaxUnavailable: 1, MinHealthy: time.Second, Phase: registry.RolloutRunning,
		Units: []registry.RolloutUnit{{Name: "g.service", From: "old", Global: true}},
		Steps: []registry.RolloutStep{{Unit: "g.service", Machine: "m1", State: registry.StepPending}, {Unit: "g.service", Machine: "m2", State: registry.StepPending}}}
	v := rolloutView{
		units:      map[string]registry.Unit{"g.service": {Name: "g.service", Hash: "new", DesiredState: registry.StateLaunched, Rollout: &registry.UnitRollout{ID: "g.service", Hash: "old"}}},
		placements: map[string][]string{"g.service": {"m1", "m2"}},
		states:     map[[2]string]registry.UnitState{},
		absent:     map[string]bool{"m1": true},
	}
	next, units, changed := c.decide(ro, v)
	require.True(t, changed)
	require.Equal(t, []string{"healthy", "updating"}, stepsOf(next))
	require.Contains(t, next.Steps[0].Reason, "machine absent")
	require.Equal(t, []string{"m1", "m2"}, units[0].Rollout.Updated, "the parked placement carries the new body for when m1 returns")
}
