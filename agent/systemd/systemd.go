package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// DefaultUnitsDir is where fleet keeps the unit files it manages.
const DefaultUnitsDir = "/run/fleet/units"

// privateSocket is systemd's own D-Bus socket: no bus daemon, no Hello, and
// only clients in systemd's PID namespace are accepted.
const privateSocket = "unix:path=/run/systemd/private"

// ErrNoSuchUnit is returned (wrapped, with systemd's message) when systemd
// does not know a unit (D-Bus error org.freedesktop.systemd1.NoSuchUnit), for
// example StopUnit of a unit that is not loaded.
var ErrNoSuchUnit = errors.New("no such unit")

// Config says how to reach systemd and where unit files live.
type Config struct {
	// BusAddress is a D-Bus address such as
	// "unix:path=/proc/<pid>/root/run/dbus/system_bus_socket", dialed with
	// EXTERNAL authentication (this process's uid) and Hello. Empty means
	// systemd's private socket, /run/systemd/private: the normal case of an
	// agent running on the host it manages.
	BusAddress string
	// UnitsDir is the directory of unit files as systemd sees it, so the
	// paths given to LinkUnitFiles. Default DefaultUnitsDir. Must be
	// absolute, and a directory of fleet's own: not one of systemd's unit
	// directories nor above one (Connect refuses /etc/systemd/system, /run,
	// /...).
	UnitsDir string
	// FSRoot prefixes every file operation: "" normally, "/proc/<pid>/root"
	// to put files inside a container whose systemd is driven from outside.
	FSRoot string
	// Log receives connection losses at Warn and reconnections at Info.
	// Default: discard.
	Log *slog.Logger
}

// Manager is a connection to one systemd and its unit file directory. Its
// methods may be called concurrently.
//
// It survives systemd restarting itself (daemon-reexec, as a package
// upgrade runs it; daemon-reload): when the connection is lost it dials
// systemd again in the background, with backoff, and calls made meanwhile
// wait for it (at most 30 s, or until their context ends). Calls whose
// repetition does nothing new are retried once when systemd went away
// during the call; jobs are waited for across the gap (see StartUnit).
// Subscriptions end, so their owner re-reads what it watches.
type Manager struct {
	dial     func(ctx, connCtx context.Context, keep skimFilter) (*dbus.Conn, error)
	direct   bool // private socket: systemd sends every signal, there is no bus to add matches to
	unitsDir string
	fsDir    string          // unitsDir as this process sees it
	fsRoot   string          // Config.FSRoot
	life     context.Context // ends with Close; bounds every connection
	cancel   context.CancelFunc
	log      *slog.Logger
	keeper   sync.WaitGroup // keep

	mu    sync.Mutex
	cur   *session      // nil while systemd is dialed again
	ready chan struct{} // closed once cur is set
}

// Connect dials systemd as cfg says. ctx bounds only the dial: the
// connection lives until Close. (go-systemd's New*ConnectionContext and
// godbus's WithContext tie the connection's whole life to the context given,
// so a dial timeout there would later close a working connection.)
func Connect(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.UnitsDir == "" {
		cfg.UnitsDir = DefaultUnitsDir
	}
	if err := checkUnitsDir(cfg.UnitsDir); err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	m := &Manager{
		unitsDir: path.Clean(cfg.UnitsDir),
		fsDir:    filepath.Join(cfg.FSRoot, filepath.FromSlash(cfg.UnitsDir)),
		fsRoot:   cfg.FSRoot,
		direct:   cfg.BusAddress == "",
		log:      newLogger(cfg.Log).With("component", "systemd"),
		ready:    make(chan struct{}),
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.life, m.cancel = life, cancel
	addr, hello := cfg.BusAddress, true
	if m.direct {
		addr, hello = privateSocket, false
	}
	m.dial = func(ctx, connCtx context.Context, keep skimFilter) (*dbus.Conn, error) {
		return dial(ctx, connCtx, addr, hello, keep)
	}
	s, err := m.dialSession(ctx, life)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connect to systemd at %s: %w", addr, err)
	}
	m.install(s)
	m.keeper.Go(func() { m.keep(s) })
	return m, nil
}

// dial opens one authenticated D-Bus connection to addr that lives until
// connCtx ends or it is closed; ctx bounds the handshake. Signals reach
// godbus only if keep lets them through (see skimmer).
func dial(ctx, connCtx context.Context, addr string, hello bool, keep skimFilter) (*dbus.Conn, error) {
	c, err := open(ctx, connCtx, addr, keep)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	// EXTERNAL with the numeric uid: no user name lookup.
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		_ = c.Close()
		return nil, errors.Join(err, ctx.Err())
	}
	if hello {
		if err := c.Hello(); err != nil {
			_ = c.Close()
			return nil, errors.Join(err, ctx.Err())
		}
	}
	return c, nil
}

