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
// host are never restarted.
func TestPartition(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared,
		conf: map[string]string{"agent_ttl": fmt.Sprint(partitionTTL.Seconds())}})
	ctx := e.ctx

	t.Run("a cut host: at-most-once never twice, plain units run elsewhere, one copy each after the heal", func(t *testing.T) {
		e.scenario(t)
		// The victim is not the engine leader, so the figures are those of
		// a steady engine.
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
		obs := others[0]
		api := e.API(obs)

		// Two pinned units on each other host make the victim the least
		// loaded machine for both units that can move.
		const plain, amo = "part-plain.service", "part-amo.service"
		var ballast []string
		for _, h := range others {
			ballast = append(ballast, unit("pinned@"+h.MachineID+".service"), unit("pinned@"+h.MachineID[:8]+".service"))
		}
		e.fleetctl(t, obs, append([]string{"start"}, ballast...)...)
		_, err := api.WaitCount(ctx, 20*time.Second, 4)
		require.NoError(t, err)
		writeUnit(t, obs, plain, sleeperUnit)
		writeUnit(t, obs, amo, sleeperUnit+"[X-Fleet]\nAtMostOnce=true\n")
		e.fleetctl(t, obs, "start", unit(plain))
		e.fleetctl(t, obs, "start", unit(amo))
		pinned := "pinned@" + victim.MachineID + ".service"
		e.fleetctl(t, obs, "start", unit(pinned), unit("global.service"))
		p, err := api.WaitCount(ctx, 20*time.Second, 4+2+1+3)
		require.NoError(t, err)
		require.Equal(t, victim.MachineID, p.On(plain), "the plain unit runs on the victim")
		require.Equal(t, victim.MachineID, p.On(amo), "the AtMostOnce unit runs on the victim")
		pid := mainPID(t, ctx, victim, pinned)
		gpid := mainPID(t, ctx, victim, "global.service")

		all := append([]*hosts.Host{victim}, others...)
		s := startSampler(ctx, all, plain, amo)
		defer s.stop()
		time.Sleep(time.Second)

		since := time.Now()
		e.quiet[victim] = true
		require.NoError(t, victim.Disconnect(ctx))
		cut := time.Now()
		time.Sleep(partitionCut)
		require.NoError(t, victim.Reconnect(ctx))
		healed := time.Now()
		delete(e.quiet, victim)

		// Generous: every unit on exactly one host, and staying so.
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			return s.last(plain) == 1 && s.last(amo) == 1
		}), "after the heal every unit runs on exactly one host; last sample: plain %d, amo %d", s.last(plain), s.last(amo))
		time.Sleep(settle)
		s.stop()

		tl := s.timeline()
		plainFig, amoFig := tl.figures(plain, victim.Name, cut, healed), tl.figures(amo, victim.Name, cut, healed)
		registered := registeredAfter(t, ctx, victim, healed)
		note := fmt.Sprintf("agent_ttl %s, cut %s, %d samples", partitionTTL, partitionCut, len(tl))
		figure(t, "plain: time with two copies", plainFig.twice, fmt.Sprintf("most copies at once: %d; %s", plainFig.most, note))
		figure(t, "plain: heal -> one copy", plainFig.toOne, note)
		figure(t, "AtMostOnce: cut -> stopped on the cut host", amoFig.stoppedOnVictim, note)
		figure(t, "AtMostOnce: longest gap without any copy", amoFig.gap, fmt.Sprintf("most copies at once: %d; %s", amoFig.most, note))
		figure(t, "AtMostOnce: heal -> one copy", amoFig.toOne, note)
		if !registered.IsZero() {
			figure(t, "heal -> cut host's agent registered", registered.Sub(healed), "from the host's journal; "+note)
		}

		require.LessOrEqual(t, amoFig.most, 1, "the AtMostOnce unit ran on two hosts at once: %s", tl.where(amo, 2))
		require.True(t, plainFig.elsewhereDuringCut, "the plain unit runs on another host during the cut")
		require.Equal(t, 1, s.last(plain))
		require.Equal(t, 1, s.last(amo))
		require.Equal(t, pid, mainPID(t, ctx, victim, pinned), "the pinned unit is not restarted")
		require.Equal(t, gpid, mainPID(t, ctx, victim, "global.service"), "the global unit is not restarted")
		e.requireNoStops(t, since, []*hosts.Host{victim}, pinned, "global.service")
	})
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
