package engine

import (
	"fmt"
	"slices"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Policy says which feasible machine a unit goes to (fleet.conf placement=).
type Policy string

const (
	// PolicySpread, the default, picks the least-loaded machine: the lowest
	// share of its dominant resource (CPU or memory, whichever is fuller),
	// then the fewest units. Machines fill evenly; one lost costs little.
	PolicySpread Policy = "spread"
	// PolicyBinpack picks the fullest machine the unit fits on, keeping
	// other machines free for large units (or to be turned off).
	PolicyBinpack Policy = "binpack"
)

// ParsePolicy reads a placement= value; "" is the default, spread.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicySpread:
		return PolicySpread, nil
	case PolicyBinpack:
		return PolicyBinpack, nil
	}
	return "", fmt.Errorf("placement %q: want spread or binpack", s)
}

// Loads pack into the 32 bits above a rank's label: the dominant share in
// shareLevels steps, then the unit count. Machines without a capacity (an
// older fleetd) have share 0, so they rank by count alone, as in fleet.
const (
	countBits   = 20
	maxCount    = 1<<countBits - 1
	shareLevels = 1<<(32-countBits) - 1
)

// load is what ranks m in the pools: under spread the lowest share and
// count come first, under binpack the highest share (then the lowest count,
// so units without demands still spread).
func (s *Scheduler) load(m *mstate) int {
	q := shareLevel(m.used, m.Capacity)
	if s.policy == PolicyBinpack {
		q = shareLevels - q
	}
	return q<<countBits | min(len(m.units), maxCount)
}

// demand is what a unit asks of a machine.
type demand struct{ cpu, mem int64 }

func demandOf(u *ustate) demand { return demand{cpu: u.Fleet.CPU, mem: u.Fleet.Memory} }

func (d demand) zero() bool { return d.cpu == 0 && d.mem == 0 }

// shareLevel is the dominant resource's share of capacity, in shareLevels
// steps (0 without a capacity).
func shareLevel(used demand, c *machine.Capacity) int {
	if c == nil {
		return 0
	}
	share := 0.0
	for _, r := range [2][2]int64{{used.cpu, c.CPU}, {used.mem, c.Memory}} {
		switch {
		case r[0] == 0:
		case r[1] <= 0:
			share = 1
		default:
			share = max(share, float64(r[0])/float64(r[1]))
		}
	}
	return int(min(share, 1) * shareLevels)
}

// account adds (on) or removes u's demand and group membership on m. The
// model calls it whenever u is recorded on or taken off m, before m is
// re-ranked.
func (s *Scheduler) account(u *ustate, m *mstate, on bool) {
	d := demandOf(u)
	if on {
		m.used.cpu += d.cpu
		m.used.mem += d.mem
	} else {
		m.used.cpu -= d.cpu
		m.used.mem -= d.mem
	}
	if g := u.Fleet.Group; g != "" && u.Invalid == "" {
		if on {
			if m.group == nil {
				m.group = map[string][]*ustate{}
			}
			m.group[g] = append(m.group[g], u)
		} else {
			m.group[g] = slices.DeleteFunc(m.group[g], func(x *ustate) bool { return x == u })
			if len(m.group[g]) == 0 {
				delete(m.group, g)
			}
		}
	}
}

// free returns what m has left for u: its capacity less what the units on
// it use, u excluded when it is one of them.
func free(u *ustate, m *mstate) demand {
	used := m.used
	if _, ok := m.units[u.Name]; ok {
		d := demandOf(u)
		used.cpu -= d.cpu
		used.mem -= d.mem
	}
	return demand{cpu: m.Capacity.CPU - used.cpu, mem: m.Capacity.Memory - used.mem}
}

// roomOf is what m has free: unlimited without a capacity.
func roomOf(m *mstate) demand {
	if m.Capacity == nil {
		return unlimited
	}
	return demand{cpu: m.Capacity.CPU - m.used.cpu, mem: m.Capacity.Memory - m.used.mem}
}

// checkResources is the capacity checker: never overcommit a machine that
// reports its capacity. It names the first resource that is short.
func checkResources(u *ustate, m *mstate) rejection {
	d := demandOf(u)
	if m.Capacity == nil || d.zero() {
		return rejection{}
	}
	f := free(u, m)
	if d.cpu > f.cpu {
		return rejection{kind: rejResources, other: resCPU}
	}
	if d.mem > f.mem {
		return rejection{kind: rejResources, other: resMemory}
	}
	return rejection{}
}

const (
	resCPU    = "cpu"
	resMemory = "memory"
)

// whyShort says, for a unit kept off every candidate by its demand, what is
// short and the most there is: "no machine has 2 GiB memory free; largest
// free: 1.5 GiB on 1a2b3c4d".
func whyShort(u *ustate, res string, cands []*mstate) string {
	var (
		best   *mstate
		bestN  int64
		amount = func(d demand) int64 { return d.mem }
		format = unit.FormatMemory
		what   = "memory"
	)
	if res == resCPU {
		amount, format, what = func(d demand) int64 { return d.cpu }, unit.FormatCPU, "CPU"
	}
	for _, m := range cands {
		if m.Capacity == nil {
			continue
		}
		if n := amount(free(u, m)); best == nil || n > bestN {
			best, bestN = m, n
		}
	}
	why := fmt.Sprintf("no machine has %s %s free", format(amount(demandOf(u))), what)
	if best != nil {
		why += fmt.Sprintf("; largest free: %s on %s", format(max(bestN, 0)), best.ShortID())
	}
	return why
}

// capacityChanged re-ranks m and has its units checked again: a machine
// whose capacity shrank may now hold more than it can, and one that grew
// may take units that fit nowhere.
func (s *Scheduler) capacityChanged(m *mstate) {
	s.rerank(m)
	for name := range m.units {
		s.checks[[2]string{name, m.ID}] = struct{}{}
	}
	s.freed[m.ID] = struct{}{}
	s.staleSmall = true
}

func sameCapacity(a, b *machine.Capacity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
