package engine

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// drainHarness is a scheduler, the schedule as etcd would hold it after
// each plan, and the unit states agents would publish (set by the test).
type drainHarness struct {
	t      *testing.T
	s      *Scheduler
	etcd   map[[2]string]registry.Placement
	states map[[2]string]registry.UnitState
	now    time.Time
}

func newDrainHarness(t *testing.T, snap Snapshot) *drainHarness {
	h := &drainHarness{t: t, s: NewScheduler(snap), etcd: map[[2]string]registry.Placement{},
		states: map[[2]string]registry.UnitState{}, now: time.Unix(1e9, 0)}
	h.apply(h.s.Plan())
	return h
}

func (h *drainHarness) apply(p Plan) Plan {
	for _, op := range p.Ops {
		k := [2]string{op.Placement.Machine, op.Placement.Name}
		if op.Put {
			h.etcd[k] = op.Placement
		} else {
			delete(h.etcd, k)
		}
	}
	require.ElementsMatch(h.t, slices.Collect(maps.Values(h.etcd)), h.s.placements(), "plan ops and scheduler model disagree")
	return p
}

func (h *drainHarness) state(m, u string) (registry.UnitState, bool) {
	s, ok := h.states[[2]string{m, u}]
	return s, ok
}

// step is what the engine does for one wake-up: drain steps, then a plan.
func (h *drainHarness) step() DrainStatus {
	ds, _ := h.s.StepDrains(h.now, h.state)
	h.apply(h.s.Plan())
	require.Len(h.t, ds, 1)
	return ds[0]
}

// agents makes every placement's state what its agent would report once
// its jobs ended: launched is active, loaded inactive.
func (h *drainHarness) agents() {
	clear(h.states)
	for k, p := range h.etcd {
		as := "inactive"
		if p.DesiredState == registry.StateLaunched {
			as = "active"
		}
		h.states[k] = registry.UnitState{Name: p.Name, Machine: p.Machine, Hash: p.Hash, ActiveState: as}
	}
}

func (h *drainHarness) where() map[string][]string { return where(slices.Collect(maps.Values(h.etcd))) }

func (h *drainHarness) on(id string) []string {
	var out []string
	for k := range h.etcd {
		if k[0] == id {
			out = append(out, k[1])
		}
	}
	slices.Sort(out)
	return out
}

// resume is a new leader: a scheduler built from what etcd holds, given the
// drains, as engine.sync does.
func (h *drainHarness) resume(snap Snapshot) {
	snap.Placements = slices.Collect(maps.Values(h.etcd))
	drains := maps.Clone(h.s.dr.drains)
	h.s = NewScheduler(snap)
	for _, id := range sortedKeys(drains) {
		h.s.SetDrain(drains[id])
	}
}

func TestDrainMakeBeforeBreak(t *testing.T) {
	a, b := mkUnit(t, "a.service"), mkUnit(t, "b.service")
	snap := Snapshot{Machines: machines("m1", "m2", "m3"), Units: []Unit{a, b}}
	h := newDrainHarness(t, snap)
	require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}}, h.where())
	h.agents()

	h.s.SetDrain(registry.DrainRecord{Machine: "m1"})
	st := h.step()
	require.Equal(t, []string{"a.service"}, st.Moving)
	require.False(t, st.Done)
	require.Equal(t, []string{"m1", "m3"}, h.where()["a.service"], "started elsewhere, still on the draining machine")

	// Not active yet on m3: nothing changes however often the engine wakes,
	// and a new leader keeps both copies too.
	h.step()
	h.resume(snap)
	h.step()
	require.Equal(t, []string{"m1", "m3"}, h.where()["a.service"])

	h.agents() // m3 reports it active
	st = h.step()
	require.True(t, st.Done)
	require.Empty(t, st.Moving)
	require.Empty(t, h.on("m1"), "the old copy goes once the new one is active")
	require.Equal(t, []string{"m3"}, h.where()["a.service"])

	// Nothing new is placed on the drained machine.
	c := mkUnit(t, "c.service")
	h.s.SetUnit(c)
	h.step()
	require.NotContains(t, h.where()["c.service"], "m1")
	// Until it is undrained.
	h.s.RemoveDrain("m1")
	h.s.SetUnit(mkUnit(t, "d.service"))
	h.apply(h.s.Plan())
	require.Equal(t, []string{"m1"}, h.where()["d.service"], "the empty machine takes new units again")
}

