package engine

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// mkUnit builds a launched unit from its [X-Fleet] lines.
func mkUnit(t testing.TB, name string, xfleet ...string) Unit {
	t.Helper()
	text := "[Service]\nExecStart=/bin/true\n"
	if len(xfleet) > 0 {
		text += "[X-Fleet]\n" + strings.Join(xfleet, "\n") + "\n"
	}
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	x, _, err := f.FleetOptions(name)
	require.NoError(t, err)
	return Unit{Name: name, Hash: f.Hash().String(), State: registry.StateLaunched, Fleet: x, AtMostOnce: x.RunsAtMostOnce(false)}
}

func machines(ids ...string) []machine.Machine {
	out := make([]machine.Machine, len(ids))
	for i, id := range ids {
		out[i] = machine.Machine{ID: id}
	}
	return out
}

// apply runs the plan's ops against placements, as etcd would.
func apply(ps []registry.Placement, plan Plan) []registry.Placement {
	m := map[[2]string]registry.Placement{}
	for _, p := range ps {
		m[[2]string{p.Machine, p.Name}] = p
	}
	for _, op := range plan.Ops {
		k := [2]string{op.Placement.Machine, op.Placement.Name}
		if op.Put {
			m[k] = op.Placement
		} else {
			delete(m, k)
		}
	}
	out := make([]registry.Placement, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name+"/"+out[i].Machine < out[j].Name+"/"+out[j].Machine
	})
	return out
}

// where maps unit -> sorted machines.
func where(ps []registry.Placement) map[string][]string {
	out := map[string][]string{}
	for _, p := range ps {
		out[p.Name] = append(out[p.Name], p.Machine)
	}
	for _, ms := range out {
		sort.Strings(ms)
	}
	return out
}

