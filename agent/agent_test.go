package agent_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/agent/internal/hosttest"
	"github.com/seed-a1ce88ea/fleet/agent/systemd"
	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMain(m *testing.M) {
	hosttest.Main(m)
}

// waitTimeout bounds every wait for the agent to act.
const waitTimeout = 15 * time.Second

// env is one test's world: its own etcd, the package's host, and a unit
// directory in the host of the test's own, so tests never see each other's
// units.
type env struct {
	t      *testing.T
	h      *hosts.Host
	cli    *clientv3.Client
	reg    *registry.Registry
	lead   *registry.Leadership
	sd     *systemd.Manager
	m      machine.Machine
	ttl    time.Duration // of the machine's presence
	states *stateLog
	logs   *logLines
}

func newEnv(t *testing.T) *env {
	h := hosttest.Host(t)
	cli := etcdtest.Start(t).Client(t)
	return newEnvWith(t, h, cli)
}

func newEnvWith(t *testing.T, h *hosts.Host, cli *clientv3.Client) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := registry.New(cli)
	lead, err := reg.Campaign(ctx, "test", 3*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lead.Resign(ctx) // fails when a test stopped etcd for good
	})
	dir := "/run/fleet/test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	logs := &logLines{}
	sd, err := systemd.Connect(ctx, systemd.Config{BusAddress: h.BusAddress(), FSRoot: h.Path(""), UnitsDir: dir, Log: testLogger(t, logs)})
	require.NoError(t, err)
	t.Cleanup(func() { unloadAll(sd) })
	e := &env{t: t, h: h, cli: cli, reg: reg, lead: lead, sd: sd, ttl: 5 * time.Second,
		m: machine.Machine{ID: h.MachineID, Hostname: h.Name, PublicIP: h.IP}, logs: logs}
	e.states = watchStates(t, reg, e.m.ID)
	return e
}

// unloadAll stops and removes every unit a test left, then closes sd.
func unloadAll(sd *systemd.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, _ := sd.UnitFiles()
	for _, n := range names {
		_, _ = sd.StopUnit(ctx, n)
		_ = sd.DisableUnitFiles(ctx, n)
		_ = sd.ResetFailedUnit(ctx, n)
		_ = sd.RemoveUnitFile(n)
	}
	sd.Close()
}

// running is an agent running in the test process, as fleetd runs it.
type running struct {
	presence *registry.Presence
	cancel   context.CancelFunc
	done     chan error
	once     sync.Once
}

// startAgent registers the machine (adopting its lease if a presence is
// still alive) and runs an agent; it is stopped at the end of the test.
func (e *env) startAgent() *running {
	e.t.Helper()
	// Register's ctx bounds the presence's life, not just the call.
	p, err := e.reg.Register(context.Background(), e.m, e.ttl)
	require.NoError(e.t, err)
	a := agent.New(agent.Config{Registry: e.reg, Presence: p, Systemd: e.sd, Log: testLogger(e.t, e.logs)})
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{presence: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { require.NoError(e.t, r.stop()) })
	return r
}

// stop ends the agent as fleetd does on shutdown: units keep running and
// the presence keeps its lease until the TTL, so a restarted fleetd adopts
// it.
func (r *running) stop() error {
	var err error
	r.once.Do(func() {
		r.cancel()
		select {
		case err = <-r.done:
		case <-time.After(30 * time.Second):
			err = errors.New("agent did not stop within 30s")
		}
		r.presence.Close()
	})
	return err
}

// unit returns a unit body running /bin/sleep arg (a unique arg makes a
// unique body).
func unit(arg string) string {
	return "[Unit]\nDescription=fleet agent test\n\n[Service]\nExecStart=/bin/sleep " + arg + "\n"
}

func hashOf(body string) string {
	sum := sha1.Sum([]byte(body))
	return hex.EncodeToString(sum[:])
}

// schedule places name with body on the test's machine in state, as the
// engine would: body and unit record first, then the fenced schedule entry.
// It returns the body's hash and when the schedule entry was written.
func (e *env) schedule(name, body string, state registry.State) (string, time.Time) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hash := hashOf(body)
	require.NoError(e.t, e.reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: hash, DesiredState: state}, body, true))
	start := time.Now()
	_, err := e.reg.ApplyPlan(ctx, e.lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{
		Machine: e.m.ID, Name: name, Hash: hash, DesiredState: state,
	}}})
	require.NoError(e.t, err)
	return hash, start
}

