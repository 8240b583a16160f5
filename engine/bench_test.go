package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// benchCluster builds a cluster with a mix of everything the scheduler
// handles, sized by machines and units:
//
//   - machines: role in {web, db, cache, batch}, region in {us, eu, ap},
//     hostname=h<i>;
//   - units: about 1/4 with MachineMetadata (one key, several values, two
//     keys), 1/20 with Conflicts (globs over groups of five), 1/50 MachineOf
//     pairs, 1/100 Replaces, templates app@h<i> pinned by %i-expanded
//     metadata to one host each, 8 globals (half with metadata, two with
//     Conflicts), and the rest plain.
//
// The options are built as the parser would produce them (specifiers
// expanded); parsing 100,000 unit files would only slow the setup.
func benchCluster(nMachines, nUnits int) Snapshot {
	roles := []string{"web", "db", "cache", "batch"}
	regions := []string{"us", "eu", "ap"}
	ms := make([]machine.Machine, nMachines)
	for i := range ms {
		ms[i] = machine.Machine{ID: fmt.Sprintf("%032x", i*7919+1), Metadata: map[string]string{
			"role": roles[i%len(roles)], "region": regions[(i/4)%len(regions)], "hostname": fmt.Sprintf("h%05d", i),
		}}
	}
	us := make([]Unit, 0, nUnits)
	add := func(name string, f unit.Fleet) {
		us = append(us, Unit{Name: name, Hash: fmt.Sprintf("%040x", len(us)), State: registry.StateLaunched, Fleet: f})
	}
	for g := range 8 {
		f := unit.Fleet{Global: true}
		if g%2 == 1 {
			f.MachineMetadata = map[string][]string{"role": {roles[g%len(roles)]}}
		}
		if g >= 6 {
			f.Conflicts = []string{fmt.Sprintf("grp-%d-*", g)}
		}
		add(fmt.Sprintf("global-%d.service", g), f)
	}
	templates := min(nMachines/5, nUnits/50)
	for i := range templates {
		host := fmt.Sprintf("h%05d", (i*5)%nMachines)
		add(fmt.Sprintf("app@%s.service", host), unit.Fleet{MachineMetadata: map[string][]string{"hostname": {host}}})
	}
	for i := 0; len(us) < nUnits; i++ {
		name := fmt.Sprintf("u%06d.service", i)
		switch {
		case i%100 == 7 && len(us)+1 < nUnits:
			// Replaces: the new one displaces the old one only if it must.
			add(fmt.Sprintf("old-%06d.service", i), unit.Fleet{})
			add(fmt.Sprintf("new-%06d.service", i), unit.Fleet{Replaces: []string{fmt.Sprintf("old-%06d.service", i)}})
		case i%50 == 3 && len(us)+1 < nUnits:
			add(fmt.Sprintf("ping-%06d.service", i), unit.Fleet{})
			add(fmt.Sprintf("pong-%06d.service", i), unit.Fleet{MachineOf: []string{fmt.Sprintf("ping-%06d.service", i)}})
		case i%20 == 1:
			grp := i / 100
			add(fmt.Sprintf("grp-%d-%06d.service", grp, i), unit.Fleet{Conflicts: []string{fmt.Sprintf("grp-%d-*", grp)}})
		case i%16 == 0:
			add(name, unit.Fleet{MachineMetadata: map[string][]string{"role": {"web"}}})
		case i%16 == 4:
			add(name, unit.Fleet{MachineMetadata: map[string][]string{"role": {"db"}, "region": {"eu"}}})
		case i%16 == 8:
			add(name, unit.Fleet{MachineMetadata: map[string][]string{"role": {"web", "cache"}}})
		case i%16 == 12:
			add(name, unit.Fleet{MachineMetadata: map[string][]string{"region": {"ap"}}})
		default:
			add(name, unit.Fleet{})
		}
	}
	return Snapshot{Machines: ms, Units: us}
}

