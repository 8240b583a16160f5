package functional

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// Operators' actions in the chaos run: every round, besides its faults, an
// operator drains a host (with or without a deadline), moves a unit,
// reboots a host with fleetctl reboot (it really reboots) or rolls out a new
// body of chaos-tmpl@; hosts the run drained are undrained in the next
// round, amid its faults. The kinds come from a stream of their own, so the
// fault kinds of a seed stay what they were.

// Operation kinds.
const (
	opDrain         = "drain"          // fleetctl drain --no-block --force
	opDrainDeadline = "drain-deadline" // the same with --deadline
	opMv            = "mv"             // fleetctl mv --no-block of a plain or AtMostOnce unit
	opReboot        = "reboot"         // fleetctl reboot: the host drains, reboots, comes back
	opUpdate        = "update"         // fleetctl update 'chaos-tmpl@*' with a new body
	opUndrain       = "undrain"        // fleetctl undrain of the hosts drained the round before
)

var opKinds = []string{opDrain, opDrainDeadline, opMv, opReboot, opUpdate}

const (
	// chaosOpsPerRound operations go with every round's faults.
	chaosOpsPerRound = 2
	// chaosOpLimit bounds an operation: its command retried while fleet
	// cannot answer (etcd down), then a reboot or a rollout to its end.
	chaosOpLimit = 120 * time.Second
	// chaosOpsStream is the operations' stream of a seed: with it the
	// default seed's 4 rounds do every kind, a reboot and an update only
	// once (they take the longest), a reboot beside a drain
	// (TestChaosOperations).
	chaosOpsStream = 0x908
	// chaosTmpl is the template the rolling updates replace.
	chaosTmpl = "chaos-tmpl@*.service"
)

// chaosRebootConf is the reboot_* keys of the run: one slot, a short drain
// (the rest of the host's units are stopped after it), a minute to come
// back.
var chaosRebootConf = map[string]string{
	"reboot_max_concurrent": "1",
	"reboot_drain_deadline": "3s",
	"reboot_timeout":        "60s",
}

// chaosOps is the operator: what it drained, how many updates it made.
type chaosOps struct {
	r       *chaosRunner
	deck    []string
	drained []*hosts.Host // by the run, to undrain in the next round
	updates int
	counts  map[string]int
}

// draw takes n distinct kinds from the deck; two drains never go in one
// round, so that with a reboot's drain there are still three hosts for the
// three Conflicts units.
func (o *chaosOps) draw(n int) []string {
	var out []string
	drain := func(k string) bool { return k == opDrain || k == opDrainDeadline }
	for tries := 0; len(out) < n; tries++ {
		if len(o.deck) == 0 {
			o.deck = slices.Clone(opKinds)
			o.r.opKinds.Shuffle(len(o.deck), func(i, j int) { o.deck[i], o.deck[j] = o.deck[j], o.deck[i] })
		}
		k := o.deck[0]
		o.deck = o.deck[1:]
		if slices.Contains(out, k) || (drain(k) && slices.ContainsFunc(out, drain)) {
			o.deck = append(o.deck, k)
			if tries > 4*len(opKinds) {
				break
			}
			continue
		}
		out = append(out, k)
	}
	return out
}

// op is one operation, planned before the round's faults so that they hit
// other hosts, and done at after from the end of the injections.
type op struct {
	kind  string
	host  *hosts.Host // drained, rebooted, or the target of mv
	alt   *hosts.Host // mv's target if the unit runs on host already
	unit  string      // moved by mv
	after time.Duration
	desc  string
}

// plan draws this round's operations and their hosts, and marks those busy.
func (o *chaosOps) plan(busy map[*hosts.Host]bool) []op {
	var ops []op
	if len(o.drained) > 0 {
		ops = append(ops, op{kind: opUndrain, after: o.between(0, 2*time.Second)})
		var names []string
		for _, h := range o.drained {
			names = append(names, h.Name)
		}
		ops[0].desc = opUndrain + " " + strings.Join(names, ",")
	}
	for _, k := range o.draw(chaosOpsPerRound) {
		p := op{kind: k, after: o.between(0, 3*time.Second)}
		switch k {
		case opDrain, opDrainDeadline, opReboot:
			// Never a host drained already: draining it again is refused.
			p.host = o.pick(busy, o.drained...)
			if p.host == nil {
				continue
			}
			busy[p.host] = true
			p.desc = k + " " + p.host.Name
		case opMv:
			// A plain or AtMostOnce unit: Conflicts, MachineOf, pinned
			// and global units do not move at will.
			n := o.r.ops.IntN(21)
			if n < 14 {
				p.unit = fmt.Sprintf("chaos-plain-%02d.service", n+1)
			} else {
				p.unit = fmt.Sprintf("chaos-amo-%d.service", n-13)
			}
			p.host = o.pick(busy, o.drained...)
			if p.host == nil {
				continue
			}
			p.alt = o.pick(busy, append(slices.Clone(o.drained), p.host)...)
			p.desc = fmt.Sprintf("%s %s", k, p.unit)
		case opUpdate:
			p.desc = fmt.Sprintf("%s %s to v%d", k, chaosTmpl, o.updates+2)
		}
		ops = append(ops, p)
	}
	return ops
}

