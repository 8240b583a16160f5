package registry

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The engine leader's decisions beyond the schedule: why units are placed
// nowhere, and which engine version leads.
//
//	P/unplaced/<name>   reason text   why the unit fits no machine; written and
//	                                  deleted only by the engine leader
//	P/engine/version    "1.2.3"       highest engine version that led

// UnplacedOp records (Reason != "") or clears (Reason == "") why the engine
// could place unit Name on no machine.
type UnplacedOp struct {
	Name   string
	Reason string
}

// ApplyDecisions writes schedule changes and then unplaced reasons in as few
// transactions as etcd allows (127 ops each), every one fenced by the
// leadership, so a deposed leader writes neither. It returns how many were
// applied, counting ops first and then reasons; on error the rest was not
// written (ErrNotLeader when lead no longer leads).
func (r *Registry) ApplyDecisions(ctx context.Context, lead *Leadership, ops []PlanOp, reasons []UnplacedOp) (int, error) {
	groups := make([][]clientv3.Op, 0, len(ops)+len(reasons))
	for _, op := range ops {
		groups = append(groups, r.planOps(op))
	}
	for _, u := range reasons {
		k := r.keys.unplacedUnit(u.Name)
		if u.Reason != "" {
			groups = append(groups, []clientv3.Op{clientv3.OpPut(k, u.Reason)})
		} else {
			groups = append(groups, []clientv3.Op{clientv3.OpDelete(k)})
		}
	}
	n, err := r.applyGroups(ctx, lead, groups)
	if err != nil {
		return n, fmt.Errorf("apply engine decisions: %w", err)
	}
	return n, nil
}

// Unplaced reads every recorded unplaced reason, by unit name, and the
// revision they were read at. A unit that is placed, inactive or not yet
// looked at by the engine has none. A reason may briefly outlive its
// destroyed unit: join with Units.
func (r *Registry) Unplaced(ctx context.Context) (map[string]string, int64, error) {
	resp, err := r.get(ctx, r.keys.unplaced(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read unplaced reasons: %w", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), r.keys.unplaced())
		out[name], _ = decodeUnplaced(name, kv.Value)
	}
	return out, resp.Header.Revision, nil
}

// UnplacedReason reads why the engine placed unit name nowhere. It returns
// ErrNotFound when no reason is recorded.
func (r *Registry) UnplacedReason(ctx context.Context, name string) (string, error) {
	resp, err := r.get(ctx, r.keys.unplacedUnit(name))
	if err != nil {
		return "", fmt.Errorf("read unplaced reason of %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("unplaced reason of %s: %w", name, ErrNotFound)
	}
	return decodeUnplaced(name, resp.Kvs[0].Value)
}

// WatchUnplaced streams unplaced reason changes after rev. Key is the unit
// name, Value the reason ("" when Deleted).
func (r *Registry) WatchUnplaced(ctx context.Context, rev int64) <-chan Event[string] {
	return watchPrefix(ctx, r.cli, r.keys.unplaced(), rev, decodeUnplaced)
}

// decodeUnplaced decodes the value of P/unplaced/<name>: the reason, as text.
func decodeUnplaced(_ string, v []byte) (string, error) { return string(v), nil }

// BodiesOf reads the bodies of the given hashes, 128 to a request and up to
// 4 requests at once, keyed by hash. Hashes without a body are absent from
// the result.
func (r *Registry) BodiesOf(ctx context.Context, hashes []string) (map[string]string, error) {
	out := make(map[string]string, len(hashes))
	var chunks [][]string
	for len(hashes) > 0 {
		n := min(len(hashes), maxTxnOps+1)
		chunks, hashes = append(chunks, hashes[:n]), hashes[n:]
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, 4)
	for _, chunk := range chunks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			gets := make([]clientv3.Op, len(chunk))
			for i, h := range chunk {
				gets[i] = clientv3.OpGet(r.keys.body(h))
			}
			resp, err := r.txn(ctx, nil, gets)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				first = cmp.Or(first, fmt.Errorf("read unit bodies: %w", err))
				return
			}
			for i, rr := range resp.Responses {
				if kvs := rr.GetResponseRange().GetKvs(); len(kvs) > 0 {
					out[chunk[i]] = string(kvs[0].Value)
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// EngineVersion reads the highest engine version that led the cluster ("" if
// none is recorded) and the mod revision of its record (0 if none), to pass
// to SetEngineVersion.
func (r *Registry) EngineVersion(ctx context.Context) (string, int64, error) {
	resp, err := r.get(ctx, r.keys.engineVersion())
	if err != nil {
		return "", 0, fmt.Errorf("read engine version: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision, nil
}

// SetEngineVersion records v as the engine version leading the cluster if
// the record still has mod revision modRev (0: no record) and lead still
// leads. It returns ErrConflict when the record changed meanwhile and
// ErrNotLeader when lead was deposed. Comparing versions is the caller's
// business.
func (r *Registry) SetEngineVersion(ctx context.Context, lead *Leadership, v string, modRev int64) error {
	key := r.keys.engineVersion()
	inner := clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)},
		[]clientv3.Op{clientv3.OpPut(key, v)}, nil)
	resp, err := r.txn(ctx, []clientv3.Cmp{lead.fence()}, []clientv3.Op{inner})
	if err != nil {
		return fmt.Errorf("set engine version %s: %w", v, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("set engine version %s: %w", v, ErrNotLeader)
	}
	if !resp.Responses[0].GetResponseTxn().Succeeded {
		return fmt.Errorf("set engine version %s: %w", v, ErrConflict)
	}
	return nil
}
