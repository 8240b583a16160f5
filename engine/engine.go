package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Config configures an Engine.
type Config struct {
	Registry *registry.Registry
	// ID names this candidate in the election (the machine ID).
	ID string
	// LeaderTTL bounds how long a dead leader keeps the lead; default 3s.
	LeaderTTL time.Duration
	// ReconcileInterval is the period of the full re-read of etcd, a safety
	// net behind the watches; default 10s.
	ReconcileInterval time.Duration
	Log               *slog.Logger
}

// Engine campaigns for leadership and, while leading, schedules units.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	leading  bool
	unplaced map[string]string
}

// New returns an Engine; Run starts it.
func New(cfg Config) *Engine {
	if cfg.LeaderTTL <= 0 {
		cfg.LeaderTTL = 3 * time.Second
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, log: cfg.Log.With("component", "engine")}
}

// Leading reports whether this engine currently leads.
func (e *Engine) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Unplaced returns, for each unit that should run but fits nowhere, why
// (as of this engine's last pass as leader).
func (e *Engine) Unplaced() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.unplaced)
}

// Run campaigns and leads until ctx ends; it returns nil then. A lost
// leadership sends it back to campaigning.
func (e *Engine) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		lead, err := e.cfg.Registry.Campaign(ctx, e.cfg.ID, e.cfg.LeaderTTL)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			e.log.Warn("campaign failed; retrying", "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		e.setLeading(true)
		e.log.Info("became engine leader")
		err = e.lead(ctx, lead)
		e.setLeading(false)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = lead.Resign(rctx) // lets a successor take over now instead of after the TTL
		cancel()
		if ctx.Err() != nil {
			break
		}
		e.log.Warn("lost engine leadership", "err", err)
	}
	return nil
}

func (e *Engine) setLeading(v bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leading = v
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// model is the leader's view of etcd, kept current by watches.
type model struct {
	units      map[string]registry.Unit
	files      map[string]*unit.File // parsed bodies by hash
	badBodies  map[string]string     // hash -> parse error
	machines   map[string]machine.Machine
	placements map[[2]string]registry.Placement // (machine, unit)
}

// lead runs the leader loop until leadership or ctx is lost.
func (e *Engine) lead(ctx context.Context, lead *registry.Leadership) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lead.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	reg := e.cfg.Registry
	ticker := time.NewTicker(e.cfg.ReconcileInterval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		m, unitRev, machineRev, err := e.load(ctx)
		if err != nil {
			e.log.Warn("read cluster state", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		wctx, stopWatch := context.WithCancel(ctx)
		unitEvents := reg.WatchUnits(wctx, unitRev)
		machineEvents := reg.WatchMachines(wctx, machineRev)
		err = e.follow(wctx, lead, m, unitEvents, machineEvents, ticker.C)
		stopWatch()
		if errors.Is(err, registry.ErrNotLeader) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			e.log.Warn("resync after error", "err", err)
		}
	}
	return ctx.Err()
}

// follow applies watch events to m and reconciles after each burst of
// events, until a watch fails, the ticker asks for a full resync (returns
// nil), or the plan cannot be written.
func (e *Engine) follow(ctx context.Context, lead *registry.Leadership, m *model,
	unitEvents <-chan registry.Event[registry.Unit], machineEvents <-chan registry.Event[machine.Machine], tick <-chan time.Time) error {
	if err := e.reconcile(ctx, lead, m); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			return nil
		case ev, ok := <-unitEvents:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			e.applyUnit(ctx, m, ev)
		case ev, ok := <-machineEvents:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			applyMachine(m, ev)
		}
		// Take whatever else has already arrived before planning, so a burst
		// of submissions becomes one plan and a few batched transactions.
		if err := e.drain(ctx, m, unitEvents, machineEvents); err != nil {
			return err
		}
		if err := e.reconcile(ctx, lead, m); err != nil {
			return err
		}
	}
}

func (e *Engine) drain(ctx context.Context, m *model, unitEvents <-chan registry.Event[registry.Unit], machineEvents <-chan registry.Event[machine.Machine]) error {
	for {
		select {
		case ev, ok := <-unitEvents:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			e.applyUnit(ctx, m, ev)
		case ev, ok := <-machineEvents:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			applyMachine(m, ev)
		default:
			return nil
		}
	}
}

