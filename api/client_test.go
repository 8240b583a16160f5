package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// clients returns the registry client and HTTP clients over TCP and a unix
// socket, all on the same cluster, so every behaviour is checked on each.
func clients(t *testing.T, c *cluster) map[string]api.Client {
	t.Helper()
	h := api.NewServer(c.rc)
	tcp, err := api.NewHTTPClient(serveTCP(t, h).URL, 5*time.Second)
	require.NoError(t, err)
	unix, err := api.NewHTTPClient(serveUnix(t, h), 5*time.Second)
	require.NoError(t, err)
	return map[string]api.Client{"registry": c.rc, "http-tcp": tcp, "http-unix": unix}
}

func TestClientRoundTrip(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp", "http-unix"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			ctx := c.ctx
			c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Metadata: map[string]string{"disk": "ssd"}})

			ms, err := cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, []api.Machine{{ID: "m1", PrimaryIP: "10.0.0.1", Metadata: map[string]string{"disk": "ssd"}, State: "active"}}, ms)

			warnings, err := cl.CreateUnit(ctx, &api.Unit{Name: "hello.service", Options: append(helloOpts[:2:2],
				&api.UnitOption{Section: "X-Fleet", Name: "Bogus", Value: "1"})})
			require.NoError(t, err)
			require.Equal(t, []string{`unknown [X-Fleet] option "Bogus" ignored`}, warnings)

			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "hello.service", Options: helloOpts})
			require.ErrorIs(t, err, api.ErrExists)
			require.EqualError(t, err, "unit hello.service already exists")

			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "bad", Options: helloOpts})
			require.ErrorIs(t, err, api.ErrInvalid)
			require.ErrorContains(t, err, `invalid unit name "bad"`)

			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "g.service", Options: opts(
				"Service", "ExecStart", "/bin/true",
				"X-Fleet", "Global", "true",
				"X-Fleet", "MachineOf", "hello.service")})
			require.ErrorIs(t, err, api.ErrInvalid)
			require.EqualError(t, err, "unit g.service: Global cannot be combined with MachineOf")

			u, err := cl.Unit(ctx, "hello.service")
			require.NoError(t, err)
			require.Equal(t, "inactive", u.DesiredState)
			require.Equal(t, "inactive", u.CurrentState)
			require.Len(t, u.Options, 3)

			_, err = cl.Unit(ctx, "nope.service")
			require.ErrorIs(t, err, api.ErrNotFound)
			require.EqualError(t, err, "unit nope.service not found")

			require.NoError(t, cl.SetUnitTargetState(ctx, "hello.service", "launched"))
			require.ErrorIs(t, cl.SetUnitTargetState(ctx, "nope.service", "launched"), api.ErrNotFound)
			require.ErrorIs(t, cl.SetUnitTargetState(ctx, "hello.service", "running"), api.ErrInvalid)

			c.place("m1", "hello.service", registry.StateLaunched)
			c.publish("m1", "hello.service", "loaded", "active", "running")
			u, err = cl.Unit(ctx, "hello.service")
			require.NoError(t, err)
			require.Equal(t, &api.Unit{Name: "hello.service", Options: u.Options, DesiredState: "launched", CurrentState: "launched", MachineID: "m1"}, u)

			states, err := cl.UnitStates(ctx, api.StateFilter{})
			require.NoError(t, err)
			require.Equal(t, []*api.UnitState{{
				Name: "hello.service", Hash: api.FileFromOptions(u.Options).Hash().String(), MachineID: "m1",
				SystemdLoadState: "loaded", SystemdActiveState: "active", SystemdSubState: "running",
			}}, states)

			// Replace keeps the desired state unless one is given.
			_, err = cl.ReplaceUnit(ctx, &api.Unit{Name: "hello.service", Options: opts("Service", "ExecStart", "/bin/new")})
			require.NoError(t, err)
			u, err = cl.Unit(ctx, "hello.service")
			require.NoError(t, err)
			require.Equal(t, "launched", u.DesiredState)
			require.Equal(t, "/bin/new", u.Options[0].Value)
			_, err = cl.ReplaceUnit(ctx, &api.Unit{Name: "hello.service", Options: opts("Service", "ExecStart", "/bin/new"), DesiredState: "loaded"})
			require.NoError(t, err)
			u, err = cl.Unit(ctx, "hello.service")
			require.NoError(t, err)
			require.Equal(t, "loaded", u.DesiredState)

			// Templates: submitted, never scheduled; instances take their options.
			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "app@.service", Options: opts("Service", "ExecStart", "/bin/app %i")})
			require.NoError(t, err)
			err = cl.SetUnitTargetState(ctx, "app@.service", "loaded")
			require.ErrorIs(t, err, api.ErrInvalid)
			require.EqualError(t, err, "unit app@.service is a template; load an instance such as app@1.service")
			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "other@.service", Options: opts("Service", "ExecStart", "/bin/app %i"), DesiredState: "launched"})
			require.ErrorIs(t, err, api.ErrInvalid)
			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "app@web.service"})
			require.NoError(t, err)
			inst, err := cl.Unit(ctx, "app@web.service")
			require.NoError(t, err)
			require.Equal(t, "/bin/app %i", inst.Options[0].Value)
			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "plain.service"})
			require.ErrorIs(t, err, api.ErrConflict, "fleet answered 409 to a new unit without options")

			all, err := cl.Units(ctx)
			require.NoError(t, err)
			var names []string
			for _, u := range all {
				names = append(names, u.Name)
			}
			require.Equal(t, []string{"app@.service", "app@web.service", "hello.service"}, names)

			require.NoError(t, cl.DestroyUnit(ctx, "hello.service"))
			require.ErrorIs(t, cl.DestroyUnit(ctx, "hello.service"), api.ErrNotFound)
		})
	}
}

