package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"runtime"
	"sort"
	"strings"
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
	// Version is this engine's version (fleetd's). The highest version that
	// led the cluster is kept in etcd; an engine older than it never leads.
	// A version that is not a semantic version ("dev", a commit hash, even
	// one of digits only) is compared with nothing: such an engine may lead
	// and is never recorded. A recorded version that does not parse counts
	// as none. registry.ClearEngineVersion clears a wrong record.
	Version string
	// LeaderTTL bounds how long a dead leader keeps the lead; default 2s:
	// etcd expires a lease up to a TTL after its last keepalive, checking
	// every 500 ms, so 2 s keeps a takeover under 3 s.
	LeaderTTL time.Duration
	// ReconcileInterval is the period of the full re-read of etcd, a safety
	// net behind the watches; default 10s. An engine refused for its version
	// looks again at this period.
	ReconcileInterval time.Duration
	Log               *slog.Logger
	// OnPlan, when set, is called after each plan is written, with how long
	// deciding and writing it took and how many placements it wrote or
	// deleted (fleetd's metrics). It runs on the leader loop: keep it cheap.
	OnPlan func(took time.Duration, placementOps int)
	// GCInterval is the period of the leader's etcd hygiene: collect unit
	// bodies nothing refers to, drop the schedules of machines absent for
	// MachineGCAfter, compact etcd's history (see keepClean); default 5m,
	// negative to turn it off.
	GCInterval time.Duration
	// MachineGCAfter bounds how long the schedule keeps placements for an
	// absent machine (global and MachineID-pinned units keep theirs on
	// purpose); default 24h.
	MachineGCAfter time.Duration
	// BodyGrace is how long a body must stay unreferenced, seen by two
	// passes this far apart, before it is collected; default 1m.
	BodyGrace time.Duration
	// CompactRetention is how much of etcd's history the leader keeps when
	// it compacts; default 15m, above etcd's 10-minute watch progress
	// notifications so that a quiet watch resumes after a reconnect.
	CompactRetention time.Duration
	// AtMostOnceDefault applies to units that do not set [X-Fleet]
	// AtMostOnce= (fleet.conf agent_at_most_once_default; every machine
	// must have the same).
	AtMostOnceDefault bool
	// AtMostOnceMargin is how long after a machine left (its lease key
	// was deleted) its at-most-once units are placed elsewhere; default
	// 2s. Its agent began stopping them at least half a TTL before the
	// lease expired, so their stop jobs get TTL/2 + margin to finish.
	AtMostOnceMargin time.Duration
	// Placement ranks the machines a unit fits on (fleet.conf placement=):
	// PolicySpread (default) or PolicyBinpack.
	Placement Policy
	// Standby keeps this engine's model current while another leads (see
	// standby.go), so that a takeover plans at once instead of reading and
	// planning the whole cluster. It costs the memory of the model and a
	// watch of every unit, machine, placement and reason.
	Standby bool
}

// Engine campaigns for leadership and, while leading, schedules units.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	leading  bool
	unplaced map[string]string

	countReq chan chan Counts // Counts asks the leader loop, which owns the model

	refusedFor string // cluster version last logged as refusing this engine
	warnedFor  string // cluster version last logged as not comparable
}

// DefaultAtMostOnceMargin is Config.AtMostOnceMargin's default.
const DefaultAtMostOnceMargin = 2 * time.Second

// errTooOld is why an engine does not lead: a newer one led before.
var errTooOld = errors.New("engine version is older than the newest engine that led the cluster")

// New returns an Engine; Run starts it.
func New(cfg Config) *Engine {
	if cfg.LeaderTTL <= 0 {
		cfg.LeaderTTL = 2 * time.Second
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.AtMostOnceMargin <= 0 {
		cfg.AtMostOnceMargin = DefaultAtMostOnceMargin
	}
	cfg.setHygieneDefaults()
	return &Engine{cfg: cfg, log: cfg.Log.With("component", "engine"), unplaced: map[string]string{}, countReq: make(chan chan Counts)}
}

// Leading reports whether this engine currently leads.
func (e *Engine) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Unplaced returns, for each unit that should run but fits nowhere, why (as
// of this engine's last decision as leader). The leader also records the
// reasons in etcd, where every fleetd reads them (registry.Unplaced).
func (e *Engine) Unplaced() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.unplaced)
}

