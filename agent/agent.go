package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-a1ce88ea/fleet/agent/systemd"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// ErrPresenceLost is returned by Run when the machine's presence ends (its
// lease expired or was revoked): states published under it are gone, and the
// caller registers again and starts a new Agent.
var ErrPresenceLost = errors.New("machine presence lost")

// Config wires an Agent to its machine.
type Config struct {
	// Registry reads this machine's schedule and unit bodies. Required.
	Registry *registry.Registry
	// Presence is this machine's registration; unit states are published
	// through it, bound to its lease. Required.
	Presence *registry.Presence
	// Systemd is this machine's systemd: a *systemd.Manager, or anything
	// else that behaves like one (see UnitManager). Required.
	Systemd UnitManager
	// Log receives state changes at Info, retries at Warn. Default: discard.
	// The agent adds unit= where it applies; the caller labels the logger
	// with the machine (fleetd labels everything it logs), so that a line
	// carries machine= once.
	Log *slog.Logger
	// AtMostOnceDefault applies to units that do not set [X-Fleet]
	// AtMostOnce= (fleet.conf agent_at_most_once_default): see lease.go.
	AtMostOnceDefault bool
}

// UnitManager is what the agent asks of systemd: *systemd.Manager, whose
// documentation says what each method must do. It is an interface so that
// the agent code can be run unchanged against something other than a real
// systemd (the scale benchmark runs thousands of agents in one process on an
// in-memory stand-in); fleetd always passes a *systemd.Manager.
type UnitManager interface {
	Subscribe(ctx context.Context) (<-chan string, error)
	UnitFiles() ([]string, error)
	WriteUnitFile(name, body string) (changed bool, err error)
	RemoveUnitFile(name string) error
	LinkUnitFiles(ctx context.Context, names ...string) error
	EnableUnitFiles(ctx context.Context, names ...string) (changed bool, err error)
	DisableUnitFiles(ctx context.Context, names ...string) error
	NeedDaemonReload(ctx context.Context, names ...string) (bool, error)
	Reload(ctx context.Context) error
	StartUnit(ctx context.Context, name string) (string, error)
	StopUnit(ctx context.Context, name string) (string, error)
	RestartUnit(ctx context.Context, name string) (string, error)
	ResetFailedUnit(ctx context.Context, name string) error
	UnitStates(ctx context.Context, names ...string) (map[string]systemd.UnitState, error)
	HostUnit(ctx context.Context, name string) (string, error)
}

var _ UnitManager = (*systemd.Manager)(nil)

// Stats counts what an agent's worker has done since New. The counters only
// grow; they may be read at any time, from any goroutine.
type Stats struct {
	// Wakeups is how many times the worker woke up to reconcile a batch.
	Wakeups uint64
	// Reconciled is how many unit names those batches held in all.
	Reconciled uint64
}

// Agent makes one machine's systemd match that machine's schedule. Create it
// with New and call Run once; a new Run needs a new Agent.
type Agent struct {
	reg      *registry.Registry
	presence *registry.Presence
	sd       UnitManager
	machine  string
	log      *slog.Logger
	queue    *queue

	atMostOnceDefault bool
	doubt             atomic.Bool // the lease is in doubt: at-most-once units stay stopped (see lease.go)

	wakeups, reconciled atomic.Uint64 // see Stats

	mu      sync.Mutex
	desired map[string]registry.Placement // this machine's schedule, as last read from etcd
	amo     map[string]amoEntry           // whether units run at most once, by name

	// Owned by the worker goroutine (see reconcile.go).
	bodies    map[string]string             // unit bodies by hash; immutable, so never stale
	applied   map[string]registry.Placement // the placement systemd was last made to follow
	restart   map[string]bool               // unit file rewritten since applied: restart if active
	published map[string]registry.UnitState // what etcd holds for each unit

	// Jobs run in goroutines of their own (see startJob).
	jobs     sync.WaitGroup
	slots    chan struct{} // bounds the jobs waited for at once
	jobsMu   sync.Mutex
	running  map[string]*job // by unit
	finished map[string]*job // ended, outcome not yet collected by the worker

	health healthChecks // [X-Fleet] HealthCheck= of units here (health.go)
}

// New returns an Agent for cfg. It panics if a required field is missing.
func New(cfg Config) *Agent {
	if cfg.Registry == nil || cfg.Presence == nil || cfg.Systemd == nil {
		panic("agent.New: Registry, Presence and Systemd are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		reg:       cfg.Registry,
		presence:  cfg.Presence,
		sd:        cfg.Systemd,
		machine:   cfg.Presence.Machine().ID,
		log:       cfg.Log,
		queue:     newQueue(),
		desired:   map[string]registry.Placement{},
		bodies:    map[string]string{},
		applied:   map[string]registry.Placement{},
		restart:   map[string]bool{},
		published: map[string]registry.UnitState{},
		slots:     make(chan struct{}, maxJobs),
		running:   map[string]*job{},
		finished:  map[string]*job{},

		atMostOnceDefault: cfg.AtMostOnceDefault,
		amo:               map[string]amoEntry{},
	}
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	return Stats{Wakeups: a.wakeups.Load(), Reconciled: a.reconciled.Load()}
}

// Run reconciles until ctx ends (it then returns nil) or the machine's
// presence ends (ErrPresenceLost). It returns an error at once if systemd's
// signals cannot be subscribed to.
//
// Run reads this machine's schedule and watches it, subscribes to systemd's
// signals, and feeds unit names to one worker, which reconciles them in
// batches: at start every scheduled unit, every unit file in the units
// directory and every unit with a published state; then every unit whose
// schedule entry changes and every scheduled unit systemd signals a change
// of. Nothing is reconciled before the schedule has been read once, and
// while etcd is unreachable the agent keeps the schedule it last read, so an
// outage neither stops nor restarts units. When Run returns, units keep
// running.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer a.queue.stop()
	// Subscribe before the first read of any unit, so no change falls
	// between a read and the subscription.
	subscribing := time.Now()
	sigs, err := a.sd.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("agent on %s: %w", a.machine, err)
	}
	a.log.Info("agent running: subscribed to systemd's signals", "took", time.Since(subscribing).Round(time.Millisecond))
	synced := make(chan struct{})
	clock := leaseClock{now: time.Now, poll: doubtPoll}
	doubt, _ := clock.check(a.presence.LastRenewed(), a.presence.TTL())
	a.doubt.Store(doubt)
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-a.presence.Done():
			cancel(ErrPresenceLost)
		case <-ctx.Done():
		}
	})
	wg.Go(func() { a.guardLease(ctx, clock) })
	wg.Go(func() { a.watchSchedule(ctx, synced) })
	wg.Go(func() { a.watchSystemd(ctx, sigs) })
	wg.Go(func() { a.work(ctx, synced) })
	wg.Go(func() { a.runHealthChecks(ctx) })
	wg.Wait()
	a.jobs.Wait() // they end with ctx; systemd goes on with what they asked
	if err := context.Cause(ctx); errors.Is(err, ErrPresenceLost) {
		return fmt.Errorf("agent on %s: %w", a.machine, err)
	}
	return nil
}

