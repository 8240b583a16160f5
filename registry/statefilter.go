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
// machines or, when machineIDs is empty, on every present machine. It reads
// one key per (machine, unit) pair, never the whole collection: the cost
// grows with the machines asked about, not with the cluster's units. The
// result is sorted by unit name, then machine ID.
func (r *Registry) StatesOf(ctx context.Context, names, machineIDs []string) ([]UnitState, error) {
	if len(machineIDs) == 0 {
		ids, err := r.machineIDs(ctx)
		if err != nil {
			return nil, err
		}
		machineIDs = ids
	}
	type pair struct{ machine, name string }
	var pairs []pair
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

// machineIDs lists the IDs of present machines, reading keys only.
func (r *Registry) machineIDs(ctx context.Context) ([]string, error) {
	resp, err := r.get(ctx, r.keys.machines(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	out := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = strings.TrimPrefix(string(kv.Key), r.keys.machines())
	}
	return out, nil
}

func sortUnitStates(ss []UnitState) {
	slices.SortFunc(ss, func(a, b UnitState) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Machine, b.Machine))
	})
}