func (e *env) unschedule(name string) time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := e.reg.ApplyPlan(ctx, e.lead, []registry.PlanOp{{Placement: registry.Placement{Machine: e.m.ID, Name: name}}})
	require.NoError(e.t, err)
	return start
}

// show returns a unit property as systemctl in the host prints it.
func (e *env) show(name, prop string) string {
	e.t.Helper()
	out, err := e.h.Exec(context.Background(), "systemctl", "show", "--value", "-p", prop, name)
	require.NoError(e.t, err)
	return strings.TrimSpace(string(out))
}

// systemctl runs systemctl in the host, behind the agent's back, and
// returns when it started and how long it took (mostly nsenter).
func (e *env) systemctl(args ...string) (time.Time, time.Duration) {
	e.t.Helper()
	start := time.Now()
	_, err := e.h.Exec(context.Background(), append([]string{"systemctl"}, args...)...)
	require.NoError(e.t, err)
	return start, time.Since(start)
}

// logLatency logs how long after an external command a state was seen.
func logLatency(t *testing.T, what string, start time.Time, took time.Duration, p published) {
	t.Helper()
	t.Logf("%s: published %v after the command started (the command took %v)",
		what, p.At.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
}

// state returns systemd's view of name.
func (e *env) state(name string) systemd.UnitState {
	e.t.Helper()
	st, err := e.sd.UnitStates(context.Background(), name)
	require.NoError(e.t, err)
	return st[name]
}

// published is one state change seen in etcd, and when it was seen.
type published struct {
	registry.UnitState
	Deleted bool
	At      time.Time
}

// stateLog records every change to the test machine's published states.
type stateLog struct {
	t       *testing.T
	mu      sync.Mutex
	history map[string][]published
	err     error
	changed chan struct{} // closed and replaced at every change
}

func watchStates(t *testing.T, reg *registry.Registry, machineID string) *stateLog {
	ctx, cancel := context.WithCancel(context.Background())
	// Any read returns the store's revision; the watch starts after it.
	_, rev, err := reg.Schedule(ctx, machineID)
	require.NoError(t, err)
	l := &stateLog{t: t, history: map[string][]published{}, changed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range reg.WatchStates(ctx, machineID, rev) {
			l.mu.Lock()
			if ev.Err != nil {
				if ctx.Err() == nil {
					l.err = ev.Err
				}
			} else {
				p := published{UnitState: ev.Value, Deleted: ev.Deleted, At: time.Now()}
				p.Name = ev.Key
				l.history[ev.Key] = append(l.history[ev.Key], p)
			}
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}

// wait returns the first change of name, from the from-th on, that ok
// accepts, failing the test after waitTimeout.
func (l *stateLog) wait(name string, from int, ok func(published) bool) published {
	l.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		l.mu.Lock()
		h, err, changed := l.history[name], l.err, l.changed
		l.mu.Unlock()
		require.NoError(l.t, err, "state watch")
		for i := from; i < len(h); i++ {
			if ok(h[i]) {
				return h[i]
			}
		}
		select {
		case <-changed:
		case <-timeout:
			l.t.Fatalf("no published state of %s matched within %v; changes: %+v", name, waitTimeout, h)
		}
	}
}

// count returns how many changes of name were seen.
func (l *stateLog) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.history[name])
}

// waitActive waits for name to be published as in state active/sub with
// hash, and returns that change.
func (l *stateLog) waitActive(name, hash, active, sub string, from int) published {
	l.t.Helper()
	return l.wait(name, from, func(p published) bool {
		return !p.Deleted && p.Hash == hash && p.LoadState == "loaded" && p.ActiveState == active && p.SubState == sub
	})
}

