package functional

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// settle is how long scenarios watch for something that must not happen
// (a unit stopping, moving, flapping) after the cluster has had every
// chance to do it.
const settle = 3 * time.Second

// scenario starts a scenario of the group: at its end the cluster is healed
// (see heal), every unit is destroyed, and the scenario waits until no
// machine runs any of them, so the next scenario starts from an empty
// cluster of healthy hosts.
func (e *env) scenario(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		e.heal(t)
		e.reset(t)
	})
}

// heal undoes what a scenario did to the hosts, if it has not: hosts cut
// off are reconnected, fleetds kept down are started, and hosts that died
// are replaced by new ones (new names, new machine IDs), until the group
// has e.size running machines again.
func (e *env) heal(t *testing.T) {
	t.Helper()
	for _, h := range e.Hosts() {
		if h.Leader() == 0 {
			continue
		}
		require.NoError(t, h.Reconnect(e.ctx))
		if e.quiet[h] {
			require.NoError(t, e.StartFleet(e.ctx, h))
		}
	}
	clear(e.quiet)
	for len(e.running()) < e.size {
		e.addHost(t)
	}
	require.NoError(t, e.WaitMachinesOn(e.ctx, e.observer(t), e.size, 30*time.Second))
}

// reset destroys every unit and waits until no state is left.
func (e *env) reset(t *testing.T) {
	t.Helper()
	a := e.api(t)
	units, err := a.Units(e.ctx)
	require.NoError(t, err)
	for _, u := range units {
		code, body, err := a.Do(e.ctx, http.MethodDelete, "/units/"+u.Name, "")
		require.NoError(t, err)
		require.Contains(t, []int{http.StatusNoContent, http.StatusNotFound}, code, "destroy %s: %s", u.Name, body)
	}
	var left []platform.UnitState
	err = platform.Wait(e.ctx, 30*time.Second, func() bool {
		left, err = a.States(e.ctx)
		return err == nil && len(left) == 0
	})
	require.NoError(t, err, "units left after destroying them all: %v", left)
}

// running returns the running hosts but those in except and those whose
// fleetd a scenario keeps down (env.quiet).
func (e *env) running(except ...*hosts.Host) []*hosts.Host {
	var out []*hosts.Host
	for _, h := range e.Hosts() {
		if h.Leader() != 0 && !slices.Contains(except, h) && !e.quiet[h] {
			out = append(out, h)
		}
	}
	return out
}

// observer returns a running host but those in except, from which to watch
// the cluster: never one whose fleetd is kept down (fleetctl there would
// start it again through fleet.socket) or that is cut off.
func (e *env) observer(t *testing.T, except ...*hosts.Host) *hosts.Host {
	t.Helper()
	hs := e.running(except...)
	require.NotEmpty(t, hs, "no running host to observe the cluster from")
	return hs[0]
}

// api returns the HTTP API of a running host but those in except.
func (e *env) api(t *testing.T, except ...*hosts.Host) *platform.API {
	t.Helper()
	return e.API(e.observer(t, except...))
}

// byID returns the host with machine ID id.
func (e *env) byID(t *testing.T, id string) *hosts.Host {
	t.Helper()
	for _, h := range e.Hosts() {
		if h.MachineID == id {
			return h
		}
	}
	t.Fatalf("no host has machine ID %q", id)
	return nil
}

// fleetctl runs fleetctl in h and requires it to succeed.
func (e *env) fleetctl(t *testing.T, h *hosts.Host, args ...string) string {
	t.Helper()
	out, err := e.Fleetctl(e.ctx, h, args...)
	require.NoError(t, err, "fleetctl %s:\n%s", strings.Join(args, " "), out)
	return out
}

// unit returns the path of fixture name inside every host.
func unit(name string) string { return unitsDir + "/" + name }

// units returns the paths of fixtures names inside every host.
func units(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = unit(n)
	}
	return out
}

// writeUnit writes a unit file into h's /root/units.
func writeUnit(t *testing.T, h *hosts.Host, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(h.Path(unit(name)), []byte(body), 0o644))
}

// sleeperUnit runs as long as it is not stopped.
const sleeperUnit = "[Unit]\nDescription=sleeps\n[Service]\nExecStart=/bin/sleep infinity\n"

// mainPID returns the main PID of unit name in h, which must run.
func mainPID(t *testing.T, ctx context.Context, h *hosts.Host, name string) string {
	t.Helper()
	out, err := h.Exec(ctx, "systemctl", "show", "-p", "MainPID", "--value", name)
	require.NoError(t, err, string(out))
	pid := strings.TrimSpace(string(out))
	require.NotEqual(t, "0", pid, "%s has no main process on %s", name, h.Name)
	return pid
}

// pids returns the main PID of each active unit of p, keyed "unit@host".
func (e *env) pids(t *testing.T, p platform.Placement) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, ids := range p {
		for _, id := range ids {
			h := e.byID(t, id)
			out[name+"@"+h.Name] = mainPID(t, e.ctx, h, name)
		}
	}
	return out
}

