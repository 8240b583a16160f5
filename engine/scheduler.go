package engine

import (
	"slices"
	"sort"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Unit is what the scheduler knows of a submitted unit.
type Unit struct {
	Name  string
	Hash  string
	State registry.State
	Fleet unit.Fleet
	// Invalid, when set, says why the unit's options cannot be known (its
	// body is unreadable, its [X-Fleet] options are refused). The scheduler
	// then keeps its placements exactly as they are, places it nowhere new,
	// and gives Invalid as the reason when it has no machine.
	Invalid string
	// AtMostOnce is the unit's [X-Fleet] AtMostOnce= with the cluster's
	// default applied (unit.Fleet.RunsAtMostOnce): when its machine leaves,
	// its placement there is held until the engine releases it (Release).
	AtMostOnce bool
	// Rollout, during a rolling update, holds placements at the old body
	// until their turn (registry.UnitRollout.HashOn; engine/rollout.go).
	Rollout *registry.UnitRollout
}

// Snapshot is the scheduler's whole input: present machines, submitted
// units and the current schedule (which may name machines that are gone).
type Snapshot struct {
	Machines   []machine.Machine
	Units      []Unit
	Placements []registry.Placement
	// Policy ranks feasible machines; "" is PolicySpread.
	Policy Policy
}

// Plan is the scheduler's output: the schedule changes to write and what
// changed about unplaced units.
type Plan struct {
	// Ops are the schedule writes and deletes, in the order decided.
	Ops []registry.PlanOp
	// Unplaced holds, for every unit the plan looked at that should run
	// but fits nowhere, why. After a full pass (Schedule) that is every
	// such unit.
	Unplaced map[string]string
	// Cleared names units that had an unplaced reason before this plan and
	// no longer have one: placed, made inactive or destroyed.
	Cleared []string
}

// Schedule computes the changes that bring the schedule in line with the
// snapshot. It is pure: same snapshot, same plan.
//
// Units already placed on a present machine that still satisfies them stay
// where they are (no churn); only units that must move or are new are
// placed, each on the least-loaded feasible machine (ties by machine ID).
func Schedule(s Snapshot) Plan {
	return NewScheduler(s).Plan()
}

// Scheduler is Schedule kept alive between events. The engine leader holds
// one: watch events update it (SetUnit, RemoveMachine, ...), and Plan
// decides only what those events touched. Deciding for one new unit or one
// lost machine costs about as much in a 100,000-unit cluster as in a small
// one, where rerunning Schedule would cost a full pass.
//
// After Plan, the scheduler's model assumes the plan was written. If it was
// not, feed it the schedule as read back (SetPlacement, RemovePlacement).
// Decisions depend only on the events, in order: no clock, no randomness,
// ties broken by name and machine ID. A Scheduler is not safe for
// concurrent use.
type Scheduler struct {
	machines  map[string]*mstate
	order     []*mstate                                // machines sorted by ID
	byLabel   map[uint32]*mstate                       // order label -> machine, see labelMachine
	short     map[string][]*mstate                     // 8-character ID prefix -> machines with longer IDs
	mdIndex   map[string]map[string]map[string]*mstate // metadata key -> value -> machines
	units     map[string]*ustate
	globals   []string // names of global units, sorted
	pools     map[string]*pool
	poolIndex map[string][]*pool            // kv(first selector key, value) -> pools
	all       *pool                         // every machine: the pool of units without MachineMetadata
	followers map[string]map[string]*ustate // peer name -> units naming it in MachineOf
	replacers map[string]*ustate
	rivals    map[string][]string                      // see replaces.go; nil when stale
	unplaced  map[string]*ustate                       // units with a reason
	parked    map[string]map[string]registry.Placement // unit -> absent machine -> placement kept there (see parkable)
	parkedOn  map[string]map[string]struct{}           // absent machine -> units parked on it
	policy    Policy
	groups    map[string]map[string]*ustate // Group -> its units (spread.go)
	opPools   []*pool                       // pools without key=value terms: every joining machine is tested

	// Work recorded by events, done by Plan.
	orphans map[[2]string]registry.Placement // (machine, unit) placements naming something unknown
	first   map[[2]string]struct{}           // (unit, machine) placements of units whose options changed
	checks  map[[2]string]struct{}           // (unit, machine) placements to re-check
	gqueue  map[string]struct{}              // global units to spread over every machine
	freed   map[string]struct{}              // machines where room may have appeared
	refresh map[string]struct{}              // units whose hash or desired state changed
	queue   unitQueue                        // normal units to place

	stale      map[string]struct{} // unplaced units whose reason may have changed
	staleSmall bool                // a machine left or changed: refresh reasons of units with few candidates

	dr drainState // drains and moves, see drain.go

	plan    Plan
	cleared map[string]struct{}
	epoch   int // counts plans, see ustate.moves
}

// mstate is a present machine and what runs on it.
type mstate struct {
	machine.Machine
	units     map[string]*ustate
	excluders []*ustate // units here with Conflicts or Replaces
	pools     []*pool
	label     uint32               // orders machines by ID inside ranks
	key       rank                 // the rank the pools hold for it
	used      demand               // what its units ask for (resources.go)
	room      demand               // what the pools hold as its room: roomOf when last re-ranked
	group     map[string][]*ustate // Group -> its units here
}

// ustate is a submitted unit and where it is placed.
type ustate struct {
	Unit
	pool      *pool        // nil without MachineMetadata
	on        placementSet // placements as in the schedule
	reason    string       // why it is unplaced, "" otherwise
	queued    bool
	moves     int // placements in plan number epoch: a guard against ping-pong
	epoch     int
	conflicts patterns
	replaces  patterns
}

func (u *ustate) wants() bool { return u.State != registry.StateInactive }

func (u *ustate) excludes() bool { return !u.conflicts.empty() || !u.replaces.empty() }

// maxMoves bounds how often one plan may place the same unit. Displacements
// settle in far fewer steps; the bound only stops a rule interaction nobody
// foresaw from spinning.
const maxMoves = 8

// NewScheduler returns a Scheduler holding the snapshot, with every unit
// and placement due for a decision: its first Plan is Schedule(s).
func NewScheduler(snap Snapshot) *Scheduler {
	s := &Scheduler{
		machines:  make(map[string]*mstate, len(snap.Machines)),
		byLabel:   make(map[uint32]*mstate, len(snap.Machines)),
		short:     map[string][]*mstate{},
		mdIndex:   map[string]map[string]map[string]*mstate{},
		units:     make(map[string]*ustate, len(snap.Units)),
		pools:     map[string]*pool{},
		poolIndex: map[string][]*pool{},
		followers: map[string]map[string]*ustate{},
		replacers: map[string]*ustate{},
		unplaced:  map[string]*ustate{},
		parked:    map[string]map[string]registry.Placement{},
		parkedOn:  map[string]map[string]struct{}{},
		orphans:   map[[2]string]registry.Placement{},
		first:     map[[2]string]struct{}{},
		checks:    map[[2]string]struct{}{},
		gqueue:    map[string]struct{}{},
		freed:     map[string]struct{}{},
		refresh:   map[string]struct{}{},
		stale:     map[string]struct{}{},
		groups:    map[string]map[string]*ustate{},
		policy:    snap.Policy,
	}
	if s.policy == "" {
		s.policy = PolicySpread
	}
	s.all = &pool{members: map[string]*mstate{}, refs: 1}
	s.resetPlan()
	// Machines in ID order with evenly spread labels; joins later bisect.
	ms := slices.Clone(snap.Machines)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	for _, m := range ms {
		if _, dup := s.machines[m.ID]; dup {
			continue
		}
		st := &mstate{Machine: m, units: map[string]*ustate{}}
		s.machines[m.ID] = st
		s.order = append(s.order, st)
		s.indexShort(st)
	}
	s.relabel()
	for _, st := range s.order {
		s.indexMachine(st)
	}
	for _, u := range snap.Units {
		s.SetUnit(u)
	}
	for _, p := range snap.Placements {
		s.SetPlacement(p)
	}
	return s
}

func (s *Scheduler) resetPlan() {
	s.plan = Plan{Unplaced: map[string]string{}}
	s.cleared = map[string]struct{}{}
	s.epoch++
}

// Unplaced returns, for every unit that should run but has no machine, why.
func (s *Scheduler) Unplaced() map[string]string {
	out := make(map[string]string, len(s.unplaced))
	for name, u := range s.unplaced {
		out[name] = u.reason
	}
	return out
}

// Plan decides everything the events since the last Plan touched and
// returns the result. The stages run in this order, each until it has no
// work left, going back to an earlier stage whenever a later one makes work
// for it:
//
//  1. placements to check (machine gone, options changed, peer moved,
//     replaced): a unit that may not stay is taken off, so its load does not
//     count and its machine is free for others;
//  2. global units to spread: they come before normal units, as in a full
//     pass, so normal units see their load and their Conflicts;
//  3. machines with new room (joined, changed, a unit left): offered to
//     global units, then to units waiting;
//  4. normal units to place, one at a time, least-loaded feasible machine
//     first; units with MachineOf after the others, so peers go first.
func (s *Scheduler) Plan() Plan {
	for _, k := range sortedPairs(s.orphans) {
		p := s.orphans[k]
		delete(s.orphans, k)
		if u := s.units[p.Name]; u != nil && (s.machines[p.Machine] != nil || parkable(u, p.Machine)) {
			s.SetPlacement(p)
			continue
		}
		s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Placement: registry.Placement{Machine: p.Machine, Name: p.Name}})
	}
	for {
		switch {
		case len(s.first) > 0:
			s.runChecks(s.first)
		case len(s.checks) > 0:
			s.runChecks(s.checks)
		case len(s.gqueue) > 0:
			s.runGlobals()
		case len(s.freed) > 0:
			s.runFreed()
		case s.queue.len() > 0:
			s.placeNext()
		default:
			s.runRefresh()
			s.refreshStale()
			plan := s.plan
			for name := range s.cleared {
				if _, ok := plan.Unplaced[name]; !ok {
					plan.Cleared = append(plan.Cleared, name)
				}
			}
			sort.Strings(plan.Cleared)
			s.resetPlan()
			return plan
		}
	}
}

