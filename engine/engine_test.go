package engine_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

func submit(t testing.TB, ctx context.Context, reg *registry.Registry, name, text string) {
	t.Helper()
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, f.String(), false))
}

// schedule reads the schedule as unit -> sorted machines.
func schedule(t testing.TB, ctx context.Context, reg *registry.Registry) map[string][]string {
	t.Helper()
	ps, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	w := map[string][]string{}
	for _, p := range ps {
		w[p.Name] = append(w[p.Name], p.Machine)
	}
	for _, ms := range w {
		sort.Strings(ms)
	}
	return w
}

// waitPlacement polls the schedule until cond holds on unit -> machines.
func waitPlacement(t *testing.T, ctx context.Context, reg *registry.Registry, d time.Duration, cond func(map[string][]string) bool) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		w := schedule(t, ctx, reg)
		if cond(w) {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("placement condition not met after %s; schedule: %v", d, w)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startEngine(t *testing.T, ctx context.Context, reg *registry.Registry, id string) (*engine.Engine, context.CancelFunc) {
	return startEngineWith(t, ctx, engine.Config{Registry: reg, ID: id, LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second})
}

func startEngineWith(t *testing.T, ctx context.Context, cfg engine.Config) (*engine.Engine, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	e := engine.New(cfg)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return e, stop
}

func register(t *testing.T, ctx context.Context, reg *registry.Registry, id string, md map[string]string, ttl time.Duration) *registry.Presence {
	t.Helper()
	p, err := reg.Register(ctx, machine.Machine{ID: id, Hostname: id, Metadata: md}, ttl)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func TestEnginePlacesAndFailsOver(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	presences := map[string]*registry.Presence{}
	for _, id := range []string{"m1", "m2", "m3"} {
		presences[id] = register(t, ctx, reg, id, map[string]string{"role": map[bool]string{true: "db", false: "web"}[id == "m3"]}, 2*time.Second)
	}
	startEngine(t, ctx, reg, "m1")

	start := time.Now()
	for i := range 6 {
		submit(t, ctx, reg, fmt.Sprintf("web%d.service", i), "[Service]\nExecStart=/bin/sleep 100\n[X-Fleet]\nMachineMetadata=role=web\n")
	}
	submit(t, ctx, reg, "db.service", "[Service]\nExecStart=/bin/sleep 100\n[X-Fleet]\nMachineMetadata=role=db\n")
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 7 })
	t.Logf("7 units placed %s after the first submit", ms(time.Since(start)))
	require.Equal(t, []string{"m3"}, w["db.service"])
	count := map[string]int{}
	for name, ms := range w {
		require.Len(t, ms, 1, name)
		count[ms[0]]++
	}
	require.Equal(t, map[string]int{"m1": 3, "m2": 3, "m3": 1}, count)

	// m2 dies (its keepalives stop): its units move to m1, the only other web machine.
	var onM2 []string
	for name, ms := range w {
		if ms[0] == "m2" {
			onM2 = append(onM2, name)
		}
	}
	presences["m2"].Close()
	died := time.Now()
	w = waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool {
		for _, name := range onM2 {
			if len(w[name]) != 1 || w[name][0] != "m1" {
				return false
			}
		}
		return true
	})
	t.Logf("failover: units of the dead machine placed elsewhere %.2f s after its keepalives stopped (TTL 2 s)", time.Since(died).Seconds())
	require.Equal(t, []string{"m3"}, w["db.service"], "units of live machines do not move")

	// Stopping a unit rewrites its placement's desired state; destroying it unschedules it.
	require.NoError(t, reg.SetDesiredState(ctx, "db.service", registry.StateLoaded))
	waitPlacement(t, ctx, reg, 5*time.Second, func(map[string][]string) bool {
		s, _, err := reg.Schedule(ctx, "m3")
		require.NoError(t, err)
		return len(s) == 1 && s[0].DesiredState == registry.StateLoaded
	})
	require.NoError(t, reg.DestroyUnit(ctx, "db.service"))
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["db.service"]) == 0 })
}

