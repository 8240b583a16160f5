package hosts_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// helperEnv makes the test binary a helper that starts a cluster and waits to be killed, for
// TestStartAfterKilledRun.
const helperEnv = "FLEET_HOSTS_TEST_KILLED_RUN"

// testTimeout bounds a test, waiting for the machine-wide hosts lock
// included: under go test -p 2 the functional suite (several minutes of
// clusters, one after another) may hold it most of that time.
const testTimeout = 20 * time.Minute

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(killedRunHelper())
	}
	goleak.VerifyTestMain(m)
}

// requireHosts skips the test where simulated hosts cannot run (not root, no systemd-nspawn), unless
// CI=true: CI must run these tests, and EnsureRootfs installs what is missing there.
func requireHosts(t *testing.T, docker bool) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case !ci && !exists("/usr/bin/systemd-nspawn"):
		missing = "systemd-nspawn (apt-get install systemd-container)"
	case !ci && docker && !exists("/usr/bin/docker"):
		missing = "docker (apt-get install docker.io)"
	default:
		return
	}
	if ci {
		t.Fatalf("simulated hosts need %s, and CI=true", missing)
	}
	t.Skipf("simulated hosts need %s", missing)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func testConfig(t *testing.T) hosts.Config {
	return hosts.Config{Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startCluster starts n hosts (the first run builds the root file system, about 40 s), logs how long
// the boot took, and closes the cluster at the end of the test, logging each host's journal if the
// test failed.
func startCluster(t *testing.T, ctx context.Context, cfg hosts.Config, n int) *hosts.Cluster {
	t.Helper()
	require.NoError(t, hosts.EnsureRootfs(ctx, cfg))
	start := time.Now()
	c, err := hosts.Start(ctx, cfg, n)
	require.NoError(t, err)
	t.Logf("booted %d hosts in %v", n, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range c.Hosts() {
				t.Logf("journal of %s:\n%s", h.Name, h.Journal(context.Background()))
			}
		}
		require.NoError(t, c.Close())
	})
	return c
}

