package engine

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// rejectKind says which rule kept a unit off a machine. The checkers below
// return one; whyNowhere turns a set of them into the sentence users see.
type rejectKind uint8

const (
	rejNone          rejectKind = iota
	rejMachineID                // the machine is not the unit's MachineID
	rejMetadata                 // the machine lacks the unit's MachineMetadata
	rejMachineOf                // a MachineOf peer does not run on the machine
	rejConflict                 // a unit there matches the unit's Conflicts, or the other way round
	rejReplaced                 // a unit there replaces this one
	rejDraining                 // the machine is draining: it takes no new unit (drain.go)
	rejResources                // the machine has too little CPU or memory free (other: which)
	rejMaxPerMachine            // the machine holds as many units of the group as MaxPerMachine allows
)

// checkerNames name the checkers in explanations (fleetctl explain).
var checkerNames = [...]string{
	rejNone:          "",
	rejMachineID:     "MachineID",
	rejMetadata:      "MachineMetadata",
	rejMachineOf:     "MachineOf",
	rejConflict:      "Conflicts",
	rejReplaced:      "Replaces",
	rejDraining:      "Draining",
	rejResources:     "Resources",
	rejMaxPerMachine: "MaxPerMachine",
}

// rejection is one machine's answer for one unit: why not, and which other
// unit (peer, conflicting or replacing unit) is the cause.
type rejection struct {
	kind  rejectKind
	other string
}

func (r rejection) ok() bool { return r.kind == rejNone }

// check decides whether machine m can hold unit u now. It is the whole
// per-machine feasibility pipeline, cheapest and most selective rule first:
// a pinned MachineID rules out all but one machine before metadata is
// looked at, and metadata before the units on the machine. It holds for a
// unit already on m as well ("may it stay?"): a unit never conflicts with
// itself.
//
// Replaces is not a rejection for the replacing unit: placing it on a
// machine running a unit it replaces displaces that unit (see displaces).
// For the replaced unit it is one: it may not run where its replacer runs.
func (s *Scheduler) check(u *ustate, m *mstate) rejection {
	if s.drainRejects(u, m) {
		return rejection{kind: rejDraining, other: m.ID}
	}
	if id := u.Fleet.MachineID; id != "" && !unit.MatchMachineID(m.ID, id) {
		return rejection{kind: rejMachineID}
	}
	if u.pool != nil && !u.pool.has(m) {
		return rejection{kind: rejMetadata}
	}
	for _, peer := range u.Fleet.MachineOf {
		if _, ok := m.units[peer]; !ok {
			return rejection{kind: rejMachineOf, other: peer}
		}
	}
	// Capacity and group bounds cost a few comparisons, less than the
	// conflict patterns below.
	if r := checkResources(u, m); !r.ok() {
		return r
	}
	if r := checkMaxPerMachine(u, m); !r.ok() {
		return r
	}
	if x := u.conflicts.firstOn(m.units, u.Name); x != "" {
		return rejection{kind: rejConflict, other: x}
	}
	// Conflicts are symmetric, as in fleet: a unit without Conflicts is kept
	// off a machine whose units' patterns match it. Only units with
	// patterns are listed, so a machine without any costs nothing.
	for _, x := range m.excluders {
		if x == u {
			continue
		}
		if x.conflicts.match(u.Name) {
			return rejection{kind: rejConflict, other: x.Name}
		}
		if x.replaces.match(u.Name) && !s.isRival(x, u) {
			return rejection{kind: rejReplaced, other: x.Name}
		}
	}
	return rejection{}
}

// displaces reports whether placing u on m would push a unit off m because
// u replaces it.
func (s *Scheduler) displaces(u *ustate, m *mstate) bool {
	if u.replaces.empty() {
		return false
	}
	for name, x := range m.units {
		if x != u && u.replaces.match(name) && !s.isRival(u, x) {
			return true
		}
	}
	return false
}

const shortIDLen = 8

// blocked returns why u cannot be placed anywhere right now, whatever the
// machines: its MachineOf peers are unplaced or name it back, or a unit it
// replaces and that replaces it runs. "" when nothing at unit level stops
// it.
func (s *Scheduler) blocked(u *ustate) string {
	if len(u.Fleet.MachineOf) > 0 {
		if cycle := s.machineOfCycle(u); cycle != nil {
			return fmt.Sprintf("MachineOf cycle %s: units that name each other are never placed", strings.Join(cycle, " -> "))
		}
		for _, peer := range u.Fleet.MachineOf {
			if p := s.units[peer]; p == nil || p.on.len() == 0 {
				return fmt.Sprintf("waiting for MachineOf peer %s to be placed", peer)
			}
		}
	}
	if rivals := s.rivalsOf(u); len(rivals) > 0 {
		for _, r := range rivals {
			if ru := s.units[r]; ru != nil && ru.on.len() > 0 {
				all := append(slices.Clone(rivals), u.Name)
				sort.Strings(all)
				return fmt.Sprintf("%s replace each other: only one of them runs, and %s does", listAnd(all), r)
			}
		}
	}
	return ""
}