func TestLaunchedUnitRunsAndReportsChanges(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const u = "web.service"
	hash, scheduled := e.schedule(u, unit("1000"), registry.StateLaunched)

	p := e.states.waitActive(u, hash, "active", "running", 0)
	t.Logf("schedule write -> active/running published: %v", p.At.Sub(scheduled).Round(time.Millisecond))
	require.Equal(t, e.m.ID, p.Machine)
	require.Equal(t, "active", e.show(u, "ActiveState"))
	body, err := e.sd.ReadUnitFile(u)
	require.NoError(t, err)
	require.Equal(t, unit("1000"), body)
	target, err := os.Readlink(e.h.Path("/run/systemd/system/" + u))
	require.NoError(t, err)
	require.Equal(t, e.sd.UnitsDir()+"/"+u, target)

	// Changes made behind the agent's back reach etcd through systemd's
	// signals; the agent reports them and does not fight them.
	n := e.states.count(u)
	start, took := e.systemctl("stop", u)
	logLatency(t, "systemctl stop -> inactive/dead", start, took, e.states.waitActive(u, hash, "inactive", "dead", n))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "inactive", e.show(u, "ActiveState"), "a unit stopped by someone else is not restarted")

	n = e.states.count(u)
	start, took = e.systemctl("start", u)
	logLatency(t, "systemctl start -> active/running", start, took, e.states.waitActive(u, hash, "active", "running", n))

	n = e.states.count(u)
	start, took = e.systemctl("kill", "--signal=KILL", u)
	logLatency(t, "main process killed -> failed/failed", start, took, e.states.waitActive(u, hash, "failed", "failed", n))
}

func TestLoadedUnitIsNotStarted(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const u = "idle.service"
	hash, _ := e.schedule(u, unit("1000"), registry.StateLoaded)
	e.states.waitActive(u, hash, "inactive", "dead", 0)
	require.Equal(t, "inactive", e.show(u, "ActiveState"))
	require.Equal(t, "loaded", e.show(u, "LoadState"))

	n := e.states.count(u)
	e.schedule(u, unit("1000"), registry.StateLaunched)
	e.states.waitActive(u, hash, "active", "running", n)

	n = e.states.count(u)
	e.schedule(u, unit("1000"), registry.StateLoaded)
	e.states.waitActive(u, hash, "inactive", "dead", n)
	require.Equal(t, "inactive", e.show(u, "ActiveState"))
	_, err := e.sd.ReadUnitFile(u)
	require.NoError(t, err, "a loaded unit keeps its file")
}

func TestUnscheduledUnitIsUnloaded(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const u = "gone.service"
	hash, _ := e.schedule(u, unit("1000"), registry.StateLaunched)
	e.states.waitActive(u, hash, "active", "running", 0)

	n := e.states.count(u)
	unscheduled := e.unschedule(u)
	p := e.states.wait(u, n, func(p published) bool { return p.Deleted })
	t.Logf("schedule delete -> state deleted: %v", p.At.Sub(unscheduled).Round(time.Millisecond))
	_, err := e.sd.ReadUnitFile(u)
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Lstat(e.h.Path("/run/systemd/system/" + u))
	require.ErrorIs(t, err, fs.ErrNotExist, "the link is gone")
	require.Equal(t, systemd.UnitState{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}, e.state(u))

	// Scheduled again with another body while systemd holds it as
	// not-found: it must run the new body (no reload is needed for that).
	h2, _ := e.schedule(u, unit("1002"), registry.StateLaunched)
	e.states.waitActive(u, h2, "active", "running", 0)
	require.Contains(t, e.show(u, "ExecStart"), "/bin/sleep 1002")
	require.Equal(t, "no", e.show(u, "NeedDaemonReload"))
}

func TestChangedHashRestartsUnit(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const u = "versioned.service"
	h1, _ := e.schedule(u, unit("1000"), registry.StateLaunched)
	e.states.waitActive(u, h1, "active", "running", 0)
	pid := e.show(u, "MainPID")

	h2, scheduled := e.schedule(u, unit("1001"), registry.StateLaunched)
	p := e.states.waitActive(u, h2, "active", "running", 0)
	t.Logf("new hash -> restarted, active/running published: %v", p.At.Sub(scheduled).Round(time.Millisecond))
	require.NotEqual(t, pid, e.show(u, "MainPID"), "restarted")
	require.Contains(t, e.show(u, "ExecStart"), "/bin/sleep 1001")
	body, err := e.sd.ReadUnitFile(u)
	require.NoError(t, err)
	require.Equal(t, unit("1001"), body)

	// A loaded unit whose body changes is reloaded, not started.
	const l = "versioned-idle.service"
	h3, _ := e.schedule(l, unit("1000"), registry.StateLoaded)
	e.states.waitActive(l, h3, "inactive", "dead", 0)
	h4, _ := e.schedule(l, unit("1002"), registry.StateLoaded)
	e.states.waitActive(l, h4, "inactive", "dead", 0)
	require.Contains(t, e.show(l, "ExecStart"), "/bin/sleep 1002")
}

