package fleetctl_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// watchStates records, in order, every systemd state the fake agents
// publish ("name=active"), until the test ends.
func (h *harness) watchStates() func() []string {
	h.t.Helper()
	rev, err := h.reg.Revision(h.ctx)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(h.ctx)
	var (
		mu   sync.Mutex
		seen []string
		wg   sync.WaitGroup
	)
	wg.Add(1)
	h.t.Cleanup(func() { cancel(); wg.Wait() })
	ch := h.reg.WatchChanges(ctx, rev)
	go func() {
		defer wg.Done()
		for b := range ch {
			for _, c := range b.Changes {
				if c.State == nil || c.State.Cur == nil {
					continue
				}
				if c.State.Prev != nil && c.State.Prev.ActiveState == c.State.Cur.ActiveState {
					continue
				}
				mu.Lock()
				seen = append(seen, c.State.Cur.Name+"="+c.State.Cur.ActiveState)
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestRestart(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.3", nil)
			h.fakeFleet("bad.service")
			dir := t.TempDir()
			writeUnit(t, dir, "app@.service", "[Service]\nExecStart=/bin/app %i\n")
			r := h.run("start", filepath.Join(dir, "app@1.service"), filepath.Join(dir, "app@2.service"))
			require.NoError(t, r.err)
			r = h.run("load", filepath.Join(dir, "app@3.service"))
			require.NoError(t, r.err)

			states := h.watchStates()
			r = h.run("restart", "app@*")
			require.NoError(t, r.err)
			require.Equal(t, ""+
				"Unit app@1.service restarted on 113f16a7.../10.0.0.3\n"+
				"Unit app@2.service restarted on 113f16a7.../10.0.0.3\n"+
				"Unit app@3.service restarted on 113f16a7.../10.0.0.3\n", r.stdout)
			// One at a time: each unit is stopped and active again before the
			// next one stops. app@3 was only loaded: it is started.
			// The watch may deliver the last state a moment after restart
			// returned.
			want := []string{
				"app@1.service=inactive", "app@1.service=active",
				"app@2.service=inactive", "app@2.service=active",
				"app@3.service=active",
			}
			require.Eventually(t, func() bool { return len(states()) >= len(want) }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, want, states())

			// A unit failing to start stops the rolling restart.
			writeUnit(t, dir, "bad.service", "[Service]\nExecStart=/bin/false\n")
			r = h.run("start", filepath.Join(dir, "bad.service"))
			require.Equal(t, fleetctl.ExitUnitFailed, r.code)
			r = h.run("restart", "app@1", "bad", "app@2")
			require.Equal(t, fleetctl.ExitUnitFailed, r.code, "err: %v", r.err)
			require.Equal(t, "Unit app@1.service restarted on 113f16a7.../10.0.0.3\nUnit bad.service failed on 113f16a7.../10.0.0.3\n", r.stdout)
			require.EqualError(t, r.err, "unit bad.service failed to start; see 'fleetctl status bad.service' and 'fleetctl journal bad.service'; stopped the rolling restart before unit app@2.service")

			// An unscheduled unit cannot be restarted: nothing is touched.
			writeUnit(t, dir, "idle.service", helloUnit)
			require.NoError(t, h.run("submit", filepath.Join(dir, "idle.service")).err)
			r = h.run("restart", "app@1", "idle")
			require.Equal(t, fleetctl.ExitFailed, r.code)
			require.EqualError(t, r.err, "cannot restart unit idle.service: it is not loaded on any machine (state inactive); start it instead")
			require.Empty(t, r.stdout)
		})
	}
}

func TestRestartGlobal(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	h.fakeFleet()
	dir := t.TempDir()
	g := writeUnit(t, dir, "g.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n")
	require.NoError(t, h.run("start", g).err)
	require.Eventually(t, func() bool {
		ss, err := h.reg.States(h.ctx, m1)
		return err == nil && len(ss) == 1 && ss[0].ActiveState == "active"
	}, 5*time.Second, 20*time.Millisecond)
	states := h.watchStates()
	r := h.run("restart", "g")
	require.NoError(t, r.err)
	require.Equal(t, "Unit g.service restarted on every machine it runs on\n", r.stdout)
	require.Equal(t, []string{"g.service=inactive", "g.service=active"}, states())
}

// followJournal writes a fake journalctl that prints two lines, then a
// line every 20 ms until killed.
func followJournal(t *testing.T) string {
	t.Helper()
	cmd := filepath.Join(t.TempDir(), "journalctl")
	script := "#!/bin/sh\necho \"$@\" > " + cmd + ".args\necho 'line 1'\necho 'line 2'\nwhile true; do sleep 0.02; echo tick; done\n"
	require.NoError(t, os.WriteFile(cmd, []byte(script), 0o755))
	return cmd
}

func TestJournalFollow(t *testing.T) {
	journalctl := followJournal(t)
	h := newHarness(t, "api", api.WithLocalMachine(m1, api.SystemdInspector{Journalctl: journalctl}))
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	require.NoError(t, h.run("submit", writeUnit(t, dir, "a.service", helloUnit)).err)
	h.place(m1, "a.service", registry.StateLaunched)

	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	var stdout, stderr syncBuffer
	cmd := fleetctl.NewCommand(&stdout, &stderr, func(string) string { return "" })
	cmd.SetArgs(append(h.global(), "journal", "-f", "-n", "3", "--output", "cat", "a"))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	require.Eventually(t, func() bool { return strings.Count(stdout.String(), "tick") >= 3 }, 5*time.Second, 20*time.Millisecond)
	require.True(t, strings.HasPrefix(stdout.String(), "line 1\nline 2\ntick\n"), stdout.String())
	args, err := os.ReadFile(journalctl + ".args")
	require.NoError(t, err)
	require.Equal(t, "--no-pager --unit=a.service --lines=3 --output=cat --follow", strings.TrimSpace(string(args)))

	cancel() // Ctrl-C
	select {
	case err := <-done:
		require.NoError(t, err, "interrupting a followed journal is how it ends")
	case <-time.After(5 * time.Second):
		t.Fatal("journal -f did not end when interrupted")
	}

	r := h.run("journal", "--output", "bogus", "a")
	require.Equal(t, fleetctl.ExitUsage, r.code)
	require.ErrorContains(t, r.err, `invalid journal output mode "bogus"`)
}

func TestGlobsAndSeveralUnits(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.3", nil)
			h.fakeFleet()
			dir := t.TempDir()
			for _, n := range []string{"web-1.service", "web-2.service", "db.service", "cache.socket"} {
				writeUnit(t, dir, n, "[Service]\nExecStart=/bin/true\n")
			}
			// A quoted pattern matching local files submits them.
			r := h.run("submit", filepath.Join(dir, "web-*"), filepath.Join(dir, "db.service"))
			require.NoError(t, r.err)
			r = h.run("list-unit-files", "--no-legend", "--fields=unit")
			require.NoError(t, r.err)
			require.Equal(t, "db.service\nweb-1.service\nweb-2.service\n", r.stdout)

			// A pattern matching no file stands for submitted units.
			r = h.run("start", "web-?", "db", "web-1")
			require.NoError(t, r.err)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			slices.Sort(lines) // printed as units come up
			require.Equal(t, []string{
				"Unit db.service launched on 113f16a7.../10.0.0.3",
				"Unit web-1.service launched on 113f16a7.../10.0.0.3",
				"Unit web-2.service launched on 113f16a7.../10.0.0.3",
			}, lines, "each unit once")
			r = h.run("stop", "web-*.service")
			require.NoError(t, r.err)
			lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
			slices.Sort(lines)
			require.Equal(t, []string{"Unit web-1.service loaded on 113f16a7.../10.0.0.3", "Unit web-2.service loaded on 113f16a7.../10.0.0.3"}, lines)
			r = h.run("destroy", "*")
			require.NoError(t, r.err)
			require.Equal(t, "Destroyed db.service\nDestroyed web-1.service\nDestroyed web-2.service\n", r.stdout)

			r = h.run("cat", "*")
			require.Equal(t, fleetctl.ExitNotFound, r.code)
		})
	}
}

