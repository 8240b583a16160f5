package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// ScaleResult holds every figure of one cluster-scale run. Durations are
// zero, and Notes say why, where a phase did not run or did not finish.
type ScaleResult struct {
	Workload   Workload
	NoFsync    bool
	Placements int // expected (machine, unit) pairs of the bulk

	// Machines.
	RegisterTime time.Duration // all machines registered and agents running
	// Idle load of the machines' presence: keepalives etcd received per
	// second, and CPU used meanwhile by etcd and by the simulated machines.
	KeepalivesPerSec float64
	IdleEtcdCPU      float64 // fraction of one core
	IdleMachinesCPU  float64 // fraction of one core, all machines together

	// Bulk: every unit submitted at once through the API's client code.
	SubmitTime       time.Duration // last CreateUnit returned
	Placed           int           // placements seen written
	Launched         int           // (machine, unit) pairs published active
	BulkDone         bool
	PlacementsPerSec float64       // placements / (last placement write - first submission)
	AllLaunched      time.Duration // first submission -> last unit active
	EngineCPUBulk    time.Duration
	EtcdCPUBulk      time.Duration
	MachinesCPUBulk  time.Duration
	BulkEtcdReqs     float64 // unary etcd requests per placement, everyone
	BulkAgentReqs    float64 // of which by agents
	BulkEngineReqs   float64 // of which by the engine (total - agents - submitter)
	BulkWakeups      float64 // agent wake-ups per placement (batches; several units may share one)
	BulkFsyncs       float64 // etcd WAL fsyncs during the bulk
	BulkFsyncMean    time.Duration
	BulkTxnOps       float64 // etcd requests per second during the bulk
	// From the engines' logs: plans written during the bulk, their mean
	// size and the mean time each took (plan and write).
	BulkPlans      int
	BulkOpsPerPlan float64
	BulkPlanTime   time.Duration

	// Probes: one unit at a time on the steady cluster.
	ProbeAgentsWoken []int // per probe: how many agents woke up
	ProbeWakeups     float64
	ProbeEtcdReqs    float64
	ProbeAgentReqs   float64
	ProbeEngineReqs  float64
	ProbeSubmitReqs  float64
	ProbeLatency     []time.Duration // submit -> active, per probe

	// fleetctl, in process, over the HTTP API.
	Lists []ListResult

	// Backlog: units submitted while no engine runs, then one engine
	// started: the engine's own placement rate, apart from submission.
	BacklogUnits     int
	BacklogFirst     time.Duration // engine start -> first placement written
	BacklogPlaceRate float64       // placements/s, first to last placement written
	BacklogAllPlaced time.Duration // engine start -> last placement written
	BacklogDone      bool
	BacklogEngineCPU time.Duration // the new engine's, start to last placement
	BacklogEtcdCPU   time.Duration // meanwhile
	BacklogOtherCPU  time.Duration // this process's meanwhile (machines, benchmark)

	// Failover.
	Killed       int
	Moved        int           // units that had to move
	FailoverTime time.Duration // kill -> all of them active elsewhere
	FailoverDone bool

	// Leader takeover.
	TakeoverElected time.Duration // SIGKILL of the leader -> other engine leads
	TakeoverPlaced  time.Duration // SIGKILL -> first placement by the new leader
	TakeoverAll     time.Duration // SIGKILL -> all units submitted with it active
	TakeoverUnits   int
	TakeoverDone    bool

	// Resources at the end.
	EngineCPU       time.Duration // every engine process, whole run
	EnginePeakRSS   int64         // the largest engine process
	EtcdCPU         time.Duration
	EtcdPeakRSS     int64
	EtcdDBSize      int64
	EtcdDBInUse     int64
	MachinesCPU     time.Duration // this process: the simulated machines and the benchmark
	MachinesPeakRSS int64
	PresenceLost    int64 // machines whose lease was lost without being killed
	Elapsed         time.Duration

	Notes []string
}

