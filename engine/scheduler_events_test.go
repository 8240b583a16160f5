package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// harness drives a Scheduler with events and checks every plan: the ops,
// applied to a map standing in for etcd, give exactly the scheduler's
// model, and a full pass over the result changes nothing and finds the same
// units unplaced (the incremental path reaches the state Schedule would
// keep).
type harness struct {
	t    *testing.T
	s    *Scheduler
	etcd map[[2]string]registry.Placement
}

func newHarness(t *testing.T, snap Snapshot) (*harness, Plan) {
	h := &harness{t: t, s: NewScheduler(snap), etcd: map[[2]string]registry.Placement{}}
	for _, p := range snap.Placements {
		h.etcd[[2]string{p.Machine, p.Name}] = p
	}
	return h, h.plan()
}

func (h *harness) plan() Plan {
	h.t.Helper()
	p := h.s.Plan()
	for _, op := range p.Ops {
		k := [2]string{op.Placement.Machine, op.Placement.Name}
		if op.Put {
			h.etcd[k] = op.Placement
		} else {
			delete(h.etcd, k)
		}
	}
	require.ElementsMatch(h.t, slices.Collect(maps.Values(h.etcd)), h.s.placements(), "plan ops and scheduler model disagree")
	full := Schedule(h.s.snapshot())
	require.Empty(h.t, full.Ops, "a full pass over the incremental result must change nothing")
	require.Equal(h.t, sortedKeys(full.Unplaced), sortedKeys(h.s.Unplaced()), "unplaced units")
	return p
}

func (h *harness) where() map[string][]string {
	return where(slices.Collect(maps.Values(h.etcd)))
}

