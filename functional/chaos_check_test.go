package functional

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// The chaos run's observer: what every host's own systemd runs, sampled
// every chaosSampleEvery, and what fleet's API lists, checked against the
// invariants as the samples come in.

// chaosSampleEvery is the period of the systemd and API samples.
const chaosSampleEvery = 200 * time.Millisecond

// Invariants, as the summary names them.
const (
	invAtMostOnce    = "at-most-once"   // an AtMostOnce unit active on two hosts at once
	invConverge      = "converge"       // a unit not active where it should be TTL+2s after the faults stopped
	invLost          = "lost"           // a unit no longer listed by fleet
	invGlobalMissing = "global-missing" // a global unit not active on a live machine TTL+2s after the faults stopped
	invRestart       = "restart"        // a unit restarted on a machine that never left
	invDrainPlaced   = "drain-placed"   // fleet placed a unit anew on a machine already draining or drained
	invDrainDone     = "drain-done"     // a drain not done (the machine drained) in its round
	invDrainLeft     = "drain-left"     // a machine still draining or drained after the run undrained it
	invRebootSlot    = "reboot-slot"    // a reboot not done (host back, slot free) in its round, or a slot held at the end
	invRollout       = "rollout"        // a rollout not ended (done or reverted) in its round
)

var invariants = []string{invAtMostOnce, invConverge, invLost, invGlobalMissing, invRestart,
	invDrainPlaced, invDrainDone, invDrainLeft, invRebootSlot, invRollout}

// unitRun is what a host's systemd says of one unit.
type unitRun struct {
	active string // ActiveState
	pid    string // MainPID
	since  string // ActiveEnterTimestampMonotonic
	desc   string // Description: which body the copy runs
}

// running reports whether the unit runs: started, or still stopping.
func (u unitRun) running() bool {
	return u.active == "active" || u.active == "reloading" || u.active == "deactivating"
}

// copy reports whether processes of the unit may run: running, or starting.
// Two copies of an AtMostOnce unit are counted with it, to be strict.
func (u unitRun) copy() bool {
	return u.running() || u.active == "activating"
}

// systemdUnits returns what h's systemd says of its loaded units matching
// pattern, in one systemctl call whatever their number.
func systemdUnits(ctx context.Context, h *hosts.Host, pattern string) (map[string]unitRun, error) {
	out, err := h.Exec(ctx, "systemctl", "show", "--property=Id,ActiveState,MainPID,ActiveEnterTimestampMonotonic,Description", "--", pattern)
	if err != nil {
		return nil, err
	}
	return parseShow(string(out)), nil
}

// parseShow reads systemctl show's output for several units: blocks of
// Key=Value lines, one block per unit, separated by blank lines.
func parseShow(out string) map[string]unitRun {
	units := map[string]unitRun{}
	for _, block := range strings.Split(out, "\n\n") {
		var id string
		var u unitRun
		for _, line := range strings.Split(block, "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "Id":
				id = v
			case "ActiveState":
				u.active = v
			case "MainPID":
				u.pid = v
			case "ActiveEnterTimestampMonotonic":
				u.since = v
			case "Description":
				u.desc = v
			}
		}
		if id != "" {
			units[id] = u
		}
	}
	return units
}

// hostSample is one host in a sample. A host that is down runs nothing; a
// running host whose systemd did not answer (it re-executes, say) is not
// known.
type hostSample struct {
	known bool
	boot  int // the host's systemd on the machine: a new one is a new boot
	units map[string]unitRun
}

// chaosUnit is one unit of the chaos run.
type chaosUnit struct {
	name       string
	global     bool
	atMostOnce bool
}

// chaosRound is what the checker knows of the round under way.
type chaosRound struct {
	n int
	// left are the hosts whose machine left this round: seen absent from
	// fleet's machines, killed, cut off, or rebooted. Restarts there are
	// fleet's right.
	left map[*hosts.Host]bool
	// etcdDown: every agent lost etcd this round, so agents stop their
	// AtMostOnce units, by design, and start them again.
	etcdDown bool
	// start is when the round began: an agent that doubted its lease since
	// (see leaseDoubted) stopped its AtMostOnce units by design.
	start time.Time
	// restarts seen this round, judged at its end, once it is known which
	// machines left.
	restarts []restart
	// moved are the units fleet placed elsewhere this round (a drain, a
	// mv, a host that left): one that comes back to a host it ran on
	// earlier in the round starts there, it does not restart.
	moved map[string]bool
	// rolling: a rolling update of chaos-tmpl@ ran this round, which
	// restarts its instances where they are, with the new body.
	rolling bool
}