func TestDrainBreakBeforeMake(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    Unit
	}{
		{"its Conflicts match its own name", mkUnit(t, "web@1.service", "Conflicts=web@*")},
		{"at most once", mkUnit(t, "db.service", "AtMostOnce=true")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{Machines: machines("m1", "m2"), Units: []Unit{tc.u}}
			h := newDrainHarness(t, snap)
			require.Equal(t, []string{"m1"}, h.where()[tc.u.Name])
			h.agents()
			h.s.SetDrain(registry.DrainRecord{Machine: "m1"})
			st := h.step()
			require.Equal(t, []string{tc.u.Name}, st.Moving)
			require.Equal(t, []string{"m1"}, h.where()[tc.u.Name], "no second copy while the first may run")
			require.Equal(t, registry.StateLoaded, h.etcd[[2]string{"m1", tc.u.Name}].DesiredState, "the old copy is stopped first")

			// A new leader keeps it stopped (its refresh would launch it).
			h.resume(snap)
			h.step()
			require.Equal(t, registry.StateLoaded, h.etcd[[2]string{"m1", tc.u.Name}].DesiredState)
			require.Equal(t, []string{"m1"}, h.where()[tc.u.Name], "still running as far as the engine knows")

			// A state not known yet (the leader has just started following
			// states) counts as running.
			h.states[[2]string{"m1", tc.u.Name}] = registry.UnitState{ActiveState: "unknown"}
			h.step()
			require.Equal(t, []string{"m1"}, h.where()[tc.u.Name])

			h.agents() // m1 reports it inactive
			st = h.step()
			require.True(t, st.Done)
			require.Equal(t, []string{"m2"}, h.where()[tc.u.Name])
			require.Equal(t, registry.StateLaunched, h.etcd[[2]string{"m2", tc.u.Name}].DesiredState)
		})
	}
}

func TestDrainStaysAndGlobals(t *testing.T) {
	pinned := mkUnit(t, "p.service", "MachineID=m1")
	global := mkUnit(t, "g.service", "Global=true")
	a := mkUnit(t, "a.service", "MachineMetadata=disk=ssd")
	snap := Snapshot{Machines: machines("m1", "m2"), Units: []Unit{pinned, global, a}}
	snap.Machines[0].Metadata = map[string]string{"disk": "ssd"}
	h := newDrainHarness(t, snap)
	require.Equal(t, []string{"a.service", "g.service", "p.service"}, h.on("m1"))
	h.agents()

	h.s.SetDrain(registry.DrainRecord{Machine: "m1"})
	st := h.step()
	require.True(t, st.Done, "nothing movable: a has nowhere else to go")
	require.Equal(t, map[string]string{
		"a.service": "no other machine has metadata disk=ssd",
		"g.service": "global unit (drain with --include-global to stop it)",
		"p.service": "MachineID=m1 pins it to this machine",
	}, st.Staying)
	require.Equal(t, []string{"a.service", "g.service", "p.service"}, h.on("m1"), "what stays runs on")

	// With --include-global, and a deadline: global units stop once nothing
	// else moves; after the deadline what does not stay stops too.
	h.s.SetDrain(registry.DrainRecord{Machine: "m1", IncludeGlobal: true, Deadline: h.now.Add(time.Minute)})
	st = h.step()
	require.Equal(t, []string{"a.service", "p.service"}, h.on("m1"))
	require.True(t, st.Done)
	h.now = h.now.Add(time.Minute)
	h.step()
	require.Equal(t, []string{"p.service"}, h.on("m1"), "the pinned unit stays; the rest is stopped at the deadline")
	require.Contains(t, h.s.Unplaced()["a.service"], "draining: m1")
	require.Equal(t, []string{"m2"}, h.where()["g.service"])
}

