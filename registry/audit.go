package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AuditTTL is how long an audit record stays in etcd at most: long enough
// for `fleetctl events` and anyone watching to see it, short enough that
// records never pile up. fleetd's log keeps them for good.
const AuditTTL = time.Hour

// auditLeaseUse is how long one audit lease takes new records: every record
// then lives between AuditTTL-auditLeaseUse and AuditTTL, and a fleetd
// grants at most two leases an hour, however many calls it audits.
const auditLeaseUse = AuditTTL / 2

// AuditRecord is one mutating API call: who made it, what it asked and how
// it was answered.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// Machine is the machine whose fleetd served the call.
	Machine string `json:"machine,omitempty"`
	// Identity is the caller's name; Via how it was identified (token,
	// cert, unix, insecure).
	Identity string `json:"identity"`
	Via      string `json:"via,omitempty"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	// Action names what the call did or tried, such as unit.create.
	Action string `json:"action"`
	Unit   string `json:"unit,omitempty"`
	// Detail adds to Action, such as the desired state asked for.
	Detail string `json:"detail,omitempty"`
	// Status is the HTTP status of the answer.
	Status int `json:"status"`
}

// auditLease is the lease audit records of this Registry share.
type auditLease struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

// RecordAudit stores rec under P/audit/, where it shows in WatchChanges,
// for at most AuditTTL. Records share a lease, granted anew every half TTL,
// so storing one costs one etcd write.
func (r *Registry) RecordAudit(ctx context.Context, rec AuditRecord) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	key := r.keys.auditRecord(fmt.Sprintf("%020d-%08x", rec.Time.UnixNano(), rand.Uint32()))
	val := mustJSON(rec)
	for attempt := 0; ; attempt++ {
		lease, err := r.auditLease(ctx, rec.Time)
		if err != nil {
			return fmt.Errorf("audit record of %s %s: %w", rec.Method, rec.Path, err)
		}
		resp, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(key, val, clientv3.WithLease(lease))})
		if err == nil && !resp.Succeeded {
			return fmt.Errorf("audit record of %s %s: key %s: %w", rec.Method, rec.Path, key, ErrExists)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) || attempt > 0 {
			return fmt.Errorf("audit record of %s %s: %w", rec.Method, rec.Path, err)
		}
		// The lease ended early (etcd lost it, or the clock jumped): take
		// a new one.
		r.audit.mu.Lock()
		if r.audit.id == lease {
			r.audit.id = 0
		}
		r.audit.mu.Unlock()
	}
}

// auditLease returns the lease for an audit record made at now, granting
// one if the current one is too old.
func (r *Registry) auditLease(ctx context.Context, now time.Time) (clientv3.LeaseID, error) {
	r.audit.mu.Lock()
	defer r.audit.mu.Unlock()
	if r.audit.id != 0 && now.Sub(r.audit.granted) < auditLeaseUse {
		return r.audit.id, nil
	}
	gctx, cancel := r.reqCtx(ctx)
	defer cancel()
	g, err := r.cli.Grant(gctx, int64(AuditTTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant audit lease: %w", err)
	}
	r.audit.id, r.audit.granted = g.ID, now
	return g.ID, nil
}

func decodeAudit(key string, v []byte) (AuditRecord, error) {
	var rec AuditRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, fmt.Errorf("decode audit record %s: %w", key, err)
	}
	return rec, nil
}