// runChecks takes off every placement in set that may not stay.
func (s *Scheduler) runChecks(set map[[2]string]struct{}) {
	keys := sortedPairs(set)
	clear(set)
	for _, k := range keys {
		u, m := s.units[k[0]], s.machines[k[1]]
		if u == nil || m == nil {
			continue
		}
		if !u.on.has(m.ID) || s.stays(u, m) {
			continue
		}
		s.unplace(u, m, true)
		switch {
		case !u.wants():
		case u.Fleet.Global:
			if u.on.len() == 0 {
				s.gqueue[u.Name] = struct{}{}
			}
		default:
			s.enqueue(u)
		}
	}
}

// runGlobals puts each queued global unit on every machine that takes it
// (Nomad's system scheduler: no ranking, every feasible node).
func (s *Scheduler) runGlobals() {
	names := sortedKeys(s.gqueue)
	clear(s.gqueue)
	for _, name := range names {
		g := s.units[name]
		// It may have changed since it was queued.
		if g == nil || !g.Fleet.Global || !g.wants() || g.Invalid != "" {
			continue
		}
		p := g.pool
		if p == nil {
			p = s.all
		}
		for _, m := range s.poolMachines(p) {
			if !g.on.has(m.ID) && s.check(g, m).ok() {
				s.place(g, m)
			}
		}
		s.settleGlobal(g)
	}
}

