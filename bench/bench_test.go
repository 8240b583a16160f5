package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMain(m *testing.M) {
	// The scale tests start this test binary again as etcd and engines.
	if ok, err := RunRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestScaleSmoke runs the whole cluster-scale benchmark on a small cluster
// and checks what the figures rest on: everything is placed and launched,
// one placement wakes one agent, and a killed machine's units move.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two engines")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := Workload{Name: "smoke", Machines: 20, Units: 200, Probes: 3, ListRuns: 1, FailoverPercent: 10,
		AgentTTL: 3 * time.Second, LeaderTTL: 2 * time.Second, IdleWindow: time.Second, Deadline: time.Minute,
		ProfileDir: t.TempDir()}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	r, err := RunScale(ctx, w, t.TempDir(), true, log)
	require.NoError(t, err)
	require.True(t, r.BulkDone, "notes: %v", r.Notes)
	require.Equal(t, expectedPlacements(200, 20), r.Launched)
	require.Equal(t, []int{1, 1, 1}, r.ProbeAgentsWoken, "only the target machine's agent wakes")
	require.True(t, r.FailoverDone, "notes: %v", r.Notes)
	require.Equal(t, 2, r.Killed)
	require.True(t, r.TakeoverDone, "notes: %v", r.Notes)
	require.True(t, r.BacklogDone, "notes: %v", r.Notes)
	for _, l := range r.Lists {
		require.Empty(t, l.Err, l.Command)
		require.Positive(t, l.Rows, l.Command)
	}
	// Every process profiled the bulk: etcd and both engines on SIGUSR1.
	for _, name := range []string{"etcd", "engine-engine-a", "engine-engine-b", "bench"} {
		st, err := os.Stat(profilePath(w.ProfileDir, name))
		require.NoError(t, err, "profile of %s", name)
		require.Positive(t, st.Size(), "profile of %s", name)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// BenchmarkAgentPlacement measures one placement through one real agent on
// MemorySystemd and a real etcd: the schedule entry written (fenced, as the
// engine writes it) to the unit's active state published. It reports the
// agent's wake-ups and etcd requests per placement.
func BenchmarkAgentPlacement(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reqs := newReqCounter()
	cli, err := newClient(etcdtest.Start(b).Endpoints, reqs)
	require.NoError(b, err)
	defer cli.Close()
	reg := registry.New(cli)
	lead, err := reg.Campaign(ctx, "bench", 5*time.Second)
	require.NoError(b, err)
	p, err := reg.Register(ctx, benchMachine(0), 10*time.Second)
	require.NoError(b, err)
	defer p.Close()
	a := agent.New(agent.Config{Registry: reg, Presence: p, Systemd: NewMemorySystemd()})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	_, rev, err := reg.Schedule(ctx, p.Machine().ID)
	require.NoError(b, err)
	states := reg.WatchStates(ctx, p.Machine().ID, rev)
	body := "[Service]\nExecStart=/usr/bin/bench\n"
	hash := "0123456789abcdef0123456789abcdef01234567"
	require.NoError(b, reg.CreateUnit(ctx, registry.Unit{Name: "bench-template.service", Hash: hash, DesiredState: registry.StateLaunched}, body, true))

	b.ResetTimer()
	r0, w0 := total(reqs.snapshot()), a.Stats().Wakeups
	for i := range b.N {
		name := fmt.Sprintf("u%d.service", i)
		_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{
			Machine: p.Machine().ID, Name: name, Hash: hash, DesiredState: registry.StateLaunched}}})
		require.NoError(b, err)
		for ev := range states {
			require.NoError(b, ev.Err)
			if ev.Key == name && ev.Value.ActiveState == "active" {
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total(reqs.snapshot())-r0)/float64(b.N), "etcd-reqs/op")
	b.ReportMetric(float64(a.Stats().Wakeups-w0)/float64(b.N), "wakeups/op")
	cancel()
	<-done
}

// BenchmarkMemorySystemdStart is the stand-in's own cost per unit (write,
// link, start, read state), to show it is negligible next to fleet's.
func BenchmarkMemorySystemdStart(b *testing.B) {
	ctx := context.Background()
	sd := NewMemorySystemd()
	for i := range b.N {
		n := fmt.Sprintf("u%d.service", i)
		if _, err := sd.WriteUnitFile(n, "[Service]\nExecStart=/x\n"); err != nil {
			b.Fatal(err)
		}
		if err := sd.LinkUnitFiles(ctx, n); err != nil {
			b.Fatal(err)
		}
		if _, err := sd.StartUnit(ctx, n); err != nil {
			b.Fatal(err)
		}
		if _, err := sd.UnitStates(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
}
