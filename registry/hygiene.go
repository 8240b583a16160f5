package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// What keeps etcd small: the engine leader collects unit bodies nothing
// refers to, drops the schedules of machines gone for good and compacts
// etcd's history. Keys:
//
//	P/absent/<machine>   {"since":"<RFC 3339>"}   when the leader first saw a
//	                                              machine absent that still
//	                                              has placements; leader only

// ErrEngineRunning is returned by ClearEngineVersion when an engine leads
// or campaigns: the record may be legitimate.
var ErrEngineRunning = errors.New("an engine is leading or campaigning")

// UnreferencedBodies returns the bodies that no unit record and no placement
// refers to, as hash -> mod revision of the body (for CollectBodies). The
// bodies are listed before units and placements are read: a unit created
// after the listing rewrote its body (CreateUnit puts it again), so its mod
// revision no longer matches and CollectBodies leaves it.
func (r *Registry) UnreferencedBodies(ctx context.Context) (map[string]int64, error) {
	bresp, err := r.get(ctx, r.keys.bodies(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list unit bodies: %w", err)
	}
	out := make(map[string]int64, len(bresp.Kvs))
	for _, kv := range bresp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), r.keys.bodies())] = kv.ModRevision
	}
	if len(out) == 0 {
		return out, nil
	}
	// Units and placements at one revision, no earlier than the listing.
	tr, err := r.txn(ctx, nil, []clientv3.Op{
		clientv3.OpGet(r.keys.units(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.schedules(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.rollouts(), clientv3.WithPrefix()),
	})
	if err != nil {
		return nil, fmt.Errorf("read unit references: %w", err)
	}
	for _, rr := range tr.Responses {
		for _, kv := range rr.GetResponseRange().GetKvs() {
			// A unit in a rollout also needs its old body (rollout.hash),
			// and a rollout record both of its bodies, for an undo.
			var ref struct {
				Hash    string `json:"hash"`
				To      string `json:"to"`
				Rollout *struct {
					Hash string `json:"hash"`
				} `json:"rollout"`
				Units []struct {
					From string `json:"from"`
				} `json:"units"`
			}
			if err := json.Unmarshal(kv.Value, &ref); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			delete(out, ref.Hash)
			delete(out, ref.To)
			if ref.Rollout != nil {
				delete(out, ref.Rollout.Hash)
			}
			for _, u := range ref.Units {
				delete(out, u.From)
			}
		}
	}
	return out, nil
}

// CollectBodies deletes the given bodies (hash -> mod revision, as
// UnreferencedBodies returned them), each only if its mod revision is
// unchanged: CreateUnit rewrites the body it refers to, so a body that
// became referenced meanwhile survives. Deletes are fenced by lead and
// batched; it returns how many bodies were deleted.
func (r *Registry) CollectBodies(ctx context.Context, lead *Leadership, bodies map[string]int64) (int, error) {
	hashes := slices.Sorted(maps.Keys(bodies))
	n := 0
	for len(hashes) > 0 {
		batch := hashes[:min(len(hashes), maxTxnOps)]
		hashes = hashes[len(batch):]
		cmps := make([]clientv3.Cmp, 0, len(batch))
		dels := make([]clientv3.Op, 0, len(batch))
		for _, h := range batch {
			k := r.keys.body(h)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", bodies[h]))
			dels = append(dels, clientv3.OpDelete(k))
		}
		// The fence goes in the outer transaction, so that a failed
		// compare can be told apart from a lost leadership.
		tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{clientv3.OpTxn(cmps, dels, nil)})
		if err != nil {
			return n, fmt.Errorf("collect unit bodies: %w", err)
		}
		if !tr.Succeeded {
			return n, fmt.Errorf("collect unit bodies: %w", ErrNotLeader)
		}
		if tr.Responses[0].GetResponseTxn().Succeeded {
			n += len(batch)
			continue
		}
		// One body of the batch changed: delete the others one by one.
		for _, h := range batch {
			k := r.keys.body(h)
			tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(k), "=", bodies[h])},
				[]clientv3.Op{clientv3.OpDelete(k)}, nil)})
			if err != nil {
				return n, fmt.Errorf("collect unit body %s: %w", h, err)
			}
			if !tr.Succeeded {
				return n, fmt.Errorf("collect unit bodies: %w", ErrNotLeader)
			}
			if tr.Responses[0].GetResponseTxn().Succeeded {
				n++
			}
		}
	}
	return n, nil
}

// AbsentMachines returns the machines recorded absent (MarkAbsent) and since
// when.
func (r *Registry) AbsentMachines(ctx context.Context) (map[string]time.Time, error) {
	resp, err := r.get(ctx, r.keys.absent(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read absent machines: %w", err)
	}
	out := make(map[string]time.Time, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), r.keys.absent())
		var rec absentRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode absent machine %s: %w", id, err)
		}
		out[id] = rec.Since
	}
	return out, nil
}

type absentRecord struct {
	Since time.Time `json:"since"`
}