func (s *Scheduler) settleGlobal(g *ustate) {
	if g.on.len() > 0 {
		s.clearReason(g)
		return
	}
	s.setReason(g, s.whyNowhere(g))
}

// freedScanLimit is how many freed machines are tried one by one for each
// waiting unit; beyond it, waiting units simply get a full placement try.
const freedScanLimit = 16

// runFreed offers machines with new room to global units, then has units
// that fit nowhere before tried again if one of the machines takes them.
// Only these machines changed, so only they can take a unit that fit
// nowhere.
func (s *Scheduler) runFreed() {
	ids := sortedKeys(s.freed)
	clear(s.freed)
	ms := make([]*mstate, 0, len(ids))
	for _, id := range ids {
		if m := s.machines[id]; m != nil {
			ms = append(ms, m)
		}
	}
	for _, name := range s.globals {
		g := s.units[name]
		if !g.wants() || g.Invalid != "" {
			continue
		}
		for _, m := range ms {
			if !g.on.has(m.ID) && s.check(g, m).ok() {
				s.place(g, m)
			}
		}
		if g.on.len() > 0 {
			s.clearReason(g)
		}
	}
	if len(s.unplaced) == 0 {
		return
	}
	for _, name := range sortedKeys(s.unplaced) {
		u := s.unplaced[name]
		if u.queued || u.Fleet.Global || u.Invalid != "" || !u.wants() {
			continue
		}
		if len(ms) > freedScanLimit {
			s.enqueue(u)
			continue
		}
		if s.blocked(u) != "" {
			continue
		}
		fits := false
		for _, m := range ms {
			if s.check(u, m).ok() {
				fits = true
				break
			}
		}
		switch {
		case fits:
			s.enqueue(u)
		case s.candidates(u) <= reasonRefreshLimit:
			// Still nowhere, but the sentence may have changed (another
			// machine, another conflicting unit). Cheap when few machines
			// may take it; larger sets wait for RefreshReasons.
			if why := s.whyNowhere(u); why != u.reason {
				s.setReason(u, why)
			}
		}
	}
}

