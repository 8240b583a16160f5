package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// BulkSection is the section of BENCHMARKS.md the bulk benchmark writes.
const BulkSection = "real-bulk"

// Figures of CoreOS fleet v1.0 measured on this machine for issue 11, as a
// reference: same hosts, same unit files, the same hour as "ours then".
const (
	FleetV1Submit500 = 10500 * time.Millisecond // fleetctl start --no-block of 500 files returns (3 hosts)
	FleetV1Active500 = 27500 * time.Millisecond // those 500 active in systemd
	FleetV1Submit300 = 4100 * time.Millisecond  // 300 files, 10 hosts
	FleetV1Active300 = 17100 * time.Millisecond
)

// BulkRun is one cluster the bulk benchmark boots: Hosts real hosts, Units
// unit files started at once.
type BulkRun struct {
	Hosts, Units int
}

// BulkConfig says what the bulk benchmark measures.
type BulkConfig struct {
	Runs []BulkRun
	// ModuleRoot is the fleet module's root, where fleetd and fleetctl are
	// built from.
	ModuleRoot string
	// PerfDir, when set, is where `perf record -a -g` writes a profile of
	// the whole machine (fleetd, fleetctl, systemd, etcd) during our bulk
	// start of each run, until every unit is active: read it with
	// `perf report -i FILE --sort comm,dso`.
	PerfDir string
	// Before, when set, is a fleetctl binary of an earlier commit, timed
	// first on the same hosts (against this commit's fleetd).
	Before string
	// FleetV1, when set, is CoreOS fleet v1.0's fleetctl binary: on the
	// first run's hosts it then also runs fleet v1.0's fleetctl against our
	// API and records what each command did.
	FleetV1 string
}

// BulkFigures are one run's figures.
type BulkFigures struct {
	Hosts, Units int
	// Our fleetctl's.
	StartFigures
	// Before: the same with the fleetctl of an earlier commit, if given.
	Before *StartFigures `json:",omitempty"`
	// Baseline: systemd alone: the same unit files written into the hosts
	// as fleet placed them, one daemon-reload and one `systemctl start
	// --no-block` per host, all hosts at once, until every unit is active.
	Baseline time.Duration
	// BaselineReload and BaselineStart: the last host's daemon-reload, and
	// its systemctl start --no-block, returned.
	BaselineReload, BaselineStart time.Duration
	// Split is how many units each host ran.
	Split []int
	// Exec is what running one command in a host costs (nsenter); Submit
	// and Destroy include it once.
	Exec time.Duration
}

// StartFigures time one fleetctl's bulk start and destroy, from the
// command's start.
type StartFigures struct {
	// Submit: `fleetctl start --no-block` of every unit file returned.
	Submit time.Duration
	// Placed: the engine's last placement was written (seen in etcd).
	Placed time.Duration
	// Active: every unit active in its host's systemd (read from the
	// hosts with systemctl).
	Active time.Duration
	// Destroy: `fleetctl destroy` of every unit returned; Gone: none is
	// active in any host any more.
	Destroy, Gone time.Duration
	// SubmitTrace and DestroyTrace say where the command's time went: its
	// requests (fleetctl --debug, with the server's Server-Timing), its own
	// CPU, and the CPU of every process on the machine meanwhile.
	SubmitTrace, DestroyTrace string `json:",omitempty"`
	// SubmitAlone: `fleetctl submit` of the same files (nothing placed or
	// started in answer) returned, before the start; with its trace.
	SubmitAlone      time.Duration `json:",omitempty"`
	SubmitAloneTrace string        `json:",omitempty"`
}

// fleetctlRun is one fleetctl command timed in the first host.
type fleetctlRun struct {
	start    time.Time
	took     time.Duration
	out      string        // its output, without the lines the benchmark adds
	cpu      time.Duration // fleetctl's own user and system time
	requests []string      // its --debug lines: each request, its time and the server's
	shares   []cpuShare    // every process's CPU meanwhile
	window   time.Duration // what shares cover: the command and reading /proc around it
	// before and beforeWindow: the same in the second before the command.
	before       []cpuShare
	beforeWindow time.Duration
}

