package registry

import (
	"cmp"
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

// Cluster is what the engine reads at the start of a term: every unit,
// present machine, schedule entry and unplaced reason, and (when asked)
// every stored body, all at one revision.
type Cluster struct {
	Units      []Unit
	Machines   []machine.Machine
	Placements []Placement
	Unplaced   map[string]string
	Bodies     map[string]string // nil unless asked for
	Rev        int64
}

// ReadCluster reads the cluster at one revision, so that a body is never
// missing for a unit read (a create writes both at one revision). The reads
// go one after another, each within the request timeout, while what came
// is decoded: five large reads at once, on an etcd at 100,000 units and a
// loaded machine, each took longer than the timeout and were all retried.
// With bodies false the bodies are not read.
func (r *Registry) ReadCluster(ctx context.Context, bodies bool) (Cluster, error) {
	head, err := r.get(ctx, r.keys.units(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return Cluster{}, fmt.Errorf("read cluster: %w", err)
	}
	c := Cluster{Rev: head.Header.Revision}
	type prefixRead struct {
		prefix string
		each   func(key string, v []byte) error
	}
	read := func(prefix string, each func(key string, v []byte) error) prefixRead { return prefixRead{prefix, each} }
	c.Unplaced = map[string]string{}
	reads := []prefixRead{
		read(r.keys.units(), func(k string, v []byte) error {
			u, err := decodeUnit(k, v, 0)
			c.Units = append(c.Units, u)
			return err
		}),
		read(r.keys.machines(), func(k string, v []byte) error {
			m, err := decodeMachine(k, v)
			c.Machines = append(c.Machines, m)
			return err
		}),
		read(r.keys.schedules(), func(k string, v []byte) error {
			p, err := r.decodePlacement(r.keys.schedules()+k, v)
			c.Placements = append(c.Placements, p)
			return err
		}),
		read(r.keys.unplaced(), func(k string, v []byte) error {
			c.Unplaced[k], _ = decodeUnplaced(k, v)
			return nil
		}),
	}
	if bodies {
		c.Bodies = map[string]string{}
		reads = append(reads, read(r.keys.bodies(), func(k string, v []byte) error {
			c.Bodies[k] = string(v)
			return nil
		}))
	}
	got := make(chan *clientv3.GetResponse, 1)
	var decodeErr error
	decoded := make(chan struct{})
	go func() {
		defer close(decoded)
		for _, rd := range reads {
			resp, ok := <-got
			if !ok {
				return
			}
			for _, kv := range resp.Kvs {
				if err := rd.each(strings.TrimPrefix(string(kv.Key), rd.prefix), kv.Value); err != nil && decodeErr == nil {
					decodeErr = err
				}
			}
		}
	}()
	for _, rd := range reads {
		var resp *clientv3.GetResponse
		if resp, err = r.get(ctx, rd.prefix, clientv3.WithPrefix(), clientv3.WithRev(c.Rev)); err != nil {
			err = fmt.Errorf("read cluster at revision %d: %w", c.Rev, err)
			break
		}
		got <- resp
	}
	close(got)
	<-decoded
	if err := cmp.Or(err, decodeErr); err != nil {
		return Cluster{}, err
	}
	return c, nil
}