// TestEngineFailover kills a machine (its lease ends) and measures how long
// its units take to be placed elsewhere in etcd. The goal is TTL + 1 s when
// keepalives stop, well under a second when the lease is revoked. The global
// unit, which can go nowhere else, keeps its placement on the dead machine.
// The machine then comes back: nothing moves back, and its schedule holds
// the global unit, untouched, and no longer the units that moved (its agent
// stops its stale copies).
func TestEngineFailover(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		kill func(ctx context.Context, p *registry.Presence) error
	}{
		{"keepalives stop, TTL 5 s (agent_ttl default)", 5 * time.Second, func(_ context.Context, p *registry.Presence) error { p.Close(); return nil }},
		{"keepalives stop, TTL 2 s (etcd minimum)", 2 * time.Second, func(_ context.Context, p *registry.Presence) error { p.Close(); return nil }},
		{"lease revoked (clean shutdown)", 5 * time.Second, func(ctx context.Context, p *registry.Presence) error { return p.Revoke(ctx) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry.New(etcdtest.Start(t).Client(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			presences := map[string]*registry.Presence{}
			for _, id := range []string{"m1", "m2", "m3"} {
				presences[id] = register(t, ctx, reg, id, nil, tc.ttl)
			}
			startEngine(t, ctx, reg, "e1")
			submit(t, ctx, reg, "global.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n")
			for i := range 6 {
				submit(t, ctx, reg, fmt.Sprintf("u%d.service", i), "[Service]\nExecStart=/bin/true\n")
			}
			submit(t, ctx, reg, "ping.service", "[Service]\nExecStart=/bin/true\n")
			submit(t, ctx, reg, "pong.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=ping.service\n")
			before := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 9 && len(w["global.service"]) == 3 })

			victim := before["ping.service"][0]
			died := time.Now()
			require.NoError(t, tc.kill(ctx, presences[victim]))
			after := waitPlacement(t, ctx, reg, tc.ttl+10*time.Second, func(w map[string][]string) bool {
				for name, ms := range before {
					if name != "global.service" && ms[0] == victim && (len(w[name]) != 1 || w[name][0] == victim) {
						return false
					}
				}
				return true
			})
			require.Equal(t, before["global.service"], after["global.service"], "the global unit keeps its placement on the dead machine")
			took := time.Since(died)
			moved := 0
			for name, ms := range before {
				switch {
				case name == "global.service":
				case ms[0] == victim:
					moved++
				default:
					require.Equal(t, ms, after[name], "%s was on a live machine and must not move", name)
				}
			}
			require.Equal(t, after["ping.service"], after["pong.service"], "the MachineOf pair moves together")
			t.Logf("failover: %d units of %s placed elsewhere in etcd %.2f s after it died (TTL %s, goal TTL+1s = %s)",
				moved, victim, took.Seconds(), tc.ttl, tc.ttl+time.Second)

			register(t, ctx, reg, victim, nil, tc.ttl)
			final := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["global.service"]) == 3 })
			require.Equal(t, before["global.service"], final["global.service"])
			delete(final, "global.service")
			delete(after, "global.service")
			require.Equal(t, after, final, "nothing moves back")
			sched, _, err := reg.Schedule(ctx, victim)
			require.NoError(t, err)
			require.Len(t, sched, 1, "its schedule holds only the global unit: its agent unloads the rest")
		})
	}
}

