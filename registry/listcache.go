package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// ListCache answers listings of units and states from memory while
// listings keep coming, and from etcd otherwise. At 100,000 units a
// listing read from etcd is ~300,000 keys, which costs etcd and the reader
// ~0.5 s of CPU each; from memory it costs a copy.
//
// The first listing is read from etcd. A second one within idle of the
// last (itself read from etcd) makes the cache follow, in the background:
// one full read, then a watch on the registry's prefix from the revision
// after it. Listings are then served
// from memory, once it has caught up with etcd's revision at the time of
// the request (asked of etcd, and confirmed by a progress notification
// when nothing under the prefix changed since), so a listing never misses
// a write that finished before it was asked for, and is the state at one
// revision, as a read is. After idle without a listing the watch ends and
// the memory is dropped. While it follows it holds every unit, placement,
// unplaced reason and published state (~50 MB at 100,000 units and
// 123,000 states) and receives every write under the prefix.
type ListCache struct {
	r    *Registry
	idle time.Duration

	mu       sync.Mutex
	lastList time.Time
	live     *liveListing // nil: not following
	starting bool         // a follow is reading everything, in the background
	closed   bool
}

// NewListCache returns a ListCache of r that stops following after idle
// without a listing.
func NewListCache(r *Registry, idle time.Duration) *ListCache {
	return &ListCache{r: r, idle: idle}
}

// catchUpWait bounds the wait for the cache to reach a listing's revision;
// past it the listing is read from etcd.
const catchUpWait = 2 * time.Second

// liveListing is the followed state at revision rev.
type liveListing struct {
	cancel context.CancelFunc
	// ctx carries the metadata that puts the watch on a gRPC stream of its
	// own, so that progress requests reach no other watch of the client.
	ctx context.Context

	mu       sync.RWMutex
	rev      int64
	err      error         // why following ended; nil while it runs
	changed  chan struct{} // closed when rev or err changes
	lastUse  atomic.Int64  // UnixNano of the last listing served
	units    map[string]Unit
	sorted   []Unit                 // units by name; nil when a unit changed since
	places   map[string][]Placement // by unit, each slice by machine and never changed once stored
	unplaced map[string]string
	states   map[string]map[string]UnitState // by machine, then unit
}

// Units calls fn with a listing as ListUnitsWithoutBodies reads it. From
// memory the listing's maps are the cache's own, read-locked while fn
// runs: fn must not keep them, and should not take long.
func (c *ListCache) Units(ctx context.Context, fn func(UnitListing) error) error {
	if ferr, ok := serve(ctx, c, func(l *liveListing) error { return fn(l.unitView()) }); ok {
		return ferr
	}
	l, err := c.r.ListUnitsWithoutBodies(ctx)
	if err != nil {
		return err
	}
	return fn(l)
}

// States returns every published state, as ListStates does but in no
// particular order.
func (c *ListCache) States(ctx context.Context) ([]UnitState, error) {
	ss, ok := serve(ctx, c, (*liveListing).stateListing)
	if ok {
		return ss, nil
	}
	return c.r.ListStates(ctx)
}

// Close stops following.
func (c *ListCache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.live != nil {
		c.live.cancel()
		c.live = nil
	}
}

// serve answers from memory (ok) when following, starting to follow if
// listings keep coming; !ok says to read from etcd.
func serve[T any](ctx context.Context, c *ListCache, read func(*liveListing) T) (T, bool) {
	var zero T
	now := time.Now()
	c.mu.Lock()
	repeat := !c.lastList.IsZero() && now.Sub(c.lastList) < c.idle
	c.lastList = now
	live := c.live
	if live != nil {
		live.mu.RLock()
		dead := live.err != nil
		live.mu.RUnlock()
		if dead {
			c.live, live = nil, nil
		}
	}
	if live == nil && repeat && !c.starting {
		// The full read costs a few times one listing's (every unit,
		// placement and state, decoded into maps): this listing does not
		// wait for it, it is read from etcd as if there were no cache.
		c.starting = true
		go c.start()
	}
	c.mu.Unlock()
	if live == nil || !live.catchUp(ctx, c.r) {
		return zero, false
	}
	live.lastUse.Store(now.UnixNano())
	live.sortUnits()
	live.mu.RLock()
	defer live.mu.RUnlock()
	return read(live), true
}