// Run campaigns and leads until ctx ends; it returns nil then. A lost
// leadership sends it back to campaigning. While the cluster's recorded
// engine version is newer than this engine's, it does not campaign.
func (e *Engine) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	var sb *standby
	for ctx.Err() == nil {
		if !e.eligible(ctx) {
			sleep(ctx, e.cfg.ReconcileInterval)
			continue
		}
		stopStandby := e.startStandby(ctx, &sb)
		lead, err := e.cfg.Registry.Campaign(ctx, e.cfg.ID, e.cfg.LeaderTTL)
		stopStandby()
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
		if err := e.claimVersion(ctx, lead); err != nil {
			e.resign(ctx, lead)
			if !errors.Is(err, errTooOld) && ctx.Err() == nil {
				e.log.Warn("record engine version; resigned", "err", err)
				sleep(ctx, time.Second)
			}
			continue // eligible says why, and waits
		}
		e.setLeading(true)
		e.log.Info("became engine leader", "version", e.cfg.Version)
		err = e.lead(ctx, lead, sb)
		sb = nil // the model is the leader's now, ahead of etcd if a write failed
		e.setLeading(false)
		e.resign(ctx, lead)
		if ctx.Err() != nil {
			break
		}
		e.log.Warn("lost engine leadership", "err", err)
	}
	return nil
}

// resign lets a successor take over now instead of after the TTL.
func (e *Engine) resign(ctx context.Context, lead *registry.Leadership) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = lead.Resign(rctx) // best effort: the session's TTL ends it anyway
}

// eligible reports whether this engine may campaign: no newer engine has led
// the cluster. An unreadable version record does not stop it; claimVersion
// checks again once it leads.
func (e *Engine) eligible(ctx context.Context) bool {
	stored, _, err := e.cfg.Registry.EngineVersion(ctx)
	if err != nil {
		return true
	}
	if c, ok := compareVersions(e.cfg.Version, stored); !ok || c >= 0 {
		return true
	}
	if stored != e.refusedFor {
		e.refusedFor = stored
		e.log.Error("this engine will not lead: a newer engine has led the cluster; upgrade this fleetd (or set disable_engine)",
			"version", e.cfg.Version, "cluster_engine_version", stored)
	}
	return false
}

