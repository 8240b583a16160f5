package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// ListResult is the latency of one fleetctl list command.
type ListResult struct {
	Command string // "list-units --driver=api", ...
	Rows    int    // lines printed by the last run
	Runs    []time.Duration
	Err     string // the first failure; the runs stop there
}

// listTimeout bounds one fleetctl run: past it the command is reported as
// failed, and not run again.
const listTimeout = 60 * time.Second

// listBudget bounds the time spent repeating one command.
const listBudget = 45 * time.Second

// measureLists runs fleetctl's list commands in this process, as a user
// would run the binary: over HTTP against a fleetd API server (the real
// api.NewServer over api.NewRegistryClient, in a process of its own as in
// fleetd, on loopback), and with --driver=etcd straight against etcd.
func measureLists(ctx context.Context, c *cluster, runs int, log *slog.Logger) []ListResult {
	if runs <= 0 {
		return nil
	}
	port, err := freePort()
	if err != nil {
		return []ListResult{{Command: "API server", Err: err.Error()}}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv, err := startChild(ctx, "API server", "api", apiRole{Endpoints: c.endpoints, Addr: addr}, filepath.Join(c.dir, "api.log"))
	if err != nil {
		return []ListResult{{Command: "API server", Err: err.Error()}}
	}
	defer srv.stop()
	apiEP := "--endpoint=http://" + addr
	etcdEP := "--endpoint=" + strings.Join(c.endpoints, ",")
	var out []ListResult
	for _, args := range [][]string{
		// etcd first: a slow listing over the API loads etcd for as long
		// as it runs, and would skew what follows.
		{"list-units", "--driver=etcd", etcdEP},
		{"list-unit-files", "--driver=etcd", etcdEP},
		{"list-units", "--driver=api", apiEP},
		{"list-unit-files", "--driver=api", apiEP},
	} {
		r := ListResult{Command: "fleetctl " + args[0] + " " + args[1]}
		began := time.Now()
		for range runs {
			if time.Since(began) > listBudget {
				break // a slow command is timed fewer times; the result says how many
			}
			var stdout counter
			cmd := fleetctl.NewCommand(&stdout, io.Discard, func(string) string { return "" })
			cmd.SetArgs(append(args[1:], fmt.Sprintf("--request-timeout=%ds", int(listTimeout/time.Second)), args[0], "--no-legend"))
			cctx, cancel := context.WithTimeout(ctx, listTimeout)
			t := time.Now()
			err := cmd.ExecuteContext(cctx)
			d := time.Since(t)
			cancel()
			if err != nil {
				r.Err = fmt.Sprintf("failed after %s: %v", d.Round(time.Millisecond), err)
				break
			}
			r.Runs = append(r.Runs, d)
			r.Rows = stdout.lines
		}
		var first time.Duration
		if len(r.Runs) > 0 {
			// Over the API the first listing is read from etcd and later ones
			// from fleetd's memory (registry.ListCache): say what the first cost.
			first = r.Runs[0]
		}
		log.Info("fleetctl timed", "command", r.Command, "rows", r.Rows, "first", first, "p50", pct(r.Runs, 50), "p99", pct(r.Runs, 99), "err", r.Err)
		out = append(out, r)
	}
	return out
}

// counter counts the lines written to it.
type counter struct{ lines int }

func (c *counter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			c.lines++
		}
	}
	return len(p), nil
}

// pct returns the p-th percentile of ds (nearest rank), 0 for none.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// apiRole serves fleet's HTTP API (api.NewServer over api.NewRegistryClient,
// as fleetd does) on Addr.
type apiRole struct {
	Endpoints []string
	Addr      string
}

func (r apiRole) run(ctx context.Context) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: r.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("api: etcd client: %w", err)
	}
	defer cli.Close()
	l, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api.NewServer(api.NewRegistryClient(registry.New(cli))), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	sayReady()
	if err := srv.Serve(l); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
