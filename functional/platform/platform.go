// Package platform runs fleet the way an operator does, on simulated hosts
// (internal/hosts): fleetd installed in every host as fleet.service with
// fleet.socket and /etc/fleet/fleet.conf, fleetctl run inside a host. The
// functional tests and `make demo` both stand on it.
package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// APIPort is where every host's fleetd also serves the API over TCP, so
// fleetds can forward machine-local requests (status, journal) to each
// other.
const APIPort = "49153"

// fleetService is fleet.service as shipped in dist/, pointed at the binary
// bind-mounted into every host.
const fleetService = `[Unit]
Description=fleet daemon
Wants=fleet.socket
After=fleet.socket

[Service]
ExecStart=/opt/fleet/bin/fleetd
Restart=always
RestartSec=1s
`

const fleetSocket = `[Unit]
Description=fleet daemon API socket

[Socket]
ListenStream=/var/run/fleet.sock
SocketMode=0660
`

// Cluster is a set of hosts running fleetd.
type Cluster struct {
	*hosts.Cluster
	// EtcdServers is what every fleetd's etcd_servers says.
	EtcdServers string
	etcd        *etcdserver.Server
}

// Close stops the hosts, then the in-process etcd if any.
func (c *Cluster) Close() error {
	err := c.Cluster.Close()
	if c.etcd != nil {
		c.etcd.Close()
	}
	return err
}

// Options describe the cluster to start.
type Options struct {
	Hosts hosts.Config
	N     int
	// EtcdServers, when empty, makes h1's fleetd run its embedded etcd on
	// h1's IP, and the other hosts use it.
	EtcdServers string
	// EtcdDir, when set, runs an etcd member in this process on the
	// bridge's IP (data in EtcdDir), outliving any host: for tests that
	// kill hosts.
	EtcdDir string
	// Conf adds fleet.conf keys for every host (the defaults are etcd,
	// public_ip, api_listen, metadata=hostname=<name>).
	Conf map[string]string
}

// Start boots the hosts and starts fleetd on each, then waits until every
// machine is listed by fleetctl.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	hc, err := hosts.Start(ctx, o.Hosts, o.N)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Cluster: hc, EtcdServers: o.EtcdServers}
	if o.EtcdDir != "" {
		gw := hc.GatewayIP()
		c.etcd, err = etcdserver.Start(ctx, etcdserver.Config{DataDir: o.EtcdDir,
			ClientURLs: []string{"http://" + gw + ":2379"}, PeerURL: "http://" + gw + ":2380", Fast: true})
		if err != nil {
			return c, err
		}
		c.EtcdServers, o.EtcdServers = "http://"+gw+":2379", "http://"+gw+":2379"
	}
	if err := c.startFleet(ctx, o); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) startFleet(ctx context.Context, o Options) error {
	hs := c.Hosts()
	if len(hs) == 0 {
		return nil
	}
	if c.EtcdServers == "" {
		c.EtcdServers = "http://" + hs[0].IP + ":2379"
	}
	for i, h := range hs {
		conf := map[string]string{
			"etcd_servers": c.EtcdServers,
			"public_ip":    h.IP,
			"api_listen":   h.IP + ":" + APIPort,
			"metadata":     "hostname=" + h.Name,
		}
		if i == 0 && o.EtcdServers == "" {
			delete(conf, "etcd_servers")
			conf["embedded_etcd_client_urls"] = "http://127.0.0.1:2379,http://" + h.IP + ":2379"
			conf["embedded_etcd_peer_url"] = "http://" + h.IP + ":2380"
		}
		for k, v := range o.Conf {
			conf[k] = v
		}
		if err := c.InstallFleet(ctx, h, conf); err != nil {
			return err
		}
	}
	return c.WaitMachines(ctx, len(hs), 60*time.Second)
}

// InstallFleet writes fleet.conf, fleet.service and fleet.socket into h and
// starts them, as an operator would.
func (c *Cluster) InstallFleet(ctx context.Context, h *hosts.Host, conf map[string]string) error {
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, conf[k])
	}
	files := map[string]string{
		"/etc/fleet/fleet.conf":             b.String(),
		"/etc/systemd/system/fleet.service": fleetService,
		"/etc/systemd/system/fleet.socket":  fleetSocket,
	}
	for p, body := range files {
		full := h.Path(p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("install fleet on %s: %w", h.Name, err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			return fmt.Errorf("install fleet on %s: %w", h.Name, err)
		}
	}
	for _, args := range [][]string{
		{"ln", "-sf", hosts.BinMount + "/fleetctl", "/usr/local/bin/fleetctl"},
		{"systemctl", "daemon-reload"},
		{"systemctl", "start", "fleet.socket", "fleet.service"},
	} {
		if _, err := h.Exec(ctx, args...); err != nil {
			return fmt.Errorf("install fleet on %s: %w", h.Name, err)
		}
	}
	return nil
}

// Fleetctl runs fleetctl inside host h and returns its standard output and
// error together.
func (c *Cluster) Fleetctl(ctx context.Context, h *hosts.Host, args ...string) (string, error) {
	out, err := h.Exec(ctx, append([]string{hosts.BinMount + "/fleetctl"}, args...)...)
	return string(out), err
}

// WaitMachines waits until fleetctl on the first host lists n machines.
func (c *Cluster) WaitMachines(ctx context.Context, n int, timeout time.Duration) error {
	h := c.Hosts()[0]
	var last string
	err := Wait(ctx, timeout, func() bool {
		out, err := c.Fleetctl(ctx, h, "list-machines", "--no-legend")
		last = out
		return err == nil && len(strings.Fields(strings.TrimSpace(out))) > 0 && strings.Count(strings.TrimSpace(out), "\n")+1 == n
	})
	if err != nil {
		return fmt.Errorf("wait for %d machines (last list-machines: %q): %w", n, last, err)
	}
	return nil
}

// ErrTimeout is returned by Wait.
var ErrTimeout = errors.New("timed out")

// Wait polls cond every 20 ms until it holds, ctx ends or timeout passes.
func Wait(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, ErrTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// BuildBinaries builds static fleetd, fleetctl and the hello container
// payload into dir, from the module whose root is moduleRoot.
func BuildBinaries(ctx context.Context, moduleRoot, dir string) error {
	for name, pkg := range map[string]string{"fleetd": "./cmd/fleetd", "fleetctl": "./cmd/fleetctl", "hello": "./functional/fixtures/hello"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w: %s", pkg, err, out)
		}
	}
	return nil
}

// BuildHelloImage builds the image fleet/hello:latest from the hello
// binary in binDir, in the cluster's dockerd.
func (c *Cluster) BuildHelloImage(ctx context.Context, binDir string) error {
	dir, err := os.MkdirTemp("", "fleet-hello-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(filepath.Join(binDir, "hello"))
	if err != nil {
		return fmt.Errorf("build hello image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), bin, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n"), 0o644); err != nil {
		return err
	}
	return c.BuildImage(ctx, "fleet/hello:latest", dir)
}
