package fleetctl

import (
	"context"
	"errors"
	"sync"
)

// bulkWorkers bounds the requests a command over many units has in flight.
// One at a time, 500 units cost 500 round trips end to end; with a bound,
// fleetd's API (and etcd behind it) works on several at once while no
// command can flood it. The HTTP client keeps this many connections alive.
const bulkWorkers = 32

// errSkipped marks the items a bulk run never started.
var errSkipped = errors.New("not attempted")

// inOrder runs work(ctx, i) for i in [0, n), up to bulkWorkers at a time,
// and calls emit(i) for every item that succeeded, in index order, as soon as
// it and every item before it are done: a command's lines read as if its
// units were handled one after another, whatever order they finish in. emit
// is never called concurrently.
//
// Unless keepGoing, the first failure stops items from starting (those
// under way finish), and the failure first in index order is returned. With
// keepGoing every item is worked on and every failure is returned, joined
// in index order. When ctx ends, no item starts any more. It returns once no
// work runs.
func inOrder(ctx context.Context, n int, keepGoing bool, work func(ctx context.Context, i int) error, emit func(i int)) error {
	errs := make([]error, n)
	finished := make([]bool, n)
	var (
		mu     sync.Mutex
		next   int  // the first item not emitted yet
		failed bool // an item failed: start no more (unless keepGoing)
	)
	flush := func() {
		for next < n && finished[next] {
			if errs[next] == nil {
				emit(next)
			}
			next++
		}
	}
	sem := make(chan struct{}, bulkWorkers)
	var wg sync.WaitGroup
	started := 0
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		mu.Lock()
		stop := failed && !keepGoing
		mu.Unlock()
		if ctx.Err() != nil || stop {
			break
		}
		started++
		wg.Go(func() {
			defer func() { <-sem }()
			err := work(ctx, i)
			mu.Lock()
			defer mu.Unlock()
			errs[i], finished[i] = err, true
			failed = failed || err != nil
			flush()
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := started; i < n; i++ {
		errs[i], finished[i] = errSkipped, true
	}
	flush()

	var (
		out         []error
		interrupted bool
	)
	for _, err := range errs {
		switch {
		case err == nil:
			continue
		case errors.Is(err, errSkipped):
			// Not started: an earlier failure or the end of ctx tells.
			interrupted = true
			continue
		}
		if !keepGoing {
			return err
		}
		out = append(out, err)
	}
	if len(out) == 0 && interrupted && ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(out...)
}
