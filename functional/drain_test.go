package functional

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// drainSampleEvery is how often TestDrain asks every host's systemd what
// runs (the chaos run's sampler, faster).
const drainSampleEvery = 100 * time.Millisecond

// gapMeter follows, sample by sample, whether each unit is active on some
// host, and keeps each unit's longest gap: from the last sample that saw it
// active to the next one that did.
type gapMeter struct {
	mu      sync.Mutex
	units   []string
	last    map[string]time.Time // last sample with the unit active
	inGap   map[string]bool
	longest map[string]time.Duration
	missed  map[string]int // samples without the unit active anywhere
	samples int
}

func newGapMeter(units []string) *gapMeter {
	return &gapMeter{units: units, last: map[string]time.Time{}, inGap: map[string]bool{},
		longest: map[string]time.Duration{}, missed: map[string]int{}}
}

// sample is the checker's onSample hook.
func (g *gapMeter) sample(at time.Time, hs map[*hosts.Host]hostSample) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.samples++
	for _, name := range g.units {
		active, unknown := false, false
		for _, s := range hs {
			if !s.known {
				unknown = true
				continue
			}
			active = active || s.units[name].active == "active"
		}
		switch {
		case active:
			if g.inGap[name] {
				g.longest[name] = max(g.longest[name], at.Sub(g.last[name]))
				g.inGap[name] = false
			}
			g.last[name] = at
		case unknown:
			// A host did not answer: it may run the unit.
		case !g.last[name].IsZero():
			g.inGap[name] = true
			g.missed[name]++
		}
	}
}

// seenAll reports whether every unit was seen active.
func (g *gapMeter) seenAll() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.units {
		if g.last[n].IsZero() {
			return false
		}
	}
	return true
}

// reset forgets the gaps seen so far.
func (g *gapMeter) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.longest)
	clear(g.missed)
}

func (g *gapMeter) result(name string) (time.Duration, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.longest[name], g.missed[name]
}

