package engine

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// placementCluster is benchCluster with what fleet did not have in the mix:
// every machine reports 16 cores and 64 GiB and has zone and gen metadata;
// 3/4 of the plain units ask for random CPU (0.1 to 2 cores) and memory
// (256 MiB to 8 GiB), about 65% of the cluster in all; 1/8 of them carry
// metadata operators (!=, in, >=, ~=, exists); 1/50 are instances spread
// by zone in groups of 10, and 1/50 are in groups with MaxPerMachine=1.
func placementCluster(nMachines, nUnits int) Snapshot {
	snap := benchCluster(nMachines, nUnits)
	rng := rand.New(rand.NewPCG(uint64(nMachines), uint64(nUnits)))
	zones := []string{"z0", "z1", "z2"}
	for i := range snap.Machines {
		m := &snap.Machines[i]
		m.Capacity = &machine.Capacity{CPU: 16000, Memory: 64 << 30}
		m.Metadata["zone"] = zones[i%3]
		m.Metadata["gen"] = fmt.Sprint(1 + i%4)
	}
	ops := [][]unit.Constraint{
		{{Key: "zone", Op: unit.OpNotEqual, Values: []string{"z2"}}},
		{{Key: "zone", Op: unit.OpIn, Values: []string{"z0", "z1"}}},
		{{Key: "gen", Op: unit.OpGE, Values: []string{"3"}}},
		{{Key: "hostname", Op: unit.OpRegexp, Values: []string{"^h0[0-4]"}}},
		{{Key: "gen", Op: unit.OpExists}, {Key: "role", Op: unit.OpNotIn, Values: []string{"db"}}},
	}
	for i := range snap.Units {
		u := &snap.Units[i]
		f := &u.Fleet
		if f.Global || len(f.MachineMetadata) > 0 || f.MachineID != "" || len(f.MachineOf) > 0 || len(f.Replaces) > 0 || len(f.Conflicts) > 0 {
			continue
		}
		switch {
		case i%50 == 11:
			f.Group, f.SpreadBy = fmt.Sprintf("spread-%d", i/500), "zone"
		case i%50 == 37:
			f.Group, f.MaxPerMachine = fmt.Sprintf("max-%d", i/500), 1
		case i%8 == 5:
			f.Constraints = ops[(i/8)%len(ops)]
		}
		if i%4 != 0 {
			f.CPU = 100 + rng.Int64N(1900)
			f.Memory = (256 << 20) + rng.Int64N(8<<30-256<<20)
		}
	}
	return snap
}

// BenchmarkSchedulePlacement is BenchmarkSchedule (a full pass from
// nothing) over the placement mix, under each policy.
func BenchmarkSchedulePlacement(b *testing.B) {
	for _, policy := range []Policy{PolicySpread, PolicyBinpack} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dm_%du", policy, size.machines, size.units), func(b *testing.B) {
				snap := placementCluster(size.machines, size.units)
				snap.Policy = policy
				benchFullPass(b, snap)
			})
		}
	}
}

// cpuTime is the CPU time this process has used (user and system, GC
// included). On a machine shared with other work, CPU time per pass says
// what a pass costs better than wall time, which includes waiting for a
// core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScheduleIncrementalPlacement is BenchmarkScheduleIncremental's
// one-decision cases over the placement mix: a unit added (with a demand,
// an operator, or in a spread group) and a machine lost.
func BenchmarkScheduleIncrementalPlacement(b *testing.B) {
	for _, policy := range []Policy{PolicySpread, PolicyBinpack} {
		for _, size := range benchSizes {
			name := fmt.Sprintf("%s/%dm_%du", policy, size.machines, size.units)
			place := func(b *testing.B) (*Scheduler, Snapshot) {
				snap := placementCluster(size.machines, size.units)
				snap.Policy = policy
				s := NewScheduler(snap)
				s.Plan()
				return s, snap
			}
			b.Run("unit_added/"+name, func(b *testing.B) {
				s, _ := place(b)
				kinds := []unit.Fleet{
					{CPU: 500, Memory: 1 << 30},
					{CPU: 250, Memory: 512 << 20, Constraints: []unit.Constraint{{Key: "zone", Op: unit.OpNotEqual, Values: []string{"z2"}}}},
					{Memory: 2 << 30, Constraints: []unit.Constraint{{Key: "gen", Op: unit.OpGE, Values: []string{"3"}}}},
					{CPU: 100, Group: "spread-bench", SpreadBy: "zone"},
				}
				i := 0
				for b.Loop() {
					u := Unit{Name: fmt.Sprintf("extra-%d.service", i), Hash: "h", State: registry.StateLaunched, Fleet: kinds[i%len(kinds)]}
					s.SetUnit(u)
					if p := s.Plan(); len(p.Ops) != 1 {
						b.Fatalf("one unit: %d ops, unplaced %v", len(p.Ops), p.Unplaced)
					}
					// Taken away again outside the measurement, so that the
					// cluster does not fill up over b.N units.
					b.StopTimer()
					s.RemoveUnit(u.Name)
					s.Plan()
					b.StartTimer()
					i++
				}
			})
			b.Run("machine_lost/"+name, func(b *testing.B) {
				s, snap := place(b)
				i, moved := 0, 0
				for b.Loop() {
					m := snap.Machines[i%len(snap.Machines)]
					s.RemoveMachine(m.ID)
					moved += len(s.Plan().Ops)
					b.StopTimer()
					s.SetMachine(m)
					s.Plan()
					b.StartTimer()
					i++
				}
				b.ReportMetric(float64(moved)/float64(i), "ops/event")
			})
		}
	}
}

// BenchmarkPlacementQuality places units of random sizes (0.1 to 4 cores,
// 256 MiB to 16 GiB) one by one on 1,000 machines of 16 cores and 64 GiB
// until about 60% of the memory is asked for, and reports how unevenly the
// machines are used: the spread (max - min) of their dominant share, and
// how many machines are left empty. Spread should keep max - min small;
// binpack should leave machines empty.
func BenchmarkPlacementQuality(b *testing.B) {
	for _, policy := range []Policy{PolicySpread, PolicyBinpack} {
		b.Run(string(policy), func(b *testing.B) {
			var spread, empty, unplaced float64
			for b.Loop() {
				rng := rand.New(rand.NewPCG(7, 7))
				ms := make([]machine.Machine, 1000)
				for i := range ms {
					ms[i] = machine.Machine{ID: fmt.Sprintf("m%04d", i), Capacity: &machine.Capacity{CPU: 16000, Memory: 64 << 30}}
				}
				s := NewScheduler(Snapshot{Machines: ms, Policy: policy})
				var asked int64
				for i := 0; asked < 1000*64<<30*6/10; i++ {
					f := unit.Fleet{CPU: 100 + rng.Int64N(3900), Memory: (256 << 20) + rng.Int64N(16<<30-256<<20)}
					asked += f.Memory
					s.SetUnit(Unit{Name: fmt.Sprintf("u%06d.service", i), Hash: "h", State: registry.StateLaunched, Fleet: f})
					s.Plan()
				}
				lo, hi, n := 1.0, 0.0, 0
				for _, m := range s.machines {
					share := float64(shareLevel(m.used, m.Capacity)) / shareLevels
					lo, hi = min(lo, share), max(hi, share)
					if len(m.units) == 0 {
						n++
					}
				}
				spread, empty, unplaced = hi-lo, float64(n), float64(len(s.unplaced))
			}
			b.ReportMetric(spread, "util-max-min")
			b.ReportMetric(empty, "empty-machines")
			b.ReportMetric(unplaced, "unplaced")
		})
	}
}