// TestEngineLeaderTakeover stops the leader gracefully (it resigns), then
// kills the next one abruptly (its etcd client goes away, its session lease
// runs out): another engine takes over, reconciles from etcd, and no unit
// is placed twice.
func TestEngineLeaderTakeover(t *testing.T) {
	e := etcdtest.Start(t)
	reg := registry.New(e.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", nil, 5*time.Second)
	register(t, ctx, reg, "m2", nil, 5*time.Second)

	e1, stop1 := startEngine(t, ctx, reg, "e1")
	require.Eventually(t, e1.Leading, 5*time.Second, 10*time.Millisecond)
	// e2 has its own etcd client, so it can die without taking e3's with it.
	cli2 := e.Client(t)
	e2, stop2 := startEngineWith(t, ctx, engine.Config{Registry: registry.New(cli2), ID: "e2", LeaderTTL: 3 * time.Second, ReconcileInterval: 5 * time.Second})
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["a.service"]) == 1 })
	require.False(t, e2.Leading(), "only one engine leads")

	stop1()
	lost := time.Now()
	require.Eventually(t, e2.Leading, 5*time.Second, 5*time.Millisecond)
	t.Logf("leader takeover after a graceful stop (resign): %s", ms(time.Since(lost)))
	submit(t, ctx, reg, "b.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["b.service"]) == 1 })

	e3, _ := startEngine(t, ctx, reg, "e3")
	time.Sleep(200 * time.Millisecond) // e3 campaigns
	require.NoError(t, cli2.Close())   // e2 dies: no resign, its lease runs out
	died := time.Now()
	submit(t, ctx, reg, "c.service", "[Service]\nExecStart=/bin/true\n")
	require.Eventually(t, e3.Leading, 10*time.Second, 5*time.Millisecond)
	led := time.Since(died)
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["c.service"]) == 1 })
	t.Logf("leader takeover after an abrupt death (session TTL 3 s): leads after %s; unit submitted meanwhile placed after %s",
		ms(led), ms(time.Since(died)))
	for name, ms := range w {
		require.Len(t, ms, 1, "%s placed once", name)
	}
	require.NotEqual(t, w["a.service"], w["b.service"], "the new leaders kept the old placements and counted them")
	stop2()
}

// TestEngineDeposedLeaderWritesNothing revokes the leader's session from
// outside while it keeps running, as a partition would: another engine
// takes over at once and the deposed one's writes are refused.
func TestEngineDeposedLeaderWritesNothing(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range []string{"m1", "m2", "m3"} {
		register(t, ctx, reg, id, nil, 5*time.Second)
	}
	e1, _ := startEngine(t, ctx, reg, "e1")
	require.Eventually(t, e1.Leading, 5*time.Second, 10*time.Millisecond)
	e2, _ := startEngine(t, ctx, registry.New(e.Client(t)), "e2")
	for i := range 20 {
		submit(t, ctx, reg, fmt.Sprintf("a%02d.service", i), "[Service]\nExecStart=/bin/true\n")
	}

	// The election key of the leader is the one created first.
	resp, err := cli.Get(ctx, reg.Prefix()+"engine/leader", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "e1", string(resp.Kvs[0].Value))
	_, err = cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)
	revoked := time.Now()
	for i := range 20 {
		submit(t, ctx, reg, fmt.Sprintf("b%02d.service", i), "[Service]\nExecStart=/bin/true\n")
	}
	require.Eventually(t, e2.Leading, 5*time.Second, 5*time.Millisecond)
	t.Logf("deposed leader replaced %s after its session was revoked", ms(time.Since(revoked)))
	w := waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool { return len(w) == 40 })
	count := map[string]int{}
	for name, ms := range w {
		require.Len(t, ms, 1, "%s placed once", name)
		count[ms[0]]++
	}
	for m, n := range count {
		require.InDelta(t, 40/3, n, 2, "machine %s holds %d units: least loaded across the handover", m, n)
	}
}

// versionedEngines is the version tests' cluster: one machine, start runs
// an engine of the given version (GCInterval gc), stored reads the version
// recorded in etcd.
func versionedEngines(t *testing.T, gc time.Duration) (ctx context.Context, reg *registry.Registry,
	start func(version string) (*engine.Engine, context.CancelFunc), stored func() string) {
	reg = registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	register(t, ctx, reg, "m1", nil, 5*time.Second)
	start = func(version string) (*engine.Engine, context.CancelFunc) {
		return startEngineWith(t, ctx, engine.Config{Registry: reg, ID: "e-" + version, Version: version,
			LeaderTTL: time.Second, ReconcileInterval: 200 * time.Millisecond, GCInterval: gc})
	}
	stored = func() string {
		v, _, err := reg.EngineVersion(ctx)
		require.NoError(t, err)
		return v
	}
	return ctx, reg, start, stored
}

