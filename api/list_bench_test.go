package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// benchUnits is FLEET_BENCH_UNITS, default def.
func benchUnits(tb testing.TB, def int) int {
	if v := os.Getenv("FLEET_BENCH_UNITS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("FLEET_BENCH_UNITS=%q: %v", v, err)
		}
		return n
	}
	return def
}

// listCluster fills an embedded etcd with n units (each its own body,
// every tenth with an [X-Fleet] section, placed and reported active) on
// 100 machines, as the list benchmarks read them.
func listCluster(ctx context.Context, b *testing.B, n int) (*etcdtest.Etcd, *registry.Registry) {
	e := etcdtest.Start(b)
	reg := registry.New(e.Client(b), registry.WithRequestTimeout(time.Minute))
	const machines = 100
	ps := make([]*registry.Presence, machines)
	for i := range ps {
		id := fmt.Sprintf("%032x", i+1)
		p, err := reg.Register(ctx, machine.Machine{ID: id, Hostname: "h" + strconv.Itoa(i)}, 600*time.Second)
		require.NoError(b, err)
		b.Cleanup(func() { p.Close() })
		ps[i] = p
	}
	lead, err := reg.Campaign(ctx, "bench", 600*time.Second)
	require.NoError(b, err)
	b.Cleanup(func() { _ = lead.Resign(context.Background()) })
	_, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(b, err)
	var ops []registry.PlanOp
	var news []registry.NewUnit
	states := make([][]registry.UnitState, machines)
	for i := range n {
		name := fmt.Sprintf("u%06d.service", i)
		text := fmt.Sprintf("[Unit]\nDescription=unit %d\n[Service]\nExecStart=/bin/sleep %d\n", i, i)
		if i%10 == 3 {
			text += "[X-Fleet]\nMachineMetadata=rack=1\n"
		}
		f, err := unit.ParseString(text)
		require.NoError(b, err)
		h := f.Hash().String()
		news = append(news, registry.NewUnit{Unit: registry.Unit{Name: name, Hash: h, DesiredState: registry.StateLaunched}, Body: f.String()})
		m := i % machines
		ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{Machine: ps[m].Machine().ID, Name: name, Hash: h, DesiredState: registry.StateLaunched}})
		states[m] = append(states[m], registry.UnitState{Name: name, Hash: h, LoadState: "loaded", ActiveState: "active", SubState: "running"})
	}
	for start := 0; start < len(news); start += 5000 {
		for _, err := range reg.CreateUnits(ctx, news[start:min(len(news), start+5000)]) {
			require.NoError(b, err)
		}
	}
	_, err = reg.ApplyPlan(ctx, lead, ops)
	require.NoError(b, err)
	for i, p := range ps {
		require.NoError(b, p.PublishStates(ctx, states[i]))
	}
	return e, reg
}

