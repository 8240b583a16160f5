package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestChurnSmoke runs a short churn with the engine's hygiene on fast
// periods: old bodies are collected (what is stored stays near one body
// per unit), history is compacted, and every cycle's replacement is still
// placed after the compactions (the engine's watches go on).
func TestChurnSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, an engine and agents")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := etcdtest.Start(t)
	cli := e.Client(t)
	c := Churn{Units: 20, Cycles: 60, Machines: 2, Samples: 4, Settle: time.Second,
		GCInterval: 100 * time.Millisecond, BodyGrace: 100 * time.Millisecond, CompactRetention: 300 * time.Millisecond}
	r, err := RunChurn(ctx, cli, e.Endpoints[0], c, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	require.NoError(t, err)
	require.Len(t, r.Samples, 5)
	for _, s := range r.Samples {
		t.Logf("cycle %d: db size %s, in use %s, bodies %d, rev %d", s.Cycle, mib1(s.DBSize), mib1(s.DBSizeInUse), s.Bodies, s.Revision)
	}
	last := r.Samples[len(r.Samples)-1]
	// Without collection 60 cycles leave 1,220 bodies; once the churn
	// stops, only the current ones stay.
	require.Equal(t, 20, last.Bodies, "old bodies are collected")
	_, err = cli.Get(ctx, "x", clientv3.WithRev(r.Samples[0].Revision))
	require.ErrorIs(t, err, rpctypes.ErrCompacted, "history is compacted")
}

// BenchmarkEtcdSizeUnderChurn replaces 100 units b.N times over (one cycle
// per op) with the real engine and 3 agents on MemorySystemd, sampling
// etcd's database size 11 times; with the engine's hygiene on, then off
// for b.N/10 cycles for comparison. With FLEET_BENCH_OUT set to a markdown
// file it writes the figures into its etcd-churn section:
//
//	FLEET_BENCH_OUT=$PWD/BENCHMARKS.md go test ./bench -run '^$' -bench EtcdSizeUnderChurn -benchtime 10000x -timeout 3h
func BenchmarkEtcdSizeUnderChurn(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	run := func(c Churn) *ChurnResult {
		e := etcdtest.Start(b)
		r, err := RunChurn(ctx, e.Client(b), e.Endpoints[0], c, log)
		require.NoError(b, err)
		for _, s := range r.Samples {
			b.Logf("hygiene %v cycle %d: db size %s, in use %s, bodies %d", c.GCInterval > 0, s.Cycle, mib1(s.DBSize), mib1(s.DBSizeInUse), s.Bodies)
		}
		return r
	}
	b.ResetTimer()
	on := run(Churn{Units: 100, Cycles: b.N, Machines: 3, Samples: 11,
		GCInterval: 2 * time.Second, BodyGrace: 2 * time.Second, CompactRetention: 10 * time.Second, Settle: 20 * time.Second})
	b.StopTimer()
	off := run(Churn{Units: 100, Cycles: max(b.N/10, 2), Machines: 3, Samples: 6, GCInterval: -1})
	if out := os.Getenv("FLEET_BENCH_OUT"); out != "" {
		env := DescribeEnv("FLEET_BENCH_OUT=$PWD/BENCHMARKS.md go test ./bench -run '^$' -bench EtcdSizeUnderChurn -benchtime " + strconv.Itoa(b.N) + "x -timeout 3h")
		require.NoError(b, WriteSection(out, ChurnSection, ChurnMarkdown(env, on, off)))
	}
}

// TestAgentResumesAfterCompaction: the real agent (on MemorySystemd)
// watches a schedule that stays quiet while etcd's history is compacted
// past its last event; etcd then restarts, so the watch resumes from that
// compacted revision. The agent reads its schedule again and goes on: a
// unit placed afterwards runs.
func TestAgentResumesAfterCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and restarts etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cport, err := freePort()
	require.NoError(t, err)
	pport, err := freePort()
	require.NoError(t, err)
	ecfg := etcdserver.Config{DataDir: dir, ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", cport)},
		PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pport), Fast: true}
	srv, err := etcdserver.Start(ctx, ecfg)
	require.NoError(t, err)
	defer func() { srv.Close() }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	reg := registry.New(cli)

	p, err := reg.Register(ctx, benchMachine(0), 10*time.Second)
	require.NoError(t, err)
	defer p.Close()
	var logs syncLog
	sd := NewMemorySystemd()
	a := agent.New(agent.Config{Registry: reg, Presence: p, Systemd: sd, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	actx, stopAgent := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	defer func() { stopAgent(); <-done }()

	lead, err := reg.Campaign(ctx, "test", 5*time.Second)
	require.NoError(t, err)
	place := func(name string) {
		t.Helper()
		body := "[Service]\nExecStart=/usr/bin/" + name + "\n"
		hash := fmt.Sprintf("%040x", len(name)*7919)
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: hash, DesiredState: registry.StateLaunched}, body, true))
		_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{
			Machine: p.Machine().ID, Name: name, Hash: hash, DesiredState: registry.StateLaunched}}})
		require.NoError(t, err)
	}
	active := func(name string) func() bool {
		return func() bool { return slices.Contains(sd.Active(), name) }
	}
	place("first.service")
	require.Eventually(t, active("first.service"), 10*time.Second, 10*time.Millisecond)

	// History moves on elsewhere and is compacted past the agent's last
	// schedule event.
	for i := range 50 {
		_, err := cli.Put(ctx, "/elsewhere", fmt.Sprint(i))
		require.NoError(t, err)
	}
	rev, err := reg.Revision(ctx)
	require.NoError(t, err)
	require.NoError(t, reg.Compact(ctx, rev))
	require.NoError(t, lead.Resign(ctx))
	srv.Close()
	srv, err = etcdserver.Start(ctx, ecfg)
	require.NoError(t, err)

	resumed := func() bool {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "schedule watch ended") && strings.Contains(l, "required revision has been compacted") {
				return true
			}
		}
		return false
	}
	require.Eventually(t, resumed, 30*time.Second, 20*time.Millisecond, "the agent's watch resumed at a compacted revision")
	lead, err = reg.Campaign(ctx, "test", 5*time.Second)
	require.NoError(t, err)
	place("second.service")
	require.Eventually(t, active("second.service"), 20*time.Second, 10*time.Millisecond, "the agent follows its schedule again")
	require.True(t, active("first.service")(), "and left the first unit running")
	require.NoError(t, lead.Resign(ctx))
}

// syncLog collects log text from several goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
