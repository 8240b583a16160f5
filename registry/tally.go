package registry

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Tally is how many machines are present and how many unplaced reasons are
// recorded, for the metrics of a fleetd that does not lead the engine.
type Tally struct {
	Machines int64
	Unplaced int64
}

// Tally counts with count-only ranges, in one request: etcd walks its
// in-memory key index over the two prefixes and sends no keys or values.
func (r *Registry) Tally(ctx context.Context) (Tally, error) {
	resp, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(r.keys.machines(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(r.keys.unplaced(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	})
	if err != nil {
		return Tally{}, fmt.Errorf("count machines and unplaced units: %w", err)
	}
	return Tally{
		Machines: resp.Responses[0].GetResponseRange().Count,
		Unplaced: resp.Responses[1].GetResponseRange().Count,
	}, nil
}