func (r *ScaleResult) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// RunScale runs one cluster-scale workload in dir (etcd's data and the
// processes' logs go there) and returns its figures. An error means the
// cluster could not be set up; a phase that fails or times out is reported
// in the result's Notes, and the phases that depend on it are skipped.
func RunScale(ctx context.Context, w Workload, dir string, noFsync bool, log *slog.Logger) (*ScaleResult, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the observer's watches
	defer cancel()
	start := time.Now()
	r := &ScaleResult{Workload: w, NoFsync: noFsync, Placements: expectedPlacements(w.Units, w.Machines)}
	c, err := startCluster(ctx, dir, w.ProfileDir, noFsync, log)
	if err != nil {
		return nil, err
	}
	defer c.close()

	// Machines.
	log.Info("registering machines", "machines", w.Machines)
	t := time.Now()
	if err := c.addMachines(ctx, w.Machines, w.OwnClients, w.AgentTTL); err != nil {
		return nil, fmt.Errorf("register machines: %w", err)
	}
	r.RegisterTime = time.Since(t)
	log.Info("machines registered", "took", r.RegisterTime.Round(time.Millisecond))

	// Idle: only the machines' keepalives.
	if w.IdleWindow <= 0 {
		w.IdleWindow = 5 * time.Second
	}
	if err := r.idle(ctx, c, w.IdleWindow); err != nil {
		return nil, err
	}

	// Engines: two candidates, as on two fleetd machines.
	for _, id := range []string{"engine-a", "engine-b"} {
		if err := c.startEngine(ctx, id, w.LeaderTTL); err != nil {
			return nil, err
		}
	}
	if _, err := c.waitLeader(ctx, "", 30*time.Second); err != nil {
		return nil, err
	}

	rev, err := c.revision(ctx)
	if err != nil {
		return nil, err
	}
	obs := observe(ctx, c.reg, rev)

	r.phase(c, "bulk", func() {
		if r.bulk(ctx, c, obs, log) {
			r.probes(ctx, c, obs, log)
		}
	})
	if !r.BulkDone {
		// An engine still working through the backlog would take a core
		// from everything measured next.
		for _, e := range c.engines {
			if st, err := readProc(e.pid()); err == nil {
				if c.deadEngineCPU == nil {
					c.deadEngineCPU = map[*child]procStat{}
				}
				c.deadEngineCPU[e] = st
			}
			e.stop()
		}
		r.note("the engines were stopped when the bulk missed its deadline, so that the fleetctl timings below are not taken on a busy machine")
		if n, err := c.seedStates(ctx, mix(w.Units, w.Machines)); err != nil {
			r.note("publishing states for the fleetctl timings: %v", err)
		} else {
			r.note("for the fleetctl timings, %d unit states (active/running) were published straight through the simulated machines' presences, since the engine had not placed the units: list-units lists that many rows, as it would have", n)
		}
	}
	if r.BulkDone {
		r.phase(c, "failover", func() { r.failover(ctx, c, obs, log) })
		r.phase(c, "leader takeover", func() { r.takeover(ctx, c, obs, log) })
		r.phase(c, "backlog", func() { r.backlog(ctx, c, obs, log) })
	} else {
		r.note("failover, leader takeover and the backlog not measured: the bulk placement did not finish")
	}
	// Last: a slow listing loads etcd and this process for a long time.
	r.phase(c, "fleetctl timings", func() { r.Lists = measureLists(ctx, c, w.ListRuns, log) })

	// Resources.
	for _, e := range c.engines {
		st, ok := c.deadEngineCPU[e]
		if e.alive() {
			var err error
			st, err = readProc(e.pid())
			ok = err == nil
		}
		if ok {
			r.EngineCPU += st.CPU
			r.EnginePeakRSS = max(r.EnginePeakRSS, st.PeakRSS)
		}
	}
	if st, err := readProc(c.etcd.pid()); err == nil {
		r.EtcdCPU, r.EtcdPeakRSS = st.CPU, st.PeakRSS
	}
	if st, err := readProc(0); err == nil {
		r.MachinesCPU, r.MachinesPeakRSS = st.CPU, st.PeakRSS
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if s, err := c.driverCli.Status(sctx, c.endpoints[0]); err == nil {
		r.EtcdDBSize, r.EtcdDBInUse = s.DbSize, s.DbSizeInUse
	}
	cancel()
	r.PresenceLost = c.presencesLost()
	obs.mu.Lock()
	for _, err := range obs.errs {
		r.note("observer: %v", err)
	}
	obs.mu.Unlock()
	r.Elapsed = time.Since(start)
	return r, nil
}

// revision returns etcd's current revision.
func (c *cluster) revision(ctx context.Context) (int64, error) {
	resp, err := c.driverCli.Get(ctx, "/_coreos.com/fleet/engine/version")
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// idle measures the presence load of the registered machines for d.
func (r *ScaleResult) idle(ctx context.Context, c *cluster, d time.Duration) error {
	m0, err := scrapeEtcd(ctx, c.metricsURL)
	if err != nil {
		return err
	}
	e0, _ := readProc(c.etcd.pid())
	s0, _ := readProc(0)
	t := time.Now()
	sleepCtx(ctx, d)
	m1, err := scrapeEtcd(ctx, c.metricsURL)
	if err != nil {
		return err
	}
	e1, _ := readProc(c.etcd.pid())
	s1, _ := readProc(0)
	el := time.Since(t)
	r.KeepalivesPerSec = m1.sub(m0).StreamMsgs["LeaseKeepAlive"] / el.Seconds()
	r.IdleEtcdCPU = (e1.CPU - e0.CPU).Seconds() / el.Seconds()
	r.IdleMachinesCPU = (s1.CPU - s0.CPU).Seconds() / el.Seconds()
	return nil
}

// submit creates units through the API's registry client's batch create
// (api.UnitBatcher, what fleetctl runs: 63 units to an etcd transaction),
// workers transactions at a time. Templates go first, one by one.
func submit(ctx context.Context, c *cluster, units []benchUnit, workers int) error {
	cl := api.NewRegistryClient(c.reg)
	wire := func(u benchUnit) (*api.Unit, error) {
		wu := &api.Unit{Name: u.Name, DesiredState: "inactive"}
		if u.Launched {
			wu.DesiredState = "launched"
		}
		if u.Body != "" {
			f, err := unit.ParseString(u.Body)
			if err != nil {
				return nil, fmt.Errorf("unit %s: %w", u.Name, err)
			}
			wu.Options = api.OptionsFromFile(f)
		}
		return wu, nil
	}
	i := 0
	for ; i < len(units) && !units[i].Launched; i++ {
		wu, err := wire(units[i])
		if err != nil {
			return err
		}
		if _, err := cl.CreateUnit(ctx, wu); err != nil {
			return err
		}
	}
	var chunks [][]benchUnit
	for rest := units[i:]; len(rest) > 0; {
		n := min(len(rest), 63)
		chunks, rest = append(chunks, rest[:n]), rest[n:]
	}
	bc := cl.(api.UnitBatcher)
	return forEach(chunks, workers, func(chunk []benchUnit) error {
		wus := make([]*api.Unit, len(chunk))
		for j, u := range chunk {
			var err error
			if wus[j], err = wire(u); err != nil {
				return err
			}
		}
		for _, r := range bc.CreateUnits(ctx, wus) {
			if r.Err != nil {
				return r.Err
			}
		}
		return nil
	})
}

// submitTxns is how many batch-create transactions the benchmark keeps in
// flight: as many as one fleetctl command (registry.CreateUnits).
const submitTxns = 2

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// bulk submits the whole mix at once and waits for it to be placed and
// launched. It reports whether it all was.
func (r *ScaleResult) bulk(ctx context.Context, c *cluster, obs *observer, log *slog.Logger) bool {
	w := r.Workload
	units := mix(w.Units, w.Machines)
	m0, err := scrapeEtcd(ctx, c.metricsURL)
	if err != nil {
		r.note("bulk: %v", err)
		return false
	}
	a0, d0 := c.agentReqs.snapshot(), c.driverReqs.snapshot()
	eng0, etcd0, self0 := c.enginesCPU(), procCPU(c.etcd.pid()), procCPU(0)
	wk0 := sum(c.wakeups())

	log.Info("submitting", "units", w.Units, "placements", r.Placements)
	t0 := time.Now()
	done := make(chan error, 1)
	sctx, stopSubmit := context.WithCancel(ctx) // ended at the deadline
	defer stopSubmit()
	prof, err := c.startProfiles()
	if err != nil {
		r.note("bulk: %v", err)
	}
	defer prof.stop()
	go labelled(sctx, "submit", func(sctx context.Context) { done <- submit(sctx, c, units, submitTxns) })
	all := func(o *observer) bool { return o.active >= r.Placements && o.placements >= r.Placements }
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	deadline := t0.Add(w.Deadline)
	submitted := false
	for !r.BulkDone && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case err := <-done:
			r.SubmitTime = time.Since(t0)
			submitted = true
			if err != nil {
				r.note("bulk submission failed: %v", err)
				return false
			}
			log.Info("submitted", "took", r.SubmitTime.Round(time.Millisecond))
		case <-progress.C:
			obs.mu.Lock()
			log.Info("bulk progress", "placed", obs.placements, "active", obs.active, "of", r.Placements, "elapsed", time.Since(t0).Round(time.Second))
			obs.mu.Unlock()
		case <-time.After(20 * time.Millisecond):
		}
		r.BulkDone = submitted && obs.waitFor(ctx, 0, all)
	}
	obs.mu.Lock()
	r.Placed, r.Launched = obs.placements, obs.active
	lastPut, activeAt, puts := obs.lastPut, obs.activeAt, obs.puts
	obs.mu.Unlock()
	if !submitted {
		r.note("bulk submission had not finished after %s; it was abandoned there", w.Deadline)
		stopSubmit()
		<-done
	}
	prof.stop()
	m1, _ := scrapeEtcd(ctx, c.metricsURL)
	a1, d1 := c.agentReqs.snapshot(), c.driverReqs.snapshot()
	r.EngineCPUBulk, r.EtcdCPUBulk, r.MachinesCPUBulk = c.enginesCPU()-eng0, procCPU(c.etcd.pid())-etcd0, procCPU(0)-self0
	if !r.BulkDone {
		r.BulkPlans, r.BulkOpsPerPlan, r.BulkPlanTime = c.planStats(t0, time.Now())
		r.note("bulk: after %s only %d of %d placements were written and %d launched", w.Deadline, r.Placed, r.Placements, r.Launched)
		if r.Placed > 0 {
			r.PlacementsPerSec = float64(r.Placed) / lastPut.Sub(t0).Seconds()
		}
		return false
	}
	r.PlacementsPerSec = float64(r.Placements) / lastPut.Sub(t0).Seconds()
	r.AllLaunched = activeAt.Sub(t0)
	n := float64(r.Placements)
	srv := m1.sub(m0).unaryTotal()
	agents, driver := float64(total(diff(a1, a0))), float64(total(diff(d1, d0)))
	r.BulkEtcdReqs, r.BulkAgentReqs, r.BulkEngineReqs = srv/n, agents/n, (srv-agents-driver)/n
	r.BulkWakeups = float64(sum(c.wakeups())-wk0) / n
	dm := m1.sub(m0)
	r.BulkFsyncs = dm.Fsyncs
	if dm.Fsyncs > 0 {
		r.BulkFsyncMean = time.Duration(dm.FsyncSeconds / dm.Fsyncs * float64(time.Second))
	}
	r.BulkTxnOps = srv / activeAt.Sub(t0).Seconds()
	r.BulkPlans, r.BulkOpsPerPlan, r.BulkPlanTime = c.planStats(t0, activeAt)
	log.Info("bulk done", "placements_per_s", int(r.PlacementsPerSec), "all_launched", r.AllLaunched.Round(time.Millisecond), "placement_writes", puts)
	return true
}

