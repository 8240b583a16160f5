package reboot_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/reboot"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

// host is a fake machine: fleetd's coordinator runs in a goroutine whose
// context a "reboot" ends, as a machine going down stops fleetd; boot
// starts it again with a new boot ID.
type host struct {
	t        *testing.T
	reg      *registry.Registry
	id       string
	sentinel string
	cfg      reboot.Config

	mu      sync.Mutex
	boots   int
	reboots int
	cancel  context.CancelFunc
	done    chan struct{}
	down    chan struct{} // closed by a reboot, until the next boot
	command func(h *host) error
}

func newHost(t *testing.T, reg *registry.Registry, id string, cfg reboot.Config) *host {
	h := &host{t: t, reg: reg, id: id, sentinel: filepath.Join(t.TempDir(), "reboot-required"), cfg: cfg}
	p, err := reg.Register(context.Background(), machine.Machine{ID: id, Hostname: id}, 3*time.Second)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	h.command = func(h *host) error { h.goDown(); return nil }
	return h
}

func (h *host) boot() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boots++
	cfg := h.cfg
	cfg.Registry, cfg.Machine, cfg.Sentinel = h.reg, h.id, h.sentinel
	cfg.BootID = h.id + "-boot" + string(rune('0'+h.boots))
	cfg.Exec = func(context.Context, string) error {
		h.mu.Lock()
		h.reboots++
		h.mu.Unlock()
		return h.command(h)
	}
	c, err := reboot.New(cfg)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done, h.down = cancel, make(chan struct{}), make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = c.Run(ctx)
	}(h.done)
}

// goDown stops the coordinator and removes the sentinel, as a reboot
// clears /run; it does not wait for Run to return (it is called from it).
func (h *host) goDown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = os.Remove(h.sentinel)
	h.cancel()
	close(h.down)
}

func (h *host) stop() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.mu.Unlock()
	cancel()
	<-done
}

func (h *host) flag() { require.NoError(h.t, os.WriteFile(h.sentinel, nil, 0o644)) }

func (h *host) count() (boots, reboots int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boots, h.reboots
}

func newReg(t *testing.T) (*registry.Registry, context.Context) {
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return registry.New(e.Client(t), registry.WithPrefix("/test/")), ctx
}

var fast = reboot.Config{Poll: 20 * time.Millisecond, DrainDeadline: 50 * time.Millisecond, Timeout: time.Minute}

// TestRollingReboot: two machines flagged at once with one slot reboot one
// after the other; each is drained while it holds the slot and undrained
// once back; an operator's drain stays.
func TestRollingReboot(t *testing.T) {
	reg, ctx := newReg(t)
	a, b := newHost(t, reg, "a", fast), newHost(t, reg, "b", fast)
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: "b", Since: time.Now(), By: registry.DrainByUser, Identity: "alice"}))
	a.flag()
	b.flag()
	a.boot()
	b.boot()
	defer a.stop()
	defer b.stop()

	var first, second *host
	select {
	case <-a.down:
		first, second = a, b
	case <-b.down:
		first, second = b, a
	case <-ctx.Done():
		t.Fatal("no machine rebooted")
	}
	st, err := reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Len(t, st.Holders, 1)
	require.Contains(t, st.Holders, first.id)
	d, ok, err := reg.DrainOf(ctx, first.id)
	require.NoError(t, err)
	require.True(t, ok, "the holder is drained while it reboots")
	require.Eventually(t, func() bool {
		st, err := reg.RebootStatus(ctx)
		return err == nil && len(st.Queue) == 1 && st.Steps[second.id].Step == registry.RebootStepQueued
	}, 5*time.Second, 10*time.Millisecond, "the other machine waits in the queue")
	_, reboots := second.count()
	require.Zero(t, reboots, "one slot: the second machine waits")

	first.stop()
	first.boot()
	<-second.down
	st, err = reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, registry.RebootStepBack, st.Last[first.id].Outcome)
	require.Equal(t, first.id+"-boot2", st.Last[first.id].NewBootID)
	require.Contains(t, st.Holders, second.id)
	second.stop()
	second.boot()
	require.Eventually(t, func() bool {
		hs, err := reg.RebootHolders(ctx)
		return err == nil && len(hs) == 0
	}, 5*time.Second, 10*time.Millisecond, "the slot is free at the end")

	drains, _, err := reg.Drains(ctx)
	require.NoError(t, err)
	require.Len(t, drains, 1, "the reboot's drains are undone")
	d = drains["b"]
	require.Equal(t, registry.DrainByUser, d.By, "the operator's drain stays")
	for _, h := range []*host{a, b} {
		boots, reboots := h.count()
		require.Equal(t, 2, boots)
		require.Equal(t, 1, reboots, "%s rebooted once", h.id)
	}
}

// TestRebootTimeout: a holder that never comes back loses its slot at its
// deadline, released and reported by another machine; a request counts as
// a sentinel.
func TestRebootTimeout(t *testing.T) {
	reg, ctx := newReg(t)
	cfg := fast
	cfg.Timeout = 300 * time.Millisecond
	lost, other := newHost(t, reg, "lost", cfg), newHost(t, reg, "other", cfg)
	require.NoError(t, reg.RequestReboot(ctx, registry.RebootRequest{Machine: "lost", Since: time.Now(), Identity: "alice"}))
	lost.boot()
	other.boot()
	defer other.stop()
	<-lost.down
	lost.stop() // and never boots again
	require.Eventually(t, func() bool {
		st, err := reg.RebootStatus(ctx)
		return err == nil && len(st.Holders) == 0 && st.Last["lost"].Outcome == registry.RebootStepTimeout
	}, 5*time.Second, 10*time.Millisecond)
	st, err := reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, registry.RebootStepTimeout, st.Steps["lost"].Step)
	require.Contains(t, st.Steps["lost"].Detail, "released by other")
	require.NotContains(t, st.Requests, "lost", "the request is dropped with the slot")
	_, reboots := other.count()
	require.Zero(t, reboots)
}

// TestRebootWindowClosed: outside the window a flagged machine only queues.
func TestRebootWindowClosed(t *testing.T) {
	reg, ctx := newReg(t)
	cfg := fast
	var err error
	cfg.Window, err = reboot.ParseWindow("Mon 02:00-03:00")
	require.NoError(t, err)
	cfg.Now = func() time.Time { return time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC) } // a Saturday
	h := newHost(t, reg, "h", cfg)
	h.flag()
	h.boot()
	defer h.stop()
	require.Eventually(t, func() bool {
		st, err := reg.RebootStatus(ctx)
		return err == nil && st.Steps["h"].Step == registry.RebootStepQueued
	}, 5*time.Second, 10*time.Millisecond)
	st, err := reg.RebootStatus(ctx)
	require.NoError(t, err)
	require.Contains(t, st.Queue["h"].Reason, "waiting for the reboot window Mon 02:00-03:00")
	require.Empty(t, st.Holders)
	require.NoError(t, os.Remove(h.sentinel))
	require.Eventually(t, func() bool {
		st, err := reg.RebootStatus(ctx)
		return err == nil && len(st.Queue) == 0
	}, 5*time.Second, 10*time.Millisecond, "a machine no longer flagged leaves the queue")
}
