package fleetctl_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

const (
	prefix = "/fleetctl-test/"
	// Machine IDs as /etc/machine-id has them.
	m1 = "113f16a7c2d04f5e9b1a7d3e2f4c6b8a"
	m2 = "8d5f1c2e94b74c1d8e3f5a6b7c8d9e0f"
)

// drivers are the two ways fleetctl reaches fleet; tests run on both.
var drivers = []string{"etcd", "api"}

// harness is a real etcd holding fleet's data, a fleetd API server over it on
// a unix socket, and helpers that play the engine and agents (which do not
// exist in these tests) by writing placements and states directly.
type harness struct {
	t        *testing.T
	ctx      context.Context
	reg      *registry.Registry
	etcd     string
	socket   string
	driver   string
	lead     *registry.Leadership
	machines map[string]*registry.Presence
}

// setUnplaced records why the engine placed a unit nowhere, as the engine
// leader would.
func (h *harness) setUnplaced(name, reason string) {
	h.t.Helper()
	_, err := h.reg.ApplyDecisions(h.ctx, h.leadership(), nil, []registry.UnplacedOp{{Name: name, Reason: reason}})
	require.NoError(h.t, err)
}

func newHarness(t *testing.T, driver string, serverOpts ...api.ServerOption) *harness {
	t.Helper()
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	// A client of our own, quiet: the fake engine's requests cancelled at
	// the end of a test would otherwise log warnings.
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	reg := registry.New(cli, registry.WithPrefix(prefix))
	h := &harness{t: t, ctx: ctx, reg: reg, etcd: e.Endpoints[0], driver: driver, machines: map[string]*registry.Presence{}}
	h.socket = serveUnix(t, api.NewServer(api.NewRegistryClient(reg), serverOpts...))
	return h
}

func serveUnix(t *testing.T, handler http.Handler) string {
	t.Helper()
	// Unix socket paths are short (108 bytes): t.TempDir() can be too long.
	dir, err := os.MkdirTemp("", "fleetctl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "fleet.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + path
}

// result is what one fleetctl run printed and returned.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

// run runs fleetctl in-process with the harness's driver and endpoint
// flags first, then args.
func (h *harness) run(args ...string) result {
	h.t.Helper()
	return h.runWith(nil, args...)
}

// runWith is run with options of fleetctl.NewCommand.
func (h *harness) runWith(opts []fleetctl.Option, args ...string) result {
	h.t.Helper()
	return runFleetctlWith(h.ctx, nil, opts, append(h.global(), args...)...)
}

// global returns the flags that point fleetctl at the harness.
func (h *harness) global() []string {
	switch h.driver {
	case "etcd":
		return []string{"--driver", "etcd", "--endpoint", h.etcd, "--etcd-key-prefix", prefix}
	default:
		return []string{"--endpoint", h.socket}
	}
}

func runFleetctl(ctx context.Context, env map[string]string, args ...string) result {
	return runFleetctlWith(ctx, env, nil, args...)
}

func runFleetctlWith(ctx context.Context, env map[string]string, opts []fleetctl.Option, args ...string) result {
	var stdout, stderr syncBuffer
	opts = append([]fleetctl.Option{fleetctl.WithVersion("1.2.3-test"), fleetctl.WithUnplacedGrace(300 * time.Millisecond)}, opts...)
	cmd := fleetctl.NewCommand(&stdout, &stderr, func(k string) string { return env[k] }, opts...)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err, code: fleetctl.ExitCode(err)}
}

// syncBuffer is a bytes.Buffer safe for a writer and readers in other
// goroutines (tests that read a stream while fleetctl writes it).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (h *harness) addMachine(id, ip string, md map[string]string) {
	h.t.Helper()
	p, err := h.reg.Register(h.ctx, machine.Machine{ID: id, PublicIP: ip, Metadata: md, Hostname: "host-" + id}, registry.MinTTL)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = p.Revoke(context.Background()) })
	h.machines[id] = p
}

func (h *harness) leadership() *registry.Leadership {
	h.t.Helper()
	if h.lead == nil {
		lead, err := h.reg.Campaign(h.ctx, "test-engine", 5*time.Second)
		require.NoError(h.t, err)
		h.t.Cleanup(func() { _ = lead.Resign(context.Background()) })
		h.lead = lead
	}
	return h.lead
}

// place schedules a submitted unit on a machine, as the engine would.
func (h *harness) place(machineID, name string, state registry.State) {
	h.t.Helper()
	u, err := h.reg.Unit(h.ctx, name)
	require.NoError(h.t, err)
	_, err = h.reg.ApplyPlan(h.ctx, h.leadership(), []registry.PlanOp{{Put: true, Placement: registry.Placement{
		Machine: machineID, Name: name, Hash: u.Hash, DesiredState: state,
	}}})
	require.NoError(h.t, err)
}

// publish records systemd's view of a unit, as the machine's agent would.
func (h *harness) publish(machineID, name, load, active, sub string) {
	h.t.Helper()
	u, err := h.reg.Unit(h.ctx, name)
	require.NoError(h.t, err)
	require.NoError(h.t, h.machines[machineID].PublishState(h.ctx, registry.UnitState{
		Name: name, Hash: u.Hash, LoadState: load, ActiveState: active, SubState: sub,
	}))
}

// writeUnit writes a unit file into dir and returns its path.
func writeUnit(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// fakeFleet plays engine and agent for blocking commands: every 20 ms it
// schedules every unit on machine m1 in its desired state (or unschedules
// it) and publishes the systemd state that follows: active/running for a
// launched unit (failed/failed for the units in failing), inactive/dead for a
// loaded one. It stops when the test ends.
func (h *harness) fakeFleet(failing ...string) {
	h.t.Helper()
	lead := h.leadership()
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	h.t.Cleanup(func() { cancel(); wg.Wait() })
	fail := map[string]bool{}
	for _, f := range failing {
		fail[f] = true
	}
	agent := h.machines[m1]
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			units, _, err := h.reg.Units(ctx)
			if err != nil {
				continue // ctx ended; the loop returns above
			}
			for _, u := range units {
				h.fakeReconcile(ctx, lead, agent, u, fail[u.Name])
			}
		}
	}()
}

func (h *harness) fakeReconcile(ctx context.Context, lead *registry.Leadership, agent *registry.Presence, u registry.Unit, fail bool) {
	p := registry.Placement{Machine: m1, Name: u.Name, Hash: u.Hash, DesiredState: u.DesiredState}
	if u.DesiredState == registry.StateInactive {
		_, _ = h.reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: false, Placement: p}})
		_ = agent.DeleteState(ctx, u.Name)
		return
	}
	_, _ = h.reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: p}})
	st := registry.UnitState{Name: u.Name, Hash: u.Hash, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	if u.DesiredState == registry.StateLaunched {
		st.ActiveState, st.SubState = "active", "running"
		if fail {
			st.ActiveState, st.SubState = "failed", "failed"
		}
	}
	_ = agent.PublishState(ctx, st)
}

func parseUnit(t *testing.T, text string) *unit.File {
	t.Helper()
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	return f
}

// hashOf returns the hash of a submitted unit's body.
func hashOf(t *testing.T, h *harness, name string) string {
	t.Helper()
	u, err := h.reg.Unit(h.ctx, name)
	require.NoError(t, err)
	return u.Hash
}
