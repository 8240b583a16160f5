package engine

import "fmt"

// Groups: units sharing [X-Fleet] Group= (or the instances of a template
// that sets SpreadBy= or MaxPerMachine=). MaxPerMachine is a checker;
// SpreadBy is a ranking, so it moves nothing that runs: it only chooses
// where the next unit of the group goes (a new one, or one whose machine
// left or is drained).

func (s *Scheduler) registerGroup(u *ustate) {
	if g := u.Fleet.Group; g != "" && u.Invalid == "" {
		if s.groups[g] == nil {
			s.groups[g] = map[string]*ustate{}
		}
		s.groups[g][u.Name] = u
	}
}

func (s *Scheduler) unregisterGroup(u *ustate) {
	if g := u.Fleet.Group; g != "" {
		delete(s.groups[g], u.Name)
		if len(s.groups[g]) == 0 {
			delete(s.groups, g)
		}
	}
}

// checkMaxPerMachine keeps m from holding more units of u's group than u's
// MaxPerMachine, or than that of any unit of the group already there (the
// rule holds both ways, like Conflicts, so that placing a unit without the
// option never puts one with it over its bound).
func checkMaxPerMachine(u *ustate, m *mstate) rejection {
	g := u.Fleet.Group
	if g == "" {
		return rejection{}
	}
	on := m.group[g]
	n := len(on) + 1
	if _, ok := m.units[u.Name]; ok {
		n-- // u is one of them: may it stay?
	}
	if b := u.Fleet.MaxPerMachine; b > 0 && n > b {
		return rejection{kind: rejMaxPerMachine, other: fmt.Sprintf("%s allows %d per machine", g, b)}
	}
	for _, x := range on {
		if b := x.Fleet.MaxPerMachine; b > 0 && n > b {
			return rejection{kind: rejMaxPerMachine, other: fmt.Sprintf("%s allows %d per machine (%s)", g, b, x.Name)}
		}
	}
	return rejection{}
}

// spreadCounts counts, for each value of u's SpreadBy key, the units of its
// group placed on machines with that value (u itself left out), and returns
// the smallest count over the values present machines have.
func (s *Scheduler) spreadCounts(u *ustate) (counts map[string]int, least int) {
	key := u.Fleet.SpreadBy
	counts = map[string]int{}
	for _, x := range s.groups[u.Fleet.Group] {
		if x == u {
			continue
		}
		for _, id := range x.on.ids() {
			if m := s.machines[id]; m != nil {
				if v, ok := m.Metadata[key]; ok {
					counts[v]++
				}
			}
		}
	}
	least = -1
	for v := range s.mdIndex[key] {
		if c := counts[v]; least < 0 || c < least {
			least = c
		}
	}
	return counts, least
}

// bestSpread is best for a unit with SpreadBy: among feasible machines, the
// one whose value of the key holds the fewest units of the group, then
// rank order (least loaded). It walks candidates in rank order and stops at
// the first feasible machine in a value that holds the fewest of all, so a
// balanced group costs about what best does; an unbalanced one may cost a
// walk of its pool.
func (s *Scheduler) bestSpread(u *ustate) *mstate {
	counts, least := s.spreadCounts(u)
	var (
		found     *mstate
		foundN    int
		foundDisp bool
	)
	s.eachCandidate(u, func(m *mstate) bool {
		if u.on.has(m.ID) || !s.check(u, m).ok() {
			return true
		}
		v, ok := m.Metadata[u.Fleet.SpreadBy]
		if !ok {
			return true
		}
		n, disp := counts[v], s.displaces(u, m)
		if found == nil || (foundDisp && !disp) || (disp == foundDisp && n < foundN) {
			found, foundN, foundDisp = m, n, disp
		}
		return foundDisp || foundN > least
	})
	return found
}
