package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// RealConfig says what to measure on real systemd hosts.
type RealConfig struct {
	// Units is how many units one host starts (0: skip that part).
	Units int
	// IdleWindow is how long fleetd's idle CPU is measured with them running.
	IdleWindow time.Duration
	// LatencyRuns is how many single units are started one after another on
	// the idle cluster (0: skip).
	LatencyRuns int
	// ModuleRoot is the fleet module's root, where fleetd is built from.
	ModuleRoot string
}

// RunReal boots three real hosts (systemd-nspawn, real systemd, fleetd as
// fleet.service; the functional tests' platform) and measures fleetd
// there. It needs root, and waits for the machine-wide hosts lock if other
// tests hold it.
func RunReal(ctx context.Context, cfg RealConfig, log *slog.Logger) (*RealResult, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the observer's watches
	defer cancel()
	start := time.Now()
	r := &RealResult{Hosts: 3, Units: cfg.Units}
	binDir, err := hostBinaries(ctx, cfg.ModuleRoot, "real-systemd", log)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	etcdDir, err := os.MkdirTemp("", "fleet-bench-etcd")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(etcdDir)
	log.Info("booting 3 hosts (waits for the machine-wide hosts lock if other tests hold it)")
	t := time.Now()
	c, closeHosts, err := bootHosts(ctx, platform.Options{Hosts: hosts.Config{BinDir: binDir, Log: log}, N: 3, EtcdDir: etcdDir}, log)
	defer closeHosts()
	if err != nil {
		return nil, err
	}
	r.BootTime = time.Since(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.EtcdServers, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	reg := registry.New(cli)
	cl := api.NewRegistryClient(reg)
	resp, err := cli.Get(ctx, "/")
	if err != nil {
		return nil, err
	}
	obs := observe(ctx, reg, resp.Header.Revision)

	if cfg.Units > 0 {
		if err := r.manyUnits(ctx, c, cl, obs, cfg, log); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%d units on one host: %v", cfg.Units, err))
		}
	}
	if cfg.LatencyRuns > 0 {
		if err := r.latency(ctx, cl, obs, cfg.LatencyRuns, log); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("start-to-active latency: %v", err))
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// hostProc reads /proc/<pid> inside host h (pid as the host sees it).
func hostProc(ctx context.Context, h *hosts.Host, pid string) (procStat, error) {
	var st procStat
	out, err := h.Exec(ctx, "cat", "/proc/"+pid+"/stat", "/proc/"+pid+"/status")
	if err != nil {
		return st, err
	}
	s := string(out)
	i := strings.LastIndexByte(s[:strings.Index(s, "\n")], ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return st, fmt.Errorf("malformed /proc/%s/stat in %s", pid, h.Name)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	st.CPU = time.Duration(ut+sy) * time.Second / clockTick
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "VmRSS" || k == "VmHWM") {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if k == "VmRSS" {
				st.RSS = kb << 10
			} else {
				st.PeakRSS = kb << 10
			}
		}
	}
	return st, nil
}

func fleetdPID(ctx context.Context, h *hosts.Host) (string, error) {
	out, err := h.Exec(ctx, "systemctl", "show", "--value", "-p", "MainPID", "fleet.service")
	if err != nil {
		return "", err
	}
	pid := strings.TrimSpace(string(out))
	if pid == "" || pid == "0" {
		return "", fmt.Errorf("fleet.service does not run on %s", h.Name)
	}
	return pid, nil
}