func TestScheduleCases(t *testing.T) {
	tests := []struct {
		name     string
		machines []machine.Machine
		units    func(t *testing.T) []Unit
		check    func(t *testing.T, w map[string][]string, plan Plan)
	}{
		{
			name:     "least loaded, ties by machine ID",
			machines: machines("m3", "m1", "m2"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service"), mkUnit(t, "b.service"), mkUnit(t, "c.service"), mkUnit(t, "d.service")}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, map[string][]string{"a.service": {"m1"}, "b.service": {"m2"}, "c.service": {"m3"}, "d.service": {"m1"}}, w)
			},
		},
		{
			name:     "five units with Conflicts=conflict.* on three machines: three run, on distinct machines",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				var us []Unit
				for i := range 5 {
					us = append(us, mkUnit(t, fmt.Sprintf("conflict.%d.service", i), "Conflicts=conflict.*"))
				}
				return us
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Len(t, w, 3)
				seen := map[string]bool{}
				for _, ms := range w {
					require.Len(t, ms, 1)
					require.False(t, seen[ms[0]])
					seen[ms[0]] = true
				}
				require.Len(t, plan.Unplaced, 2)
				for _, why := range plan.Unplaced {
					require.Contains(t, why, "conflicts with conflict.")
				}
			},
		},
		{
			name:     "multi-value Conflicts lines spread three units over three machines",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "foo.service", "Conflicts=bar.service baz.service"),
					mkUnit(t, "bar.service", "Conflicts=foo.service", "Conflicts=baz.service"),
					mkUnit(t, "baz.service", `Conflicts="foo.service" "bar.service"`),
				}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Len(t, w, 3)
				require.NotEqual(t, w["foo.service"], w["bar.service"])
				require.NotEqual(t, w["foo.service"], w["baz.service"])
				require.NotEqual(t, w["bar.service"], w["baz.service"])
			},
		},
		{
			name:     "a one-way conflict blocks the unit without Conflicts",
			machines: machines("m1"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", "Conflicts=b.service"), mkUnit(t, "b.service")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, map[string][]string{"a.service": {"m1"}}, w)
				require.Equal(t, "conflicts with a.service on m1", plan.Unplaced["b.service"])
			},
		},
		{
			name:     "MachineOf pairs are co-located",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				var us []Unit
				for i := range 3 {
					us = append(us, mkUnit(t, fmt.Sprintf("ping.%d.service", i)),
						mkUnit(t, fmt.Sprintf("pong.%d.service", i), fmt.Sprintf("MachineOf=ping.%d.service", i)))
				}
				return us
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				for i := range 3 {
					ping, pong := w[fmt.Sprintf("ping.%d.service", i)], w[fmt.Sprintf("pong.%d.service", i)]
					require.Len(t, ping, 1)
					require.Equal(t, ping, pong)
				}
			},
		},
		{
			name:     "MachineOf follower waits for an unplaced peer",
			machines: machines("m1"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "f.service", "MachineOf=p.service")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Empty(t, w)
				require.Equal(t, "waiting for MachineOf peer p.service to be placed", plan.Unplaced["f.service"])
			},
		},
		{
			name:     "MachineID pins, by full ID or 8-character prefix",
			machines: machines("aaaaaaaa1111", "bbbbbbbb2222"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", "MachineID=bbbbbbbb2222"), mkUnit(t, "b.service", "MachineID=bbbbbbbb"),
					mkUnit(t, "c.service", "MachineID=cccccccc")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, []string{"bbbbbbbb2222"}, w["a.service"])
				require.Equal(t, []string{"bbbbbbbb2222"}, w["b.service"])
				require.Equal(t, "MachineID=cccccccc is not present", plan.Unplaced["c.service"])
			},
		},
		{
			name: "MachineMetadata: OR within a key, AND across keys",
			machines: []machine.Machine{
				{ID: "m1", Metadata: map[string]string{"role": "web", "region": "us"}},
				{ID: "m2", Metadata: map[string]string{"role": "db", "region": "eu"}},
				{ID: "m3", Metadata: map[string]string{"role": "db", "region": "us"}},
			},
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "db.service", "MachineMetadata=role=db", "MachineMetadata=region=us"),
					mkUnit(t, "any.service", `MachineMetadata="role=web" "role=cache"`),
					mkUnit(t, "none.service", "MachineMetadata=role=gpu"),
				}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, []string{"m3"}, w["db.service"])
				require.Equal(t, []string{"m1"}, w["any.service"])
				require.NotContains(t, w, "none.service")
				require.Equal(t, "no machine has metadata role=gpu", plan.Unplaced["none.service"])
			},
		},
		{
			name: "templates with %i metadata land on the matching host",
			machines: []machine.Machine{
				{ID: "m1", Metadata: map[string]string{"hostname": "h1"}},
				{ID: "m2", Metadata: map[string]string{"hostname": "h2"}},
			},
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "app@h2.service", "MachineMetadata=hostname=%i"), mkUnit(t, "app@h1.service", "MachineMetadata=hostname=%i")}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, []string{"m1"}, w["app@h1.service"])
				require.Equal(t, []string{"m2"}, w["app@h2.service"])
			},
		},
		{
			name:     "a global unit plus two normal units on three machines gives five placements",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "g.service", "Global=true"), mkUnit(t, "a.service"), mkUnit(t, "b.service")}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, []string{"m1", "m2", "m3"}, w["g.service"])
				require.Len(t, w["a.service"], 1)
				require.Len(t, w["b.service"], 1)
				require.NotEqual(t, w["a.service"], w["b.service"])
			},
		},
		{
			name:     "two global units that conflict: the second runs nowhere",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "g1.service", "Global=true", "Conflicts=g2.service"), mkUnit(t, "g2.service", "Global=true")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, []string{"m1", "m2", "m3"}, w["g1.service"])
				require.NotContains(t, w, "g2.service")
				require.Equal(t, "conflicts with g1.service on every machine", plan.Unplaced["g2.service"])
			},
		},
		{
			name:     "MachineID matches the full ID or exactly its 8-character prefix, and only the first value counts",
			machines: machines("aaaaaaaa1111", "bbbbbbbb2222"),
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "ten.service", "MachineID=bbbbbbbb22"),
					mkUnit(t, "seven.service", "MachineID=bbbbbbb"),
					mkUnit(t, "first.service", "MachineID=aaaaaaaa bbbbbbbb"),
					mkUnit(t, "lines.service", "MachineID=bbbbbbbb", "MachineID=aaaaaaaa"),
				}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, "MachineID=bbbbbbbb22 is not present", plan.Unplaced["ten.service"])
				require.Equal(t, "MachineID=bbbbbbb is not present", plan.Unplaced["seven.service"])
				require.Equal(t, []string{"aaaaaaaa1111"}, w["first.service"])
				require.Equal(t, []string{"bbbbbbbb2222"}, w["lines.service"])
			},
		},
		{
			name:     "MachineOf: a pair that names each other is never placed",
			machines: machines("m1", "m2"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", "MachineOf=b.service"), mkUnit(t, "b.service", "MachineOf=a.service"), mkUnit(t, "c.service")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, map[string][]string{"c.service": {"m1"}}, w)
				require.Equal(t, "MachineOf cycle a.service -> b.service -> a.service: units that name each other are never placed", plan.Unplaced["a.service"])
				require.Contains(t, plan.Unplaced["b.service"], "MachineOf cycle b.service -> a.service -> b.service")
			},
		},
		{
			name:     "MachineOf: several peers must share the machine; a follower of a global unit goes where it runs",
			machines: []machine.Machine{{ID: "m1"}, {ID: "m2", Metadata: map[string]string{"role": "db"}}},
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=db"),
					mkUnit(t, "f.service", "MachineOf=g.service"),
					mkUnit(t, "p1.service"), mkUnit(t, "p2.service", "MachineOf=p1.service"),
					mkUnit(t, "both.service", "MachineOf=p1.service p2.service"),
				}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, []string{"m2"}, w["f.service"])
				require.Equal(t, w["p1.service"], w["p2.service"])
				require.Equal(t, w["p1.service"], w["both.service"])
			},
		},
		{
			name: "MachineMetadata: repeated lines, quoted values, exact match only",
			machines: []machine.Machine{
				{ID: "m1", Metadata: map[string]string{"role": "Web", "region": "us"}},
				{ID: "m2", Metadata: map[string]string{"role": "cache", "region": "us-east"}},
				{ID: "m3", Metadata: map[string]string{"role": "cache", "region": "us"}},
				{ID: "m4", Metadata: map[string]string{"role": "web", "region": "eu"}},
			},
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "a.service", `MachineMetadata="role=web" "role=cache"`, "MachineMetadata=region=us"),
					mkUnit(t, "b.service", `MachineMetadata="role=web" "role=cache"`, "MachineMetadata=region=us"),
					mkUnit(t, "c.service", `MachineMetadata="role=web" "role=cache"`, "MachineMetadata=region=us"),
				}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, map[string][]string{"a.service": {"m3"}, "b.service": {"m3"}, "c.service": {"m3"}}, w)
				require.Empty(t, plan.Unplaced)
			},
		},
		{
			name: "MachineMetadata: the reason names what no machine has",
			machines: []machine.Machine{
				{ID: "m1", Metadata: map[string]string{"role": "web", "region": "eu"}},
				{ID: "m2", Metadata: map[string]string{"role": "db", "region": "us"}},
			},
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", `MachineMetadata="role=web" "role=cache"`, "MachineMetadata=region=us")}
			},
			check: func(t *testing.T, _ map[string][]string, plan Plan) {
				require.Equal(t, "no machine has metadata region=us and (role=web or role=cache)", plan.Unplaced["a.service"])
			},
		},
		{
			name:     "Conflicts: globs with ? and [], several per line, repeated lines",
			machines: machines("m1", "m2", "m3", "m4"),
			units: func(t *testing.T) []Unit {
				return []Unit{
					mkUnit(t, "db-1.service", "Conflicts=db-?.service cache-[ab].service", "Conflicts=web.service"),
					mkUnit(t, "db-2.service"),
					mkUnit(t, "cache-a.service"),
					mkUnit(t, "cache-c.service"),
					mkUnit(t, "web.service"),
				}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				for _, other := range []string{"db-2.service", "cache-a.service", "web.service"} {
					require.NotEqual(t, w["db-1.service"], w[other], other)
				}
				require.Len(t, w, 5)
			},
		},
		{
			name: "Global: every machine whose metadata matches and that has no conflicting unit",
			machines: []machine.Machine{
				{ID: "m1", Metadata: map[string]string{"role": "web"}},
				{ID: "m2", Metadata: map[string]string{"role": "web"}},
				{ID: "m3", Metadata: map[string]string{"role": "db"}},
			},
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=web", "Conflicts=x.service"),
					mkUnit(t, "x.service", "MachineID=m1")}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, []string{"m1", "m2"}, w["g.service"], "globals go first; then x fits nowhere")
			},
		},
		{
			name:     "least loaded counts global units",
			machines: []machine.Machine{{ID: "m1", Metadata: map[string]string{"role": "x"}}, {ID: "m2"}, {ID: "m3"}},
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "g.service", "Global=true", "MachineMetadata=role=x"),
					mkUnit(t, "a.service"), mkUnit(t, "b.service"), mkUnit(t, "c.service")}
			},
			check: func(t *testing.T, w map[string][]string, _ Plan) {
				require.Equal(t, map[string][]string{"g.service": {"m1"}, "a.service": {"m2"}, "b.service": {"m3"}, "c.service": {"m1"}}, w)
			},
		},
		{
			name:     "Replaces: two units that replace each other, only one runs",
			machines: machines("m1", "m2"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "replace.0.service", "Replaces=replace.1.service"), mkUnit(t, "replace.1.service", "Replaces=replace.0.service")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, map[string][]string{"replace.0.service": {"m1"}}, w)
				require.Equal(t, "replace.0.service and replace.1.service replace each other: only one of them runs, and replace.0.service does",
					plan.Unplaced["replace.1.service"])
			},
		},
		{
			name:     "Replaces: a cycle of three, only one runs",
			machines: machines("m1", "m2", "m3"),
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", "Replaces=b.service"), mkUnit(t, "b.service", "Replaces=c.service"), mkUnit(t, "c.service", "Replaces=a.service")}
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Equal(t, map[string][]string{"a.service": {"m1"}}, w)
				require.Len(t, plan.Unplaced, 2)
			},
		},
		{
			name:     "specifiers %n %N %p %i expand in every option",
			machines: []machine.Machine{{ID: "m1", Metadata: map[string]string{"app": "web"}}, {ID: "m2", Metadata: map[string]string{"app": "web"}}, {ID: "m3"}},
			units: func(t *testing.T) []Unit {
				var us []Unit
				for _, i := range []string{"1", "2"} {
					us = append(us,
						mkUnit(t, "web@"+i+".service", "MachineMetadata=app=%p", "Conflicts=%p@*.service"),
						mkUnit(t, "log@"+i+".service", "MachineOf=web@%i.service", "Conflicts=shadow-%N.service"),
						mkUnit(t, "shadow-log@"+i+".service", "MachineOf=web@"+i+".service"),
					)
				}
				return us
			},
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.NotEqual(t, w["web@1.service"], w["web@2.service"])
				require.Equal(t, w["web@1.service"], w["log@1.service"])
				require.Equal(t, w["web@2.service"], w["log@2.service"])
				require.NotContains(t, w, "shadow-log@1.service")
				require.Equal(t, "conflicts with log@1.service on m1", plan.Unplaced["shadow-log@1.service"])
			},
		},
		{
			name:     "no machines",
			machines: nil,
			units:    func(t *testing.T) []Unit { return []Unit{mkUnit(t, "a.service")} },
			check: func(t *testing.T, w map[string][]string, plan Plan) {
				require.Empty(t, w)
				require.Equal(t, "no machines are present", plan.Unplaced["a.service"])
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{Machines: tc.machines, Units: tc.units(t)}
			plan := Schedule(snap)
			placed := apply(nil, plan)
			tc.check(t, where(placed), plan)
			// Scheduling again from the result changes nothing.
			snap.Placements = placed
			again := Schedule(snap)
			require.Empty(t, again.Ops, "a second pass must be a no-op")
		})
	}
}

