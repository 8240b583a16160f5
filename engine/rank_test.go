package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
)

func TestRankSet(t *testing.T) {
	tests := []struct {
		name string
		keys int // distinct keys drawn from
		ops  int
	}{
		{"one block", 50, 500},
		{"many blocks, splits and empty blocks", 5000, 40000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var s rankSet
			var ref []rank
			for range tc.ops {
				r := rankOf(rng.IntN(8), uint32(rng.IntN(tc.keys)))
				i, found := slices.BinarySearch(ref, r)
				if rng.IntN(3) > 0 {
					if found {
						continue
					}
					s.insert(r, demand{})
					ref = slices.Insert(ref, i, r)
				} else {
					require.Equal(t, found, s.delete(r))
					if found {
						ref = slices.Delete(ref, i, i+1)
					}
				}
			}
			var got []rank
			s.each(func(r rank) bool { got = append(got, r); return true })
			require.Equal(t, ref, got)
			require.Equal(t, len(ref), s.n)
			for _, b := range s.blocks {
				require.NotEmpty(t, b)
				require.LessOrEqual(t, len(b), blockSize)
			}
		})
	}
}

// TestSchedulerMachineLabels has machines join always between the same two
// neighbours in ID order, so their order labels run out of room and every
// machine is relabelled; ties must still go by machine ID.
func TestSchedulerMachineLabels(t *testing.T) {
	s := NewScheduler(Snapshot{Machines: machines("a", "b")})
	for i := 1; i <= 80; i++ {
		// "a0…0" sorts between "a" and every earlier one.
		s.SetMachine(machine.Machine{ID: "a" + strings.Repeat("0", 81-i)})
	}
	s.Plan()
	var ids []string
	prev := uint32(0)
	for _, m := range s.order {
		require.Greater(t, m.label, prev, "labels follow ID order")
		prev = m.label
		ids = append(ids, m.ID)
		require.Same(t, m, s.byLabel[m.label])
	}
	require.True(t, slices.IsSorted(ids))
	// Least loaded, ties by ID: units fill machines in ID order.
	for i := range len(ids) + 1 {
		s.SetUnit(Unit{Name: fmt.Sprintf("u%03d.service", i), Hash: "h", State: "launched"})
	}
	s.Plan()
	for i, id := range ids {
		want := []string{fmt.Sprintf("u%03d.service", i)}
		if i == 0 {
			want = append(want, fmt.Sprintf("u%03d.service", len(ids)))
		}
		require.ElementsMatch(t, want, sortedKeys(s.machines[id].units), id)
	}
}

// TestRankSetRoom checks that a walk for a demand visits, in order, exactly
// the ranks whose room holds it, whatever inserts, deletes and splits did
// to the blocks' maxima.
func TestRankSetRoom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var s rankSet
	rooms := map[rank]demand{}
	for range 5000 {
		r := rankOf(rng.IntN(50), uint32(rng.IntN(2000)))
		if _, ok := rooms[r]; ok && rng.IntN(2) == 0 {
			require.True(t, s.delete(r))
			delete(rooms, r)
			continue
		}
		if _, ok := rooms[r]; ok {
			continue
		}
		d := demand{cpu: rng.Int64N(100) - 10, mem: rng.Int64N(100) - 10} // below zero: over capacity
		s.insert(r, d)
		rooms[r] = d
	}
	for _, need := range []demand{{}, {cpu: 50}, {mem: 90}, {cpu: 99, mem: 99}, {cpu: 100}} {
		var want, got []rank
		s.each(func(r rank) bool {
			if d := rooms[r]; (need.cpu == 0 || d.cpu >= need.cpu) && (need.mem == 0 || d.mem >= need.mem) {
				want = append(want, r)
			}
			return true
		})
		s.eachRoom(need, func(r rank) bool { got = append(got, r); return true })
		require.Equal(t, want, got, "need %+v", need)
	}
}
