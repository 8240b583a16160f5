package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestRebootRequestAndStatus(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			rb := clients(t, c)[name].(api.Rebooter)
			ctx := c.ctx
			c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})

			err := rb.RequestReboot(ctx, "nope")
			require.ErrorIs(t, err, api.ErrNotFound)
			require.ErrorContains(t, err, "machine nope is not present")
			// The HTTP client sets URL.Path, which net/url escapes itself:
			// escaping the ID first made fleetd read "no%20pe".
			err = rb.RequestReboot(ctx, "no pe")
			require.ErrorContains(t, err, "machine no pe is not present")
			require.NoError(t, rb.RequestReboot(ctx, "m1"))

			now := time.Now().UTC().Truncate(time.Second)
			ok, err := c.reg.AcquireReboot(ctx, registry.RebootHolder{Machine: "m2", BootID: "b", Since: now, Deadline: now.Add(time.Minute)}, 1,
				registry.RebootStep{Machine: "m2", Step: registry.RebootStepAcquired, At: now})
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, c.reg.SetRebootPolicy(ctx, registry.RebootPolicy{MaxConcurrent: 1, Window: "02:00-04:00", Timeout: time.Minute}))

			st, err := rb.RebootStatus(ctx)
			require.NoError(t, err)
			require.Equal(t, &api.RebootPolicy{MaxConcurrent: 1, Window: "02:00-04:00", Timeout: "1m0s"}, st.Policy)
			require.Len(t, st.Requests, 1)
			require.Equal(t, "m1", st.Requests[0].MachineID)
			require.Equal(t, []api.RebootHolder{{MachineID: "m2", BootID: "b", Since: now, Deadline: now.Add(time.Minute)}}, st.Holders)
			require.Equal(t, "acquired", st.Machines[0].Step)
			require.Empty(t, st.Queue)
		})
	}
}

func TestRebootStepEvents(t *testing.T) {
	c := newCluster(t)
	cl := clients(t, c)["http-tcp"]
	ctx, cancel := context.WithCancel(c.ctx)
	t.Cleanup(cancel)
	events, ready := make(chan api.Event, 16), make(chan struct{})
	go func() {
		_ = cl.Events(ctx, func(e api.Event) error {
			if e.Type == api.EventStreamStarted {
				close(ready) // the watch is in place
			} else {
				events <- e
			}
			return nil
		})
	}()
	<-ready
	now := time.Now()
	require.NoError(t, c.reg.RecordRebootStep(ctx, registry.RebootStep{Machine: "m1", Step: registry.RebootStepQueued, At: now, Detail: "sentinel /run/reboot-required"}))
	require.NoError(t, c.reg.RecordRebootStep(ctx, registry.RebootStep{Machine: "m1", Step: registry.RebootStepAcquired, At: now}))
	var got []api.Event
	for len(got) < 2 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %+v", got)
		}
	}
	require.Equal(t, api.EventRebootStep, got[0].Type)
	require.Equal(t, "m1", got[0].MachineID)
	require.Equal(t, "queued", got[0].To)
	require.Equal(t, "sentinel /run/reboot-required", got[0].Result)
	require.Equal(t, "queued", got[1].From)
	require.Equal(t, "acquired", got[1].To)
}
