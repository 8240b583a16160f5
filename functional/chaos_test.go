package functional

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// The chaos run: 5 hosts, a 3-member etcd and 50 units of every kind, then
// rounds of random faults drawn from a seeded source, each with an
// operator's actions amid them (drain, undrain, mv, fleetctl reboot, a
// rolling update: chaos_ops_test.go), while every host's
// own systemd is sampled every 200 ms and checked against the invariants
// (chaos_check_test.go). `make test` runs a short, fixed-seed run; `make
// chaos` a long one. Replay a run with its seed:
//
//	FLEET_CHAOS_SEED=<seed> FLEET_CHAOS_ROUNDS=<n> go test ./functional/ -run '^TestChaos$' -v -count=1
//
// or with -seed and -rounds (go test ./functional/ -run '^TestChaos$' -args
// -seed=<seed> -rounds=<n>). FLEET_CHAOS_SEED=random draws a seed (printed).
// FLEET_CHAOS_ETCD_OUTAGE (default 6s) is how long etcd-stop-all lasts,
// FLEET_CHAOS_TTL (default 5s) every fleetd's agent_ttl, and
// FLEET_CHAOS_FAULTS=kind,kind,... limits the faults to some kinds. The same
// seed replays the same faults on the same targets for the same times;
// what fleet does in between is the machine's timing.

var (
	chaosSeed   = flag.String("seed", "", "TestChaos: seed of the faults (a number, or random); default $FLEET_CHAOS_SEED, else "+strconv.FormatUint(chaosDefaultSeed, 10))
	chaosRounds = flag.Int("rounds", 0, "TestChaos: rounds of faults; default $FLEET_CHAOS_ROUNDS, else "+strconv.Itoa(chaosDefaultRounds))
)

const (
	// chaosDefaultSeed and chaosDefaultRounds make the run in `make test`:
	// the same faults every time, each kind once, and a daemon-reexec in
	// the first round with a host killed, so that the re-executed host's
	// agent has units to start at once.
	chaosDefaultSeed   = 18
	chaosDefaultRounds = 4
	// chaosFaultsPerRound faults overlap in every round.
	chaosFaultsPerRound = 2
	// chaosHosts is the size of the cluster.
	chaosHosts = 5
	// chaosTTL is every fleetd's agent_ttl unless FLEET_CHAOS_TTL says
	// otherwise: the TTL of the partition figures. With the 3 s of
	// the other groups, an etcd leader election plus the client's failover
	// (about 1.6 s here) outlasts TTL/2, so every agent whose renewal it
	// delays stops its AtMostOnce units and starts them again: it cannot
	// tell an election from a cut (FLEET_CHAOS_TTL=3s shows it).
	chaosTTL = 5 * time.Second
	// chaosConvergeLimit bounds the wait for convergence after a round; past
	// agent_ttl+2s it is a violation already, the rest measures.
	chaosConvergeLimit = 30 * time.Second
)

// Fault kinds, in the order a round injects them: those that need the
// engine leader or a fleetd first, then those that last, whole-etcd last.
const (
	faultLeaderKill     = "leader-kill"      // kill -9 the engine leader's fleetd
	faultFleetdKill     = "fleetd-kill"      // kill -9 a fleetd
	faultFleetdRestart  = "fleetd-restart"   // systemctl restart fleet
	faultReexec         = "daemon-reexec"    // systemctl daemon-reexec
	faultHostKill       = "host-kill"        // power a host off, boot it again later
	faultPartition      = "partition"        // cut a host's link, heal it later
	faultEtcdMemberKill = "etcd-member-kill" // kill -9 an etcd member, start it later
	faultEtcdStop       = "etcd-stop-all"    // stop every etcd member, start them later
)

var faultKinds = []string{faultLeaderKill, faultFleetdKill, faultFleetdRestart, faultReexec,
	faultHostKill, faultPartition, faultEtcdMemberKill, faultEtcdStop}

// chaosConfig is one run's parameters.
type chaosConfig struct {
	seed       uint64
	rounds     int
	etcdOutage time.Duration // how long etcd-stop-all keeps etcd down
	kinds      []string      // the fault kinds drawn from
	ttl        time.Duration // every fleetd's agent_ttl
}