func TestScheduleMachineLossMovesOnlyItsUnits(t *testing.T) {
	var units []Unit
	for i := range 9 {
		units = append(units, mkUnit(t, fmt.Sprintf("u%d.service", i)))
	}
	units = append(units, mkUnit(t, "ping.service"), mkUnit(t, "pong.service", "MachineOf=ping.service"))
	snap := Snapshot{Machines: machines("m1", "m2", "m3"), Units: units}
	placed := apply(nil, Schedule(snap))
	before := where(placed)
	lost := before["ping.service"][0]

	snap.Placements = placed
	var alive []machine.Machine
	for _, m := range snap.Machines {
		if m.ID != lost {
			alive = append(alive, m)
		}
	}
	snap.Machines = alive
	plan := Schedule(snap)
	after := where(apply(placed, plan))
	require.Empty(t, plan.Unplaced)
	for name, ms := range before {
		if ms[0] == lost {
			require.NotEqual(t, lost, after[name][0], "%s must leave the lost machine", name)
		} else {
			require.Equal(t, ms, after[name], "%s must not move (no churn)", name)
		}
	}
	require.Equal(t, after["ping.service"], after["pong.service"], "a MachineOf pair moves together")

	// The machine comes back: nothing moves back.
	snap.Machines = machines("m1", "m2", "m3")
	snap.Placements = apply(placed, plan)
	require.Empty(t, Schedule(snap).Ops)
}

