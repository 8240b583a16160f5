package engine

import (
	"context"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// Counts is the cluster as the engine leader's model holds it, for the
// metrics: computed from memory, so a scrape reads nothing from etcd.
type Counts struct {
	Machines   int                    // present machines
	Units      map[registry.State]int // submitted units by desired state
	Placements map[registry.State]int // placements (parked ones included) by scheduled state
	Unplaced   int                    // unplaced reasons recorded in etcd
}

// Counts asks the leader loop for the model's counts. ok is false when this
// engine does not lead, or when its loop did not answer before ctx ended
// (it is reading the cluster at the start of a term, or writing a plan).
func (e *Engine) Counts(ctx context.Context) (c Counts, ok bool) {
	if !e.Leading() {
		return Counts{}, false
	}
	reply := make(chan Counts, 1)
	select {
	case e.countReq <- reply:
	case <-ctx.Done():
		return Counts{}, false
	}
	select {
	case c = <-reply:
		return c, true
	case <-ctx.Done():
		return Counts{}, false
	}
}

// counts tallies the model; the leader loop calls it between plans, when the
// model is what was written.
func (st *leaderState) counts() Counts {
	c := Counts{
		Machines:   len(st.machines),
		Units:      map[registry.State]int{registry.StateInactive: 0, registry.StateLoaded: 0, registry.StateLaunched: 0},
		Placements: map[registry.State]int{registry.StateLoaded: 0, registry.StateLaunched: 0},
		Unplaced:   len(st.reasons),
	}
	for _, u := range st.units {
		c.Units[u.DesiredState]++
	}
	for _, u := range st.sched.units {
		for _, p := range u.on.list {
			c.Placements[p.DesiredState]++
		}
	}
	for _, ps := range st.sched.parked {
		for _, p := range ps {
			c.Placements[p.DesiredState]++
		}
	}
	return c
}