// machineOfCycle returns the path u -> ... -> u when following MachineOf
// peers leads back to u, nil otherwise.
func (s *Scheduler) machineOfCycle(u *ustate) []string {
	type frame struct {
		name string
		next int
	}
	seen := map[string]bool{u.Name: true}
	stack := []frame{{name: u.Name}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		cur := s.units[top.name]
		if cur == nil || top.next >= len(cur.Fleet.MachineOf) {
			stack = stack[:len(stack)-1]
			continue
		}
		peer := cur.Fleet.MachineOf[top.next]
		top.next++
		if peer == u.Name {
			out := make([]string, 0, len(stack)+1)
			for _, f := range stack {
				out = append(out, f.name)
			}
			return append(out, u.Name)
		}
		if !seen[peer] {
			seen[peer] = true
			stack = append(stack, frame{name: peer})
		}
	}
	return nil
}

// whyNowhere explains why no machine takes u. It runs only for units that
// fit nowhere, and says which rule stopped them and where.
func (s *Scheduler) whyNowhere(u *ustate) string {
	if !u.Fleet.Global && s.parked[u.Name] != nil {
		for _, id := range sortedKeys(s.parked[u.Name]) {
			if held(u, id) {
				return fmt.Sprintf("AtMostOnce: its machine %s left; placed elsewhere once its copy there has surely stopped", id)
			}
		}
		return fmt.Sprintf("MachineID=%s is not present; keeping its placement until it returns", u.Fleet.MachineID)
	}
	if len(s.machines) == 0 {
		return "no machines are present"
	}
	var (
		cands []*mstate
		where string
	)
	switch {
	case u.Fleet.MachineID != "":
		cands = s.byMachineID(u.Fleet.MachineID)
		if len(cands) == 0 {
			return fmt.Sprintf("MachineID=%s is not present", u.Fleet.MachineID)
		}
	case len(u.Fleet.MachineOf) > 0:
		peer := s.units[u.Fleet.MachineOf[0]]
		cands = s.machinesOf(peer)
		if len(cands) == 0 {
			return fmt.Sprintf("waiting for MachineOf peer %s to be placed", u.Fleet.MachineOf[0])
		}
		where = "on every machine running " + peer.Name
	case u.pool != nil:
		if u.pool.ranked.n == 0 {
			return "no machine has metadata " + describeFleet(u.Fleet)
		}
		cands = s.poolMachines(u.pool)
		where = "on every machine with metadata " + describeFleet(u.Fleet)
	default:
		cands = s.poolMachines(s.all)
		where = "on every machine"
	}
	if len(cands) == 1 {
		where = "on " + cands[0].ID
	}
	others := map[rejectKind]map[string]bool{}
	for _, m := range cands {
		if m.ID == s.dr.skip {
			continue
		}
		r := s.check(u, m)
		if r.ok() {
			continue
		}
		if others[r.kind] == nil {
			others[r.kind] = map[string]bool{}
		}
		others[r.kind][r.other] = true
	}
	// Short of room everywhere: say what is short and the most there is.
	if res, ok := others[rejResources]; ok && len(others) == 1 {
		short := resMemory
		if res[resCPU] {
			short = resCPU
		}
		return whyShort(u, short, cands)
	}
	var parts []string
	for _, k := range []rejectKind{rejMachineID, rejMetadata, rejMachineOf, rejResources, rejMaxPerMachine, rejConflict, rejReplaced} {
		names, ok := others[k]
		if !ok {
			continue
		}
		switch k {
		case rejMachineID:
			parts = append(parts, "not MachineID="+u.Fleet.MachineID)
		case rejMetadata:
			parts = append(parts, "no metadata "+describeFleet(u.Fleet))
		case rejResources:
			parts = append(parts, "too little "+listAnd(sortedKeys(names))+" free")
		case rejMaxPerMachine:
			parts = append(parts, listNames(names))
		case rejMachineOf:
			parts = append(parts, "MachineOf peer "+listNames(names)+" not there")
		case rejConflict:
			parts = append(parts, "conflicts with "+listNames(names))
		case rejReplaced:
			parts = append(parts, "replaced by "+listNames(names))
		}
	}
	draining := others[rejDraining]
	switch {
	case len(parts) == 0 && draining != nil:
		return "draining: " + listNames(draining) + " (the only machines that may take it)"
	case len(parts) == 0:
		return "no machine can take it"
	case draining != nil:
		return strings.Join(parts, "; ") + " " + where + "; draining: " + listNames(draining)
	}
	return strings.Join(parts, "; ") + " " + where
}

