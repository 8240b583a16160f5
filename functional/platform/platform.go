// Package platform runs fleet the way an operator does, on simulated hosts
// (internal/hosts): fleetd installed in every host from dist/ as
// fleet.service with fleet.socket and /etc/fleet/fleet.conf, fleetctl run
// inside a host, etcd a real cluster on other addresses (or embedded in the
// first host's fleetd). The functional tests, the benchmark and `make demo`
// stand on it.
//
// What it adds to internal/hosts: fleetd's installation and life cycle
// (StopFleet, StartFleet, RestartFleet, KillFleet, ReloadFleet), fleetctl
// (Fleetctl), the HTTP API seen from outside the hosts (API), waits with a
// deadline (Wait, WaitMachines, WaitUnits) and the logs of every host
// (SaveLogs).
package platform

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
// other, and tests reach it from outside the hosts.
const APIPort = "49153"

// fleetService and fleetSocket are dist/'s, for callers that give no
// Options.DistDir.
const fleetService = `[Unit]
Description=fleet daemon
Wants=fleet.socket
After=fleet.socket

[Service]
ExecStart=/usr/bin/fleetd
Restart=always
RestartSec=1s

[Install]
WantedBy=multi-user.target
`

const fleetSocket = `[Unit]
Description=fleet daemon API socket

[Socket]
ListenStream=/var/run/fleet.sock
SocketMode=0660

[Install]
WantedBy=sockets.target
`

// Cluster is a set of hosts running fleetd.
type Cluster struct {
	*hosts.Cluster
	// EtcdServers is what every fleetd's etcd_servers says (or, with fleetd's
	// embedded etcd, where the first host serves it).
	EtcdServers string
	// Security holds the cluster's CA, certificates and tokens; nil with
	// Options.Insecure.
	Security *Security
	etcd     *etcdserver.Server
	units    map[string]string // fleet.service and fleet.socket as installed
	etcdTLS  bool              // fleetds reach etcd over TLS with their peer certificate
	ownPKI   bool              // Security.Dir was made by Start: Close removes it
}

// Close stops the hosts, then the in-process etcd if any.
func (c *Cluster) Close() error {
	err := c.Cluster.Close()
	if c.etcd != nil {
		c.etcd.Close()
	}
	if c.ownPKI {
		err = errors.Join(err, os.RemoveAll(c.Security.Dir))
	}
	return err
}

// Options describe the cluster to start.
type Options struct {
	Hosts hosts.Config
	N     int
	// EtcdServers, when set, is every fleetd's etcd_servers. When it is
	// empty and neither Hosts.Etcd nor EtcdDir is set, h1's fleetd runs its
	// embedded etcd on h1's IP and the other hosts use it.
	EtcdServers string
	// EtcdDir, when set, runs a single etcd member in this process on the
	// bridge's IP (data in EtcdDir), outliving any host. A real cluster on
	// the machine (Hosts.Etcd, Debian's etcd) is the other way, and the one
	// whose members tests can kill.
	EtcdDir string
	// DistDir is the directory of the fleet.service and fleet.socket an
	// operator installs (the module's dist/); default: copies built in.
	DistDir string
	// Conf adds fleet.conf keys for every host (the defaults are etcd,
	// public_ip, api_listen, metadata=hostname=<name>, and the keys of
	// Security).
	Conf map[string]string
	// Insecure runs the cluster as before fleet had security: plain HTTP
	// with api_insecure=true, etcd without TLS. By default the cluster is
	// secured as the README's multi-machine set-up says: a fresh CA, TLS and
	// tokens on every fleetd's API, and TLS with client certificates on etcd.
	Insecure bool
	// PKIDir keeps the cluster's credentials (Security) in this directory,
	// emptied first, after Close too; by default a temporary directory that
	// Close removes.
	PKIDir string
}

