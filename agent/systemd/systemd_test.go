package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/agent/internal/hosttest"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// inHostEnv marks the copy of this test binary that TestPrivateSocket runs
// inside the host.
const inHostEnv = "FLEET_SYSTEMD_TEST_IN_HOST"

func TestMain(m *testing.M) {
	if os.Getenv(inHostEnv) == "1" {
		os.Exit(m.Run())
	}
	hosttest.Main(m)
}

// connect returns a Manager of the test host's systemd with a unit
// directory of the test's own, and removes what the test left there.
func connect(t *testing.T) (*Manager, *hosts.Host) {
	t.Helper()
	h := hosttest.Host(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := "/run/fleet/test-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	m, err := Connect(ctx, Config{BusAddress: h.BusAddress(), FSRoot: h.Path(""), UnitsDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		names, _ := m.UnitFiles()
		for _, n := range names {
			_, _ = m.StopUnit(ctx, n)
			_ = m.DisableUnitFiles(ctx, n)
			_ = m.ResetFailedUnit(ctx, n)
			_ = m.RemoveUnitFile(n)
		}
		m.Close()
	})
	return m, h
}

// show returns a unit property as systemctl in the host prints it.
func show(t *testing.T, h *hosts.Host, unit, prop string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), "systemctl", "show", "--value", "-p", prop, unit)
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

const sleeper = "[Unit]\nDescription=fleet test unit\n\n[Service]\nExecStart=/bin/sleep 1000\n"

func TestUnitLifecycle(t *testing.T) {
	m, h := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const u = "lifecycle.service"

	changed, err := m.WriteUnitFile(u, sleeper)
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = m.WriteUnitFile(u, sleeper)
	require.NoError(t, err)
	require.False(t, changed, "same content is not rewritten")
	require.NoError(t, m.LinkUnitFiles(ctx, u))
	target, err := os.Readlink(h.Path("/run/systemd/system/" + u))
	require.NoError(t, err)
	require.Equal(t, m.UnitsDir()+"/"+u, target)
	require.NoError(t, m.Reload(ctx))

	st, err := m.UnitStates(ctx, u, "nonexistent.service")
	require.NoError(t, err)
	require.Equal(t, map[string]UnitState{
		u:                     {LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
		"nonexistent.service": {LoadState: "not-found", ActiveState: "inactive", SubState: "dead"},
	}, st)

	res, err := m.StartUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	st, err = m.UnitStates(ctx, u)
	require.NoError(t, err)
	require.Equal(t, UnitState{LoadState: "loaded", ActiveState: "active", SubState: "running"}, st[u])
	pid := show(t, h, u, "MainPID")
	require.NotEqual(t, "0", pid)

	// Starting an active unit is a no-op: the process stays.
	res, err = m.StartUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	require.Equal(t, pid, show(t, h, u, "MainPID"))

	// A changed file, reloaded, is run by RestartUnit.
	_, err = m.WriteUnitFile(u, strings.Replace(sleeper, "1000", "1001", 1))
	require.NoError(t, err)
	require.NoError(t, m.Reload(ctx))
	res, err = m.TryRestartUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	require.NotEqual(t, pid, show(t, h, u, "MainPID"))
	require.Contains(t, show(t, h, u, "ExecStart"), "1001")

	res, err = m.StopUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	st, err = m.UnitStates(ctx, u)
	require.NoError(t, err)
	require.Equal(t, UnitState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}, st[u])

	// Unload: unlink, forget, remove. Each step is fine twice.
	require.NoError(t, m.DisableUnitFiles(ctx, u))
	_, err = os.Lstat(h.Path("/run/systemd/system/" + u))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorIs(t, m.DisableUnitFiles(ctx, u), ErrNoSuchUnit, "an unlinked unit is unknown to systemd's unit file logic")
	require.NoError(t, m.ResetFailedUnit(ctx, u))
	require.NoError(t, m.RemoveUnitFile(u))
	require.NoError(t, m.RemoveUnitFile(u))
	_, err = m.ReadUnitFile(u)
	require.ErrorIs(t, err, fs.ErrNotExist)
	st, err = m.UnitStates(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "not-found", st[u].LoadState)

	_, err = m.StopUnit(ctx, u)
	require.ErrorIs(t, err, ErrNoSuchUnit)
	var de dbus.Error
	require.ErrorAs(t, err, &de, "systemd's own error stays reachable")
	require.Equal(t, "org.freedesktop.systemd1.NoSuchUnit", de.Name)
	require.NoError(t, m.ResetFailedUnit(ctx, u), "not loaded is not an error")
}