// chaosConfigFromEnv reads the flags, else the environment, else the
// defaults.
func chaosConfigFromEnv() (chaosConfig, error) {
	cfg := chaosConfig{seed: chaosDefaultSeed, rounds: chaosDefaultRounds, etcdOutage: 6 * time.Second, kinds: faultKinds, ttl: chaosTTL}
	seed := *chaosSeed
	if seed == "" {
		seed = os.Getenv("FLEET_CHAOS_SEED")
	}
	switch seed {
	case "":
	case "random":
		cfg.seed = rand.Uint64() % 1e9 // short enough to type back
	default:
		n, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			return cfg, fmt.Errorf("chaos seed %q: want a number or random", seed)
		}
		cfg.seed = n
	}
	cfg.rounds = *chaosRounds
	if cfg.rounds == 0 {
		if r := os.Getenv("FLEET_CHAOS_ROUNDS"); r != "" {
			n, err := strconv.Atoi(r)
			if err != nil || n < 1 {
				return cfg, fmt.Errorf("FLEET_CHAOS_ROUNDS=%q: want a number of rounds, at least 1", r)
			}
			cfg.rounds = n
		} else {
			cfg.rounds = chaosDefaultRounds
		}
	}
	if d := os.Getenv("FLEET_CHAOS_ETCD_OUTAGE"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil || v <= 0 {
			return cfg, fmt.Errorf("FLEET_CHAOS_ETCD_OUTAGE=%q: want a duration such as 20s", d)
		}
		cfg.etcdOutage = v
	}
	if d := os.Getenv("FLEET_CHAOS_TTL"); d != "" {
		// The at-most-once policy trades restarts for safety as the TTL
		// shrinks: try it at other TTLs.
		v, err := time.ParseDuration(d)
		if err != nil || v < 2*time.Second {
			return cfg, fmt.Errorf("FLEET_CHAOS_TTL=%q: want agent_ttl as a duration of at least 2s (fleetd's minimum)", d)
		}
		cfg.ttl = v
	}
	if f := os.Getenv("FLEET_CHAOS_FAULTS"); f != "" {
		// To chase one kind of failure: FLEET_CHAOS_FAULTS=partition,host-kill.
		cfg.kinds = nil
		for _, k := range strings.Split(f, ",") {
			if !slices.Contains(faultKinds, k) {
				return cfg, fmt.Errorf("FLEET_CHAOS_FAULTS: unknown fault %q; known: %s", k, strings.Join(faultKinds, ","))
			}
			cfg.kinds = append(cfg.kinds, k)
		}
		if len(cfg.kinds) < chaosFaultsPerRound {
			return cfg, fmt.Errorf("FLEET_CHAOS_FAULTS: want at least %d kinds, one per fault of a round", chaosFaultsPerRound)
		}
	}
	return cfg, nil
}

// chaosUnits are the 50 units of the run, with their bodies: plain,
// global, pinned (template instances naming their machine), MachineOf
// pairs, Conflicts, template instances and AtMostOnce. Templates have a
// body and no chaosUnit; their instances have a chaosUnit and no body.
func chaosUnits(machineIDs []string) ([]chaosUnit, map[string]string) {
	const service = "[Unit]\nDescription=chaos\n[Service]\nExecStart=/bin/sleep infinity\n"
	var units []chaosUnit
	files := map[string]string{}
	add := func(name, xfleet string, u chaosUnit) {
		u.name = name
		units = append(units, u)
		if !strings.Contains(name, "@") {
			files[name] = service + "[X-Fleet]\n" + xfleet
		}
	}
	for i := 1; i <= 14; i++ {
		add(fmt.Sprintf("chaos-plain-%02d.service", i), "", chaosUnit{})
	}
	for i := 1; i <= 3; i++ {
		add(fmt.Sprintf("chaos-global-%d.service", i), "Global=true\n", chaosUnit{global: true})
	}
	files["chaos-pinned@.service"] = service + "[X-Fleet]\nMachineID=%i\n"
	for _, id := range machineIDs {
		add("chaos-pinned@"+id+".service", "", chaosUnit{})
	}
	for i := 1; i <= 5; i++ {
		ping := fmt.Sprintf("chaos-ping-%d.service", i)
		add(ping, "", chaosUnit{})
		add(fmt.Sprintf("chaos-pong-%d.service", i), "MachineOf="+ping+"\n", chaosUnit{})
	}
	// Three, not five: with one host drained by the operator and another
	// draining for a reboot, every copy still has a host of its own.
	for i := 1; i <= 3; i++ {
		add(fmt.Sprintf("chaos-conflict-%d.service", i), "Conflicts=chaos-conflict-*.service\n", chaosUnit{})
	}
	files["chaos-tmpl@.service"] = service
	for i := 1; i <= 8; i++ {
		add(fmt.Sprintf("chaos-tmpl@%d.service", i), "", chaosUnit{})
	}
	for i := 1; i <= 7; i++ {
		add(fmt.Sprintf("chaos-amo-%d.service", i), "AtMostOnce=true\n", chaosUnit{atMostOnce: true})
	}
	return units, files
}