func TestReplaceOnLoadAndStart(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	h.fakeFleet()
	dir := t.TempDir()
	p := writeUnit(t, dir, "hello.service", helloUnit)
	require.NoError(t, h.run("start", p).err)
	oldHash := hashOf(t, h, "hello.service")

	writeUnit(t, dir, "hello.service", "[Service]\nExecStart=/bin/sleep 2000\n")
	r := h.run("start", p)
	require.NoError(t, r.err)
	require.Contains(t, r.stderr, "differs from local unit file")
	require.Equal(t, oldHash, hashOf(t, h, "hello.service"), "no --replace: kept")

	r = h.run("start", "--replace", p)
	require.NoError(t, r.err)
	require.Empty(t, r.stderr)
	require.Equal(t, "Unit hello.service launched on 113f16a7.../10.0.0.3\n", r.stdout)
	require.NotEqual(t, oldHash, hashOf(t, h, "hello.service"))
	r = h.run("cat", "hello")
	require.NoError(t, r.err)
	require.Equal(t, "[Service]\nExecStart=/bin/sleep 2000\n", r.stdout)

	// An instance in the cluster and a changed local template beside it.
	tmpl := writeUnit(t, dir, "app@.service", "[Service]\nExecStart=/bin/app %i\n")
	require.NoError(t, h.run("load", filepath.Join(dir, "app@1.service")).err)
	writeUnit(t, dir, "app@.service", "[Service]\nExecStart=/bin/app2 %i\n")
	r = h.run("load", filepath.Join(dir, "app@1.service"))
	require.NoError(t, r.err)
	require.Equal(t, "WARNING: unit app@1.service in the cluster differs from local unit file template "+tmpl+"; use --replace to replace it\n", r.stderr)
	r = h.run("load", "--replace", filepath.Join(dir, "app@1.service"))
	require.NoError(t, r.err)
	r = h.run("cat", "app@1")
	require.NoError(t, r.err)
	require.Equal(t, "[Service]\nExecStart=/bin/app2 %i\n", r.stdout)
}

