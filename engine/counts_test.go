package engine

import (
	"fmt"
	"testing"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// BenchmarkCounts is what one /metrics scrape of the engine leader's fleetd
// costs its leader loop: a tally of the model, nothing read from etcd.
func BenchmarkCounts(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dm_%du", size.machines, size.units), func(b *testing.B) {
			s, snap := placedCluster(b, size.machines, size.units)
			st := newLeaderState()
			st.sched = s
			for _, u := range snap.Units {
				st.units[u.Name] = registry.Unit{Name: u.Name, Hash: u.Hash, DesiredState: u.State}
			}
			for _, m := range snap.Machines {
				st.machines[m.ID] = machine.Machine{ID: m.ID}
			}
			var c Counts
			for b.Loop() {
				c = st.counts()
			}
			b.ReportMetric(float64(c.Placements[registry.StateLaunched]), "placements")
		})
	}
}