// restart is a unit seen running on a host with another main process, or
// another start time, than before.
type restart struct {
	host *hosts.Host
	unit string
}

// checker samples the hosts and counts violations of the invariants.
type checker struct {
	e     *env
	t     *testing.T
	units []chaosUnit
	names map[string]chaosUnit

	mu         sync.Mutex
	hosts      map[*hosts.Host]hostSample
	sampledAt  time.Time
	machines   map[string]bool // machine IDs fleet lists; nil until an API answered
	machinesAt time.Time
	// draining are the machines fleet listed as draining, drained or
	// rebooting at the last answer, and targets where fleet placed each
	// unit at the last listing: a unit placed anew on a machine that was
	// draining already at the listing before breaks the drain's promise.
	draining map[string]bool
	targets  map[string]string
	// listings of fleet's schedule checked for placements on draining
	// machines, and how many of them had a machine draining.
	listings, drainListings int
	ident                   map[*hosts.Host]map[string]string // a running unit's "MainPID/ActiveEnter" per host
	double                  map[string]time.Time              // AtMostOnce units seen on two hosts, since when
	missing                 map[string]bool                   // units fleet did not list at the last answer
	round                   chaosRound
	counts                  map[string]int
	examples                map[string][]string
	worstTwice              time.Duration // the longest an AtMostOnce unit ran twice
	samples                 int
	firstAt                 time.Time // of the first systemd sample

	// Set before run by groups that reuse the sampler (TestDrain): the
	// units sampled (default chaos-*), the period (default
	// chaosSampleEvery), and a hook called with every systemd sample, under
	// the checker's lock.
	pattern  string
	every    time.Duration
	onSample func(at time.Time, hosts map[*hosts.Host]hostSample)
}

func newChecker(t *testing.T, e *env, units []chaosUnit) *checker {
	c := &checker{e: e, t: t, units: units, names: map[string]chaosUnit{},
		hosts: map[*hosts.Host]hostSample{}, ident: map[*hosts.Host]map[string]string{},
		double: map[string]time.Time{}, missing: map[string]bool{},
		counts: map[string]int{}, examples: map[string][]string{},
		round: chaosRound{left: map[*hosts.Host]bool{}, moved: map[string]bool{}}}
	for _, u := range units {
		c.names[u.name] = u
	}
	return c
}

// violate counts a violation of invariant inv; the first few are kept to
// say what happened.
func (c *checker) violate(inv, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violateLocked(inv, format, args...)
}

func (c *checker) violateLocked(inv, format string, args ...any) {
	c.counts[inv]++
	msg := fmt.Sprintf("round %d: ", c.round.n) + fmt.Sprintf(format, args...)
	if len(c.examples[inv]) < 10 {
		c.examples[inv] = append(c.examples[inv], msg)
	}
	c.t.Logf("VIOLATION %s: %s", inv, msg)
}

// run samples until ctx ends; it returns once both samplers stopped.
func (c *checker) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.loop(ctx, c.sampleSystemd) })
	wg.Go(func() { c.loop(ctx, c.sampleFleet) })
	wg.Wait()
}