func TestFailedUnit(t *testing.T) {
	m, h := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const u, pre = "fails.service", "fails-pre.service"
	_, err := m.WriteUnitFile(u, "[Service]\nExecStart=/bin/false\n")
	require.NoError(t, err)
	_, err = m.WriteUnitFile(pre, "[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep 1000\n")
	require.NoError(t, err)
	require.NoError(t, m.LinkUnitFiles(ctx, u, pre))
	require.NoError(t, m.Reload(ctx))

	// The start job of a simple service is done once the process runs;
	// its failure comes later.
	res, err := m.StartUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	require.Eventually(t, func() bool {
		st, err := m.UnitStates(ctx, u)
		return err == nil && st[u].ActiveState == "failed"
	}, 5*time.Second, 20*time.Millisecond)
	// A failing ExecStartPre fails the job itself.
	res, err = m.StartUnit(ctx, pre)
	require.NoError(t, err)
	require.Equal(t, "failed", res)

	require.NoError(t, m.ResetFailedUnit(ctx, u))
	require.NoError(t, m.ResetFailedUnit(ctx, u), "not failed is not an error")
	st, err := m.UnitStates(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "inactive", st[u].ActiveState)
	require.Equal(t, "inactive", show(t, h, u, "ActiveState"))
}

func TestSubscribe(t *testing.T) {
	m, h := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const u, idle = "subscribed.service", "idle.service"
	_, err := m.WriteUnitFile(u, sleeper)
	require.NoError(t, err)
	_, err = m.WriteUnitFile(idle, sleeper)
	require.NoError(t, err)
	require.NoError(t, m.LinkUnitFiles(ctx, u, idle))
	require.NoError(t, m.Reload(ctx))

	sctx, stop := context.WithCancel(ctx)
	names, err := m.Subscribe(sctx)
	require.NoError(t, err)
	// next waits for a signal of unit, skipping other units' signals.
	next := func(unit string) time.Duration {
		t.Helper()
		start := time.Now()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case n, ok := <-names:
				require.True(t, ok, "subscription ended")
				if n == unit {
					return time.Since(start)
				}
			case <-timeout:
				t.Fatalf("no signal for %s", unit)
			}
		}
	}

	_, err = m.StartUnit(ctx, u)
	require.NoError(t, err)
	next(u)

	// A change made by someone else is signalled too.
	drain(names)
	start := time.Now()
	_, err = h.Exec(ctx, "systemctl", "kill", "--signal=KILL", u)
	require.NoError(t, err)
	ran := time.Since(start)
	after := next(u)
	t.Logf("signal of an external change (systemctl kill, which took %v) arrived %v after it returned",
		ran.Round(time.Millisecond), after.Round(time.Microsecond))

	// Reading an unloaded unit makes systemd send UnitNew/UnitRemoved:
	// that must not come back as a change, or a reader would loop.
	drain(names)
	for range 3 {
		st, err := m.UnitStates(ctx, idle)
		require.NoError(t, err)
		require.Equal(t, "inactive", st[idle].ActiveState)
	}
	quiet := time.After(500 * time.Millisecond)
	for wait := true; wait; {
		select {
		case n := <-names:
			require.NotEqual(t, idle, n, "reading a unit signalled a change")
		case <-quiet:
			wait = false
		}
	}

	stop()
	for range names { // closes once ctx ends
	}
}

