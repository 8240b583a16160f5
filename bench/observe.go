package bench

import (
	"context"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// observer follows the whole schedule and every published state through
// etcd watches, as an operator's dashboard would, and records when each
// placement was written and each unit became active where.
type observer struct {
	mu         sync.Mutex
	placed     map[string]map[string]bool // unit -> machines
	placements int                        // present (machine, unit) pairs
	puts       int                        // placement writes seen
	firstPut   time.Time
	lastPut    time.Time
	putAt      map[string]time.Time            // unit -> when it was last placed
	activeOn   map[string]map[string]time.Time // unit -> machine -> since when active
	active     int                             // (machine, unit) pairs active
	activeAt   time.Time                       // when active last grew
	errs       []error
}

// observe starts watching after rev, until ctx ends.
func observe(ctx context.Context, reg *registry.Registry, rev int64) *observer {
	o := &observer{placed: map[string]map[string]bool{}, putAt: map[string]time.Time{}, activeOn: map[string]map[string]time.Time{}}
	go labelled(ctx, "observer", func(ctx context.Context) { o.followPlacements(ctx, reg, rev) })
	go labelled(ctx, "observer", func(ctx context.Context) { o.followStates(ctx, reg, rev) })
	return o
}

func (o *observer) fail(err error) {
	o.mu.Lock()
	o.errs = append(o.errs, err)
	o.mu.Unlock()
}

func (o *observer) followPlacements(ctx context.Context, reg *registry.Registry, rev int64) {
	for ev := range reg.WatchPlacements(ctx, rev) {
		if ev.Err != nil {
			if ctx.Err() == nil {
				o.fail(ev.Err)
			}
			return
		}
		now := time.Now()
		m, u, _ := splitMachineKey(ev.Key)
		o.mu.Lock()
		ms := o.placed[u]
		if ev.Deleted {
			if ms[m] {
				delete(ms, m)
				o.placements--
			}
		} else {
			if ms == nil {
				ms = map[string]bool{}
				o.placed[u] = ms
			}
			if !ms[m] {
				ms[m] = true
				o.placements++
			}
			o.puts++
			if o.firstPut.IsZero() {
				o.firstPut = now
			}
			o.lastPut = now
			o.putAt[u] = now
		}
		o.mu.Unlock()
	}
}

func (o *observer) followStates(ctx context.Context, reg *registry.Registry, rev int64) {
	for ev := range reg.WatchStates(ctx, "", rev) {
		if ev.Err != nil {
			if ctx.Err() == nil {
				o.fail(ev.Err)
			}
			return
		}
		now := time.Now()
		m, u, _ := splitMachineKey(ev.Key)
		o.mu.Lock()
		on := o.activeOn[u]
		_, was := on[m]
		is := !ev.Deleted && ev.Value.ActiveState == "active"
		switch {
		case is && !was:
			if on == nil {
				on = map[string]time.Time{}
				o.activeOn[u] = on
			}
			on[m] = now
			o.active++
			o.activeAt = now
		case !is && was:
			delete(on, m)
			o.active--
		}
		o.mu.Unlock()
	}
}

// splitMachineKey splits "<machine>/<unit>".
func splitMachineKey(k string) (string, string, bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:], true
		}
	}
	return "", k, false
}

// waitFor polls cond, under the observer's lock, every 10 ms until it holds
// (true), or timeout passes or ctx ends (false).
func (o *observer) waitFor(ctx context.Context, timeout time.Duration, cond func(o *observer) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		o.mu.Lock()
		ok := cond(o)
		o.mu.Unlock()
		if ok {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

// activeElsewhere returns when unit became active on a machine outside
// dead, if it is.
func (o *observer) activeElsewhere(unit string, dead map[string]bool) (time.Time, bool) {
	for m, at := range o.activeOn[unit] {
		if !dead[m] {
			return at, true
		}
	}
	return time.Time{}, false
}