// TestEngineVersionGuard: the highest engine version that led is recorded;
// an older engine never leads; a newer one leads and records itself; a
// version that does not parse (a development build) leads without being
// recorded.
func TestEngineVersionGuard(t *testing.T) {
	ctx, reg, start, stored := versionedEngines(t, 0)

	v2, stop := start("v2.0.0")
	require.Eventually(t, v2.Leading, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "v2.0.0", stored())
	stop()

	old, _ := start("1.9.9")
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/true\n")
	require.Never(t, old.Leading, time.Second, 20*time.Millisecond, "an older engine must not lead")
	require.Empty(t, schedule(t, ctx, reg), "nobody placed anything")

	newer, stopNewer := start("v2.1.0-3-gabcdef0-dirty")
	require.Eventually(t, newer.Leading, 5*time.Second, 10*time.Millisecond)
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["a.service"]) == 1 })
	require.Equal(t, "v2.1.0-3-gabcdef0-dirty", stored())
	stopNewer()
	require.Never(t, old.Leading, time.Second, 20*time.Millisecond, "still older")

	dev, _ := start("dev")
	require.Eventually(t, dev.Leading, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "v2.1.0-3-gabcdef0-dirty", stored(), "a development build is not recorded")
	require.False(t, old.Leading())
}

// TestEngineUnplacedReasons: why a unit fits nowhere is in etcd for every
// fleetd to read; it goes when the unit is placed or destroyed, also when
// that happens while no engine runs.
func TestEngineUnplacedReasons(t *testing.T) {
	reg := registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", map[string]string{"role": "web"}, 5*time.Second)
	e1, stop1 := startEngine(t, ctx, reg, "e1")
	submit(t, ctx, reg, "db.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=db\n")
	submit(t, ctx, reg, "gone.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=cafebabe\n")
	submit(t, ctx, reg, "bad.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=m1\nGlobal=true\n")
	want := map[string]string{
		"db.service":   "no machine has metadata role=db",
		"gone.service": "MachineID=cafebabe is not present",
		"bad.service":  "[X-Fleet] options refused: MachineID cannot be combined with Global",
	}
	require.Eventually(t, func() bool {
		got, _, err := reg.Unplaced(ctx)
		require.NoError(t, err)
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, e1.Unplaced())
	why, err := reg.UnplacedReason(ctx, "db.service")
	require.NoError(t, err)
	require.Equal(t, "no machine has metadata role=db", why)

	// Destroyed while no engine runs: the next leader drops the stale reason.
	stop1()
	require.NoError(t, reg.DestroyUnit(ctx, "gone.service"))
	e2, _ := startEngine(t, ctx, reg, "e2")
	require.Eventually(t, func() bool {
		_, err := reg.UnplacedReason(ctx, "gone.service")
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)

	// A machine with role=db joins: the unit is placed and its reason goes.
	joined := time.Now()
	register(t, ctx, reg, "m2", map[string]string{"role": "db"}, 5*time.Second)
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["db.service"]) == 1 })
	require.Eventually(t, func() bool {
		_, err := reg.UnplacedReason(ctx, "db.service")
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	t.Logf("unit placed and its reason cleared %s after a matching machine joined", ms(time.Since(joined)))
	require.NotContains(t, e2.Unplaced(), "db.service")
}

func TestEngineReportsUnplaceable(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", nil, 5*time.Second)
	e, _ := startEngine(t, ctx, reg, "e1")
	submit(t, ctx, reg, "db.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=db\n")
	require.Eventually(t, func() bool { return e.Unplaced()["db.service"] == "no machine has metadata role=db" }, 5*time.Second, 10*time.Millisecond)
}

// TestEngineGlobalUnits: a global unit follows machines as they join, and
// leaves a machine whose metadata stops matching.
func TestEngineGlobalUnits(t *testing.T) {
	reg := registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	web := map[string]string{"role": "web"}
	p1 := register(t, ctx, reg, "m1", web, 5*time.Second)
	startEngine(t, ctx, reg, "e1")
	submit(t, ctx, reg, "g.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=web\n")
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/true\n")
	submit(t, ctx, reg, "b.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 3 })

	joined := time.Now()
	register(t, ctx, reg, "m2", web, 5*time.Second)
	register(t, ctx, reg, "m3", nil, 5*time.Second)
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["g.service"]) == 2 })
	t.Logf("global unit on the joining machine %s after it registered", ms(time.Since(joined)))
	require.Equal(t, []string{"m1", "m2"}, w["g.service"])
	require.Equal(t, []string{"m1"}, w["a.service"], "nothing else moves")
	require.Equal(t, []string{"m1"}, w["b.service"], "nothing else moves")

	require.NoError(t, p1.UpdateMachine(ctx, machine.Machine{ID: "m1", Hostname: "m1", Metadata: map[string]string{"role": "db"}}))
	w = waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["g.service"]) == 1 })
	require.Equal(t, []string{"m2"}, w["g.service"])
}