// open connects to addr. A plain unix socket path (what fleet dials:
// systemd's private socket, a host's system bus) is read through a
// skimmer; other addresses are left to godbus as they are.
func open(ctx, connCtx context.Context, addr string, keep skimFilter) (*dbus.Conn, error) {
	p, ok := strings.CutPrefix(addr, "unix:path=")
	if !ok || strings.ContainsAny(p, ",%") {
		return dbus.Dial(addr, dbus.WithContext(connCtx))
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", p)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c, err := dbus.NewConn(newSkimmer(nc, keep), dbus.WithContext(connCtx))
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection and ends every subscription. Jobs already
// queued in systemd go on.
func (m *Manager) Close() {
	m.cancel()
	m.keeper.Wait()
}

// UnitsDir returns the unit file directory as systemd sees it.
func (m *Manager) UnitsDir() string { return m.unitsDir }

// filePath returns where this process finds unit file name.
func (m *Manager) filePath(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("invalid unit file name %q", name)
	}
	return filepath.Join(m.fsDir, name), nil
}

// WriteUnitFile writes UnitsDir/name with body unless it already holds
// exactly body, and reports whether it wrote. The file is replaced
// atomically (a temporary file renamed over it), so systemd never reads a
// half-written unit.
func (m *Manager) WriteUnitFile(name, body string) (changed bool, err error) {
	p, err := m.filePath(name)
	if err != nil {
		return false, fmt.Errorf("write unit file: %w", err)
	}
	if old, err := os.ReadFile(p); err == nil && string(old) == body {
		return false, nil
	}
	if err := os.MkdirAll(m.fsDir, 0o755); err != nil {
		return false, fmt.Errorf("write unit file %s: %w", name, err)
	}
	// A dot name: UnitFiles skips it, and systemd never sees the directory.
	f, err := os.CreateTemp(m.fsDir, "."+name+".tmp*")
	if err != nil {
		return false, fmt.Errorf("write unit file %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(body)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("write unit file %s: %w", name, err)
	}
	return true, nil
}

// RemoveUnitFile removes UnitsDir/name; a missing file is not an error.
func (m *Manager) RemoveUnitFile(name string) error {
	p, err := m.filePath(name)
	if err != nil {
		return fmt.Errorf("remove unit file: %w", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove unit file %s: %w", name, err)
	}
	return nil
}

// ReadUnitFile returns the content of UnitsDir/name. A missing file is an
// error wrapping fs.ErrNotExist.
func (m *Manager) ReadUnitFile(name string) (string, error) {
	p, err := m.filePath(name)
	if err != nil {
		return "", fmt.Errorf("read unit file: %w", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read unit file %s: %w", name, err)
	}
	return string(b), nil
}

// UnitFiles returns the names of the unit files in UnitsDir, sorted. A
// missing directory holds none.
func (m *Manager) UnitFiles() ([]string, error) {
	ents, err := os.ReadDir(m.fsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// LinkUnitFiles links UnitsDir/name of every name into systemd's runtime
// search path (/run/systemd/system), replacing links of the same name
// (LinkUnitFiles with runtime and force). systemd sees the units after the
// next Reload.
func (m *Manager) LinkUnitFiles(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	paths := make([]string, len(names))
	for i, n := range names {
		if _, err := m.filePath(n); err != nil {
			return fmt.Errorf("link unit files: %w", err)
		}
		paths[i] = path.Join(m.unitsDir, n)
	}
	err := m.call(ctx, func(c *sddbus.Conn) error {
		_, err := c.LinkUnitFilesContext(ctx, paths, true, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("link unit files %s: %w", strings.Join(names, " "), wrapDBus(err))
	}
	return nil
}

// EnableUnitFiles enables UnitsDir/name of every name at runtime, as
// systemctl enable --runtime --force would: the symlinks its [Install]
// section asks for (WantedBy=, RequiredBy=, Also=...) are made under
// /run/systemd/system, replacing links of the same name. It reports whether
// any link was made or replaced; links already in place are no change.
// systemd learns of new links of units it holds loaded (peer.service.wants/
// of a loaded peer.service) only at the next Reload. A unit without an
// [Install] section is no error and no change. Links its file no longer asks
// for are left: DisableUnitFiles removes them all.
func (m *Manager) EnableUnitFiles(ctx context.Context, names ...string) (changed bool, err error) {
	if len(names) == 0 {
		return false, nil
	}
	paths := make([]string, len(names))
	for i, n := range names {
		if _, err := m.filePath(n); err != nil {
			return false, fmt.Errorf("enable unit files: %w", err)
		}
		paths[i] = path.Join(m.unitsDir, n)
	}
	var changes []sddbus.EnableUnitFileChange
	err = m.call(ctx, func(c *sddbus.Conn) error {
		_, changes, err = c.EnableUnitFilesContext(ctx, paths, true, true)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("enable unit files %s: %w", strings.Join(names, " "), wrapDBus(err))
	}
	return len(changes) > 0, nil
}

// DisableUnitFiles removes the runtime links of the units (DisableUnitFiles
// with runtime): the one LinkUnitFiles made and every enablement symlink
// EnableUnitFiles made, such as peer.service.wants/name. Once a unit of
// UnitsDir is unlinked systemd no longer finds its file, so disabling it
// again fails with an error wrapping ErrNoSuchUnit.
func (m *Manager) DisableUnitFiles(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	err := m.call(ctx, func(c *sddbus.Conn) error {
		_, err := c.DisableUnitFilesContext(ctx, names, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("disable unit files %s: %w", strings.Join(names, " "), wrapDBus(err))
	}
	return nil
}

// Reload makes systemd re-read every unit file (daemon-reload). It returns
// once systemd has finished reloading.
func (m *Manager) Reload(ctx context.Context) error {
	if err := m.call(ctx, func(c *sddbus.Conn) error { return c.ReloadContext(ctx) }); err != nil {
		return fmt.Errorf("reload systemd: %w", wrapDBus(err))
	}
	return nil
}

// jobFunc is the shape of go-systemd's job-queuing methods.
type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// StartUnit starts a unit (mode "replace") and returns its job's result:
// "done", "canceled", "timeout", "failed", "dependency" or "skipped", or
// "unknown" for a job that ended while systemd was re-executing (see
// Manager). Starting an active unit does nothing and returns "done".
func (m *Manager) StartUnit(ctx context.Context, name string) (string, error) {
	return m.runJob(ctx, "start", name, func(c *sddbus.Conn) jobFunc { return c.StartUnitContext })
}

// StopUnit stops a unit (mode "replace") and returns its job's result. A
// unit systemd does not know gives an error wrapping ErrNoSuchUnit.
func (m *Manager) StopUnit(ctx context.Context, name string) (string, error) {
	return m.runJob(ctx, "stop", name, func(c *sddbus.Conn) jobFunc { return c.StopUnitContext })
}

// RestartUnit restarts a unit, or starts it if it is not active, and
// returns its job's result.
func (m *Manager) RestartUnit(ctx context.Context, name string) (string, error) {
	return m.runJob(ctx, "restart", name, func(c *sddbus.Conn) jobFunc { return c.RestartUnitContext })
}

// TryRestartUnit restarts a unit only if it is active, and returns its
// job's result.
func (m *Manager) TryRestartUnit(ctx context.Context, name string) (string, error) {
	return m.runJob(ctx, "try-restart", name, func(c *sddbus.Conn) jobFunc { return c.TryRestartUnitContext })
}

// ResetFailedUnit resets a unit's failed state and restart counter. A unit
// that is not loaded or not failed is fine.
func (m *Manager) ResetFailedUnit(ctx context.Context, name string) error {
	err := wrapDBus(m.call(ctx, func(c *sddbus.Conn) error { return c.ResetFailedUnitContext(ctx, name) }))
	if err == nil || errors.Is(err, ErrNoSuchUnit) {
		return nil
	}
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.UnitNotFailed" {
		return nil
	}
	return fmt.Errorf("reset failed unit %s: %w", name, err)
}

// UnitState is a unit's state as systemd reports it.
type UnitState struct {
	LoadState   string // loaded, not-found, bad-setting, error, masked
	ActiveState string // active, reloading, inactive, failed, activating, deactivating
	SubState    string // type-specific, such as running, exited, dead
}

// UnitStates reads the state of the named units in one ListUnitsByNames
// call. Units systemd does not know are reported, as "not-found". systemd
// loads a unit that is not in memory to answer, and announces that with a
// UnitNew/UnitRemoved signal pair.
func (m *Manager) UnitStates(ctx context.Context, names ...string) (map[string]UnitState, error) {
	out := make(map[string]UnitState, len(names))
	if len(names) == 0 {
		return out, nil
	}
	var us []sddbus.UnitStatus
	err := m.call(ctx, func(c *sddbus.Conn) error {
		var err error
		us, err = c.ListUnitsByNamesContext(ctx, names)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", strings.Join(names, " "), wrapDBus(err))
	}
	if len(us) != len(names) {
		return nil, fmt.Errorf("read state of %s: systemd answered for %d units, not %d", strings.Join(names, " "), len(us), len(names))
	}
	// One answer per name, in order; an answer's Name is the unit's primary
	// name, which differs for an alias.
	for i, u := range us {
		out[names[i]] = UnitState{LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState}
	}
	return out, nil
}

// NeedDaemonReload reports whether systemd holds any of the units loaded
// from an older version of its file on disk (systemd's NeedDaemonReload
// property). Reading the property loads a unit not in memory, fresh from
// its file.
func (m *Manager) NeedDaemonReload(ctx context.Context, names ...string) (bool, error) {
	for _, n := range names {
		var p *sddbus.Property
		err := m.call(ctx, func(c *sddbus.Conn) error {
			var err error
			p, err = c.GetUnitPropertyContext(ctx, n, "NeedDaemonReload")
			return err
		})
		if err != nil {
			return false, fmt.Errorf("read NeedDaemonReload of %s: %w", n, wrapDBus(err))
		}
		if need, ok := p.Value.Value().(bool); !ok || need {
			return true, nil
		}
	}
	return false, nil
}

// wrapDBus adds ErrNoSuchUnit to systemd's NoSuchUnit errors.
func wrapDBus(err error) error {
	if err == nil {
		return nil
	}
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return fmt.Errorf("%w: %w", ErrNoSuchUnit, err)
	}
	return err
}
