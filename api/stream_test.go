package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// followCommand writes a fake journalctl that records its arguments and PID,
// prints two lines, then a line every 20 ms until killed.
func followCommand(t *testing.T) (cmd, pidFile string) {
	t.Helper()
	dir := t.TempDir()
	cmd = filepath.Join(dir, "journalctl")
	pidFile = cmd + ".pid"
	script := "#!/bin/sh\necho $$ > " + pidFile + "\necho \"$@\" > " + cmd + ".args\necho 'line 1'\necho 'line 2'\n" +
		"while true; do sleep 0.02; echo tick; done\n"
	require.NoError(t, os.WriteFile(cmd, []byte(script), 0o755))
	return cmd, pidFile
}

func processGone(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	return syscall.Kill(pid, 0) != nil
}

func TestJournalFollow(t *testing.T) {
	c := newCluster(t)
	cmd, pidFile := followCommand(t)
	insp := api.SystemdInspector{Journalctl: cmd}
	// The unit runs on m2; the client asks m1's fleetd, which forwards.
	srv2 := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m2", insp)))
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2", APIURL: srv2.URL})
	srv1 := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m1", insp)))
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "hello.service", Options: helloOpts})
	require.NoError(t, err)
	c.place("m2", "hello.service", registry.StateLaunched)

	for _, via := range []string{"local", "forwarded"} {
		t.Run(via, func(t *testing.T) {
			url := srv2.URL
			if via == "forwarded" {
				url = srv1.URL
			}
			// A request timeout shorter than the stream: only the wait for the
			// answer's start is bounded.
			hc, err := api.NewHTTPClient(url, 300*time.Millisecond)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(c.ctx)
			defer cancel()
			rc, err := hc.UnitJournal(ctx, "hello.service", api.JournalOptions{Lines: 5, Follow: true, Output: "cat"})
			require.NoError(t, err)
			br := bufio.NewReader(rc)
			var lines []string
			deadline := time.Now().Add(time.Second)
			for len(lines) < 2 || time.Now().Before(deadline) {
				l, err := br.ReadString('\n')
				require.NoError(t, err, "the stream outlives the request timeout")
				lines = append(lines, strings.TrimSpace(l))
			}
			require.Equal(t, []string{"line 1", "line 2", "tick"}, lines[:3])
			args, err := os.ReadFile(cmd + ".args")
			require.NoError(t, err)
			require.Equal(t, "--no-pager --unit=hello.service --lines=5 --output=cat --follow", strings.TrimSpace(string(args)))

			// Closing the stream stops journalctl on the unit's machine.
			require.NoError(t, rc.Close())
			require.Eventually(t, func() bool { return processGone(pidFile) }, 5*time.Second, 20*time.Millisecond)
		})
	}

	t.Run("failure at once is an error status", func(t *testing.T) {
		bad := fakeCommand(t, "journalctl", "", 1)
		srv := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m2", api.SystemdInspector{Journalctl: bad})))
		hc, err := api.NewHTTPClient(srv.URL, 5*time.Second)
		require.NoError(t, err)
		_, err = hc.UnitJournal(c.ctx, "hello.service", api.JournalOptions{Follow: true})
		require.ErrorContains(t, err, "some stderr")
	})
}