func watchErr(err error) error {
	if err == nil {
		return errors.New("watch closed")
	}
	return err
}

func (e *Engine) applyUnit(ctx context.Context, m *model, ev registry.Event[registry.Unit]) {
	if ev.Deleted {
		delete(m.units, ev.Key)
		return
	}
	u := ev.Value
	m.units[u.Name] = u
	if _, ok := m.files[u.Hash]; ok {
		return
	}
	body, err := e.cfg.Registry.Body(ctx, u.Hash)
	if err != nil {
		m.badBodies[u.Hash] = fmt.Sprintf("unit body %s unreadable: %v", u.Hash, err)
		return
	}
	e.parseBody(m, u.Hash, body)
}

func (e *Engine) parseBody(m *model, hash, body string) {
	f, err := unit.ParseString(body)
	if err != nil {
		m.badBodies[hash] = err.Error()
		return
	}
	delete(m.badBodies, hash)
	m.files[hash] = f
}

func applyMachine(m *model, ev registry.Event[machine.Machine]) {
	if ev.Deleted {
		delete(m.machines, ev.Key)
		return
	}
	m.machines[ev.Key] = ev.Value
}

// load reads everything the leader needs in four range requests.
func (e *Engine) load(ctx context.Context) (*model, int64, int64, error) {
	reg := e.cfg.Registry
	units, unitRev, err := reg.Units(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	bodies, err := reg.Bodies(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	machines, machineRev, err := reg.Machines(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	placements, _, err := reg.Placements(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	m := &model{
		units:      make(map[string]registry.Unit, len(units)),
		files:      make(map[string]*unit.File, len(bodies)),
		badBodies:  map[string]string{},
		machines:   make(map[string]machine.Machine, len(machines)),
		placements: make(map[[2]string]registry.Placement, len(placements)),
	}
	for _, u := range units {
		m.units[u.Name] = u
	}
	for h, b := range bodies {
		e.parseBody(m, h, b)
	}
	for _, u := range units {
		if _, ok := m.files[u.Hash]; !ok && m.badBodies[u.Hash] == "" {
			m.badBodies[u.Hash] = fmt.Sprintf("unit body %s is missing", u.Hash)
		}
	}
	for _, mc := range machines {
		m.machines[mc.ID] = mc
	}
	for _, p := range placements {
		m.placements[[2]string{p.Machine, p.Name}] = p
	}
	return m, unitRev, machineRev, nil
}

// snapshot turns the model into the scheduler's input. Units whose body does
// not parse are reported unplaced and left out.
func (e *Engine) snapshot(m *model) (Snapshot, map[string]string) {
	bad := map[string]string{}
	s := Snapshot{Machines: slices.Collect(maps.Values(m.machines))}
	for _, u := range m.units {
		f, ok := m.files[u.Hash]
		if !ok {
			bad[u.Name] = m.badBodies[u.Hash]
			continue
		}
		x, _, err := f.FleetOptions(u.Name)
		if err != nil {
			bad[u.Name] = err.Error()
			continue
		}
		s.Units = append(s.Units, Unit{Name: u.Name, Hash: u.Hash, State: u.DesiredState, Fleet: x})
	}
	// A unit whose body the engine cannot read right now keeps whatever
	// placement it has: its placements are hidden from the scheduler rather
	// than unscheduled.
	for _, p := range m.placements {
		if _, isBad := bad[p.Name]; !isBad {
			s.Placements = append(s.Placements, p)
		}
	}
	return s, bad
}

func (e *Engine) reconcile(ctx context.Context, lead *registry.Leadership, m *model) error {
	start := time.Now()
	snap, bad := e.snapshot(m)
	plan := Schedule(snap)
	for name, why := range bad {
		plan.Unplaced[name] = why
	}
	e.mu.Lock()
	e.unplaced = plan.Unplaced
	e.mu.Unlock()
	if len(plan.Ops) == 0 {
		return nil
	}
	n, err := e.cfg.Registry.ApplyPlan(ctx, lead, plan.Ops)
	for _, op := range plan.Ops[:n] {
		k := [2]string{op.Placement.Machine, op.Placement.Name}
		if op.Put {
			m.placements[k] = op.Placement
		} else {
			delete(m.placements, k)
		}
	}
	if err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	e.log.Info("plan written", "ops", n, "unplaced", len(plan.Unplaced), "took", time.Since(start))
	return nil
}
