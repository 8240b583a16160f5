package functional

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// partitionTTL is the agent_ttl of the partition group, as in issue 10's
// measurements.
const partitionTTL = 5 * time.Second

// partitionCut is how long the victim is cut off: four TTLs.
const partitionCut = 20 * time.Second

// samplePeriod is how often every host's systemd is asked what runs.
const samplePeriod = 100 * time.Millisecond

// TestPartition cuts a host off the network while it runs a plain unit, an
// AtMostOnce unit, a unit pinned to it and a global unit, and watches every
// host's own systemd throughout: the AtMostOnce unit never runs on two hosts
// at once, the plain unit runs elsewhere during the cut, after the heal
// every unit runs exactly once, and the pinned and global units on the cut
// host are never restarted. A cut shorter than the TTL but longer than half
// of it stops the AtMostOnce unit, which starts again on the same host once
// the lease is renewed.
func TestPartition(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared,
		conf: map[string]string{"agent_ttl": fmt.Sprint(partitionTTL.Seconds())}})
	ctx := e.ctx

	t.Run("a cut host: at-most-once never twice, plain units run elsewhere, one copy each after the heal", func(t *testing.T) {
		e.scenario(t)
		c := e.partitionSetup(t)
		r := c.cut(t, e, partitionCut)

		note := fmt.Sprintf("agent_ttl %s, cut %s, %d samples", partitionTTL, partitionCut, len(r.tl))
		figure(t, "plain: time with two copies", r.plain.twice, fmt.Sprintf("most copies at once: %d; %s", r.plain.most, note))
		figure(t, "plain: heal -> one copy", r.plain.toOne, note)
		figure(t, "AtMostOnce: cut -> stopped on the cut host", r.amo.stoppedOnVictim, note)
		figure(t, "AtMostOnce: longest gap without any copy", r.amo.gap, fmt.Sprintf("most copies at once: %d; %s", r.amo.most, note))
		figure(t, "AtMostOnce: heal -> one copy", r.amo.toOne, note)
		if registered := registeredAfter(t, ctx, c.victim, r.healed); !registered.IsZero() {
			figure(t, "heal -> cut host's agent registered", registered.Sub(r.healed), "from the host's journal; "+note)
		}
		require.True(t, r.plain.elsewhereDuringCut, "the plain unit runs on another host during the cut")
	})

	t.Run("a cut shorter than the TTL: at-most-once units stop while the lease is in doubt and start again once it is renewed", func(t *testing.T) {
		e.scenario(t)
		c := e.partitionSetup(t)
		const short = 3 * time.Second // past TTL/2, well within the TTL
		r := c.cut(t, e, short)
		note := fmt.Sprintf("agent_ttl %s, cut %s", partitionTTL, short)
		figure(t, "short cut: AtMostOnce stopped on the cut host", r.amo.stoppedOnVictim, note)
		figure(t, "short cut: AtMostOnce longest gap", r.amo.gap, note)
		require.NotZero(t, r.amo.stoppedOnVictim, "the AtMostOnce unit stops while the lease is in doubt")
		p, err := e.API(c.obs).WaitCount(ctx, 10*time.Second, c.placedBefore)
		require.NoError(t, err)
		if p.On(c.plain) == c.victim.MachineID {
			// The lease was renewed before it expired (the machine never
			// left): nothing moved, so the unit runs where it ran.
			require.Equal(t, c.victim.MachineID, p.On(c.amo), "the AtMostOnce unit starts again on its machine")
		} else {
			t.Logf("the cut host's lease expired anyway (reconnecting took long): units moved as after a long cut")
		}
	})
}

// partition is a cluster set up for a cut: the victim runs a plain unit,
// an AtMostOnce unit, a unit pinned to it and a global unit; the other
// hosts run ballast.
type partition struct {
	victim, obs  *hosts.Host
	all          []*hosts.Host
	plain, amo   string
	pinned       string
	pid, gpid    string // main PIDs of the pinned and global units on the victim
	placedBefore int
}

