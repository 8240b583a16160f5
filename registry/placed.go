package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The unit->placement index. The schedule is keyed machine first, so that an
// agent watches only its own prefix; finding one unit's placements there
// means listing every machine's schedule. The index holds every placement
// again, keyed unit first:
//
//	P/placed/<unit>/<machine>   {"hash","desiredState"}   same value as P/schedule/<machine>/<unit>
//	P/placed-version            "1"                       the index is complete and kept in step
//
// Every writer of the schedule writes the index entry in the same fenced
// transaction. A cluster last led by an engine that predates the index has
// schedules but no marker: readers then list the schedule as before, and the
// next engine leader rebuilds the index at the start of its term.

// placedIndexVersion is the marker value of an index this code keeps.
const placedIndexVersion = "1"

// planOps is the schedule write and its index write for op: they go into
// one transaction, never apart.
func (r *Registry) planOps(op PlanOp) []clientv3.Op {
	p := op.Placement
	sk, ik := r.keys.placement(p.Machine, p.Name), r.keys.placed(p.Name, p.Machine)
	if !op.Put {
		return []clientv3.Op{clientv3.OpDelete(sk), clientv3.OpDelete(ik)}
	}
	v := mustJSON(p)
	return []clientv3.Op{clientv3.OpPut(sk, v), clientv3.OpPut(ik, v)}
}

