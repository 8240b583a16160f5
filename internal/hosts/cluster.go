package hosts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// poweroffTimeout bounds the clean poweroff of hosts in Close before they are killed.
	poweroffTimeout = 5 * time.Second
	// closeTimeout bounds the whole of Close and Cleanup.
	closeTimeout = time.Minute
)

// Cluster is a set of running hosts on one bridge, and optionally one dockerd serving them all. It holds
// the machine-wide lock (LockPath) until Close. Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	lock   *os.File      // flock on LockPath
	docker *dockerd      // nil without Config.Docker
	etcd   []*EtcdMember // Config.Etcd members, e1 first

	imagesMu sync.Mutex
	images   []image // built with BuildImage, for hosts added later (Config.DockerInHost)

	mu       sync.Mutex
	hosts    []*Host
	next     int // index of the last host created; never reused
	closed   bool
	closeErr error
}

// Start boots a cluster of n hosts named h1..hN and returns once the systemd of every host is running
// (or degraded: some unit failed but the boot is over) and, with Config.Etcd, the etcd cluster is
// healthy. Hosts boot in parallel, and alongside the etcd members.
//
// Before anything else it takes the machine-wide lock (waiting, until ctx ends, for another cluster on the
// machine to close), ensures the root file system (EnsureRootfs), and removes whatever an earlier,
// possibly killed, run left behind (Cleanup). Everything it creates is recorded under WorkDir/state
// first. It raises the machine's fs.inotify limits: each host holds a few inotify instances, and
// beyond about 25 hosts new ones die silently at boot under Debian's default of 128.
//
// On error, what was started is torn down again. Call Close when done.
func Start(ctx context.Context, cfg Config, n int) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > MaxHosts {
		return nil, fmt.Errorf("hosts: start %d hosts: want 0 to %d", n, MaxHosts)
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	start := time.Now()
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	lock, err := lockMachine(ctx, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Log.With("bridge", cfg.Bridge), lock: lock}
	if err := c.start(ctx, n); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w (then, tearing down: %v)", err, cerr)
		}
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	c.log.Info("cluster up", "hosts", n, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) start(ctx context.Context, n int) error {
	if err := ensureRootfs(ctx, c.cfg); err != nil {
		return err
	}
	if err := teardown(c.cfg, false); err != nil {
		return fmt.Errorf("clean up an earlier run: %w", err)
	}
	if err := raiseSysctl("fs.inotify.max_user_instances", 8192); err != nil {
		return err
	}
	if err := raiseSysctl("fs.inotify.max_user_watches", 1<<20); err != nil {
		return err
	}
	logBridgeNetfilter(c.log)
	state := c.cfg.stateDir()
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(state, "bridge"), []byte(c.cfg.Bridge+"\n"), 0o644); err != nil {
		return fmt.Errorf("record bridge: %w", err)
	}
	if c.cfg.Docker {
		// Started first and waited for last, to overlap its start-up with ours; its socket must
		// exist before nspawn can bind it into hosts.
		d, err := startDockerd(filepath.Join(state, "docker"))
		c.docker = d
		if err != nil {
			return err
		}
	}
	if err := createBridge(ctx, c.cfg.Bridge, c.cfg.gatewayIP()); err != nil {
		return err
	}
	// etcd starts alongside the hosts' boot; its members get addresses of their own on the bridge.
	etcdDone := make(chan error, 1)
	if c.cfg.Etcd > 0 {
		var err error
		if c.etcd, err = newEtcdMembers(c.cfg, c.log); err != nil {
			return err
		}
		for _, m := range c.etcd {
			if err := ip(ctx, "addr", "add", m.IP+"/24", "dev", c.cfg.Bridge); err != nil {
				return fmt.Errorf("etcd member %s address: %w", m.Name, err)
			}
		}
		go func() {
			errs := make([]error, len(c.etcd))
			var wg sync.WaitGroup
			for i, m := range c.etcd {
				wg.Go(func() { errs[i] = m.Start(ctx) })
			}
			wg.Wait()
			etcdDone <- errors.Join(errs...)
		}()
	} else {
		etcdDone <- nil
	}
	hosts := make([]*Host, n)
	for i := range hosts {
		hosts[i] = c.newHost()
		if err := c.createNetwork(ctx, hosts[i]); err != nil {
			return err
		}
	}
	if c.docker != nil {
		if err := c.docker.ready(ctx); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, h := range hosts {
		wg.Go(func() { errs[i] = h.boot(ctx) })
	}
	wg.Wait()
	c.mu.Lock()
	c.hosts = hosts
	c.mu.Unlock()
	errs = append(errs, <-etcdDone)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(c.etcd) > 0 {
		return c.WaitEtcd(ctx)
	}
	return nil
}