func TestEvents(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			ctx, cancel := context.WithCancel(c.ctx)
			t.Cleanup(cancel) // before the servers close: they wait for the stream
			var (
				mu     sync.Mutex
				events []api.Event
			)
			done := make(chan error, 1)
			go func() {
				done <- cl.Events(ctx, func(e api.Event) error {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, e)
					return nil
				})
			}()
			// The first event says the stream has started.
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) > 0 }, 5*time.Second, 10*time.Millisecond)
			mu.Lock()
			require.Equal(t, api.EventStreamStarted, events[0].Type)
			require.Positive(t, events[0].Revision)
			events = nil
			mu.Unlock()
			c.addMachine(machine.Machine{ID: "m0", PublicIP: "10.0.0.9"})
			c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
			c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2"})
			_, err := c.rc.CreateUnit(ctx, &api.Unit{Name: "hello.service", Options: helloOpts})
			require.NoError(t, err)
			require.NoError(t, c.rc.SetUnitTargetState(ctx, "hello.service", "launched"))
			c.place("m1", "hello.service", registry.StateLaunched) // also wins the election
			c.publish("m1", "hello.service", "loaded", "activating", "start")
			c.publish("m1", "hello.service", "loaded", "active", "running")
			// The engine moves the unit in one plan.
			u, err := c.reg.Unit(ctx, "hello.service")
			require.NoError(t, err)
			_, err = c.reg.ApplyPlan(ctx, c.lead, []registry.PlanOp{
				{Put: false, Placement: registry.Placement{Machine: "m1", Name: "hello.service"}},
				{Put: true, Placement: registry.Placement{Machine: "m2", Name: "hello.service", Hash: u.Hash, DesiredState: registry.StateLaunched}},
			})
			require.NoError(t, err)
			require.NoError(t, c.rc.SetMachineMetadata(ctx, []api.MachineMetadataOp{{Op: "add", Path: api.MetadataPath("m2", "k"), Value: "v"}}))
			require.NoError(t, c.machines["m2"].UpdateMachine(ctx, machine.Machine{ID: "m2", PublicIP: "10.0.0.2", Hostname: "host-m2", Metadata: map[string]string{"k": "v"}}))
			require.NoError(t, c.rc.DestroyUnit(ctx, "hello.service"))
			_, err = c.reg.ApplyDecisions(ctx, c.lead, nil, []registry.UnplacedOp{{Name: "ssd.service", Reason: "no machine has metadata disk=ssd"}})
			require.NoError(t, err)
			require.NoError(t, c.machines["m1"].Revoke(ctx))

			want := []string{
				"machine.joined m0 ", "machine.joined m1 ", "machine.joined m2 ",
				"unit.submitted  hello.service  -> inactive",
				"unit.target  hello.service inactive -> launched",
				"leader.changed test-engine   -> test-engine",
				"unit.placed m1 hello.service  -> launched",
				"unit.state m1 hello.service  -> activating/start",
				"unit.state m1 hello.service activating/start -> active/running",
				"unit.moved m2 hello.service m1 -> m2",
				"machine.updated m2 ",
				"unit.destroyed  hello.service  -> ",
				"unit.unplaceable  ssd.service  -> no machine has metadata disk=ssd",
				"machine.left m1 ",
			}
			render := func() []string {
				mu.Lock()
				defer mu.Unlock()
				var out []string
				for _, e := range events {
					switch e.Type {
					case api.EventMachineJoined, api.EventMachineLeft, api.EventMachineUpdated:
						out = append(out, e.Type+" "+e.MachineID+" ")
					default:
						out = append(out, e.Type+" "+e.MachineID+" "+e.Unit+" "+e.From+" -> "+e.To)
					}
				}
				return out
			}
			require.Eventually(t, func() bool { return len(render()) >= len(want) }, 5*time.Second, 10*time.Millisecond, "got %q", render())
			require.Equal(t, want, render())
			mu.Lock()
			var joined, updated api.Event
			for _, e := range events {
				switch {
				case e.Type == api.EventMachineJoined && e.MachineID == "m1":
					joined = e
				case e.Type == api.EventMachineUpdated:
					updated = e
				}
			}
			mu.Unlock()
			require.Equal(t, "10.0.0.1", joined.PrimaryIP)
			require.Positive(t, joined.Revision)
			require.WithinDuration(t, time.Now(), joined.Time, time.Minute)
			require.Equal(t, map[string]string{"k": "v"}, updated.Metadata)

			cancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.Canceled)
			case <-time.After(5 * time.Second):
				t.Fatal("Events did not return after ctx ended")
			}
		})
	}
}

