package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// StatesOf reads the published states of the named units, on the given
// machines or, when machineIDs is empty, on the machines each unit is
// scheduled to (the unit->placement index; an agent publishes a state only
// for what its schedule holds, and deletes it when the unit leaves). It
// reads one key per (machine, unit) pair, never the whole collection: the
// cost grows with the machines asked about, not with the cluster. The
// result is sorted by unit name, then machine ID.
func (r *Registry) StatesOf(ctx context.Context, names, machineIDs []string) ([]UnitState, error) {
	type pair struct{ machine, name string }
	var pairs []pair
	if len(machineIDs) == 0 {
		on, err := r.machinesOf(ctx, names)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			for _, m := range on[n] {
				pairs = append(pairs, pair{m, n})
			}
		}
	}
	for _, n := range names {
		for _, m := range machineIDs {
			pairs = append(pairs, pair{m, n})
		}
	}
	var out []UnitState
	for len(pairs) > 0 {
		batch := pairs[:min(len(pairs), maxTxnOps)]
		pairs = pairs[len(batch):]
		gets := make([]clientv3.Op, len(batch))
		for i, p := range batch {
			gets[i] = clientv3.OpGet(r.keys.state(p.machine, p.name))
		}
		resp, err := r.txn(ctx, nil, gets)
		if err != nil {
			return nil, fmt.Errorf("read unit states: %w", err)
		}
		for i, rr := range resp.Responses {
			kvs := rr.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				continue
			}
			s := UnitState{Machine: batch[i].machine, Name: batch[i].name}
			if err := json.Unmarshal(kvs[0].Value, &s); err != nil {
				return nil, fmt.Errorf("decode state %s: %w", kvs[0].Key, err)
			}
			out = append(out, s)
		}
	}
	sortUnitStates(out)
	return out, nil
}

// machinesOf returns the machines each named unit is scheduled to, from
// the unit->placement index, keys only, many units to a request. Without a
// complete index (a cluster not yet led by an engine that keeps it) it
// lists the keys of every published state instead.
func (r *Registry) machinesOf(ctx context.Context, names []string) (map[string][]string, error) {
	out := make(map[string][]string, len(names))
	for len(names) > 0 {
		batch := names[:min(len(names), maxTxnOps-1)]
		names = names[len(batch):]
		ops := []clientv3.Op{clientv3.OpGet(r.keys.placedVersion())}
		for _, n := range batch {
			ops = append(ops, clientv3.OpGet(r.keys.placedOf(n), clientv3.WithPrefix(), clientv3.WithKeysOnly()))
		}
		resp, err := r.txn(ctx, nil, ops)
		if err != nil {
			return nil, fmt.Errorf("read placements: %w", err)
		}
		marker := resp.Responses[0].GetResponseRange().GetKvs()
		if len(marker) == 0 || string(marker[0].Value) != placedIndexVersion {
			return r.stateMachinesOf(ctx, append(batch, names...))
		}
		for i, n := range batch {
			for _, kv := range resp.Responses[i+1].GetResponseRange().GetKvs() {
				out[n] = append(out[n], strings.TrimPrefix(string(kv.Key), r.keys.placedOf(n)))
			}
		}
	}
	return out, nil
}

// stateMachinesOf returns the machines that published a state of each
// named unit, listing the keys of every published state.
func (r *Registry) stateMachinesOf(ctx context.Context, names []string) (map[string][]string, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	resp, err := r.get(ctx, r.keys.states(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list unit states: %w", err)
	}
	out := make(map[string][]string, len(names))
	for _, kv := range resp.Kvs {
		if m, n, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.states())); ok && want[n] {
			out[n] = append(out[n], m)
		}
	}
	return out, nil
}

func sortUnitStates(ss []UnitState) {
	slices.SortFunc(ss, func(a, b UnitState) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Machine, b.Machine))
	})
}
