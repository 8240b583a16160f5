package bench

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
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