// reasonRefreshLimit is the most candidate machines for which runFreed
// rewrites a reason on the spot.
const reasonRefreshLimit = 64

// candidates returns how many machines u's MachineID, MachineOf or metadata
// leave it, before conflicts.
func (s *Scheduler) candidates(u *ustate) int {
	switch {
	case u.Fleet.MachineID != "":
		return len(s.byMachineID(u.Fleet.MachineID))
	case len(u.Fleet.MachineOf) > 0:
		if p := s.units[u.Fleet.MachineOf[0]]; p != nil {
			return p.on.len()
		}
		return 0
	case u.pool != nil:
		return u.pool.ranked.n
	}
	return len(s.machines)
}

// RefreshReasons recomputes why each unplaced unit fits nowhere; the next
// Plan reports the reasons that changed. Plan keeps reasons current for
// units it tries to place and, when cheap, for units whose situation it saw
// change; a unit with many candidate machines keeps its reason, whose list
// of conflicting units may age as other units move. The engine refreshes at
// every resync. It costs a feasibility check of every candidate machine of
// every unplaced unit.
func (s *Scheduler) RefreshReasons() {
	for _, name := range sortedKeys(s.unplaced) {
		s.refreshReason(s.unplaced[name])
	}
}

// refreshStale rewrites the reasons events may have made wrong.
func (s *Scheduler) refreshStale() {
	if s.staleSmall {
		s.staleSmall = false
		for name, u := range s.unplaced {
			if s.candidates(u) <= reasonRefreshLimit {
				s.stale[name] = struct{}{}
			}
		}
	}
	for _, name := range sortedKeys(s.stale) {
		if u, ok := s.unplaced[name]; ok {
			s.refreshReason(u)
		}
	}
	clear(s.stale)
}

func (s *Scheduler) refreshReason(u *ustate) {
	var why string
	switch {
	case !u.wants():
		return
	case u.Invalid != "":
		why = u.Invalid
	case u.Fleet.Global:
		if u.on.len() > 0 {
			return
		}
		why = s.whyNowhere(u)
	default:
		if why = s.blocked(u); why == "" {
			why = s.whyNowhere(u)
		}
	}
	if why != u.reason {
		s.setReason(u, why)
	}
}

// placeNext decides for the next queued normal unit.
func (s *Scheduler) placeNext() {
	u := s.queue.pop()
	u.queued = false
	if s.units[u.Name] != u || !u.wants() || (u.Fleet.Global && u.Invalid == "") {
		return
	}
	if u.on.len() > 0 {
		s.clearReason(u)
		return
	}
	if u.Invalid != "" {
		s.setReason(u, u.Invalid)
		return
	}
	if why := s.blocked(u); why != "" {
		s.setReason(u, why)
		return
	}
	if s.parked[u.Name] != nil {
		// Its machine is away and it may run nowhere else, or not yet: it
		// waits there.
		s.setReason(u, s.whyNowhere(u))
		return
	}
	if u.epoch == s.epoch && u.moves >= maxMoves {
		s.setReason(u, "placement does not settle: it keeps being displaced (check its Replaces)")
		return
	}
	m := s.best(u)
	if m == nil {
		s.setReason(u, s.whyNowhere(u))
		return
	}
	s.place(u, m)
}