// newHost allocates the next host name and address.
func (c *Cluster) newHost() *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	name := fmt.Sprintf("h%d", c.next)
	h := &Host{
		Name:      name,
		IP:        c.cfg.hostIP(c.next),
		MachineID: machineID(name),
		cfg:       c.cfg,
		log:       c.log.With("host", name),
	}
	if c.docker != nil {
		h.dockerSocket = c.docker.socket
	}
	return h
}

// createNetwork records and creates h's network namespace and link.
func (c *Cluster) createNetwork(ctx context.Context, h *Host) error {
	if err := os.MkdirAll(h.stateDir(), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.stateDir(), "netns"), []byte(h.container()+"\n"), 0o644); err != nil {
		return fmt.Errorf("record netns: %w", err)
	}
	return createHostNetwork(ctx, h.container(), h.veth(), c.cfg.Bridge, h.IP, c.cfg.gatewayIP())
}

// AddHost boots one more host, named after the last one created (h3 after h1, h2), and returns it
// once its systemd is running. On error the new host is torn down again.
func (c *Cluster) AddHost(ctx context.Context) (*Host, error) {
	c.mu.Lock()
	closed, next := c.closed, c.next
	c.mu.Unlock()
	if closed {
		return nil, errors.New("add host: cluster closed")
	}
	if next >= MaxHosts {
		return nil, fmt.Errorf("add host: cluster has had %d hosts, the most a /24 allows", MaxHosts)
	}
	h := c.newHost()
	err := c.createNetwork(ctx, h)
	if err == nil {
		err = h.boot(ctx)
	}
	if err == nil {
		err = c.buildImagesOn(ctx, h)
	}
	if err == nil {
		c.mu.Lock()
		if c.closed {
			err = errors.New("cluster closed while booting")
		} else {
			c.hosts = append(c.hosts, h)
		}
		c.mu.Unlock()
	}
	if err != nil {
		// boot left the host down; Close's teardown removes anything else left on any path.
		return nil, errors.Join(fmt.Errorf("add host %s: %w", h.Name, err), h.Kill(), deleteNetns(context.WithoutCancel(ctx), h.container()))
	}
	return h, nil
}

// Hosts returns the cluster's hosts in the order they were created.
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.hosts)
}

// Host returns the host with the given name ("h1"), or nil.
func (c *Cluster) Host(name string) *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// GatewayIP returns the bridge's address, the hosts' default gateway. Servers the hosts must reach
// (etcd in tests) listen there, on the machine.
func (c *Cluster) GatewayIP() string { return c.cfg.gatewayIP() }

// DockerInHost reports whether every host runs a dockerd of its own (Config.DockerInHost).
func (c *Cluster) DockerInHost() bool { return c.cfg.DockerInHost }

// DockerSocket returns the machine-side path of the shared dockerd's socket (seen as /run/docker.sock
// inside hosts), or "" without Config.Docker.
func (c *Cluster) DockerSocket() string {
	if c.docker == nil {
		return ""
	}
	return c.docker.socket
}

