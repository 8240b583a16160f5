package engine

import (
	"container/heap"
	"slices"
	"sort"
)

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedPairs[V any](m map[[2]string]V) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	return keys
}

// unitQueue orders units to place: units without MachineOf first, so that
// peers are placed before their followers, then by name. A burst of units
// (a whole cluster when a leader starts) is sorted once; units queued while
// planning go through a heap.
type unitQueue struct {
	pending []*ustate // queued since the last pop, in no order
	ready   []*ustate // sorted
	pos     int       // next in ready
	heap    unitHeap
}

func queueLess(a, b *ustate) bool {
	fa, fb := len(a.Fleet.MachineOf) > 0, len(b.Fleet.MachineOf) > 0
	if fa != fb {
		return fb
	}
	return a.Name < b.Name
}

func queueCmp(a, b *ustate) int {
	switch {
	case queueLess(a, b):
		return -1
	case queueLess(b, a):
		return 1
	}
	return 0
}

func (q *unitQueue) push(u *ustate) { q.pending = append(q.pending, u) }

func (q *unitQueue) len() int { return len(q.pending) + len(q.ready) - q.pos + len(q.heap) }

func (q *unitQueue) pop() *ustate {
	if len(q.pending) > 0 {
		q.absorb()
	}
	if q.pos < len(q.ready) && (len(q.heap) == 0 || queueLess(q.ready[q.pos], q.heap[0])) {
		u := q.ready[q.pos]
		q.ready[q.pos] = nil
		q.pos++
		if q.pos == len(q.ready) {
			q.ready, q.pos = q.ready[:0], 0
		}
		return u
	}
	return heap.Pop(&q.heap).(*ustate)
}

// absorb moves pending units into order: a few into the heap, many sorted
// and merged into ready.
func (q *unitQueue) absorb() {
	if len(q.pending) < 64 {
		for _, u := range q.pending {
			heap.Push(&q.heap, u)
		}
		q.pending = q.pending[:0]
		return
	}
	slices.SortFunc(q.pending, queueCmp)
	rest := q.ready[q.pos:]
	merged := make([]*ustate, 0, len(rest)+len(q.pending))
	i, j := 0, 0
	for i < len(rest) && j < len(q.pending) {
		if queueLess(q.pending[j], rest[i]) {
			merged = append(merged, q.pending[j])
			j++
		} else {
			merged = append(merged, rest[i])
			i++
		}
	}
	merged = append(append(merged, rest[i:]...), q.pending[j:]...)
	q.ready, q.pos, q.pending = merged, 0, nil
}

type unitHeap []*ustate

func (h unitHeap) Len() int           { return len(h) }
func (h unitHeap) Less(i, j int) bool { return queueLess(h[i], h[j]) }
func (h unitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *unitHeap) Push(x any)        { *h = append(*h, x.(*ustate)) }
func (h *unitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
