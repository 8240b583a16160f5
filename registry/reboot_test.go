package registry_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestRebootSemaphore: machines racing for one slot get exactly max; a
// release is fenced by the holder record read; queue, request, last and
// step records come and go in the same transactions.
func TestRebootSemaphore(t *testing.T) {
	reg, ctx := newRegistry(t)
	now := time.Now().UTC().Truncate(time.Second)
	steps := reg.WatchChanges(ctx, 0)

	var wg sync.WaitGroup
	won := make([]bool, 6)
	for i := range won {
		wg.Go(func() {
			id := string(rune('a' + i))
			ok, err := reg.AcquireReboot(ctx, registry.RebootHolder{Machine: id, BootID: "b1", Since: now},
				2, registry.RebootStep{Machine: id, Step: registry.RebootStepAcquired, At: now})
			require.NoError(t, err)
			won[i] = ok
		})
	}
	wg.Wait()
	hs, err := reg.RebootHolders(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 2, "max 2 holders whatever the race")
	n := 0
	for _, w := range won {
		if w {
			n++
		}
	}
	require.Equal(t, 2, n)

	var h registry.RebootHolder
	for _, x := range hs {
		h = x
	}
	ok, err := reg.AcquireReboot(ctx, h, 1, registry.RebootStep{Machine: h.Machine, Step: registry.RebootStepAcquired})
	require.NoError(t, err)
	require.True(t, ok, "a holder asking again keeps its slot")

	stale := h
	stale.Rev--
	last := registry.RebootLast{Started: now, Ended: now, Outcome: registry.RebootStepBack}
	require.ErrorIs(t, reg.ReleaseReboot(ctx, stale, last, registry.RebootStep{Machine: h.Machine, Step: registry.RebootStepBack}), registry.ErrNotHolder)
	require.NoError(t, reg.ReleaseReboot(ctx, h, last, registry.RebootStep{Machine: h.Machine, Step: registry.RebootStepBack, At: now}))
	require.ErrorIs(t, reg.ReleaseReboot(ctx, h, last, registry.RebootStep{Machine: h.Machine, Step: registry.RebootStepBack}), registry.ErrNotHolder)

	queued, err := reg.QueueReboot(ctx, registry.RebootQueued{Machine: "z", Since: now, Reason: "request"}, registry.RebootStep{Machine: "z", Step: registry.RebootStepQueued})
	require.NoError(t, err)
	require.True(t, queued)
	queued, err = reg.QueueReboot(ctx, registry.RebootQueued{Machine: "z", Since: now}, registry.RebootStep{Machine: "z", Step: registry.RebootStepQueued})
	require.NoError(t, err)
	require.False(t, queued, "queued once")

	require.ErrorIs(t, reg.RequestReboot(ctx, registry.RebootRequest{Machine: "nope", Since: now}), registry.ErrNotFound)
	p, err := reg.Register(ctx, machine.Machine{ID: "z", Hostname: "hz"}, 3*time.Second)
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, reg.RequestReboot(ctx, registry.RebootRequest{Machine: "z", Since: now, Identity: "alice"}))
	require.NoError(t, reg.RequestReboot(ctx, registry.RebootRequest{Machine: "z", Since: now.Add(time.Hour)}))
	asked, err := reg.RebootRequested(ctx, "z")
	require.NoError(t, err)
	require.True(t, asked)

	require.NoError(t, reg.SetRebootPolicy(ctx, registry.RebootPolicy{MaxConcurrent: 2, Window: "Mon..Fri 02:00-04:00", Timeout: time.Minute}))
	st, err := reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Len(t, st.Holders, 1)
	require.Equal(t, "alice", st.Requests["z"].Identity, "a second request keeps the first")
	require.Contains(t, st.Queue, "z")
	require.Equal(t, registry.RebootStepBack, st.Last[h.Machine].Outcome)
	require.Equal(t, 2, st.Policy.MaxConcurrent)
	require.Equal(t, registry.RebootStepBack, st.Steps[h.Machine].Step)

	var seen []string
	for len(seen) < 4 { // two acquired, one back, one queued
		b := <-steps
		require.NoError(t, b.Err)
		for _, c := range b.Changes {
			if c.RebootStep != nil {
				seen = append(seen, c.RebootStep.Cur.Machine+":"+c.RebootStep.Cur.Step)
			}
		}
	}
	require.Contains(t, seen, h.Machine+":"+registry.RebootStepBack)
}
