package fleetctl_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestVersion(t *testing.T) {
	ctx := context.Background()
	r := runFleetctl(ctx, nil, "version")
	require.NoError(t, r.err)
	require.Equal(t, "fleetctl version 1.2.3-test\n", r.stdout)
	r = runFleetctl(ctx, nil, "--version")
	require.NoError(t, r.err)
	require.Equal(t, "fleetctl version 1.2.3-test\n", r.stdout)
	r = runFleetctl(ctx, nil, "version", "extra")
	require.Equal(t, 2, r.code)
}

func TestEnvironment(t *testing.T) {
	h := newHarness(t, "etcd")
	dir := t.TempDir()
	hello := writeUnit(t, dir, "hello.service", helloUnit)
	ctx := h.ctx
	etcdEnv := map[string]string{
		"FLEETCTL_DRIVER":          "etcd",
		"FLEETCTL_ENDPOINT":        h.etcd,
		"FLEETCTL_ETCD_KEY_PREFIX": prefix,
		"FLEETCTL_REQUEST_TIMEOUT": "2.5",
	}

	// Everything from the environment.
	r := runFleetctl(ctx, etcdEnv, "submit", hello)
	require.NoError(t, r.err)
	r = runFleetctl(ctx, etcdEnv, "list-unit-files", "--no-legend", "--fields=unit")
	require.NoError(t, r.err)
	require.Equal(t, "hello.service\n", r.stdout)

	// The prefix matters: another prefix sees no units.
	other := map[string]string{"FLEETCTL_DRIVER": "etcd", "FLEETCTL_ENDPOINT": h.etcd, "FLEETCTL_ETCD_KEY_PREFIX": "/elsewhere/"}
	r = runFleetctl(ctx, other, "list-unit-files", "--no-legend")
	require.NoError(t, r.err)
	require.Empty(t, r.stdout)

	// Flags win over the environment.
	r = runFleetctl(ctx, other, "--etcd-key-prefix", prefix, "list-unit-files", "--no-legend", "--fields=unit")
	require.NoError(t, r.err)
	require.Equal(t, "hello.service\n", r.stdout)
	apiEnv := map[string]string{"FLEETCTL_ENDPOINT": "unix:///nonexistent/fleet.sock", "FLEETCTL_DRIVER": "etcd"}
	r = runFleetctl(ctx, apiEnv, "--driver", "api", "--endpoint", h.socket, "list-unit-files", "--no-legend", "--fields=unit")
	require.NoError(t, r.err)
	require.Equal(t, "hello.service\n", r.stdout)
	// FLEETCTL_ENDPOINT alone selects the fleetd socket (api is the default driver).
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_ENDPOINT": h.socket}, "cat", "hello")
	require.NoError(t, r.err)
	require.Equal(t, helloUnit, r.stdout)

	// Bad values are usage errors naming the variable.
	for _, tt := range []struct{ env, value, want string }{
		{"FLEETCTL_DRIVER", "grpc", `FLEETCTL_DRIVER="grpc": "grpc" is not one of api, etcd`},
		{"FLEETCTL_REQUEST_TIMEOUT", "soon", `FLEETCTL_REQUEST_TIMEOUT="soon": "soon" is neither a duration (3s) nor a number of seconds`},
		{"FLEETCTL_REQUEST_TIMEOUT", "-1", `FLEETCTL_REQUEST_TIMEOUT="-1": "-1" is not positive`},
	} {
		r = runFleetctl(ctx, map[string]string{tt.env: tt.value}, "list-units")
		require.Equal(t, 2, r.code, tt.env)
		require.EqualError(t, r.err, tt.want)
	}
	r = runFleetctl(ctx, nil, "--request-timeout", "0", "list-units")
	require.Equal(t, 2, r.code)
	require.ErrorContains(t, r.err, `invalid argument "0" for "--request-timeout" flag: "0" is not positive`)
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	sock := filepath.Join(t.TempDir(), "fleet.sock")

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"fleetd socket", []string{"--endpoint", "unix://" + sock, "list-units"}, nil,
			"cannot reach fleetd at unix://" + sock + ": dial unix " + sock + ": connect: no such file or directory (is fleetd running? set --endpoint or FLEETCTL_ENDPOINT)"},
		{"fleetd socket from env", []string{"list-machines"}, map[string]string{"FLEETCTL_ENDPOINT": "unix://" + sock},
			"cannot reach fleetd at unix://" + sock + ": "},
		{"fleetd TCP", []string{"--endpoint", "http://" + closed, "start", "--no-block", "x"}, nil,
			"cannot reach fleetd at http://" + closed + ": dial tcp " + closed + ": connect: connection refused (is fleetd running? set --endpoint or FLEETCTL_ENDPOINT)"},
		{"etcd", []string{"--driver", "etcd", "--endpoint", "http://" + closed, "--request-timeout", "500ms", "list-unit-files"}, nil,
			"cannot reach etcd at http://" + closed + " within 500ms: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := runFleetctl(ctx, tt.env, tt.args...)
			require.Equal(t, fleetctl.ExitUnavailable, r.code, "err: %v", r.err)
			require.True(t, strings.HasPrefix(r.err.Error(), tt.want), "got %q", r.err)
			require.Less(t, time.Since(start), 2*time.Second, "bounded by --request-timeout")
			require.Empty(t, r.stdout)
		})
	}
	r := runFleetctl(ctx, nil, "--endpoint", "ftp://x", "list-units")
	require.Equal(t, 2, r.code)
	require.ErrorContains(t, r.err, `invalid fleetd endpoint "ftp://x"`)
}