// watchSchedule keeps a.desired equal to this machine's schedule in etcd
// and queues the name of every entry that changes. It closes synced after
// the first complete read. On a watch error it reads the schedule again and
// watches from there; what it held meanwhile stays.
func (a *Agent) watchSchedule(ctx context.Context, synced chan<- struct{}) {
	failures := 0
	for ctx.Err() == nil {
		ps, rev, err := a.reg.Schedule(ctx, a.machine)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			a.log.Warn("read schedule", "err", err, "retry_in", backoff(failures))
			sleep(ctx, backoff(failures))
			continue
		}
		a.replaceDesired(ps)
		if synced != nil {
			close(synced)
			synced = nil
		}
		a.log.Debug("watching schedule", "rev", rev, "units", len(ps))
		for ev := range a.reg.WatchSchedule(ctx, a.machine, rev) {
			if ev.Err != nil {
				if ctx.Err() == nil {
					failures++
					a.log.Warn("schedule watch ended; reading the schedule again", "err", ev.Err, "rev", rev)
				}
				break
			}
			failures = 0
			rev = ev.Rev
			a.mu.Lock()
			if ev.Deleted {
				delete(a.desired, ev.Key)
			} else {
				a.desired[ev.Key] = ev.Value
			}
			a.mu.Unlock()
			a.queue.add(ev.Key)
		}
		sleep(ctx, backoff(failures))
	}
}

// replaceDesired installs a freshly read schedule and queues every unit of
// the old and new one: changes missed while the watch was down are found
// by reconciling, not by diffing.
func (a *Agent) replaceDesired(ps []registry.Placement) {
	next := make(map[string]registry.Placement, len(ps))
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		next[p.Name] = p
		names = append(names, p.Name)
	}
	a.mu.Lock()
	for n := range a.desired {
		if _, ok := next[n]; !ok {
			names = append(names, n)
		}
	}
	a.desired = next
	a.mu.Unlock()
	a.queue.add(names...)
}

// placement returns name's schedule entry.
func (a *Agent) placement(name string) (registry.Placement, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.desired[name]
	return p, ok
}

// scheduled returns the names of every scheduled unit.
func (a *Agent) scheduled() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.desired))
	for n := range a.desired {
		names = append(names, n)
	}
	return names
}

// watchSystemd queues every scheduled unit systemd signals a change of.
// Signals of other units are dropped: the agent publishes no state for
// them. If the subscription ends before ctx, it subscribes again and queues
// every scheduled unit, since changes may have been missed.
func (a *Agent) watchSystemd(ctx context.Context, sigs <-chan string) {
	failures := 0
	for {
		for name := range sigs {
			failures = 0
			if _, ok := a.placement(name); ok {
				a.queue.add(name)
			}
		}
		for {
			if ctx.Err() != nil {
				return
			}
			failures++
			var err error
			if sigs, err = a.sd.Subscribe(ctx); err == nil {
				break
			}
			a.log.Warn("subscribe to systemd signals", "err", err, "retry_in", backoff(failures))
			sleep(ctx, backoff(failures))
		}
		a.log.Warn("systemd signal subscription was lost and is renewed; re-reading every unit")
		a.queue.add(a.scheduled()...)
	}
}

// work seeds what was published before, queues every unit that may need
// unloading, and then reconciles batches until ctx ends. It starts only
// once the schedule has been read: before that every unit would look
// unscheduled, and be unloaded.
func (a *Agent) work(ctx context.Context, synced <-chan struct{}) {
	select {
	case <-synced:
	case <-ctx.Done():
		return
	}
	for failures := 1; ; failures++ {
		states, err := a.presence.PublishedStates(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			for _, s := range states {
				a.published[s.Name] = s
				a.queue.add(s.Name)
			}
			break
		}
		a.log.Warn("read published states", "err", err, "retry_in", backoff(failures))
		if !sleep(ctx, backoff(failures)) {
			return
		}
	}
	files, err := a.sd.UnitFiles()
	if err != nil {
		// Stale files stay until their names come up again.
		a.log.Error("list unit files", "err", err)
	}
	a.queue.add(files...)
	for {
		names, ok := a.queue.next(ctx)
		if !ok {
			return
		}
		a.wakeups.Add(1)
		a.reconciled.Add(uint64(len(names)))
		a.reconcile(ctx, names)
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
