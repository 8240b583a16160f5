package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/seed-a1ce88ea/fleet/agent/internal/hosttest"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestAtMostOnceWhileLeaseInDoubt: etcd goes away for less than the TTL.
// Half a TTL after the last renewal the agent stops its at-most-once unit
// (before the lease can have expired) and starts it again once the same
// lease is renewed; the plain unit and the unit pinned to the machine run
// on untouched.
func TestAtMostOnceWhileLeaseInDoubt(t *testing.T) {
	h := hosttest.Host(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcd := startEtcdMember(ctx, t)
	// Reconnect within a second, as fleetd's client does.
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.srv.Endpoints(), DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	e := newEnvWith(t, h, cli)
	e.ttl = 8 * time.Second // in doubt 4 s after the last renewal
	r := e.startAgent()

	const amo, plain, pinned = "once.service", "plain.service", "pinned.service"
	ha, _ := e.schedule(amo, unit("1000")+"[X-Fleet]\nAtMostOnce=true\n", registry.StateLaunched)
	hp, _ := e.schedule(plain, unit("1001"), registry.StateLaunched)
	hn, _ := e.schedule(pinned, unit("1002")+"[X-Fleet]\nAtMostOnce=true\nMachineID="+e.m.ID+"\n", registry.StateLaunched)
	e.states.waitActive(amo, ha, "active", "running", 0)
	e.states.waitActive(plain, hp, "active", "running", 0)
	e.states.waitActive(pinned, hn, "active", "running", 0)
	pids := map[string]string{plain: e.show(plain, "MainPID"), pinned: e.show(pinned, "MainPID")}

	down := time.Now() // Close stops serving at once, then takes a while
	etcd.srv.Close()
	require.Eventually(t, func() bool { return e.show(amo, "ActiveState") == "inactive" }, e.ttl, 20*time.Millisecond,
		"the at-most-once unit stops while the lease is in doubt")
	stopped := time.Now()
	expiresNoEarlier := r.presence.LastRenewed().Add(r.presence.TTL())
	t.Logf("etcd down -> at-most-once unit stopped: %v; the lease could not expire for %v more",
		stopped.Sub(down).Round(time.Millisecond), expiresNoEarlier.Sub(stopped).Round(time.Millisecond))
	require.True(t, stopped.Before(expiresNoEarlier), "stopped before the lease could have expired")
	for u, pid := range pids {
		require.Equal(t, "active", e.show(u, "ActiveState"), u)
		require.Equal(t, pid, e.show(u, "MainPID"), "%s runs on untouched", u)
	}

	etcd.restart(ctx)
	back := time.Now()
	require.Eventually(t, func() bool { return e.show(amo, "ActiveState") == "active" }, waitTimeout, 20*time.Millisecond,
		"the at-most-once unit starts again once the lease is renewed")
	t.Logf("etcd back -> at-most-once unit active again: %v (etcd down %v in all)",
		time.Since(back).Round(time.Millisecond), back.Sub(down).Round(time.Millisecond))
	select {
	case err := <-r.done:
		t.Fatalf("the presence was renewed, yet Run returned: %v", err)
	default:
	}
	for u, pid := range pids {
		require.Equal(t, pid, e.show(u, "MainPID"), "%s was never restarted", u)
	}
}
