package engine

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/seed-a1ce88ea/fleet/unit"
)

// A rank orders machines for placement: by load (see Scheduler.load: the
// dominant resource's share, then units), ties by machine ID, so the order
// is total and deterministic. It packs the load above the machine's order
// label (see Scheduler.labelMachine), whose order is the order of machine
// IDs: comparing two ranks is comparing two integers.
type rank = uint64

func rankOf(load int, label uint32) rank { return uint64(load)<<32 | uint64(label) }

func rankLabel(r rank) uint32 { return uint32(r) }

// blockSize bounds a block of a rankSet. Small enough that an insert moves
// little memory, large enough that a 10,000-machine set has few blocks.
const blockSize = 256

// rankSet is an ordered set of ranks: a sorted list of sorted blocks (a
// flat B-tree). Insert and delete cost a binary search over the blocks plus
// a move of at most blockSize ranks; iteration in order is a plain walk.
// Machines change rank on every placement, so this is what keeps "least
// loaded" from being a scan of every machine.
//
// Each rank carries its machine's room (free CPU and memory) in a parallel
// list, and each block the most room of any of its machines: a walk for a
// unit with a demand skips whole blocks where no machine has room for it,
// which is what keeps binpack, whose first machines are the fullest, from
// looking at every full machine.
type rankSet struct {
	blocks [][]rank
	rooms  [][]demand // rooms[i][j] is the room of blocks[i][j]
	most   []demand   // most[i]: the most CPU and the most memory in rooms[i]
	n      int
	spare  []rank // the last block, kept when the set empties: a one-machine pool empties on every re-rank
}

// unlimited is the room of a machine that reports no capacity.
var unlimited = demand{cpu: math.MaxInt64, mem: math.MaxInt64}

func mostOf(rs []demand) demand {
	var m demand
	for _, r := range rs {
		m.cpu, m.mem = max(m.cpu, r.cpu), max(m.mem, r.mem)
	}
	return m
}

