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
	// ErrNoDocker is returned by Docker helpers of a cluster started without Config.Docker.
	ErrNoDocker = errors.New("hosts: cluster has no dockerd (Config.Docker is false)")
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
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (c Config) rootfsDir() string { return filepath.Join(c.WorkDir, "rootfs") }
func (c Config) stateDir() string  { return filepath.Join(c.WorkDir, "state") }
func (c Config) gatewayIP() string { return c.Subnet + ".1" }

// hostIP is the address of host hi.
func (c Config) hostIP(i int) string { return c.Subnet + "." + strconv.Itoa(10+i) }

// machineID is the machine-id of the host with the given name: the hex MD5 of "fleet-"+name, stable
// across runs and restarts so tests can predict it.
func machineID(name string) string {
	sum := md5.Sum([]byte(namePrefix + name))
	return hex.EncodeToString(sum[:])
}