// TestInstallSectionIsEnabled: a unit with WantedBy= is enabled at runtime,
// so its peer pulls it in when it starts, and unloading it removes the
// link again.
func TestInstallSectionIsEnabled(t *testing.T) {
	e := newEnv(t)
	const u, peer = "wanted.service", "peer.service"
	wantsLink := "/run/systemd/system/" + peer + ".wants/" + u
	// The peer is a plain unit of the host, not fleet's.
	peerFile := e.h.Path("/run/systemd/system/" + peer)
	require.NoError(t, os.WriteFile(peerFile, []byte(unit("1000")), 0o644))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.h.Exec(ctx, "systemctl", "stop", peer)
		_ = os.RemoveAll(e.h.Path("/run/systemd/system/" + peer + ".wants"))
		_ = os.Remove(peerFile)
		_, _ = e.h.Exec(ctx, "systemctl", "daemon-reload")
	})
	// Active before the agent enables the unit, so systemd holds the peer
	// loaded: it learns of the new link only through a reload.
	e.systemctl("start", peer)

	e.startAgent()
	body := unit("1001") + "\n[Install]\nWantedBy=" + peer + "\n"
	hash, _ := e.schedule(u, body, registry.StateLoaded)
	e.states.waitActive(u, hash, "inactive", "dead", 0)
	target, err := os.Readlink(e.h.Path(wantsLink))
	require.NoError(t, err, "enabled: the WantedBy= link exists")
	t.Logf("%s -> %s", wantsLink, target)
	require.Contains(t, strings.Fields(e.show(peer, "Wants")), u, "systemd was reloaded: the loaded peer knows it")
	require.Equal(t, "inactive", e.show(u, "ActiveState"), "enabling does not start it")

	// Starting the peer (restart: one transaction, the loaded peer) pulls
	// the unit in; the agent reports that and does not stop it.
	n := e.states.count(u)
	start, took := e.systemctl("restart", peer)
	logLatency(t, "peer restarted -> wanted unit active/running", start, took, e.states.waitActive(u, hash, "active", "running", n))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "active", e.show(u, "ActiveState"))

	n = e.states.count(u)
	e.unschedule(u)
	e.states.wait(u, n, func(p published) bool { return p.Deleted })
	_, err = os.Lstat(e.h.Path(wantsLink))
	require.ErrorIs(t, err, fs.ErrNotExist, "unloading disables it: the WantedBy= link is gone")
	_, err = os.Lstat(e.h.Path("/run/systemd/system/" + u))
	require.ErrorIs(t, err, fs.ErrNotExist, "and unlinks it")
	require.Equal(t, "active", e.show(peer, "ActiveState"), "the peer goes on")
}

// TestSlowJobHoldsBackOnlyItsUnit: a unit that takes long to start (an
// ExecStartPre pulling an image, say) does not delay other units, and its
// progress is published while it starts.
func TestSlowJobHoldsBackOnlyItsUnit(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const fast, slow = "fast.service", "slow.service"
	hf, _ := e.schedule(fast, unit("1000"), registry.StateLaunched)
	e.states.waitActive(fast, hf, "active", "running", 0)

	slowBody := "[Service]\nExecStartPre=/bin/sleep 2\nExecStart=/bin/sleep 1000\n"
	hs, scheduled := e.schedule(slow, slowBody, registry.StateLaunched)
	e.states.waitActive(slow, hs, "activating", "start-pre", 0)

	n := e.states.count(fast)
	start, took := e.systemctl("kill", "--signal=KILL", fast)
	p := e.states.waitActive(fast, hf, "failed", "failed", n)
	logLatency(t, "while another unit starts, main process killed -> failed/failed", start, took, p)
	require.Less(t, p.At.Sub(start), time.Second)

	// Unscheduled while it starts: unloaded once the start job is over.
	e.unschedule(slow)
	p = e.states.wait(slow, 0, func(p published) bool { return p.Deleted })
	require.Greater(t, p.At.Sub(scheduled), 2*time.Second)
	require.Eventually(t, func() bool { return e.state(slow).LoadState == "not-found" }, waitTimeout, 20*time.Millisecond)
}