// BenchmarkList times the listings fleetctl list-units and list-unit-files
// make, through the registry client and over HTTP, on a cluster of
// FLEET_BENCH_UNITS units (default 10,000; see listCluster).
//
//	go test ./api/ -run '^$' -bench BenchmarkList -benchtime 3x
func BenchmarkList(b *testing.B) {
	n := benchUnits(b, 10000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, reg := listCluster(ctx, b, n)
	rc := api.NewRegistryClient(reg)
	srv := httptest.NewServer(api.NewServer(rc))
	defer srv.Close()
	hc, err := api.NewHTTPClient(srv.URL, time.Minute)
	require.NoError(b, err)
	for _, c := range []struct {
		name string
		c    api.Client
	}{{"registry", rc}, {"http", hc}} {
		b.Run("units/"+c.name, func(b *testing.B) {
			for b.Loop() {
				us, err := c.c.Units(ctx)
				require.NoError(b, err)
				require.Len(b, us, n)
			}
		})
		b.Run("summaries/"+c.name, func(b *testing.B) {
			for b.Loop() {
				us, err := c.c.(api.UnitSummarizer).UnitSummaries(ctx)
				require.NoError(b, err)
				require.Len(b, us, n)
			}
		})
		if c.name == "http" {
			// fleet v1.0's fleetctl: pages of 100, each token sent back.
			b.Run("units/http-pages-of-100", func(b *testing.B) {
				for b.Loop() {
					got, tok := 0, ""
					for {
						url := srv.URL + "/fleet/v1/units"
						if tok != "" {
							url += "?nextPageToken=" + tok
						}
						resp, err := http.Get(url)
						require.NoError(b, err)
						var p api.UnitPage
						require.NoError(b, json.NewDecoder(resp.Body).Decode(&p))
						resp.Body.Close()
						got += len(p.Units)
						if tok = p.NextPageToken; tok == "" {
							break
						}
					}
					require.Equal(b, n, got)
				}
			})
		}
		b.Run("states/"+c.name, func(b *testing.B) {
			for b.Loop() {
				ss, err := c.c.UnitStates(ctx, api.StateFilter{})
				require.NoError(b, err)
				require.Len(b, ss, n)
			}
		})
	}
}

// BenchmarkListFleetctl times fleetctl binaries, as a user runs them,
// listing FLEET_BENCH_UNITS units (default 100,000; see listCluster) over
// the API of an apiserve binary (api/testdata/apiserve) of the same tree,
// in separate processes over one embedded etcd. FLEET_BENCH_TREES names
// the trees, "name=dir,name=dir", each dir holding fleetctl and apiserve;
// the runs alternate between them, so that a shared machine's load falls
// on each alike. It reports each tree's p50 per command.
//
//	go build -o /tmp/after/fleetctl ./cmd/fleetctl; go build -o /tmp/after/apiserve ./api/testdata/apiserve
//	FLEET_BENCH_TREES=before=/tmp/before,after=/tmp/after go test ./api/ -run '^$' -bench BenchmarkListFleetctl -benchtime 1x -timeout 30m
func BenchmarkListFleetctl(b *testing.B) {
	trees := os.Getenv("FLEET_BENCH_TREES")
	if trees == "" {
		b.Skip("FLEET_BENCH_TREES is not set: see the comment of BenchmarkListFleetctl")
	}
	n := benchUnits(b, 100000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e, _ := listCluster(ctx, b, n)
	type tree struct {
		name, dir, url string
		server         *os.Process
	}
	var ts []*tree
	for _, kv := range strings.Split(trees, ",") {
		name, dir, ok := strings.Cut(kv, "=")
		if !ok {
			b.Fatalf("FLEET_BENCH_TREES: %q is not name=dir", kv)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(b, err)
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(filepath.Join(dir, "apiserve"), "-etcd", strings.Join(e.Endpoints, ","), "-listen", addr)
		cmd.Stderr = os.Stderr
		require.NoError(b, cmd.Start())
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		require.Eventually(b, func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		}, 10*time.Second, 20*time.Millisecond)
		ts = append(ts, &tree{name: name, dir: dir, url: "http://" + addr, server: cmd.Process})
	}
	runs := 5
	if v := os.Getenv("FLEET_BENCH_RUNS"); v != "" {
		var err error
		if runs, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FLEET_BENCH_RUNS=%q: %v", v, err)
		}
	}
	// FLEET_BENCH_PAUSE (a duration) waits between rounds: past a minute,
	// fleetd's list cache has stopped and each listing reads etcd.
	var pause time.Duration
	if v := os.Getenv("FLEET_BENCH_PAUSE"); v != "" {
		var err error
		if pause, err = time.ParseDuration(v); err != nil {
			b.Fatalf("FLEET_BENCH_PAUSE=%q: %v", v, err)
		}
	}
	for b.Loop() {
		for _, command := range []string{"list-units", "list-unit-files"} {
			took := map[string][]time.Duration{}
			// CPU time of fleetctl, of the API server and of this process
			// (etcd, mostly): less swayed by a shared machine than wall time.
			cpu := map[string][3]time.Duration{}
			lines := map[string]int{}
			outputs := map[[sha256.Size]byte]string{}
			first := map[string]time.Duration{}
			for run := range runs + 1 {
				time.Sleep(pause)
				for _, t := range ts {
					cmd := exec.CommandContext(ctx, filepath.Join(t.dir, "fleetctl"), "--endpoint", t.url, "--request-timeout=120s", command, "--no-legend")
					var out countingWriter
					cmd.Stdout = &out
					cmd.Stderr = os.Stderr
					srv0, self0 := procCPU(b, t.server.Pid), selfCPU(b)
					start := time.Now()
					require.NoError(b, cmd.Run(), "%s %s", t.name, command)
					if run == 0 {
						// The first run fills what the server keeps (cold);
						// the timed runs are the ones after.
						first[t.name] = time.Since(start)
						continue
					}
					took[t.name] = append(took[t.name], time.Since(start))
					c := cpu[t.name]
					c[0] += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					c[1] += procCPU(b, t.server.Pid) - srv0
					c[2] += selfCPU(b) - self0
					cpu[t.name] = c
					lines[t.name] = out.lines
					outputs[[sha256.Size]byte(out.sum.Sum(nil))] = t.name
				}
			}
			if len(outputs) > 1 {
				b.Errorf("%s: the trees print different tables (%v)", command, slices.Collect(maps.Values(outputs)))
			}
			for _, t := range ts {
				ds := took[t.name]
				slices.Sort(ds)
				c := cpu[t.name]
				per := func(d time.Duration) time.Duration { return (d / time.Duration(runs)).Round(time.Millisecond) }
				b.Logf("%s %s: %d rows, first run %s, then p50 %s, runs %v; CPU per run: fleetctl %s, API server %s, etcd %s", t.name, command, lines[t.name], first[t.name].Round(time.Millisecond), ds[len(ds)/2].Round(time.Millisecond), ds, per(c[0]), per(c[1]), per(c[2]))
				b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), t.name+"-"+command+"-p50-ms")
			}
		}
	}
}