func TestSchedulerEvents(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a joining machine gets the global units and nothing else moves", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"),
				Units: []Unit{mkUnit(t, "g.service", "Global=true"), mkUnit(t, "a.service"), mkUnit(t, "b.service")}})
			before := h.where()
			h.s.SetMachine(machine.Machine{ID: "m3"})
			p := h.plan()
			require.Equal(t, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m3", Name: "g.service", Hash: mkUnit(t, "g.service", "Global=true").Hash, DesiredState: registry.StateLaunched}}}, p.Ops)
			after := h.where()
			require.Equal(t, before["a.service"], after["a.service"])
			require.Equal(t, before["b.service"], after["b.service"])
		}},
		{"a machine whose metadata stops matching loses its global and metadata units", func(t *testing.T) {
			web := map[string]string{"role": "web"}
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: web}, {ID: "m2", Metadata: web}},
				Units: []Unit{mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=web"), mkUnit(t, "w.service", "MachineMetadata=role=web")}})
			require.Equal(t, []string{"m1"}, h.where()["w.service"])
			h.s.SetMachine(machine.Machine{ID: "m1", Metadata: map[string]string{"role": "db"}})
			h.plan()
			require.Equal(t, map[string][]string{"g.service": {"m2"}, "w.service": {"m2"}}, h.where())
		}},
		{"three ping/pong pairs: a lost machine moves its pair together and nothing else", func(t *testing.T) {
			var us []Unit
			for i := range 3 {
				us = append(us, mkUnit(t, fmt.Sprintf("ping.%d.service", i)),
					mkUnit(t, fmt.Sprintf("pong.%d.service", i), fmt.Sprintf("MachineOf=ping.%d.service", i)),
					mkUnit(t, fmt.Sprintf("plain.%d.service", i)))
			}
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2", "m3"), Units: us})
			before := h.where()
			lost := before["ping.1.service"][0]
			h.s.RemoveMachine(lost)
			h.plan()
			after := h.where()
			for name, ms := range before {
				if ms[0] == lost {
					require.NotEqual(t, lost, after[name][0], name)
				} else {
					require.Equal(t, ms, after[name], "%s must not move", name)
				}
			}
			for i := range 3 {
				require.Equal(t, after[fmt.Sprintf("ping.%d.service", i)], after[fmt.Sprintf("pong.%d.service", i)])
			}
			// It comes back: nothing moves back.
			h.s.SetMachine(machine.Machine{ID: lost})
			require.Empty(t, h.plan().Ops)
		}},
		{"a follower moves with its peer", func(t *testing.T) {
			x := map[string]string{"role": "x"}
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: x}, {ID: "m2", Metadata: x}},
				Units: []Unit{mkUnit(t, "p.service", "MachineMetadata=role=x"), mkUnit(t, "f.service", "MachineOf=p.service")}})
			require.Equal(t, map[string][]string{"p.service": {"m1"}, "f.service": {"m1"}}, h.where())
			h.s.SetMachine(machine.Machine{ID: "m1"})
			h.plan()
			require.Equal(t, map[string][]string{"p.service": {"m2"}, "f.service": {"m2"}}, h.where())
		}},
		{"destroying a conflicting unit lets the unit it blocked run", func(t *testing.T) {
			h, p := newHarness(t, Snapshot{Machines: machines("m1"), Units: []Unit{mkUnit(t, "conflicts-with-hello.service", "Conflicts=hello.service")}})
			require.Empty(t, p.Unplaced)
			h.s.SetUnit(mkUnit(t, "hello.service"))
			p = h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, map[string]string{"hello.service": "conflicts with conflicts-with-hello.service on m1"}, p.Unplaced)
			h.s.RemoveUnit("conflicts-with-hello.service")
			p = h.plan()
			require.Equal(t, map[string][]string{"hello.service": {"m1"}}, h.where())
			require.Equal(t, []string{"hello.service"}, p.Cleared)
			require.Empty(t, h.s.Unplaced())
		}},
		{"a unit whose options change to conflict with a neighbour is the one that moves", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "a.service"), mkUnit(t, "b.service"), mkUnit(t, "c.service")}})
			require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}, "c.service": {"m1"}}, h.where())
			h.s.SetUnit(mkUnit(t, "c.service", "Conflicts=a.service"))
			h.plan()
			require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}, "c.service": {"m2"}}, h.where())
		}},
		{"hash and desired state changes rewrite the placement in place", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "a.service"), mkUnit(t, "b.service")}})
			u := mkUnit(t, "b.service")
			u.Hash, u.State = "new", registry.StateLoaded
			h.s.SetUnit(u)
			require.Equal(t, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m2", Name: "b.service", Hash: "new", DesiredState: registry.StateLoaded}}}, h.plan().Ops)
			u.State = registry.StateInactive
			h.s.SetUnit(u)
			require.Equal(t, []registry.PlanOp{{Placement: registry.Placement{Machine: "m2", Name: "b.service"}}}, h.plan().Ops)
			u.State = registry.StateLaunched
			h.s.SetUnit(u)
			h.plan()
			require.Equal(t, []string{"m2"}, h.where()["b.service"])
		}},
		{"an invalid unit keeps its placement and is placed nowhere new", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "a.service", "MachineOf=b.service"), mkUnit(t, "b.service")}})
			require.Equal(t, []string{"m1"}, h.where()["a.service"])
			bad := Unit{Name: "a.service", Hash: "x", State: registry.StateLaunched, Invalid: "unit body x is missing"}
			h.s.SetUnit(bad)
			require.Empty(t, h.plan().Ops, "no change while its options are unknown")
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Equal(t, "unit body x is missing", p.Unplaced["a.service"])
			require.NotContains(t, h.where(), "a.service")
			h.s.SetUnit(mkUnit(t, "a.service", "MachineOf=b.service"))
			h.plan()
			require.Equal(t, h.where()["b.service"], h.where()["a.service"])
		}},
		{"Replaces: the replacing unit goes elsewhere when it can (fleet's TestScheduleReplace)", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "replace.0.service")}})
			h.s.SetUnit(mkUnit(t, "replace.1.service", "Replaces=replace.0.service"))
			p := h.plan()
			require.Len(t, p.Ops, 1, "nothing moves")
			require.Equal(t, map[string][]string{"replace.0.service": {"m1"}, "replace.1.service": {"m2"}}, h.where())
		}},
		{"Replaces: placing the unit where the replaced unit runs moves the replaced unit", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: map[string]string{"role": "x"}}, {ID: "m2"}},
				Units: []Unit{mkUnit(t, "replace.0.service")}})
			require.Equal(t, []string{"m1"}, h.where()["replace.0.service"])
			h.s.SetUnit(mkUnit(t, "replace-kick0.service", "Replaces=replace.0.service", "MachineMetadata=role=x"))
			h.plan()
			require.Equal(t, map[string][]string{"replace-kick0.service": {"m1"}, "replace.0.service": {"m2"}}, h.where())
		}},
		{"Replaces: with nowhere else to go, the replaced unit waits", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1"), Units: []Unit{mkUnit(t, "old.service")}})
			h.s.SetUnit(mkUnit(t, "new.service", "Replaces=old.service"))
			p := h.plan()
			require.Equal(t, map[string][]string{"new.service": {"m1"}}, h.where())
			require.Equal(t, "replaced by new.service on m1", p.Unplaced["old.service"])
			h.s.SetMachine(machine.Machine{ID: "m2"})
			h.plan()
			require.Equal(t, map[string][]string{"new.service": {"m1"}, "old.service": {"m2"}}, h.where())
		}},
		{"circular Replaces: when the running one is destroyed, the other runs", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{
				mkUnit(t, "replace.0.service", "Replaces=replace.1.service"), mkUnit(t, "replace.1.service", "Replaces=replace.0.service")}})
			require.Equal(t, map[string][]string{"replace.0.service": {"m1"}}, h.where())
			h.s.RemoveUnit("replace.0.service")
			h.plan()
			require.Equal(t, map[string][]string{"replace.1.service": {"m1"}}, h.where())
		}},
		{"duplicates, gone machines and destroyed units are cleaned up", func(t *testing.T) {
			a, b := mkUnit(t, "a.service"), mkUnit(t, "b.service")
			pl := func(m string, u Unit) registry.Placement {
				return registry.Placement{Machine: m, Name: u.Name, Hash: u.Hash, DesiredState: u.State}
			}
			h, p := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{a, b},
				Placements: []registry.Placement{pl("m2", a), pl("m1", a), pl("m9", b), {Machine: "m1", Name: "gone.service", Hash: "h", DesiredState: registry.StateLaunched}}})
			require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}}, h.where())
			require.Len(t, p.Ops, 4, "three deletes, one put")
		}},
		{"a waiting follower is placed when its peer is submitted", func(t *testing.T) {
			h, p := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "x.service"), mkUnit(t, "f.service", "MachineOf=p.service")}})
			require.Equal(t, "waiting for MachineOf peer p.service to be placed", p.Unplaced["f.service"])
			h.s.SetUnit(mkUnit(t, "p.service"))
			p = h.plan()
			require.Equal(t, []string{"f.service"}, p.Cleared)
			require.Equal(t, map[string][]string{"x.service": {"m1"}, "p.service": {"m2"}, "f.service": {"m2"}}, h.where())
		}},
		{"conflicting globals: the second runs where the first does not, and everywhere once it is gone", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: map[string]string{"role": "x"}}, {ID: "m2"}},
				Units: []Unit{mkUnit(t, "g1.service", "Global=true", "MachineMetadata=role=x")}})
			h.s.SetUnit(mkUnit(t, "g2.service", "Global=true", "Conflicts=g1.service"))
			h.plan()
			require.Equal(t, map[string][]string{"g1.service": {"m1"}, "g2.service": {"m2"}}, h.where())
			h.s.RemoveUnit("g1.service")
			h.plan()
			require.Equal(t, map[string][]string{"g2.service": {"m1", "m2"}}, h.where())
		}},
		{"units wait for the first machine", func(t *testing.T) {
			h, p := newHarness(t, Snapshot{Units: []Unit{mkUnit(t, "a.service"), mkUnit(t, "g.service", "Global=true")}})
			require.Equal(t, map[string]string{"a.service": "no machines are present", "g.service": "no machines are present"}, p.Unplaced)
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p = h.plan()
			require.Equal(t, []string{"a.service", "g.service"}, p.Cleared)
			require.Equal(t, map[string][]string{"a.service": {"m1"}, "g.service": {"m1"}}, h.where())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// TestSchedulerRandomEvents drives the scheduler with random event sequences
// (fixed seeds) over every rule, and lets the harness check after each plan
// that the incremental result is what a full pass would keep.
func TestSchedulerRandomEvents(t *testing.T) {
	for seed := range uint64(16) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			roles := []string{"web", "db", "cache"}
			randMachine := func() machine.Machine {
				m := machine.Machine{ID: fmt.Sprintf("m%d", rng.IntN(8))}
				if rng.IntN(3) > 0 {
					m.Metadata = map[string]string{"role": roles[rng.IntN(len(roles))]}
				}
				return m
			}
			name := func() string { return fmt.Sprintf("u%02d.service", rng.IntN(24)) }
			randUnit := func() Unit {
				n := name()
				var f unit.Fleet
				switch rng.IntN(10) {
				case 0:
					f.Global = true
					if rng.IntN(2) == 0 {
						f.MachineMetadata = map[string][]string{"role": {roles[rng.IntN(len(roles))]}}
					}
				case 1:
					f.MachineMetadata = map[string][]string{"role": {roles[rng.IntN(len(roles))], roles[rng.IntN(len(roles))]}}
				case 2:
					f.Conflicts = []string{fmt.Sprintf("u%d?.service", rng.IntN(3))}
				case 3:
					f.MachineOf = []string{name()}
				case 4:
					f.Replaces = []string{name()}
				case 5:
					f.MachineID = fmt.Sprintf("m%d", rng.IntN(8))
				case 6:
					f.Conflicts = []string{name()}
				case 7:
					// Units of one decade replacing each other form cycles.
					f.Replaces = []string{fmt.Sprintf("u%d?.service", rng.IntN(3))}
				}
				f.MachineOf = slices.DeleteFunc(f.MachineOf, func(p string) bool { return p == n })
				state := registry.StateLaunched
				if rng.IntN(8) == 0 {
					state = registry.StateInactive
				}
				return Unit{Name: n, Hash: fmt.Sprintf("h%d", rng.IntN(3)), State: state, Fleet: f}
			}
			var eventLog []string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("events of the failing step:\n%s", strings.Join(eventLog, "\n"))
				}
			})
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{randMachine(), randMachine()}})
			for range 300 {
				eventLog = eventLog[:0]
				for range 1 + rng.IntN(3) {
					switch r := rng.IntN(20); {
					case r < 10:
						u := randUnit()
						eventLog = append(eventLog, fmt.Sprintf("SetUnit %s %s %+v", u.Name, u.State, u.Fleet))
						h.s.SetUnit(u)
					case r < 13:
						n := name()
						eventLog = append(eventLog, "RemoveUnit "+n)
						h.s.RemoveUnit(n)
					case r < 17:
						m := randMachine()
						eventLog = append(eventLog, fmt.Sprintf("SetMachine %s %v", m.ID, m.Metadata))
						h.s.SetMachine(m)
					default:
						id := fmt.Sprintf("m%d", rng.IntN(8))
						eventLog = append(eventLog, "RemoveMachine "+id)
						h.s.RemoveMachine(id)
					}
				}
				h.plan()
				checkInvariants(t, h)
			}
		})
	}
}

