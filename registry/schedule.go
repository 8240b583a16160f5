package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Placement is one schedule entry: unit Name is to run on Machine, with body
// Hash, in DesiredState (loaded or launched).
type Placement struct {
	Machine      string `json:"-"`
	Name         string `json:"-"`
	Hash         string `json:"hash"`
	DesiredState State  `json:"desiredState"`
}

// Schedule reads one machine's schedule and the revision it was read at.
func (r *Registry) Schedule(ctx context.Context, machineID string) ([]Placement, int64, error) {
	return r.placements(ctx, r.keys.schedule(machineID))
}

// Placements reads every machine's schedule.
func (r *Registry) Placements(ctx context.Context) ([]Placement, int64, error) {
	return r.placements(ctx, r.keys.schedules())
}

// PlacementsOf reads the placements of one unit, on every machine it is
// scheduled to, present or not. The schedule is keyed by machine first, so
// this lists the schedule's keys (not its values) and then reads only the
// unit's entries: a fraction of what Placements moves for a large cluster.
func (r *Registry) PlacementsOf(ctx context.Context, name string) ([]Placement, error) {
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

func (r *Registry) placements(ctx context.Context, prefix string) ([]Placement, int64, error) {
	resp, err := r.get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("read schedule: %w", err)
	}
	out := make([]Placement, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := r.decodePlacement(string(kv.Key), kv.Value)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, resp.Header.Revision, nil
}

func (r *Registry) decodePlacement(key string, v []byte) (Placement, error) {
	m, name, ok := splitMachineKey(strings.TrimPrefix(key, r.keys.schedules()))
	if !ok {
		return Placement{}, fmt.Errorf("decode placement: malformed key %q", key)
	}
	p := Placement{Machine: m, Name: name}
	if v != nil {
		if err := json.Unmarshal(v, &p); err != nil {
			return Placement{}, fmt.Errorf("decode placement %s: %w", key, err)
		}
	}
	return p, nil
}

// PlanOp is one change to the schedule: Put writes Placement, otherwise the
// placement of Placement.Name on Placement.Machine is removed.
type PlanOp struct {
	Put       bool
	Placement Placement
}

// ApplyPlan writes ops in as few transactions as etcd allows (127 ops each),
// every one fenced by the leadership: if lead is no longer the leader, the
// first failing batch returns ErrNotLeader and nothing of it is written.
// It returns the number of ops applied.
func (r *Registry) ApplyPlan(ctx context.Context, lead *Leadership, ops []PlanOp) (int, error) {
	done := 0
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		batch := make([]clientv3.Op, 0, n)
		for _, op := range ops[:n] {
			k := r.keys.placement(op.Placement.Machine, op.Placement.Name)
			if op.Put {
				batch = append(batch, clientv3.OpPut(k, mustJSON(op.Placement)))
			} else {
				batch = append(batch, clientv3.OpDelete(k))
			}
		}
		resp, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, batch)
		if err != nil {
			return done, fmt.Errorf("apply plan: %w", err)
		}
		if !resp.Succeeded {
			return done, fmt.Errorf("apply plan: %w", ErrNotLeader)
		}
		done += n
		ops = ops[n:]
	}
	return done, nil
}
