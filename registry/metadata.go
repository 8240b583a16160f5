package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// MetadataOverride is a machine's dynamic metadata, set through fleet's
// PATCH /machines: keys set or replaced, and keys removed. A removed key
// hides a key of the machine's configured metadata too (a tombstone), so an
// operator can take back what the machine's fleet.conf says.
//
// It is stored at P/metadata/<machine ID> without a lease, so it outlives
// the machine's presence: a machine that leaves and rejoins gets it back.
type MetadataOverride struct {
	Set     map[string]string `json:"set,omitempty"`
	Removed []string          `json:"removed,omitempty"` // sorted
}

// Apply returns configured with o applied: removed keys dropped, set keys
// set. configured is not modified.
func (o MetadataOverride) Apply(configured map[string]string) map[string]string {
	out := make(map[string]string, len(configured)+len(o.Set))
	for k, v := range configured {
		if !slices.Contains(o.Removed, k) {
			out[k] = v
		}
	}
	maps.Copy(out, o.Set)
	return out
}

// IsZero reports whether o changes nothing.
func (o MetadataOverride) IsZero() bool { return len(o.Set) == 0 && len(o.Removed) == 0 }

// apply applies one operation to o in place.
func (o *MetadataOverride) apply(op MetadataOp) {
	if op.Remove {
		delete(o.Set, op.Key)
		if !slices.Contains(o.Removed, op.Key) {
			o.Removed = append(o.Removed, op.Key)
			slices.Sort(o.Removed)
		}
		return
	}
	if o.Set == nil {
		o.Set = map[string]string{}
	}
	o.Set[op.Key] = op.Value
	o.Removed = slices.DeleteFunc(o.Removed, func(k string) bool { return k == op.Key })
}

func (o MetadataOverride) clone() MetadataOverride {
	return MetadataOverride{Set: maps.Clone(o.Set), Removed: slices.Clone(o.Removed)}
}

// MetadataOp is one change of a machine's dynamic metadata: set Key to
// Value, or, with Remove, remove Key (also when it is configured).
type MetadataOp struct {
	Machine string
	Key     string
	Value   string
	Remove  bool
}

// PatchMetadata applies ops in order, all in one transaction: either every
// operation takes effect or none does. Machines need not be present. A
// concurrent patch of the same machine makes it read and try again.
func (r *Registry) PatchMetadata(ctx context.Context, ops []MetadataOp) error {
	var ids []string
	for _, op := range ops {
		if op.Machine == "" || strings.Contains(op.Machine, "/") || op.Key == "" {
			return fmt.Errorf("patch machine metadata: invalid operation %+v", op)
		}
		if !slices.Contains(ids, op.Machine) {
			ids = append(ids, op.Machine)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > maxTxnOps {
		return fmt.Errorf("patch machine metadata: %d machines in one patch; at most %d", len(ids), maxTxnOps)
	}
	for {
		current, revs, err := r.readOverrides(ctx, ids)
		if err != nil {
			return fmt.Errorf("patch machine metadata: %w", err)
		}
		next := make(map[string]MetadataOverride, len(ids))
		for _, id := range ids {
			next[id] = current[id].clone()
		}
		for _, op := range ops {
			o := next[op.Machine]
			o.apply(op)
			next[op.Machine] = o
		}
		cmps := make([]clientv3.Cmp, 0, len(ids))
		puts := make([]clientv3.Op, 0, len(ids))
		for _, id := range ids {
			key := r.keys.machineMetadata(id)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", revs[id]))
			if o := next[id]; o.IsZero() {
				puts = append(puts, clientv3.OpDelete(key))
			} else {
				puts = append(puts, clientv3.OpPut(key, mustJSON(o)))
			}
		}
		resp, err := r.txn(ctx, cmps, puts)
		if err != nil {
			return fmt.Errorf("patch machine metadata: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
}

// readOverrides reads the overrides of the given machines in one request,
// with their mod revisions (0 for none).
func (r *Registry) readOverrides(ctx context.Context, ids []string) (map[string]MetadataOverride, map[string]int64, error) {
	gets := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		gets[i] = clientv3.OpGet(r.keys.machineMetadata(id))
	}
	resp, err := r.txn(ctx, nil, gets)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]MetadataOverride, len(ids))
	revs := make(map[string]int64, len(ids))
	for i, rr := range resp.Responses {
		kvs := rr.GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			continue
		}
		o, err := decodeOverride(ids[i], kvs[0].Value)
		if err != nil {
			return nil, nil, err
		}
		out[ids[i]], revs[ids[i]] = o, kvs[0].ModRevision
	}
	return out, revs, nil
}

func decodeOverride(id string, v []byte) (MetadataOverride, error) {
	var o MetadataOverride
	if err := json.Unmarshal(v, &o); err != nil {
		return MetadataOverride{}, fmt.Errorf("decode metadata of machine %s: %w", id, err)
	}
	return o, nil
}

// MetadataOverrides reads every machine's dynamic metadata, by machine ID.
func (r *Registry) MetadataOverrides(ctx context.Context) (map[string]MetadataOverride, error) {
	resp, err := r.get(ctx, r.keys.metadata(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read machine metadata: %w", err)
	}
	out := make(map[string]MetadataOverride, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), r.keys.metadata())
		o, err := decodeOverride(id, kv.Value)
		if err != nil {
			return nil, err
		}
		out[id] = o
	}
	return out, nil
}