func TestPrefixMatching(t *testing.T) {
	h := setupListCluster(t, "api")
	r := h.run("list-m", "--no-legend", "--fields=machine")
	require.NoError(t, r.err)
	require.Equal(t, "113f16a7...\n8d5f1c2e...\n", r.stdout)
	r = h.run("ca", "hello")
	require.NoError(t, r.err)
	require.Contains(t, r.stdout, "Description=Hello World")

	r = h.run("list")
	require.Equal(t, fleetctl.ExitUsage, r.code)
	require.EqualError(t, r.err, `ambiguous command "list": it could be list-machines, list-unit-files, list-units`)

	// The aliases stay out of the help.
	r = h.run("help", "start")
	require.NoError(t, r.err)
	require.NotContains(t, r.stdout+r.stderr, "Aliases")
}

func TestHelpListsExitCodes(t *testing.T) {
	r := runFleetctl(context.Background(), nil, "help")
	require.NoError(t, r.err)
	out := r.stdout + r.stderr
	require.Contains(t, out, "Exit codes:")
	for _, line := range []string{"2  bad usage", "3  a unit failed", "4  no machine can run a unit", "5  gave up waiting", "6  fleetd, etcd", "7  a unit or machine does not exist"} {
		require.Contains(t, out, line)
	}
	require.Contains(t, out, "FLEETCTL_SSH_USERNAME")
	require.Contains(t, out, "Version:\n  1.2.3-test\n", "as fleet's help did")
}

func TestStatusJSON(t *testing.T) {
	h := newHarness(t, "api", api.WithLocalMachine(m1, fakeInspector{}))
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	for _, n := range []string{"a.service", "idle.service"} {
		require.NoError(t, h.run("submit", writeUnit(t, dir, n, helloUnit)).err)
	}
	h.place(m1, "a.service", registry.StateLaunched)
	h.publish(m1, "a.service", "loaded", "active", "running")

	r := h.run("status", "-o", "json", "a", "idle")
	require.NoError(t, r.err, "a unit without status text is reported, not an error")
	var out []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Len(t, out, 2)
	require.Equal(t, []string{"currentState", "desiredState", "global", "hash", "machineID", "name", "primaryIP", "states", "status"}, sortedKeys(out[0]))
	require.Equal(t, "a.service", out[0]["name"])
	require.Equal(t, m1, out[0]["machineID"])
	require.Equal(t, "10.0.0.3", out[0]["primaryIP"])
	require.Equal(t, "● a.service - Hello\n   Active: active (running)\n", out[0]["status"])
	st := out[0]["states"].([]any)[0].(map[string]any)
	require.Equal(t, "active", st["systemdActiveState"])
	require.Equal(t, []string{"currentState", "desiredState", "error", "global", "hash", "name", "states"}, sortedKeys(out[1]))
	require.Contains(t, out[1]["error"], "not scheduled to any machine")
	require.Equal(t, []any{}, out[1]["states"])
}

