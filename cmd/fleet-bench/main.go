// Command fleet-bench runs fleet's cluster-scale benchmark (a real etcd, the
// real engine and thousands of simulated machines running the real agent on
// an in-memory systemd stand-in) and the real-systemd benchmark (three
// systemd-nspawn hosts running fleetd), prints the figures and rewrites its
// sections of BENCHMARKS.md.
//
//	fleet-bench -mode=full  -out=BENCHMARKS.md   # make bench: under 20 minutes on 2 cores
//	fleet-bench -mode=quick                      # make bench-quick: under 2 minutes, prints only
//	fleet-bench -only=bulk -bulk=3x500 -out=BENCHMARKS.md  # bulk start on real hosts against systemd alone
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/seed-a1ce88ea/fleet/bench"
	"github.com/seed-a1ce88ea/fleet/fleetd"
)

func main() {
	// Started again as etcd or an engine: run that and nothing else.
	if ok, err := bench.RunRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet-bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "quick", "quick (under 2 minutes, prints only unless -out) or full (every workload and the real-systemd figures)")
	out := flag.String("out", "", "markdown file whose sections to rewrite (BENCHMARKS.md)")
	only := flag.String("only", "", "run only 'scale', 'real', 'bulk' or 'tls' (the cost of TLS and authentication, plain against secured)")
	bulkRuns := flag.String("bulk", "", "with -only bulk: the runs, as HOSTSxUNITS[,...] (3x500,10x300)")
	perfDir := flag.String("bulk-perf", "", "a directory: the bulk benchmark records `perf record -a -g` of the machine there during each of our bulk starts")
	before := flag.String("before-fleetctl", "", "a fleetctl binary of an earlier commit: the bulk benchmark times it first, on the same hosts")
	fleetV1 := flag.String("fleetv1-fleetctl", "", "CoreOS fleet v1.0's fleetctl binary: the bulk benchmark also runs it against our API on its first hosts")
	dir := flag.String("dir", "", "work directory for etcd's data and the processes' logs (default: a new temporary directory, removed afterwards)")
	noFsync := flag.Bool("no-fsync", false, "run etcd without fsync (not representative; for comparing)")
	sizes := flag.String("scale", "", "run these cluster-scale workloads instead of the mode's, as MACHINESxUNITS[,...] (1000x10000)")
	deadline := flag.Duration("deadline", 0, "with -scale: each phase's deadline (default 4m)")
	ownClients := flag.Int("own-clients", -1, "with -scale: how many simulated machines each get an etcd client (connection) of their own; the rest share one (default: none)")
	profile := flag.String("profile", "", "with -scale: a directory for CPU profiles of the bulk (etcd-bulk.pprof, engine-*-bulk.pprof, bench-bulk.pprof; in the last, pprof label part= is agents, submit, observer or driver-client)")
	save := flag.String("save", "", "also write the figures as JSON to this file")
	render := flag.String("render", "", "run nothing: rewrite -out's sections from figures saved with -save")
	verbose := flag.Bool("v", false, "log progress at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *render != "" {
		return renderSaved(*render, *out)
	}
	var saved savedFigures
	defer func() {
		if *save != "" && (saved.Scale != nil || saved.Real != nil || saved.Bulk != nil) {
			if b, err := json.MarshalIndent(saved, "", "  "); err == nil {
				_ = os.WriteFile(*save, b, 0o644)
			}
		}
	}()

	// The TTLs fleetd runs with by default.
	def := fleetd.DefaultConfig()
	agentTTL, leaderTTL := def.AgentTTL, def.EngineLeaderTTL
	var workloads []bench.Workload
	real := bench.RealConfig{}
	var bulk []bench.BulkRun
	switch *mode {
	case "quick":
		workloads = []bench.Workload{{Name: "quick", Machines: 200, Units: 2000, Probes: 10, ListRuns: 5,
			FailoverPercent: 5, AgentTTL: agentTTL, LeaderTTL: leaderTTL, Deadline: 30 * time.Second}}
		real = bench.RealConfig{}
		bulk = []bench.BulkRun{{Hosts: 3, Units: 100}}
	case "full":
		workloads = []bench.Workload{
			{Name: "1,000 machines", Machines: 1000, Units: 10000, Probes: 50, ListRuns: 20,
				FailoverPercent: 1, AgentTTL: agentTTL, LeaderTTL: leaderTTL, Deadline: 2 * time.Minute},
			{Name: "10,000 machines", Machines: 10000, Units: 100000, Probes: 50, ListRuns: 20,
				FailoverPercent: 1, AgentTTL: agentTTL, LeaderTTL: leaderTTL, Deadline: 4 * time.Minute},
			// The same as the first with a connection per machine, as real
			// fleetds have: what the shared client makes look cheaper.
			{Name: "1,000 machines, a connection each", Machines: 1000, Units: 10000, Probes: 50, ListRuns: 5,
				FailoverPercent: 1, AgentTTL: agentTTL, LeaderTTL: leaderTTL, Deadline: 2 * time.Minute, OwnClients: 1000},
		}
		real = bench.RealConfig{Units: 1000, IdleWindow: 60 * time.Second, LatencyRuns: 50}
		bulk = []bench.BulkRun{{Hosts: 3, Units: 500}, {Hosts: 10, Units: 300}}
	default:
		return fmt.Errorf("-mode must be quick or full, not %q", *mode)
	}
	if *sizes != "" {
		workloads = nil
		for _, s := range strings.Split(*sizes, ",") {
			var m, u int
			if _, err := fmt.Sscanf(s, "%dx%d", &m, &u); err != nil || m <= 0 || u < 2 {
				return fmt.Errorf("-scale: %q is not MACHINESxUNITS", s)
			}
			d := *deadline
			if d <= 0 {
				d = 4 * time.Minute
			}
			workloads = append(workloads, bench.Workload{Name: fmt.Sprintf("%d machines", m), Machines: m, Units: u, Probes: 20, ListRuns: 10,
				FailoverPercent: 1, AgentTTL: agentTTL, LeaderTTL: leaderTTL, Deadline: d, OwnClients: max(*ownClients, 0), ProfileDir: *profile})
		}
		if *profile != "" {
			if err := os.MkdirAll(*profile, 0o755); err != nil {
				return err
			}
		}
	} else if *ownClients >= 0 {
		return fmt.Errorf("-own-clients goes with -scale")
	}
	if *bulkRuns != "" {
		bulk = nil
		for _, s := range strings.Split(*bulkRuns, ",") {
			var h, u int
			if _, err := fmt.Sscanf(s, "%dx%d", &h, &u); err != nil || h <= 0 || u <= 0 || u > 1000 {
				return fmt.Errorf("-bulk: %q is not HOSTSxUNITS (units at most 1000)", s)
			}
			bulk = append(bulk, bench.BulkRun{Hosts: h, Units: u})
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	env := bench.DescribeEnv(strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " "))
	saved.Env = env

	if *only == "" || *only == "scale" {
		var results []*bench.ScaleResult
		for _, w := range workloads {
			d := *dir
			if d == "" {
				if d, err = os.MkdirTemp("", "fleet-bench"); err != nil {
					return err
				}
			} else {
				d = d + "/" + strings.ReplaceAll(strings.ReplaceAll(w.Name, ",", ""), " ", "-")
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			log.Info("cluster-scale workload", "name", w.Name, "machines", w.Machines, "units", w.Units, "dir", d)
			r, err := bench.RunScale(ctx, w, d, *noFsync, log)
			if *dir == "" {
				os.RemoveAll(d)
			}
			if err != nil {
				return fmt.Errorf("workload %s: %w", w.Name, err)
			}
			results = append(results, r)
		}
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: figures are partial, BENCHMARKS.md is left alone
		}
		saved.Scale = results
		md := bench.ScaleMarkdown(env, results)
		fmt.Println(md)
		if *out != "" {
			if err := bench.WriteSection(*out, bench.ScaleSection, md); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if *only == "" && *mode == "quick" && os.Geteuid() != 0 {
		log.Info("skipping the small bulk run on real hosts: booting them needs root")
		bulk = nil
	}
	if (*only == "" || *only == "bulk") && len(bulk) > 0 {
		root, err := bench.FindModuleRoot(cwd)
		if err != nil {
			return err
		}
		r, err := bench.RunBulk(ctx, bench.BulkConfig{Runs: bulk, ModuleRoot: root, FleetV1: *fleetV1, Before: *before, PerfDir: *perfDir}, log)
		if err != nil {
			return fmt.Errorf("bulk on real hosts: %w", err)
		}
		saved.Bulk = r
		md := bench.BulkMarkdown(env, r)
		fmt.Println(md)
		if *out != "" {
			if err := bench.WriteSection(*out, bench.BulkSection, md); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if (*only == "" && real.Units+real.LatencyRuns > 0) || *only == "real" {
		if *only == "real" && real.Units+real.LatencyRuns == 0 {
			real = bench.RealConfig{Units: 100, IdleWindow: 10 * time.Second, LatencyRuns: 10}
		}
		if real.ModuleRoot, err = bench.FindModuleRoot(cwd); err != nil {
			return err
		}
		r, err := bench.RunReal(ctx, real, log)
		if err != nil {
			return fmt.Errorf("real systemd: %w", err)
		}
		saved.Real = r
		md := bench.RealMarkdown(env, r)
		fmt.Println(md)
		if *out != "" {
			if err := bench.WriteSection(*out, bench.RealSection, md); err != nil {
				return err
			}
		}
	}
	if (*only == "" && *mode == "full") || *only == "tls" {
		tc := bench.TLSCostConfig{LatencyRuns: 30, Units: 1000, ListRuns: 20}
		if tc.ModuleRoot, err = bench.FindModuleRoot(cwd); err != nil {
			return err
		}
		fs, err := bench.RunTLSCost(ctx, tc, log)
		if err != nil {
			return fmt.Errorf("TLS cost: %w", err)
		}
		md := bench.TLSMarkdown(env, fs)
		fmt.Println(md)
		if *out != "" {
			if err := bench.WriteSection(*out, bench.TLSSection, md); err != nil {
				return err
			}
		}
	}
	return nil
}

// savedFigures is what -save writes and -render reads.
type savedFigures struct {
	Env   bench.Env
	Scale []*bench.ScaleResult `json:",omitempty"`
	Real  *bench.RealResult    `json:",omitempty"`
	Bulk  *bench.BulkResult    `json:",omitempty"`
}

// renderSaved rewrites out's sections from figures saved earlier.
func renderSaved(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var f savedFigures
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Scale) > 0 {
		md := bench.ScaleMarkdown(f.Env, f.Scale)
		fmt.Println(md)
		if out != "" {
			if err := bench.WriteSection(out, bench.ScaleSection, md); err != nil {
				return err
			}
		}
	}
	if f.Real != nil {
		md := bench.RealMarkdown(f.Env, f.Real)
		fmt.Println(md)
		if out != "" {
			if err := bench.WriteSection(out, bench.RealSection, md); err != nil {
				return err
			}
		}
	}
	if f.Bulk != nil {
		md := bench.BulkMarkdown(f.Env, f.Bulk)
		fmt.Println(md)
		if out != "" {
			return bench.WriteSection(out, bench.BulkSection, md)
		}
	}
	return nil
}