// best ranks the machines that may take u and returns the first: least
// loaded (see Policy), then lowest machine ID. A machine where u would
// displace a unit it replaces ranks after every machine where it would not:
// the replaced unit moves only when u has nowhere else to go. A unit with
// SpreadBy goes to the value of its key that holds the fewest of its group
// first (bestSpread).
func (s *Scheduler) best(u *ustate) *mstate {
	if u.Fleet.SpreadBy != "" && u.Fleet.Group != "" {
		return s.bestSpread(u)
	}
	var found, fallback *mstate
	s.eachCandidate(u, func(m *mstate) bool {
		if u.on.has(m.ID) || !s.check(u, m).ok() {
			return true
		}
		if s.displaces(u, m) {
			if fallback == nil {
				fallback = m
			}
			return true
		}
		found = m
		return false
	})
	if found != nil {
		return found
	}
	return fallback
}

// eachCandidate calls f on the machines that may take u, in rank order,
// until f returns false. Candidates come from the most selective source:
// the one machine of a MachineID, the machines of a MachineOf peer, or the
// pool of machines matching u's metadata, walked in rank order so that the
// first feasible machine is the answer and most units look at one or two
// machines.
func (s *Scheduler) eachCandidate(u *ustate, f func(*mstate) bool) {
	switch {
	case u.Fleet.MachineID != "":
		for _, m := range byRank(s.byMachineID(u.Fleet.MachineID)) {
			if !f(m) {
				return
			}
		}
	case len(u.Fleet.MachineOf) > 0:
		for _, m := range byRank(s.machinesOf(s.units[u.Fleet.MachineOf[0]])) {
			if !f(m) {
				return
			}
		}
	default:
		p := u.pool
		if p == nil {
			p = s.all
		}
		p.ranked.eachRoom(demandOf(u), func(r rank) bool { return f(s.byLabel[rankLabel(r)]) })
	}
}

// runRefresh rewrites placements whose hash or desired state is behind the
// unit's.
func (s *Scheduler) runRefresh() {
	for _, name := range sortedKeys(s.refresh) {
		u := s.units[name]
		if u == nil || !u.wants() || u.Invalid != "" {
			continue
		}
		for _, id := range u.on.ids() {
			want := registry.Placement{Machine: id, Name: name, Hash: u.hashOn(id), DesiredState: u.State}
			if s.stoppedForMove(u, id) {
				want.DesiredState = registry.StateLoaded
			}
			if cur, _ := u.on.get(id); cur != want {
				u.on.put(want)
				s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Put: true, Placement: want})
			}
		}
		// Parked placements follow too: a returning machine runs the
		// current body in the current state.
		for _, id := range sortedKeys(s.parked[name]) {
			want := registry.Placement{Machine: id, Name: name, Hash: u.hashOn(id), DesiredState: u.State}
			if s.parked[name][id] != want {
				s.parked[name][id] = want
				s.plan.Ops = append(s.plan.Ops, registry.PlanOp{Put: true, Placement: want})
			}
		}
	}
	clear(s.refresh)
}

func (s *Scheduler) byMachineID(id string) []*mstate {
	var out []*mstate
	if m := s.machines[id]; m != nil {
		out = append(out, m)
	}
	if len(id) == shortIDLen {
		out = append(out, s.short[id]...)
	}
	return out
}

// machinesOf returns the machines u is placed on, sorted by ID.
func (s *Scheduler) machinesOf(u *ustate) []*mstate {
	if u == nil {
		return nil
	}
	out := make([]*mstate, 0, u.on.len())
	for _, id := range u.on.ids() {
		if m := s.machines[id]; m != nil {
			out = append(out, m)
		}
	}
	return out
}

// poolMachines lists a pool's machines in rank order.
func (s *Scheduler) poolMachines(p *pool) []*mstate {
	out := make([]*mstate, 0, p.ranked.n)
	p.ranked.each(func(r rank) bool {
		out = append(out, s.byLabel[rankLabel(r)])
		return true
	})
	return out
}

func byRank(ms []*mstate) []*mstate {
	sort.Slice(ms, func(i, j int) bool { return ms[i].key < ms[j].key })
	return ms
}
