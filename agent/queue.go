package agent

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Per-key retry backoff: baseDelay doubled per consecutive failure, capped.
const (
	baseDelay = 100 * time.Millisecond
	maxDelay  = 10 * time.Second
)

// backoff is the delay before retry number failures (1 = first retry).
func backoff(failures int) time.Duration {
	d := baseDelay
	for i := 1; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// queue is a set of unit names waiting to be reconciled. Adding a name that
// is already waiting does nothing, so a burst of events for one unit costs
// one reconcile and senders never block or drop. A name taken by the worker
// and added again while it is being reconciled waits for the next batch.
type queue struct {
	wake chan struct{} // one token: "the set is not empty"

	mu       sync.Mutex
	waiting  map[string]bool
	failures map[string]int
	timers   map[string]*time.Timer // delayed adds, at most one per name
	stopped  bool
}

func newQueue() *queue {
	return &queue{
		wake:     make(chan struct{}, 1),
		waiting:  map[string]bool{},
		failures: map[string]int{},
		timers:   map[string]*time.Timer{},
	}
}

// add makes name wait for the next batch.
func (q *queue) add(names ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	for _, n := range names {
		q.waiting[n] = true
	}
	if len(names) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// addAfter adds name after d, unless a delayed add of name is already
// pending: the earlier one wins. An add in between makes it wait sooner.
func (q *queue) addAfter(name string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	if _, ok := q.timers[name]; ok {
		return
	}
	q.timers[name] = time.AfterFunc(d, func() {
		q.mu.Lock()
		delete(q.timers, name)
		q.mu.Unlock()
		q.add(name)
	})
}

// retry adds name after its next backoff delay and returns that delay.
func (q *queue) retry(name string) time.Duration {
	q.mu.Lock()
	q.failures[name]++
	d := backoff(q.failures[name])
	q.mu.Unlock()
	q.addAfter(name, d)
	return d
}

// forget resets name's backoff after a successful reconcile.
func (q *queue) forget(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, name)
}

// next blocks until names wait or ctx ends, then takes them all, sorted.
func (q *queue) next(ctx context.Context) ([]string, bool) {
	for {
		q.mu.Lock()
		if len(q.waiting) > 0 {
			names := make([]string, 0, len(q.waiting))
			for n := range q.waiting {
				names = append(names, n)
			}
			clear(q.waiting)
			q.mu.Unlock()
			slices.Sort(names)
			return names, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.wake:
		}
	}
}

// stop cancels pending delayed adds; later adds are ignored.
func (q *queue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	for n, t := range q.timers {
		t.Stop()
		delete(q.timers, n)
	}
}