func TestEventsWireFormat(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/fleet/v1/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, `"type":"stream.started"`)
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	line, err = br.ReadString('\n')
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m))
	require.Equal(t, []string{"machineID", "primaryIP", "revision", "time", "type"}, keys(m))
	require.Equal(t, "machine.joined", m["type"])
}

func TestDiscovery(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "hello.service", Options: helloOpts})
	require.NoError(t, err)

	a := call(t, srv.URL, "GET", "/fleet/v1/discovery", "")
	require.Equal(t, 200, a.code)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var doc struct {
		Kind      string `json:"kind"`
		ID        string `json:"id"`
		BasePath  string `json:"basePath"`
		Schemas   map[string]any
		Resources map[string]struct {
			Methods map[string]struct {
				HTTPMethod string `json:"httpMethod"`
				Path       string `json:"path"`
			} `json:"methods"`
		} `json:"resources"`
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &doc))
	require.Equal(t, "discovery#restDescription", doc.Kind)
	require.Equal(t, "/fleet/v1/", doc.BasePath)
	for _, s := range []string{"Machine", "MachinePage", "Unit", "UnitOption", "UnitPage", "UnitState", "UnitStatePage"} {
		require.Contains(t, doc.Schemas, s, "fleet v1's schemas")
	}
	// Every method the document describes is served.
	n := 0
	for rname, r := range doc.Resources {
		for mname, m := range r.Methods {
			if rname == "Events" || rname == "UnitBatch" {
				continue // a stream: see TestEventsWireFormat; batches: TestDiscoveryBatches
			}
			n++
			path := strings.ReplaceAll(m.Path, "{unitName}", "hello.service")
			body := ""
			switch m.HTTPMethod {
			case "PUT":
				body = `{"desiredState":"inactive"}`
			case "PATCH":
				body = `[]`
			}
			got := call(t, srv.URL, m.HTTPMethod, doc.BasePath+path, body)
			require.NotEqual(t, http.StatusMethodNotAllowed, got.code, "%s.%s", rname, mname)
			require.NotContains(t, got.body, "no such API resource", "%s.%s", rname, mname)
		}
	}
	require.Equal(t, 12, n) // with Units.Summaries
}

func TestHTTPClientOptions(t *testing.T) {
	c := newCluster(t)
	h := api.NewServer(c.rc)

	t.Run("TLS", func(t *testing.T) {
		srv := httptest.NewTLSServer(h)
		t.Cleanup(srv.Close)
		hc, err := api.NewHTTPClient(srv.URL, 5*time.Second)
		require.NoError(t, err)
		_, err = hc.Units(c.ctx)
		require.ErrorIs(t, err, api.ErrUnavailable)
		require.ErrorContains(t, err, "certificate")

		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		hc, err = api.NewHTTPClient(srv.URL, 5*time.Second, api.WithTLSConfig(&tls.Config{RootCAs: pool}))
		require.NoError(t, err)
		_, err = hc.Units(c.ctx)
		require.NoError(t, err)
	})

	t.Run("dialer and debug log", func(t *testing.T) {
		sock := serveUnix(t, h)
		var dialed []string
		var log strings.Builder
		hc, err := api.NewHTTPClient("unix:///elsewhere/fleet.sock", 5*time.Second,
			api.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed = append(dialed, network+" "+addr)
				var d net.Dialer
				return d.DialContext(ctx, "unix", strings.TrimPrefix(sock, "unix://"))
			}),
			api.WithDebugLog(&log))
		require.NoError(t, err)
		_, err = hc.Unit(c.ctx, "nope.service")
		require.ErrorIs(t, err, api.ErrNotFound)
		require.Equal(t, []string{"unix /elsewhere/fleet.sock"}, dialed)
		require.Regexp(t, `^DEBUG: GET http://fleetd/fleet/v1/units/nope.service: 404 Not Found \(.+\)\n$`, log.String())
	})
}