func drain(ch <-chan string) {
	for {
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

// TestConnectContext checks that the dial's context bounds only the dial:
// godbus ties a connection's life to the context it was dialed with.
func TestConnectContext(t *testing.T) {
	h := hosttest.Host(t)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Connect(ctx, Config{BusAddress: h.BusAddress(), FSRoot: h.Path("")})
	require.NoError(t, err)
	defer m.Close()
	cancel()
	time.Sleep(50 * time.Millisecond)
	st, err := m.UnitStates(context.Background(), "dbus.service")
	require.NoError(t, err)
	require.Equal(t, "active", st["dbus.service"].ActiveState)

	_, err = Connect(context.Background(), Config{BusAddress: "unix:path=/nonexistent/bus"})
	require.Error(t, err)
	_, err = Connect(context.Background(), Config{BusAddress: h.BusAddress(), UnitsDir: "relative"})
	require.Error(t, err)
}

func TestUnitFiles(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{unitsDir: "/run/fleet/units", fsDir: filepath.Join(dir, "run/fleet/units")}

	names, err := m.UnitFiles()
	require.NoError(t, err)
	require.Empty(t, names, "a missing directory holds no units")

	for _, n := range []string{"b.service", "a.service"} {
		changed, err := m.WriteUnitFile(n, "body of "+n)
		require.NoError(t, err)
		require.True(t, changed)
	}
	changed, err := m.WriteUnitFile("a.service", "new body")
	require.NoError(t, err)
	require.True(t, changed)
	body, err := m.ReadUnitFile("a.service")
	require.NoError(t, err)
	require.Equal(t, "new body", body)
	fi, err := os.Stat(filepath.Join(m.fsDir, "a.service"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())

	require.NoError(t, os.WriteFile(filepath.Join(m.fsDir, ".a.service.tmp123"), nil, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(m.fsDir, "dir.service"), 0o755))
	names, err = m.UnitFiles()
	require.NoError(t, err)
	require.Equal(t, []string{"a.service", "b.service"}, names, "temporary files and directories are not units")

	require.NoError(t, m.RemoveUnitFile("b.service"))
	require.NoError(t, m.RemoveUnitFile("b.service"))
	names, err = m.UnitFiles()
	require.NoError(t, err)
	require.Equal(t, []string{"a.service"}, names)

	for _, bad := range []string{"", ".", "..", "../x.service", "a/b.service", ".hidden.service"} {
		_, err := m.WriteUnitFile(bad, "x")
		require.Error(t, err, bad)
		require.Error(t, m.RemoveUnitFile(bad), bad)
		_, err = m.ReadUnitFile(bad)
		require.Error(t, err, bad)
	}
	_, err = os.Stat(filepath.Join(dir, "run/fleet/x.service"))
	require.True(t, errors.Is(err, fs.ErrNotExist))
}

func TestUnescapePath(t *testing.T) {
	tests := []struct {
		name, label, want string
		ok                bool
	}{
		{name: "service", label: "foo_2eservice", want: "foo.service", ok: true},
		{name: "dashes and at", label: "getty_40tty1_2eservice", want: "getty@tty1.service", ok: true},
		{name: "leading digit", label: "_31_2eservice", want: "1.service", ok: true},
		{name: "escape at the end", label: "a_2e", want: "a.", ok: true},
		{name: "escaped backslash", label: "run_2dx_5cx2dy_2emount", want: `run-x\x2dy.mount`, ok: true},
		{name: "empty name", label: "_", ok: false},
		{name: "truncated escape", label: "foo_2", ok: false},
		{name: "bad hex", label: "foo_zz", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := unescapePath(tt.label)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestSkim feeds the skimmer a stream as systemd would send it and checks
// what godbus gets out of it and what the filter sees.
func TestSkim(t *testing.T) {
	signal := func(path dbus.ObjectPath, iface, member string, body ...any) *dbus.Message {
		m := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:      dbus.MakeVariant(path),
			dbus.FieldInterface: dbus.MakeVariant(iface),
			dbus.FieldMember:    dbus.MakeVariant(member),
		}, Body: body}
		if len(body) > 0 {
			m.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
		}
		return m
	}
	changed := func(unit, iface string) *dbus.Message {
		return signal(dbus.ObjectPath(unitPathPrefix+sddbus.PathBusEscape(unit)),
			"org.freedesktop.DBus.Properties", "PropertiesChanged",
			iface, map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active"), "MainPID": dbus.MakeVariant(uint32(7))}, []string{})
	}
	reply := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(3)),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(dbus.ObjectPath(""))),
	}, Body: []any{dbus.ObjectPath("/org/freedesktop/systemd1/job/9")}}
	jobRemoved := signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved",
		uint32(9), dbus.ObjectPath("/org/freedesktop/systemd1/job/9"), "a.service", "done")
	nameAcquired := signal("/org/freedesktop/DBus", busInterface, "NameAcquired", ":1.7")

	var stream bytes.Buffer
	stream.WriteString("REJECTED EXTERNAL\r\nOK 0123456789abcdef\r\n")
	for i, m := range []*dbus.Message{
		changed("a.service", unitInterface),
		changed("b.service", "org.freedesktop.systemd1.Service"), // not the Unit interface
		reply,
		changed("a.service", unitInterface),
		signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "UnitNew", "c.service", dbus.ObjectPath(unitPathPrefix+"c_2eservice")),
		signal("/org/freedesktop/systemd1/job/7", "org.freedesktop.DBus.Properties", "PropertiesChanged", unitInterface),
		jobRemoved,
		nameAcquired,
		changed("c-x.service", unitInterface),
	} {
		order := binary.ByteOrder(binary.LittleEndian)
		if i%2 == 1 {
			order = binary.BigEndian
		}
		require.NoError(t, m.EncodeTo(&stream, order))
	}
	raw := stream.Bytes()

	read := func(keep skimFilter) (string, []*dbus.Message) {
		s := newSkimmer(nopCloser{bytes.NewReader(raw)}, keep)
		in := bufio.NewReader(s)
		var lines string
		for range 2 {
			l, err := in.ReadString('\n')
			require.NoError(t, err)
			lines += l
		}
		// Like godbus: the auth reader is dropped, and messages are read
		// from the stream itself.
		require.Zero(t, in.Buffered())
		var msgs []*dbus.Message
		for {
			m, err := dbus.DecodeMessage(s)
			if errors.Is(err, io.EOF) {
				return lines, msgs
			}
			require.NoError(t, err)
			msgs = append(msgs, m)
		}
	}

	var units []string
	lines, msgs := read(unitChanges(func(u string) { units = append(units, u) }))
	require.Equal(t, "REJECTED EXTERNAL\r\nOK 0123456789abcdef\r\n", lines)
	require.Equal(t, []string{"a.service", "a.service", "c-x.service"}, units)
	require.Len(t, msgs, 2)
	require.Equal(t, dbus.TypeMethodReply, msgs[0].Type)
	require.Equal(t, []any{dbus.ObjectPath("/org/freedesktop/systemd1/job/9")}, msgs[0].Body)
	require.Equal(t, nameAcquired.Body, msgs[1].Body)

	_, msgs = read(keepJobSignals)
	require.Len(t, msgs, 3)
	require.Equal(t, dbus.TypeMethodReply, msgs[0].Type)
	require.Equal(t, jobRemoved.Body, msgs[1].Body)
	require.Equal(t, nameAcquired.Body, msgs[2].Body)
}

