package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/agent/systemd"
)

// MemorySystemd is an in-memory stand-in for one machine's systemd and its
// unit file directory, so that thousands of real agents (package agent) can
// run in one process. It is NOT systemd: jobs finish at once and always
// succeed, nothing is executed, and it keeps only what the agent can observe
// (unit files, links, load and active states, and a PropertiesChanged-like
// signal per state change). A figure measured on it says how fleet scales,
// never that a unit works; the real-systemd figures come from real hosts.
//
// The zero value is not usable; call NewMemorySystemd. Methods may be
// called concurrently.
type MemorySystemd struct {
	mu     sync.Mutex
	files  map[string]string // the unit file directory
	linked map[string]bool   // linked into systemd's search path
	units  map[string]*memUnit
	subs   []*memSub
	calls  uint64
}

// memUnit is a unit systemd holds in memory.
type memUnit struct {
	body  string // the file it was loaded from
	state systemd.UnitState
}

var _ agent.UnitManager = (*MemorySystemd)(nil)

// NewMemorySystemd returns an empty one.
func NewMemorySystemd() *MemorySystemd {
	return &MemorySystemd{files: map[string]string{}, linked: map[string]bool{}, units: map[string]*memUnit{}}
}

// Calls returns how many methods have been called.
func (m *MemorySystemd) Calls() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Active returns the names of the units that are active, sorted.
func (m *MemorySystemd) Active() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n, u := range m.units {
		if u.state.ActiveState == "active" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// memSub is one subscriber: names wait in a set until its goroutine hands
// them over, so signalling never blocks (as Manager.Subscribe coalesces).
type memSub struct {
	mu      sync.Mutex
	pending []string
	waiting map[string]bool
	wake    chan struct{}
}

func (s *memSub) add(name string) {
	s.mu.Lock()
	if !s.waiting[name] {
		s.waiting[name] = true
		s.pending = append(s.pending, name)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Subscribe delivers the name of every unit whose state changes. The
// channel closes when ctx ends.
func (m *MemorySystemd) Subscribe(ctx context.Context) (<-chan string, error) {
	s := &memSub{waiting: map[string]bool{}, wake: make(chan struct{}, 1)}
	m.mu.Lock()
	m.calls++
	m.subs = append(m.subs, s)
	m.mu.Unlock()
	out := make(chan string)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			m.subs = slices.DeleteFunc(m.subs, func(x *memSub) bool { return x == s })
			m.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			var next string
			if len(s.pending) > 0 {
				next = s.pending[0]
				s.pending = s.pending[1:]
				delete(s.waiting, next)
			}
			s.mu.Unlock()
			if next == "" {
				select {
				case <-ctx.Done():
					return
				case <-s.wake:
				}
				continue
			}
			select {
			case <-ctx.Done():
				return
			case out <- next:
			}
		}
	}()
	return out, nil
}

// signal tells subscribers name changed. Called with m.mu held.
func (m *MemorySystemd) signal(name string) {
	for _, s := range m.subs {
		s.add(name)
	}
}

// setState changes a unit's state and signals it if it differs. Called
// with m.mu held.
func (m *MemorySystemd) setState(name string, u *memUnit, st systemd.UnitState) {
	if u.state != st {
		u.state = st
		m.signal(name)
	}
}

// HostUnit reports no unit of the host: the stand-in has none.
func (m *MemorySystemd) HostUnit(context.Context, string) (string, error) { return "", nil }

// UnitFiles lists the unit file directory, sorted.
func (m *MemorySystemd) UnitFiles() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	out := make([]string, 0, len(m.files))
	for n := range m.files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// WriteUnitFile stores body unless it is already there.
func (m *MemorySystemd) WriteUnitFile(name, body string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if old, ok := m.files[name]; ok && old == body {
		return false, nil
	}
	m.files[name] = body
	return true, nil
}

// RemoveUnitFile removes the file; a missing one is fine. An inactive unit
// without a file is forgotten, as systemd garbage-collects it.
func (m *MemorySystemd) RemoveUnitFile(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	delete(m.files, name)
	if u, ok := m.units[name]; ok && u.state.ActiveState != "active" {
		delete(m.units, name)
	}
	return nil
}

// LinkUnitFiles links files into the search path; each must exist.
func (m *MemorySystemd) LinkUnitFiles(_ context.Context, names ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	for _, n := range names {
		if _, ok := m.files[n]; !ok {
			return fmt.Errorf("link unit files %s: no such file", n)
		}
	}
	for _, n := range names {
		m.linked[n] = true
	}
	return nil
}

// EnableUnitFiles would make the symlinks of the units' [Install]
// sections; the stand-in keeps no such links, so it only checks that each
// file exists and reports no change (the benchmark's units have no
// [Install] section).
func (m *MemorySystemd) EnableUnitFiles(_ context.Context, names ...string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	for _, n := range names {
		if _, ok := m.files[n]; !ok {
			return false, fmt.Errorf("enable unit files %s: no such file", n)
		}
	}
	return false, nil
}

// DisableUnitFiles removes the links; a unit not linked is ErrNoSuchUnit.
func (m *MemorySystemd) DisableUnitFiles(_ context.Context, names ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	for _, n := range names {
		if !m.linked[n] {
			return fmt.Errorf("disable unit files %s: %w", n, systemd.ErrNoSuchUnit)
		}
	}
	for _, n := range names {
		delete(m.linked, n)
	}
	return nil
}

// NeedDaemonReload reports whether a loaded unit's file changed since it
// was loaded.
func (m *MemorySystemd) NeedDaemonReload(_ context.Context, names ...string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	for _, n := range names {
		if u, ok := m.units[n]; ok && m.linked[n] && u.body != m.files[n] {
			return true, nil
		}
	}
	return false, nil
}

// Reload reloads every loaded unit from its file.
func (m *MemorySystemd) Reload(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	for n, u := range m.units {
		if m.linked[n] {
			u.body = m.files[n]
		}
	}
	return nil
}

// load returns the unit as systemd would hold it after loading it on
// demand: nil when it has no linked file. Called with m.mu held.
func (m *MemorySystemd) load(name string) *memUnit {
	if u, ok := m.units[name]; ok {
		return u
	}
	if !m.linked[name] {
		return nil
	}
	u := &memUnit{body: m.files[name], state: systemd.UnitState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}}
	m.units[name] = u
	return u
}

