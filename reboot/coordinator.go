package reboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// Defaults of Config.
const (
	DefaultSentinel      = "/run/reboot-required"
	DefaultCommand       = "systemctl reboot"
	DefaultTimeout       = 15 * time.Minute
	DefaultDrainDeadline = 5 * time.Minute
	DefaultPoll          = time.Second
)

// Config configures a Coordinator.
type Config struct {
	Registry *registry.Registry
	Machine  string // this machine's ID
	// BootID identifies this boot (/proc/sys/kernel/random/boot_id): a
	// slot held under another boot ID means the reboot happened.
	BootID string
	// Sentinel is the file whose existence asks for a reboot ("" = only
	// requests through fleetctl reboot).
	Sentinel      string
	MaxConcurrent int           // slots of the semaphore; default 1
	Window        Window        // when a reboot may start; zero = any time
	Command       string        // run with /bin/sh -c; default DefaultCommand
	Timeout       time.Duration // a holder not back by then loses its slot; default DefaultTimeout
	DrainDeadline time.Duration // the drain's deadline: reboot then even if not done; default DefaultDrainDeadline
	Poll          time.Duration // how often the sentinel is looked at; default DefaultPoll
	Log           *slog.Logger
	// Now and Exec replace the clock and the command runner in tests.
	Now  func() time.Time
	Exec func(ctx context.Context, command string) error
}

// Coordinator runs this machine's side of the coordinated reboots.
type Coordinator struct {
	cfg Config
	reg *registry.Registry
	log *slog.Logger

	queued      bool      // this coordinator queued the machine
	failedUntil time.Time // after a failed reboot command, wait before trying again
	failed      string    // why it failed, for the release's step

	// What the last sync read of the slots, and whether a watch said the
	// slots or the requests changed since: an idle machine then reads
	// nothing from etcd on a tick (see due).
	holders map[string]registry.RebootHolder
	stale   bool
}

// New checks cfg and returns a Coordinator; Run starts it.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Registry == nil || cfg.Machine == "" || cfg.BootID == "" {
		return nil, errors.New("reboot coordinator: Registry, Machine and BootID are required")
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 1
	}
	if cfg.MaxConcurrent < 0 {
		return nil, fmt.Errorf("reboot coordinator: reboot_max_concurrent %d must be at least 1", cfg.MaxConcurrent)
	}
	if strings.TrimSpace(cfg.Command) == "" {
		cfg.Command = DefaultCommand
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DrainDeadline <= 0 {
		cfg.DrainDeadline = DefaultDrainDeadline
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Exec == nil {
		cfg.Exec = runShell
	}
	return &Coordinator{cfg: cfg, reg: cfg.Registry, log: cfg.Log.With("component", "reboot")}, nil
}

func runShell(ctx context.Context, command string) error {
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Run coordinates this machine's reboots until ctx ends. It wakes on a
// change of the slots (a release lets the next machine go) and every Poll
// to look at the sentinel; etcd errors are logged and retried then.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.reg.SetRebootPolicy(ctx, registry.RebootPolicy{MaxConcurrent: c.cfg.MaxConcurrent,
		Window: c.cfg.Window.String(), Timeout: c.cfg.Timeout}); err != nil && ctx.Err() == nil {
		c.log.Warn("reboot policy not recorded", "err", err)
	}
	for started := false; ctx.Err() == nil; {
		rev, err := c.reg.Revision(ctx)
		if err == nil && !started {
			err = c.resume(ctx)
			started = err == nil
		}
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("reboot coordinator: etcd; retrying", "err", err)
			}
			sleep(ctx, c.cfg.Poll)
			continue
		}
		c.loop(ctx, rev)
	}
	return nil
}