// Close powers all hosts off (killing those not down within a few seconds), stops dockerd and its
// containers, kills the etcd members, removes the network namespaces, bridge, cgroups and mounts,
// and releases the machine-wide lock. Logs (*.log) stay in WorkDir/state until the next Start. Close is idempotent; later calls return the first
// call's result.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	hosts := c.hosts
	c.mu.Unlock()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts)+2)
	stopCtx, cancel := context.WithTimeout(context.Background(), poweroffTimeout)
	defer cancel()
	for i, h := range hosts {
		wg.Go(func() {
			if err := h.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs[i] = err // a host too slow to power off was killed: not an error of Close
			}
		})
	}
	wg.Wait()
	if c.docker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), poweroffTimeout)
		errs[len(hosts)] = c.docker.stop(ctx)
		cancel()
	}
	// etcd after the hosts, whose fleetds may still talk to it while they stop. Killed, not
	// stopped: its data goes, and a leader stopping cleanly waits seconds to hand over to peers
	// that are stopping too.
	for _, m := range c.etcd {
		errs[len(hosts)] = errors.Join(errs[len(hosts)], m.Kill())
	}
	errs[len(hosts)+1] = teardown(c.cfg, true)
	err := errors.Join(errs...)
	if lerr := c.lock.Close(); lerr != nil && err == nil {
		err = fmt.Errorf("release lock: %w", lerr)
	}
	c.mu.Lock()
	c.closeErr = err
	c.mu.Unlock()
	c.log.Info("cluster closed", "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}

// Cleanup removes whatever a previous run left behind, from its records in WorkDir/state and, for the
// bridge and network namespaces, by name: processes (host containers, dockerd and its containers),
// cgroups, mounts, network namespaces fleet-h*, the bridge, and the state itself. The root file system
// cache stays. It is safe to call when there is nothing to remove. It takes the machine-wide lock, so it
// waits, until ctx ends, for a running cluster (of this process too) to close.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	lock, err := lockMachine(ctx, cfg.Log)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer lock.Close()
	if err := teardown(cfg, false); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// teardown removes everything a run created, whether it is still running or was killed. The caller
// holds the machine-wide lock, so nothing found belongs to a live cluster. Processes go first (they hold
// mounts and network namespaces), then mounts, network and state. keepLogs keeps *.log files.
func teardown(cfg Config, keepLogs bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	state := cfg.stateDir()
	var errs []error

	// Recorded processes: hosts' nspawn and systemd, dockerd. SIGKILL is enough: nothing of a run is
	// kept, and the cgroup sweep below waits for them to be gone.
	for _, rec := range sortedGlob(filepath.Join(state, "*", "*.pid")) {
		killRecord(rec)
	}
	// Every process in our cgroups, including what no record names: a process forked before it
	// could be recorded, containerd and its shims, Docker containers.
	errs = append(errs, killCgroups(allCgroupTrees(), exitTimeout))

	for _, d := range sortedGlob(propagateDir(namePrefix + "h*")) {
		errs = append(errs, os.RemoveAll(d))
	}

	netns := listNetns(namePrefix + "h")
	for _, rec := range sortedGlob(filepath.Join(state, "*", "netns")) {
		if b, err := os.ReadFile(rec); err == nil {
			netns = append(netns, strings.TrimSpace(string(b)))
		}
	}
	slices.Sort(netns)
	for _, ns := range slices.Compact(netns) {
		errs = append(errs, deleteNetns(ctx, ns))
	}
	links := []string{cfg.Bridge}
	if b, err := os.ReadFile(filepath.Join(state, "bridge")); err == nil {
		links = append(links, strings.TrimSpace(string(b)))
	}
	// Veths whose namespace is gone normally go with it; these are strays.
	for _, l := range sortedGlob("/sys/class/net/v" + namePrefix + "h*") {
		links = append(links, filepath.Base(l))
	}
	slices.Sort(links)
	for _, l := range slices.Compact(links) {
		errs = append(errs, deleteLink(ctx, l))
	}

	if keepLogs {
		errs = append(errs, removeAllButLogs(state))
	} else {
		errs = append(errs, removeTree(state))
	}
	return errors.Join(errs...)
}

// removeAllButLogs unmounts everything under dir and removes all of it but *.log files.
func removeAllButLogs(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	var errs []error
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		switch {
		case err != nil:
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		case e.IsDir() && path != dir && !hasLogs(path):
			errs = append(errs, os.RemoveAll(path))
			return filepath.SkipDir
		case !e.IsDir() && !strings.HasSuffix(path, ".log"):
			errs = append(errs, os.Remove(path))
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// hasLogs reports whether dir holds a *.log file directly.
func hasLogs(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	return len(m) > 0
}

// logBridgeNetfilter says when bridged traffic goes through iptables: a FORWARD policy of DROP (which a
// dockerd with iptables enabled sets) then cuts the hosts off from each other. The setting is the
// machine's, and other users may depend on it: it is only reported.
func logBridgeNetfilter(log *slog.Logger) {
	if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && strings.TrimSpace(string(b)) == "1" {
		log.Debug("bridged traffic passes iptables (net.bridge.bridge-nf-call-iptables=1): " +
			"hosts cannot reach each other if the FORWARD chain drops it")
	}
}
