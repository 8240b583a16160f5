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
			// Odd seeds add what fleet did not have: capacities and
			// demands, metadata operators, groups with SpreadBy and
			// MaxPerMachine, and the binpack policy on every fourth seed.
			extended := seed%2 == 1
			randMachine := func() machine.Machine {
				m := machine.Machine{ID: fmt.Sprintf("m%d", rng.IntN(8))}
				if rng.IntN(3) > 0 {
					m.Metadata = map[string]string{"role": roles[rng.IntN(len(roles))]}
					if extended {
						m.Metadata["zone"] = fmt.Sprint(rng.IntN(3))
						m.Metadata["cores"] = fmt.Sprint(1 << rng.IntN(5))
					}
				}
				if extended && rng.IntN(4) > 0 {
					m.Capacity = &machine.Capacity{CPU: int64(1+rng.IntN(4)) * 1000, Memory: int64(1+rng.IntN(4)) << 30}
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
				if extended {
					switch rng.IntN(8) {
					case 0:
						f.Constraints = []unit.Constraint{{Key: "zone", Op: unit.OpNotEqual, Values: []string{fmt.Sprint(rng.IntN(3))}}}
					case 1:
						f.Constraints = []unit.Constraint{{Key: "cores", Op: unit.OpGE, Values: []string{fmt.Sprint(1 << rng.IntN(5))}}}
					case 2:
						f.Constraints = []unit.Constraint{{Key: "zone", Op: unit.OpExists}, {Key: "role", Op: unit.OpNotIn, Values: []string{"db"}}}
					case 3, 4:
						if !f.Global {
							f.Group = fmt.Sprintf("g%d", rng.IntN(2))
							if rng.IntN(2) == 0 {
								f.SpreadBy = "zone"
							} else {
								f.MaxPerMachine = 1 + rng.IntN(2)
							}
						}
					}
					if rng.IntN(2) == 0 {
						f.CPU = int64(rng.IntN(4)) * 500
						f.Memory = int64(rng.IntN(4)) << 29
					}
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
			policy := PolicySpread
			if seed%4 == 3 {
				policy = PolicyBinpack
			}
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{randMachine(), randMachine()}, Policy: policy})
			for range 300 {
				eventLog = eventLog[:0]
				for range 1 + rng.IntN(3) {
					switch r := rng.IntN(22); {
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
						eventLog = append(eventLog, fmt.Sprintf("SetMachine %s %v %+v", m.ID, m.Metadata, m.Capacity))
						h.s.SetMachine(m)
					case r < 20:
						// Machines leave and come back (SetMachine above) with
						// the same IDs.
						id := fmt.Sprintf("m%d", rng.IntN(8))
						eventLog = append(eventLog, "RemoveMachine "+id)
						h.s.RemoveMachine(id)
					default:
						// A resync finds an entry gone from etcd.
						if len(h.etcd) == 0 {
							continue
						}
						keys := slices.SortedFunc(maps.Keys(h.etcd), func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
						k := keys[rng.IntN(len(keys))]
						eventLog = append(eventLog, fmt.Sprintf("RemovePlacement %s %s", k[0], k[1]))
						delete(h.etcd, k)
						h.s.RemovePlacement(k[0], k[1])
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
				require.True(t, unit.MatchMachineID(id, u.Fleet.MachineID), "%s MachineID", name)
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
	// Parked placements: on absent machines only, for units that can run
	// nowhere else, indexed both ways.
	n := 0
	for name, ps := range s.parked {
		u := s.units[name]
		require.NotNil(t, u, "%s parked but unknown", name)
		require.NotEmpty(t, ps)
		for id, p := range ps {
			require.Nil(t, s.machines[id], "%s parked on present machine %s", name, id)
			require.True(t, parkable(u, id), "%s parked on %s", name, id)
			require.Equal(t, [2]string{id, name}, [2]string{p.Machine, p.Name})
			require.Contains(t, s.parkedOn[id], name)
			n++
		}
		if !u.Fleet.Global {
			require.Zero(t, u.on.len(), "%s parked and placed", name)
			require.Contains(t, s.unplaced, name, "%s parked without a reason", name)
		}
	}
	for _, names := range s.parkedOn {
		n -= len(names)
	}
	require.Zero(t, n, "parked and parkedOn disagree")
	// Loads are what the pools rank by; no machine holds more than it
	// offers, nor more of a group than its units allow.
	for _, m := range s.machines {
		require.Equal(t, rankOf(s.load(m), m.label), m.key)
		require.Equal(t, roomOf(m), m.room, "%s: room the pools hold", m.ID)
		for _, p := range m.pools {
			require.True(t, p.has(m))
		}
		var used demand
		groups := map[string][]*ustate{}
		for _, u := range m.units {
			used.cpu += u.Fleet.CPU
			used.mem += u.Fleet.Memory
			if u.Fleet.Group != "" && u.Invalid == "" {
				groups[u.Fleet.Group] = append(groups[u.Fleet.Group], u)
			}
		}
		require.Equal(t, used, m.used, "%s: accounted demand", m.ID)
		if m.Capacity != nil {
			require.LessOrEqual(t, used.cpu, m.Capacity.CPU, "%s overcommitted: cpu", m.ID)
			require.LessOrEqual(t, used.mem, m.Capacity.Memory, "%s overcommitted: memory", m.ID)
		}
		for g, us := range groups {
			require.Len(t, m.group[g], len(us), "%s: group %s", m.ID, g)
			for _, u := range us {
				if u.Fleet.MaxPerMachine > 0 {
					require.LessOrEqual(t, len(us), u.Fleet.MaxPerMachine, "%s: group %s over %s's bound", m.ID, g, u.Name)
				}
			}
		}
	}
	ids := make([]string, 0, len(s.order))
	for _, m := range s.order {
		ids = append(ids, m.ID)
	}
	require.True(t, sort.StringsAreSorted(ids))
	require.Equal(t, len(s.machines), s.all.ranked.n)
}

// TestSchedulerLostMachineKeepsUnmovable covers a machine that leaves (its
// lease expired, say while it was cut off) and comes back: units that can
// run nowhere else keep their placements on it, so the returning machine
// finds its schedule unchanged and its agent stops and restarts nothing.
func TestSchedulerLostMachineKeepsUnmovable(t *testing.T) {
	del := func(m, name string) registry.PlanOp {
		return registry.PlanOp{Placement: registry.Placement{Machine: m, Name: name}}
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"global unit: its placement on the lost machine stays and nothing is written for it", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{mkUnit(t, "g.service", "Global=true")}})
			before := h.where()
			require.Equal(t, []string{"m1", "m2"}, before["g.service"])
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Empty(t, p.Ops)
			require.Empty(t, p.Unplaced)
			require.Equal(t, before, h.where())
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p = h.plan()
			require.Empty(t, p.Ops, "the returning machine finds its schedule unchanged")
			require.Equal(t, before, h.where())
		}},
		{"global unit, every machine lost: it waits on them with a reason", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1"), Units: []Unit{mkUnit(t, "g.service", "Global=true")}})
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, map[string]string{"g.service": "no machines are present"}, p.Unplaced)
			require.Equal(t, []string{"m1"}, h.where()["g.service"])
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p = h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, []string{"g.service"}, p.Cleared)
		}},
		{"pinned unit: its placement stays, with a reason saying it waits", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"),
				Units: []Unit{mkUnit(t, "pin.service", "MachineID=m1"), mkUnit(t, "a.service")}})
			require.Equal(t, map[string][]string{"pin.service": {"m1"}, "a.service": {"m1"}}, h.where())
			h.s.RemoveMachine("m1")
			p := h.plan()
			a := mkUnit(t, "a.service")
			require.Equal(t, []registry.PlanOp{del("m1", "a.service"),
				{Put: true, Placement: registry.Placement{Machine: "m2", Name: "a.service", Hash: a.Hash, DesiredState: a.State}}}, p.Ops,
				"a moves; nothing is written for pin")
			require.Equal(t, map[string]string{"pin.service": "MachineID=m1 is not present; keeping its placement until it returns"}, p.Unplaced)
			require.Equal(t, map[string][]string{"pin.service": {"m1"}, "a.service": {"m2"}}, h.where())
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p = h.plan()
			require.Empty(t, p.Ops, "the returning machine finds pin in its schedule, unchanged")
			require.Equal(t, []string{"pin.service"}, p.Cleared)
			require.Empty(t, h.s.Unplaced())
		}},
		{"pinned by the 8-character short ID: the same", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("aaaaaaaa1111"), Units: []Unit{mkUnit(t, "pin.service", "MachineID=aaaaaaaa")}})
			h.s.RemoveMachine("aaaaaaaa1111")
			p := h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, "MachineID=aaaaaaaa is not present; keeping its placement until it returns", p.Unplaced["pin.service"])
			require.Equal(t, []string{"aaaaaaaa1111"}, h.where()["pin.service"])
		}},
		{"normal unit: it moves, and the returning machine no longer has it", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"),
				Units: []Unit{mkUnit(t, "a.service"), mkUnit(t, "b.service"), mkUnit(t, "g.service", "Global=true")}})
			require.Equal(t, []string{"m1"}, h.where()["a.service"])
			h.s.RemoveMachine("m1")
			p := h.plan()
			a := mkUnit(t, "a.service")
			require.Equal(t, []registry.PlanOp{del("m1", "a.service"),
				{Put: true, Placement: registry.Placement{Machine: "m2", Name: "a.service", Hash: a.Hash, DesiredState: a.State}}}, p.Ops)
			h.s.SetMachine(machine.Machine{ID: "m1"})
			require.Empty(t, h.plan().Ops, "nothing moves back")
			require.Equal(t, map[string][]string{"a.service": {"m2"}, "b.service": {"m2"}, "g.service": {"m1", "m2"}}, h.where())
		}},
		{"a follower of a pinned unit waits for it, and goes back with it", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"),
				Units: []Unit{mkUnit(t, "pin.service", "MachineID=m1"), mkUnit(t, "f.service", "MachineOf=pin.service")}})
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Equal(t, []registry.PlanOp{del("m1", "f.service")}, p.Ops)
			require.Equal(t, "waiting for MachineOf peer pin.service to be placed", p.Unplaced["f.service"])
			h.s.SetMachine(machine.Machine{ID: "m1"})
			h.plan()
			require.Equal(t, map[string][]string{"pin.service": {"m1"}, "f.service": {"m1"}}, h.where())
		}},
		{"a kept placement neither conflicts nor counts as running for present machines", func(t *testing.T) {
			h, p := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{
				mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=x"),
				mkUnit(t, "a.service", "MachineID=m1", "Replaces=b.service"), mkUnit(t, "b.service", "Replaces=a.service")}})
			require.Equal(t, "a.service and b.service replace each other: only one of them runs, and a.service does", p.Unplaced["b.service"])
			h.s.RemoveMachine("m1")
			h.plan()
			require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}}, h.where(), "b runs: a, kept on m1, does not")
			// m1 comes back: the rival already running wins, a's entry goes.
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p = h.plan()
			require.Equal(t, []registry.PlanOp{del("m1", "a.service")}, p.Ops)
			require.Equal(t, map[string][]string{"b.service": {"m2"}}, h.where())
		}},
		{"a global unit kept on a lost machine conflicts with nothing on present ones", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: map[string]string{"role": "x"}}, {ID: "m2"}},
				Units: []Unit{mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=x", "Conflicts=c.service")}})
			h.s.RemoveMachine("m1")
			h.s.SetUnit(mkUnit(t, "c.service"))
			p := h.plan()
			require.Equal(t, map[string]string{"g.service": "no machine has metadata role=x"}, p.Unplaced, "c is placed")
			require.Equal(t, map[string][]string{"g.service": {"m1"}, "c.service": {"m2"}}, h.where())
		}},
		{"destroyed, made inactive or no longer pinned while away: the kept placement is deleted", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{
				mkUnit(t, "g.service", "Global=true"), mkUnit(t, "pin.service", "MachineID=m1"),
				mkUnit(t, "gone.service", "MachineID=m1"), mkUnit(t, "moved.service", "MachineID=m1")}})
			h.s.RemoveMachine("m1")
			require.Empty(t, h.plan().Ops)
			h.s.RemoveUnit("gone.service")
			off := mkUnit(t, "pin.service", "MachineID=m1")
			off.State = registry.StateInactive
			h.s.SetUnit(off)
			h.s.SetUnit(mkUnit(t, "g.service"))
			h.s.SetUnit(mkUnit(t, "moved.service", "MachineID=m2"))
			p := h.plan()
			require.Subset(t, p.Ops, []registry.PlanOp{del("m1", "gone.service"), del("m1", "pin.service"), del("m1", "g.service"), del("m1", "moved.service")})
			require.Equal(t, map[string][]string{"g.service": {"m2"}, "moved.service": {"m2"}}, h.where())
			require.Empty(t, h.s.Unplaced())
		}},
		{"a new body or desired state reaches the kept placement", func(t *testing.T) {
			h, _ := newHarness(t, Snapshot{Machines: machines("m1"), Units: []Unit{mkUnit(t, "pin.service", "MachineID=m1")}})
			h.s.RemoveMachine("m1")
			h.plan()
			u := mkUnit(t, "pin.service", "MachineID=m1")
			u.Hash, u.State = "new", registry.StateLoaded
			h.s.SetUnit(u)
			require.Equal(t, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m1", Name: "pin.service", Hash: "new", DesiredState: registry.StateLoaded}}}, h.plan().Ops)
		}},
		{"a machine that returns without the metadata of a global unit kept on it loses it", func(t *testing.T) {
			x := map[string]string{"role": "x"}
			h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{{ID: "m1", Metadata: x}, {ID: "m2", Metadata: x}},
				Units: []Unit{mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=x")}})
			h.s.RemoveMachine("m1")
			require.Empty(t, h.plan().Ops)
			h.s.SetMachine(machine.Machine{ID: "m1", Metadata: map[string]string{"role": "y"}})
			require.Equal(t, []registry.PlanOp{del("m1", "g.service")}, h.plan().Ops)
		}},
		{"full pass and resync: entries on absent machines are kept for global and pinned units only", func(t *testing.T) {
			g, pin, a := mkUnit(t, "g.service", "Global=true"), mkUnit(t, "pin.service", "MachineID=m9"), mkUnit(t, "a.service")
			pl := func(m string, u Unit) registry.Placement {
				return registry.Placement{Machine: m, Name: u.Name, Hash: u.Hash, DesiredState: u.State}
			}
			h, p := newHarness(t, Snapshot{Machines: machines("m1"), Units: []Unit{g, pin, a},
				Placements: []registry.Placement{pl("m9", g), pl("m9", pin), pl("m9", a), pl("m1", g)}})
			require.Equal(t, []registry.PlanOp{del("m9", "a.service"), {Put: true, Placement: pl("m1", a)}}, p.Ops)
			require.Equal(t, map[string][]string{"g.service": {"m1", "m9"}, "pin.service": {"m9"}, "a.service": {"m1"}}, h.where())
			// A resync that finds the entries gone from etcd forgets them;
			// one that finds them again keeps them.
			h.s.RemovePlacement("m9", "pin.service")
			delete(h.etcd, [2]string{"m9", "pin.service"})
			p = h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, "MachineID=m9 is not present", p.Unplaced["pin.service"])
			h.s.SetPlacement(pl("m9", pin))
			h.etcd[[2]string{"m9", "pin.service"}] = pl("m9", pin)
			p = h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, "MachineID=m9 is not present; keeping its placement until it returns", p.Unplaced["pin.service"])
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// TestResyncKeepsUnmovable checks the leader's periodic resync: a machine
// missing from etcd is removed from the scheduler, and the entries of
// global and pinned units on it, still in etcd, are neither deleted nor
// fed back as changes.
func TestResyncKeepsUnmovable(t *testing.T) {
	g, pin, a := mkUnit(t, "g.service", "Global=true"), mkUnit(t, "pin.service", "MachineID=m1"), mkUnit(t, "a.service")
	records := []registry.Unit{}
	st := newLeaderState()
	for _, u := range []Unit{g, pin, a} {
		r := registry.Unit{Name: u.Name, Hash: u.Hash, DesiredState: u.State}
		records = append(records, r)
		st.setRecord(r)
	}
	ms := machines("m1", "m2")
	for _, m := range ms {
		st.machines[m.ID] = m
	}
	st.sched = NewScheduler(Snapshot{Machines: ms, Units: []Unit{g, pin, a}})
	etcd := apply(nil, st.sched.Plan())
	require.Equal(t, map[string][]string{"g.service": {"m1", "m2"}, "pin.service": {"m1"}, "a.service": {"m1"}}, where(etcd))

	// m1's lease expired; a resync (not a watch event) notices.
	st.resync(records, machines("m2"), etcd)
	p := st.sched.Plan()
	etcd = apply(etcd, p)
	for _, op := range p.Ops {
		require.Equal(t, "a.service", op.Placement.Name, "a moves, nothing else is written: %v", p.Ops)
	}
	require.Equal(t, map[string][]string{"g.service": {"m1", "m2"}, "pin.service": {"m1"}, "a.service": {"m2"}}, where(etcd))
	st.resync(records, machines("m2"), etcd)
	st.sched.RefreshReasons()
	p = st.sched.Plan()
	require.Empty(t, p.Ops, "a second resync changes nothing")
	require.Equal(t, map[string]string{"pin.service": "MachineID=m1 is not present; keeping its placement until it returns"}, st.sched.Unplaced())

	// m1 registers again: its schedule is as it was, minus a.
	st.resync(records, ms, etcd)
	require.Empty(t, st.sched.Plan().Ops)
	require.Empty(t, st.sched.Unplaced())
}