func sortedKeys(m map[string]any) []string {
	out := slices.Collect(maps.Keys(m))
	slices.Sort(out)
	return out
}

func TestUnplaceable(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) { testUnplaceable(t, driver) })
	}
}

func testUnplaceable(t *testing.T, driver string) {
	h := newHarness(t, driver)
	dir := t.TempDir()
	p := writeUnit(t, dir, "ssd.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=disk=ssd\n")
	h.setUnplaced("ssd.service", "no machine has metadata disk=ssd")
	r := h.run("start", p)
	require.Equal(t, fleetctl.ExitUnplaceable, r.code, "err: %v", r.err)
	require.Equal(t, "Unit ssd.service cannot be placed: no machine has metadata disk=ssd\n", r.stdout)
	require.EqualError(t, r.err, "no machine can run unit ssd.service (no machine has metadata disk=ssd); check the [X-Fleet] options against 'fleetctl list-machines'")

	r = h.run("list-unit-files", "--no-legend", "--fields=unit,dstate,reason")
	require.NoError(t, r.err)
	require.Equal(t, "ssd.service\tlaunched\tno machine has metadata disk=ssd\n", r.stdout)
	r = h.run("status", "-o", "json", "ssd")
	require.NoError(t, r.err)
	require.Contains(t, r.stdout, `"unplacedReason": "no machine has metadata disk=ssd"`)
}

func TestProgressOnTerminal(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	a := writeUnit(t, dir, "a.service", helloUnit)
	b := writeUnit(t, dir, "b.service", helloUnit)

	// This test plays engine and agents itself, one unit at a time.
	var stdout, stderr syncBuffer
	cmd := fleetctl.NewCommand(&stdout, &stderr, func(string) string { return "" }, fleetctl.WithTerminal(true))
	cmd.SetArgs(append(h.global(), "start", a, b))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(h.ctx) }()
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "\r\x1b[K0/2 units active, waiting for 2...") }, 5*time.Second, 10*time.Millisecond)
	h.place(m1, "a.service", registry.StateLaunched)
	h.publish(m1, "a.service", "loaded", "active", "running")
	require.Eventually(t, func() bool {
		return strings.Contains(stdout.String(), "\r\x1b[KUnit a.service launched on 113f16a7.../10.0.0.3\n\r\x1b[K1/2 units active, waiting for 1...")
	}, 5*time.Second, 10*time.Millisecond)
	h.place(m1, "b.service", registry.StateLaunched)
	h.publish(m1, "b.service", "loaded", "active", "running")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("start did not return")
	}
	require.True(t, strings.HasSuffix(stdout.String(), "\r\x1b[KUnit b.service launched on 113f16a7.../10.0.0.3\n"), "the count is erased at the end: %q", stdout.String())

	// Off a terminal: plain lines only.
	h.fakeFleet()
	require.NoError(t, h.run("stop", "a", "b").err)
	r := h.run("start", "a", "b")
	require.NoError(t, r.err)
	require.NotContains(t, r.stdout, "\r")
	require.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 2)
}