func exec1(t *testing.T, ctx context.Context, h *hosts.Host, args ...string) string {
	t.Helper()
	out, err := h.Exec(ctx, args...)
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// reach reports whether a TCP connection from h to addr succeeds within a second.
func reach(ctx context.Context, h *hosts.Host, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	_, err := h.Exec(ctx, "timeout", "1", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	return err
}

func TestCluster(t *testing.T) {
	requireHosts(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := testConfig(t)
	c := startCluster(t, ctx, cfg, 2)
	h1, h2 := c.Host("h1"), c.Host("h2")
	require.NotNil(t, h1)
	require.NotNil(t, h2)
	require.Len(t, c.Hosts(), 2)
	require.Nil(t, c.Host("h3"))
	require.Equal(t, "10.77.0.1", c.GatewayIP())
	require.Empty(t, c.DockerSocket())

	t.Run("identity", func(t *testing.T) {
		seen := map[string]string{}
		for _, h := range c.Hosts() {
			id := exec1(t, ctx, h, "cat", "/etc/machine-id")
			require.Equal(t, h.MachineID, id)
			require.Len(t, id, 32)
			require.NotContains(t, seen, id, "machine-id of %s also belongs to %s", h.Name, seen[id])
			seen[id] = h.Name
			require.Equal(t, h.Name, exec1(t, ctx, h, "hostname"))
			require.Contains(t, exec1(t, ctx, h, "ip", "-4", "-o", "addr", "show", "eth0"), " "+h.IP+"/24 ")
			b, err := os.ReadFile(h.Path("/etc/machine-id"))
			require.NoError(t, err)
			require.Equal(t, id, strings.TrimSpace(string(b)))
		}
		require.NotEqual(t, h1.IP, h2.IP)
	})

	t.Run("systemd", func(t *testing.T) {
		for _, h := range c.Hosts() {
			require.Contains(t, []string{"running", "degraded"}, exec1(t, ctx, h, "systemctl", "is-system-running"))
			exec1(t, ctx, h, "systemd-run", "--unit=probe", "--quiet", "/bin/sleep", "infinity")
			require.Equal(t, "active", exec1(t, ctx, h, "systemctl", "is-active", "probe.service"))
		}
	})

	t.Run("bus from the machine", func(t *testing.T) {
		conn, err := sd.NewConnection(func() (*godbus.Conn, error) {
			bus, err := godbus.Dial(h1.BusAddress())
			if err != nil {
				return nil, err
			}
			if err := bus.Auth([]godbus.Auth{godbus.AuthExternal("0")}); err != nil {
				bus.Close()
				return nil, err
			}
			if err := bus.Hello(); err != nil {
				bus.Close()
				return nil, err
			}
			return bus, nil
		})
		require.NoError(t, err)
		defer conn.Close()
		p, err := conn.GetUnitPropertyContext(ctx, "probe.service", "ActiveState")
		require.NoError(t, err)
		require.Equal(t, `"active"`, p.Value.String())
	})

	t.Run("network", func(t *testing.T) {
		// A listener on the gateway, where tests run etcd.
		l, err := net.Listen("tcp", c.GatewayIP()+":0")
		require.NoError(t, err)
		defer l.Close()
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
		for _, h := range c.Hosts() {
			require.NoError(t, reach(ctx, h, l.Addr().String()), "%s reaches the gateway", h.Name)
		}
		// A listening socket in h2, made by its systemd: the kernel completes the handshake.
		exec1(t, ctx, h2, "systemd-run", "--unit=listen", "--quiet", "--socket-property=ListenStream=7777", "/bin/sleep", "infinity")
		h2addr := net.JoinHostPort(h2.IP, "7777")
		require.NoError(t, reach(ctx, h1, h2addr))

		require.NoError(t, h2.Disconnect(ctx))
		require.Error(t, reach(ctx, h1, h2addr), "h2 is disconnected")
		require.Error(t, reach(ctx, h2, l.Addr().String()), "h2 is disconnected")
		require.NoError(t, h2.Reconnect(ctx))
		require.NoError(t, reach(ctx, h1, h2addr))
	})

	t.Run("stop and restart", func(t *testing.T) {
		leader := h2.Leader()
		require.NoError(t, h2.Stop(ctx))
		_, err := h2.Exec(ctx, "true")
		require.ErrorIs(t, err, hosts.ErrNotRunning)
		require.Zero(t, h2.Leader())

		start := time.Now()
		require.NoError(t, h2.Restart(ctx))
		t.Logf("restarted h2 in %v", time.Since(start).Round(time.Millisecond))
		require.NotEqual(t, leader, h2.Leader())
		require.Equal(t, h2.MachineID, exec1(t, ctx, h2, "cat", "/etc/machine-id"))
		require.Contains(t, exec1(t, ctx, h2, "ip", "-4", "-o", "addr", "show", "eth0"), " "+h2.IP+"/24 ")
		// A fresh boot: the transient unit of the previous one is gone.
		_, err = h2.Exec(ctx, "systemctl", "is-active", "probe.service")
		require.Error(t, err)

		// Restart of a running host.
		leader = h2.Leader()
		require.NoError(t, h2.Restart(ctx))
		require.NotEqual(t, leader, h2.Leader())
		require.Equal(t, "h2", exec1(t, ctx, h2, "hostname"))
	})

	t.Run("add host", func(t *testing.T) {
		mac := func() string {
			b, err := os.ReadFile("/sys/class/net/" + hosts.DefaultBridge + "/address")
			require.NoError(t, err)
			return strings.TrimSpace(string(b))
		}
		before := mac()
		start := time.Now()
		h3, err := c.AddHost(ctx)
		require.NoError(t, err)
		// A new port must not change the bridge's MAC: the hosts' ARP entries
		// for the gateway would point nowhere.
		require.Equal(t, before, mac())
		t.Logf("added h3 in %v", time.Since(start).Round(time.Millisecond))
		require.Equal(t, "h3", h3.Name)
		require.Equal(t, "10.77.0.13", h3.IP)
		require.Same(t, h3, c.Host("h3"))
		require.Equal(t, h3.MachineID, exec1(t, ctx, h3, "cat", "/etc/machine-id"))
		require.Contains(t, h3.Journal(ctx), "Startup finished")
	})

	t.Run("kill", func(t *testing.T) {
		leader := h1.Leader()
		require.NoError(t, h1.Kill())
		_, err := h1.Exec(ctx, "true")
		require.ErrorIs(t, err, hosts.ErrNotRunning)
		// Not just marked down: its systemd is gone (and reaped).
		_, err = os.Stat("/proc/" + strconv.Itoa(leader))
		require.True(t, errors.Is(err, os.ErrNotExist), "leader %d of h1 still exists", leader)
		require.Empty(t, processesUnder("/sys/fs/cgroup/systemd/fleet-hosts/h1"))
		require.NoError(t, h1.Kill(), "killing a dead host does nothing")
		// Its address is dead too: nothing answers, not even a refusal.
		require.Error(t, reach(ctx, c.Host("h3"), net.JoinHostPort(h1.IP, "1")))

		// The machine comes back.
		require.NoError(t, h1.Restart(ctx))
		require.Equal(t, h1.MachineID, exec1(t, ctx, h1, "cat", "/etc/machine-id"))
		exec1(t, ctx, h1, "systemd-run", "--unit=listen", "--quiet", "--socket-property=ListenStream=7777", "/bin/sleep", "infinity")
		require.NoError(t, reach(ctx, c.Host("h3"), net.JoinHostPort(h1.IP, "7777")))
	})

	t.Run("close", func(t *testing.T) {
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "Close is idempotent")
		requireNoLeftovers(t, ctx)
	})
}

// requireNoLeftovers checks that nothing of a cluster remains on the machine. It holds the
// machine-wide lock while it looks: other test packages may start clusters of their own.
func requireNoLeftovers(t *testing.T, ctx context.Context) {
	t.Helper()
	lock, err := os.OpenFile(hosts.LockPath, os.O_RDWR, 0)
	require.NoError(t, err)
	defer lock.Close()
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("wait for %s: %v", hosts.LockPath, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	ns, _ := filepath.Glob("/run/netns/fleet-h*")
	require.Empty(t, ns, "network namespaces")
	require.NoFileExists(t, "/sys/class/net/"+hosts.DefaultBridge, "bridge")
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/fleet-hosts")
	require.Empty(t, cg, "cgroups")
	pr, _ := filepath.Glob("/run/systemd/nspawn/propagate/fleet-h*")
	require.Empty(t, pr, "nspawn propagation directories")
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), hosts.DefaultWorkDir+"/state", "mounts")
}

func TestDocker(t *testing.T) {
	requireHosts(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := testConfig(t)
	cfg.Docker = true
	c := startCluster(t, ctx, cfg, 1)
	require.FileExists(t, c.DockerSocket())

	start := time.Now()
	require.NoError(t, c.BuildImage(ctx, "fleet-test/hello:latest", helloContext(t, ctx)))
	t.Logf("built image in %v", time.Since(start).Round(time.Millisecond))

	h1 := c.Host("h1")
	exec1(t, ctx, h1, "systemd-run", "--unit=web", "--quiet", "-p", "ExecStop=/usr/bin/docker stop -t 5 h1-web",
		"/usr/bin/docker", "run", "--rm", "--network", "none", "--name", "h1-web", "fleet-test/hello:latest")
	require.Eventually(t, func() bool {
		out, err := h1.Exec(ctx, "docker", "logs", "h1-web")
		return err == nil && strings.HasPrefix(string(out), "hello from container ")
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "active", exec1(t, ctx, h1, "systemctl", "is-active", "web.service"))
	exec1(t, ctx, h1, "systemctl", "stop", "web.service")
	require.Empty(t, exec1(t, ctx, h1, "docker", "ps", "-q"))
	t.Logf("docker unit started and stopped in %v", time.Since(start).Round(time.Millisecond))
}

// helloContext builds the fixture functional/fixtures/hello statically into a fresh Docker build
// context.
func helloContext(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	src, err := filepath.Abs("../../functional/fixtures/hello")
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(dir, "hello"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	df, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644))
	return dir
}

// TestStartAfterKilledRun kills -9 a process running a cluster (with dockerd and a container) and
// checks that the next Start removes everything it left.
func TestStartAfterKilledRun(t *testing.T) {
	requireHosts(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := testConfig(t)
	require.NoError(t, hosts.EnsureRootfs(ctx, cfg))

	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1", "FLEET_HOSTS_TEST_HELLO="+helloContext(t, ctx))
	helper.Stderr = testWriter{t}
	stdout, err := helper.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, helper.Start())
	sc := bufio.NewScanner(stdout)
	var line string
	for sc.Scan() {
		if line = sc.Text(); line == "ready" || strings.HasPrefix(line, "error") {
			break
		}
	}
	require.Equal(t, "ready", line)

	// Everything the helper runs, in its cgroups: nspawn, the hosts' processes, dockerd, containerd,
	// the container and its shim.
	left := processesUnder("/sys/fs/cgroup/systemd/fleet-hosts")
	require.Contains(t, commands(left), "hello", "the container runs in the cluster's cgroups")
	require.NoError(t, helper.Process.Kill())
	_ = helper.Wait() // killed
	t.Logf("killed the helper, leaving %d processes", len(left))

	c := startCluster(t, ctx, cfg, 1)
	for pid, start := range left {
		require.False(t, alive(pid, start), "process %d of the killed run survives", pid)
	}
	ns, _ := filepath.Glob("/run/netns/fleet-h*")
	require.Equal(t, []string{"/run/netns/fleet-h1"}, ns)
	require.Equal(t, "running", exec1(t, ctx, c.Host("h1"), "systemctl", "is-system-running"))
}

// killedRunHelper starts a cluster of 2 hosts and dockerd, runs a container of the image built from
// the context in $FLEET_HOSTS_TEST_HELLO from a unit in h1, prints "ready" and waits to be killed.
func killedRunHelper() int {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := hosts.Start(ctx, hosts.Config{Docker: true}, 2)
	if err == nil {
		err = c.BuildImage(ctx, "fleet-test/hello:latest", os.Getenv("FLEET_HOSTS_TEST_HELLO"))
	}
	if err == nil {
		_, err = c.Host("h1").Exec(ctx, "systemd-run", "--unit=web", "--quiet",
			"/usr/bin/docker", "run", "--rm", "--network", "none", "--name", "killed-run", "fleet-test/hello:latest")
	}
	for err == nil {
		out, perr := c.Host("h1").Exec(ctx, "docker", "logs", "killed-run")
		if perr == nil && strings.HasPrefix(string(out), "hello from container") {
			break
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("container not running: %w: %s", ctx.Err(), out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	select {}
}

// processesUnder returns the processes in a cgroup tree with their start times.
func processesUnder(dir string) map[int]string {
	pids := map[int]string{}
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids[pid] = startTime(pid)
			}
		}
		return nil
	})
	return pids
}

// commands returns the command names of processes.
func commands(pids map[int]string) []string {
	var out []string
	for pid := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// stat returns the fields of /proc/<pid>/stat after the command name: [0] is the state, [19] the start
// time.
func stat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return make([]string, 20)
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
}

func startTime(pid int) string { return stat(pid)[19] }

// alive reports whether process pid started at start still runs. A zombie does not: the machine's PID
// 1 may be slow to reap (or never reap) the orphans of a killed run.
func alive(pid int, start string) bool {
	f := stat(pid)
	return f[19] == start && f[0] != "Z"
}

// TestEtcd runs a three-member etcd cluster next to a host: the host reaches every member, the
// cluster survives the loss of one member and comes back, with its data, after all of them stop.
// The host's journal outlives it.
func TestEtcd(t *testing.T) {
	requireHosts(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := testConfig(t)
	cfg.Etcd = 3
	c := startCluster(t, ctx, cfg, 1)
	h1 := c.Host("h1")
	ms := c.Etcd()
	require.Len(t, ms, 3)
	require.Equal(t, "http://10.77.0.2:2379,http://10.77.0.3:2379,http://10.77.0.4:2379", c.EtcdEndpoints())
	for _, m := range ms {
		require.True(t, m.Healthy(ctx), m.Name)
		require.NoError(t, reach(ctx, h1, strings.TrimPrefix(m.ClientURL, "http://")), "%s reaches %s", h1.Name, m.Name)
	}

	put := func(key, value string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ms[1].ClientURL+"/v3/kv/put",
			strings.NewReader(fmt.Sprintf(`{"key":%q,"value":%q}`, b64(key), b64(value))))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("put: %s", resp.Status)
		}
		return nil
	}
	get := func(m *hosts.EtcdMember, key string) string {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.ClientURL+"/v3/kv/range",
			strings.NewReader(fmt.Sprintf(`{"key":%q}`, b64(key))))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var r struct{ Kvs []struct{ Value string } }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		if len(r.Kvs) == 0 {
			return ""
		}
		v, err := base64.StdEncoding.DecodeString(r.Kvs[0].Value)
		require.NoError(t, err)
		return string(v)
	}
	require.NoError(t, put("k", "v1"))

	t.Run("one member lost", func(t *testing.T) {
		require.NoError(t, ms[0].Kill())
		require.False(t, ms[0].Running())
		require.NoError(t, c.WaitEtcd(ctx), "two members of three keep a quorum")
		require.NoError(t, put("k", "v2"))
		require.NoError(t, ms[0].Start(ctx))
		require.NoError(t, c.WaitEtcd(ctx))
		require.Eventually(t, func() bool { return get(ms[0], "k") == "v2" }, 10*time.Second, 50*time.Millisecond,
			"the restarted member catches up")
	})

	t.Run("whole cluster stopped", func(t *testing.T) {
		require.NoError(t, c.StopEtcd(ctx))
		for _, m := range ms {
			require.False(t, m.Running(), m.Name)
		}
		require.Error(t, put("k", "v3"))
		start := time.Now()
		require.NoError(t, c.StartEtcd(ctx))
		t.Logf("etcd cluster back in %v", time.Since(start).Round(time.Millisecond))
		require.Equal(t, "v2", get(ms[2], "k"), "data survives")
	})

	t.Run("journal outlives the host", func(t *testing.T) {
		exec1(t, ctx, h1, "systemd-run", "--unit=say", "--quiet", "/bin/echo", "fleet-hosts-journal-probe")
		require.NoError(t, h1.Kill())
		out, err := exec.CommandContext(ctx, "journalctl", "-D", h1.JournalDir(), "--no-pager", "-q").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "fleet-hosts-journal-probe")
	})
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestDockerInHost runs a dockerd in each host: a container runs in its host's own daemon and dies
// with the host; the image is there on a host added later.
func TestDockerInHost(t *testing.T) {
	requireHosts(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := testConfig(t)
	cfg.DockerInHost = true
	require.Error(t, func() error { c := cfg; c.Docker = true; _, err := hosts.Start(ctx, c, 1); return err }())
	c := startCluster(t, ctx, cfg, 1)
	h1 := c.Host("h1")
	require.Equal(t, "active", exec1(t, ctx, h1, "systemctl", "is-active", "docker.service"))
	require.Empty(t, c.DockerSocket())

	start := time.Now()
	require.NoError(t, c.BuildImage(ctx, "fleet-test/hello:latest", helloContext(t, ctx)))
	t.Logf("built image in %v", time.Since(start).Round(time.Millisecond))
	exec1(t, ctx, h1, "systemd-run", "--unit=web", "--quiet", "/usr/bin/docker", "run", "--rm", "--network", "none",
		"--name", "web", "fleet-test/hello:latest")
	require.Eventually(t, func() bool {
		out, err := h1.Exec(ctx, "docker", "logs", "web")
		return err == nil && strings.HasPrefix(string(out), "hello from container ")
	}, 30*time.Second, 100*time.Millisecond)
	// The container's process as the machine sees it: in h1's cgroups, with
	// docker's PID in h1's PID namespace.
	pid := exec1(t, ctx, h1, "docker", "inspect", "-f", "{{.State.Pid}}", "web")
	var machinePID int
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, p := range procs {
		status, _ := os.ReadFile("/proc/" + p.Name() + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == "NSpid:" && f[2] == pid {
				if cg, _ := os.ReadFile("/proc/" + p.Name() + "/cgroup"); strings.Contains(string(cg), "/fleet-hosts/h1/") {
					machinePID, err = strconv.Atoi(f[1])
					require.NoError(t, err)
				}
			}
		}
	}
	require.NotZero(t, machinePID)

	require.NoError(t, h1.Kill())
	_, err = os.Stat("/proc/" + strconv.Itoa(machinePID))
	require.True(t, errors.Is(err, os.ErrNotExist), "the container's process %d survives its host", machinePID)

	h2, err := c.AddHost(ctx)
	require.NoError(t, err)
	require.Contains(t, exec1(t, ctx, h2, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}"), "fleet-test/hello:latest")
	require.NoError(t, h1.Restart(ctx))
	require.Equal(t, "active", exec1(t, ctx, h1, "systemctl", "is-active", "docker.service"))
	require.Contains(t, exec1(t, ctx, h1, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}"), "fleet-test/hello:latest",
		"a host keeps its images across a reboot")
}
