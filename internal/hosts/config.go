package hosts

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Defaults for the zero values of Config.
const (
	DefaultWorkDir = "/var/lib/fleet-hosts"
	DefaultBridge  = "fleetbr0"
	DefaultSubnet  = "10.77.0"
)

// BinMount is where Config.BinDir appears, read-only, inside every host.
const BinMount = "/opt/fleet/bin"

// namePrefix makes the machine-side names of a host (container, network namespace, machine-id seed)
// distinct from anything else on the machine: host h1 is container and netns "fleet-h1".
const namePrefix = "fleet-"

// MaxHosts is the largest number of hosts in a cluster: host i has address .(10+i) of a /24.
const MaxHosts = 244

// Sentinel errors.
var (
	// ErrNotRoot is returned when the caller is not root: namespaces, bridges and cgroups need it.
	ErrNotRoot = errors.New("hosts: must run as root")
	// ErrNotRunning is returned by Host methods that need a running host.
	ErrNotRunning = errors.New("host is not running")
	// ErrNoDocker is returned by Docker helpers of a cluster started with neither Config.Docker nor
	// Config.DockerInHost.
	ErrNoDocker = errors.New("hosts: cluster has no dockerd (Config.Docker and Config.DockerInHost are false)")
	// ErrNoEtcd is returned by etcd helpers of a cluster started without Config.Etcd.
	ErrNoEtcd = errors.New("hosts: cluster runs no etcd (Config.Etcd is 0)")
)

// Config describes a cluster of simulated hosts. The zero value is usable: empty fields take the
// defaults documented on each field.
type Config struct {
	// WorkDir holds the root file system cache (rootfs/, kept between runs) and the per-run state
	// (state/: records of what was created, console and daemon logs, Docker's data). Default
	// DefaultWorkDir.
	WorkDir string
	// Bridge is the machine-side bridge connecting the hosts. Default DefaultBridge.
	Bridge string
	// Subnet is the first three octets of the hosts' /24: the bridge (gateway) is .1, host hi is
	// .(10+i). Default DefaultSubnet.
	Subnet string
	// BinDir, when set, is a machine directory bind-mounted read-only at BinMount in every host: the
	// binaries under test.
	BinDir string
	// Docker starts one dockerd on the machine (no bridge, no iptables: containers get no network) and
	// bind-mounts its socket at /run/docker.sock and Debian's /usr/bin/docker into every host. Every
	// host shares that daemon: container names must be unique across hosts, and killing a host leaves
	// its containers running.
	Docker bool
	// DockerInHost runs a dockerd inside every host instead, as a system service of the host's own
	// systemd (docker.service, started at boot), with the host's /var/lib/docker and
	// /var/lib/containerd kept on the machine under WorkDir/state across Restart. Killing a host
	// kills its containers, as on a real machine. The hosts then boot from a second root file system
	// with Debian's docker.io (built once, next to the first, see EnsureRootfs); the daemons run
	// without bridge, iptables or forwarding, so containers use --network none or the host's.
	// Exclusive with Docker.
	DockerInHost bool
	// Etcd, when above zero, runs an etcd cluster of that many members on the machine (Debian's
	// etcd-server, at most MaxEtcdMembers): member eI listens on address Subnet.(1+I) of the bridge,
	// ports 2379 and 2380, with its data under WorkDir/state/eI. Start returns once the cluster is
	// healthy. See Cluster.Etcd.
	Etcd int
	// EtcdTLS, with Etcd, makes the members serve clients and peers over TLS only and require
	// client certificates signed by its CA, as a secured production etcd does.
	EtcdTLS *EtcdTLS
	// Log receives progress at Info and details at Debug. Default: discard.
	Log *slog.Logger
}

// withDefaults returns c with defaults filled in, or an error naming the first bad field.
func (c Config) withDefaults() (Config, error) {
	if c.WorkDir == "" {
		c.WorkDir = DefaultWorkDir
	}
	if !filepath.IsAbs(c.WorkDir) {
		return c, fmt.Errorf("hosts: WorkDir %q is not an absolute path", c.WorkDir)
	}
	c.WorkDir = filepath.Clean(c.WorkDir)
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if len(c.Bridge) > 15 {
		return c, fmt.Errorf("hosts: Bridge %q is longer than 15 characters", c.Bridge)
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if ip := net.ParseIP(c.Subnet + ".1").To4(); ip == nil {
		return c, fmt.Errorf("hosts: Subnet %q is not three IPv4 octets like %q", c.Subnet, DefaultSubnet)
	}
	if c.BinDir != "" {
		st, err := os.Stat(c.BinDir)
		if err != nil {
			return c, fmt.Errorf("hosts: BinDir: %w", err)
		}
		if !st.IsDir() {
			return c, fmt.Errorf("hosts: BinDir %q is not a directory", c.BinDir)
		}
		if c.BinDir, err = filepath.Abs(c.BinDir); err != nil {
			return c, fmt.Errorf("hosts: BinDir: %w", err)
		}
	}
	if c.Docker && c.DockerInHost {
		return c, errors.New("hosts: Docker and DockerInHost are exclusive: one dockerd for all hosts, or one in each")
	}
	if c.Etcd < 0 || c.Etcd > MaxEtcdMembers {
		return c, fmt.Errorf("hosts: Etcd %d: want 0 to %d members", c.Etcd, MaxEtcdMembers)
	}
	if c.EtcdTLS != nil {
		if c.Etcd == 0 {
			return c, errors.New("hosts: EtcdTLS without Etcd members")
		}
		if err := c.EtcdTLS.check(); err != nil {
			return c, err
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (c Config) rootfsDir() string { return filepath.Join(c.WorkDir, "rootfs") }

// dockerRootfsDir is the root file system with docker.io, for Config.DockerInHost.
func (c Config) dockerRootfsDir() string { return filepath.Join(c.WorkDir, "rootfs-docker") }

// hostRootfsDir is the root file system the hosts boot from.
func (c Config) hostRootfsDir() string {
	if c.DockerInHost {
		return c.dockerRootfsDir()
	}
	return c.rootfsDir()
}
func (c Config) stateDir() string  { return filepath.Join(c.WorkDir, "state") }
func (c Config) gatewayIP() string { return c.Subnet + ".1" }

// etcdIP is the address of etcd member eI.
func (c Config) etcdIP(i int) string { return c.Subnet + "." + strconv.Itoa(1+i) }

// hostIP is the address of host hi.
func (c Config) hostIP(i int) string { return c.Subnet + "." + strconv.Itoa(10+i) }

// machineID is the machine-id of the host with the given name: the hex MD5 of "fleet-"+name, stable
// across runs and restarts so tests can predict it.
func machineID(name string) string {
	sum := md5.Sum([]byte(namePrefix + name))
	return hex.EncodeToString(sum[:])
}

// EtcdCertHosts returns the addresses a certificate of c's etcd members (Config.EtcdTLS) must
// name: every member's, and the bridge's, because the members run on the machine, not in hosts, so
// their connections to each other leave from the bridge's address, and etcd checks a peer's
// certificate against the address it connects from.
func (c Config) EtcdCertHosts() []string {
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	ips := []string{c.gatewayIP()}
	for i := range c.Etcd {
		ips = append(ips, c.etcdIP(i+1))
	}
	return ips
}