// start follows, unless the cache was closed meanwhile. A failed read is
// tried again by a later listing.
func (c *ListCache) start() {
	live, err := c.follow()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starting = false
	switch {
	case err != nil:
		slog.Warn("list cache: not following; listings read etcd", "err", err)
	case c.closed:
		live.cancel()
	default:
		c.live = live
	}
}

// follow reads everything once and starts the watch from the revision
// after.
func (c *ListCache) follow() (*liveListing, error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "fleet-watch", "list-cache"))
	live := &liveListing{
		cancel:   cancel,
		ctx:      ctx,
		changed:  make(chan struct{}),
		units:    map[string]Unit{},
		places:   map[string][]Placement{},
		unplaced: map[string]string{},
		states:   map[string]map[string]UnitState{},
	}
	live.lastUse.Store(time.Now().UnixNano())
	resp, err := c.r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(c.r.keys.units(), clientv3.WithPrefix()),
		clientv3.OpGet(c.r.keys.schedules(), clientv3.WithPrefix()),
		clientv3.OpGet(c.r.keys.unplaced(), clientv3.WithPrefix()),
		clientv3.OpGet(c.r.keys.states(), clientv3.WithPrefix()),
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("list cache: %w", err)
	}
	for _, rr := range resp.Responses {
		for _, kv := range rr.GetResponseRange().GetKvs() {
			live.apply(c.r, mvccpb.PUT, kv)
		}
	}
	live.rev = resp.Header.Revision
	wch := c.r.cli.Watch(ctx, c.r.keys.prefix, clientv3.WithPrefix(), clientv3.WithRev(live.rev+1), clientv3.WithProgressNotify())
	go live.run(c.r, wch, c.idle)
	return live, nil
}

// run applies the watch's events until it ends or nothing was listed for
// idle.
func (l *liveListing) run(r *Registry, wch clientv3.WatchChan, idle time.Duration) {
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	end := func(err error) {
		l.cancel()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.err = err
		// The memory goes with the listing; a new one reads afresh.
		l.units, l.sorted, l.places, l.unplaced, l.states = nil, nil, nil, nil, nil
		close(l.changed)
	}
	for {
		select {
		case <-tick.C:
			if time.Since(time.Unix(0, l.lastUse.Load())) > idle {
				end(errors.New("no listing for a while"))
				return
			}
		case resp, ok := <-wch:
			switch {
			case !ok:
				end(errors.New("watch closed"))
				return
			case resp.Err() != nil:
				end(resp.Err())
				return
			}
			l.mu.Lock()
			rev := l.rev
			if resp.IsProgressNotify() {
				rev = max(rev, resp.Header.Revision)
			}
			for _, ev := range resp.Events {
				l.apply(r, ev.Type, ev.Kv)
				// A response that catches up may stop short of its
				// header's revision: only its last event's is sure.
				rev = max(rev, ev.Kv.ModRevision)
			}
			if rev != l.rev {
				l.rev = rev
				close(l.changed)
				l.changed = make(chan struct{})
			}
			l.mu.Unlock()
		}
	}
}

