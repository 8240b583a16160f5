package engine

import (
	"slices"
	"sort"
)

// Replaces, fleet's way: when a unit is placed on a machine running a unit
// it replaces, the replaced unit leaves that machine and is placed
// elsewhere; it never runs next to its replacer. Units that replace each
// other (A replaces B and B replaces A, or any longer cycle) would push each
// other around forever, so they are rivals: only one of them runs in the
// whole cluster, the one already running or else the first by name.
//
// Rivals are the strongly connected components of the "replaces" graph over
// the units that have Replaces. Only such units can be in a cycle, and real
// clusters have few of them, so the graph is rebuilt whenever one changes.

// rivalsOf returns the other members of u's Replaces cycle, sorted; nil when
// u is in none.
func (s *Scheduler) rivalsOf(u *ustate) []string {
	if u.replaces.empty() {
		return nil
	}
	if s.rivals == nil {
		s.computeRivals()
	}
	return s.rivals[u.Name]
}

func (s *Scheduler) isRival(a, b *ustate) bool {
	if a.replaces.empty() || b.replaces.empty() {
		return false
	}
	return slices.Contains(s.rivalsOf(a), b.Name)
}

// computeRivals runs Tarjan's algorithm over the replacers.
func (s *Scheduler) computeRivals() {
	s.rivals = map[string][]string{}
	names := sortedKeys(s.replacers)
	if len(names) < 2 {
		return
	}
	edges := make(map[string][]string, len(names))
	for _, a := range names {
		ua := s.replacers[a]
		for _, b := range names {
			if a != b && ua.replaces.match(b) {
				edges[a] = append(edges[a], b)
			}
		}
	}
	var (
		index   = map[string]int{}
		low     = map[string]int{}
		onStack = map[string]bool{}
		stack   []string
		next    int
	)
	var connect func(v string)
	connect = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range edges[v] {
			if _, seen := index[w]; !seen {
				connect(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []string
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			comp = append(comp, w)
			if w == v {
				break
			}
		}
		if len(comp) < 2 {
			return
		}
		sort.Strings(comp)
		for _, w := range comp {
			s.rivals[w] = slices.DeleteFunc(slices.Clone(comp), func(x string) bool { return x == w })
		}
	}
	for _, v := range names {
		if _, seen := index[v]; !seen {
			connect(v)
		}
	}
}

// replacersChanged forgets the rivals and has every unit with Replaces
// looked at again: a cycle that formed or broke changes who may run.
func (s *Scheduler) replacersChanged() {
	s.rivals = nil
	for _, r := range s.replacers {
		for _, id := range r.on.ids() {
			s.checks[[2]string{r.Name, id}] = struct{}{}
		}
		if r.on.len() == 0 && r.wants() {
			s.enqueue(r)
		}
	}
}
