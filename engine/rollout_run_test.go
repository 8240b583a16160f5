package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// fakeAgents publish, for every placement, the state of a copy running the
// body the placement carries, active, until ctx ends: agents whose copies
// always start.
func fakeAgents(ctx context.Context, t *testing.T, reg *registry.Registry, ps map[string]*registry.Presence) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			placements, _, err := reg.Placements(ctx)
			if err == nil {
				for _, p := range placements {
					if pr := ps[p.Machine]; pr != nil {
						_ = pr.PublishState(ctx, registry.UnitState{Name: p.Name, Hash: p.Hash, LoadState: "loaded", ActiveState: "active", SubState: "running"})
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return &wg
}

// TestRolloutSurvivesLeaderChange rolls web@1..3 to a new body; the engine
// leader stops once the first copy is healthy and another engine finishes
// the rollout from what etcd holds. At no time are two copies in flight.
func TestRolloutSurvivesLeaderChange(t *testing.T) {
	reg := registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ps := map[string]*registry.Presence{}
	for _, id := range []string{"m1", "m2", "m3"} {
		ps[id] = register(t, ctx, reg, id, nil, 5*time.Second)
	}
	_, stop1 := startEngine(t, ctx, reg, "e1")
	old := "[Service]\nExecStart=/bin/sleep 1000\n[X-Fleet]\nConflicts=web@*\n"
	for _, n := range []string{"web@1.service", "web@2.service", "web@3.service"} {
		submit(t, ctx, reg, n, old)
	}
	// Their template, as fleetctl submit web@.service leaves it: it takes
	// the new body with them, so web@4 started later runs what they run.
	tf := mustParse(t, old)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "web@.service", Hash: tf.Hash().String(), DesiredState: registry.StateInactive}, tf.String(), false))
	waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool { return len(w) == 3 })
	actx, stopAgents := context.WithCancel(ctx)
	agents := fakeAgents(actx, t, reg, ps)
	defer func() { stopAgents(); agents.Wait() }()

	// Watch every version of the record: never more than one copy in flight.
	_, rev, err := reg.Rollouts(ctx)
	require.NoError(t, err)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := reg.WatchRollouts(wctx, rev)
	maxInFlight := make(chan int, 1)
	go func() {
		most := 0
		for ev := range events {
			n := 0
			for _, s := range ev.Value.Steps {
				if s.State == registry.StepUpdating {
					n++
				}
			}
			most = max(most, n)
		}
		maxInFlight <- most
	}()

	rc := api.NewRegistryClient(reg).(api.Rollouts)
	st, err := rc.StartRollout(ctx, api.RolloutRequest{Target: "web@*", Options: api.OptionsFromFile(mustParse(t,
		"[Service]\nExecStart=/bin/sleep 2000\n[X-Fleet]\nConflicts=web@*\nUpdateMinHealthy=300ms\n"))})
	require.NoError(t, err)

	waitRollout(t, ctx, rc, st.ID, func(s *api.RolloutStatus) bool { return s.Healthy >= 1 })
	stop1()
	mid, err := rc.Rollout(ctx, st.ID)
	require.NoError(t, err)
	require.Equal(t, registry.RolloutRunning, mid.Phase, "the first leader left mid-way")

	startEngine(t, ctx, reg, "e2")
	end := waitRollout(t, ctx, rc, st.ID, func(s *api.RolloutStatus) bool { return s.Phase == registry.RolloutDone })
	require.Equal(t, 3, end.Healthy)
	units, _, err := reg.Units(ctx)
	require.NoError(t, err)
	require.Len(t, units, 4)
	for _, u := range units {
		require.Equal(t, st.To, u.Hash, u.Name)
		require.Nil(t, u.Rollout, u.Name)
	}
	require.Contains(t, end.Units, api.RolloutUnit{Name: "web@.service", From: tf.Hash().String(), Template: true})
	require.Equal(t, 3, end.Total, "the template has no step")
	placements, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	for _, p := range placements {
		require.Equal(t, st.To, p.Hash, "%s on %s", p.Name, p.Machine)
	}
	stopWatch()
	require.Equal(t, 1, <-maxInFlight)
}

func waitRollout(t *testing.T, ctx context.Context, rc api.Rollouts, id string, cond func(*api.RolloutStatus) bool) *api.RolloutStatus {
	t.Helper()
	for {
		s, err := rc.Rollout(ctx, id)
		require.NoError(t, err)
		if cond(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rollout %s: condition not met: %+v", id, s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func mustParse(t *testing.T, text string) *unit.File {
	t.Helper()
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	return f
}

// TestRolloutGlobalUnit rolls a global unit out on a real engine: one
// machine at a time, the others keep the old body until their turn.
func TestRolloutGlobalUnit(t *testing.T) {
	reg := registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ps := map[string]*registry.Presence{}
	for _, id := range []string{"m1", "m2", "m3"} {
		ps[id] = register(t, ctx, reg, id, nil, 5*time.Second)
	}
	startEngine(t, ctx, reg, "e1")
	submit(t, ctx, reg, "g.service", "[Service]\nExecStart=/bin/sleep 1000\n[X-Fleet]\nGlobal=true\n")
	waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool { return len(w["g.service"]) == 3 })
	actx, stopAgents := context.WithCancel(ctx)
	agents := fakeAgents(actx, t, reg, ps)
	defer func() { stopAgents(); agents.Wait() }()

	_, rev, err := reg.Placements(ctx)
	require.NoError(t, err)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// The schedule as it changes: never more than one machine on the new
	// body before the others caught up, one by one.
	events := reg.WatchPlacements(wctx, rev)
	newOn := make(chan []int, 1)
	rc := api.NewRegistryClient(reg).(api.Rollouts)
	st, err := rc.StartRollout(ctx, api.RolloutRequest{Target: "g", Options: api.OptionsFromFile(mustParse(t,
		"[Service]\nExecStart=/bin/sleep 2000\n[X-Fleet]\nGlobal=true\nUpdateMinHealthy=200ms\n"))})
	require.NoError(t, err)
	require.Equal(t, 3, st.Total)
	go func() {
		hashOn := map[string]string{}
		var counts []int
		for ev := range events {
			if ev.Deleted {
				continue
			}
			hashOn[ev.Value.Machine] = ev.Value.Hash
			n := 0
			for _, h := range hashOn {
				if h == st.To {
					n++
				}
			}
			counts = append(counts, n)
		}
		newOn <- counts
	}()
	waitRollout(t, ctx, rc, st.ID, func(s *api.RolloutStatus) bool { return s.Phase == registry.RolloutDone })
	stopWatch()
	require.Equal(t, []int{1, 2, 3}, <-newOn, "machines on the new body, change by change")
}