// listNames lists a set of unit names sorted, at most three, then how many
// more.
func listNames(set map[string]bool) string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

func listAnd(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// describeFleet renders u's whole metadata selector: the key=value terms
// (describeSelector), then the other terms as written, joined by "and".
func describeFleet(f unit.Fleet) string {
	sel, cons := selectorOf(f)
	parts := []string{}
	if len(sel) > 0 {
		parts = append(parts, describeSelector(sel))
	}
	for _, c := range cons {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, " and ")
}

// selectorOf is the metadata selector of a unit's pool: MachineMetadata's
// key=value terms, its other terms, and for SpreadBy=k the term "k exists"
// (machines without the key take none of a spread group).
func selectorOf(f unit.Fleet) (map[string][]string, []unit.Constraint) {
	cons := f.Constraints
	if f.SpreadBy != "" && f.Group != "" {
		cons = append(slices.Clip(cons), unit.Constraint{Key: f.SpreadBy, Op: unit.OpExists})
	}
	return f.MachineMetadata, cons
}

// describeSelector renders a MachineMetadata selector the way users wrote
// it: values of one key joined by "or", keys by "and".
func describeSelector(sel map[string][]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		alts := make([]string, 0, len(sel[k]))
		for _, v := range slices.Compact(slices.Clone(sel[k])) {
			alts = append(alts, k+"="+v)
		}
		p := strings.Join(alts, " or ")
		if len(alts) > 1 && len(keys) > 1 {
			p = "(" + p + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " and ")
}

// patterns are Conflicts or Replaces globs, split so that the common cases,
// a plain unit name and "prefix*", are a map lookup and a prefix test
// instead of a glob match.
type patterns struct {
	literal []string
	prefix  []string // "web-*" is "web-": no '/' can occur in a unit name
	glob    []string
}

const globMeta = `*?[\`

func compilePatterns(ps []string) patterns {
	var p patterns
	for _, v := range ps {
		switch i := strings.IndexAny(v, globMeta); {
		case i < 0:
			p.literal = append(p.literal, v)
		case i == len(v)-1 && v[i] == '*':
			p.prefix = append(p.prefix, v[:i])
		default:
			p.glob = append(p.glob, v)
		}
	}
	return p
}

func (p patterns) empty() bool { return len(p.literal) == 0 && len(p.prefix) == 0 && len(p.glob) == 0 }

func (p patterns) match(name string) bool {
	if slices.Contains(p.literal, name) {
		return true
	}
	return p.matchWild(name)
}

// matchWild matches the prefix and glob patterns only.
func (p patterns) matchWild(name string) bool {
	for _, pre := range p.prefix {
		if strings.HasPrefix(name, pre) && !strings.Contains(name[len(pre):], "/") {
			return true
		}
	}
	for _, g := range p.glob {
		// A malformed pattern matches nothing; unit.Fleet.Validate refuses
		// it at submit.
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// firstOn returns the smallest name among units (other than self) that p
// matches, "" when none does. Smallest, so reasons do not depend on map
// order.
func (p patterns) firstOn(units map[string]*ustate, self string) string {
	if p.empty() {
		return ""
	}
	best := ""
	for _, l := range p.literal {
		if _, ok := units[l]; ok && l != self && (best == "" || l < best) {
			best = l
		}
	}
	if len(p.prefix) > 0 || len(p.glob) > 0 {
		for name := range units {
			if name != self && (best == "" || name < best) && p.matchWild(name) {
				best = name
			}
		}
	}
	return best
}

// stays decides whether u may keep its placement on m.
func (s *Scheduler) stays(u *ustate, m *mstate) bool {
	if u.State == registry.StateInactive {
		return false
	}
	if u.Invalid != "" {
		// Its options are unknown: keep what runs, as it is.
		return true
	}
	if stay, ok := s.staysMoving(u, m); ok {
		return stay
	}
	if !u.Fleet.Global && u.on.len() > 1 {
		// Duplicates (a leader that crashed mid-write, a resync): the first
		// placement in machine order that may stay wins.
		for _, id := range u.on.ids() {
			if o := s.machines[id]; o != nil && s.blocked(u) == "" && s.check(u, o).ok() {
				return o == m
			}
		}
		return false
	}
	return s.blocked(u) == "" && s.check(u, m).ok()
}