// applyGroups writes groups of ops in as few transactions as etcd allows,
// each fenced by lead and never splitting a group. It returns how many
// groups were written, counted from the first; on error the rest may not
// have been (ErrNotLeader when lead was deposed).
//
// Up to txnsInFlight transactions are in flight at all times, so that etcd
// commits several in one raft entry and one fsync: a leader placing a
// backlog waits for the disk a few times less. A transaction starts as soon
// as a slot is free and every earlier one touching one of its keys has
// ended (a plan that deletes and then puts one key keeps that order), not
// when a whole wave has: a wave waited for its slowest transaction, which
// on an etcd shared with thousands of agents' writes left the slots idle.
func (r *Registry) applyGroups(ctx context.Context, lead *Leadership, groups [][]clientv3.Op) (int, error) {
	type batch struct {
		ops    []clientv3.Op
		groups int
	}
	var batches []batch
	for i := 0; i < len(groups); {
		var b batch
		for i < len(groups) && len(b.ops)+len(groups[i]) <= maxTxnOps {
			b.ops = append(b.ops, groups[i]...)
			b.groups++
			i++
		}
		if b.groups == 0 { // a group larger than a transaction: alone
			b.ops, b.groups = groups[i], 1
			i++
		}
		batches = append(batches, b)
	}
	var (
		done     = make([]chan struct{}, len(batches))
		errs     = make([]error, len(batches))
		last     = map[string]int{} // key -> the last batch touching it
		sem      = make(chan struct{}, txnsInFlight)
		failed   atomic.Bool
		wg       sync.WaitGroup
		launched int
	)
	for i, b := range batches {
		var after []int
		for _, op := range b.ops {
			k := string(op.KeyBytes())
			if j, ok := last[k]; ok && j != i && !slices.Contains(after, j) {
				after = append(after, j)
			}
			last[k] = i
		}
		sem <- struct{}{}
		if failed.Load() {
			<-sem
			break
		}
		done[i] = make(chan struct{})
		launched++
		wg.Go(func() {
			defer func() { <-sem; close(done[i]) }()
			for _, j := range after {
				<-done[j]
			}
			if failed.Load() {
				errs[i] = errSkipped
				return
			}
			resp, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, batches[i].ops)
			switch {
			case err != nil:
				errs[i] = err
			case !resp.Succeeded:
				errs[i] = ErrNotLeader
			}
			if errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	n := 0
	for i := range launched {
		if errs[i] != nil {
			// The first failure in order may be a batch skipped for a
			// later one's error: report the error itself.
			for _, err := range errs[i:launched] {
				if err != nil && err != errSkipped {
					return n, err
				}
			}
			return n, errs[i]
		}
		n += batches[i].groups
	}
	return n, nil
}

// errSkipped marks a batch not sent because another had failed.
var errSkipped = errors.New("not sent: an earlier transaction failed")

// txnsInFlight bounds the fenced transactions applyGroups has in flight.
const txnsInFlight = 4

// PlacementsOf reads the placements of one unit, on every machine it is
// scheduled to, present or not, sorted by machine. With the index complete
// this is one request reading only the unit's own keys, whatever the size of
// the cluster; without it (a cluster not yet led by an engine that keeps the
// index) it lists the whole schedule's keys.
func (r *Registry) PlacementsOf(ctx context.Context, name string) ([]Placement, error) {
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("read placements of %q: not a unit name", name)
	}
	resp, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(r.keys.placedVersion()),
		clientv3.OpGet(r.keys.placedOf(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
	})
	if err != nil {
		return nil, fmt.Errorf("read placements of %s: %w", name, err)
	}
	marker := resp.Responses[0].GetResponseRange().GetKvs()
	if len(marker) == 0 || string(marker[0].Value) != placedIndexVersion {
		return r.scanPlacementsOf(ctx, name)
	}
	var out []Placement
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		m := strings.TrimPrefix(string(kv.Key), r.keys.placedOf(name))
		p, err := r.decodePlacement(r.keys.placement(m, name), kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// scanPlacementsOf is PlacementsOf without the index: it lists the
// schedule's keys (not its values) and then reads only the unit's entries.
func (r *Registry) scanPlacementsOf(ctx context.Context, name string) ([]Placement, error) {
	resp, err := r.get(ctx, r.keys.schedules(), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read schedule of %s: %w", name, err)
	}
	var gets []clientv3.Op
	for _, kv := range resp.Kvs {
		if _, n, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.schedules())); ok && n == name {
			// At the listing's revision, so the entries are the ones listed.
			gets = append(gets, clientv3.OpGet(string(kv.Key), clientv3.WithRev(resp.Header.Revision)))
		}
	}
	var out []Placement
	for len(gets) > 0 {
		batch := gets[:min(len(gets), maxTxnOps)]
		gets = gets[len(batch):]
		tresp, err := r.txn(ctx, nil, batch)
		if err != nil {
			return nil, fmt.Errorf("read schedule of %s: %w", name, err)
		}
		for _, rr := range tresp.Responses {
			for _, kv := range rr.GetResponseRange().GetKvs() {
				p, err := r.decodePlacement(string(kv.Key), kv.Value)
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// EnsurePlacementIndex makes the unit->placement index complete, fenced by
// lead; the engine leader calls it at the start of its term, before it writes
// the schedule. When the marker is present and the index has as many entries
// as the schedule it does nothing (two count-only reads). Otherwise it
// deletes the marker and the index, writes an entry for every placement and
// sets the marker last, so readers list the schedule meanwhile. It returns
// whether it rebuilt the index.
func (r *Registry) EnsurePlacementIndex(ctx context.Context, lead *Leadership) (bool, error) {
	resp, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(r.keys.placedVersion()),
		clientv3.OpGet(r.keys.schedules(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(r.keys.placedAll(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	})
	if err != nil {
		return false, fmt.Errorf("check placement index: %w", err)
	}
	marker := resp.Responses[0].GetResponseRange().GetKvs()
	scheduled, indexed := resp.Responses[1].GetResponseRange().Count, resp.Responses[2].GetResponseRange().Count
	if len(marker) > 0 && string(marker[0].Value) == placedIndexVersion && scheduled == indexed {
		return false, nil
	}
	clearIndex := [][]clientv3.Op{{clientv3.OpDelete(r.keys.placedVersion()), clientv3.OpDelete(r.keys.placedAll(), clientv3.WithPrefix())}}
	if _, err := r.applyGroups(ctx, lead, clearIndex); err != nil {
		return false, fmt.Errorf("rebuild placement index: clear: %w", err)
	}
	ps, rev, err := r.Placements(ctx)
	if err != nil {
		return false, fmt.Errorf("rebuild placement index: %w", err)
	}
	groups := make([][]clientv3.Op, len(ps))
	for i, p := range ps {
		groups[i] = []clientv3.Op{clientv3.OpPut(r.keys.placed(p.Name, p.Machine), mustJSON(p))}
	}
	if _, err := r.applyGroups(ctx, lead, groups); err != nil {
		return false, fmt.Errorf("rebuild placement index: %w", err)
	}
	// Only the leader writes the schedule, but a schedule changed since it
	// was read (a write of a previous term still in flight) must not be
	// marked indexed: compare that no entry is newer than the read.
	tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(r.keys.schedules()), "<", rev+1).WithPrefix()},
		[]clientv3.Op{clientv3.OpPut(r.keys.placedVersion(), placedIndexVersion)}, nil)})
	if err != nil {
		return false, fmt.Errorf("rebuild placement index: mark complete: %w", err)
	}
	if !tr.Succeeded {
		return false, fmt.Errorf("rebuild placement index: %w", ErrNotLeader)
	}
	if !tr.Responses[0].GetResponseTxn().Succeeded {
		return false, fmt.Errorf("rebuild placement index: the schedule changed meanwhile: %w", ErrConflict)
	}
	return true, nil
}