// checkInvariants checks what every schedule must satisfy, rule by rule.
func checkInvariants(t *testing.T, h *harness) {
	t.Helper()
	s := h.s
	for name, u := range s.units {
		if u.Invalid != "" {
			continue
		}
		if !u.wants() {
			require.Zero(t, u.on.len(), "%s is inactive", name)
			continue
		}
		if !u.Fleet.Global {
			require.LessOrEqual(t, u.on.len(), 1, "%s placed twice", name)
		}
		if _, unplaced := s.unplaced[name]; unplaced {
			require.Zero(t, u.on.len(), "%s is placed and has a reason", name)
		} else if !u.Fleet.Global || len(s.machines) == 0 {
			require.NotZero(t, u.on.len(), "%s has neither a machine nor a reason", name)
		}
		for _, id := range u.on.ids() {
			m := s.machines[id]
			require.NotNil(t, m, "%s on gone machine %s", name, id)
			if u.Fleet.MachineID != "" {
				require.True(t, matchMachineID(id, u.Fleet.MachineID), "%s MachineID", name)
			}
			require.True(t, u.Fleet.MatchesMetadata(m.Metadata), "%s metadata on %s", name, id)
			for _, peer := range u.Fleet.MachineOf {
				require.Contains(t, m.units, peer, "%s MachineOf %s on %s", name, peer, id)
			}
			for other, o := range m.units {
				if other == name || o.Invalid != "" {
					continue
				}
				require.False(t, u.Fleet.ConflictsWith(other) || o.Fleet.ConflictsWith(name), "%s and %s conflict on %s", name, other, id)
				if compilePatterns(o.Fleet.Replaces).match(name) {
					require.True(t, s.isRival(o, u), "%s runs next to its replacer %s on %s", name, other, id)
				}
			}
		}
		for _, r := range s.rivalsOf(u) {
			if u.on.len() > 0 {
				require.Zero(t, s.units[r].on.len(), "rivals %s and %s both run", name, r)
			}
		}
	}
	// Loads are what the pools rank by.
	for _, m := range s.machines {
		require.Equal(t, rankOf(len(m.units), m.label), m.key)
		for _, p := range m.pools {
			require.True(t, p.has(m))
		}
	}
	ids := make([]string, 0, len(s.order))
	for _, m := range s.order {
		ids = append(ids, m.ID)
	}
	require.True(t, sort.StringsAreSorted(ids))
	require.Equal(t, len(s.machines), s.all.ranked.n)
}
