package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Churn is the etcd-size benchmark: Units units are replaced (as
// `fleetctl start --replace` does: a new body, the unit record rewritten)
// Cycles times over, with the real engine placing them and real agents on
// MemorySystemd running them, and etcd's database size is sampled.
type Churn struct {
	Units    int // units replaced each cycle
	Cycles   int
	Machines int // simulated machines, each the real agent on MemorySystemd
	Samples  int // db size samples, spread evenly (at least start and end)
	// Settle is how long the cluster keeps running after the last cycle
	// before a last sample: the hygiene's last passes.
	Settle time.Duration
	// The engine's hygiene (see engine.Config): 0 keeps the engine's
	// defaults; GCInterval < 0 turns it off, for comparison.
	GCInterval, BodyGrace, CompactRetention time.Duration
}

// ChurnSample is etcd's state after Cycle cycles.
type ChurnSample struct {
	Cycle       int
	Elapsed     time.Duration // since the first sample; a last sample after Settle repeats the cycle
	Revision    int64
	DBSize      int64 // the backend file (etcd_mvcc_db_total_size_in_bytes)
	DBSizeInUse int64 // pages in use; the rest is free for reuse
	Bodies      int   // unit bodies stored
}

// ChurnResult is what RunChurn measured.
type ChurnResult struct {
	Churn
	Samples []ChurnSample
	Took    time.Duration
}

// RunChurn runs c against the etcd of cli, whose endpoint (for the status
// of the database) is endpoint. It returns once every cycle's replacement
// is placed by the engine; agents are not waited for, but they run all
// along, reading bodies and publishing states like real ones.
func RunChurn(ctx context.Context, cli *clientv3.Client, endpoint string, c Churn, log *slog.Logger) (*ChurnResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := registry.New(cli)
	var stopAll []func()
	defer func() {
		cancel()
		for _, stop := range stopAll {
			stop()
		}
	}()
	for i := range c.Machines {
		p, err := reg.Register(ctx, benchMachine(i), 10*time.Second)
		if err != nil {
			return nil, err
		}
		a := agent.New(agent.Config{Registry: reg, Presence: p, Systemd: NewMemorySystemd(), Log: log.With("machine", p.Machine().ID)})
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(ctx) }()
		stopAll = append(stopAll, func() { <-done; p.Close() })
	}
	e := engine.New(engine.Config{Registry: reg, ID: "churn-engine", LeaderTTL: 2 * time.Second, Log: log,
		GCInterval: c.GCInterval, BodyGrace: c.BodyGrace, CompactRetention: c.CompactRetention})
	edone := make(chan struct{})
	go func() { defer close(edone); _ = e.Run(ctx) }()
	stopAll = append(stopAll, func() { <-edone })

	names := make([]string, c.Units)
	for i := range names {
		names[i] = fmt.Sprintf("churn-%03d.service", i)
	}
	res := &ChurnResult{Churn: c}
	start := time.Now()
	sample := func(cycle int) error {
		s, err := cli.Status(ctx, endpoint)
		if err != nil {
			return fmt.Errorf("etcd status: %w", err)
		}
		resp, err := cli.Get(ctx, reg.Prefix()+"bodies/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("count bodies: %w", err)
		}
		cs := ChurnSample{Cycle: cycle, Elapsed: time.Since(start), Revision: s.Header.Revision,
			DBSize: s.DbSize, DBSizeInUse: s.DbSizeInUse, Bodies: int(resp.Count)}
		res.Samples = append(res.Samples, cs)
		log.Info("churn", "cycle", cycle, "db_size", mib1(cs.DBSize), "db_in_use", mib1(cs.DBSizeInUse), "bodies", cs.Bodies, "rev", cs.Revision)
		return nil
	}
	every := max(c.Cycles/max(c.Samples-1, 1), 1)
	for cycle := 0; cycle <= c.Cycles; cycle++ {
		if cycle%every == 0 || cycle == c.Cycles {
			if err := sample(cycle); err != nil {
				return nil, err
			}
		}
		if cycle == c.Cycles {
			if c.Settle > 0 {
				sleepCtx(ctx, c.Settle)
				if err := sample(cycle); err != nil {
					return nil, err
				}
			}
			break
		}
		hashes := make(map[string]string, len(names))
		var bodies []string
		for i, name := range names {
			f, err := unit.ParseString(fmt.Sprintf("[Unit]\nDescription=churn %d of unit %d\n[Service]\nExecStart=/usr/bin/sleep infinity\n", cycle, i))
			if err != nil {
				return nil, err
			}
			hashes[name] = f.Hash().String()
			bodies = append(bodies, f.String())
		}
		idx := make([]int, len(names))
		for i := range idx {
			idx[i] = i
		}
		if err := forEach(idx, 16, func(i int) error {
			return reg.CreateUnit(ctx, registry.Unit{Name: names[i], Hash: hashes[names[i]], DesiredState: registry.StateLaunched}, bodies[i], true)
		}); err != nil {
			return nil, fmt.Errorf("cycle %d: %w", cycle, err)
		}
		if err := waitPlaced(ctx, reg, hashes); err != nil {
			return nil, fmt.Errorf("cycle %d: %w", cycle, err)
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// waitPlaced polls the schedule until every unit is placed with its hash.
func waitPlaced(ctx context.Context, reg *registry.Registry, want map[string]string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ps, _, err := reg.Placements(ctx)
		if err != nil {
			return err
		}
		ok := 0
		for _, p := range ps {
			if want[p.Name] == p.Hash {
				ok++
			}
		}
		if ok == len(want) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("replaced units not placed after 1m")
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
}

// ChurnMarkdown renders results (hygiene on, and off for comparison) as a
// BENCHMARKS.md section.
func ChurnMarkdown(env Env, rs ...*ChurnResult) string {
	var b bytes.Buffer
	b.WriteString("## etcd size under churn\n\n")
	env.markdown(&b)
	for _, r := range rs {
		hygiene := "engine hygiene on"
		if r.GCInterval < 0 {
			hygiene = "engine hygiene off (for comparison)"
		} else {
			hygiene += fmt.Sprintf(" (engine_gc_interval %s, body grace %s, compaction keeping %s)", r.GCInterval, r.BodyGrace, r.CompactRetention)
		}
		fmt.Fprintf(&b, "### %d cycles of `--replace` of %d units, %d machines, %s\n\n", r.Cycles, r.Units, r.Machines, hygiene)
		b.WriteString("| cycle | elapsed | etcd revision | db size | db size in use | bodies stored |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Samples {
			fmt.Fprintf(&b, "| %d | %.0f s | %d | %s | %s | %d |\n", s.Cycle, s.Elapsed.Seconds(), s.Revision, mib1(s.DBSize), mib1(s.DBSizeInUse), s.Bodies)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func mib1(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// ChurnSection names the section of BENCHMARKS.md ChurnMarkdown fills.
const ChurnSection = "etcd-churn"
