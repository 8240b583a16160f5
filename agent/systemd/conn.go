package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Reconnection bounds; see Manager.
const (
	// reconnectWait bounds how long a call waits for systemd to come back
	// before it fails.
	reconnectWait = 30 * time.Second
	// dialTimeout bounds one attempt to reach systemd again.
	dialTimeout = 2 * time.Second
	// Re-dial backoff: first retry soon (a daemon-reexec takes a few
	// hundred milliseconds), then at most this often.
	redialMin = 20 * time.Millisecond
	redialMax = time.Second
)

// systemdName is systemd's well-known name on a bus.
const systemdName = "org.freedesktop.systemd1"

// ErrClosed is returned by calls on a Manager that was closed.
var ErrClosed = errors.New("systemd manager closed")

// session is one connection to one run of systemd: go-systemd's Conn (a
// connection for calls and one for job signals) and what tells that they
// are lost. A daemon-reexec closes every connection to the private socket;
// on a bus the connections stay, but systemd's name passes to the new run's
// connection: the new run takes over the old one's jobs and subscribers,
// but fleet does not rely on that, and treats it as a loss like the other.
type session struct {
	conn *sddbus.Conn
	sys  *dbus.Conn // conn's call connection, for calls go-systemd lacks
	lost chan struct{}
	// units feeds the subscriptions of a private-socket session (see
	// Subscribe); unused on a bus.
	units *watchers
	once  sync.Once
	wg    sync.WaitGroup // watch
	// onLost runs once, when the session is marked lost, before lost
	// closes: the Manager stops handing it out.
	onLost func()
}

func (s *session) markLost() {
	s.once.Do(func() {
		if s.onLost != nil {
			s.onLost()
		}
		close(s.lost)
	})
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// close closes the session's connections and waits for its watcher.
func (s *session) close() {
	s.markLost()
	s.conn.Close()
	s.wg.Wait()
}

// lostBy reports whether err means systemd is not reachable through s any
// more, and marks s lost if so: the connection closed, or on a bus,
// systemd has no name there (it is re-executing) or went away without
// replying.
func (s *session) lostBy(err error) bool {
	if err == nil {
		return false
	}
	var de dbus.Error
	switch {
	case !s.sys.Connected(), errors.Is(err, dbus.ErrClosed):
	case errors.As(err, &de) && busGone[de.Name]:
	default:
		return false
	}
	s.markLost()
	return true
}

// busGone are the bus daemon's errors for a call whose destination is not
// (or no longer) on the bus.
var busGone = map[string]bool{
	"org.freedesktop.DBus.Error.NoReply":           true,
	"org.freedesktop.DBus.Error.ServiceUnknown":    true,
	"org.freedesktop.DBus.Error.NameHasNoOwner":    true,
	"org.freedesktop.DBus.Error.Disconnected":      true,
	"org.freedesktop.DBus.Error.Spawn.ChildExited": true,
}

// dialSession dials a session and checks that systemd answers on it.
// connCtx bounds the connections' life, ctx the dial.
func (m *Manager) dialSession(ctx, connCtx context.Context) (*session, error) {
	var conns []*dbus.Conn
	units := &watchers{}
	keep := keepJobSignals
	if m.direct {
		unit := unitChanges(units.changed)
		keep = func(h *signalHeader) bool { return keepJobSignals(h) || unit(h) }
	}
	c, err := sddbus.NewConnection(func() (*dbus.Conn, error) {
		// go-systemd asks for a connection for calls and one for job
		// signals. On the private socket systemd sends every signal to
		// every connection, so a second one would only double what
		// systemd sends and fleetd skims; one serves both.
		if m.direct && len(conns) > 0 {
			conns = append(conns, conns[0])
			return conns[0], nil
		}
		dc, err := m.dial(ctx, connCtx, keep)
		if err == nil {
			conns = append(conns, dc)
		}
		return dc, err
	})
	if err != nil {
		for _, dc := range conns {
			_ = dc.Close()
		}
		return nil, err
	}
	s := &session{conn: c, sys: conns[0], lost: make(chan struct{}), units: units}
	s.onLost = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cur == s {
			m.cur, m.ready = nil, make(chan struct{})
		}
	}
	sig := conns[1]
	var nameSigs chan *dbus.Signal
	if !m.direct {
		// Before the first call, so a systemd leaving right after it
		// answered is seen.
		nameSigs = make(chan *dbus.Signal, 16)
		sig.Signal(nameSigs)
		err = sig.AddMatchSignalContext(ctx,
			dbus.WithMatchSender("org.freedesktop.DBus"),
			dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"),
			dbus.WithMatchArg(0, systemdName))
	}
	if err == nil {
		// systemd answers: a bus does not hold its name while it
		// re-executes, and on the private socket the new run accepts
		// only once it is up.
		var v dbus.Variant
		err = s.sys.Object(systemdName, "/org/freedesktop/systemd1").CallWithContext(ctx,
			"org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "Version").Store(&v)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	s.wg.Go(func() { watch(s, sig, nameSigs) })
	return s, nil
}

// watch marks s lost when one of its connections closes or, on a bus
// (nameSigs not nil), when systemd's name changes owner.
func watch(s *session, sig *dbus.Conn, nameSigs <-chan *dbus.Signal) {
	defer s.markLost()
	for {
		select {
		case <-s.lost:
			return
		case <-s.sys.Context().Done():
			return
		case <-sig.Context().Done():
			return
		case sg, ok := <-nameSigs:
			if !ok {
				return
			}
			var name, prev, next string
			// A re-executed systemd connects to the bus before it closes
			// the old run's connection, so its name changes owner without
			// ever being free: a new owner is a new run too.
			if dbus.Store(sg.Body, &name, &prev, &next) == nil && name == systemdName && next != prev {
				return
			}
		}
	}
}

// keep replaces s whenever it is lost, until the Manager is closed: calls
// made meanwhile wait for the new session (see current).
func (m *Manager) keep(s *session) {
	for {
		select {
		case <-s.lost:
		case <-m.life.Done():
			s.close()
			return
		}
		lost := time.Now()
		s.close()
		m.log.Warn("connection to systemd lost; dialing it again")
		if s = m.redial(); s == nil {
			return // closed
		}
		m.install(s)
		m.log.Info("connected to systemd again", "took", time.Since(lost).Round(time.Millisecond))
	}
}

// redial dials a new session with backoff until it works or the Manager is
// closed (then it returns nil).
func (m *Manager) redial() *session {
	delay := redialMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(m.life, dialTimeout)
		s, err := m.dialSession(ctx, m.life)
		cancel()
		if err == nil {
			return s
		}
		if m.life.Err() != nil {
			return nil
		}
		m.log.Debug("dial systemd", "attempt", attempt, "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.life.Done():
			t.Stop()
			return nil
		}
		delay = min(2*delay, redialMax)
	}
}

// install makes s the session calls use, unless it is lost already (keep
// then dials another). A session takes itself back when it is lost.
func (m *Manager) install(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !s.isLost() {
		m.cur = s
		close(m.ready)
	}
}

// current returns the live session, waiting while systemd is being dialed
// again, at most reconnectWait or until ctx ends.
func (m *Manager) current(ctx context.Context) (*session, error) {
	m.mu.Lock()
	s, ready := m.cur, m.ready
	m.mu.Unlock()
	if s != nil {
		return s, nil
	}
	t := time.NewTimer(reconnectWait)
	defer t.Stop()
	for {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for systemd to be reachable again: %w", ctx.Err())
		case <-m.life.Done():
			return nil, ErrClosed
		case <-t.C:
			return nil, fmt.Errorf("systemd has not been reachable for %v", reconnectWait)
		}
		m.mu.Lock()
		s, ready = m.cur, m.ready
		m.mu.Unlock()
		if s != nil {
			return s, nil
		}
	}
}