// loop runs sync on every wake-up until the watch ends (then Run starts
// it again) or ctx ends.
func (c *Coordinator) loop(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	holders := c.reg.WatchRebootHolders(wctx, rev)
	requests := c.reg.WatchRebootRequests(wctx, rev)
	tick := time.NewTicker(c.cfg.Poll)
	defer tick.Stop()
	c.stale = true // what happened before the watches began is unknown
	for {
		if c.due(c.cfg.Now()) {
			if err := c.sync(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("reboot coordinator", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case e, ok := <-holders:
			if !ok || e.Err != nil {
				return
			}
			c.stale = true
		case e, ok := <-requests:
			if !ok || e.Err != nil {
				return
			}
			c.stale = true
		}
	}
}

// due says whether sync has anything to look at: the slots or the requests
// changed (a watch said so), or something only a clock or this machine's
// disk shows may have: its sentinel, a slot it holds or waits for, a
// failed reboot's back-off, a holder's deadline passing. Every fleetd polls,
// so an idle machine must not read etcd on each tick: at 10,000 machines
// that was 20,000 reads a second.
func (c *Coordinator) due(now time.Time) bool {
	if c.stale || c.queued || now.Before(c.failedUntil) {
		return true
	}
	if c.cfg.Sentinel != "" {
		if _, err := os.Stat(c.cfg.Sentinel); err == nil {
			return true
		}
	}
	for _, h := range c.holders {
		if h.Machine == c.cfg.Machine || now.After(h.Deadline) {
			return true
		}
	}
	return false
}

// resume finds where this machine was when fleetd started: back from a
// reboot (its slot is held under another boot ID), still holding a slot
// of this boot (fleetd restarted mid-way: sync goes on), or left drained by
// a reboot whose slot timed out meanwhile.
func (c *Coordinator) resume(ctx context.Context) error {
	hs, err := c.reg.RebootHolders(ctx)
	if err != nil {
		return err
	}
	if _, mine := hs[c.cfg.Machine]; mine {
		return nil // sync finishes or goes on
	}
	// A queue entry of the previous run: sync queues again if still needed.
	if err := c.reg.Unqueue(ctx, c.cfg.Machine); err != nil {
		return err
	}
	d, ok, err := c.reg.DrainOf(ctx, c.cfg.Machine)
	if err != nil {
		return err
	}
	if ok && d.By == registry.DrainByReboot {
		c.log.Warn("undraining: the reboot that drained this machine lost its slot (reboot_timeout) before it came back")
		if err := c.reg.EndDrain(ctx, d); err != nil && !errors.Is(err, registry.ErrNotDraining) {
			return err
		}
	}
	return nil
}

// sync takes one level-based step: release slots past their deadline,
// finish this machine's reboot if it is back, otherwise start one if it is
// needed and allowed.
func (c *Coordinator) sync(ctx context.Context) error {
	now := c.cfg.Now()
	hs, err := c.reg.RebootHolders(ctx)
	if err != nil {
		return err
	}
	// Requests are read below (wanted) after this point, so a request
	// arriving meanwhile sets stale again through its watch.
	c.holders, c.stale = hs, false
	for _, h := range hs {
		if h.Machine != c.cfg.Machine && now.After(h.Deadline) {
			c.expire(ctx, h, now)
		}
	}
	if h, mine := hs[c.cfg.Machine]; mine {
		if h.BootID != c.cfg.BootID {
			return c.finish(ctx, h)
		}
		if now.Before(c.failedUntil) {
			// The reboot command failed and the slot's release did not
			// go through: release it again rather than run the command.
			return c.releaseFailed(ctx, h)
		}
		return c.reboot(ctx, h) // fleetd restarted after taking the slot
	}
	reason, err := c.wanted(ctx)
	if err != nil || reason == "" {
		if err == nil && c.queued {
			err = c.reg.Unqueue(ctx, c.cfg.Machine)
			c.queued = err != nil
		}
		return err
	}
	if now.Before(c.failedUntil) {
		return nil
	}
	if !c.cfg.Window.Open(now) {
		return c.queue(ctx, reason+"; waiting for the reboot window "+c.cfg.Window.String(), now)
	}
	h := registry.RebootHolder{Machine: c.cfg.Machine, BootID: c.cfg.BootID, Since: now, Deadline: now.Add(c.cfg.Timeout)}
	ok, err := c.reg.AcquireReboot(ctx, h, c.cfg.MaxConcurrent, c.step(registry.RebootStepAcquired, reason))
	if err != nil {
		return err
	}
	if !ok {
		return c.queue(ctx, reason, now)
	}
	c.queued = false
	c.log.Info("reboot slot taken", "reason", reason, "deadline", h.Deadline)
	hs, err = c.reg.RebootHolders(ctx) // for the record's revision
	if err != nil {
		return err
	}
	// Released meanwhile (its deadline passed, say): rebooting now would
	// go past the limit of reboot_max_concurrent.
	mine, ok := hs[c.cfg.Machine]
	if !ok {
		return fmt.Errorf("reboot slot of %s was released right after it was taken; asking for one again", c.cfg.Machine)
	}
	return c.reboot(ctx, mine)
}

// wanted says why this machine needs a reboot, or "" if it does not.
func (c *Coordinator) wanted(ctx context.Context) (string, error) {
	if c.cfg.Sentinel != "" {
		if _, err := os.Stat(c.cfg.Sentinel); err == nil {
			return "sentinel " + c.cfg.Sentinel, nil
		}
	}
	asked, err := c.reg.RebootRequested(ctx, c.cfg.Machine)
	if err != nil || !asked {
		return "", err
	}
	return "request", nil
}

func (c *Coordinator) queue(ctx context.Context, reason string, now time.Time) error {
	if c.queued {
		return nil
	}
	added, err := c.reg.QueueReboot(ctx, registry.RebootQueued{Machine: c.cfg.Machine, Since: now, Reason: reason},
		c.step(registry.RebootStepQueued, reason))
	if err != nil {
		return err
	}
	c.queued = true
	if added {
		c.log.Info("reboot queued", "reason", reason)
	}
	return nil
}

// reboot drains this machine, waits for the drain to be done (or its
// deadline), and runs the reboot command. On success it waits for ctx to
// end (the machine going down stops fleetd), for no longer than Timeout:
// by then another machine has released the slot, and a reboot still wanted
// is tried again.
func (c *Coordinator) reboot(ctx context.Context, h registry.RebootHolder) error {
	deadline, err := c.drain(ctx, h)
	if err != nil {
		return err
	}
	if err := c.waitDrained(ctx, deadline); err != nil {
		return err
	}
	if err := c.reg.RecordRebootStep(ctx, c.step(registry.RebootStepRebooting, c.cfg.Command)); err != nil {
		return err
	}
	c.log.Info("rebooting", "command", c.cfg.Command)
	if err := c.cfg.Exec(ctx, c.cfg.Command); err != nil {
		if ctx.Err() != nil {
			return nil // going down
		}
		c.log.Error("reboot command failed; releasing the slot", "err", err)
		c.failedUntil, c.failed = c.cfg.Now().Add(c.cfg.Timeout), err.Error()
		return c.releaseFailed(ctx, h)
	}
	sleep(ctx, c.cfg.Timeout)
	return nil
}

// releaseFailed undoes the drain of a reboot whose command failed and
// gives its slot back.
func (c *Coordinator) releaseFailed(ctx context.Context, h registry.RebootHolder) error {
	if err := c.undrainOwn(ctx); err != nil {
		return err
	}
	now := c.cfg.Now()
	return c.reg.ReleaseReboot(ctx, h, registry.RebootLast{Started: h.Since, Ended: now, OldBootID: h.BootID, Outcome: registry.RebootStepFailed},
		c.step(registry.RebootStepFailed, c.failed))
}

// drain asks for this machine's drain, by the reboot, unless a drain is
// under way already (an operator's, or ours before fleetd restarted). It
// returns the drain's deadline.
func (c *Coordinator) drain(ctx context.Context, h registry.RebootHolder) (time.Time, error) {
	d, ok, err := c.reg.DrainOf(ctx, c.cfg.Machine)
	if err != nil {
		return time.Time{}, err
	}
	if ok {
		if d.Deadline.IsZero() {
			d.Deadline = h.Since.Add(c.cfg.DrainDeadline)
		}
		return d.Deadline, nil
	}
	now := c.cfg.Now()
	d = registry.DrainRecord{Machine: c.cfg.Machine, Since: now, Deadline: now.Add(c.cfg.DrainDeadline), By: registry.DrainByReboot, Identity: "reboot"}
	if err := c.reg.Drain(ctx, d); err != nil && !errors.Is(err, registry.ErrDraining) {
		return time.Time{}, err
	}
	return d.Deadline, c.reg.RecordRebootStep(ctx, c.step(registry.RebootStepDraining, "deadline "+d.Deadline.UTC().Format(time.RFC3339)))
}

// waitDrained waits until the engine leader says nothing movable is left
// (Done), the drain is gone (an operator undrained: nothing to wait for),
// or its deadline passed.
func (c *Coordinator) waitDrained(ctx context.Context, deadline time.Time) error {
	for {
		d, ok, err := c.reg.DrainOf(ctx, c.cfg.Machine)
		if err != nil {
			return err
		}
		detail := ""
		switch {
		case !ok:
			detail = "drain removed"
		case !d.Draining():
			detail = "drain done"
		case !c.cfg.Now().Before(deadline):
			detail = "drain deadline passed"
		}
		if detail != "" {
			c.log.Info("drained", "how", detail)
			return c.reg.RecordRebootStep(ctx, c.step(registry.RebootStepDrained, detail))
		}
		sleep(ctx, min(c.cfg.Poll, max(time.Until(deadline), 10*time.Millisecond)))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// finish ends this machine's reboot once it is registered again under its
// new boot ID: it undrains the drain the reboot made and releases the slot.
func (c *Coordinator) finish(ctx context.Context, h registry.RebootHolder) error {
	if _, err := c.reg.Machine(ctx, c.cfg.Machine); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return nil // not registered yet: the next sync looks again
		}
		return err
	}
	if err := c.undrainOwn(ctx); err != nil {
		return err
	}
	now := c.cfg.Now()
	took := now.Sub(h.Since).Round(time.Millisecond)
	err := c.reg.ReleaseReboot(ctx, h, registry.RebootLast{Started: h.Since, Ended: now, OldBootID: h.BootID, NewBootID: c.cfg.BootID, Outcome: registry.RebootStepBack},
		c.step(registry.RebootStepBack, "boot "+h.BootID+" -> "+c.cfg.BootID+" in "+took.String()))
	if errors.Is(err, registry.ErrNotHolder) {
		return nil // timed out meanwhile: released already
	}
	if err == nil {
		c.log.Info("reboot done; slot released", "took", took, "boot_id", c.cfg.BootID)
	}
	return err
}

// undrainOwn ends this machine's drain if the reboot made it; an
// operator's drain stays.
func (c *Coordinator) undrainOwn(ctx context.Context) error {
	d, ok, err := c.reg.DrainOf(ctx, c.cfg.Machine)
	if err != nil || !ok || d.By != registry.DrainByReboot {
		return err
	}
	// Fenced by the record read: an operator may have undrained and
	// drained the machine since.
	if err := c.reg.EndDrain(ctx, d); err != nil && !errors.Is(err, registry.ErrNotDraining) {
		return err
	}
	return nil
}

// expire releases the slot of a holder past its deadline. Every
// coordinator may try; the release is fenced by the record read, so one
// wins and reports it.
func (c *Coordinator) expire(ctx context.Context, h registry.RebootHolder, now time.Time) {
	detail := fmt.Sprintf("not back %s after taking the slot (reboot_timeout); released by %s", now.Sub(h.Since).Round(time.Second), c.cfg.Machine)
	err := c.reg.ReleaseReboot(ctx, h, registry.RebootLast{Started: h.Since, Ended: now, OldBootID: h.BootID, Outcome: registry.RebootStepTimeout},
		registry.RebootStep{Machine: h.Machine, Step: registry.RebootStepTimeout, At: now, Detail: detail})
	switch {
	case err == nil:
		c.log.Error("reboot slot released: holder did not come back in time", "holder", h.Machine, "since", h.Since, "deadline", h.Deadline)
	case !errors.Is(err, registry.ErrNotHolder):
		c.log.Warn("release an expired reboot slot", "holder", h.Machine, "err", err)
	}
}

func (c *Coordinator) step(name, detail string) registry.RebootStep {
	return registry.RebootStep{Machine: c.cfg.Machine, Step: name, At: c.cfg.Now(), Detail: detail}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