// TestDrain drains a host running six units (four plain ones, one whose
// Conflicts match its own name, one AtMostOnce) while every host's systemd
// is sampled every 100 ms: the plain units are active somewhere at every
// sample (make-before-break), the gap of the other two is measured, the
// drained host ends empty and takes nothing new until it is undrained; then
// fleetctl mv moves a unit with no gap.
func TestDrain(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared})
	ctx := e.ctx
	hs := e.Hosts()
	victim, obs := hs[0], hs[1]
	short := func(h *hosts.Host) string { return h.MachineID[:8] }

	plain := []string{"drain-a.service", "drain-b.service", "drain-c.service", "drain-d.service"}
	const web, amo = "drain-web@1.service", "drain-amo.service"
	all := append(slices.Clone(plain), web, amo)
	for _, n := range plain {
		writeUnit(t, obs, n, sleeperUnit)
	}
	writeUnit(t, obs, web, sleeperUnit+"[X-Fleet]\nConflicts=drain-web@*\n")
	writeUnit(t, obs, amo, sleeperUnit+"[X-Fleet]\nAtMostOnce=true\n")

	t.Run("bad input is refused and changes nothing", func(t *testing.T) {
		out, err := e.Fleetctl(ctx, obs, "drain", "ffffffffff")
		require.Error(t, err, "draining an unknown machine fails:\n%s", out)
		require.Contains(t, out, "no machine's ID starts with")
		out, err = e.Fleetctl(ctx, obs, "mv", "drain-nope.service", short(victim))
		require.Error(t, err, "moving an unknown unit fails:\n%s", out)
	})

	// Only the victim takes new units while the others are drained (they
	// are empty, so at once): the six units all start there.
	e.fleetctl(t, obs, "drain", "--no-block", short(hs[1]), short(hs[2]))
	e.fleetctl(t, obs, append([]string{"start"}, units(all...)...)...)
	a := e.API(obs)
	p, err := a.WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
		for _, n := range all {
			if p.On(n) != victim.MachineID {
				return false
			}
		}
		return true
	})
	require.NoError(t, err)
	_, err = e.Fleetctl(ctx, obs, "drain", "--no-block", short(hs[1]))
	require.Error(t, err, "a machine draining already is refused")
	e.fleetctl(t, obs, "undrain", short(hs[1]), short(hs[2]))
	t.Logf("six units on %s: %v", victim.Name, p)

	ck := newChecker(t, e, []chaosUnit{{name: amo, atMostOnce: true}})
	ck.pattern, ck.every = "drain-*", drainSampleEvery
	gaps := newGapMeter(all)
	ck.onSample = gaps.sample
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); ck.run(sctx) }()
	defer func() { stopSampling(); <-sampled }()
	require.NoError(t, platform.Wait(ctx, 10*time.Second, gaps.seenAll), "the sampler sees the six units active")

	t.Run("drain: make-before-break, the host ends empty and takes nothing new", func(t *testing.T) {
		start := time.Now()
		out := e.fleetctl(t, obs, "drain", short(victim))
		took := time.Since(start)
		t.Logf("fleetctl drain:\n%s", out)
		time.Sleep(time.Second) // a few more samples after the last move
		note := fmt.Sprintf("3 hosts, sampled every %s (mean period %s)", drainSampleEvery, ck.samplePeriod().Round(time.Millisecond))
		figure(t, "drain: 6 units off one host (fleetctl drain)", took, note)
		for _, n := range all {
			gap, missed := gaps.result(n)
			figure(t, "drain: longest gap "+n, gap, fmt.Sprintf("%d samples without it active; %s", missed, note))
			if slices.Contains(plain, n) {
				require.Zero(t, missed, "%s is active somewhere at every sample (make-before-break)", n)
			}
		}
		// The journals say precisely when each copy stopped and started
		// (the hosts share one clock): make-before-break starts the new
		// copy before the old one stops, break-before-make the other way.
		p, err := a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.Count() == len(all) })
		require.NoError(t, err)
		for _, n := range all {
			stopped := journalAt(t, ctx, victim, start, "Stopped "+n, false)
			started := journalAt(t, ctx, e.byID(t, p.On(n)), start, "Started "+n, true)
			require.False(t, stopped.IsZero() || started.IsZero(), "%s: stopped %v on the drained host, started %v on %s", n, stopped, started, p.On(n))
			handover := started.Sub(stopped)
			if slices.Contains(plain, n) {
				require.Negative(t, handover, "%s started elsewhere before it stopped on the drained host", n)
				figure(t, "drain: overlap (journal) "+n, -handover, "new copy started before the old one stopped")
			} else {
				require.Positive(t, handover, "%s stopped on the drained host before it started elsewhere", n)
				figure(t, "drain: gap (journal) "+n, handover, "break-before-make: old copy stopped -> new copy started")
			}
		}
		ck.mu.Lock()
		twice := ck.counts[invAtMostOnce]
		ck.mu.Unlock()
		require.Zero(t, twice, "the AtMostOnce unit never runs on two hosts")

		left, err := systemdUnits(ctx, victim, "drain-*")
		require.NoError(t, err)
		for n, u := range left {
			require.False(t, u.copy(), "%s still runs on the drained host", n)
		}
		for _, n := range all {
			require.NotEqual(t, victim.MachineID, p.On(n), n)
		}
		out = e.fleetctl(t, obs, "list-machines", "--no-legend", "--full", "--fields", "machine,state")
		require.Contains(t, strings.Fields(out), "drained", out)
		require.Regexp(t, victim.MachineID+`\s+drained`, out)

		// Nothing new goes to the drained host, even though it is the
		// least loaded.
		writeUnit(t, obs, "drain-new.service", sleeperUnit)
		e.fleetctl(t, obs, "start", unit("drain-new.service"))
		p, err = a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.On("drain-new.service") != "" })
		require.NoError(t, err)
		require.NotEqual(t, victim.MachineID, p.On("drain-new.service"))

		e.fleetctl(t, obs, "undrain", short(victim))
		writeUnit(t, obs, "drain-after.service", sleeperUnit)
		e.fleetctl(t, obs, "start", unit("drain-after.service"))
		p, err = a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.On("drain-after.service") != "" })
		require.NoError(t, err)
		require.Equal(t, victim.MachineID, p.On("drain-after.service"), "undrained, the empty host takes new units again")
	})

	t.Run("mv: make-before-break, no gap", func(t *testing.T) {
		p, err := a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.On(plain[0]) != "" })
		require.NoError(t, err)
		from := p.On(plain[0])
		var to *hosts.Host
		for _, h := range hs {
			if h.MachineID != from {
				to = h
				break
			}
		}
		gaps.reset()
		start := time.Now()
		out := e.fleetctl(t, obs, "mv", plain[0], short(to))
		took := time.Since(start)
		time.Sleep(time.Second)
		gap, missed := gaps.result(plain[0])
		figure(t, "mv: fleetctl mv of a plain unit", took, strings.TrimSpace(out))
		require.Zero(t, missed, "moved with no gap (longest %s)", gap)
		stopped := journalAt(t, ctx, e.byID(t, from), start, "Stopped "+plain[0], false)
		started := journalAt(t, ctx, to, start, "Started "+plain[0], true)
		require.Negative(t, started.Sub(stopped), "started on %s before it stopped on %s", to.Name, from)
		figure(t, "mv: overlap (journal) "+plain[0], stopped.Sub(started), "new copy started before the old one stopped")
		p, err = a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.On(plain[0]) == to.MachineID })
		require.NoError(t, err, "runs only on the target")

		out, err = e.Fleetctl(ctx, obs, "mv", plain[0], short(to))
		require.Error(t, err, "a move to where it runs already is refused:\n%s", out)
		require.Contains(t, out, "runs on "+to.MachineID+" already")
	})
}

// journalAt returns when h's systemd logged msg ("Started x.service") for
// the first (or last) time since since; zero if it did not.
func journalAt(t *testing.T, ctx context.Context, h *hosts.Host, since time.Time, msg string, first bool) time.Time {
	t.Helper()
	out, err := h.Exec(ctx, "journalctl", "--no-pager", "-q", "-o", "short-unix", "_PID=1",
		"--since", fmt.Sprintf("@%d", since.Unix()-1))
	require.NoError(t, err, string(out))
	var at time.Time
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, ": "+msg) {
			continue
		}
		stamp, _, _ := strings.Cut(line, " ")
		sec, err := strconv.ParseFloat(stamp, 64)
		if err != nil {
			continue
		}
		if ts := time.Unix(0, int64(sec*1e9)); ts.After(since) {
			at = ts
			if first {
				break
			}
		}
	}
	return at
}
