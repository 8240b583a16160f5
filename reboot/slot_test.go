package reboot_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/reboot"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// onLog is a log handler that runs do, in the coordinator's goroutine,
// when the coordinator logs msg: a hook between two of its steps.
type onLog struct {
	msg string
	do  func(ctx context.Context) error
}

func (h *onLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *onLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *onLog) WithGroup(string) slog.Handler            { return h }
func (h *onLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	return h.do(ctx)
}

// forEachHolder runs f on every holder of a reboot slot.
func forEachHolder(ctx context.Context, reg *registry.Registry, f func(registry.RebootHolder) error) error {
	hs, err := reg.RebootHolders(ctx)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := f(h); err != nil {
			return err
		}
	}
	return nil
}

// wantsReboot is a cluster of one present machine, m1, whose sentinel
// file asks for a reboot.
func wantsReboot(t *testing.T) (*registry.Registry, context.Context, string) {
	t.Helper()
	reg := registry.New(etcdtest.Start(t).Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "m1"}, 3*time.Second)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	sentinel := filepath.Join(t.TempDir(), "reboot-required")
	require.NoError(t, os.WriteFile(sentinel, nil, 0o644))
	return reg, ctx, sentinel
}

// TestNoRebootWithoutSlot: a coordinator whose slot is released between
// taking it and reading it back does not reboot; it asks again.
func TestNoRebootWithoutSlot(t *testing.T) {
	reg, ctx, sentinel := wantsReboot(t)

	// Releases the slot just taken, as another machine's coordinator would
	// at its deadline, between the take and the coordinator's read of it.
	var released atomic.Int32
	h := &onLog{msg: "reboot slot taken", do: func(ctx context.Context) error {
		return forEachHolder(ctx, reg, func(holder registry.RebootHolder) error {
			err := reg.ReleaseReboot(ctx, holder, registry.RebootLast{Machine: holder.Machine, Outcome: registry.RebootStepTimeout},
				registry.RebootStep{Machine: holder.Machine, Step: registry.RebootStepTimeout, At: time.Now()})
			if err == nil {
				released.Add(1)
			}
			return err
		})
	}}
	var rebooted atomic.Int32
	c, err := reboot.New(reboot.Config{Registry: reg, Machine: "m1", BootID: "b1", Sentinel: sentinel,
		DrainDeadline: time.Millisecond, Poll: 5 * time.Millisecond, Log: slog.New(h),
		Exec: func(context.Context, string) error { rebooted.Add(1); return nil }})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(rctx) }()
	for released.Load() < 3 && rebooted.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done
	require.NoError(t, ctx.Err())
	require.Zero(t, rebooted.Load(), "rebooted without holding a slot")
}

// TestFailedRebootNotRetriedWhenReleaseFails: after the reboot command
// failed, a slot whose release did not go through is released again; the
// command is not run again before reboot_timeout.
func TestFailedRebootNotRetriedWhenReleaseFails(t *testing.T) {
	reg, ctx, sentinel := wantsReboot(t)

	// Writes the slot again (a new revision) once the reboot command
	// failed, so that the coordinator's fenced release of it fails.
	retake := &onLog{msg: "reboot command failed; releasing the slot", do: func(ctx context.Context) error {
		return forEachHolder(ctx, reg, func(holder registry.RebootHolder) error {
			if err := reg.ReleaseReboot(ctx, holder, registry.RebootLast{}, registry.RebootStep{Machine: holder.Machine}); err != nil {
				return err
			}
			_, err := reg.AcquireReboot(ctx, holder, 1, registry.RebootStep{Machine: holder.Machine, Step: registry.RebootStepAcquired})
			return err
		})
	}}
	var runs atomic.Int32
	c, err := reboot.New(reboot.Config{Registry: reg, Machine: "m1", BootID: "b1", Sentinel: sentinel,
		DrainDeadline: time.Millisecond, Poll: 5 * time.Millisecond, Timeout: time.Hour, Log: slog.New(retake),
		Exec: func(context.Context, string) error { runs.Add(1); return errors.New("no reboot for you") }})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(rctx) }()
	for ctx.Err() == nil && runs.Load() < 2 {
		// Only the coordinator's release records the outcome "failed" (the
		// handler's records none): the slot is then given back.
		st, err := reg.RebootStatus(ctx)
		if err == nil && len(st.Holders) == 0 && st.Last["m1"].Outcome == registry.RebootStepFailed {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done
	require.NoError(t, ctx.Err())
	require.Equal(t, int32(1), runs.Load(), "the failed reboot command ran again")
	st, err := reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, registry.RebootStepFailed, st.Last["m1"].Outcome)
	require.Equal(t, "no reboot for you", st.Steps["m1"].Detail)
}