func TestHTTPClientUnreachable(t *testing.T) {
	ctx := context.Background()
	sock := filepath.Join(t.TempDir(), "fleet.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedPort := l.Addr().String()
	require.NoError(t, l.Close())

	tests := []struct {
		name, endpoint, want string
	}{
		{"unix socket", "unix://" + sock, "cannot reach fleetd at unix://" + sock + ": dial unix " + sock + ": connect: no such file or directory (is fleetd running? set --endpoint or FLEETCTL_ENDPOINT)"},
		{"bare socket path", sock, "cannot reach fleetd at " + sock + ": "},
		{"closed TCP port", "http://" + closedPort, "cannot reach fleetd at http://" + closedPort + ": dial tcp " + closedPort + ": connect: connection refused (is fleetd running? set --endpoint or FLEETCTL_ENDPOINT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := api.NewHTTPClient(tt.endpoint, time.Second)
			require.NoError(t, err)
			start := time.Now()
			_, err = c.Units(ctx)
			require.ErrorIs(t, err, api.ErrUnavailable)
			require.True(t, strings.HasPrefix(err.Error(), tt.want), "got %q", err)
			require.Less(t, time.Since(start), time.Second)
		})
	}

	// A server that accepts but never answers: bounded by the timeout.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer hang.Close()
	c, err := api.NewHTTPClient("http://"+hang.Addr().String(), 200*time.Millisecond)
	require.NoError(t, err)
	start := time.Now()
	_, err = c.Machines(ctx)
	require.ErrorIs(t, err, api.ErrUnavailable)
	require.ErrorContains(t, err, "did not answer within 200ms")
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestNewHTTPClientEndpoints(t *testing.T) {
	for _, ok := range []string{"unix:///var/run/fleet.sock", "/var/run/fleet.sock", "http://10.0.0.1:49153", "https://fleet.example", "10.0.0.1:49153"} {
		_, err := api.NewHTTPClient(ok, time.Second)
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"ftp://x", "unix://", "http://"} {
		_, err := api.NewHTTPClient(bad, time.Second)
		require.ErrorContains(t, err, "invalid fleetd endpoint", bad)
	}
}

// fakeInspector is a test double of a machine's systemd: it answers with
// the machine's name, so a test can tell which machine answered.
type fakeInspector struct{ machine string }

func (f fakeInspector) Status(_ context.Context, name string) (string, error) {
	return fmt.Sprintf("status of %s on %s\n", name, f.machine), nil
}

func (f fakeInspector) Journal(_ context.Context, name string, opts api.JournalOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(fmt.Sprintf("%d journal lines of %s on %s\n", opts.Lines, name, f.machine))), nil
}

// readAll reads and closes a journal stream.
func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