// TestChaos is the chaos run (see the top of this file). It fails if any
// invariant was violated, printing the seed to replay it.
func TestChaos(t *testing.T) {
	cfg, err := chaosConfigFromEnv()
	require.NoError(t, err)
	conf := maps.Clone(chaosRebootConf)
	conf["agent_ttl"] = fmt.Sprint(cfg.ttl.Seconds())
	e := boot(t, spec{hosts: chaosHosts, etcd: etcdCluster, docker: dockerShared, conf: conf})
	ctx := e.ctx
	hs := e.Hosts()
	var ids []string
	for _, h := range hs {
		ids = append(ids, h.MachineID)
	}
	units, files := chaosUnits(ids)
	require.Len(t, units, 50)
	obs := hs[0]
	dir := "/root/chaos"
	require.NoError(t, os.MkdirAll(obs.Path(dir), 0o755))
	for name, body := range files {
		require.NoError(t, os.WriteFile(obs.Path(filepath.Join(dir, name)), []byte(body), 0o644))
	}
	args := []string{"start", "--no-block"}
	for _, u := range units {
		args = append(args, filepath.Join(dir, u.name))
	}
	e.fleetctl(t, obs, args...)

	c := newChecker(t, e, units)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.run(sctx); close(done) }()
	halt := sync.OnceFunc(func() { stop(); <-done }) // no sample may log once the test is over
	defer halt()

	start := time.Now()
	took, err := c.waitConverged(ctx, start, chaosConvergeLimit, chaosConvergeLimit)
	require.NoError(t, err, "the 50 units never ran where fleet placed them")
	t.Logf("chaos: seed %d, %d rounds; 50 units converged %.1fs after fleetctl start", cfg.seed, cfg.rounds, took.Seconds())

	r := &chaosRunner{e: e, c: c, cfg: cfg, faults: map[string]int{},
		// The kinds of faults come from a stream of their own, so that a
		// seed's schedule does not depend on how many hosts were free.
		kinds: rand.New(rand.NewPCG(cfg.seed, 0x5eed)),
		rng:   rand.New(rand.NewPCG(cfg.seed, 0xfa17)),
		// And so do the kinds of operations.
		opKinds: rand.New(rand.NewPCG(cfg.seed, chaosOpsStream)),
		ops:     rand.New(rand.NewPCG(cfg.seed, 0x0905))}
	r.op = &chaosOps{r: r, counts: map[string]int{}}
	deadline := cfg.ttl + 2*time.Second
	var worst time.Duration
	worstRound, rounds := 0, 0
	// The summary comes out however the run ends, a failed fault included.
	defer func() {
		halt()
		var kinds []string
		for _, k := range faultKinds {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, r.faults[k]))
		}
		for _, k := range append(slices.Clone(opKinds), opUndrain) {
			kinds = append(kinds, fmt.Sprintf("op-%s=%d", k, r.op.counts[k]))
		}
		violations, total := c.summary()
		fmt.Printf("chaos summary: seed=%d rounds=%d/%d hosts=%d units=%d agent_ttl=%s samples=%d (every %s)\n"+
			"  faults and operations: %s\n"+
			"  violations (%d):%s\n"+
			"  worst convergence: %.2fs (round %d; limit agent_ttl+2s = %s); longest AtMostOnce unit on two hosts: %.2fs\n"+
			"  fleet listings with a machine draining, drained or rebooting: %d of %d\n"+
			"  replay: FLEET_CHAOS_SEED=%d FLEET_CHAOS_ROUNDS=%d FLEET_CHAOS_ETCD_OUTAGE=%s FLEET_CHAOS_TTL=%s FLEET_CHAOS_FAULTS=%s go test ./functional/ -run '^TestChaos$' -v -count=1\n",
			cfg.seed, rounds, cfg.rounds, chaosHosts, len(units), cfg.ttl, c.samples, c.samplePeriod().Round(time.Millisecond),
			strings.Join(kinds, " "), total, violations, worst.Seconds(), worstRound, deadline, c.worstTwice.Seconds(), c.drainListings, c.listings,
			cfg.seed, cfg.rounds, cfg.etcdOutage, cfg.ttl, strings.Join(cfg.kinds, ","))
		figure(t, "chaos: worst convergence after faults", worst, fmt.Sprintf("seed %d, %d rounds, %d violations", cfg.seed, rounds, total))
		if total > 0 {
			t.Errorf("%d invariant violations; replay with FLEET_CHAOS_SEED=%d FLEET_CHAOS_ROUNDS=%d", total, cfg.seed, cfg.rounds)
		}
	}()
	for n := 1; n <= cfg.rounds; n++ {
		rounds = n
		began := time.Now()
		healed, what := r.round(t, n)
		took, err := c.waitConverged(ctx, healed, deadline, chaosConvergeLimit)
		left := c.endRound()
		t.Logf("chaos round %d (%s-%s UTC): %s; machines that left: %v; converged in %.2fs", n,
			began.UTC().Format("15:04:05"), healed.UTC().Format("15:04:05"), what, left, took.Seconds())
		if took > worst {
			worst, worstRound = took, n
		}
		if err != nil {
			// Later rounds would only measure the same breakage again.
			t.Errorf("round %d: %v; stopping the run", n, err)
			return
		}
	}
	// The run settles: what it drained is undrained, and fleet must say so,
	// with no reboot slot held and every unit where fleet says.
	settled := time.Now()
	r.op.settle(t)
	took, err = c.waitConverged(ctx, settled, deadline, chaosConvergeLimit)
	t.Logf("chaos: settled (every host undrained) and converged in %.2fs", took.Seconds())
	if err != nil {
		t.Errorf("after the run settled: %v", err)
	}
}