func TestScheduleStateChanges(t *testing.T) {
	u := mkUnit(t, "a.service")
	snap := Snapshot{Machines: machines("m1"), Units: []Unit{u}}
	placed := apply(nil, Schedule(snap))
	require.Equal(t, registry.StateLaunched, placed[0].DesiredState)

	u.State = registry.StateLoaded
	snap = Snapshot{Machines: machines("m1"), Units: []Unit{u}, Placements: placed}
	placed = apply(placed, Schedule(snap))
	require.Len(t, placed, 1)
	require.Equal(t, registry.StateLoaded, placed[0].DesiredState, "desired state follows in place")

	u.State = registry.StateInactive
	snap = Snapshot{Machines: machines("m1"), Units: []Unit{u}, Placements: placed}
	require.Empty(t, apply(placed, Schedule(snap)), "inactive units are unscheduled")

	snap = Snapshot{Machines: machines("m1"), Placements: placed}
	require.Empty(t, apply(placed, Schedule(snap)), "destroyed units are unscheduled")
}

func BenchmarkScheduleFullPass(b *testing.B) {
	for _, size := range []struct{ machines, units int }{{100, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("%dm_%du", size.machines, size.units), func(b *testing.B) {
			ms := make([]machine.Machine, size.machines)
			for i := range ms {
				ms[i] = machine.Machine{ID: fmt.Sprintf("m%05d", i), Metadata: map[string]string{"role": []string{"web", "db", "cache"}[i%3]}}
			}
			us := make([]Unit, size.units)
			for i := range us {
				switch i % 4 {
				case 0:
					us[i] = mkUnit(b, fmt.Sprintf("u%06d.service", i), "MachineMetadata=role=web")
				default:
					us[i] = mkUnit(b, fmt.Sprintf("u%06d.service", i))
				}
			}
			b.ResetTimer()
			for b.Loop() {
				Schedule(Snapshot{Machines: ms, Units: us})
			}
		})
	}
}