// partitionSetup starts the units. The victim is not the engine leader, so
// the figures are those of a steady engine.
func (e *env) partitionSetup(t *testing.T) *partition {
	t.Helper()
	ctx := e.ctx
	leader := e.engineLeader(t)
	var victim *hosts.Host
	var others []*hosts.Host
	for _, h := range e.running() {
		if victim == nil && h.MachineID != leader {
			victim = h
		} else {
			others = append(others, h)
		}
	}
	require.NotNil(t, victim)
	c := &partition{victim: victim, obs: others[0], all: append([]*hosts.Host{victim}, others...),
		plain: "part-plain.service", amo: "part-amo.service", pinned: "pinned@" + victim.MachineID + ".service"}
	api := e.API(c.obs)

	// Two pinned units on each other host make the victim the least
	// loaded machine for both units that can move.
	var ballast []string
	for _, h := range others {
		ballast = append(ballast, unit("pinned@"+h.MachineID+".service"), unit("pinned@"+h.MachineID[:8]+".service"))
	}
	e.fleetctl(t, c.obs, append([]string{"start"}, ballast...)...)
	_, err := api.WaitCount(ctx, 20*time.Second, len(ballast))
	require.NoError(t, err)
	writeUnit(t, c.obs, c.plain, sleeperUnit)
	writeUnit(t, c.obs, c.amo, sleeperUnit+"[X-Fleet]\nAtMostOnce=true\n")
	e.fleetctl(t, c.obs, "start", unit(c.plain))
	e.fleetctl(t, c.obs, "start", unit(c.amo))
	e.fleetctl(t, c.obs, "start", unit(c.pinned), unit("global.service"))
	c.placedBefore = len(ballast) + 2 + 1 + len(c.all)
	p, err := api.WaitCount(ctx, 20*time.Second, c.placedBefore)
	require.NoError(t, err)
	require.Equal(t, victim.MachineID, p.On(c.plain), "the plain unit runs on the victim")
	require.Equal(t, victim.MachineID, p.On(c.amo), "the AtMostOnce unit runs on the victim")
	c.pid = mainPID(t, ctx, victim, c.pinned)
	c.gpid = mainPID(t, ctx, victim, "global.service")
	return c
}

// cutResult is what the samples of one cut show.
type cutResult struct {
	tl         timeline
	healed     time.Time
	plain, amo unitFigures
}

// cut cuts the victim off for d while sampling every host's systemd, heals
// it, waits (generously) until every unit runs on exactly one host, and
// checks what must hold whatever the timing: the AtMostOnce unit never ran
// on two hosts, and the pinned and global units were never restarted.
func (c *partition) cut(t *testing.T, e *env, d time.Duration) cutResult {
	t.Helper()
	ctx := e.ctx
	s := startSampler(ctx, c.all, c.plain, c.amo)
	defer s.stop()
	time.Sleep(time.Second)

	since := time.Now()
	e.quiet[c.victim] = true
	require.NoError(t, c.victim.Disconnect(ctx))
	cut := time.Now()
	time.Sleep(d)
	require.NoError(t, c.victim.Reconnect(ctx))
	healed := time.Now()
	delete(e.quiet, c.victim)

	require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
		return s.last(c.plain) == 1 && s.last(c.amo) == 1
	}), "after the heal every unit runs on exactly one host; last sample: plain %d, amo %d", s.last(c.plain), s.last(c.amo))
	time.Sleep(settle)
	s.stop()

	tl := s.timeline()
	r := cutResult{tl: tl, healed: healed, plain: tl.figures(c.plain, c.victim.Name, cut, healed), amo: tl.figures(c.amo, c.victim.Name, cut, healed)}
	require.LessOrEqual(t, r.amo.most, 1, "the AtMostOnce unit ran on two hosts at once: %s", tl.where(c.amo, 2))
	require.Equal(t, 1, s.last(c.plain), "one copy of the plain unit after the heal")
	require.Equal(t, 1, s.last(c.amo), "one copy of the AtMostOnce unit after the heal")
	require.Equal(t, c.pid, mainPID(t, ctx, c.victim, c.pinned), "the pinned unit is not restarted")
	require.Equal(t, c.gpid, mainPID(t, ctx, c.victim, "global.service"), "the global unit is not restarted")
	e.requireNoStops(t, since, []*hosts.Host{c.victim}, c.pinned, "global.service")
	return r
}

// sample is what every host's systemd said about the units at one time:
// how many hosts run each, and on which.
type sample struct {
	at time.Time
	on map[string][]string // unit -> hosts where it is active (or starting, stopping)
}

type timeline []sample

// sampler asks every host's systemd, every samplePeriod and all hosts at
// once, whether the units run.
type sampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	samples timeline
}