func TestDrainDeadlineStopsWaitingMoves(t *testing.T) {
	a := mkUnit(t, "a.service")
	h := newDrainHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{a}})
	h.agents()
	h.s.SetDrain(registry.DrainRecord{Machine: "m1", Deadline: h.now.Add(time.Minute)})
	h.step()
	// m2 never reports it active (say, it fails there).
	require.Equal(t, []string{"m1", "m2"}, h.where()["a.service"])
	h.now = h.now.Add(2 * time.Minute)
	st := h.step()
	require.True(t, st.Done)
	require.Equal(t, []string{"m2"}, h.where()["a.service"])
}

func TestDrainFollowersAndPreview(t *testing.T) {
	db := mkUnit(t, "db.service")
	side := mkUnit(t, "side.service", "MachineOf=db.service")
	only := mkUnit(t, "only.service", "MachineMetadata=role=x")
	snap := Snapshot{Machines: machines("m1", "m2"), Units: []Unit{db, side, only}}
	snap.Machines[0].Metadata = map[string]string{"role": "x"}
	h := newDrainHarness(t, snap)
	require.Equal(t, []string{"db.service", "only.service", "side.service"}, h.on("m1"))

	plan := NewScheduler(Snapshot{Machines: snap.Machines, Units: snap.Units, Placements: slices.Collect(maps.Values(h.etcd))}).PreviewDrain("m1", false)
	require.Equal(t, []string{"db.service", "side.service"}, plan.Move)
	require.Equal(t, map[string]string{"only.service": "no other machine has metadata role=x"}, plan.Unplaced)

	h.agents()
	h.s.SetDrain(registry.DrainRecord{Machine: "m1"})
	h.step()
	h.agents()
	st := h.step()
	require.Equal(t, []string{"m2"}, h.where()["db.service"])
	require.Equal(t, []string{"m2"}, h.where()["side.service"], "the follower goes with its peer")
	require.True(t, st.Done)
}

func TestMove(t *testing.T) {
	a := mkUnit(t, "a.service")
	w := mkUnit(t, "web@1.service", "Conflicts=web@*")
	snap := Snapshot{Machines: machines("m1", "m2", "m3"), Units: []Unit{a, w}}
	h := newDrainHarness(t, snap)
	require.Equal(t, map[string][]string{"a.service": {"m1"}, "web@1.service": {"m2"}}, h.where())
	h.agents()

	require.ErrorIs(t, h.s.CheckMove("a.service", "m1"), ErrInfeasible)
	require.ErrorContains(t, h.s.CheckMove("a.service", "m9"), "machine m9 is not present")
	require.NoError(t, h.s.CheckMove("a.service", "m3"))

	step := func() MoveStatus {
		_, ms := h.s.StepDrains(h.now, h.state)
		h.apply(h.s.Plan())
		require.Len(t, ms, 1)
		return ms[0]
	}
	h.s.SetMove(registry.MoveRecord{Unit: "a.service", To: "m3"})
	require.False(t, step().Over)
	require.Equal(t, []string{"m1", "m3"}, h.where()["a.service"], "make before break")
	h.agents()
	require.True(t, step().Over)
	require.Equal(t, []string{"m3"}, h.where()["a.service"])
	h.s.RemoveMove("a.service")

	h.s.SetMove(registry.MoveRecord{Unit: "web@1.service", To: "m1"})
	require.False(t, step().Over)
	require.Equal(t, []string{"m2"}, h.where()["web@1.service"], "break before make")
	h.agents()
	require.True(t, step().Over)
	require.Equal(t, []string{"m1"}, h.where()["web@1.service"])
}
