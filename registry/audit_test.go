package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestRecordAudit(t *testing.T) {
	reg, ctx := newRegistry(t)
	rev, err := reg.Revision(ctx)
	require.NoError(t, err)
	ch := reg.WatchChanges(ctx, rev)

	at := time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)
	recs := []registry.AuditRecord{
		{Time: at, Machine: "m1", Identity: "ci", Via: "token", Method: "PUT", Path: "/fleet/v1/units/web.service",
			Action: "unit.create", Unit: "web.service", Detail: "launched", Status: 201},
		{Time: at.Add(time.Second), Machine: "m1", Identity: "viewer", Via: "cert", Method: "DELETE", Path: "/fleet/v1/units/web.service",
			Action: "unit.destroy", Unit: "web.service", Status: 404},
	}
	for _, rec := range recs {
		require.NoError(t, reg.RecordAudit(ctx, rec))
	}
	var got []registry.AuditRecord
	for len(got) < len(recs) {
		b := <-ch
		require.NoError(t, b.Err)
		for _, c := range b.Changes {
			require.NotNil(t, c.Audit, "only audit records were written")
			got = append(got, *c.Audit)
		}
	}
	for i := range got {
		require.True(t, recs[i].Time.Equal(got[i].Time))
		got[i].Time = recs[i].Time
	}
	require.Equal(t, recs, got)

	// Both records share one lease, which ends them within AuditTTL.
	cli := reg.Client()
	resp, err := cli.Get(ctx, reg.Prefix()+"audit/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 2)
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	require.NotZero(t, lease)
	require.Equal(t, lease, clientv3.LeaseID(resp.Kvs[1].Lease))
	ttl, err := cli.TimeToLive(ctx, lease)
	require.NoError(t, err)
	require.Equal(t, int64(registry.AuditTTL/time.Second), ttl.GrantedTTL)

	// A lease etcd lost is replaced: the record is still stored.
	_, err = cli.Revoke(ctx, lease)
	require.NoError(t, err)
	require.NoError(t, reg.RecordAudit(ctx, registry.AuditRecord{Identity: "ci", Method: "PATCH", Path: "/fleet/v1/machines", Action: "machines.set-metadata", Status: 204}))
	resp, err = cli.Get(ctx, reg.Prefix()+"audit/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "the revoked lease took the first two records")
	require.NotEqual(t, lease, clientv3.LeaseID(resp.Kvs[0].Lease))

	// Expiry (here: revocation) is not reported as a change.
	b := <-ch
	require.NoError(t, b.Err)
	require.Len(t, b.Changes, 1, "only the new record, no deletes")
	require.Equal(t, "PATCH", b.Changes[0].Audit.Method)
}
