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

// ApplyPlan writes ops, each with its index entry (see PlacementsOf), in as
// few transactions as etcd allows (127 ops each),
// every one fenced by the leadership: if lead is no longer the leader, the
// first failing batch returns ErrNotLeader and nothing of it is written.
// It returns the number of ops applied.
func (r *Registry) ApplyPlan(ctx context.Context, lead *Leadership, ops []PlanOp) (int, error) {
	groups := make([][]clientv3.Op, len(ops))
	for i, op := range ops {
		groups[i] = r.planOps(op)
	}
	n, err := r.applyGroups(ctx, lead, groups)
	if err != nil {
		return n, fmt.Errorf("apply plan: %w", err)
	}
	return n, nil
}