func (c *checker) loop(ctx context.Context, sample func(context.Context, int)) {
	every := c.every
	if every <= 0 {
		every = chaosSampleEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		sample(ctx, i)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sampleSystemd asks every host's systemd, all at once, and checks that no
// AtMostOnce unit runs twice and that no unit restarted.
func (c *checker) sampleSystemd(ctx context.Context, _ int) {
	hs := c.e.Hosts()
	got := make([]hostSample, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			boot := h.Leader()
			if boot == 0 {
				got[i] = hostSample{known: true}
				return
			}
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			pattern := c.pattern
			if pattern == "" {
				pattern = "chaos-*"
			}
			units, err := systemdUnits(sctx, h, pattern)
			if err != nil || h.Leader() != boot {
				return // re-executing, booting or killed meanwhile: not known
			}
			got[i] = hostSample{known: true, boot: boot, units: units}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples++
	if c.firstAt.IsZero() {
		c.firstAt = now
	}
	for i, h := range hs {
		prev, had := c.hosts[h]
		s := got[i]
		if !s.known {
			if had {
				prev.known = false
				c.hosts[h] = prev
			}
			continue
		}
		if had && prev.boot != s.boot {
			// A new boot (or a host down): its units are new.
			delete(c.ident, h)
			c.round.left[h] = true
		}
		c.hosts[h] = s
		ids := c.ident[h]
		if ids == nil {
			ids = map[string]string{}
			c.ident[h] = ids
		}
		for name, u := range s.units {
			if !u.running() || u.pid == "0" {
				continue // a unit that stopped and starts again is caught when it does
			}
			id := u.pid + "/" + u.since
			if old, ok := ids[name]; ok && old != id {
				c.round.restarts = append(c.round.restarts, restart{h, name})
			}
			ids[name] = id
		}
	}
	c.sampledAt = now
	if c.onSample != nil {
		c.onSample(now, c.hosts)
	}
	for _, u := range c.units {
		if !u.atMostOnce {
			continue
		}
		var on []string
		for h, s := range c.hosts {
			if s.known && s.units[u.name].copy() {
				on = append(on, h.Name)
			}
		}
		since, twice := c.double[u.name]
		switch {
		case len(on) > 1 && !twice:
			sort.Strings(on)
			c.double[u.name] = now
			c.violateLocked(invAtMostOnce, "%s active on %v at once", u.name, on)
		case len(on) > 1:
			c.worstTwice = max(c.worstTwice, now.Sub(since))
		case twice:
			c.worstTwice = max(c.worstTwice, now.Sub(since))
			delete(c.double, u.name)
		}
	}
}

// sampleFleet asks fleet's API which machines are present (a machine
// missing has left: its restarts are fleet's right) and, every fifth time,
// that every unit is still listed.
func (c *checker) sampleFleet(ctx context.Context, i int) {
	a := c.api()
	if a == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ms, err := a.Machines(actx)
	if err != nil {
		return // etcd down, or that fleetd restarting: nothing known
	}
	now := time.Now()
	present := map[string]bool{}
	draining := map[string]bool{}
	for _, m := range ms {
		present[m.ID] = true
		if m.State == "draining" || m.State == "drained" || m.State == "rebooting" {
			draining[m.ID] = true
		}
	}
	c.mu.Lock()
	// The drains known before this answer: a placement seen at this
	// listing and not at the last one was made after them.
	drainedBefore := c.draining
	c.machines, c.machinesAt, c.draining = present, now, draining
	for _, h := range c.e.Hosts() {
		if !present[h.MachineID] {
			c.round.left[h] = true
		}
	}
	c.mu.Unlock()
	if i%5 != 0 {
		return
	}
	units, err := a.Units(actx)
	if err != nil {
		return
	}
	listed := map[string]bool{}
	targets := map[string]string{}
	for _, u := range units {
		listed[u.Name] = true
		targets[u.Name] = u.MachineID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets != nil {
		moved, onDraining := placedAnew(c.targets, targets, drainedBefore)
		for _, name := range moved {
			c.round.moved[name] = true
		}
		for _, name := range onDraining {
			c.violateLocked(invDrainPlaced, "%s placed on %s, draining or drained since before (it was on %q)", name, targets[name], c.targets[name])
		}
	}
	c.targets = targets
	c.listings++
	if len(drainedBefore) > 0 {
		c.drainListings++
	}
	for _, u := range c.units {
		switch {
		case !listed[u.name] && !c.missing[u.name]:
			c.missing[u.name] = true
			c.violateLocked(invLost, "%s no longer listed by fleet (%d units listed)", u.name, len(units))
		case listed[u.name]:
			delete(c.missing, u.name)
		}
	}
}

// placedAnew compares two listings of fleet's schedule (unit -> machine):
// it returns the units placed elsewhere since, and those of them placed on
// a machine that was draining (or drained) before the newer listing. Pinned
// units stay on a draining machine, and come back to a drained one that
// rebooted: their MachineID says so.
func placedAnew(before, now map[string]string, draining map[string]bool) (moved, onDraining []string) {
	for name, to := range now {
		from, ok := before[name]
		if !ok || from == to {
			continue
		}
		moved = append(moved, name)
		if to != "" && draining[to] && !strings.HasPrefix(name, "chaos-pinned@") {
			onDraining = append(onDraining, name)
		}
	}
	sort.Strings(moved)
	sort.Strings(onDraining)
	return moved, onDraining
}

// api returns the API of a host that has not left this round, or nil.
func (c *checker) api() *platform.API {
	c.mu.Lock()
	left := maps.Clone(c.round.left)
	c.mu.Unlock()
	for _, h := range c.e.Hosts() {
		if h.Leader() != 0 && !left[h] {
			return c.e.API(h)
		}
	}
	return nil
}

// startRound starts round n's bookkeeping.
func (c *checker) startRound(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.round = chaosRound{n: n, left: map[*hosts.Host]bool{}, moved: map[string]bool{}, start: time.Now()}
}

// hostLeaves says that h's machine leaves this round (killed or cut off),
// before it does, so that no restart there is held against fleet.
func (c *checker) hostLeaves(h *hosts.Host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.round.left[h] = true
}

// rolloutRound says that a rolling update of chaos-tmpl@ runs this round.
func (c *checker) rolloutRound() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.round.rolling = true
}

// etcdDown says that every agent loses etcd this round.
func (c *checker) etcdDown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.round.etcdDown = true
}

// leaseDoubted reports whether h's fleetd logged, since the round began,
// that its lease was in doubt (agent/lease.go).
func (c *checker) leaseDoubted(h *hosts.Host) bool {
	ctx, cancel := context.WithTimeout(c.e.ctx, 10*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, "journalctl", "-q", "-u", "fleet.service", "-o", "cat",
		"--since", "@"+strconv.FormatInt(c.round.start.Unix()-1, 10))
	return err == nil && strings.Contains(string(out), "lease in doubt")
}

// endRound judges the restarts seen during the round, once it converged: on
// a machine that never left, none is allowed (AtMostOnce units are stopped
// by design when their agent loses etcd). It returns which hosts left.
func (c *checker) endRound() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[restart]bool{}
	for _, r := range c.round.restarts {
		if c.round.left[r.host] || (c.round.etcdDown && c.names[r.unit].atMostOnce) || seen[r] ||
			c.round.moved[r.unit] || (c.round.rolling && strings.HasPrefix(r.unit, "chaos-tmpl@")) {
			continue
		}
		if c.names[r.unit].atMostOnce && c.leaseDoubted(r.host) {
			// Its agent went half a TTL without renewing its lease (an
			// etcd leader election can take that long): it cannot tell
			// that from being cut off, and stops AtMostOnce units then,
			// as it must. The journal says so, or this is a violation.
			continue
		}
		seen[r] = true
		c.violateLocked(invRestart, "%s restarted on %s, whose machine never left", r.unit, r.host.Name)
	}
	// Units no longer running on a host are forgotten there: fleet may place
	// them there again in a later round, which is a start, not a restart.
	for h, ids := range c.ident {
		for name := range ids {
			if !c.hosts[h].units[name].running() {
				delete(ids, name)
			}
		}
	}
	var left []string
	for h := range c.round.left {
		left = append(left, h.Name)
	}
	sort.Strings(left)
	return left
}

// converged says what keeps the cluster from being converged, as seen
// after since: every non-global unit active on the one machine fleet placed
// it on and nowhere else, every global unit on every present machine, every
// host known and present. Global units missing are listed apart.
func (c *checker) converged(ctx context.Context, since time.Time) (problems, globals []string, err error) {
	a := c.api()
	if a == nil {
		return nil, nil, fmt.Errorf("no host to ask")
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	units, err := a.Units(actx)
	if err != nil {
		return nil, nil, err
	}
	target := map[string]string{}
	desc := map[string]string{}
	for _, u := range units {
		target[u.Name] = u.MachineID
		for _, o := range u.Options {
			if o.Section == "Unit" && o.Name == "Description" {
				desc[u.Name] = o.Value
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sampledAt.Before(since) || c.machinesAt.Before(since) {
		return nil, nil, fmt.Errorf("no sample since %s", since.Format(time.StampMilli))
	}
	byID := map[string]*hosts.Host{}
	for h, s := range c.hosts {
		byID[h.MachineID] = h
		if !s.known {
			problems = append(problems, h.Name+": systemd not known")
		}
		if !c.machines[h.MachineID] {
			problems = append(problems, h.Name+": machine not listed")
		}
	}
	for _, u := range c.units {
		var on []string
		for h, s := range c.hosts {
			if s.units[u.name].running() {
				on = append(on, h.Name)
			}
		}
		sort.Strings(on)
		if u.global {
			for h, s := range c.hosts {
				if c.machines[h.MachineID] && !s.units[u.name].running() {
					globals = append(globals, u.name+" not on "+h.Name)
				}
			}
			continue
		}
		th := byID[target[u.name]]
		switch {
		case th == nil:
			problems = append(problems, fmt.Sprintf("%s placed on no host (%q), active on %v", u.name, target[u.name], on))
		case !slices.Equal(on, []string{th.Name}):
			problems = append(problems, fmt.Sprintf("%s placed on %s, active on %v", u.name, th.Name, on))
		case c.hosts[th].units[u.name].desc != desc[u.name]:
			// A rolling update is over only when every copy runs the body
			// fleet holds for it.
			problems = append(problems, fmt.Sprintf("%s on %s runs body %q, fleet says %q", u.name, th.Name,
				c.hosts[th].units[u.name].desc, desc[u.name]))
		}
	}
	sort.Strings(problems)
	sort.Strings(globals)
	return problems, globals, nil
}

// waitConverged waits until the cluster converges after the faults stopped
// at healed, up to limit, and returns how long that took. What is still
// wrong at healed+deadline is a violation: global units missing of
// invGlobalMissing, anything else of invConverge.
func (c *checker) waitConverged(ctx context.Context, healed time.Time, deadline, limit time.Duration) (time.Duration, error) {
	judged := false
	var last []string
	var lastErr error
	for {
		problems, globals, err := c.converged(ctx, healed)
		now := time.Now()
		if err == nil && len(problems) == 0 && len(globals) == 0 {
			return now.Sub(healed), nil
		}
		if err != nil {
			lastErr = err
		} else {
			last, lastErr = append(problems, globals...), nil
		}
		if !judged && now.Sub(healed) > deadline {
			judged = true
			if err != nil {
				c.violate(invConverge, "not known to be converged %s after the faults stopped: %v", deadline, err)
			}
			for _, p := range problems {
				c.violate(invConverge, "%s after the faults stopped: %s", deadline, p)
			}
			for _, g := range globals {
				c.violate(invGlobalMissing, "%s after the faults stopped: %s", deadline, g)
			}
		}
		if now.Sub(healed) > limit {
			if lastErr != nil {
				return now.Sub(healed), fmt.Errorf("not converged %s after the faults stopped: %v; then %w", limit, last, lastErr)
			}
			return now.Sub(healed), fmt.Errorf("not converged %s after the faults stopped: %v", limit, last)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(chaosSampleEvery):
		}
	}
}

// samplePeriod returns the mean time between systemd samples: a sample of
// every host takes as long as the slowest systemctl.
func (c *checker) samplePeriod() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples < 2 {
		return 0
	}
	return c.sampledAt.Sub(c.firstAt) / time.Duration(c.samples-1)
}

// summary returns the violations by invariant and their total.
func (c *checker) summary() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	total := 0
	for _, inv := range invariants {
		fmt.Fprintf(&b, " %s=%d", inv, c.counts[inv])
		total += c.counts[inv]
	}
	for _, inv := range invariants {
		for _, ex := range c.examples[inv] {
			fmt.Fprintf(&b, "\n    %s: %s", inv, ex)
		}
	}
	return b.String(), total
}