// fakeInspector stands in for a machine's systemd in status and journal.
type fakeInspector struct{}

func (fakeInspector) Status(_ context.Context, name string) (string, error) {
	return fmt.Sprintf("● %s - Hello\n   Active: active (running)\n", name), nil
}

func (fakeInspector) Journal(_ context.Context, name string, opts api.JournalOptions) (io.ReadCloser, error) {
	var b strings.Builder
	for i := 1; i <= opts.Lines; i++ {
		fmt.Fprintf(&b, "%s: line %d", name, i)
		if i < opts.Lines {
			b.WriteString("\n")
		}
	}
	return io.NopCloser(strings.NewReader(b.String())), nil
}

func TestStatusAndJournal(t *testing.T) {
	h := newHarness(t, "api", api.WithLocalMachine(m1, fakeInspector{}))
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	for _, n := range []string{"a.service", "b.service", "idle.service"} {
		require.NoError(t, h.run("submit", writeUnit(t, dir, n, helloUnit)).err)
	}
	h.place(m1, "a.service", registry.StateLaunched)
	h.place(m1, "b.service", registry.StateLaunched)

	r := h.run("status", "a", "b")
	require.NoError(t, r.err)
	require.Equal(t, "● a.service - Hello\n   Active: active (running)\n\n● b.service - Hello\n   Active: active (running)\n", r.stdout)

	r = h.run("journal", "a")
	require.NoError(t, r.err)
	require.Equal(t, 10, strings.Count(r.stdout, "\n"), "default 10 lines, newline added")
	r = h.run("journal", "-n", "2", "a")
	require.NoError(t, r.err)
	require.Equal(t, "a.service: line 1\na.service: line 2\n", r.stdout)
	r = h.run("journal", "--lines=1", "b.service")
	require.NoError(t, r.err)
	require.Equal(t, "b.service: line 1\n", r.stdout)

	r = h.run("status", "idle")
	require.Equal(t, 1, r.code)
	require.EqualError(t, r.err, "unit idle.service is not scheduled to any machine (its state is inactive); load or start it first")

	// Through etcd, fleetctl asks the unit's machine's fleetd, which m1 does
	// not make reachable over TCP.
	h.driver = "etcd"
	r = h.run("status", "a")
	require.Equal(t, fleetctl.ExitUnavailable, r.code)
	require.EqualError(t, r.err, "unit a.service runs on machine "+m1+" (10.0.0.3), which does not serve the fleet API over TCP; give that fleetd a TCP listen address, or run fleetctl on that machine")
}