// Start boots the hosts and starts fleetd on each, then waits until every
// machine is listed by fleetctl. On error, the returned Cluster, if not nil,
// holds what was started: Close it.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	units := map[string]string{"fleet.service": fleetService, "fleet.socket": fleetSocket}
	if o.DistDir != "" {
		for name := range units {
			b, err := os.ReadFile(filepath.Join(o.DistDir, name))
			if err != nil {
				return nil, fmt.Errorf("fleet's units: %w", err)
			}
			units[name] = string(b)
		}
	}
	var sec *Security
	ownPKI := false
	if !o.Insecure {
		dir := o.PKIDir
		if dir == "" {
			d, err := os.MkdirTemp("", "fleet-pki-")
			if err != nil {
				return nil, fmt.Errorf("cluster credentials: %w", err)
			}
			dir, ownPKI = d, true
		} else if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("cluster credentials: %w", err)
		}
		var etcdHosts []string
		if o.Hosts.Etcd > 0 {
			etcdHosts = o.Hosts.EtcdCertHosts()
		}
		var err error
		if sec, err = NewSecurity(dir, etcdHosts); err != nil {
			return nil, err
		}
		o.Hosts.EtcdTLS = sec.EtcdTLS
	}
	hc, err := hosts.Start(ctx, o.Hosts, o.N)
	if err != nil {
		if ownPKI {
			_ = os.RemoveAll(sec.Dir)
		}
		return nil, err
	}
	c := &Cluster{Cluster: hc, EtcdServers: o.EtcdServers, units: units, Security: sec, ownPKI: ownPKI}
	c.etcdTLS = sec != nil && hc.EtcdEndpoints() != ""
	switch {
	case hc.EtcdEndpoints() != "":
		c.EtcdServers, o.EtcdServers = hc.EtcdEndpoints(), hc.EtcdEndpoints()
	case o.EtcdDir != "":
		gw := hc.GatewayIP()
		c.etcd, err = etcdserver.Start(ctx, etcdserver.Config{DataDir: o.EtcdDir,
			ClientURLs: []string{"http://" + gw + ":2379"}, PeerURL: "http://" + gw + ":2380", Fast: true,
			// The gateway address is on the test hosts' private bridge.
			InsecureNonLoopback: true})
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
	embedded := c.EtcdServers == ""
	scheme := "http://"
	if embedded {
		// h1's etcd serves the other hosts, so it serves TLS; unless a test
		// keeps it on loopback.
		c.etcdTLS = c.Security != nil && o.Conf["embedded_etcd_client_urls"] == ""
		if c.etcdTLS {
			scheme = "https://"
		}
		c.EtcdServers = scheme + hs[0].IP + ":2379"
	}
	for i, h := range hs {
		conf := c.FleetConf(h)
		if i == 0 && embedded {
			delete(conf, "etcd_servers")
			conf["embedded_etcd_client_urls"] = scheme + "127.0.0.1:2379," + scheme + h.IP + ":2379"
			// A single member has no peers to reach it: its peer URL stays
			// on loopback, where it needs no TLS.
			conf["embedded_etcd_peer_url"] = "http://127.0.0.1:2380"
			if c.etcdTLS {
				conf["embedded_etcd_cert_file"] = HostCertFile
				conf["embedded_etcd_key_file"] = HostKeyFile
				conf["embedded_etcd_client_ca_file"] = HostCAFile
			}
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

// FleetConf returns the fleet.conf keys of host h: etcd_servers, public_ip,
// api_listen (h's IP, APIPort), metadata=hostname=<h's name>, and on a
// secured cluster the keys of the credentials InstallFleet installs (else
// api_insecure=true, which an open listener on the test network needs).
func (c *Cluster) FleetConf(h *hosts.Host) map[string]string {
	conf := map[string]string{
		"etcd_servers": c.EtcdServers,
		"public_ip":    h.IP,
		"api_listen":   h.IP + ":" + APIPort,
		"metadata":     "hostname=" + h.Name,
	}
	if c.Security == nil {
		conf["api_insecure"] = "true"
		return conf
	}
	maps.Copy(conf, APIConf())
	if c.etcdTLS {
		maps.Copy(conf, EtcdClientConf())
	}
	return conf
}

// InstallFleet installs fleet into h as an operator would: fleetd and
// fleetctl in /usr/bin (links to the bind-mounted binaries),
// /etc/fleet/fleet.conf from conf, fleet.service and fleet.socket in
// /etc/systemd/system, enabled and started. On a secured cluster it also
// installs h's credentials (Security.InstallHost), which FleetConf's keys
// name. It returns once fleet is started, not once the machine is
// registered.
func (c *Cluster) InstallFleet(ctx context.Context, h *hosts.Host, conf map[string]string) error {
	if c.Security != nil {
		if err := c.Security.InstallHost(h); err != nil {
			return err
		}
	}
	if err := c.WriteFleetConf(h, conf); err != nil {
		return err
	}
	units := c.units
	if units == nil { // a Cluster made by hand
		units = map[string]string{"fleet.service": fleetService, "fleet.socket": fleetSocket}
	}
	for name, body := range units {
		if err := writeFile(h, "/etc/systemd/system/"+name, body); err != nil {
			return fmt.Errorf("install fleet on %s: %w", h.Name, err)
		}
	}
	for _, args := range [][]string{
		{"ln", "-sf", hosts.BinMount + "/fleetd", "/usr/bin/fleetd"},
		{"ln", "-sf", hosts.BinMount + "/fleetctl", "/usr/bin/fleetctl"},
		{"systemctl", "daemon-reload"},
		{"systemctl", "enable", "--now", "fleet.socket", "fleet.service"},
	} {
		if _, err := h.Exec(ctx, args...); err != nil {
			return fmt.Errorf("install fleet on %s: %w", h.Name, err)
		}
	}
	return nil
}

// WriteFleetConf writes conf as h's /etc/fleet/fleet.conf (sorted keys).
// fleetd reads it when it starts, and on SIGHUP (ReloadFleet).
func (c *Cluster) WriteFleetConf(h *hosts.Host, conf map[string]string) error {
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, conf[k])
	}
	if err := writeFile(h, "/etc/fleet/fleet.conf", b.String()); err != nil {
		return fmt.Errorf("write fleet.conf on %s: %w", h.Name, err)
	}
	return nil
}

func writeFile(h *hosts.Host, path, body string) error {
	full := h.Path(path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(body), 0o644)
}

// Fleetctl runs fleetctl inside host h and returns its standard output and
// error together.
func (c *Cluster) Fleetctl(ctx context.Context, h *hosts.Host, args ...string) (string, error) {
	out, err := h.Exec(ctx, append([]string{hosts.BinMount + "/fleetctl"}, args...)...)
	return string(out), err
}

// WaitMachines waits until fleetctl on the first running host lists n
// machines.
func (c *Cluster) WaitMachines(ctx context.Context, n int, timeout time.Duration) error {
	return c.WaitMachinesOn(ctx, nil, n, timeout)
}

// WaitMachinesOn waits until fleetctl on host h (nil: the first running
// host) lists n machines. Ask a host whose fleetd runs: fleetctl on a host
// whose fleetd is stopped starts it again (fleet.socket).
func (c *Cluster) WaitMachinesOn(ctx context.Context, h *hosts.Host, n int, timeout time.Duration) error {
	var last string
	err := Wait(ctx, timeout, func() bool {
		h := h
		if h == nil {
			h = c.firstRunning()
		}
		if h == nil {
			return false
		}
		out, err := c.Fleetctl(ctx, h, "list-machines", "--no-legend")
		last = out
		return err == nil && len(strings.Fields(strings.TrimSpace(out))) > 0 && strings.Count(strings.TrimSpace(out), "\n")+1 == n
	})
	if err != nil {
		return fmt.Errorf("wait for %d machines (last list-machines: %q): %w", n, last, err)
	}
	return nil
}

func (c *Cluster) firstRunning() *hosts.Host {
	for _, h := range c.Hosts() {
		if h.Leader() != 0 {
			return h
		}
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
// payload into dir, from the module whose root is moduleRoot. fleetd and
// fleetctl carry the VERSION file's version, as release builds do: a plain
// build says "dev", which engines treat as no version at all, so the
// version rules would go untested.
func BuildBinaries(ctx context.Context, moduleRoot, dir string) error {
	v, err := os.ReadFile(filepath.Join(moduleRoot, "VERSION"))
	if err != nil {
		return fmt.Errorf("version of the binaries: %w", err)
	}
	ldflags := "-X main.version=" + strings.TrimSpace(string(v))
	for name, pkg := range map[string]string{"fleetd": "./cmd/fleetd", "fleetctl": "./cmd/fleetctl", "hello": "./functional/fixtures/hello"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w: %s", pkg, err, out)
		}
	}
	return nil
}

// BuildHelloImage builds the image fleet/hello:latest from the hello
// binary in binDir, in the cluster's dockerd (or in every host's).
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
