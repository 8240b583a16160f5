package registry

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// UnitListing is everything a listing of units shows, read at one revision:
// the unit records, their bodies, the schedule, the unplaced reasons and
// which (machine, unit) pairs have a published state.
type UnitListing struct {
	Units      []Unit                 // sorted by name
	Bodies     map[string]string      // by hash
	Placements map[string][]Placement // by unit name
	Unplaced   map[string]string      // by unit name
	Reported   map[[2]string]bool     // (machine, unit) pairs with a published state
	Rev        int64
}

// ListUnits reads a UnitListing in one read-only transaction, so the units,
// bodies and placements agree with each other. Published states are read
// keys only: a listing of units needs to know that one is there, not what
// it says.
func (r *Registry) ListUnits(ctx context.Context) (UnitListing, error) {
	resp, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(r.keys.units(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		clientv3.OpGet(r.keys.bodies(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.schedules(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.unplaced(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.states(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	})
	if err != nil {
		return UnitListing{}, fmt.Errorf("list units: %w", err)
	}
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().GetKvs() }
	l := UnitListing{
		Units:      make([]Unit, 0, len(kvs(0))),
		Bodies:     make(map[string]string, len(kvs(1))),
		Placements: make(map[string][]Placement, len(kvs(2))),
		Unplaced:   make(map[string]string, len(kvs(3))),
		Reported:   make(map[[2]string]bool, len(kvs(4))),
		Rev:        resp.Header.Revision,
	}
	for _, kv := range kvs(0) {
		u, err := decodeUnit(strings.TrimPrefix(string(kv.Key), r.keys.units()), kv.Value, kv.ModRevision)
		if err != nil {
			return UnitListing{}, err
		}
		l.Units = append(l.Units, u)
	}
	for _, kv := range kvs(1) {
		l.Bodies[strings.TrimPrefix(string(kv.Key), r.keys.bodies())] = string(kv.Value)
	}
	for _, kv := range kvs(2) {
		p, err := r.decodePlacement(string(kv.Key), kv.Value)
		if err != nil {
			return UnitListing{}, err
		}
		l.Placements[p.Name] = append(l.Placements[p.Name], p)
	}
	for _, kv := range kvs(3) {
		l.Unplaced[strings.TrimPrefix(string(kv.Key), r.keys.unplaced())] = string(kv.Value)
	}
	for _, kv := range kvs(4) {
		if m, name, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.states())); ok {
			l.Reported[[2]string{m, name}] = true
		}
	}
	return l, nil
}