func (o *chaosOps) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(o.r.ops.Int64N(int64(hi-lo)+1))
}

// pick draws a running host that is neither busy nor among except.
func (o *chaosOps) pick(busy map[*hosts.Host]bool, except ...*hosts.Host) *hosts.Host {
	var free []*hosts.Host
	for _, h := range o.r.e.Hosts() {
		if !busy[h] && h.Leader() != 0 && !slices.Contains(except, h) {
			free = append(free, h)
		}
	}
	if len(free) == 0 {
		return nil
	}
	return free[o.r.ops.IntN(len(free))]
}

// run does the planned operations, each at its time from injected, and
// returns when all of them ended (a reboot back, a rollout over).
func (o *chaosOps) run(t *testing.T, injected time.Time, ops []op) {
	var wg sync.WaitGroup
	for _, p := range ops {
		o.counts[p.kind]++
		if p.kind == opUpdate {
			o.updates++
			o.r.c.rolloutRound()
		}
		version := o.updates + 1
		undrain := slices.Clone(o.drained)
		if p.kind == opUndrain {
			o.drained = nil
		}
		if p.kind == opDrain || p.kind == opDrainDeadline {
			o.drained = append(o.drained, p.host)
		}
		wg.Go(func() {
			time.Sleep(time.Until(injected.Add(p.after)))
			start := time.Now()
			err := o.do(p, version, undrain)
			if err != nil {
				t.Logf("chaos op %s: %v", p.desc, err)
				return
			}
			t.Logf("chaos op %s: ended after %.1fs", p.desc, time.Since(start).Seconds())
		})
	}
	wg.Wait()
}

// do runs one operation to its end; an error is logged, and counted as a
// violation where fleet broke a promise.
func (o *chaosOps) do(p op, version int, undrain []*hosts.Host) error {
	e, c := o.r.e, o.r.c
	ctx, cancel := context.WithTimeout(e.ctx, chaosOpLimit)
	defer cancel()
	switch p.kind {
	case opUndrain:
		args := []string{"undrain"}
		for _, h := range undrain {
			args = append(args, h.MachineID)
		}
		_, err := o.fleetctl(ctx, p, args...)
		return err
	case opDrain, opDrainDeadline:
		args := []string{"drain", "--no-block", "--force"}
		if p.kind == opDrainDeadline {
			args = append(args, "--deadline", "4s")
		}
		out, err := o.fleetctl(ctx, p, append(args, p.host.MachineID)...)
		if err != nil && !strings.Contains(out, "already") { // else a retry of a drain that was done
			return err
		}
		// The drain ends (every movable unit off the machine, the rest
		// stopped at the deadline) whatever the faults did meanwhile.
		var state string
		err = waitFor(ctx, chaosOpLimit, func() bool {
			a := c.api()
			if a == nil {
				return false
			}
			ms, err := a.Machines(ctx)
			if err != nil {
				return false
			}
			for _, m := range ms {
				if m.ID == p.host.MachineID {
					state = m.State
				}
			}
			return state == "drained"
		})
		if err != nil {
			c.violate(invDrainDone, "%s: the machine reads %q, not drained, %s after fleetctl drain", p.desc, state, chaosOpLimit)
		}
		return err
	case opMv:
		to := p.host
		if a := c.api(); a != nil && p.alt != nil {
			if units, err := a.Units(ctx); err == nil {
				for _, u := range units {
					if u.Name == p.unit && u.MachineID == to.MachineID {
						to = p.alt
					}
				}
			}
		}
		_, err := o.fleetctl(ctx, p, "mv", "--no-block", p.unit, to.MachineID)
		if err == nil {
			c.t.Logf("chaos op %s: to %s", p.desc, to.Name)
		}
		return err // refused (the host left meanwhile, say): an operator's error
	case opReboot:
		boots := p.host.Boots()
		if _, err := o.fleetctl(ctx, p, "reboot", p.host.MachineID); err != nil {
			return err
		}
		c.hostLeaves(p.host)
		var holders int
		var outcome string
		err := waitFor(ctx, chaosOpLimit, func() bool {
			st, err := o.rebootStatus(ctx)
			if err != nil {
				return false
			}
			holders, outcome = len(st.Holders), lastOutcome(st, p.host.MachineID)
			return p.host.Boots() > boots && outcome == "back" && holders == 0
		})
		if err != nil {
			c.violate(invRebootSlot, "%s: %d boots (was %d), last outcome %q, %d slots held, %s after fleetctl reboot",
				p.desc, p.host.Boots(), boots, outcome, holders, chaosOpLimit)
		}
		return err
	case opUpdate:
		// On every running host, where fleetctl may run: a host killed
		// meanwhile has no root to write to.
		file := filepath.Join("/tmp", fmt.Sprintf("chaos-tmpl-v%d.service", version))
		body := fmt.Sprintf("[Unit]\nDescription=chaos v%d\n[Service]\nExecStart=/bin/sleep infinity\n"+
			"[X-Fleet]\nUpdateMaxUnavailable=4\nUpdateMinHealthy=1s\n", version)
		for _, h := range e.running() {
			if err := os.WriteFile(h.Path(file), []byte(body), 0o644); err != nil {
				c.t.Logf("chaos op %s: %s on %s: %v", p.desc, file, h.Name, err)
			}
		}
		if _, err := o.fleetctl(ctx, p, "update", chaosTmpl, "--file", file); err != nil {
			return err
		}
		var st rolloutStatus
		err := waitFor(ctx, chaosOpLimit, func() bool {
			out, err := o.fleetctl(ctx, p, "rollout", "status", chaosTmpl, "-o", "json")
			if err != nil || json.Unmarshal([]byte(out), &st) != nil {
				return false
			}
			return st.Phase == "done" || st.Phase == "reverted"
		})
		if err != nil {
			c.violate(invRollout, "%s: phase %q (%s), %d/%d healthy, %s after fleetctl update", p.desc, st.Phase, st.Message, st.Healthy, st.Total, chaosOpLimit)
			return err
		}
		if st.Phase != "done" {
			return fmt.Errorf("rollout %s: %s", st.Phase, st.Message)
		}
		return nil
	}
	return fmt.Errorf("unknown operation %q", p.kind)
}

