package agent

import (
	"context"
	"time"
)

// At-most-once units ([X-Fleet] AtMostOnce=, see unit.Fleet.RunsAtMostOnce)
// never run on two machines at once, even while this machine is cut off
// from etcd. Two clocks, neither compared with the other:
//
//   - This agent measures, on its own monotonic clock, the time since it
//     sent the last keepalive etcd acknowledged (registry.Presence
//     LastRenewed). etcd restarted the lease's TTL when it received that
//     keepalive, so the lease cannot expire before LastRenewed + TTL. Once
//     half the TTL has gone by without a renewal the lease is in doubt: the
//     agent stops its at-most-once units and starts none, TTL/2 before the
//     lease can expire.
//   - The engine measures, on its own clock, the time since it saw the
//     machine's lease key deleted (which etcd does when the lease expires,
//     never earlier), and places the machine's at-most-once units elsewhere
//     only a margin after that (engine.Config.AtMostOnceMargin).
//
// So the old copy is asked to stop at least TTL/2 + margin before a new one
// may start anywhere; the stop job must end within that. The price is a gap
// with no copy running: from TTL/2 after the last renewal to TTL + margin
// after it, plus the time to notice and start.

// leaseClock says whether the lease is in doubt, given when the last
// acknowledged keepalive was sent.
type leaseClock struct {
	now func() time.Time
	// poll is how often a doubting agent looks for a renewal.
	poll time.Duration
}

// check reports whether the lease is in doubt at the clock's now, and how
// long until that answer may change by the passing of time alone (a
// renewal can change it sooner; while in doubt, that is what poll is for).
func (c leaseClock) check(lastRenewed time.Time, ttl time.Duration) (doubt bool, recheck time.Duration) {
	left := lastRenewed.Add(ttl - ttl/2).Sub(c.now())
	if left > 0 {
		return false, left
	}
	return true, c.poll
}

// doubtPoll is how often an agent in doubt about its lease looks for a
// renewal, to start its at-most-once units again soon after one.
const doubtPoll = 100 * time.Millisecond

// guardLease keeps a.doubt current and, whenever it changes, queues every
// at-most-once unit: entering doubt stops them, leaving it (the lease was
// renewed: it never expired, so the engine moved nothing) starts them again.
func (a *Agent) guardLease(ctx context.Context, c leaseClock) {
	for {
		doubt, recheck := c.check(a.presence.LastRenewed(), a.presence.TTL())
		if doubt != a.doubt.Load() {
			a.doubt.Store(doubt)
			names := a.atMostOnceUnits()
			if doubt {
				a.log.Warn("lease in doubt: stopping at-most-once units before it can expire", "units", len(names),
					"last_renewed_ago", c.now().Sub(a.presence.LastRenewed()).Round(time.Millisecond), "ttl", a.presence.TTL())
			} else {
				a.log.Info("lease renewed: at-most-once units may run again", "units", len(names))
			}
			a.queue.add(names...)
		}
		if !sleep(ctx, recheck) {
			return
		}
	}
}

// atMostOnceUnits returns the scheduled units known to run at most once.
func (a *Agent) atMostOnceUnits() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var names []string
	for n, e := range a.amo {
		if _, ok := a.desired[n]; ok && e.yes {
			names = append(names, n)
		}
	}
	return names
}

// amoEntry caches whether a unit of a given body runs at most once here.
type amoEntry struct {
	hash string
	yes  bool
}

// atMostOnce reports whether unit name with body runs at most once on this
// machine: it says so (or the cluster's default does), and it could run
// elsewhere. A global unit, or one pinned to this machine by MachineID, is
// never stopped for a lease in doubt: it runs nowhere else, and its machine
// keeps its placement while away.
func (a *Agent) atMostOnce(it *item, hash, body string) bool {
	a.mu.Lock()
	e, ok := a.amo[it.name]
	a.mu.Unlock()
	if ok && e.hash == hash {
		return e.yes
	}
	yes := false
	if f, err := it.parse(body); err == nil {
		if x, _, err := f.FleetOptions(it.name); err == nil {
			yes = x.RunsAtMostOnce(a.atMostOnceDefault) && !x.PinnedTo(a.machine)
		} else {
			it.log.Warn("[X-Fleet] options do not parse; treating the unit as at-least-once", "err", err)
		}
	}
	a.mu.Lock()
	a.amo[it.name] = amoEntry{hash: hash, yes: yes}
	a.mu.Unlock()
	return yes
}