// chaosRunner draws and injects the faults.
type chaosRunner struct {
	e       *env
	c       *checker
	cfg     chaosConfig
	kinds   *rand.Rand // shuffles the decks of fault kinds
	rng     *rand.Rand // draws targets and durations
	opKinds *rand.Rand // shuffles the decks of operation kinds
	ops     *rand.Rand // draws operations' targets and times
	op      *chaosOps
	deck    []string // fault kinds left to draw; every kind comes once per deck
	faults  map[string]int
}

// draw takes n distinct kinds from the deck, shuffling a new one when it
// runs out, so that every kind comes up as often as any other.
func (r *chaosRunner) draw(n int) []string {
	var out []string
	for len(out) < n {
		if len(r.deck) == 0 {
			r.deck = slices.Clone(r.cfg.kinds)
			r.kinds.Shuffle(len(r.deck), func(i, j int) { r.deck[i], r.deck[j] = r.deck[j], r.deck[i] })
		}
		k := r.deck[0]
		r.deck = r.deck[1:]
		if slices.Contains(out, k) {
			r.deck = append(r.deck, k) // drawn next time
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(faultKinds, a) - slices.Index(faultKinds, b) })
	return out
}

// between returns a duration drawn uniformly in [lo, hi].
func (r *chaosRunner) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)+1))
}

// pick returns a host not busy this round, drawn at random, and marks it
// busy.
func (r *chaosRunner) pick(t *testing.T, busy map[*hosts.Host]bool) *hosts.Host {
	t.Helper()
	var free []*hosts.Host
	for _, h := range r.e.Hosts() {
		if !busy[h] && h.Leader() != 0 {
			free = append(free, h)
		}
	}
	require.NotEmpty(t, free, "no host left to fault")
	h := free[r.rng.IntN(len(free))]
	busy[h] = true
	return h
}