func (m *MemorySystemd) job(name string, st systemd.UnitState) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	u := m.load(name)
	if u == nil {
		return "", fmt.Errorf("unit %s: %w", name, systemd.ErrNoSuchUnit)
	}
	m.setState(name, u, st)
	return "done", nil
}

var (
	running = systemd.UnitState{LoadState: "loaded", ActiveState: "active", SubState: "running"}
	dead    = systemd.UnitState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
)

// StartUnit makes the unit active/running at once.
func (m *MemorySystemd) StartUnit(_ context.Context, name string) (string, error) {
	return m.job(name, running)
}

// RestartUnit makes the unit active/running at once.
func (m *MemorySystemd) RestartUnit(_ context.Context, name string) (string, error) {
	return m.job(name, running)
}

// StopUnit makes the unit inactive/dead at once.
func (m *MemorySystemd) StopUnit(_ context.Context, name string) (string, error) {
	return m.job(name, dead)
}

// ResetFailedUnit does nothing: units never fail here.
func (m *MemorySystemd) ResetFailedUnit(context.Context, string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	return nil
}

// UnitStates reports each unit's state, loading linked units on demand as
// systemd does; others are not-found.
func (m *MemorySystemd) UnitStates(_ context.Context, names ...string) (map[string]systemd.UnitState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	out := make(map[string]systemd.UnitState, len(names))
	for _, n := range names {
		if u := m.load(n); u != nil {
			out[n] = u.state
		} else {
			out[n] = systemd.UnitState{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
		}
	}
	return out, nil
}
