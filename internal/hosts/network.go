package hosts

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
)

// The network: a bridge on the machine carrying the gateway address, and per host a network namespace
// (/run/netns/fleet-hI, what `ip netns` manages) joined to the bridge by a veth pair: "vfleet-hI" on the
// bridge, "eth0" inside. There is no forwarding or NAT beyond the bridge. Everything goes through the
// ip(8) command of iproute2.

const netnsDir = "/run/netns"

// ip runs ip(8).
func ip(ctx context.Context, args ...string) error {
	_, err := run(ctx, "ip", args...)
	return err
}

// createBridge creates bridge name with address gw/24 and brings it up.
//
// Its MAC address is set, not left to the kernel: a bridge otherwise takes
// the lowest MAC of its ports, so a host added later (a new veth) can change
// it, and every host's ARP entry for the gateway (and the etcd members on
// the bridge) then points nowhere for half a minute.
func createBridge(ctx context.Context, name, gw string) error {
	ip4 := net.ParseIP(gw).To4()
	if ip4 == nil {
		return fmt.Errorf("create bridge: gateway %q is not an IPv4 address", gw)
	}
	// Locally administered (02:...), unicast, and unique per subnet.
	mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", ip4[0], ip4[1], ip4[2], ip4[3])
	for _, args := range [][]string{
		{"link", "add", name, "address", mac, "type", "bridge"},
		{"addr", "add", gw + "/24", "dev", name},
		{"link", "set", name, "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			return fmt.Errorf("create bridge: %w", err)
		}
	}
	return nil
}

// createHostNetwork creates network namespace netns with eth0 at addr/24 and a default route via gw,
// joined to bridge through veth. The bridge side is left down: the host's boot brings it up.
func createHostNetwork(ctx context.Context, netns, veth, bridge, addr, gw string) error {
	for _, args := range [][]string{
		{"netns", "add", netns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"link", "set", veth, "master", bridge},
		{"-n", netns, "link", "set", "lo", "up"},
		{"-n", netns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", netns, "link", "set", "eth0", "up"},
		// fleetd finds its public IP through the default route, as on a real machine.
		{"-n", netns, "route", "add", "default", "via", gw},
	} {
		if err := ip(ctx, args...); err != nil {
			return fmt.Errorf("create network namespace %s: %w", netns, err)
		}
	}
	return nil
}

// setLink brings link name up or down. A host whose bridge-side veth is down is cut off: its packets
// go nowhere and nothing answers for its address.
func setLink(ctx context.Context, name string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := ip(ctx, "link", "set", name, state); err != nil {
		return fmt.Errorf("set link %s %s: %w", name, state, err)
	}
	return nil
}

// deleteLink deletes link name; a missing link is fine.
func deleteLink(ctx context.Context, name string) error {
	if _, err := os.Stat("/sys/class/net/" + name); os.IsNotExist(err) {
		return nil
	}
	if err := ip(ctx, "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// deleteNetns deletes network namespace name (and so the veth pair inside); a missing one is fine.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(netnsDir + "/" + name); os.IsNotExist(err) {
		return nil
	}
	if err := ip(ctx, "netns", "del", name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// listNetns returns the names of the network namespaces in /run/netns starting with prefix.
func listNetns(prefix string) []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