func sum(xs []uint64) uint64 {
	t := uint64(0)
	for _, x := range xs {
		t += x
	}
	return t
}

func procCPU(pid int) time.Duration {
	st, _ := readProc(pid)
	return st.CPU
}

// enginesCPU is the CPU time of every engine process still running.
func (c *cluster) enginesCPU() time.Duration {
	t := time.Duration(0)
	for _, e := range c.engines {
		if e.alive() {
			t += procCPU(e.pid())
		}
	}
	return t
}

// probes places single units one at a time on the steady cluster and counts
// what each placement costs: which agents woke up, and etcd requests.
func (r *ScaleResult) probes(ctx context.Context, c *cluster, obs *observer, log *slog.Logger) {
	w := r.Workload
	cl := api.NewRegistryClient(c.reg)
	sleepCtx(ctx, time.Second) // let the bulk's last batches settle
	m0, err := scrapeEtcd(ctx, c.metricsURL)
	if err != nil {
		r.note("probes: %v", err)
		return
	}
	a0, d0 := c.agentReqs.snapshot(), c.driverReqs.snapshot()
	var wakes uint64
	for i := range w.Probes {
		name := fmt.Sprintf("probe-%d.service", i)
		before := c.wakeups()
		t := time.Now()
		_, err := cl.CreateUnit(ctx, &api.Unit{Name: name, DesiredState: "launched",
			Options: []*api.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/usr/bin/probe " + name}}})
		if err != nil {
			r.note("probe %s: %v", name, err)
			return
		}
		if !obs.waitFor(ctx, 30*time.Second, func(o *observer) bool { return len(o.activeOn[name]) > 0 }) {
			r.note("probe %s: not active after 30s", name)
			return
		}
		obs.mu.Lock()
		for _, at := range obs.activeOn[name] {
			r.ProbeLatency = append(r.ProbeLatency, at.Sub(t))
		}
		obs.mu.Unlock()
		// Whatever else this placement causes (the job's end, systemd's
		// signal) happens within milliseconds; give it 200.
		sleepCtx(ctx, 200*time.Millisecond)
		after := c.wakeups()
		woken := 0
		for j := range after {
			if after[j] != before[j] {
				woken++
				wakes += after[j] - before[j]
			}
		}
		r.ProbeAgentsWoken = append(r.ProbeAgentsWoken, woken)
	}
	m1, _ := scrapeEtcd(ctx, c.metricsURL)
	a1, d1 := c.agentReqs.snapshot(), c.driverReqs.snapshot()
	n := float64(w.Probes)
	srv := m1.sub(m0).unaryTotal()
	agents, driver := float64(total(diff(a1, a0))), float64(total(diff(d1, d0)))
	r.ProbeEtcdReqs, r.ProbeAgentReqs, r.ProbeSubmitReqs = srv/n, agents/n, driver/n
	r.ProbeEngineReqs = (srv - agents - driver) / n
	r.ProbeWakeups = float64(wakes) / n
	log.Info("probes done", "agents_woken", r.ProbeAgentsWoken, "etcd_reqs_per_placement", r.ProbeEtcdReqs)
}

// failover kills a share of the machines at once and waits until every
// unit they ran is active elsewhere.
func (r *ScaleResult) failover(ctx context.Context, c *cluster, obs *observer, log *slog.Logger) {
	w := r.Workload
	k := max(1, int(float64(w.Machines)*w.FailoverPercent/100))
	rng := rand.New(rand.NewPCG(1, 2))
	victims := rng.Perm(len(c.machines))[:k]
	dead := map[string]bool{}
	for _, i := range victims {
		dead[c.machines[i].m.ID] = true
	}
	// The units to move: every non-global unit placed on a victim.
	obs.mu.Lock()
	var moving []string
	for u, ms := range obs.placed {
		if len(ms) != 1 {
			continue // global
		}
		for m := range ms {
			if dead[m] {
				moving = append(moving, u)
			}
		}
	}
	obs.mu.Unlock()
	slices.Sort(moving)
	r.Killed, r.Moved = k, len(moving)
	log.Info("failover: killing machines", "machines", k, "units", len(moving))
	t := time.Now()
	var wg sync.WaitGroup
	for _, i := range victims {
		wg.Go(c.machines[i].kill)
	}
	wg.Wait()
	var last time.Time
	r.FailoverDone = obs.waitFor(ctx, w.Deadline, func(o *observer) bool {
		last = time.Time{}
		for _, u := range moving {
			at, ok := o.activeElsewhere(u, dead)
			if !ok {
				return false
			}
			if at.After(last) {
				last = at
			}
		}
		return true
	})
	if !r.FailoverDone {
		r.note("failover: not every unit of the killed machines was active elsewhere after %s", w.Deadline)
		return
	}
	r.FailoverTime = last.Sub(t)
	log.Info("failover done", "took", r.FailoverTime.Round(time.Millisecond))
}

// takeover SIGKILLs the leading engine while a batch of units is submitted,
// and measures how long the other engine takes to lead and to place them.
func (r *ScaleResult) takeover(ctx context.Context, c *cluster, obs *observer, log *slog.Logger) {
	w := r.Workload
	leader, err := c.reg.Leader(ctx)
	e := c.engineByID(leader)
	if err != nil || e == nil {
		r.note("takeover: cannot tell the leader (%q): %v", leader, err)
		return
	}
	n := min(1000, max(10, w.Units/100))
	var units []benchUnit
	for i := range n {
		units = append(units, benchUnit{Name: fmt.Sprintf("after-takeover-%d.service", i), Launched: true,
			Body: fmt.Sprintf("[Service]\nExecStart=/usr/bin/late %d\n", i)})
	}
	r.TakeoverUnits = n
	log.Info("takeover: killing the leader", "engine", leader, "units_submitted_with_it", n)
	if c.deadEngineCPU == nil {
		c.deadEngineCPU = map[*child]procStat{}
	}
	st, _ := readProc(e.pid())
	t := time.Now()
	e.kill()
	c.deadEngineCPU[e] = st
	errc := make(chan error, 1)
	go func() { errc <- submit(ctx, c, units, submitTxns) }()
	if _, err := c.waitLeader(ctx, leader, w.Deadline); err != nil {
		r.note("takeover: %v", err)
		return
	}
	r.TakeoverElected = time.Since(t)
	first := units[0].Name
	names := make([]string, n)
	for i, u := range units {
		names[i] = u.Name
	}
	placed := obs.waitFor(ctx, w.Deadline, func(o *observer) bool {
		for _, u := range names {
			if _, ok := o.putAt[u]; ok {
				first = u
				return true
			}
		}
		return false
	})
	if err := <-errc; err != nil {
		r.note("takeover: submission: %v", err)
		return
	}
	if !placed {
		r.note("takeover: nothing placed %s after the leader was killed", w.Deadline)
		return
	}
	var last time.Time
	r.TakeoverDone = obs.waitFor(ctx, w.Deadline, func(o *observer) bool {
		earliest := o.putAt[first]
		last = time.Time{}
		for _, u := range names {
			if at, ok := o.putAt[u]; ok && at.Before(earliest) {
				earliest = at
			}
			at, ok := o.activeElsewhere(u, nil)
			if !ok {
				return false
			}
			if at.After(last) {
				last = at
			}
		}
		r.TakeoverPlaced = earliest.Sub(t)
		return true
	})
	if !r.TakeoverDone {
		r.note("takeover: the units submitted with the kill were not all active after %s", w.Deadline)
		return
	}
	r.TakeoverAll = last.Sub(t)
	log.Info("takeover done", "elected", r.TakeoverElected.Round(time.Millisecond), "first_placement", r.TakeoverPlaced.Round(time.Millisecond), "all", r.TakeoverAll.Round(time.Millisecond))
}

// parseOptions returns a unit file's options in wire form.
func parseOptions(body string) ([]*api.UnitOption, error) {
	f, err := unit.ParseString(body)
	if err != nil {
		return nil, err
	}
	return api.OptionsFromFile(f), nil
}

// planStats reads the engines' logs for the plans written between from and
// to: how many, their mean number of operations and mean time. The engine's
// log line is "plan written" with ops= and took=; lines it does not
// recognise are skipped.
func (c *cluster) planStats(from, to time.Time) (int, float64, time.Duration) {
	n, ops, took := 0, 0, time.Duration(0)
	for _, id := range c.engineID {
		b, err := os.ReadFile(filepath.Join(c.dir, "engine-"+id+".log"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="plan written"`) {
				continue
			}
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					f[k] = v
				}
			}
			at, err := time.Parse(time.RFC3339Nano, f["time"])
			if err != nil || at.Before(from) || at.After(to) {
				continue
			}
			o, err1 := strconv.Atoi(f["ops"])
			d, err2 := time.ParseDuration(f["took"])
			if err1 != nil || err2 != nil {
				continue
			}
			n, ops, took = n+1, ops+o, took+d
		}
	}
	if n == 0 {
		return 0, 0, 0
	}
	return n, float64(ops) / float64(n), took / time.Duration(n)
}

// seedStates publishes an active state for every launched, non-global unit
// of units, spread over the machines, through each machine's presence (as
// its agent would), and returns how many it published.
func (c *cluster) seedStates(ctx context.Context, units []benchUnit) (int, error) {
	var names []string
	for _, u := range units {
		if u.Launched && !u.Global {
			names = append(names, u.Name)
		}
	}
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	err := forEach(names, 64, func(n string) error {
		s := c.machines[idx[n]%len(c.machines)]
		s.mu.Lock()
		p := s.presence
		s.mu.Unlock()
		select {
		case <-p.Done():
			return nil // lost meanwhile: the state would die with it
		default:
		}
		return p.PublishState(ctx, registry.UnitState{Name: n, Hash: "0000000000000000000000000000000000000000",
			LoadState: "loaded", ActiveState: "active", SubState: "running"})
	})
	return len(names), err
}

// backlog stops every engine, submits a tenth of the workload's units,
// starts one engine and times its placements: what the engine itself can
// place per second, apart from how fast units are submitted.
func (r *ScaleResult) backlog(ctx context.Context, c *cluster, obs *observer, log *slog.Logger) {
	w := r.Workload
	for _, e := range c.engines {
		if e.alive() {
			if c.deadEngineCPU == nil {
				c.deadEngineCPU = map[*child]procStat{}
			}
			st, _ := readProc(e.pid())
			e.stop()
			c.deadEngineCPU[e] = st
		}
	}
	n := max(10, w.Units/10)
	units := make([]benchUnit, n)
	names := make([]string, n)
	for i := range units {
		names[i] = fmt.Sprintf("backlog-%d.service", i)
		units[i] = benchUnit{Name: names[i], Launched: true, Body: fmt.Sprintf("[Service]\nExecStart=/usr/bin/backlog %d\n", i)}
	}
	r.BacklogUnits = n
	log.Info("backlog: submitting with no engine running", "units", n)
	if err := submit(ctx, c, units, submitTxns); err != nil {
		r.note("backlog: submission: %v", err)
		return
	}
	etcd0, self0 := procCPU(c.etcd.pid()), procCPU(0)
	t := time.Now()
	if err := c.startEngine(ctx, "engine-c", w.LeaderTTL); err != nil {
		r.note("backlog: %v", err)
		return
	}
	e := c.engines[len(c.engines)-1]
	var first, last time.Time
	r.BacklogDone = obs.waitFor(ctx, w.Deadline, func(o *observer) bool {
		first, last = time.Time{}, time.Time{}
		for _, u := range names {
			at, ok := o.putAt[u]
			if !ok {
				return false
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
			last = maxTime(last, at)
		}
		return true
	})
	r.BacklogEngineCPU = procCPU(e.pid())
	r.BacklogEtcdCPU, r.BacklogOtherCPU = procCPU(c.etcd.pid())-etcd0, procCPU(0)-self0
	if !r.BacklogDone {
		r.note("backlog: not all %d units placed %s after the engine started", n, w.Deadline)
		return
	}
	r.BacklogFirst, r.BacklogAllPlaced = first.Sub(t), last.Sub(t)
	if d := last.Sub(first); d > 0 {
		r.BacklogPlaceRate = float64(n) / d.Seconds()
	}
	log.Info("backlog placed", "units", n, "first", r.BacklogFirst.Round(time.Millisecond), "all", r.BacklogAllPlaced.Round(time.Millisecond), "per_s", int(r.BacklogPlaceRate))
}

// presencesLost is how many times a simulated machine lost its presence
// without being killed (its lease expired: keepalives were late).
func (c *cluster) presencesLost() int64 {
	n := int64(0)
	for _, s := range c.machines {
		n += s.lost.Load()
	}
	return n
}

// phase runs f and notes any machine presences lost meanwhile.
func (r *ScaleResult) phase(c *cluster, name string, f func()) {
	before := c.presencesLost()
	f()
	if n := c.presencesLost() - before; n > 0 {
		r.note("during the %s, %d machine presences expired without their machine being killed (keepalives not renewed in time: etcd or the simulated machines starved of CPU) and were registered again", name, n)
	}
}
