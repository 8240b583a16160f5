package machine

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Machine is one host of the cluster as the registry stores it.
type Machine struct {
	ID       string            `json:"id"`
	PublicIP string            `json:"publicIP,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	Version  string            `json:"version,omitempty"`
	// APIURL is where this machine's fleetd serves the HTTP API to other
	// machines (empty when it serves only its unix socket). Other fleetds
	// forward machine-local requests (unit status, journal) there.
	APIURL string `json:"apiURL,omitempty"`
	// Capacity is what units may use of this machine: its cores and memory
	// less fleet.conf's reserved_cpu and reserved_memory. nil when the
	// machine's fleetd does not report it (older versions): the engine then
	// places there by unit count alone.
	Capacity *Capacity `json:"capacity,omitempty"`
}

// Capacity is an amount of CPU and memory.
type Capacity struct {
	CPU    int64 `json:"cpuMillis"`   // millicores: 1000 is one core
	Memory int64 `json:"memoryBytes"` // bytes
}

// ShortID is the 8-character prefix fleetctl prints without --full.
func (m Machine) ShortID() string { return ShortID(m.ID) }

// ShortID returns the first 8 characters of id.
func ShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// ErrNoMachineID is returned when no machine ID is configured or found.
var ErrNoMachineID = errors.New("no machine ID")

// ReadID reads a machine ID from path (normally /etc/machine-id).
func ReadID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read machine ID: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("read machine ID from %s: %w (file is empty)", path, ErrNoMachineID)
	}
	if strings.ContainsAny(id, "/ \t\n") {
		return "", fmt.Errorf("read machine ID from %s: %q is not a valid machine ID", path, id)
	}
	return id, nil
}

// ParseMetadata parses fleet's "k=v,k=v" metadata syntax. Whitespace around
// keys and values is ignored; an entry without '=' or with an empty key is an
// error.
func ParseMetadata(s string) (map[string]string, error) {
	md := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("parse metadata %q: entry %q is not key=value", s, part)
		}
		md[k] = v
	}
	return md, nil
}

// FormatMetadata renders metadata as "k=v,k=v", sorted by key so output is
// stable.
func FormatMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + md[k]
	}
	return strings.Join(parts, ",")
}

// DefaultRouteIP returns the first IPv4 address of the interface that holds
// the default route, read from routeFile (normally /proc/net/route).
func DefaultRouteIP(routeFile string) (string, error) {
	f, err := os.Open(routeFile)
	if err != nil {
		return "", fmt.Errorf("detect public IP: %w", err)
	}
	defer f.Close()
	iface, err := defaultRouteInterface(f)
	if err != nil {
		return "", fmt.Errorf("detect public IP: %w", err)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return "", fmt.Errorf("detect public IP: interface %s: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", fmt.Errorf("detect public IP: addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("detect public IP: interface %s has no IPv4 address", iface)
}

// defaultRouteInterface finds the interface of the 0.0.0.0/0 route with the
// lowest metric in /proc/net/route's format.
func defaultRouteInterface(f *os.File) (string, error) {
	sc := bufio.NewScanner(f)
	best, bestMetric := "", -1
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[1] != "00000000" || fields[7] != "00000000" {
			continue
		}
		metric, err := strconv.Atoi(fields[6])
		if err != nil {
			continue
		}
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = fields[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if best == "" {
		return "", errors.New("no default route")
	}
	return best, nil
}