type nopCloser struct{ io.Reader }

func (nopCloser) Write(p []byte) (int, error) { return len(p), nil }
func (nopCloser) Close() error                { return nil }

func TestNameSet(t *testing.T) {
	s := newNameSet()
	for _, n := range []string{"a.service", "b.service", "a.service", "c.service", "a.service"} {
		s.add(n)
	}
	out := make(chan string)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		coalesce(ctx, nil, nil, s, out)
	}()
	// Each name once, in the order it first came; a name taken may come again.
	require.Equal(t, "a.service", <-out)
	s.add("a.service")
	require.Equal(t, "b.service", <-out)
	require.Equal(t, "c.service", <-out)
	require.Equal(t, "a.service", <-out)
	cancel()
	<-done
}

// TestPrivateSocket runs the normal, in-host case: Config{} dials systemd's
// private socket, which refuses clients from outside the host's PID
// namespace, so this test runs a copy of its own binary inside the host.
func TestPrivateSocket(t *testing.T) {
	if os.Getenv(inHostEnv) == "1" {
		inHost(t)
		return
	}
	runInHost(t)
}

// runInHost runs t's test in a copy of this test binary inside the host.
func runInHost(t *testing.T) {
	h := hosttest.Host(t)
	self, err := os.Executable()
	require.NoError(t, err)
	b, err := os.ReadFile(self)
	require.NoError(t, err)
	bin := "/tmp/agent-systemd-" + strings.ToLower(t.Name()) + ".test"
	require.NoError(t, os.WriteFile(h.Path(bin), b, 0o755))
	defer os.Remove(h.Path(bin))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.Exec(ctx, "env", inHostEnv+"=1", bin, "-test.run=^"+t.Name()+"$", "-test.v")
	t.Logf("inside %s:\n%s", h.Name, out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: "+t.Name())
}

func inHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Connect(ctx, Config{UnitsDir: "/run/fleet/test-private"})
	require.NoError(t, err)
	defer m.Close()
	names, err := m.Subscribe(ctx)
	require.NoError(t, err)
	const u = "private.service"
	_, err = m.WriteUnitFile(u, sleeper)
	require.NoError(t, err)
	defer func() { _ = m.RemoveUnitFile(u) }()
	require.NoError(t, m.LinkUnitFiles(ctx, u))
	require.NoError(t, m.Reload(ctx))
	res, err := m.StartUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	for n := range names {
		if n == u {
			break
		}
	}
	res, err = m.StopUnit(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	require.NoError(t, m.DisableUnitFiles(ctx, u))
	st, err := m.UnitStates(ctx, u)
	require.NoError(t, err)
	require.Equal(t, "inactive", st[u].ActiveState)
	out, err := exec.Command("systemctl", "is-active", u).CombinedOutput()
	require.Error(t, err, "inactive units make is-active fail")
	require.Equal(t, "inactive", strings.TrimSpace(string(out)))
}

func TestHostUnit(t *testing.T) {
	m, h := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ours, etc, masked = "ours.service", "etc-own.service", "masked-own.service"
	_, err := m.WriteUnitFile(ours, sleeper)
	require.NoError(t, err)
	require.NoError(t, m.LinkUnitFiles(ctx, ours))
	etcFile := h.Path("/etc/systemd/system/" + etc)
	require.NoError(t, os.WriteFile(etcFile, []byte(sleeper), 0o644))
	maskLink := h.Path("/etc/systemd/system/" + masked)
	require.NoError(t, os.Symlink("/dev/null", maskLink))
	t.Cleanup(func() {
		_ = os.Remove(etcFile)
		_ = os.Remove(maskLink)
		_, _ = h.Exec(context.Background(), "systemctl", "daemon-reload")
	})
	require.NoError(t, m.Reload(ctx))

	tests := []struct {
		name, unit, want string
	}{
		{name: "unknown name", unit: "nothing-here.service", want: ""},
		{name: "fleet's own linked unit", unit: ours, want: ""},
		{name: "distribution unit", unit: "dbus.service", want: "/systemd/system/dbus.service"},
		{name: "administrator's unit", unit: etc, want: "/etc/systemd/system/" + etc},
		{name: "masked unit", unit: masked, want: "masked"},
		{name: "unit without a file", unit: "init.scope", want: "without a unit file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.HostUnit(ctx, tt.unit)
			require.NoError(t, err)
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tt.want)
		})
	}

	// A host file placed after systemd looked the name up (and holds it as
	// not-found) is found without a reload.
	const late = "late-own.service"
	got, err := m.HostUnit(ctx, late)
	require.NoError(t, err)
	require.Empty(t, got)
	lateFile := h.Path("/etc/systemd/system/" + late)
	require.NoError(t, os.WriteFile(lateFile, []byte(sleeper), 0o644))
	t.Cleanup(func() { _ = os.Remove(lateFile) })
	got, err = m.HostUnit(ctx, late)
	require.NoError(t, err)
	require.Equal(t, "/etc/systemd/system/"+late, got)

	_, err = m.HostUnit(ctx, "../x.service")
	require.Error(t, err)
}

func TestCheckUnitsDir(t *testing.T) {
	tests := []struct {
		name, dir string
		ok        bool
	}{
		{name: "default", dir: DefaultUnitsDir, ok: true},
		{name: "elsewhere", dir: "/var/lib/fleet/units", ok: true},
		{name: "beside systemd's", dir: "/run/systemd/fleet", ok: true},
		{name: "etc", dir: "/etc/systemd/system", ok: false},
		{name: "etc with slash", dir: "/etc/systemd/system/", ok: false},
		{name: "runtime", dir: "/run/systemd/system", ok: false},
		{name: "distribution", dir: "/lib/systemd/system", ok: false},
		{name: "above", dir: "/etc", ok: false},
		{name: "root", dir: "/", ok: false},
		{name: "relative", dir: "units", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkUnitsDir(tt.dir)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			t.Log(err)
		})
	}
}