// EffectiveMachine returns m with its dynamic metadata applied over its
// configured metadata, and the revision it was read at: register the result,
// then keep it current with Presence.KeepMetadata from that revision.
func (r *Registry) EffectiveMachine(ctx context.Context, m machine.Machine) (machine.Machine, int64, error) {
	resp, err := r.get(ctx, r.keys.machineMetadata(m.ID))
	if err != nil {
		return m, 0, fmt.Errorf("read metadata of machine %s: %w", m.ID, err)
	}
	if len(resp.Kvs) > 0 {
		o, err := decodeOverride(m.ID, resp.Kvs[0].Value)
		if err != nil {
			return m, 0, err
		}
		m.Metadata = o.Apply(m.Metadata)
	}
	return m, resp.Header.Revision, nil
}

// KeepMetadata keeps the machine record of p showing configured's metadata
// with the machine's dynamic metadata applied: it watches P/metadata/<id>
// from rev (as EffectiveMachine returned it) and rewrites the record, under
// p's lease, on every change. The engine thus schedules on the effective
// metadata without knowing about dynamic metadata.
//
// It blocks until ctx ends or p's presence ends, and then returns nil. A
// broken watch (etcd unreachable, revision compacted) is re-established
// after re-reading the metadata; only a record that cannot be decoded ends
// it with an error.
func (p *Presence) KeepMetadata(ctx context.Context, configured machine.Machine, rev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	r := p.r
	key := r.keys.machineMetadata(configured.ID)
	publish := func(md map[string]string) error {
		if maps.Equal(md, p.Machine().Metadata) {
			return nil
		}
		m := configured
		m.Metadata = md
		return p.UpdateMachine(ctx, m)
	}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		wc := r.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev+1))
		for resp := range wc {
			if resp.Err() != nil {
				break
			}
			if len(resp.Events) == 0 {
				continue
			}
			ev := resp.Events[len(resp.Events)-1]
			var o MetadataOverride
			if ev.Type == clientv3.EventTypePut {
				var err error
				if o, err = decodeOverride(configured.ID, ev.Kv.Value); err != nil {
					return err
				}
			}
			if err := publish(o.Apply(configured.Metadata)); err != nil {
				// Re-read and retry below.
				break
			}
			rev = resp.Header.Revision
			backoff = 200 * time.Millisecond
		}
		if ctx.Err() != nil {
			return nil
		}
		sleepCtx(ctx, backoff)
		backoff = min(backoff*2, 10*time.Second)
		eff, newRev, err := r.EffectiveMachine(ctx, configured)
		if err != nil {
			continue
		}
		if err := publish(eff.Metadata); err != nil {
			continue
		}
		rev = newRev
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