func TestGlobalFlagsFromEnvironment(t *testing.T) {
	h := newHarness(t, "etcd")
	ctx := h.ctx
	// An endpoint on etcd's port picks the etcd driver, as in fleetctl
	// (nothing is expected to listen there: the error says who was asked).
	r := runFleetctl(ctx, map[string]string{"FLEETCTL_ENDPOINT": "http://127.0.0.1:2379", "FLEETCTL_REQUEST_TIMEOUT": "300ms"}, "list-units")
	require.ErrorContains(t, r.err, "cannot reach etcd at http://127.0.0.1:2379")
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_ENDPOINT": "http://127.0.0.1:2379", "FLEETCTL_DRIVER": "api", "FLEETCTL_REQUEST_TIMEOUT": "300ms"}, "list-units")
	require.ErrorContains(t, r.err, "cannot reach fleetd at http://127.0.0.1:2379")
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_DRIVER": "etcd", "FLEETCTL_ENDPOINT": h.etcd, "FLEETCTL_ETCD_KEY_PREFIX": prefix}, "list-units")
	require.NoError(t, r.err)
	r = runFleetctl(ctx, nil, "--driver", "API", "--endpoint", h.socket, "list-units")
	require.NoError(t, r.err, "fleet's driver name was API")

	// Every global flag has its variable: a bad value names it.
	for _, tt := range []struct{ env, value, want string }{
		{"FLEETCTL_DEBUG", "maybe", `FLEETCTL_DEBUG="maybe"`},
		{"FLEETCTL_SSH_TIMEOUT", "soon", `FLEETCTL_SSH_TIMEOUT="soon"`},
		{"FLEETCTL_STRICT_HOST_KEY_CHECKING", "perhaps", `FLEETCTL_STRICT_HOST_KEY_CHECKING="perhaps"`},
	} {
		r := runFleetctl(ctx, map[string]string{tt.env: tt.value}, "list-units")
		require.Equal(t, fleetctl.ExitUsage, r.code, tt.env)
		require.ErrorContains(t, r.err, tt.want)
	}
	// --debug (here from the environment) logs every request.
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_DEBUG": "true", "FLEETCTL_ENDPOINT": h.socket}, "list-machines")
	require.NoError(t, r.err)
	require.Contains(t, r.stderr, "DEBUG: GET http://fleetd/fleet/v1/machines?pageSize=65535: 200 OK")
	// TLS files are read before anything is sent.
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_CA_FILE": "/nonexistent/ca.pem"}, "--endpoint", h.socket, "list-units")
	require.Equal(t, fleetctl.ExitUsage, r.code)
	require.ErrorContains(t, r.err, "CA file: open /nonexistent/ca.pem")
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_CERT_FILE": "/x.pem"}, "--endpoint", h.socket, "list-units")
	require.ErrorContains(t, r.err, "--cert-file and --key-file go together")
}

// writeClientCert writes a self-signed client certificate and its key as
// PEM files and returns their paths and a pool trusting it.
func writeClientCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fleetctl"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile, pool
}

func TestTLSFlags(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	certFile, keyFile, clients := writeClientCert(t)
	srv := httptest.NewUnstartedServer(api.NewServer(api.NewRegistryClient(h.reg)))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))

	r := runFleetctl(h.ctx, nil, "--endpoint", srv.URL, "--ca-file", ca, "--cert-file", certFile, "--key-file", keyFile, "list-machines", "--no-legend")
	require.NoError(t, r.err)
	require.Equal(t, "113f16a7...\t10.0.0.3\t-\n", r.stdout)
	r = runFleetctl(h.ctx, map[string]string{"FLEETCTL_CA_FILE": ca}, "--endpoint", srv.URL, "list-machines")
	require.Equal(t, fleetctl.ExitAuth, r.code, "no client certificate: %v", r.err)
	r = runFleetctl(h.ctx, nil, "--endpoint", srv.URL, "list-machines")
	require.Equal(t, fleetctl.ExitAuth, r.code)
	require.ErrorContains(t, r.err, "certificate")
}

func TestFleetCompatibilityFlags(t *testing.T) {
	h := newHarness(t, "api", api.WithLocalMachine(m1, fakeInspector{}))
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	require.NoError(t, h.run("submit", writeUnit(t, dir, "a.service", helloUnit)).err)
	h.place(m1, "a.service", registry.StateLaunched)
	// Old scripts' flags are accepted and change nothing.
	r := h.run("--experimental-api=true", "journal", "--sudo", "--ssh-port", "2222", "-n", "1", "a")
	require.NoError(t, r.err)
	require.Equal(t, "a.service: line 1\n", r.stdout)
	r = h.run("status", "--ssh-port=2222", "a")
	require.NoError(t, r.err)
	r = runFleetctl(h.ctx, nil, "--etcd-cafile", "/nonexistent.pem", "--endpoint", h.socket, "list-units")
	require.ErrorContains(t, r.err, "CA file: open /nonexistent.pem", "the old spelling of --ca-file")
	r = h.run("help")
	require.NotContains(t, r.stdout, "etcd-cafile", "deprecated flags stay out of the help")
}