// TestRestartedAgentAdoptsUnits: a fleetd restart must not restart units.
func TestRestartedAgentAdoptsUnits(t *testing.T) {
	e := newEnv(t)
	first := e.startAgent()
	const u = "adopted.service"
	hash, _ := e.schedule(u, unit("1000"), registry.StateLaunched)
	e.states.waitActive(u, hash, "active", "running", 0)
	require.NoError(t, first.stop())

	pid, since := e.show(u, "MainPID"), e.show(u, "ActiveEnterTimestamp")
	require.NotEqual(t, "0", pid)
	n := e.states.count(u)

	second := e.startAgent()
	require.True(t, second.presence.Adopted(), "the new presence adopts the lease, so states stay")
	// The agent reconciles every scheduled unit in its first batch; a unit
	// scheduled after start is in a later one, so once it is published the
	// adopted unit has been dealt with.
	marker, _ := e.schedule("marker.service", unit("1000"), registry.StateLaunched)
	e.states.waitActive("marker.service", marker, "active", "running", 0)
	require.Eventually(t, func() bool { return e.logs.count("unit="+u, "job=start", "unit job done") == 2 },
		waitTimeout, 10*time.Millisecond, "the second agent's StartUnit of the adopted unit is done")
	time.Sleep(200 * time.Millisecond) // what would be published is, by now

	require.Equal(t, pid, e.show(u, "MainPID"), "not restarted")
	require.Equal(t, since, e.show(u, "ActiveEnterTimestamp"))
	require.Equal(t, n, e.states.count(u), "nothing republished: the state in etcd was already right")
	states, err := e.reg.States(context.Background(), e.m.ID)
	require.NoError(t, err)
	require.Contains(t, states, registry.UnitState{Name: u, Machine: e.m.ID, Hash: hash, LoadState: "loaded", ActiveState: "active", SubState: "running"})
}

func TestStaleUnitsAreUnloadedAtStart(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// What a previous fleetd left: a running unit no longer scheduled, and
	// a published state of a unit that is gone.
	const stale, ghost, kept = "stale.service", "ghost.service", "kept.service"
	_, err := e.sd.WriteUnitFile(stale, unit("1000"))
	require.NoError(t, err)
	require.NoError(t, e.sd.LinkUnitFiles(ctx, stale))
	require.NoError(t, e.sd.Reload(ctx))
	res, err := e.sd.StartUnit(ctx, stale)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	p, err := e.reg.Register(ctx, e.m, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: ghost, Hash: "abc", LoadState: "loaded", ActiveState: "active", SubState: "running"}))
	p.Close()
	hash, _ := e.schedule(kept, unit("1000"), registry.StateLaunched)

	e.startAgent()
	e.states.waitActive(kept, hash, "active", "running", 0)
	e.states.wait(ghost, 0, func(p published) bool { return p.Deleted })
	require.Eventually(t, func() bool {
		_, err := e.sd.ReadUnitFile(stale)
		return errors.Is(err, fs.ErrNotExist)
	}, waitTimeout, 20*time.Millisecond)
	require.Equal(t, "not-found", e.state(stale).LoadState)
	names, err := e.sd.UnitFiles()
	require.NoError(t, err)
	require.Equal(t, []string{kept}, names)
	require.Zero(t, e.states.count(stale), "no state for an unscheduled unit")
}

func TestMissingBodyIsNotRetriedHot(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A schedule entry whose body does not exist.
	_, err := e.reg.ApplyPlan(ctx, e.lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{
		Machine: e.m.ID, Name: "bodiless.service", Hash: hashOf("never stored"), DesiredState: registry.StateLaunched,
	}}})
	require.NoError(t, err)
	// Other units go on.
	hash, _ := e.schedule("fine.service", unit("1000"), registry.StateLaunched)
	e.states.waitActive("fine.service", hash, "active", "running", 0)
	_, err = e.sd.ReadUnitFile("bodiless.service")
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Zero(t, e.states.count("bodiless.service"))
	time.Sleep(time.Second)
	require.Equal(t, 1, e.logs.count("unit=bodiless.service", "not found"), "logged once, not retried at once")
}