func TestStatusAndJournalForwarding(t *testing.T) {
	c := newCluster(t)
	// m2's fleetd serves TCP and registers its URL; m3's serves only its socket.
	srv2 := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m2", fakeInspector{"m2"})))
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2", APIURL: srv2.URL})
	c.addMachine(machine.Machine{ID: "m3", PublicIP: "10.0.0.3"})
	srv1 := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m1", fakeInspector{"m1"})))
	hc, err := api.NewHTTPClient(srv1.URL, 5*time.Second)
	require.NoError(t, err)

	for _, n := range []string{"one.service", "two.service", "three.service", "idle.service"} {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: n, Options: helloOpts})
		require.NoError(t, err)
	}
	_, err = c.rc.CreateUnit(c.ctx, &api.Unit{Name: "all.service", Options: opts("Service", "ExecStart", "/bin/true", "X-Fleet", "Global", "true")})
	require.NoError(t, err)
	c.place("m1", "one.service", registry.StateLaunched)
	c.place("m2", "two.service", registry.StateLaunched)
	c.place("m3", "three.service", registry.StateLoaded)

	ctx := c.ctx
	got, err := hc.UnitStatus(ctx, "one.service")
	require.NoError(t, err)
	require.Equal(t, "status of one.service on m1\n", got, "local unit: local inspector")
	got, err = hc.UnitStatus(ctx, "two.service")
	require.NoError(t, err)
	require.Equal(t, "status of two.service on m2\n", got, "remote unit: forwarded to m2")
	rc, err := hc.UnitJournal(ctx, "two.service", api.JournalOptions{Lines: 25})
	require.Equal(t, "25 journal lines of two.service on m2\n", readAll(t, rc, err))
	got, err = hc.UnitStatus(ctx, "all.service")
	require.NoError(t, err)
	require.Equal(t, "status of all.service on m1\n", got, "global unit: local inspector")

	_, err = hc.UnitStatus(ctx, "three.service")
	require.ErrorIs(t, err, api.ErrUnavailable)
	require.EqualError(t, err, "unit three.service runs on machine m3 (10.0.0.3), which does not serve the fleet API over TCP; give that fleetd a TCP listen address, or run fleetctl on that machine")
	_, err = hc.UnitStatus(ctx, "idle.service")
	require.ErrorIs(t, err, api.ErrConflict)
	require.EqualError(t, err, "unit idle.service is not scheduled to any machine (its state is inactive); load or start it first")
	_, err = hc.UnitJournal(ctx, "nope.service", api.JournalOptions{Lines: 10})
	require.ErrorIs(t, err, api.ErrNotFound)

	// The registry client (fleetctl --driver=etcd) forwards everything.
	rc, err = c.rc.UnitJournal(ctx, "two.service", api.JournalOptions{Lines: 3})
	require.Equal(t, "3 journal lines of two.service on m2\n", readAll(t, rc, err))
	_, err = c.rc.UnitStatus(ctx, "one.service")
	require.ErrorIs(t, err, api.ErrUnavailable, "m1 registered no API URL")

	// A forwarded request whose unit is not local is not forwarded again.
	a := call(t, srv2.URL, "GET", "/fleet/v1/units/one.service/status", "", "Fleet-Forwarded", "true")
	require.Equal(t, 503, a.code, a.body)
	require.Contains(t, a.body, "not scheduled to this machine (m2) but to machine m1")
}

// fakeCommand writes an executable shell script that prints out and exits
// with code.
func fakeCommand(t *testing.T, name, out string, code int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	script := "#!/bin/sh\necho \"$@\" > " + p + ".args\nprintf '%s' '" + out + "'\necho 'some stderr' >&2\nexit " + strconv.Itoa(code) + "\n"
	require.NoError(t, os.WriteFile(p, []byte(script), 0o755))
	return p
}

func TestSystemdInspector(t *testing.T) {
	ctx := context.Background()
	args := func(cmd string) string {
		b, err := os.ReadFile(cmd + ".args")
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	tests := []struct {
		name    string
		code    int
		wantErr error
	}{
		{"active", 0, nil},
		{"inactive is not an error", 3, nil},
		{"unknown to systemd", 4, api.ErrConflict},
		{"systemctl failed", 1, nil}, // output was printed: show it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := fakeCommand(t, "systemctl", "● hello.service - Hello", tt.code)
			out, err := api.SystemdInspector{Systemctl: cmd}.Status(ctx, "hello.service")
			require.Equal(t, "status --no-pager --full -- hello.service", args(cmd))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorContains(t, err, "some stderr")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "● hello.service - Hello", out)
		})
	}

	cmd := fakeCommand(t, "systemctl", "", 1)
	_, err := api.SystemdInspector{Systemctl: cmd}.Status(ctx, "hello.service")
	require.ErrorContains(t, err, "exit status 1: some stderr")

	j := fakeCommand(t, "journalctl", "line 1", 0)
	rc, err := api.SystemdInspector{Journalctl: j}.Journal(ctx, "hello.service", api.JournalOptions{Lines: 7})
	require.Equal(t, "line 1", readAll(t, rc, err))
	require.Equal(t, "--no-pager --unit=hello.service --lines=7", args(j))
	rc, err = api.SystemdInspector{Journalctl: j}.Journal(ctx, "hello.service", api.JournalOptions{Lines: 0, Output: "json"})
	require.Equal(t, "line 1", readAll(t, rc, err))
	require.Equal(t, "--no-pager --unit=hello.service --lines=0 --output=json", args(j))
	_, err = api.SystemdInspector{Journalctl: j}.Journal(ctx, "hello.service", api.JournalOptions{Output: "--all"})
	require.ErrorIs(t, err, api.ErrInvalid)
	j = fakeCommand(t, "journalctl", "", 1)
	_, err = api.SystemdInspector{Journalctl: j}.Journal(ctx, "hello.service", api.JournalOptions{Lines: 7})
	require.ErrorContains(t, err, "some stderr")

	_, err = api.SystemdInspector{Systemctl: filepath.Join(t.TempDir(), "missing")}.Status(ctx, "x.service")
	require.Error(t, err)
	require.False(t, errors.Is(err, api.ErrConflict))
}