// MarkAbsent records that machine id is absent since since, fenced by lead,
// unless a record exists already or the machine is present.
func (r *Registry) MarkAbsent(ctx context.Context, lead *Leadership, id string, since time.Time) error {
	key := r.keys.absentMachine(id)
	tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{clientv3.OpTxn(
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(r.keys.machine(id)), "=", 0),
		},
		[]clientv3.Op{clientv3.OpPut(key, mustJSON(absentRecord{Since: since.UTC()}))}, nil)})
	if err != nil {
		return fmt.Errorf("mark machine %s absent: %w", id, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("mark machine %s absent: %w", id, ErrNotLeader)
	}
	return nil
}

// ForgetAbsent deletes the absence records of ids, fenced by lead.
func (r *Registry) ForgetAbsent(ctx context.Context, lead *Leadership, ids ...string) error {
	for len(ids) > 0 {
		batch := ids[:min(len(ids), maxTxnOps)]
		ids = ids[len(batch):]
		ops := make([]clientv3.Op, len(batch))
		for i, id := range batch {
			ops[i] = clientv3.OpDelete(r.keys.absentMachine(id))
		}
		tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, ops)
		if err != nil {
			return fmt.Errorf("forget absent machines: %w", err)
		}
		if !tr.Succeeded {
			return fmt.Errorf("forget absent machines: %w", ErrNotLeader)
		}
	}
	return nil
}

// DropSchedule deletes every placement of machine id, with its index
// entries, and then its absence record, fenced by lead, only while the
// machine is absent: a machine that came back keeps what is left of its
// schedule (ErrConflict). The index is keyed by unit, so the placements are
// listed (one machine's keys) and deleted in batches, each placement with its
// index entry; the absence record goes with the last batch, so an
// interrupted drop is finished by the next one. It returns how many
// placements were deleted.
func (r *Registry) DropSchedule(ctx context.Context, lead *Leadership, id string) (int, error) {
	absent := clientv3.Compare(clientv3.CreateRevision(r.keys.machine(id)), "=", 0)
	deleted := 0
	for {
		resp, err := r.get(ctx, r.keys.schedule(id), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(maxTxnOps/2))
		if err != nil {
			return deleted, fmt.Errorf("drop schedule of machine %s: %w", id, err)
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			_, name, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.schedules()))
			if !ok {
				return deleted, fmt.Errorf("drop schedule of machine %s: malformed key %q", id, kv.Key)
			}
			ops = append(ops, r.planOps(PlanOp{Placement: Placement{Machine: id, Name: name}})...)
		}
		last := !resp.More
		if last {
			ops = append(ops, clientv3.OpDelete(r.keys.absentMachine(id)))
		}
		tr, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{clientv3.OpTxn([]clientv3.Cmp{absent}, ops, nil)})
		if err != nil {
			return deleted, fmt.Errorf("drop schedule of machine %s: %w", id, err)
		}
		if !tr.Succeeded {
			return deleted, fmt.Errorf("drop schedule of machine %s: %w", id, ErrNotLeader)
		}
		inner := tr.Responses[0].GetResponseTxn()
		if !inner.Succeeded {
			return deleted, fmt.Errorf("drop schedule of machine %s: it is present again: %w", id, ErrConflict)
		}
		for i := 0; i < 2*len(resp.Kvs); i += 2 {
			deleted += int(inner.Responses[i].GetResponseDeleteRange().Deleted)
		}
		if last {
			return deleted, nil
		}
	}
}

// Compact discards etcd's history before revision rev: watches and reads at
// older revisions then fail with a compacted error (their callers read
// again and watch from a new revision). A revision compacted already is not
// an error. etcd frees the space in the background after it returns.
func (r *Registry) Compact(ctx context.Context, rev int64) error {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	_, err := r.cli.Compact(ctx, rev)
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("compact etcd history to revision %d: %w", rev, err)
	}
	return nil
}

// ClearEngineVersion deletes the record of the highest engine version that
// led, so that any engine may lead and record its own: the way out after a
// build with a wrong version led the cluster. Unless force is set it
// refuses with ErrEngineRunning while an engine leads or campaigns, since
// the record is then most likely that engine's, rightly. It returns the
// version it cleared ("" when none was recorded).
func (r *Registry) ClearEngineVersion(ctx context.Context, force bool) (string, error) {
	v, rev, err := r.EngineVersion(ctx)
	if err != nil || rev == 0 {
		return "", err
	}
	key := r.keys.engineVersion()
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	if !force {
		// No election key at all: nobody leads, nobody campaigns.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.keys.election()+"/"), "=", 0).WithPrefix())
	}
	tr, err := r.txn(ctx, cmps, []clientv3.Op{clientv3.OpDelete(key)})
	if err != nil {
		return "", fmt.Errorf("clear engine version %s: %w", v, err)
	}
	if tr.Succeeded {
		return v, nil
	}
	leader, err := r.Leader(ctx)
	if err != nil {
		return "", fmt.Errorf("clear engine version %s: %w", v, err)
	}
	now, _, err := r.EngineVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("clear engine version %s: %w", v, err)
	}
	if now != v {
		return "", fmt.Errorf("clear engine version %s: it changed to %q meanwhile: %w", v, now, ErrConflict)
	}
	if leader == "" {
		leader = "none yet"
	}
	return "", fmt.Errorf("clear engine version %s: %w (leader: %s); stop the engines first, or force it", v, ErrEngineRunning, leader)
}