// TestPresenceLost: when the machine's lease ends, Run returns and leaves
// units running; whoever registers again starts a new agent.
func TestPresenceLost(t *testing.T) {
	e := newEnv(t)
	r := e.startAgent()
	const u = "survivor.service"
	hash, _ := e.schedule(u, unit("1000"), registry.StateLaunched)
	e.states.waitActive(u, hash, "active", "running", 0)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.presence.Revoke(ctx))
	select {
	case err := <-r.done:
		require.ErrorIs(t, err, agent.ErrPresenceLost)
		r.done <- nil // for the cleanup's stop
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after the presence ended")
	}
	require.Equal(t, "active", e.show(u, "ActiveState"))
}

// TestEtcdOutage: while etcd is down the agent keeps what it has (nothing
// is stopped or restarted), and what happened meanwhile is published once
// etcd is back.
func TestEtcdOutage(t *testing.T) {
	h := hosttest.Host(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcd := startEtcdMember(ctx, t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.srv.Endpoints(), DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	e := newEnvWith(t, h, cli)
	e.ttl = 20 * time.Second // the presence outlives the outage
	e.startAgent()
	const a, b = "steady.service", "dies.service"
	ha, _ := e.schedule(a, unit("1000"), registry.StateLaunched)
	hb, _ := e.schedule(b, unit("1001"), registry.StateLaunched)
	e.states.waitActive(a, ha, "active", "running", 0)
	e.states.waitActive(b, hb, "active", "running", 0)
	pid := e.show(a, "MainPID")

	etcd.srv.Close()
	down := time.Now()
	_, _ = e.systemctl("kill", "--signal=KILL", b)
	time.Sleep(2 * time.Second)
	require.Equal(t, "active", e.show(a, "ActiveState"))
	require.Equal(t, pid, e.show(a, "MainPID"), "nothing restarted during the outage")

	etcd.restart(ctx)
	t.Logf("etcd was down for %v", time.Since(down).Round(time.Millisecond))
	back := time.Now()
	// The state watch of the test may have ended with the outage: read.
	require.Eventually(t, func() bool {
		states, err := e.reg.States(ctx, e.m.ID)
		if err != nil {
			return false
		}
		for _, s := range states {
			if s.Name == b && s.ActiveState == "failed" {
				return true
			}
		}
		return false
	}, waitTimeout, 20*time.Millisecond, "the failure during the outage is published")
	t.Logf("etcd back -> failure during the outage published: %v", time.Since(back).Round(time.Millisecond))
	require.Equal(t, pid, e.show(a, "MainPID"))
}

// etcdMember is an etcd member of a test's own, which the test stops and
// starts again on the same data and addresses: an etcd outage.
type etcdMember struct {
	t   *testing.T
	cfg etcdserver.Config
	srv *etcdserver.Server // the member running now
}

func startEtcdMember(ctx context.Context, t *testing.T) *etcdMember {
	m := &etcdMember{t: t, cfg: etcdserver.Config{
		DataDir:    t.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		Fast:       true,
	}}
	m.restart(ctx)
	t.Cleanup(func() { m.srv.Close() }) // the member running at the end
	return m
}

// restart starts the member again after srv.Close.
func (m *etcdMember) restart(ctx context.Context) {
	srv, err := etcdserver.Start(ctx, m.cfg)
	require.NoError(m.t, err)
	m.srv = srv
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testLogger sends the agent's log to t.Log and to lines, at Info, or at
// Debug with FLEET_TEST_DEBUG=1.
func testLogger(t *testing.T, lines *logLines) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("FLEET_TEST_DEBUG") == "1" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t, lines}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	t     *testing.T
	lines *logLines
}

func (w testWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	w.t.Log(line)
	w.lines.mu.Lock()
	w.lines.lines = append(w.lines.lines, line)
	w.lines.mu.Unlock()
	return len(p), nil
}

// logLines keeps the agent's log lines for assertions.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

// count returns how many lines contain every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		n++
	}
	return n
}