func startSampler(ctx context.Context, hs []*hosts.Host, units ...string) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(samplePeriod)
		defer tick.Stop()
		for {
			at := time.Now()
			smp := sample{at: at, on: map[string][]string{}}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, h := range hs {
				wg.Go(func() {
					// is-active exits non-zero when a unit is not active;
					// the output says it anyway, one line per unit.
					out, _ := h.Exec(ctx, append([]string{"systemctl", "is-active"}, units...)...)
					lines := strings.Fields(string(out))
					mu.Lock()
					defer mu.Unlock()
					for i, u := range units {
						if i < len(lines) && running(lines[i]) {
							smp.on[u] = append(smp.on[u], h.Name)
						}
					}
				})
			}
			wg.Wait()
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// running reports whether systemctl is-active's word means a process may
// run: a copy counts from the start of its start job to the end of its stop.
func running(state string) bool {
	switch state {
	case "active", "activating", "deactivating", "reloading", "refreshing":
		return true
	}
	return false
}

func (s *sampler) stop() {
	s.once.Do(s.cancel)
	<-s.done
}

// last returns how many hosts ran unit in the last sample.
func (s *sampler) last(unit string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return -1
	}
	return len(s.samples[len(s.samples)-1].on[unit])
}

func (s *sampler) timeline() timeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(timeline(nil), s.samples...)
}

// unitFigures are the figures of one unit over a partition.
type unitFigures struct {
	most               int           // most hosts running it at once
	twice              time.Duration // total time with two or more copies
	gap                time.Duration // longest time with no copy
	toOne              time.Duration // from the heal until one copy from then on
	stoppedOnVictim    time.Duration // from the cut until it no longer ran on the victim (0: it ran on)
	elsewhereDuringCut bool
}

func (tl timeline) figures(unit, victim string, cut, healed time.Time) unitFigures {
	var f unitFigures
	var gapStart time.Time
	oneSince := time.Time{}
	for i, smp := range tl {
		on := smp.on[unit]
		n := len(on)
		f.most = max(f.most, n)
		next := smp.at.Add(samplePeriod)
		if i+1 < len(tl) {
			next = tl[i+1].at
		}
		if n >= 2 {
			f.twice += next.Sub(smp.at)
		}
		switch {
		case n == 0 && gapStart.IsZero():
			gapStart = smp.at
		case n > 0 && !gapStart.IsZero():
			f.gap = max(f.gap, smp.at.Sub(gapStart))
			gapStart = time.Time{}
		}
		onVictim := false
		for _, h := range on {
			if h == victim {
				onVictim = true
			} else if smp.at.After(cut) && smp.at.Before(healed) {
				f.elsewhereDuringCut = true
			}
		}
		if smp.at.After(cut) && !onVictim && f.stoppedOnVictim == 0 && smp.at.Before(healed) {
			f.stoppedOnVictim = smp.at.Sub(cut)
		}
		switch {
		case n != 1:
			oneSince = time.Time{}
		case oneSince.IsZero():
			oneSince = smp.at
		}
	}
	if !gapStart.IsZero() {
		f.gap = max(f.gap, tl[len(tl)-1].at.Sub(gapStart))
	}
	if !oneSince.IsZero() {
		f.toOne = max(0, oneSince.Sub(healed))
	}
	return f
}

// where describes the samples in which unit ran on at least n hosts.
func (tl timeline) where(unit string, n int) string {
	var b strings.Builder
	for _, smp := range tl {
		if len(smp.on[unit]) >= n {
			fmt.Fprintf(&b, "%s on %v; ", smp.at.Format("15:04:05.000"), smp.on[unit])
		}
	}
	return b.String()
}

// registeredAfter returns when h's fleetd logged that its machine was
// registered, first after since (zero if it did not).
func registeredAfter(t *testing.T, ctx context.Context, h *hosts.Host, since time.Time) time.Time {
	t.Helper()
	out, err := h.Exec(ctx, "journalctl", "--no-pager", "-q", "-o", "short-unix", "-u", "fleet.service",
		"--since", fmt.Sprintf("@%d", since.Unix()))
	require.NoError(t, err, string(out))
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "machine registered") {
			continue
		}
		stamp, _, _ := strings.Cut(line, " ")
		sec, err := strconv.ParseFloat(stamp, 64)
		if err != nil {
			continue
		}
		if at := time.Unix(0, int64(sec*1e9)); at.After(since) {
			return at
		}
	}
	return time.Time{}
}
