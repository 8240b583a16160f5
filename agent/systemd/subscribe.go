package systemd

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	unitPathPrefix = "/org/freedesktop/systemd1/unit/"
	unitInterface  = "org.freedesktop.systemd1.Unit"
)

// Subscribe delivers the name of every unit whose properties systemd says
// changed (PropertiesChanged of org.freedesktop.systemd1.Unit; see the
// package documentation for why not UnitNew/UnitRemoved). A name means
// "re-read this unit": it carries no state, and changes that happen while
// the reader is busy are coalesced into one delivery per unit.
//
// On systemd's private socket Subscribe reads the Manager's own
// connection, which systemd sends every signal to anyway: a connection of
// its own would double what systemd sends. On a bus it uses a connection of
// its own, with a match rule. The channel closes when ctx ends, the Manager
// is closed, the subscription's connection is lost, or the Manager's
// connection is (systemd re-executed: on a bus the subscription's own
// connection survives that, but not systemd's memory of it). A caller that
// wants to go on subscribes again, which waits for systemd to be back, and
// re-reads every unit it cares about, since changes may have been missed in
// between.
func (m *Manager) Subscribe(ctx context.Context) (<-chan string, error) {
	sess, err := m.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe to systemd: %w", err)
	}
	if m.direct {
		changed := newNameSet()
		sess.units.add(changed)
		out := make(chan string)
		go func() {
			defer close(out)
			defer sess.units.remove(changed)
			coalesce(ctx, sess.lost, m.life.Done(), changed, out)
		}()
		return out, nil
	}
	var (
		c      *dbus.Conn
		cancel context.CancelFunc
	)
	changed := newNameSet()
	// A systemd that does not answer must not hold the agent forever:
	// bound each attempt and redial.
	for attempt := 1; ; attempt++ {
		var connCtx context.Context
		connCtx, cancel = context.WithCancel(m.life)
		c, err = m.dial(ctx, connCtx, unitChanges(changed.add))
		if err == nil {
			actx, acancel := context.WithTimeout(ctx, subscribeTimeout)
			err = m.subscribe(actx, c)
			acancel()
			if err == nil {
				break
			}
			_ = c.Close()
		}
		cancel()
		if ctx.Err() != nil || attempt == subscribeAttempts {
			return nil, fmt.Errorf("subscribe to systemd (%d attempts): %w", attempt, err)
		}
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer cancel()
		defer func() { _ = c.Close() }() // also ends systemd's subscription of c
		coalesce(ctx, sess.lost, c.Context().Done(), changed, out)
	}()
	return out, nil
}

// Bounds of Subscribe's retries; see Subscribe.
const (
	subscribeTimeout  = time.Second
	subscribeAttempts = 10
)

// subscribe asks systemd, on a bus, to send its signals to c: the bus
// daemon forwards only what c's match rules select.
func (m *Manager) subscribe(ctx context.Context, c *dbus.Conn) error {
	err := c.AddMatchSignalContext(ctx,
		dbus.WithMatchSender("org.freedesktop.systemd1"),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"),
		dbus.WithMatchPathNamespace(dbus.ObjectPath(strings.TrimSuffix(unitPathPrefix, "/"))),
		dbus.WithMatchArg(0, unitInterface))
	if err != nil {
		return fmt.Errorf("add match: %w", err)
	}
	// Without Subscribe, systemd sends unit signals to no bus client.
	obj := c.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	if err := obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Store(); err != nil {
		return fmt.Errorf("Manager.Subscribe: %w", err)
	}
	return nil
}

// watchers are the subscriptions fed from a session's own connection (on
// the private socket). changed runs in godbus's reader and never blocks.
type watchers struct {
	mu   sync.Mutex
	sets map[*nameSet]bool
}

func (w *watchers) add(s *nameSet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sets == nil {
		w.sets = map[*nameSet]bool{}
	}
	w.sets[s] = true
}

func (w *watchers) remove(s *nameSet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.sets, s)
}

func (w *watchers) changed(unit string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.sets {
		s.add(unit)
	}
}

// nameSet holds unit names waiting to be handed out, each once, in the
// order they first came. add never blocks: it runs in godbus's reader.
type nameSet struct {
	wake chan struct{} // one token: "a name was added"

	mu      sync.Mutex
	pending map[string]bool
	order   []string
}

func newNameSet() *nameSet {
	return &nameSet{wake: make(chan struct{}, 1), pending: map[string]bool{}}
}

func (s *nameSet) add(name string) {
	s.mu.Lock()
	if !s.pending[name] {
		s.pending[name] = true
		s.order = append(s.order, name)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take removes and returns the name waiting longest.
func (s *nameSet) take() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) == 0 {
		return "", false
	}
	n := s.order[0]
	delete(s.pending, n)
	s.order[0] = ""
	s.order = s.order[1:]
	return n, true
}

// coalesce hands the names of changed to out, each at most once while it
// waits, so a slow reader costs neither memory nor dropped changes. It
// returns when ctx ends or stop or gone closes.
func coalesce(ctx context.Context, stop, gone <-chan struct{}, changed *nameSet, out chan<- string) {
	for {
		next, ok := changed.take()
		var send chan<- string
		var wake <-chan struct{}
		if ok {
			send = out
		} else {
			wake = changed.wake
		}
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-gone:
			return
		case <-wake:
		case send <- next:
		}
	}
}

// unescapePath reverses systemd's object path escaping of a unit name
// (bus_label_escape): every byte outside [A-Za-z0-9] is written "_xx" in
// lower-case hex.
func unescapePath(label string) (string, bool) {
	if label == "_" || label == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(label) {
			return "", false
		}
		v, err := strconv.ParseUint(label[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}