// claimVersion records this engine's version as the cluster's, fenced by
// lead, unless a newer one is recorded: then it returns errTooOld.
func (e *Engine) claimVersion(ctx context.Context, lead *registry.Leadership) error {
	reg := e.cfg.Registry
	for {
		stored, rev, err := reg.EngineVersion(ctx)
		if err != nil {
			return err
		}
		_, mineOK := parseVersion(e.cfg.Version)
		_, storedOK := parseVersion(stored)
		if !mineOK {
			if storedOK && stored != e.warnedFor {
				e.warnedFor = stored
				e.log.Warn("engine version cannot be compared with the cluster's; leading anyway",
					"version", e.cfg.Version, "cluster_engine_version", stored)
			}
			return nil
		}
		if storedOK {
			c, _ := compareVersions(e.cfg.Version, stored)
			if c < 0 {
				return fmt.Errorf("%w (%s < %s)", errTooOld, e.cfg.Version, stored)
			}
			if c == 0 {
				return nil
			}
		}
		err = reg.SetEngineVersion(ctx, lead, e.cfg.Version, rev)
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err == nil {
			e.log.Info("recorded cluster engine version", "version", e.cfg.Version, "previous", stored)
		}
		return err
	}
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

// lead runs the leader loop until leadership or ctx is lost: read the
// cluster, follow the watches deciding after each burst of events, and read
// everything again every ReconcileInterval (feeding the scheduler only what
// differs) or after a failed watch or write.
func (e *Engine) lead(ctx context.Context, lead *registry.Leadership, sb *standby) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	go func() {
		select {
		case <-lead.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := e.ensureIndex(ctx, lead); err != nil {
		return err
	}
	if e.cfg.GCInterval > 0 {
		wg.Go(func() { e.keepClean(ctx, lead) })
	}
	wg.Go(func() { e.runRollouts(ctx, lead) })
	reg := e.cfg.Registry
	ticker := time.NewTicker(e.cfg.ReconcileInterval)
	defer ticker.Stop()
	feed := newDrainFeed(reg, e.log)
	wg.Go(func() { feed.run(ctx) })
	select {
	case <-feed.ready: // the first plan must know which machines are draining
	case <-ctx.Done():
		return ctx.Err()
	}
	// fresh is the state a term starts from without a standby's model (or
	// after a takeover from one failed): sync reads everything into it.
	fresh := func() *leaderState {
		st := e.newState()
		st.dr.feed = feed
		return st
	}
	st := fresh()
	for ctx.Err() == nil {
		var unitRev, machineRev int64
		var err error
		if sb != nil {
			st = sb.st
			st.dr.feed = feed
			if unitRev, machineRev, err = e.takeOver(ctx, lead, sb); err != nil {
				st = fresh()
			}
			sb = nil
		} else {
			unitRev, machineRev, err = e.sync(ctx, lead, &st)
		}
		if errors.Is(err, registry.ErrNotLeader) {
			return err
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("read cluster state", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		wctx, stopWatch := context.WithCancel(ctx)
		unitEvents := reg.WatchUnits(wctx, unitRev)
		machineEvents := reg.WatchMachines(wctx, machineRev)
		// Every body a unit read so far names was read after the units.
		st.bodyRev, st.unitSeen = unitRev, unitRev
		bodyEvents := reg.WatchBodies(wctx, unitRev)
		err = e.follow(wctx, lead, st, watches{unitEvents, machineEvents, bodyEvents}, ticker.C)
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

// ensureIndex completes the unit->placement index before this term writes
// the schedule: a cluster last led by an engine without it (or an index left
// inconsistent) is rebuilt; until then API readers list the schedule. It
// retries until it succeeds, the lead is lost (ErrNotLeader) or ctx ends.
func (e *Engine) ensureIndex(ctx context.Context, lead *registry.Leadership) error {
	for {
		rebuilt, err := e.cfg.Registry.EnsurePlacementIndex(ctx, lead)
		if err == nil {
			if rebuilt {
				e.log.Info("rebuilt the unit->placement index")
			}
			return nil
		}
		if errors.Is(err, registry.ErrNotLeader) || ctx.Err() != nil {
			return err
		}
		e.log.Warn("placement index; retrying", "err", err)
		sleep(ctx, time.Second)
	}
}

// leaderState is what one leadership term knows: the scheduler, and what
// the engine needs to feed it from etcd.
type leaderState struct {
	sched    *Scheduler
	units    map[string]registry.Unit
	bodies   map[string]*fleetBody // by hash: [X-Fleet] options or why not
	refs     map[string]int        // hash -> units using it
	invalid  map[string]bool       // units given to the scheduler as Invalid
	machines map[string]machine.Machine
	reasons  map[string]string        // unplaced reasons as stored in etcd
	pending  map[string]registry.Unit // units waiting for their body
	// The bodies come on a watch of P/bodies/ (a create writes a unit and
	// its body at one revision): bodyRev is the last body event's
	// revision, unitSeen the last unit event's (see awaitBodies).
	bodyRev, unitSeen int64

	atMostOnceDefault bool
	leftAt            map[string]time.Time // absent machine -> when this term saw its held placements (Scheduler.Held)

	dr drainRun // drains and moves (drain_leader.go)
}

// fleetBody is a unit body reduced to what scheduling needs: its [X-Fleet]
// options, unexpanded (specifiers depend on the unit name), or why the body
// does not parse. Bodies are immutable, so a parse error is final.
type fleetBody struct {
	file *unit.File
	err  string
}

func parseFleetBody(text string) *fleetBody {
	f, err := unit.ParseString(text)
	if err != nil {
		return &fleetBody{err: err.Error()}
	}
	var opts []unit.Option
	for _, o := range f.Options {
		if o.Section == "X-Fleet" || unit.IsResourceOption(o) {
			opts = append(opts, o)
		}
	}
	return &fleetBody{file: unit.NewFile(opts)}
}

func newLeaderState() *leaderState {
	return &leaderState{
		units:    map[string]registry.Unit{},
		bodies:   map[string]*fleetBody{},
		refs:     map[string]int{},
		invalid:  map[string]bool{},
		machines: map[string]machine.Machine{},
		reasons:  map[string]string{},
		pending:  map[string]registry.Unit{},
		leftAt:   map[string]time.Time{},
	}
}

func (st *leaderState) setRecord(u registry.Unit) {
	old, ok := st.units[u.Name]
	if !ok || old.Hash != u.Hash {
		if ok {
			st.unref(old.Hash)
		}
		st.refs[u.Hash]++
	}
	st.units[u.Name] = u
}

func (st *leaderState) removeRecord(name string) {
	if old, ok := st.units[name]; ok {
		st.unref(old.Hash)
	}
	delete(st.units, name)
	delete(st.invalid, name)
	delete(st.pending, name)
}

func (st *leaderState) unref(hash string) {
	st.refs[hash]--
	if st.refs[hash] <= 0 {
		delete(st.refs, hash)
		delete(st.bodies, hash)
	}
}

// schedUnit turns a unit record into what the scheduler takes. A unit whose
// body or options cannot be used is Invalid: it keeps its placements and is
// placed nowhere new, with the reason users will see.
func (st *leaderState) schedUnit(u registry.Unit) Unit {
	su := Unit{Name: u.Name, Hash: u.Hash, State: u.DesiredState, Rollout: u.Rollout}
	b, ok := st.bodies[u.Hash]
	switch {
	case !ok:
		su.Invalid = fmt.Sprintf("unit body %s is missing", u.Hash)
	case b.err != "":
		su.Invalid = b.err
	default:
		x, _, err := b.file.FleetOptions(u.Name)
		if err == nil {
			err = x.Validate(u.Name)
		}
		if err != nil {
			su.Invalid = "[X-Fleet] options refused: " + strings.ReplaceAll(err.Error(), "\n", "; ")
		} else {
			su.Fleet = x
			su.AtMostOnce = x.RunsAtMostOnce(st.atMostOnceDefault)
		}
	}
	if su.Invalid != "" {
		st.invalid[u.Name] = true
	} else {
		delete(st.invalid, u.Name)
	}
	return su
}

// bulkBodies is how many missing bodies make one range read of all bodies
// cheaper than reading them 128 to a request.
const bulkBodies = 1024

// fetchBodies reads and parses the bodies of hashes not known yet. A body
// that is not there is left unknown (its units are Invalid) and read again
// at the next resync.
func (e *Engine) fetchBodies(ctx context.Context, st *leaderState, hashes map[string]bool) error {
	var missing []string
	for h := range hashes {
		if _, ok := st.bodies[h]; !ok {
			missing = append(missing, h)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	var (
		got map[string]string
		err error
	)
	if len(missing) > bulkBodies && len(missing) > len(st.bodies) {
		// Mostly unknown (a new term, a standby starting): one read of
		// all is cheaper; a burst among many known bodies reads its own.
		got, err = e.cfg.Registry.Bodies(ctx)
	} else {
		got, err = e.cfg.Registry.BodiesOf(ctx, missing)
	}
	if err != nil {
		return err
	}
	st.parseBodies(hashes, got)
	return nil
}

// parseBodies parses the bodies of hashes not known yet found in texts;
// many are parsed on every core (at a new term, 100,000 bodies took half a
// second of one).
func (st *leaderState) parseBodies(hashes map[string]bool, texts map[string]string) {
	var missing []string
	for h := range hashes {
		if _, known := st.bodies[h]; !known {
			if _, ok := texts[h]; ok {
				missing = append(missing, h)
			}
		}
	}
	parsed := make([]*fleetBody, len(missing))
	workers := 1
	if len(missing) > bulkBodies {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(missing); i += workers {
				parsed[i] = parseFleetBody(texts[missing[i]])
			}
		})
	}
	wg.Wait()
	for i, h := range missing {
		st.bodies[h] = parsed[i]
	}
}

// newState is an empty leader state with this engine's settings.
func (e *Engine) newState() *leaderState {
	st := newLeaderState()
	st.atMostOnceDefault = e.cfg.AtMostOnceDefault
	return st
}

// model builds a new term's scheduler (a full pass) from the cluster read
// in c, keeping its unit records and machines; the bodies of c's units are
// already known.
func (st *leaderState) model(c registry.Cluster, policy Policy) {
	snap := Snapshot{Machines: c.Machines, Placements: c.Placements, Units: make([]Unit, 0, len(c.Units)), Policy: policy}
	for _, u := range c.Units {
		st.setRecord(u)
		snap.Units = append(snap.Units, st.schedUnit(u))
	}
	for _, m := range c.Machines {
		st.machines[m.ID] = m
	}
	st.sched = NewScheduler(snap)
}

// sync reads the whole cluster. For a new term it builds the scheduler
// (a full pass); afterwards it feeds the scheduler only what differs from
// its model, so a resync of an unchanged cluster decides nothing. Either
// way it then writes what the scheduler decides and brings the stored
// unplaced reasons in line.
func (e *Engine) sync(ctx context.Context, lead *registry.Leadership, stp **leaderState) (unitRev, machineRev int64, err error) {
	start := time.Now()
	st := *stp
	if st == nil {
		st = e.newState()
	}
	// A new term knows no body: it reads them all with the rest. A resync
	// reads the few it does not know.
	c, err := e.cfg.Registry.ReadCluster(ctx, st.sched == nil)
	if err != nil {
		return 0, 0, err
	}
	units, machines, placements, reasons := c.Units, c.Machines, c.Placements, c.Unplaced
	unitRev, machineRev = c.Rev, c.Rev
	read := time.Since(start)
	hashes := make(map[string]bool, len(units))
	for _, u := range units {
		hashes[u.Hash] = true
	}
	if c.Bodies != nil {
		st.parseBodies(hashes, c.Bodies)
	} else if err := e.fetchBodies(ctx, st, hashes); err != nil {
		return 0, 0, err
	}
	parsed := time.Since(start)
	if st.sched == nil {
		st.model(c, e.cfg.Placement)
		*stp = st
	} else {
		st.resync(units, machines, placements)
		st.sched.RefreshReasons()
	}
	st.pending = map[string]registry.Unit{}
	modelled := time.Since(start)
	st.stepDrains(time.Now())
	plan := st.sched.Plan()
	want := st.sched.Unplaced()
	st.reasons = reasons
	e.mu.Lock()
	e.unplaced = maps.Clone(want)
	e.mu.Unlock()
	e.log.Debug("cluster read", "units", len(units), "machines", len(machines), "placements", len(placements),
		"read", read, "bodies_parsed", parsed, "modelled", modelled, "planned", time.Since(start))
	if err := e.write(ctx, lead, st, plan.Ops, reasonDiff(reasons, want), start); err != nil {
		return 0, 0, err
	}
	e.finishDrains(ctx, lead, st)
	return unitRev, machineRev, nil
}

// resync feeds the scheduler the differences between its model and etcd.
func (st *leaderState) resync(units []registry.Unit, machines []machine.Machine, placements []registry.Placement) {
	s := st.sched
	fm := make(map[string]bool, len(machines))
	for _, m := range machines {
		fm[m.ID] = true
		if old, ok := st.machines[m.ID]; !ok || !reflect.DeepEqual(old, m) {
			st.machines[m.ID] = m
			s.SetMachine(m)
		}
	}
	for _, id := range sortedKeys(st.machines) {
		if !fm[id] {
			delete(st.machines, id)
			s.RemoveMachine(id)
		}
	}
	fu := make(map[string]bool, len(units))
	for _, u := range units {
		fu[u.Name] = true
		old, ok := st.units[u.Name]
		if ok && old.Hash == u.Hash && old.DesiredState == u.DesiredState && old.Rollout.Equal(u.Rollout) && !st.invalid[u.Name] {
			continue
		}
		st.setRecord(u)
		s.SetUnit(st.schedUnit(u))
	}
	for _, name := range sortedKeys(st.units) {
		if !fu[name] {
			st.removeRecord(name)
			s.RemoveUnit(name)
		}
	}
	fp := make(map[[2]string]bool, len(placements))
	for _, p := range placements {
		fp[[2]string{p.Machine, p.Name}] = true
		if cur, ok := s.placement(p.Machine, p.Name); !ok || cur != p {
			s.SetPlacement(p)
		}
	}
	for _, p := range s.placements() {
		if !fp[[2]string{p.Machine, p.Name}] {
			s.RemovePlacement(p.Machine, p.Name)
		}
	}
}

// follow applies watch events to the scheduler and decides after each
// burst of events, until a watch fails, the ticker asks for a resync
// (returns nil), or a decision cannot be written.
func (e *Engine) follow(ctx context.Context, lead *registry.Leadership, st *leaderState, w watches, tick <-chan time.Time) error {
	for {
		release, stop := st.releaseTimer(time.Now(), e.cfg.AtMostOnceMargin)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-tick:
			stop()
			return nil
		case reply := <-e.countReq:
			stop()
			reply <- st.counts()
			continue
		case <-release:
			if err := e.release(ctx, lead, st); err != nil {
				return err
			}
		case <-st.drainKick():
		case ev, ok := <-w.units:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.unitEvent(ev)
		case ev, ok := <-w.machines:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.machineEvent(ev)
		case ev, ok := <-w.bodies:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.bodyEvent(ev)
			if len(st.pending) == 0 { // a body ahead of its unit
				stop()
				continue
			}
		}
		stop()
		start := time.Now()
		// Take whatever else has already arrived before deciding, so a burst
		// of submissions becomes one plan and a few batched transactions.
		if err := drain(st, w); err != nil {
			return err
		}
		if err := st.awaitBodies(ctx, w.bodies); err != nil {
			return err
		}
		if err := e.fetchPending(ctx, st); err != nil {
			return err
		}
		if err := e.decide(ctx, lead, st, start); err != nil {
			return err
		}
	}
}

// releaseTimer notes when this term first saw each machine with held
// placements (a machine that left, or an absent one found holding them at
// the start of the term: both no earlier than its lease expired) and returns
// a channel that fires when the first of them is due for release, margin
// later; nil when none is. stop releases the timer.
func (st *leaderState) releaseTimer(now time.Time, margin time.Duration) (<-chan time.Time, func()) {
	ids := st.sched.Held()
	held := make(map[string]bool, len(ids))
	var next time.Time
	for _, id := range ids {
		held[id] = true
		at, ok := st.leftAt[id]
		if !ok {
			at = now
			st.leftAt[id] = at
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	for id := range st.leftAt {
		if !held[id] {
			delete(st.leftAt, id)
		}
	}
	if next.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(next.Add(margin).Sub(now))
	return t.C, func() { t.Stop() }
}

// release deletes the held placements of every machine that left at least
// a margin ago, fenced by its absence, and places their units elsewhere.
// The machine's agent stopped them before its lease could expire; the
// margin gives their stop jobs time to end.
func (e *Engine) release(ctx context.Context, lead *registry.Leadership, st *leaderState) error {
	start := time.Now()
	for _, id := range sortedKeys(st.leftAt) {
		if start.Sub(st.leftAt[id]) < e.cfg.AtMostOnceMargin {
			continue
		}
		names := st.sched.HeldOn(id)
		err := e.cfg.Registry.ReleaseHeld(ctx, lead, id, names)
		if errors.Is(err, registry.ErrMachinePresent) {
			// Its join is on the way through the watch and restores them;
			// meanwhile they wait another margin.
			e.log.Info("machine is back: its at-most-once units stay", "machine", id, "units", len(names))
			delete(st.leftAt, id)
			continue
		}
		if err != nil {
			return err
		}
		e.log.Info("released at-most-once units of a machine that left", "machine", id, "units", len(names),
			"left", st.leftAt[id].Format(time.RFC3339Nano))
		st.sched.Release(id, names)
	}
	return e.decide(ctx, lead, st, start)
}

// watches are a leader's watches.
type watches struct {
	units    <-chan registry.Event[registry.Unit]
	machines <-chan registry.Event[machine.Machine]
	bodies   <-chan registry.Event[string]
}

func drain(st *leaderState, w watches) error {
	for {
		select {
		case ev, ok := <-w.units:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.unitEvent(ev)
		case ev, ok := <-w.machines:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.machineEvent(ev)
		case ev, ok := <-w.bodies:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.bodyEvent(ev)
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

func (st *leaderState) unitEvent(ev registry.Event[registry.Unit]) {
	st.unitSeen = max(st.unitSeen, ev.Rev)
	if ev.Deleted {
		st.removeRecord(ev.Key)
		st.sched.RemoveUnit(ev.Key)
		return
	}
	u := ev.Value
	st.setRecord(u)
	if _, ok := st.bodies[u.Hash]; !ok {
		st.pending[u.Name] = u // body read in one batch after the burst
		return
	}
	delete(st.pending, u.Name)
	st.sched.SetUnit(st.schedUnit(u))
}

func (st *leaderState) machineEvent(ev registry.Event[machine.Machine]) {
	if ev.Deleted {
		delete(st.machines, ev.Key)
		st.sched.RemoveMachine(ev.Key)
		return
	}
	if old, ok := st.machines[ev.Key]; ok && reflect.DeepEqual(old, ev.Value) {
		return
	}
	st.machines[ev.Key] = ev.Value
	st.sched.SetMachine(ev.Value)
}

// fetchPending reads the bodies units of the last burst need, in batches,
// and hands those units to the scheduler.
func (e *Engine) fetchPending(ctx context.Context, st *leaderState) error {
	if len(st.pending) == 0 {
		return nil
	}
	hashes := make(map[string]bool, len(st.pending))
	for _, u := range st.pending {
		hashes[u.Hash] = true
	}
	if err := e.fetchBodies(ctx, st, hashes); err != nil {
		return err
	}
	for _, name := range sortedKeys(st.pending) {
		st.sched.SetUnit(st.schedUnit(st.pending[name]))
	}
	clear(st.pending)
	return nil
}

// bodyWait bounds how long a burst waits for the bodies of its new units
// on the bodies' watch before it reads those still missing. A body put
// with its unit arrives within moments on the same stream; one that was
// not (a unit naming a body stored earlier, or written apart) is read.
const bodyWait = 100 * time.Millisecond

// bodyEvent keeps a body that arrives (parsed once: bodies are immutable)
// and forgets one collected that no unit names. A body may arrive before
// its unit (the watches deliver in no common order) and is kept for it; one
// whose units were given to the scheduler without it (missing when read)
// has them given again.
func (st *leaderState) bodyEvent(ev registry.Event[string]) {
	st.bodyRev = max(st.bodyRev, ev.Rev)
	if ev.Deleted {
		if st.refs[ev.Key] == 0 {
			delete(st.bodies, ev.Key)
		}
		return
	}
	if _, ok := st.bodies[ev.Key]; ok {
		return
	}
	st.bodies[ev.Key] = parseFleetBody(ev.Value)
	if st.refs[ev.Key] == 0 {
		return
	}
	// Units given without their body are Invalid: few, unlike the units
	// waiting in pending for the body that has just arrived.
	for name := range st.invalid {
		if u := st.units[name]; u.Hash == ev.Key {
			st.pending[name] = u
		}
	}
}

// awaitBodies waits, up to bodyWait, until the bodies' watch has delivered
// every body put up to the last unit event applied, or no unit waits for
// its body any more.
func (st *leaderState) awaitBodies(ctx context.Context, bodies <-chan registry.Event[string]) error {
	if st.bodyRev >= st.unitSeen || !st.missingBodies() {
		return nil
	}
	t := time.NewTimer(bodyWait)
	defer t.Stop()
	timeout := t.C
	for st.bodyRev < st.unitSeen {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return nil
		case ev, ok := <-bodies:
			if !ok || ev.Err != nil {
				return watchErr(ev.Err)
			}
			st.bodyEvent(ev)
		}
	}
	return nil
}

// missingBodies reports whether a unit waits for a body not known yet.
func (st *leaderState) missingBodies() bool {
	for _, u := range st.pending {
		if _, ok := st.bodies[u.Hash]; !ok {
			return true
		}
	}
	return false
}

// decide plans what the events touched and writes it.
func (e *Engine) decide(ctx context.Context, lead *registry.Leadership, st *leaderState, start time.Time) error {
	st.stepDrains(start)
	plan := st.sched.Plan()
	var rops []registry.UnplacedOp
	for _, name := range sortedKeys(plan.Unplaced) {
		if why, ok := st.reasons[name]; !ok || why != plan.Unplaced[name] {
			rops = append(rops, registry.UnplacedOp{Name: name, Reason: plan.Unplaced[name]})
		}
	}
	for _, name := range plan.Cleared {
		if _, ok := st.reasons[name]; ok {
			rops = append(rops, registry.UnplacedOp{Name: name})
		}
	}
	e.mu.Lock()
	maps.Copy(e.unplaced, plan.Unplaced)
	for _, name := range plan.Cleared {
		delete(e.unplaced, name)
	}
	e.mu.Unlock()
	if err := e.write(ctx, lead, st, plan.Ops, rops, start); err != nil {
		return err
	}
	e.finishDrains(ctx, lead, st)
	return nil
}

// reasonDiff returns the writes that turn the stored reasons into want.
func reasonDiff(stored, want map[string]string) []registry.UnplacedOp {
	var ops []registry.UnplacedOp
	for _, name := range sortedKeys(want) {
		if why, ok := stored[name]; !ok || why != want[name] {
			ops = append(ops, registry.UnplacedOp{Name: name, Reason: want[name]})
		}
	}
	for _, name := range sortedKeys(stored) {
		if _, ok := want[name]; !ok {
			ops = append(ops, registry.UnplacedOp{Name: name})
		}
	}
	return ops
}

// write applies a plan and reason changes in fenced batches. On error the
// scheduler's model is ahead of etcd; the caller resyncs.
func (e *Engine) write(ctx context.Context, lead *registry.Leadership, st *leaderState, ops []registry.PlanOp, rops []registry.UnplacedOp, start time.Time) error {
	if len(ops) == 0 && len(rops) == 0 {
		return nil
	}
	n, err := e.cfg.Registry.ApplyDecisions(ctx, lead, ops, rops)
	for i := len(ops); i < n; i++ {
		if r := rops[i-len(ops)]; r.Reason == "" {
			delete(st.reasons, r.Name)
		} else {
			st.reasons[r.Name] = r.Reason
		}
	}
	if err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	took := time.Since(start)
	e.log.Info("plan written", "ops", len(ops), "reasons", len(rops), "unplaced", len(st.sched.unplaced), "took", took)
	if e.cfg.OnPlan != nil {
		e.cfg.OnPlan(took, len(ops))
	}
	return nil
}
