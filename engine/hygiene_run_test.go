package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// TestEngineKeepsEtcdClean runs the leader's hygiene with short periods:
// a replaced unit's old body is collected, the placements kept for a
// machine that does not come back are dropped (its pinned unit is then
// reported unplaceable), history is compacted, and the engine goes on
// scheduling through its watches afterwards.
func TestEngineKeepsEtcdClean(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", nil, 5*time.Second)
	gone := register(t, ctx, reg, "m2", nil, 2*time.Second)
	startEngineWith(t, ctx, engine.Config{Registry: reg, ID: "e1", LeaderTTL: time.Second, ReconcileInterval: 500 * time.Millisecond,
		GCInterval: 100 * time.Millisecond, BodyGrace: 200 * time.Millisecond, MachineGCAfter: time.Second, CompactRetention: 300 * time.Millisecond})
	submit(t, ctx, reg, "g.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n")
	submit(t, ctx, reg, "pinned.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=m2\n")
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/a1\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool {
		return len(w["g.service"]) == 2 && len(w["pinned.service"]) == 1 && len(w["a.service"]) == 1
	})
	early, err := reg.Revision(ctx)
	require.NoError(t, err)

	old, err := reg.Unit(ctx, "a.service")
	require.NoError(t, err)
	f, err := unit.ParseString("[Service]\nExecStart=/bin/a2\n")
	require.NoError(t, err)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "a.service", Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, f.String(), true))
	require.Eventually(t, func() bool {
		_, err := reg.Body(ctx, old.Hash)
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "the replaced body is collected")
	_, err = reg.Body(ctx, f.Hash().String())
	require.NoError(t, err, "the body in use stays")

	require.NoError(t, gone.Revoke(ctx))
	waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool {
		return len(w["pinned.service"]) == 0 && len(w["g.service"]) == 1
	})
	require.Eventually(t, func() bool {
		why, err := reg.UnplacedReason(ctx, "pinned.service")
		return err == nil && why != ""
	}, 5*time.Second, 20*time.Millisecond, "the pinned unit is reported unplaceable once its machine's schedule is dropped")

	require.Eventually(t, func() bool {
		_, err := cli.Get(ctx, "x", clientv3.WithRev(early))
		return errors.Is(err, rpctypes.ErrCompacted)
	}, 10*time.Second, 20*time.Millisecond, "history is compacted")
	submit(t, ctx, reg, "b.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["b.service"]) == 1 })
}