func TestEngineReportsEachPlanWritten(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", nil, 2*time.Second)
	var mu sync.Mutex
	var plans, ops int
	startEngineWith(t, ctx, engine.Config{Registry: reg, ID: "e1", LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second,
		OnPlan: func(took time.Duration, placementOps int) {
			mu.Lock()
			defer mu.Unlock()
			plans++
			ops += placementOps
		}})
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/true\n")
	submit(t, ctx, reg, "b.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 2 })
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return plans >= 1 && ops == 2
	}, 5*time.Second, 10*time.Millisecond, "OnPlan sees every placement written")
}

// TestEngineVersionDigitsOnly: a build whose version is a commit hash made
// only of digits (git describe without tags) is no version: it never
// claims the cluster, and when an older build recorded it, the record is
// treated as absent, so a real engine leads and replaces it.
func TestEngineVersionDigitsOnly(t *testing.T) {
	ctx, reg, start, stored := versionedEngines(t, -1)

	hash, stop := start("3146401")
	require.Eventually(t, hash.Leading, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, stored(), "a commit hash is not recorded as a version")
	stop()

	// What an older fleetd with the digits-only version wrote.
	lead, err := reg.Campaign(ctx, "old-build", time.Second)
	require.NoError(t, err)
	require.NoError(t, reg.SetEngineVersion(ctx, lead, "3146401", 0))
	require.NoError(t, lead.Resign(ctx))

	rel, _ := start("0.2.0")
	require.Eventually(t, rel.Leading, 5*time.Second, 10*time.Millisecond, "a stored version that does not parse locks nobody out")
	require.Eventually(t, func() bool { return stored() == "0.2.0" }, 5*time.Second, 10*time.Millisecond)
}

// TestEngineAtMostOnce: the at-most-once unit of a machine that left is
// placed elsewhere only AtMostOnceMargin after the machine's lease key was
// deleted, and stays where it was if the machine is back before that.
func TestEngineAtMostOnce(t *testing.T) {
	const margin = 1500 * time.Millisecond
	const amo = "[Service]\nExecStart=/bin/true\n[X-Fleet]\nAtMostOnce=true\n"
	setup := func(t *testing.T, ctx context.Context) (*registry.Registry, map[string]*registry.Presence, string) {
		reg := registry.New(etcdtest.Start(t).Client(t))
		presences := map[string]*registry.Presence{}
		for _, id := range []string{"m1", "m2"} {
			presences[id] = register(t, ctx, reg, id, nil, 2*time.Second)
		}
		startEngineWith(t, ctx, engine.Config{Registry: reg, ID: "e1", LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second, AtMostOnceMargin: margin})
		submit(t, ctx, reg, "db.service", amo)
		submit(t, ctx, reg, "web.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=db.service\n")
		w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 2 })
		return reg, presences, w["db.service"][0]
	}

	t.Run("placed elsewhere a margin after the machine left", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		reg, presences, victim := setup(t, ctx)
		require.NoError(t, presences[victim].Revoke(ctx))
		left := time.Now() // the lease key is gone: the engine cannot have seen it earlier
		w := waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool {
			return len(w["db.service"]) == 1 && w["db.service"][0] != victim
		})
		took := time.Since(left)
		require.GreaterOrEqual(t, took, margin, "placed elsewhere before the margin ran out")
		require.Equal(t, w["db.service"], w["web.service"], "its MachineOf follower goes with it")
		t.Logf("at-most-once unit placed elsewhere %.2f s after its machine left (margin %s)", took.Seconds(), margin)
	})

	t.Run("the machine is back within the margin: nothing moves", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		reg, presences, victim := setup(t, ctx)
		require.NoError(t, presences[victim].Revoke(ctx))
		register(t, ctx, reg, victim, nil, 2*time.Second)
		time.Sleep(2 * margin)
		require.Equal(t, []string{victim}, schedule(t, ctx, reg)["db.service"], "the held placement stands for the returning machine")
	})
}