// runFleetctl runs fleetctl with args in the first host as a user would,
// with --debug (every request and its time) and under a shell that tells
// its CPU time, and snapshots every process's CPU around it.
func runFleetctl(ctx context.Context, hs []*hosts.Host, fleetctl []string, args ...string) (fleetctlRun, error) {
	var r fleetctlRun
	cmd := append([]string{"sh", "-c", `"$@"; s=$?; times; exit $s`, "sh"}, fleetctl...)
	cmd = append(append(cmd, "--debug"), args...)
	a := snapCPU(hs)
	// What the cluster does anyway, a second before the command.
	time.Sleep(time.Second)
	b := snapCPU(hs)
	r.before = cpuWindow(a, b, hs[0].Name, 0)
	r.beforeWindow = b.at.Add(b.took).Sub(a.at)
	a = b
	r.start = time.Now()
	out, err := hs[0].Exec(ctx, cmd...)
	r.took = time.Since(r.start)
	b = snapCPU(hs)
	if err != nil {
		return r, err
	}
	var keep []string
	var times []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "DEBUG: "):
			r.requests = append(r.requests, strings.TrimPrefix(l, "DEBUG: "))
		case timesLine.MatchString(l):
			times = append(times, l)
		default:
			keep = append(keep, l)
		}
	}
	if len(times) == 2 {
		// times: the shell's user and system time, then its children's.
		m := timesLine.FindStringSubmatch(times[1])
		for _, i := range []int{1, 3} {
			mins, _ := strconv.Atoi(m[i])
			sec, _ := strconv.ParseFloat(m[i+1], 64)
			r.cpu += time.Duration(mins)*time.Minute + time.Duration(sec*float64(time.Second))
		}
	}
	r.out = strings.Join(keep, "\n")
	r.shares = cpuWindow(a, b, hs[0].Name, r.cpu)
	r.window = b.at.Add(b.took).Sub(a.at)
	return r, nil
}

// debugFrom is the start of a step in a fleetctl --debug line.
var debugFrom = regexp.MustCompile(`, from (\d\d:\d\d:\d\d\.\d+)`)

// timesLine is a line of the shell's times: "0m0.120000s 0m0.030000s".
var timesLine = regexp.MustCompile(`^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$`)

// trace words where the command's time went.
func (r fleetctlRun) trace() string {
	var reqs []string
	for i, l := range r.requests {
		if i == 8 {
			reqs = append(reqs, fmt.Sprintf("... %d lines in all", len(r.requests)))
			break
		}
		// The wall-clock time a step started, as from the command's start.
		if m := debugFrom.FindStringSubmatchIndex(l); m != nil {
			y, mo, d := r.start.Date()
			if at, err := time.ParseInLocation("2006-01-02 "+api.DebugClock, fmt.Sprintf("%04d-%02d-%02d %s", y, mo, d, l[m[2]:m[3]]), r.start.Location()); err == nil {
				l = l[:m[0]] + ", at +" + ms(at.Sub(r.start)) + l[m[1]:]
			}
		}
		reqs = append(reqs, l)
	}
	return fmt.Sprintf("steps: %s. fleetctl's own CPU %s. CPU meanwhile (%s incl. reading /proc): %s. In the second before (%s): %s",
		strings.Join(reqs, ", "), ms(r.cpu), ms(r.window), cpuLine(r.shares, r.window, runtime.NumCPU()),
		ms(r.beforeWindow), cpuLine(r.before, r.beforeWindow, runtime.NumCPU()))
}

// BulkResult is what RunBulk measured.
type BulkResult struct {
	Runs []BulkFigures
	// FleetV1 is what CoreOS fleet v1.0's fleetctl did against our API (if
	// BulkConfig.FleetV1 was set).
	FleetV1 []FleetV1Command `json:",omitempty"`
	Notes   []string
}

// FleetV1Command is one run of fleet v1.0's fleetctl against our API.
type FleetV1Command struct {
	Command string
	Exit    int
	Took    time.Duration
	Output  string // its first lines
}

// unitsDir is where the unit files are, inside the first host: fleetctl
// runs there, as a user on a cluster machine would.
const unitsDir = "/root/bulk"