// manyUnits starts cfg.Units units on h2, measures what that costs, then
// fleetd's idle CPU and memory with them running, and removes them.
func (r *RealResult) manyUnits(ctx context.Context, c *platform.Cluster, cl api.Client, obs *observer, cfg RealConfig, log *slog.Logger) error {
	h := c.Host("h2")
	// h2's fleetd runs no engine: what is measured is its agent (and API).
	conf := c.FleetConf(h)
	conf["disable_engine"] = "true"
	if err := c.InstallFleet(ctx, h, conf); err != nil {
		return err
	}
	if _, err := h.Exec(ctx, "systemctl", "restart", "fleet.service"); err != nil {
		return err
	}
	if err := c.WaitMachines(ctx, 3, time.Minute); err != nil {
		return err
	}
	pid, err := fleetdPID(ctx, h)
	if err != nil {
		return err
	}
	tmpl := "[Unit]\nDescription=fleet-bench sleeper %i\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nMachineMetadata=hostname=" + h.Name + "\n"
	f, err := parseOptions(tmpl)
	if err != nil {
		return err
	}
	if _, err := cl.CreateUnit(ctx, &api.Unit{Name: "sleeper@.service", Options: f}); err != nil {
		return err
	}
	f0, err := hostProc(ctx, h, pid)
	if err != nil {
		return err
	}
	s0, err := hostProc(ctx, h, "1")
	if err != nil {
		return err
	}
	names := make([]string, cfg.Units)
	for i := range names {
		names[i] = fmt.Sprintf("sleeper@%d.service", i)
	}
	log.Info("starting units on one real host", "units", cfg.Units, "host", h.Name)
	t := time.Now()
	if err := forEach(names, 16, func(n string) error {
		_, err := cl.CreateUnit(ctx, &api.Unit{Name: n, DesiredState: "launched"})
		return err
	}); err != nil {
		return err
	}
	allActive := func(o *observer) bool {
		for _, n := range names {
			if _, ok := o.activeOn[n][h.MachineID]; !ok {
				return false
			}
		}
		return true
	}
	if !obs.waitFor(ctx, 5*time.Minute, allActive) {
		return fmt.Errorf("not all active on %s after 5 minutes", h.Name)
	}
	obs.mu.Lock()
	var last time.Time
	for _, n := range names {
		last = maxTime(last, obs.activeOn[n][h.MachineID])
	}
	obs.mu.Unlock()
	r.StartAll = last.Sub(t)
	sleepCtx(ctx, 2*time.Second) // the last states are published, signals drained
	f1, err := hostProc(ctx, h, pid)
	if err != nil {
		return err
	}
	s1, err := hostProc(ctx, h, "1")
	if err != nil {
		return err
	}
	r.StartCPU, r.SystemdCPU = f1.CPU-f0.CPU, s1.CPU-s0.CPU
	log.Info("units active", "took", r.StartAll.Round(time.Millisecond), "fleetd_cpu", r.StartCPU, "systemd_cpu", r.SystemdCPU)

	// Idle, with the units running.
	sleepCtx(ctx, 3*time.Second)
	i0, err := hostProc(ctx, h, pid)
	if err != nil {
		return err
	}
	t = time.Now()
	sleepCtx(ctx, cfg.IdleWindow)
	i1, err := hostProc(ctx, h, pid)
	if err != nil {
		return err
	}
	r.IdleWindow = time.Since(t).Round(time.Second)
	r.IdleCPU = (i1.CPU - i0.CPU).Seconds() / time.Since(t).Seconds()
	r.RSS = i1.RSS
	r.Notes = append(r.Notes, fmt.Sprintf("fleetd's CPU time is read from /proc in 10 ms ticks: over %s, one tick is %.3f%% of a core.", r.IdleWindow, 100*0.01/r.IdleWindow.Seconds()))
	log.Info("idle measured", "cpu", r.IdleCPU, "rss", r.RSS)

	// Remove them, so the latency runs find an idle cluster.
	if err := forEach(append(names, "sleeper@.service"), 16, func(n string) error {
		return cl.DestroyUnit(ctx, n)
	}); err != nil {
		return err
	}
	if !obs.waitFor(ctx, 5*time.Minute, func(o *observer) bool {
		for _, n := range names {
			if len(o.activeOn[n]) > 0 {
				return false
			}
		}
		return true
	}) {
		return errors.New("units not stopped after 5 minutes")
	}
	return nil
}

// latency starts one unit at a time on the idle cluster and times submit
// (desired state launched) to its active state published in etcd.
func (r *RealResult) latency(ctx context.Context, cl api.Client, obs *observer, runs int, log *slog.Logger) error {
	sleepCtx(ctx, 2*time.Second)
	for i := range runs {
		name := fmt.Sprintf("latency-%d.service", i)
		opts, err := parseOptions("[Service]\nExecStart=/bin/sleep infinity\n")
		if err != nil {
			return err
		}
		t := time.Now()
		if _, err := cl.CreateUnit(ctx, &api.Unit{Name: name, DesiredState: "launched", Options: opts}); err != nil {
			return err
		}
		if !obs.waitFor(ctx, 30*time.Second, func(o *observer) bool { return len(o.activeOn[name]) > 0 }) {
			return fmt.Errorf("%s not active after 30s", name)
		}
		obs.mu.Lock()
		for _, at := range obs.activeOn[name] {
			r.LatencyRuns = append(r.LatencyRuns, at.Sub(t))
		}
		obs.mu.Unlock()
		if err := cl.DestroyUnit(ctx, name); err != nil {
			return err
		}
		if !obs.waitFor(ctx, 30*time.Second, func(o *observer) bool { return len(o.activeOn[name]) == 0 }) {
			return fmt.Errorf("%s not stopped after 30s", name)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	log.Info("latency measured", "p50", pct(r.LatencyRuns, 50), "p99", pct(r.LatencyRuns, 99))
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// forEach runs f on every item, workers at a time, and returns the first
// error.
func forEach[T any](items []T, workers int, f func(T) error) error {
	work := make(chan T)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for it := range work {
				if err := f(it); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return first
}

// FindModuleRoot returns the directory of the go.mod above dir.
func FindModuleRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found")
		}
		dir = parent
	}
}

// hostBinaries builds the fleetd and fleetctl that real-host benchmarks
// install into their hosts, into a new directory; remove it when done. It
// refuses without root: the hosts are systemd-nspawn containers.
func hostBinaries(ctx context.Context, moduleRoot, benchmark string, log *slog.Logger) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("the %s benchmark needs root (it boots systemd-nspawn hosts)", benchmark)
	}
	binDir, err := os.MkdirTemp("", "fleet-bench-bin")
	if err != nil {
		return "", err
	}
	log.Info("building fleetd and fleetctl for the hosts")
	if err := platform.BuildBinaries(ctx, moduleRoot, binDir); err != nil {
		os.RemoveAll(binDir)
		return "", err
	}
	return binDir, nil
}

// bootHosts starts the hosts (and etcd) of a real-host benchmark. closeHosts,
// never nil, shuts them down, logging a failure; defer it before checking err.
func bootHosts(ctx context.Context, opts platform.Options, log *slog.Logger) (*platform.Cluster, func(), error) {
	c, err := platform.Start(ctx, opts)
	closeHosts := func() {
		if c == nil {
			return
		}
		if err := c.Close(); err != nil {
			log.Warn("close hosts", "err", err)
		}
	}
	if err != nil {
		return nil, closeHosts, fmt.Errorf("boot hosts: %w", err)
	}
	return c, closeHosts, nil
}
