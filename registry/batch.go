package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NewUnit is a unit to create with its body.
type NewUnit struct {
	Unit Unit
	Body string
}

// unitsPerTxn is how many units one create transaction holds: a compare
// and two puts each (a body shared by several units is put once), within
// etcd's 128 operations per transaction.
const unitsPerTxn = maxTxnOps / 2

// Create transactions in flight (CreateUnits): more than one lets etcd
// commit several in one raft entry and fsync, but etcd must also apply them
// while agents publish states, and a lease renewal waits for that apply (at
// most 1 s, then it fails). With 8 in flight, a 100,000-unit submission to
// 10,000 simulated machines on 2 cores made etcd's apply fall 5,000 entries
// behind ("too many requests") and presences expired by the ten thousand;
// with 2 it completed. So the window follows etcd's own signal, a
// transaction's latency (which includes the apply of its entry), within
// that bound: it starts at createTxnsStart, halves after a transaction
// slower than createTxnSlow, grows back by one after one answered within
// createTxnFast, and drops to one on "too many requests", which etcd
// answers without proposing the transaction, so it is retried after a
// backoff. It never exceeds createTxnsMax = 2: a window that grew to 8
// while etcd answered within 20 ms made the submission of 100,000 units to
// 1,000 simulated machines 50% faster, and then presences expired by the
// thousand (BENCHMARKS.md, session 4), because the submission is the only
// pace the engine and the agents follow; etcd's latency slows the
// submitter, not the placements and states already on their way. A larger
// bound waits for the engine to pace its plans the same way.
const (
	createTxnsStart = 2
	createTxnsMax   = 2
	createTxnFast   = 20 * time.Millisecond
	createTxnSlow   = 100 * time.Millisecond
)

// txnWindow bounds the transactions in flight by a limit that follows
// their latency (see createTxnsStart).
type txnWindow struct {
	mu       sync.Mutex
	cond     *sync.Cond
	limit    int
	inflight int
}

func newTxnWindow() *txnWindow {
	w := &txnWindow{limit: createTxnsStart}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// acquire waits for a slot.
func (w *txnWindow) acquire() {
	w.mu.Lock()
	for w.inflight >= w.limit {
		w.cond.Wait()
	}
	w.inflight++
	w.mu.Unlock()
}

// release frees a slot and adapts the limit to how the transaction went.
func (w *txnWindow) release(took time.Duration, overloaded bool) {
	w.mu.Lock()
	w.inflight--
	switch {
	case overloaded:
		w.limit = 1
	case took > createTxnSlow:
		w.limit = max(1, w.limit/2)
	case took < createTxnFast:
		w.limit = min(createTxnsMax, w.limit+1)
	}
	w.mu.Unlock()
	w.cond.Broadcast()
}

// CreateUnits creates units, each as CreateUnit with replace false would,
// many to a transaction: a bulk submission costs a write per 63 units
// instead of one per unit. errs[i] is nil when us[i] was created,
// ErrExists (wrapped) when a unit of that name exists, or why it failed.
// The names must differ from each other.
func (r *Registry) CreateUnits(ctx context.Context, us []NewUnit) (errs []error) {
	errs = make([]error, len(us))
	for i, u := range us {
		if u.Unit.Hash == "" || u.Unit.Name == "" {
			errs[i] = fmt.Errorf("create unit %q: name and hash are required", u.Unit.Name)
		}
	}
	var batches [][]int
	var cur []int
	for i := range us {
		if errs[i] != nil {
			continue
		}
		cur = append(cur, i)
		if len(cur) == unitsPerTxn {
			batches, cur = append(batches, cur), nil
		}
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	win := newTxnWindow()
	var wg sync.WaitGroup
	for _, b := range batches {
		win.acquire()
		wg.Go(func() { r.createBatch(ctx, win, us, b, errs) })
	}
	wg.Wait()
	return errs
}

// createBatch creates the units us[idx...] in one transaction. When some
// already exist, the transaction reads which instead, and the others are
// created in another.
// It holds a slot of win, taken by the caller, and frees it; it waits
// out etcd's "too many requests" with a backoff, in a slot of its own.
func (r *Registry) createBatch(ctx context.Context, win *txnWindow, us []NewUnit, idx []int, errs []error) {
	held := true
	defer func() {
		if held {
			win.release(0, false)
		}
	}()
	backoff := 20 * time.Millisecond
	for len(idx) > 0 {
		var cmps []clientv3.Cmp
		var puts, gets []clientv3.Op
		bodies := map[string]bool{}
		for _, i := range idx {
			u := us[i].Unit
			k := r.keys.unit(u.Name)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			if !bodies[u.Hash] {
				bodies[u.Hash] = true
				puts = append(puts, clientv3.OpPut(r.keys.body(u.Hash), us[i].Body))
			}
			puts = append(puts, clientv3.OpPut(k, mustJSON(u)))
			gets = append(gets, clientv3.OpGet(k, clientv3.WithKeysOnly()))
		}
		if !held {
			win.acquire()
			held = true
		}
		t := time.Now()
		resp, err := r.txn(ctx, cmps, puts, gets...)
		overloaded := errors.Is(err, rpctypes.ErrTooManyRequests)
		win.release(time.Since(t), overloaded)
		held = false
		if overloaded && ctx.Err() == nil {
			// Not proposed: nothing of it was written.
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if err != nil {
			for _, i := range idx {
				errs[i] = fmt.Errorf("create unit %s: %w", us[i].Unit.Name, err)
			}
			return
		}
		if resp.Succeeded {
			return
		}
		var left []int
		for j, i := range idx {
			if len(resp.Responses[j].GetResponseRange().GetKvs()) > 0 {
				errs[i] = fmt.Errorf("create unit %s: %w", us[i].Unit.Name, ErrExists)
			} else {
				left = append(left, i)
			}
		}
		idx = left
	}
}

// DestroyUnits deletes unit records as DestroyUnit does, 127 to a
// transaction. errs[i] is nil, ErrNotFound (wrapped) or why names[i] was
// not destroyed.
func (r *Registry) DestroyUnits(ctx context.Context, names []string) (errs []error) {
	errs = make([]error, len(names))
	for start := 0; start < len(names); start += maxTxnOps {
		part := names[start:min(len(names), start+maxTxnOps)]
		ops := make([]clientv3.Op, len(part))
		seen := make(map[string]bool, len(part))
		for i, n := range part {
			if seen[n] {
				// A key twice in one transaction is refused: the second
				// finds it gone.
				ops[i] = clientv3.OpGet(r.keys.unit(n) + "\x00")
				continue
			}
			seen[n] = true
			ops[i] = clientv3.OpDelete(r.keys.unit(n))
		}
		resp, err := r.txn(ctx, nil, ops)
		for i, n := range part {
			switch {
			case err != nil:
				errs[start+i] = fmt.Errorf("destroy unit %s: %w", n, err)
			case resp.Responses[i].GetResponseDeleteRange() == nil || resp.Responses[i].GetResponseDeleteRange().Deleted == 0:
				errs[start+i] = fmt.Errorf("destroy unit %s: %w", n, ErrNotFound)
			}
		}
	}
	return errs
}