// RunBulk boots each run's real hosts (systemd-nspawn, fleetd as
// fleet.service) and times what a user's bulk start costs there against
// systemd alone on the same hosts. It needs root, and waits for the
// machine-wide hosts lock if other tests hold it.
func RunBulk(ctx context.Context, cfg BulkConfig, log *slog.Logger) (*BulkResult, error) {
	binDir, err := hostBinaries(ctx, cfg.ModuleRoot, "bulk", log)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	r := &BulkResult{}
	for i, run := range cfg.Runs {
		fleetV1 := ""
		if i == 0 {
			fleetV1 = cfg.FleetV1
		}
		f, err := bulkRun(ctx, run, binDir, cfg.Before, fleetV1, cfg.PerfDir, r, log)
		if err != nil {
			return r, fmt.Errorf("%d units on %d hosts: %w", run.Units, run.Hosts, err)
		}
		r.Runs = append(r.Runs, *f)
	}
	return r, nil
}

func bulkRun(ctx context.Context, run BulkRun, binDir, before, fleetV1, perfDir string, r *BulkResult, log *slog.Logger) (*BulkFigures, error) {
	f := &BulkFigures{Hosts: run.Hosts, Units: run.Units}
	names := make([]string, run.Units)
	bodies := make(map[string]string, run.Units)
	for i := range names {
		names[i] = fmt.Sprintf("bulk-%03d.service", i)
		bodies[names[i]] = fmt.Sprintf("[Unit]\nDescription=fleet-bench bulk %d\n\n[Service]\nExecStart=/bin/sleep infinity\n", i)
	}
	// Each fleetctl, and systemd alone, gets hosts booted for it: on hosts
	// that had started and stopped the same units a minute before, the
	// same fleetctl took 1.4-1.6x as long to all active (BENCHMARKS.md,
	// "Bulk on 10 hosts vs 3"), which favoured whatever ran first.
	prepare := func(h1 *hosts.Host) error {
		for _, n := range names {
			if err := writeHostFile(h1, unitsDir+"/"+n, bodies[n]); err != nil {
				return err
			}
		}
		return nil
	}
	if before != "" {
		err := onFreshHosts(ctx, run, binDir, log, func(c *platform.Cluster, obs *observer) error {
			hs := c.Hosts()
			if err := prepare(hs[0]); err != nil {
				return err
			}
			// The fleetctl of an earlier commit, against this commit's fleetd.
			b, err := os.ReadFile(before)
			if err != nil {
				return err
			}
			if err := os.WriteFile(hs[0].Path("/root/fleetctl-before"), b, 0o755); err != nil {
				return err
			}
			sf, _, err := startAndDestroy(ctx, hs, obs, []string{"/root/fleetctl-before"}, run.Units, false, "", log)
			if err != nil {
				return fmt.Errorf("the earlier fleetctl: %w", err)
			}
			f.Before = &sf
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var split map[string][]string
	err := onFreshHosts(ctx, run, binDir, log, func(c *platform.Cluster, obs *observer) error {
		hs := c.Hosts()
		if err := prepare(hs[0]); err != nil {
			return err
		}
		t := time.Now()
		if _, err := c.Fleetctl(ctx, hs[0], "version"); err != nil {
			return err
		}
		f.Exec = time.Since(t)
		perfFile := ""
		if perfDir != "" {
			perfFile = filepath.Join(perfDir, fmt.Sprintf("bulk-%dx%d.perf.data", run.Hosts, run.Units))
		}
		sf, sp, err := startAndDestroy(ctx, hs, obs, []string{hosts.BinMount + "/fleetctl"}, run.Units, true, perfFile, log)
		if err != nil {
			return err
		}
		f.StartFigures, split = sf, sp
		for _, h := range hs {
			f.Split = append(f.Split, len(split[h.Name]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// systemd alone, the same units on the hosts fleet had placed them on
	// (by name: h1, h2, ...), fresh hosts again.
	err = onFreshHosts(ctx, run, binDir, log, func(c *platform.Cluster, _ *observer) error {
		hs := c.Hosts()
		base := make(map[string][]string, len(hs))
		baseBodies := make(map[string]string, len(bodies))
		for h, names := range split {
			for _, n := range names {
				b := "base-" + strings.TrimPrefix(n, "bulk-")
				base[h] = append(base[h], b)
				baseBodies[b] = bodies[n]
			}
		}
		w := watchActive(ctx, hs, "base-", run.Units)
		t := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(hs))
		reloaded := make([]time.Time, len(hs))
		started := make([]time.Time, len(hs))
		for i, h := range hs {
			wg.Go(func() { reloaded[i], started[i], errs[i] = systemdStart(ctx, h, base[h.Name], baseBodies) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for i := range hs {
			f.BaselineReload = max(f.BaselineReload, reloaded[i].Sub(t))
			f.BaselineStart = max(f.BaselineStart, started[i].Sub(t))
		}
		_, at, err := w.wait(5 * time.Minute)
		if err != nil {
			return fmt.Errorf("systemd alone: %w", err)
		}
		f.Baseline = at.Sub(t)
		log.Info("systemd alone: all active", "took", f.Baseline, "reloaded", f.BaselineReload, "started", f.BaselineStart)
		for _, h := range hs {
			wg.Go(func() { _ = systemdRemove(ctx, h, base[h.Name]) })
		}
		wg.Wait()
		if fleetV1 != "" {
			if err := prepare(hs[0]); err != nil {
				return err
			}
			cmds, err := runFleetV1(ctx, hs[0], fleetV1, run.Units, log)
			r.FleetV1 = cmds
			if err != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("fleet v1.0's fleetctl: %v", err))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// onFreshHosts boots run's hosts (waiting for the machine-wide hosts lock),
// with an etcd of their own and an observer of it, lets them settle, runs
// fn, and shuts them down.
func onFreshHosts(ctx context.Context, run BulkRun, binDir string, log *slog.Logger, fn func(c *platform.Cluster, obs *observer) error) error {
	ctx, cancel := context.WithCancel(ctx) // ends the observer's watches
	defer cancel()
	etcdDir, err := os.MkdirTemp("", "fleet-bench-etcd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(etcdDir)
	log.Info("booting hosts (waits for the machine-wide hosts lock if other tests hold it)", "hosts", run.Hosts)
	c, closeHosts, err := bootHosts(ctx, platform.Options{Hosts: hosts.Config{BinDir: binDir, Log: log}, N: run.Hosts, EtcdDir: etcdDir}, log)
	defer closeHosts()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.EtcdServers, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	reg := registry.New(cli)
	resp, err := cli.Get(ctx, "/")
	if err != nil {
		return err
	}
	obs := observe(ctx, reg, resp.Header.Revision)
	sleepCtx(ctx, 2*time.Second) // the cluster settles after boot
	return fn(c, obs)
}

// runFleetV1 runs CoreOS fleet v1.0's fleetctl in h against our fleetd
// (its default endpoint, our unix socket), a user's round of commands, and
// then its start --no-block and destroy of the bulk unit files.
func runFleetV1(ctx context.Context, h *hosts.Host, bin string, units int, log *slog.Logger) ([]FleetV1Command, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(h.Path("/root/fleetctl-v1"), b, 0o755); err != nil {
		return nil, err
	}
	if err := writeHostFile(h, "/root/hello.service", "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep infinity\n"); err != nil {
		return nil, err
	}
	files := make([]string, units)
	for i := range files {
		files[i] = fmt.Sprintf("%s/bulk-%03d.service", unitsDir, i)
	}
	var out []FleetV1Command
	for _, args := range [][]string{
		{"version"},
		{"list-machines"},
		{"start", "/root/hello.service"},
		{"list-units"},
		{"list-unit-files"},
		{"status", "hello.service"},
		{"stop", "hello.service"},
		{"start", "hello.service"},
		{"destroy", "hello.service"},
		append([]string{"start", "--no-block"}, files...),
		{"list-units", "--no-legend"},
		append([]string{"destroy"}, files...),
	} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		t := time.Now()
		o, err := h.Exec(cctx, append([]string{"/root/fleetctl-v1"}, args...)...)
		took := time.Since(t)
		cancel()
		c := FleetV1Command{Command: "fleetctl " + strings.Join(args, " "), Took: took, Output: firstLines(string(o), 3)}
		if len(args) > 20 {
			c.Command = strings.Join(append(append([]string{"fleetctl"}, args[:len(args)-units]...), fmt.Sprintf("(%d files)", units)), " ")
		}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			c.Exit = ee.ExitCode()
		case err != nil:
			return out, err
		}
		log.Info("fleet v1.0's fleetctl", "command", c.Command, "exit", c.Exit, "took", took.Round(time.Millisecond))
		out = append(out, c)
	}
	return out, nil
}

// firstLines returns the first n lines of s, on one line.
func firstLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = append(ls[:n], "...")
	}
	return clip(strings.Join(strings.Fields(strings.Join(ls, " / ")), " "))
}

// startAndDestroy runs fleetctl (the command, in the first host) as a user
// would: start --no-block of every unit file, then destroy of them all, and
// times both until the hosts' systemd shows the result. It returns which
// units ran where.
func startAndDestroy(ctx context.Context, hs []*hosts.Host, obs *observer, fleetctl []string, units int, submitOnly bool, perfFile string, log *slog.Logger) (StartFigures, map[string][]string, error) {
	var f StartFigures
	log.Info("fleetctl start --no-block", "fleetctl", fleetctl[0], "units", units, "hosts", len(hs))
	if submitOnly {
		// The same request with nothing placed or started in answer: what
		// the submission costs by itself on these hosts.
		run, err := runFleetctl(ctx, hs, fleetctl, "submit", unitsDir+"/*.service")
		if err != nil {
			return f, nil, err
		}
		f.SubmitAlone, f.SubmitAloneTrace = run.took, run.trace()
		log.Info("fleetctl submit returned", "took", run.took, "trace", f.SubmitAloneTrace)
		if _, err := runFleetctl(ctx, hs, fleetctl, "destroy", "bulk-*"); err != nil {
			return f, nil, err
		}
		sleepCtx(ctx, 2*time.Second)
	}
	stopPerf := func() {}
	if perfFile != "" {
		perf := exec.CommandContext(ctx, "perf", "record", "-a", "-g", "-F", "499", "-o", perfFile)
		if err := perf.Start(); err != nil {
			return f, nil, fmt.Errorf("perf record: %w", err)
		}
		var once sync.Once
		stopPerf = func() {
			once.Do(func() {
				_ = perf.Process.Signal(os.Interrupt)
				_ = perf.Wait()
				// Reported now: the hosts' binaries go with their
				// temporary directory.
				for name, args := range map[string][]string{
					".by-process.txt": {"--sort", "comm,dso"},
					".symbols.txt":    {"--no-children", "--sort", "comm,symbol", "-g", "none"},
				} {
					out, err := exec.CommandContext(ctx, "perf", append([]string{"report", "--stdio", "-i", perfFile}, args...)...).Output()
					if err != nil {
						log.Warn("perf report", "err", err)
					}
					_ = os.WriteFile(perfFile+name, out, 0o644)
				}
			})
		}
		defer stopPerf()
		sleepCtx(ctx, 500*time.Millisecond) // perf is recording
	}
	// The poller starts once the command returned: the count cannot be
	// reached before (the last unit is submitted by then), and ten hosts'
	// systemctl every 100 ms would compete with what is timed.
	run, err := runFleetctl(ctx, hs, fleetctl, "start", "--no-block", unitsDir+"/*.service")
	if err != nil {
		return f, nil, err
	}
	t := run.start
	f.Submit, f.SubmitTrace = run.took, run.trace()
	if n := strings.Count(run.out, "Triggered unit"); n != units {
		return f, nil, fmt.Errorf("fleetctl start triggered %d units, not %d: %s", n, units, clip(run.out))
	}
	log.Info("fleetctl start returned", "took", run.took, "trace", f.SubmitTrace)
	split, at, err := watchActive(ctx, hs, "bulk-", units).wait(5 * time.Minute)
	if err != nil {
		return f, nil, fmt.Errorf("start: %w", err)
	}
	f.Active = at.Sub(t)
	obs.mu.Lock()
	f.Placed = obs.lastPut.Sub(t)
	obs.mu.Unlock()
	log.Info("all active", "submit", f.Submit, "placed", f.Placed, "active", f.Active)
	stopPerf()

	sleepCtx(ctx, 2*time.Second)
	if run, err = runFleetctl(ctx, hs, fleetctl, "destroy", "bulk-*"); err != nil {
		return f, nil, err
	}
	t = run.start
	f.Destroy, f.DestroyTrace = run.took, run.trace()
	log.Info("fleetctl destroy returned", "took", run.took, "trace", f.DestroyTrace)
	if _, at, err = watchActive(ctx, hs, "bulk-", 0).wait(5 * time.Minute); err != nil {
		return f, nil, fmt.Errorf("destroy: %w", err)
	}
	f.Gone = at.Sub(t)
	log.Info("all gone", "destroy", f.Destroy, "gone", f.Gone)
	return f, split, nil
}

func writeHostFile(h *hosts.Host, path, body string) error {
	full := h.Path(path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(body), 0o644)
}

// systemdStart does in h what fleet's work amounts to, with systemd alone:
// unit files into /run/systemd/system, one daemon-reload, one start of all.
// It returns when the reload and the start command returned.
func systemdStart(ctx context.Context, h *hosts.Host, names []string, bodies map[string]string) (reloaded, started time.Time, err error) {
	if len(names) == 0 {
		return time.Now(), time.Now(), nil
	}
	for _, n := range names {
		if err := writeHostFile(h, "/run/systemd/system/"+n, bodies[n]); err != nil {
			return reloaded, started, err
		}
	}
	if _, err := h.Exec(ctx, "systemctl", "daemon-reload"); err != nil {
		return reloaded, started, err
	}
	reloaded = time.Now()
	_, err = h.Exec(ctx, append([]string{"systemctl", "start", "--no-block"}, names...)...)
	return reloaded, time.Now(), err
}

func systemdRemove(ctx context.Context, h *hosts.Host, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := h.Exec(ctx, append([]string{"systemctl", "stop"}, names...)...); err != nil {
		return err
	}
	for _, n := range names {
		_ = os.Remove(h.Path("/run/systemd/system/" + n))
	}
	_, err := h.Exec(ctx, "systemctl", "daemon-reload")
	return err
}

// activeWatch polls the hosts' systemd for active units of a name prefix
// until their number is the one wanted.
type activeWatch struct {
	done  chan struct{}
	at    time.Time
	split map[string][]string // host name -> its active units, at the end
	err   error
}

// watchActive starts polling every host every 100 ms, all hosts at once,
// until want units are active on them together (want 0: none is).
func watchActive(ctx context.Context, hs []*hosts.Host, prefix string, want int) *activeWatch {
	w := &activeWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			split := make(map[string][]string, len(hs))
			var mu sync.Mutex
			var wg sync.WaitGroup
			errs := make([]error, len(hs))
			for i, h := range hs {
				wg.Go(func() {
					names, err := activeUnits(ctx, h, prefix)
					mu.Lock()
					split[h.Name], errs[i] = names, err
					mu.Unlock()
				})
			}
			wg.Wait()
			now := time.Now()
			if err := errors.Join(errs...); err != nil {
				w.err = err
				return
			}
			n := 0
			for _, names := range split {
				n += len(names)
			}
			if n == want {
				w.at, w.split = now, split
				return
			}
			select {
			case <-ctx.Done():
				w.err = ctx.Err()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// wait blocks until the watch is over or timeout passes, and returns which
// units were active where and when the count was reached.
func (w *activeWatch) wait(timeout time.Duration) (map[string][]string, time.Time, error) {
	select {
	case <-w.done:
		return w.split, w.at, w.err
	case <-time.After(timeout):
		return nil, time.Time{}, fmt.Errorf("not reached after %s", timeout)
	}
}

// activeUnits lists the active units of h's systemd whose names start with
// prefix.
func activeUnits(ctx context.Context, h *hosts.Host, prefix string) ([]string, error) {
	out, err := h.Exec(ctx, "systemctl", "list-units", "--no-legend", "--plain", "--state=active", prefix+"*.service")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(l); len(fs) > 0 && strings.HasPrefix(fs[0], prefix) {
			names = append(names, fs[0])
		}
	}
	slices.Sort(names)
	return names, nil
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}

// BulkMarkdown renders the "Bulk work on real hosts" section.
func BulkMarkdown(env Env, r *BulkResult) string {
	var b bytes.Buffer
	b.WriteString("## Bulk work on real hosts\n\n")
	env.markdown(&b)
	b.WriteString("Real hosts (systemd-nspawn, real systemd, fleetd as fleet.service, one etcd outside them). Unit\n" +
		"files `bulk-NNN.service` (`ExecStart=/bin/sleep infinity`) in a directory of the first host; there\n" +
		"our fleetctl runs `fleetctl start --no-block '/root/bulk/*.service'` over fleetd's unix socket, as a\n" +
		"user would. *Active* is until every unit is active in its host's systemd, read from the hosts\n" +
		"(`systemctl list-units`, every 100 ms, all hosts at once), counted from the start of the command.\n" +
		"*systemd alone* is measured in the same run: the same unit files (named base-NNN) written into\n" +
		"`/run/systemd/system` of the host fleet had placed each on, one `daemon-reload` and one\n" +
		"`systemctl start --no-block` of all per host, all hosts at once, until all are active. Each fleetctl\n" +
		"and systemd alone get freshly booted hosts (the same units started a second time on the same hosts\n" +
		"took 1.4-1.6x as long). The poll starts once the command returned. CoreOS fleet\n" +
		"v1.0's figures are the reference measured on this machine for issue 11 (same hosts and units, another\n" +
		"day: this machine's speed varies by 2-4x between days).\n\n")
	b.WriteString("| hosts x units | fleetctl | start --no-block returns | last placement | all active | systemd alone (reload / start returned) | ours / systemd | destroy returns | none active | units per host | exec in a host |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Runs {
		split := make([]string, len(f.Split))
		for i, n := range f.Split {
			split[i] = fmt.Sprint(n)
		}
		row := func(which string, sf StartFigures) {
			ratio := "-"
			if f.Baseline > 0 {
				ratio = fmt.Sprintf("%.2fx", sf.Active.Seconds()/f.Baseline.Seconds())
			}
			fmt.Fprintf(&b, "| %d x %d | %s | %s | %s | %s | %s (%s / %s) | %s | %s | %s | %s | %s |\n", f.Hosts, f.Units, which, ms(sf.Submit), ms(sf.Placed),
				ms(sf.Active), ms(f.Baseline), ms(f.BaselineReload), ms(f.BaselineStart), ratio, ms(sf.Destroy), ms(sf.Gone), strings.Join(split, "/"), ms(f.Exec))
		}
		if f.Before != nil {
			row("before (the -before-fleetctl binary)", *f.Before)
		}
		row("this commit", f.StartFigures)
	}
	b.WriteString("\nCoreOS fleet v1.0 (reference, issue 11): 500 units on 3 hosts: start --no-block returns in " + ms(FleetV1Submit500) +
		", all active after " + ms(FleetV1Active500) + "; 300 units on 10 hosts: " + ms(FleetV1Submit300) + " and " + ms(FleetV1Active300) + ".\n")
	for _, f := range r.Runs {
		ref := FleetV1Submit500
		if f.Hosts >= 10 {
			ref = FleetV1Submit300
		}
		if f.Submit > 0 {
			fmt.Fprintf(&b, "- %d x %d: start --no-block %.1fx faster than fleet v1.0's; all active within %.2fx of systemd alone (goal: 1.2x).\n",
				f.Hosts, f.Units, ref.Seconds()/f.Submit.Seconds(), f.Active.Seconds()/max(f.Baseline.Seconds(), 1e-9))
		}
	}
	for _, f := range r.Runs {
		if f.SubmitAlone > 0 {
			fmt.Fprintf(&b, "- %d x %d: `fleetctl submit` of the same files, nothing placed in answer, returned in %s. Where the start's time went: %s\n",
				f.Hosts, f.Units, ms(f.SubmitAlone), f.SubmitTrace)
		}
	}
	if len(r.FleetV1) > 0 {
		b.WriteString("\nCoreOS fleet v1.0's own fleetctl against our fleetd (`-fleetv1-fleetctl`), run inside the first host\n" +
			"over its default endpoint (our unix socket), after the figures above. It is built from fleet's tag v1.0.0\n" +
			"(GOPATH build, `CGO_ENABLED=0`) with one change that lets today's Go run it at all: the duplicate `_` in\n" +
			"`genBase64enc` of `vendor/github.com/ugorji/go/codec/gen.go` (Go panics at init on an alphabet with a\n" +
			"duplicate symbol). `status` needs SSH to the unit's machine, as in fleet, and there is no SSH agent.\n\n" +
			"| command | exit code | took | output |\n|---|---|---|---|\n")
		for _, c := range r.FleetV1 {
			fmt.Fprintf(&b, "| `%s` | %d | %s | %s |\n", c.Command, c.Exit, ms(c.Took), strings.ReplaceAll(c.Output, "|", "\\|"))
		}
	}
	for _, n := range r.Notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}