// call runs f on the live session. f is run again, once, on the next
// session if the first failed because systemd went away: only for calls
// whose repetition does nothing new.
func (m *Manager) call(ctx context.Context, f func(c *sddbus.Conn) error) error {
	for attempt := 1; ; attempt++ {
		s, err := m.current(ctx)
		if err != nil {
			return err
		}
		err = f(s.conn)
		if !s.lostBy(err) || attempt == 2 {
			return err
		}
	}
}

// jobExists reports whether systemd still has job id queued or running.
func (s *session) jobExists(ctx context.Context, id int) (bool, error) {
	var p dbus.ObjectPath
	err := s.sys.Object(systemdName, "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.GetJob", 0, uint32(id)).Store(&p)
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchJob" {
		return false, nil
	}
	return err == nil, err
}

// resultUnknown is the job result runJob returns for a job that ended
// while systemd was being dialed again: its result was sent to the old
// connection.
const resultUnknown = "unknown"

// runJob queues a job in mode "replace" and waits until systemd reports its
// result or ctx ends (the job then goes on in systemd).
//
// A job outlives a daemon-reexec, with its ID, but its result is sent on
// the connection that the re-execution closed. So when the session is lost
// while the job runs, runJob asks the new systemd for the job and, if it is
// still there, queues the same job again: systemd merges it into the queued
// one (also a restart into a running restart) and runJob waits for that.
// A job that ended meanwhile gives resultUnknown. The job request itself
// is not repeated when the session is lost during the call: whether it
// reached systemd is unknown, and a second restart would restart again.
func (m *Manager) runJob(ctx context.Context, verb, name string, f func(c *sddbus.Conn) jobFunc) (string, error) {
	s, err := m.current(ctx)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", verb, name, err)
	}
	for requeued := false; ; requeued = true {
		// Buffered: go-systemd delivers the result with a blocking send
		// from its signal loop, even when nobody waits any more.
		ch := make(chan string, 1)
		id, err := f(s.conn)(ctx, name, "replace", ch)
		if err != nil {
			s.lostBy(err)
			return "", fmt.Errorf("%s %s: %w", verb, name, wrapDBus(err))
		}
		if requeued {
			m.log.Info("waiting again for a job queued before systemd went away", "unit", name, "job", verb, "id", id)
		}
		select {
		case res := <-ch:
			return res, nil
		case <-ctx.Done():
			return "", fmt.Errorf("%s %s: waiting for job %d: %w", verb, name, id, ctx.Err())
		case <-s.lost:
		}
		for {
			if s, err = m.current(ctx); err != nil {
				return "", fmt.Errorf("%s %s: waiting for job %d: %w", verb, name, id, err)
			}
			alive, err := s.jobExists(ctx, id)
			if s.lostBy(err) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("%s %s: look for job %d: %w", verb, name, id, err)
			}
			if !alive {
				return resultUnknown, nil
			}
			break
		}
	}
}

// newLogger returns l, or a logger that discards.
func newLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