// placedCluster returns a scheduler holding the cluster fully placed.
func placedCluster(tb testing.TB, nMachines, nUnits int) (*Scheduler, Snapshot) {
	tb.Helper()
	snap := benchCluster(nMachines, nUnits)
	s := NewScheduler(snap)
	s.Plan()
	return s, snap
}

var benchSizes = []struct{ machines, units int }{{1000, 10000}, {10000, 100000}}

// BenchmarkSchedule is a full placement pass from nothing: every unit of the
// mixed cluster placed (Schedule, as a newly elected leader runs it).
func BenchmarkSchedule(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dm_%du", size.machines, size.units), func(b *testing.B) {
			benchFullPass(b, benchCluster(size.machines, size.units))
		})
	}
}

// benchFullPass times Schedule over snap and reports its CPU time and what
// it decided.
func benchFullPass(b *testing.B, snap Snapshot) {
	var plan Plan
	cpu := cpuTime()
	for b.Loop() {
		plan = Schedule(snap)
	}
	b.ReportMetric((cpuTime()-cpu).Seconds()*1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(plan.Ops)), "placements")
	b.ReportMetric(float64(len(plan.Unplaced)), "unplaced")
}

// BenchmarkScheduleResync is a full pass over a cluster that is already
// placed: what a leader taking over an existing cluster computes (no ops).
func BenchmarkScheduleResync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dm_%du", size.machines, size.units), func(b *testing.B) {
			s, snap := placedCluster(b, size.machines, size.units)
			snap = s.snapshot()
			var plan Plan
			for b.Loop() {
				plan = Schedule(snap)
			}
			if len(plan.Ops) != 0 {
				b.Fatalf("placed cluster: %d ops", len(plan.Ops))
			}
		})
	}
}

// BenchmarkScheduleIncremental measures single decisions in a placed
// cluster: one unit submitted, one machine lost (its units and its share of
// the globals move), one machine joining (globals spread to it).
func BenchmarkScheduleIncremental(b *testing.B) {
	for _, size := range benchSizes {
		name := fmt.Sprintf("%dm_%du", size.machines, size.units)
		b.Run("unit_added/"+name, func(b *testing.B) {
			s, _ := placedCluster(b, size.machines, size.units)
			kinds := []unit.Fleet{{}, {MachineMetadata: map[string][]string{"role": {"db"}, "region": {"eu"}}}, {Conflicts: []string{"grp-3-*"}}}
			i := 0
			for b.Loop() {
				u := Unit{Name: fmt.Sprintf("extra-%d.service", i), Hash: "h", State: registry.StateLaunched, Fleet: kinds[i%len(kinds)]}
				s.SetUnit(u)
				if p := s.Plan(); len(p.Ops) != 1 {
					b.Fatalf("one unit: %d ops", len(p.Ops))
				}
				i++
			}
		})
		b.Run("machine_lost/"+name, func(b *testing.B) {
			s, snap := placedCluster(b, size.machines, size.units)
			i, moved := 0, 0
			var took time.Duration
			for b.Loop() {
				m := snap.Machines[i%len(snap.Machines)]
				start := time.Now()
				s.RemoveMachine(m.ID)
				moved += len(s.Plan().Ops)
				took += time.Since(start)
				// Put it back, outside the measurement, so the cluster keeps its size.
				b.StopTimer()
				s.SetMachine(m)
				s.Plan()
				b.StartTimer()
				i++
			}
			b.ReportMetric(float64(moved)/float64(i), "ops/event")
		})
		b.Run("machine_joined/"+name, func(b *testing.B) {
			s, _ := placedCluster(b, size.machines, size.units)
			i, ops := 0, 0
			for b.Loop() {
				m := machine.Machine{ID: fmt.Sprintf("new%029d", i), Metadata: map[string]string{"role": "web", "region": "us"}}
				s.SetMachine(m)
				ops += len(s.Plan().Ops)
				b.StopTimer()
				s.RemoveMachine(m.ID)
				s.Plan()
				b.StartTimer()
				i++
			}
			b.ReportMetric(float64(ops)/float64(i), "ops/event")
		})
	}
}