// round injects one round's faults, keeps those that last for their time,
// undoes them, and returns when the last fault stopped and what it did.
func (r *chaosRunner) round(t *testing.T, n int) (time.Time, string) {
	t.Helper()
	ctx := r.e.ctx
	r.c.startRound(n)
	busy := map[*hosts.Host]bool{}
	type heal struct {
		after time.Duration // from the end of the injections
		do    func()
	}
	var heals []heal
	var what []string
	// The operator's hosts first: no fault takes them (but leader-kill,
	// whose host is the engine leader's).
	ops := r.op.plan(busy)
	for _, p := range ops {
		what = append(what, "op "+p.desc)
	}
	for _, kind := range r.draw(chaosFaultsPerRound) {
		r.faults[kind]++
		switch kind {
		case faultLeaderKill:
			// Right after a round that killed one, the next leader may
			// not be elected yet.
			var id string
			var err error
			require.NoError(t, platform.Wait(ctx, 15*time.Second, func() bool {
				id, err = r.e.engineLeaderID(ctx)
				return err == nil && id != ""
			}), "no engine leader: %v", err)
			h := r.e.byID(t, id)
			busy[h] = true // the first fault of a round: no other took it
			require.NoError(t, r.e.KillFleet(ctx, h))
			what = append(what, kind+" "+h.Name)
		case faultFleetdKill:
			h := r.pick(t, busy)
			require.NoError(t, r.e.KillFleet(ctx, h))
			what = append(what, kind+" "+h.Name)
		case faultFleetdRestart:
			h := r.pick(t, busy)
			require.NoError(t, r.e.RestartFleet(ctx, h))
			what = append(what, kind+" "+h.Name)
		case faultReexec:
			h := r.pick(t, busy)
			r.e.sh(t, h, "systemctl", "daemon-reexec")
			what = append(what, kind+" "+h.Name)
		case faultHostKill:
			h := r.pick(t, busy)
			d := r.between(time.Second, 2*r.cfg.ttl)
			r.c.hostLeaves(h)
			require.NoError(t, h.Kill())
			heals = append(heals, heal{d, func() { r.reboot(t, h) }})
			what = append(what, fmt.Sprintf("%s %s for %s", kind, h.Name, d.Round(time.Millisecond)))
		case faultPartition:
			h := r.pick(t, busy)
			d := r.between(time.Second, 2*r.cfg.ttl+3*time.Second)
			r.c.hostLeaves(h)
			require.NoError(t, h.Disconnect(ctx))
			heals = append(heals, heal{d, func() { require.NoError(t, h.Reconnect(ctx)) }})
			what = append(what, fmt.Sprintf("%s %s for %s", kind, h.Name, d.Round(time.Millisecond)))
		case faultEtcdMemberKill:
			// The seed says whether the raft leader dies (an election) or
			// a follower, so that a replay does the same.
			leader := r.rng.IntN(2) == 0
			var ms []*hosts.EtcdMember
			for _, m := range r.e.Etcd() {
				if m.IsLeader(ctx) == leader {
					ms = append(ms, m)
				}
			}
			require.NotEmpty(t, ms, "no etcd member is leader=%v", leader)
			m := ms[r.rng.IntN(len(ms))]
			d := r.between(2*time.Second, 6*time.Second)
			require.NoError(t, m.Kill())
			heals = append(heals, heal{d, func() {
				require.NoError(t, m.Start(ctx))
				// With the others stopped too (etcd-stop-all in the same
				// round), it has no quorum until they are back.
				if !slices.ContainsFunc(r.e.Etcd(), func(o *hosts.EtcdMember) bool { return !o.Running() }) {
					require.NoError(t, r.e.WaitEtcd(ctx))
				}
			}})
			role := map[bool]string{true: "leader", false: "follower"}[leader]
			what = append(what, fmt.Sprintf("%s %s (%s) for %s", kind, m.Name, role, d.Round(time.Millisecond)))
		case faultEtcdStop:
			r.c.etcdDown()
			require.NoError(t, r.e.StopEtcd(ctx))
			heals = append(heals, heal{r.cfg.etcdOutage, func() { require.NoError(t, r.e.StartEtcd(ctx)) }})
			what = append(what, fmt.Sprintf("%s for %s", kind, r.cfg.etcdOutage))
		}
	}
	// Each fault that lasts is undone after its own time, the shortest
	// first.
	injected := time.Now()
	opsDone := make(chan struct{})
	go func() { defer close(opsDone); r.op.run(t, injected, ops) }()
	slices.SortStableFunc(heals, func(a, b heal) int { return cmp.Compare(a.after, b.after) })
	for _, h := range heals {
		time.Sleep(time.Until(injected.Add(h.after)))
		h.do()
	}
	<-opsDone // a reboot back, a rollout over
	return time.Now(), strings.Join(what, ", ")
}

// reboot boots a killed host again, as a reimaged machine with the same
// name, address and machine ID, and installs fleet on it again.
func (r *chaosRunner) reboot(t *testing.T, h *hosts.Host) {
	t.Helper()
	require.NoError(t, h.Restart(r.e.ctx))
	conf := r.e.FleetConf(h)
	maps.Copy(conf, r.e.conf)
	require.NoError(t, r.e.InstallFleet(r.e.ctx, h, conf))
}
