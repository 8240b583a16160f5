package engine

import (
	"sort"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// placementSet holds a unit's placements as the schedule has them. A normal
// unit has one, so a plain list beats a map (a one-entry map costs ten
// times the memory); a global unit may have thousands, so past smallSet
// entries an index by machine is kept too.
type placementSet struct {
	list []registry.Placement
	idx  map[string]int // machine -> position in list; nil while small
}

const smallSet = 8

func (ps *placementSet) len() int { return len(ps.list) }

func (ps *placementSet) find(id string) int {
	if ps.idx != nil {
		if i, ok := ps.idx[id]; ok {
			return i
		}
		return -1
	}
	for i := range ps.list {
		if ps.list[i].Machine == id {
			return i
		}
	}
	return -1
}

func (ps *placementSet) has(id string) bool { return ps.find(id) >= 0 }

func (ps *placementSet) get(id string) (registry.Placement, bool) {
	if i := ps.find(id); i >= 0 {
		return ps.list[i], true
	}
	return registry.Placement{}, false
}

// put adds p, or replaces the placement on p.Machine.
func (ps *placementSet) put(p registry.Placement) {
	if i := ps.find(p.Machine); i >= 0 {
		ps.list[i] = p
		return
	}
	ps.list = append(ps.list, p)
	switch {
	case ps.idx != nil:
		ps.idx[p.Machine] = len(ps.list) - 1
	case len(ps.list) > smallSet:
		ps.idx = make(map[string]int, 2*len(ps.list))
		for i, q := range ps.list {
			ps.idx[q.Machine] = i
		}
	}
}

// del removes the placement on machine id, moving the last one into its
// place.
func (ps *placementSet) del(id string) bool {
	i := ps.find(id)
	if i < 0 {
		return false
	}
	last := len(ps.list) - 1
	ps.list[i] = ps.list[last]
	ps.list[last] = registry.Placement{}
	ps.list = ps.list[:last]
	if ps.idx != nil {
		delete(ps.idx, id)
		if i < last {
			ps.idx[ps.list[i].Machine] = i
		}
	}
	return true
}

// ids returns the machines, sorted.
func (ps *placementSet) ids() []string {
	out := make([]string, len(ps.list))
	for i, p := range ps.list {
		out[i] = p.Machine
	}
	sort.Strings(out)
	return out
}