// apply records one key's change. Called with l.mu held (or before l is
// shared).
func (l *liveListing) apply(r *Registry, t mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	del := t == mvccpb.DELETE
	switch {
	case strings.HasPrefix(key, r.keys.units()):
		name := key[len(r.keys.units()):]
		l.sorted = nil
		if del {
			delete(l.units, name)
			return
		}
		u, err := readUnit(name, kv.Value, kv.ModRevision)
		if err != nil {
			return // a listing read from etcd would fail on it too
		}
		l.units[name] = u
	case strings.HasPrefix(key, r.keys.schedules()):
		m, name, ok := splitMachineKey(key[len(r.keys.schedules()):])
		if !ok {
			return
		}
		// A new slice each time: listings may hold the old one.
		ps := slices.DeleteFunc(slices.Clone(l.places[name]), func(p Placement) bool { return p.Machine == m })
		if !del {
			p, err := r.readPlacement(kv.Key, kv.Value)
			if err != nil {
				return
			}
			i, _ := slices.BinarySearchFunc(ps, m, func(p Placement, m string) int { return strings.Compare(p.Machine, m) })
			ps = slices.Insert(ps, i, p)
		}
		if len(ps) == 0 {
			delete(l.places, name)
		} else {
			l.places[name] = ps
		}
	case strings.HasPrefix(key, r.keys.unplaced()):
		name := key[len(r.keys.unplaced()):]
		if del {
			delete(l.unplaced, name)
		} else {
			l.unplaced[name] = string(kv.Value)
		}
	case strings.HasPrefix(key, r.keys.states()):
		m, name, ok := splitMachineKey(key[len(r.keys.states()):])
		if !ok {
			return
		}
		if del {
			delete(l.states[m], name)
			if len(l.states[m]) == 0 {
				delete(l.states, m)
			}
			return
		}
		s, err := readState(m, name, kv.Value)
		if err != nil {
			return
		}
		if l.states[m] == nil {
			l.states[m] = map[string]UnitState{}
		}
		l.states[m][name] = s
	}
}

// catchUp waits until l has applied etcd's current revision, and reports
// whether it has (false: read from etcd instead).
func (l *liveListing) catchUp(ctx context.Context, r *Registry) bool {
	want, err := r.Revision(ctx)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	asked := false
	for {
		l.mu.RLock()
		rev, dead, changed := l.rev, l.err != nil, l.changed
		l.mu.RUnlock()
		switch {
		case dead:
			return false
		case rev >= want:
			return true
		}
		if !asked {
			// Nothing under the prefix may have changed since: etcd then
			// says how far the watch is with a progress notification.
			asked = true
			if err := r.cli.RequestProgress(l.ctx); err != nil {
				return false
			}
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
			asked = false // ask again: a notification may have been cut short
		case <-ctx.Done():
			return false
		}
	}
}

// sortUnits sorts the units for listings, if a unit changed since.
func (l *liveListing) sortUnits() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sorted != nil || l.units == nil {
		return
	}
	l.sorted = make([]Unit, 0, len(l.units))
	for _, u := range l.units {
		l.sorted = append(l.sorted, u)
	}
	slices.SortFunc(l.sorted, func(a, b Unit) int { return strings.Compare(a.Name, b.Name) })
}

// unitView is the listing in memory, without copies. Called with l.mu
// read-held, for as long as the view is used.
func (l *liveListing) unitView() UnitListing {
	units := l.sorted
	if units == nil { // a unit changed between sortUnits and the lock
		for _, u := range l.units {
			units = append(units, u)
		}
		slices.SortFunc(units, func(a, b Unit) int { return strings.Compare(a.Name, b.Name) })
	}
	return UnitListing{
		Units:      units,
		Bodies:     map[string]string{},
		Placements: l.places,
		Unplaced:   l.unplaced,
		Rev:        l.rev,
		reported: func(m, name string) bool {
			_, ok := l.states[m][name]
			return ok
		},
	}
}

// stateListing copies out every state, in no particular order (the
// caller sorts them as it needs). Called with l.mu read-held.
func (l *liveListing) stateListing() []UnitState {
	n := 0
	for _, ss := range l.states {
		n += len(ss)
	}
	out := make([]UnitState, 0, n)
	for _, ss := range l.states {
		for _, s := range ss {
			out = append(out, s)
		}
	}
	return out
}
