package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Env describes where and how a benchmark ran.
type Env struct {
	Command string
	Date    time.Time
	CPU     string
	Cores   int
	Memory  string
	Kernel  string
	Go      string
	Commit  string
	Load    string // load average when the run started: other work on the machine skews figures
}

// DescribeEnv reads the machine's description.
func DescribeEnv(command string) Env {
	e := Env{Command: command, Date: time.Now().UTC(), Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		var kb int64
		fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
		e.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		e.Commit = strings.TrimSpace(string(out))
	}
	return e
}

func (e Env) markdown(b *bytes.Buffer) {
	fmt.Fprintf(b, "Command: `%s`, run %s on %d cores (%s), %s RAM, Linux %s, %s, commit %s; load average at the start %s.\n\n",
		e.Command, e.Date.Format("2006-01-02 15:04 MST"), e.Cores, e.CPU, e.Memory, e.Kernel, e.Go, e.Commit, e.Load)
}

// Section markers: BENCHMARKS.md is shared with other benchmarks, and only
// the text between a section's markers is rewritten.
const (
	ScaleSection = "cluster-scale"
	RealSection  = "real-systemd"
)

// WriteSection replaces the section named name in the markdown file path
// (creating the file, or appending the section, if needed) and leaves the
// rest of the file as it was.
func WriteSection(path, name, body string) error {
	begin := "<!-- " + name + ": begin (written by fleet-bench; edits are overwritten) -->"
	end := "<!-- " + name + ": end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if text == "" {
		text = "# Benchmarks\n\nWhat each figure is, how it was measured and on what machine. Each section is rewritten by the\ncommand it names.\n"
	}
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i >= 0 && j > i {
		text = text[:i] + block + text[j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func mib(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// ScaleMarkdown renders the "Cluster scale" section.
func ScaleMarkdown(env Env, rs []*ScaleResult) string {
	var b bytes.Buffer
	b.WriteString("## Cluster scale\n\n")
	b.WriteString(`A real etcd (one member, fsync on, in a process of its own), the real engine (two candidates, each in a
process of its own, as on two fleetd machines) and N simulated machines in the benchmark's process. A
simulated machine runs the real agent code (package agent, registered and kept alive as fleetd does) on
**MemorySystemd, an in-memory stand-in for systemd**: its jobs finish at once and nothing is executed, so
these figures say how fleet's control plane scales, not how fast systemd starts a unit (see "Real
systemd" for that). Unless a workload says otherwise, all simulated machines share one etcd client, so
their watches share one gRPC stream and their lease keepalives one keepalive stream.
Everything runs on the same cores: etcd, the engines and 10,000 agents compete for them.

Units are submitted through the API's registry client (api.NewRegistryClient, what the HTTP API and
` + "`fleetctl --driver=etcd`" + ` run), with its batch create (api.UnitBatcher: 63 validated units to one etcd
transaction, as ` + "`fleetctl start`" + ` submits through fleetd), ` + fmt.Sprint(submitTxns) + ` transactions at a time, all desired ` + "`launched`" + `. The mix: 2 global units (one on every
machine, one on the role=edge quarter), 15% web@ instances (MachineMetadata=role=web), 10% worker@
instances, one db@ instance per 10 machines (Conflicts=db@*.service), 10% region-pinned units, 5% sidecars
(MachineOf), the rest plain units with bodies of their own. Placements = units - 2 + machines x 1.25.

`)
	env.markdown(&b)
	for _, r := range rs {
		scaleResult(&b, r)
	}
	return b.String()
}

func scaleResult(b *bytes.Buffer, r *ScaleResult) {
	w := r.Workload
	fmt.Fprintf(b, "### %s: %d machines x %d units (%d placements)\n\n", w.Name, w.Machines, w.Units, r.Placements)
	fmt.Fprintf(b, "Agent TTL %s, engine leader TTL %s, phase deadline %s; run took %s.", w.AgentTTL, w.LeaderTTL, w.Deadline, r.Elapsed.Round(time.Second))
	switch {
	case w.OwnClients >= w.Machines:
		fmt.Fprintf(b, " **Every simulated machine has an etcd client (connection) of its own**, as real fleetds do.")
	case w.OwnClients > 0:
		fmt.Fprintf(b, " **%d simulated machines have an etcd client (connection) of their own**, the others share one.", w.OwnClients)
	}
	b.WriteString("\n\n")
	b.WriteString("| figure | value | target |\n|---|---|---|\n")
	row := func(name, value, target string) { fmt.Fprintf(b, "| %s | %s | %s |\n", name, value, target) }
	row("machines registered (register + agent start, 64 at a time)", ms(r.RegisterTime), "")
	row("presence keepalives received by etcd, idle", fmt.Sprintf("%.0f /s (etcd %.0f%% of a core, machines %.0f%%)", r.KeepalivesPerSec, 100*r.IdleEtcdCPU, 100*r.IdleMachinesCPU), "")
	row("bulk submission (all CreateUnits calls returned)", ms(r.SubmitTime), "")
	if r.BacklogDone {
		row(fmt.Sprintf("placements per second: engine alone, from a backlog of %d units submitted while no engine ran (first to last placement written)", r.BacklogUnits),
			fmt.Sprintf("%.0f (engine start to first placement %s, to last %s)", r.BacklogPlaceRate, ms(r.BacklogFirst), ms(r.BacklogAllPlaced)), ">= 5,000 on 2 cores: "+verdict(r.BacklogPlaceRate >= 5000))
	}
	if r.BulkDone {
		row("placements per second while submitting (placements / first submission to last placement written; cannot exceed the submission rate)", fmt.Sprintf("%.0f", r.PlacementsPerSec), "")
		tgt := ""
		if w.Units >= 100000 {
			tgt = "< 60 s: " + verdict(r.AllLaunched < time.Minute)
		}
		row("submit to all launched (first submission to last unit published active)", ms(r.AllLaunched), tgt)
	} else {
		row("placements per second", fmt.Sprintf("did not finish: %d of %d placed, %d launched after %s (%.0f/s while it ran)", r.Placed, r.Placements, r.Launched, w.Deadline, r.PlacementsPerSec), ">= 5,000: **missed**")
		row("submit to all launched", "did not finish within "+w.Deadline.String(), "")
	}
	if r.BulkPlans > 0 {
		row("engine plans during the bulk (from its log): count, mean operations, mean time to plan and write", fmt.Sprintf("%d, %.0f, %s", r.BulkPlans, r.BulkOpsPerPlan, ms(r.BulkPlanTime)), "")
	}
	row("CPU during the bulk: engines / etcd / simulated machines + benchmark", fmt.Sprintf("%.1f s / %.1f s / %.1f s", r.EngineCPUBulk.Seconds(), r.EtcdCPUBulk.Seconds(), r.MachinesCPUBulk.Seconds()), "")
	if r.BulkDone {
		row("etcd requests per placement, bulk (all / agents / engine)", fmt.Sprintf("%.2f / %.2f / %.2f", r.BulkEtcdReqs, r.BulkAgentReqs, r.BulkEngineReqs), "")
		row("agent wake-ups per placement, bulk (batches; a batch may hold several units)", fmt.Sprintf("%.2f", r.BulkWakeups), "")
		row("etcd during the bulk: requests per second, WAL fsyncs, mean fsync", fmt.Sprintf("%.0f /s, %.0f, %s", r.BulkTxnOps, r.BulkFsyncs, ms(r.BulkFsyncMean)), "")
	}
	if len(r.ProbeAgentsWoken) > 0 {
		one := true
		for _, n := range r.ProbeAgentsWoken {
			one = one && n == 1
		}
		lo, hi := minmax(r.ProbeAgentsWoken)
		row(fmt.Sprintf("agents woken per placement (%d single placements on the steady cluster)", len(r.ProbeAgentsWoken)), fmt.Sprintf("min %d, max %d", lo, hi), "1: "+verdict(one))
		row("wake-ups of that agent per placement (schedule event, job end, systemd signal)", fmt.Sprintf("%.1f", r.ProbeWakeups), "")
		row("etcd requests per single placement (all / agent / engine / submission)", fmt.Sprintf("%.1f / %.1f / %.1f / %.1f", r.ProbeEtcdReqs, r.ProbeAgentReqs, r.ProbeEngineReqs, r.ProbeSubmitReqs), "")
		row("single unit submit to active (p50 / p99)", ms(pct(r.ProbeLatency, 50))+" / "+ms(pct(r.ProbeLatency, 99)), "")
	}
	row("engine CPU, whole run (both processes)", fmt.Sprintf("%.1f s", r.EngineCPU.Seconds()), "")
	row("engine peak RSS", mib(r.EnginePeakRSS), "")
	row("etcd database size (in use)", mib(r.EtcdDBSize)+" ("+mib(r.EtcdDBInUse)+")", "")
	row("etcd CPU, whole run / peak RSS", fmt.Sprintf("%.1f s / %s", r.EtcdCPU.Seconds(), mib(r.EtcdPeakRSS)), "")
	row("simulated machines + benchmark (its watches, submissions and fleetctl runs): CPU / peak RSS", fmt.Sprintf("%.1f s / %s", r.MachinesCPU.Seconds(), mib(r.MachinesPeakRSS)), "")
	for _, l := range r.Lists {
		v := fmt.Sprintf("p50 %s, p99 %s (%d runs, %d rows)", ms(pct(l.Runs, 50)), ms(pct(l.Runs, 99)), len(l.Runs), l.Rows)
		if l.Err != "" {
			v = fmt.Sprintf("%s; %s", v, l.Err)
		}
		tgt := ""
		if strings.Contains(l.Command, "list-units ") && w.Units >= 100000 {
			tgt = fmt.Sprintf("< 1 s: p50 %s, p99 %s", verdict(l.Err == "" && pct(l.Runs, 50) < time.Second), verdict(l.Err == "" && pct(l.Runs, 99) < time.Second))
			if l.Rows < w.Units*9/10 {
				tgt = fmt.Sprintf("< 1 s at %d rows: not measured (%d rows)", w.Units, l.Rows)
			}
		}
		row("`"+l.Command+"`", v, tgt)
	}
	if r.FailoverDone {
		row(fmt.Sprintf("failover: %d machines (%.0f%%) killed at once, their %d units active elsewhere", r.Killed, w.FailoverPercent, r.Moved), ms(r.FailoverTime), fmt.Sprintf("TTL + 1 s = %s: %s", w.AgentTTL+time.Second, verdict(r.FailoverTime <= w.AgentTTL+time.Second)))
	} else if r.Killed > 0 {
		row("failover", fmt.Sprintf("did not finish within %s", w.Deadline), "**missed**")
	}
	if r.TakeoverElected > 0 {
		row(fmt.Sprintf("leader takeover: leader SIGKILLed while %d units are submitted; other engine leads", r.TakeoverUnits), ms(r.TakeoverElected), "< 3 s: "+verdict(r.TakeoverElected < 3*time.Second))
		if r.TakeoverDone {
			row("leader takeover: kill to first placement by the new leader", ms(r.TakeoverPlaced), "(< 3 s: "+verdict(r.TakeoverPlaced < 3*time.Second)+")")
			row("leader takeover: kill to all those units active", ms(r.TakeoverAll), "")
		}
	}
	b.WriteString("\n")
	if notes := append(r.Notes, bounds(r)...); len(notes) > 0 {
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
}

func minmax(xs []int) (int, int) {
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// bounds explains, from the run's own figures, what limits each missed
// target.
func bounds(r *ScaleResult) []string {
	w := r.Workload
	var out []string
	wall := r.AllLaunched
	if !r.BulkDone {
		wall = w.Deadline
	}
	if r.BulkDone && r.SubmitTime > 0 && r.AllLaunched < r.SubmitTime+5*time.Second {
		out = append(out, fmt.Sprintf("During the bulk the placements kept up with the submissions (all launched %s after the last submission returned), so placements per second while submitting is the submission rate (%.0f units/s: %d batch-create transactions of 63 validated units in flight, on the same 2 cores as etcd, the engines and the machines); the backlog row is the engine's own rate.",
			(r.AllLaunched-r.SubmitTime).Round(time.Millisecond), float64(w.Units)/r.SubmitTime.Seconds(), submitTxns))
	}
	if wall > 0 && (!r.BulkDone || (w.Units >= 100000 && r.AllLaunched > time.Minute)) {
		e, d, m := r.EngineCPUBulk.Seconds()/wall.Seconds(), r.EtcdCPUBulk.Seconds()/wall.Seconds(), r.MachinesCPUBulk.Seconds()/wall.Seconds()
		s := fmt.Sprintf("Bulk: over %s the engines used %.2f cores, etcd %.2f, the simulated machines and the benchmark %.2f (of %d). ", wall.Round(time.Second), e, d, m, runtime.NumCPU())
		if r.BulkPlans > 0 {
			s += fmt.Sprintf("The engine wrote %d plans of %.0f operations on average, each taking %s to compute and write. ", r.BulkPlans, r.BulkOpsPerPlan, ms(r.BulkPlanTime))
		}
		switch {
		case e >= 0.6:
			s += fmt.Sprintf("The engine plans on one goroutine, so one core is all it can use, and it used %.0f%% of one: the engine's planning is the bound, and a cheaper plan per event is what moves it.", 100*e)
		case d >= e && d >= m:
			s += "etcd is the largest consumer: every submission, placement and published state is a write under fsync, on the cores everything else shares. Fewer writes per placement (an agent publishing a batch's states in one transaction) or etcd on cores of its own would move it."
		default:
			s += "The simulated machines and the benchmark's watches are the largest consumer: they stand for thousands of hosts on the same 2 cores, which real hosts would not share."
		}
		out = append(out, s)
	}
	if r.BacklogDone && r.BacklogPlaceRate < 5000 {
		out = append(out, fmt.Sprintf("Backlog placement rate: from its start to its last placement (%s) the new engine used %.1f s of CPU, etcd %.1f s, the simulated machines and benchmark %.1f s, on %d cores. The engine (started cold: no standby ran) first reads the whole registry and plans (%s to its first write); the writes then go in fenced transactions of at most 127 operations, 4 in flight, while the agents publish a state per placement into the same etcd, so etcd's write path (one member, fsync) and the shared cores bound the rest: without the agents (`go test ./engine/ -run '^$' -bench BenchmarkBacklog`, same 10,000 machines and 100,000 units as bare leases) the same engine writes its first to last placement of the 10,000 in a few hundred milliseconds.",
			ms(r.BacklogAllPlaced), r.BacklogEngineCPU.Seconds(), r.BacklogEtcdCPU.Seconds(), r.BacklogOtherCPU.Seconds(), runtime.NumCPU(), ms(r.BacklogFirst)))
	}
	if r.FailoverDone && r.FailoverTime > w.AgentTTL+time.Second {
		out = append(out, fmt.Sprintf("Failover: a killed machine is noticed only when etcd expires its lease, between TTL - TTL/6 and TTL after the last keepalive (keepalives go every TTL/6, see registry.Presence; etcd checks expiry every 500 ms); the rest (%s beyond the TTL) is the engine rescheduling and the agents starting. A shorter agent_ttl moves the first part at the cost of more keepalives (%.0f/s here).",
			(r.FailoverTime-w.AgentTTL).Round(time.Millisecond), r.KeepalivesPerSec))
	}
	if r.TakeoverElected > 3*time.Second || (r.TakeoverDone && r.TakeoverPlaced > 3*time.Second) {
		out = append(out, fmt.Sprintf("Leader takeover: a SIGKILLed leader keeps the lead until its session lease expires (engine_leader_ttl %s), which no standby shortens; the new leader, a warm standby, then catches up with what changed since its model's revisions and writes its first plan (%s after it was elected; see its log's \"standby: caught up\" and \"first plan written\").",
			w.LeaderTTL, (r.TakeoverPlaced-r.TakeoverElected).Round(time.Millisecond)))
	}
	for _, l := range r.Lists {
		if strings.Contains(l.Command, "--driver=api") && w.Units >= 100000 && len(l.Runs) > 1 && (l.Err != "" || pct(l.Runs, 99) > time.Second) {
			out = append(out, fmt.Sprintf("`%s` at %d rows: the first listing (%s) is read from etcd at one revision (units, placements, states; for list-unit-files the bodies of files fleetd has not seen yet, every one on a fleetd that just started), the second (also from etcd) starts fleetd's list cache, which makes one full read in the background, and later ones within a minute are served from memory once it has etcd's current revision (registry.ListCache), so the p50 is what an operator listing again sees and the p99 what the first listings cost.",
				l.Command, l.Rows, ms(l.Runs[0])))
		}
		if strings.HasPrefix(l.Command, "fleetctl list-units --driver=etcd") && w.Units >= 100000 && l.Err == "" && pct(l.Runs, 99) > time.Second {
			out = append(out, fmt.Sprintf("`%s` at %d rows: one range read of every published state (a few hundred bytes of JSON each, the whole read in one gRPC message) and one of every machine, then decoding, sorting and printing every row in one process, on cores that etcd and %d simulated machines' keepalives share. A per-row cost of ~%s is what a leaner state encoding (or a server-side count/filter for the common questions) would move.",
				l.Command, l.Rows, w.Machines, (pct(l.Runs, 50)/time.Duration(max(l.Rows, 1))).Round(time.Microsecond/10)))
		}
	}
	return out
}

// RealResult holds the figures measured on real systemd hosts.
type RealResult struct {
	Hosts        int
	Units        int           // on one host
	StartAll     time.Duration // submit -> all units active on that host
	StartCPU     time.Duration // fleetd's CPU on that host meanwhile
	SystemdCPU   time.Duration // systemd's (PID 1 of the host) meanwhile
	IdleCPU      float64       // fleetd's, fraction of one core, with the units running
	IdleWindow   time.Duration
	RSS          int64 // fleetd's, with the units running
	LatencyRuns  []time.Duration
	Notes        []string
	Elapsed      time.Duration
	BootTime     time.Duration
	SkippedBoots string
}

// RealMarkdown renders the "Real systemd" section.
func RealMarkdown(env Env, r *RealResult) string {
	var b bytes.Buffer
	b.WriteString("## Real systemd\n\n")
	b.WriteString(`Real hosts from the functional harness (functional/platform: systemd-nspawn containers booting real
systemd, fleetd installed as fleet.service), an etcd in the benchmark's process. Units run /bin/sleep. The
host holding the units has disable_engine=true, so its fleetd is agent + API only.

`)
	env.markdown(&b)
	if r == nil {
		b.WriteString("Not run.\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%d hosts booted in %s (including any wait for the machine-wide hosts lock); run took %s.\n\n", r.Hosts, ms(r.BootTime), r.Elapsed.Round(time.Second))
	b.WriteString("| figure | value | target |\n|---|---|---|\n")
	row := func(name, value, target string) { fmt.Fprintf(&b, "| %s | %s | %s |\n", name, value, target) }
	if r.Units > 0 {
		row(fmt.Sprintf("%d units started on one host: submit to all active", r.Units), ms(r.StartAll), "")
		row("CPU cost of starting them: fleetd / the host's systemd", fmt.Sprintf("%.2f s / %.2f s", r.StartCPU.Seconds(), r.SystemdCPU.Seconds()), "")
		if r.IdleWindow > 0 {
			row(fmt.Sprintf("fleetd idle CPU with %d units running (over %s)", r.Units, r.IdleWindow), fmt.Sprintf("%.2f%% of a core", 100*r.IdleCPU), "< 0.5%: "+verdict(r.IdleCPU < 0.005))
			row(fmt.Sprintf("fleetd RSS with %d units running", r.Units), mib(r.RSS), "< 40 MB: "+verdict(r.RSS < 40e6))
		}
	}
	if len(r.LatencyRuns) > 0 {
		row(fmt.Sprintf("start to active, one unit, idle %d-host cluster (%d runs): p50 / p99", r.Hosts, len(r.LatencyRuns)),
			ms(pct(r.LatencyRuns, 50))+" / "+ms(pct(r.LatencyRuns, 99)),
			fmt.Sprintf("p50 < 150 ms: %s; p99 < 500 ms: %s", verdict(pct(r.LatencyRuns, 50) < 150*time.Millisecond), verdict(pct(r.LatencyRuns, 99) < 500*time.Millisecond)))
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}
