package registry

import (
	"context"
	"fmt"
	"sync"

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

// createTxnsInFlight bounds the create transactions CreateUnits has in
// flight, so that etcd commits more than one in a raft entry and fsync,
// but no more than etcd can apply while agents publish states: with 8, a
// 100,000-unit submission to 10,000 simulated machines on 2 cores made
// etcd's apply fall 5,000 entries behind ("too many requests"), lease
// renewals stalled and presences expired by the ten thousand; with 2 the
// same run completed (BENCHMARKS.md).
const createTxnsInFlight = 2

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
	sem := make(chan struct{}, createTxnsInFlight)
	var wg sync.WaitGroup
	for _, b := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.createBatch(ctx, us, b, errs)
		})
	}
	wg.Wait()
	return errs
}

// createBatch creates the units us[idx...] in one transaction. When some
// already exist, the transaction reads which instead, and the others are
// created in another.
func (r *Registry) createBatch(ctx context.Context, us []NewUnit, idx []int, errs []error) {
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
		resp, err := r.txn(ctx, cmps, puts, gets...)
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