// block returns the index of the first block whose last rank is not less
// than r (len(blocks) when r is greater than every rank).
func (s *rankSet) block(r rank) int {
	lo, hi := 0, len(s.blocks)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if b := s.blocks[h]; b[len(b)-1] < r {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

func search(b []rank, r rank) int {
	lo, hi := 0, len(b)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if b[h] < r {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

func (s *rankSet) insert(r rank, room demand) {
	s.n++
	if len(s.blocks) == 0 {
		b := s.spare
		if b == nil {
			// Small pools are common (one per templated host); a block
			// grows to blockSize only if the set does.
			b = make([]rank, 0, 4)
		}
		s.spare = nil
		s.blocks = append(s.blocks, append(b, r))
		s.rooms = append(s.rooms, []demand{room})
		s.most = append(s.most, room)
		return
	}
	bi := s.block(r)
	if bi == len(s.blocks) {
		bi-- // greater than everything: append to the last block
	}
	b := s.blocks[bi]
	if len(b) == blockSize {
		// Full: split in halves first, so that the insert never grows the
		// block. The upper half gets its own array; the lower keeps this one.
		hi := append(make([]rank, 0, blockSize), b[blockSize/2:]...)
		rb := s.rooms[bi]
		rhi := append(make([]demand, 0, blockSize), rb[blockSize/2:]...)
		b, rb = b[:blockSize/2], rb[:blockSize/2]
		s.blocks[bi], s.rooms[bi], s.most[bi] = b, rb, mostOf(rb)
		s.blocks = slices.Insert(s.blocks, bi+1, hi)
		s.rooms = slices.Insert(s.rooms, bi+1, rhi)
		s.most = slices.Insert(s.most, bi+1, mostOf(rhi))
		if r > b[len(b)-1] {
			bi, b = bi+1, hi
		}
	}
	i := search(b, r)
	s.blocks[bi] = slices.Insert(b, i, r)
	s.rooms[bi] = slices.Insert(s.rooms[bi], i, room)
	m := &s.most[bi]
	m.cpu, m.mem = max(m.cpu, room.cpu), max(m.mem, room.mem)
}

func (s *rankSet) delete(r rank) bool {
	bi := s.block(r)
	if bi == len(s.blocks) {
		return false
	}
	b := s.blocks[bi]
	i := search(b, r)
	if i == len(b) || b[i] != r {
		return false
	}
	s.n--
	b = slices.Delete(b, i, i+1)
	room := s.rooms[bi][i]
	s.rooms[bi] = slices.Delete(s.rooms[bi], i, i+1)
	if len(b) == 0 {
		if len(s.blocks) == 1 {
			s.spare = b
		}
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		s.rooms = slices.Delete(s.rooms, bi, bi+1)
		s.most = slices.Delete(s.most, bi, bi+1)
		return true
	}
	s.blocks[bi] = b
	if m := s.most[bi]; room.cpu == m.cpu || room.mem == m.mem {
		s.most[bi] = mostOf(s.rooms[bi])
	}
	return true
}

// each calls f on every rank in order until f returns false.
func (s *rankSet) each(f func(rank) bool) {
	for _, b := range s.blocks {
		for _, r := range b {
			if !f(r) {
				return
			}
		}
	}
}

// eachRoom is each over the ranks whose room may hold need: blocks where
// no machine has room for it are skipped whole. A need of zero skips
// nothing, not even a machine over its capacity (room below zero), which
// the capacity checker lets take units that ask for nothing.
func (s *rankSet) eachRoom(need demand, f func(rank) bool) {
	if need.zero() {
		s.each(f)
		return
	}
	short := func(room demand) bool {
		return (need.cpu > 0 && room.cpu < need.cpu) || (need.mem > 0 && room.mem < need.mem)
	}
	for i, b := range s.blocks {
		if short(s.most[i]) {
			continue
		}
		rs := s.rooms[i]
		for j, r := range b {
			if short(rs[j]) {
				continue
			}
			if !f(r) {
				return
			}
		}
	}
}

// relabel rewrites every rank in place with fresh labels. Relabelling keeps
// the order of machine IDs, and loads do not change, so the order of the
// set does not change either.
func (s *rankSet) relabel(newLabel func(uint32) uint32) {
	for _, b := range s.blocks {
		for i, r := range b {
			b[i] = r&^0xffffffff | uint64(newLabel(rankLabel(r)))
		}
	}
}

// pool is the set of present machines matching one MachineMetadata selector,
// ranked. Units with the same selector share a pool, so finding the
// least-loaded machine with role=web looks only at role=web machines, in
// rank order, instead of filtering every machine. The pool of the empty
// selector holds every machine.
type pool struct {
	key     string                         // canonical selector, see selectorKey
	sel     map[string][]string            // key -> accepted values
	cons    []func(map[string]string) bool // the other terms (unit.Constraint), compiled once per pool
	members map[string]*mstate
	ranked  rankSet // members' ranks
	refs    int     // units using the pool; it is dropped at zero
}

// matches reports whether metadata md satisfies the pool's selector: its
// key=value terms and its other terms.
func (p *pool) matches(md map[string]string) bool {
	if !matches(p.sel, md) {
		return false
	}
	for _, c := range p.cons {
		if !c(md) {
			return false
		}
	}
	return true
}

func (p *pool) has(m *mstate) bool {
	_, ok := p.members[m.ID]
	return ok
}

func (p *pool) add(m *mstate) {
	p.members[m.ID] = m
	p.ranked.insert(m.key, m.room)
	m.pools = append(m.pools, p)
}

// selectorKey is the canonical form of a MachineMetadata selector: keys
// sorted, values sorted, NUL-separated (NUL cannot occur in a unit file).
func selectorKey(sel map[string][]string) string {
	if len(sel) == 0 {
		return ""
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		vs := uniqSorted(sel[k])
		b.WriteString(k)
		for _, v := range vs {
			b.WriteByte(0)
			b.WriteString(v)
		}
		b.WriteByte(1)
	}
	return b.String()
}

// poolKey is the canonical form of a whole selector: the key=value terms
// (selectorKey) and the other terms, sorted.
func poolKey(sel map[string][]string, cons []unit.Constraint) string {
	k := selectorKey(sel)
	if len(cons) == 0 {
		return k
	}
	terms := make([]string, len(cons))
	for i, c := range cons {
		terms[i] = c.Key + "\x00" + string(c.Op) + "\x00" + strings.Join(c.Values, "\x00")
	}
	sort.Strings(terms)
	return k + "\x02" + strings.Join(slices.Compact(terms), "\x02")
}

// firstKey is the smallest key of a selector: pools are indexed by the
// key=value pairs of their first key, so a machine joining finds the pools it
// may belong to without testing every pool.
func firstKey(sel map[string][]string) string {
	first := ""
	for k := range sel {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

func kv(k, v string) string { return k + "\x00" + v }

// matches reports whether metadata md satisfies sel: for every key, md holds
// one of its values (OR within a key, AND across keys, exact match).
func matches(sel map[string][]string, md map[string]string) bool {
	for k, vs := range sel {
		v, ok := md[k]
		if !ok || !slices.Contains(vs, v) {
			return false
		}
	}
	return true
}

// uniqSorted returns the distinct values of vs, sorted, in a new slice.
func uniqSorted(vs []string) []string {
	out := slices.Clone(vs)
	sort.Strings(out)
	return slices.Compact(out)
}