// fleetctl runs fleetctl on some running host other than the one operated
// on, again while it fails (etcd down, that host's fleetd killed) until ctx
// ends; it returns the last output.
func (o *chaosOps) fleetctl(ctx context.Context, p op, args ...string) (string, error) {
	var out string
	var err error
	for i := 0; ; i++ {
		hs := o.r.e.running(p.host)
		if len(hs) > 0 {
			out, err = o.r.e.Fleetctl(ctx, hs[i%len(hs)], args...)
			if err == nil || strings.Contains(out, "already") {
				return out, err
			}
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("fleetctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
		case <-time.After(time.Second):
		}
	}
}

// rebootStatus is fleetctl reboot-status -o json on a running host.
func (o *chaosOps) rebootStatus(ctx context.Context) (st api.RebootStatus, err error) {
	hs := o.r.e.running()
	if len(hs) == 0 {
		return st, fmt.Errorf("no running host")
	}
	out, err := o.r.e.Fleetctl(ctx, hs[0], "reboot-status", "-o", "json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// settle ends the run's operations: it undrains what the run drained and
// checks that no machine is left draining or drained and no reboot slot is
// held.
func (o *chaosOps) settle(t *testing.T) {
	ctx, cancel := context.WithTimeout(o.r.e.ctx, chaosOpLimit)
	defer cancel()
	if len(o.drained) > 0 {
		p := op{kind: opUndrain}
		args := []string{"undrain"}
		for _, h := range o.drained {
			args = append(args, h.MachineID)
		}
		if _, err := o.fleetctl(ctx, p, args...); err != nil {
			t.Errorf("chaos: undrain at the end: %v", err)
		}
		o.drained = nil
	}
	var states map[string]string
	err := waitFor(ctx, 30*time.Second, func() bool {
		a := o.r.c.api()
		if a == nil {
			return false
		}
		ms, err := a.Machines(ctx)
		if err != nil {
			return false
		}
		states = map[string]string{}
		for _, m := range ms {
			if m.State != "" && m.State != "active" {
				states[m.ID] = m.State
			}
		}
		return len(states) == 0
	})
	if err != nil {
		o.r.c.violate(invDrainLeft, "after the run undrained every host it drained: %v", states)
	}
	var st api.RebootStatus
	err = waitFor(ctx, 30*time.Second, func() bool {
		st, err = o.rebootStatus(ctx)
		return err == nil && len(st.Holders) == 0 && len(st.Queue) == 0
	})
	if err != nil {
		o.r.c.violate(invRebootSlot, "at the end: slots held %+v, queue %+v", st.Holders, st.Queue)
	}
}