// requireNoStops fails if systemd on any of hs stopped or started one of
// names since since (from the host's journal): units must not flap.
func (e *env) requireNoStops(t *testing.T, since time.Time, hs []*hosts.Host, names ...string) {
	t.Helper()
	for _, h := range hs {
		out, err := h.Exec(e.ctx, "journalctl", "--no-pager", "-q", "-o", "short-unix", "_PID=1",
			"--since", fmt.Sprintf("@%d", since.Unix()))
		require.NoError(t, err, string(out))
		for _, line := range strings.Split(string(out), "\n") {
			// 1700000000.123456 h1 systemd[1]: Stopping hello.service - ...
			stamp, rest, _ := strings.Cut(line, " ")
			sec, err := strconv.ParseFloat(stamp, 64)
			if err != nil || time.Unix(0, int64(sec*1e9)).Before(since) {
				continue
			}
			_, msg, _ := strings.Cut(rest, ": ")
			for _, n := range names {
				for _, verb := range []string{"Stopping ", "Stopped ", "Starting ", "Started "} {
					if strings.HasPrefix(msg, verb+n) {
						t.Errorf("%s: systemd on %s: %q", n, h.Name, line)
					}
				}
			}
		}
	}
}

// engineLeader returns the machine ID of the engine leader, read from etcd
// (the oldest key of fleet's election), or "" when there is none.
func (e *env) engineLeader(t *testing.T) string {
	t.Helper()
	id, err := e.engineLeaderID(e.ctx)
	require.NoError(t, err)
	return id
}

// engineLeaderID is engineLeader for callers that outlive an etcd outage:
// it fails when no etcd member answers.
func (e *env) engineLeaderID(ctx context.Context) (string, error) {
	prefix := "/_coreos.com/fleet/engine/leader/"
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	body := fmt.Sprintf(`{"key":%q,"range_end":%q,"sort_order":"ASCEND","sort_target":"CREATE","limit":1}`,
		b64(prefix), b64(end))
	tlsCfg, err := e.EtcdTLSConfig()
	if err != nil {
		return "", err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	for _, ep := range strings.Split(e.EtcdServers, ",") {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/v3/kv/range", strings.NewReader(body))
		if err != nil {
			cancel()
			return "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			continue // a member that is down
		}
		var r struct{ Kvs []struct{ Value string } }
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		if len(r.Kvs) == 0 {
			return "", nil
		}
		v, err := base64.StdEncoding.DecodeString(r.Kvs[0].Value)
		if err != nil {
			return "", fmt.Errorf("engine leader key: %w", err)
		}
		return string(v), nil
	}
	return "", fmt.Errorf("no etcd member of %s answers", e.EtcdServers)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// listUnitFiles returns fleetctl list-unit-files --fields unit,dstate,state
// as rows.
func (e *env) listUnitFiles(t *testing.T, h *hosts.Host) [][]string {
	t.Helper()
	out := e.fleetctl(t, h, "list-unit-files", "--no-legend", "--full", "--fields", "unit,dstate,state")
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	return rows
}

// helloUnit runs the hello image in Docker; container names are unique per
// machine (%m), since the shared dockerd serves every host.
const helloUnit = `[Unit]
Description=Hello from a Docker container
[Service]
ExecStartPre=-/usr/bin/docker rm -f hello-%m
ExecStart=/usr/bin/docker run --rm --network none --name hello-%m fleet/hello:latest
ExecStop=/usr/bin/docker stop -t 5 hello-%m
`

// containerRuns reports whether docker in h lists a running container name.
func containerRuns(ctx context.Context, h *hosts.Host, name string) bool {
	out, err := h.Exec(ctx, "docker", "ps", "--format", "{{.Names}}")
	return err == nil && slices.Contains(strings.Fields(string(out)), name)
}

// unitOn returns the host unit name is scheduled on, from list-units
// --full, waiting a few seconds for it to be placed.
func (e *env) unitOn(t *testing.T, name string) *hosts.Host {
	t.Helper()
	var id, last string
	err := platform.Wait(e.ctx, 10*time.Second, func() bool {
		out, err := e.Fleetctl(e.ctx, e.observer(t), "list-units", "--no-legend", "--full", "--fields", "unit,machine")
		last = out
		if err != nil {
			return false
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == name {
				id, _, _ = strings.Cut(f[1], "/")
				return true
			}
		}
		return false
	})
	require.NoError(t, err, "unit %s is on no machine; list-units:\n%s", name, last)
	return e.byID(t, id)
}

// requireDistinctMachines requires every active unit of p on a machine of
// its own.
func requireDistinctMachines(t *testing.T, p platform.Placement) {
	t.Helper()
	seen := map[string]string{}
	for name, ids := range p {
		for _, id := range ids {
			require.NotContains(t, seen, id, "%s and %s share machine %s", name, seen[id], id)
			seen[id] = name
		}
	}
}

// sh runs a command in h, requires it to succeed and returns its output,
// trimmed.
func (e *env) sh(t *testing.T, h *hosts.Host, args ...string) string {
	t.Helper()
	out, err := h.Exec(e.ctx, args...)
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}
