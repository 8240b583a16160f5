package fleetctl

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/api"
)

// reconnectDelay is how long a wait lets a broken event stream rest before
// it subscribes again (polling meanwhile).
const reconnectDelay = time.Second

// unitWatch follows fleet's event stream for a wait and tells which of its
// units changed. Events only say which units to read again, never what
// their state is: the reads decide (and a placement changing state on its
// machine has no event at all).
type unitWatch struct {
	watched map[string]bool
	started chan struct{} // closed on the first stream.started or on giving up on events
	wake    chan struct{} // a token when an event names a watched unit
	once    sync.Once
	done    chan struct{} // closed when the goroutine returns

	mu    sync.Mutex
	live  bool            // a stream is up: events tell what changed
	fresh bool            // a stream (re)started: changes may have been missed
	dirty map[string]bool // watched units events were about since the last take
}

// watchUnits subscribes to the event stream for names until ctx ends; wait
// then waits for its goroutine. A fleetd without events (or refusing the
// stream) leaves the watch polling.
func watchUnits(ctx context.Context, c api.Client, names []string) *unitWatch {
	w := &unitWatch{watched: make(map[string]bool, len(names)), started: make(chan struct{}), wake: make(chan struct{}, 1),
		done: make(chan struct{}), dirty: map[string]bool{}}
	for _, n := range names {
		w.watched[n] = true
	}
	go w.run(ctx, c)
	return w
}

func (w *unitWatch) run(ctx context.Context, c api.Client) {
	defer close(w.done)
	defer w.markStarted() // a wait never waits on a watch that gave up
	for {
		err := c.Events(ctx, w.handle)
		w.mu.Lock()
		w.live = false
		w.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, api.ErrUnavailable) {
			// Not a broken stream but a refusal (no such resource, not
			// allowed, too many streams): polling it is.
			return
		}
		w.markStarted()
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectDelay):
		}
	}
}

func (w *unitWatch) handle(e api.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Type == api.EventStreamStarted {
		w.live, w.fresh = true, true
		w.markStarted()
		return nil
	}
	if w.watched[e.Unit] {
		w.dirty[e.Unit] = true
		select {
		case w.wake <- struct{}{}:
		default: // a token is there already
		}
	}
	return nil
}

func (w *unitWatch) markStarted() { w.once.Do(func() { close(w.started) }) }

// ready blocks until the stream has started (or the watch gave up on it),
// at most max, or until ctx ends.
func (w *unitWatch) ready(ctx context.Context, max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-w.started:
	case <-t.C:
	case <-ctx.Done():
	}
}

// take returns which of pending to read now: all of them if all is set,
// no stream is up, or one (re)started since the last take; else those
// events were about.
func (w *unitWatch) take(pending []string, all bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if all || !w.live || w.fresh {
		w.fresh = false
		clear(w.dirty)
		return pending
	}
	var out []string
	for _, n := range pending {
		if w.dirty[n] {
			out = append(out, n)
		}
	}
	clear(w.dirty)
	return out
}

// wait blocks until the watch's goroutine returns (once ctx ended).
func (w *unitWatch) wait() { <-w.done }
