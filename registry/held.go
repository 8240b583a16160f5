package registry

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrMachinePresent is returned by ReleaseHeld when the machine is present
// again: its held placements stand, and its agent follows them.
var ErrMachinePresent = errors.New("machine is present")

// ReleaseHeld deletes the placements of units names on machine id, which
// left, so that the engine may place them elsewhere. Every transaction is
// fenced by the leadership and by the machine's absence: a machine that
// registered again may already have read these placements and started the
// units, and then they must stay. It returns ErrMachinePresent or
// ErrNotLeader when a fence fails; batches written before stay written (the
// units they name are simply placed elsewhere).
func (r *Registry) ReleaseHeld(ctx context.Context, lead *Leadership, id string, names []string) error {
	machineKey := r.keys.machine(id)
	for len(names) > 0 {
		n := min(len(names), maxTxnOps)
		ops := make([]clientv3.Op, n)
		for i, name := range names[:n] {
			ops[i] = clientv3.OpDelete(r.keys.placement(id, name))
		}
		resp, err := r.txn(ctx, []clientv3.Cmp{lead.fence(), clientv3.Compare(clientv3.CreateRevision(machineKey), "=", 0)},
			ops, clientv3.OpGet(machineKey, clientv3.WithCountOnly()))
		if err != nil {
			return fmt.Errorf("release held placements on %s: %w", id, err)
		}
		if !resp.Succeeded {
			if c := resp.Responses[0].GetResponseRange().Count; c > 0 {
				return fmt.Errorf("release held placements on %s: %w", id, ErrMachinePresent)
			}
			return fmt.Errorf("release held placements on %s: %w", id, ErrNotLeader)
		}
		names = names[n:]
	}
	return nil
}