// procCPU returns the user and system CPU time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(b, err)
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(b, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(b, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

func selfCPU(b *testing.B) time.Duration { return procCPU(b, os.Getpid()) }

// countingWriter counts the lines written to it and hashes them.
type countingWriter struct {
	lines int
	sum   hash.Hash
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.sum == nil {
		c.sum = sha256.New()
	}
	c.sum.Write(p)
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// BenchmarkSubmit times submitting FLEET_BENCH_UNITS units (default
// 10,000) through the registry client: one CreateUnit per unit, 64 in
// flight (what the HTTP API does per PUT), against CreateUnits, 63 units to
// a transaction, 64 transactions in flight.
//
//	go test ./api/ -run '^$' -bench BenchmarkSubmit -benchtime 1x -cpuprofile /tmp/submit.prof
func BenchmarkSubmit(b *testing.B) {
	n := benchUnits(b, 10000)
	e := etcdtest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reg := registry.New(e.Client(b), registry.WithRequestTimeout(time.Minute))
	rc := api.NewRegistryClient(reg)
	units := func(run int) []*api.Unit {
		us := make([]*api.Unit, n)
		for i := range us {
			us[i] = &api.Unit{Name: fmt.Sprintf("r%d-u%06d.service", run, i), DesiredState: "launched", Options: []*api.UnitOption{
				{Section: "Unit", Name: "Description", Value: fmt.Sprintf("unit %d", i)},
				{Section: "Service", Name: "ExecStart", Value: fmt.Sprintf("/bin/sleep %d", i)},
			}}
		}
		return us
	}
	run := 0
	parallel := func(items int, f func(i int) error) error {
		work := make(chan int)
		errc := make(chan error, 64)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for i := range work {
					if err := f(i); err != nil {
						errc <- err
						return
					}
				}
			})
		}
		for i := range items {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errc)
		return <-errc
	}
	b.Run("one-per-unit", func(b *testing.B) {
		for b.Loop() {
			run++
			us := units(run)
			require.NoError(b, parallel(len(us), func(i int) error { _, err := rc.CreateUnit(ctx, us[i]); return err }))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
	})
	b.Run("batch", func(b *testing.B) {
		bc := rc.(api.UnitBatcher)
		for b.Loop() {
			run++
			us := units(run)
			require.NoError(b, parallel((len(us)+62)/63, func(i int) error {
				for _, r := range bc.CreateUnits(ctx, us[i*63:min(len(us), i*63+63)]) {
					if r.Err != nil {
						return r.Err
					}
				}
				return nil
			}))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
	})
}
