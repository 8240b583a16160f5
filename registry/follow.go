package registry

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// Since is what a prefix holds at revision Rev compared with a model of it
// taken at an earlier revision: every key put at or after that revision
// (created or modified; a delete leaves no key to find) and how many keys
// the prefix holds now. A model that applies Changed and then holds Count
// keys missed no delete; one that holds more must read the prefix again.
type Since[T any] struct {
	Changed []T
	Count   int64
	Rev     int64
}

// since reads, in one read-only transaction (one revision), the keys under
// prefix modified at or after rev and the number of keys under prefix. It
// costs a count and a filtered range, not a transfer of the whole prefix.
func since[T any](ctx context.Context, r *Registry, prefix string, rev int64, decode func(key string, v []byte) (T, error)) (Since[T], error) {
	resp, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithMinModRev(max(rev, 1))),
	})
	if err != nil {
		return Since[T]{}, fmt.Errorf("read %s changed since revision %d: %w", prefix, rev, err)
	}
	out := Since[T]{Count: resp.Responses[0].GetResponseRange().Count, Rev: resp.Header.Revision}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		v, err := decode(strings.TrimPrefix(string(kv.Key), prefix), kv.Value)
		if err != nil {
			return Since[T]{}, err
		}
		out.Changed = append(out.Changed, v)
	}
	return out, nil
}

// UnitsSince reads the unit records put at or after rev, and how many
// units there are (see Since).
func (r *Registry) UnitsSince(ctx context.Context, rev int64) (Since[Unit], error) {
	// decodeUnit wants the record's mod revision only for callers that
	// compare it; the engine does not.
	return since(ctx, r, r.keys.units(), rev, func(k string, v []byte) (Unit, error) { return decodeUnit(k, v, 0) })
}

// MachinesSince reads the machines that registered or changed at or after
// rev, and how many are present (see Since).
func (r *Registry) MachinesSince(ctx context.Context, rev int64) (Since[machine.Machine], error) {
	return since(ctx, r, r.keys.machines(), rev, decodeMachine)
}

// PlacementsSince reads the schedule entries written at or after rev, and
// how many the schedule holds (see Since).
func (r *Registry) PlacementsSince(ctx context.Context, rev int64) (Since[Placement], error) {
	prefix := r.keys.schedules()
	return since(ctx, r, prefix, rev, func(k string, v []byte) (Placement, error) { return r.decodePlacement(prefix+k, v) })
}

// UnplacedReason is one recorded unplaced reason.
type UnplacedReason struct {
	Name   string
	Reason string
}

// UnplacedSince reads the unplaced reasons written at or after rev, and how
// many are recorded (see Since).
func (r *Registry) UnplacedSince(ctx context.Context, rev int64) (Since[UnplacedReason], error) {
	return since(ctx, r, r.keys.unplaced(), rev, func(k string, v []byte) (UnplacedReason, error) {
		return UnplacedReason{Name: k, Reason: string(v)}, nil
	})
}
