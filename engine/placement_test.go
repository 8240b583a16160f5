package engine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
)

const gib = int64(1) << 30

// capMachine is a machine offering cores and GiB of memory.
func capMachine(id string, cores, gibs int64, md map[string]string) machine.Machine {
	return machine.Machine{ID: id, Metadata: md, Capacity: &machine.Capacity{CPU: cores * 1000, Memory: gibs * gib}}
}

func TestResourceChecker(t *testing.T) {
	tests := []struct {
		name   string
		units  func(t *testing.T) []Unit
		want   map[string][]string
		reason map[string]string
	}{
		{
			name: "never overcommits; the unplaced names the short resource and the largest free",
			units: func(t *testing.T) []Unit {
				var us []Unit
				for i := range 4 {
					us = append(us, mkUnit(t, fmt.Sprintf("u%d.service", i), "Memory=1.5G"))
				}
				return us
			},
			// m1 2 GiB, m2 4 GiB: u0 -> m2 (least loaded: empty, ID), then by share.
			want:   map[string][]string{"u0.service": {"m1"}, "u1.service": {"m2"}, "u2.service": {"m2"}},
			reason: map[string]string{"u3.service": "no machine has 1.5 GiB memory free; largest free: 1 GiB on m2"},
		},
		{
			name: "CPU is short",
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "big.service", "CPU=8")}
			},
			reason: map[string]string{"big.service": "no machine has 8 CPU free; largest free: 4 on m2"},
		},
		{
			name: "units without demand fit a full machine",
			units: func(t *testing.T) []Unit {
				return []Unit{mkUnit(t, "a.service", "Memory=2G", "MachineID=m1"), mkUnit(t, "b.service", "MachineID=m1")}
			},
			want: map[string][]string{"a.service": {"m1"}, "b.service": {"m1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Schedule(Snapshot{Machines: []machine.Machine{capMachine("m1", 2, 2, nil), capMachine("m2", 4, 4, nil)}, Units: tt.units(t)})
			w := where(apply(nil, plan))
			for name, ms := range tt.want {
				require.Equal(t, ms, w[name], name)
			}
			for name, why := range tt.reason {
				require.Equal(t, why, plan.Unplaced[name])
			}
		})
	}
}

func TestRankers(t *testing.T) {
	ms := []machine.Machine{capMachine("m1", 4, 8, nil), capMachine("m2", 4, 8, nil), capMachine("m3", 4, 8, nil)}
	tests := []struct {
		policy Policy
		want   map[string]int // machine -> units
	}{
		// Spread: the least-loaded by the dominant resource.
		{PolicySpread, map[string]int{"m1": 2, "m2": 2, "m3": 2}},
		// Binpack: the fullest that fits; 2 GiB units, 4 to a machine.
		{PolicyBinpack, map[string]int{"m1": 4, "m2": 2}},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			var us []Unit
			for i := range 6 {
				us = append(us, mkUnit(t, fmt.Sprintf("u%d.service", i), "Memory=2G"))
			}
			plan := Schedule(Snapshot{Machines: ms, Units: us, Policy: tt.policy})
			got := map[string]int{}
			for _, op := range plan.Ops {
				got[op.Placement.Machine]++
			}
			require.Equal(t, tt.want, got)
		})
	}
	// Spread ranks by the dominant resource: the machine with the smaller
	// share of its fullest resource wins even with more units.
	s := NewScheduler(Snapshot{Machines: []machine.Machine{capMachine("a", 4, 4, nil), capMachine("b", 4, 4, nil)}, Units: []Unit{
		mkUnit(t, "cpu-heavy.service", "CPU=3", "MachineID=a"),
		mkUnit(t, "s1.service", "MachineID=b"), mkUnit(t, "s2.service", "MachineID=b"),
	}})
	s.Plan()
	s.SetUnit(mkUnit(t, "next.service", "Memory=100M"))
	require.Equal(t, "b", s.Plan().Ops[0].Placement.Machine)
	_, err := ParsePolicy("roundrobin")
	require.ErrorContains(t, err, `placement "roundrobin": want spread or binpack`)
}

func TestConstraintPools(t *testing.T) {
	ms := []machine.Machine{
		{ID: "m1", Metadata: map[string]string{"zone": "a", "cores": "4", "host": "web-1"}},
		{ID: "m2", Metadata: map[string]string{"zone": "b", "cores": "16", "host": "web-2", "gpu": "yes"}},
		{ID: "m3", Metadata: map[string]string{"zone": "c", "cores": "32", "host": "db-1"}},
	}
	tests := []struct {
		line string
		want []string // machines the unit may take, by Explain
	}{
		{"MachineMetadata=zone!=a", []string{"m2", "m3"}},
		{"MachineMetadata=zone in (a,c)", []string{"m1", "m3"}},
		{"MachineMetadata=zone not in (a,c)", []string{"m2"}},
		{"MachineMetadata=gpu exists", []string{"m2"}},
		{"MachineMetadata=gpu !exists", []string{"m1", "m3"}},
		{"MachineMetadata=cores>=16", []string{"m2", "m3"}},
		{"MachineMetadata=cores<16", []string{"m1"}},
		{"MachineMetadata=host~=^web-", []string{"m1", "m2"}},
		{"MachineMetadata=host~=^web- cores>4", []string{"m2"}},
		{"MachineMetadata=zone=a zone=b", []string{"m1", "m2"}}, // fleet's OR
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			s := NewScheduler(Snapshot{Machines: ms, Units: []Unit{mkUnit(t, "x.service", tt.line)}})
			s.Plan()
			e, ok := s.Explain("x.service")
			require.True(t, ok)
			var may []string
			for _, v := range e.Machines {
				if v.Verdict != "rejected" {
					may = append(may, v.Machine)
				} else {
					require.Equal(t, "MachineMetadata", v.Checker)
				}
			}
			require.Equal(t, tt.want, may)
		})
	}
	// A machine joining later finds the operator-only pool too.
	s := NewScheduler(Snapshot{Units: []Unit{mkUnit(t, "x.service", "MachineMetadata=gpu exists")}})
	require.Equal(t, "no machines are present", s.Plan().Unplaced["x.service"])
	s.SetMachine(machine.Machine{ID: "n1", Metadata: map[string]string{"role": "web"}})
	require.Equal(t, "no machine has metadata gpu exists", s.Plan().Unplaced["x.service"])
	s.SetMachine(machine.Machine{ID: "n2", Metadata: map[string]string{"gpu": "1"}})
	require.Equal(t, "n2", s.Plan().Ops[0].Placement.Machine)
}

func TestSpreadAndMaxPerMachine(t *testing.T) {
	zone := func(id, z string) machine.Machine {
		return machine.Machine{ID: id, Metadata: map[string]string{"zone": z}}
	}
	t.Run("SpreadBy=zone over a, a, b puts 4 instances 2/2", func(t *testing.T) {
		var us []Unit
		for i := range 4 {
			us = append(us, mkUnit(t, fmt.Sprintf("web@%d.service", i), "SpreadBy=zone"))
		}
		plan := Schedule(Snapshot{Machines: []machine.Machine{zone("m1", "a"), zone("m2", "a"), zone("m3", "b"), {ID: "m4"}}, Units: us})
		byZone := map[string]int{}
		for _, op := range plan.Ops {
			byZone[map[string]string{"m1": "a", "m2": "a", "m3": "b"}[op.Placement.Machine]]++
		}
		require.Equal(t, map[string]int{"a": 2, "b": 2}, byZone, "m4 has no zone and takes none")
	})
	t.Run("spread is kept on failover", func(t *testing.T) {
		var us []Unit
		for i := range 4 {
			us = append(us, mkUnit(t, fmt.Sprintf("web@%d.service", i), "SpreadBy=zone"))
		}
		h, _ := newHarness(t, Snapshot{Machines: []machine.Machine{zone("m1", "a"), zone("m2", "b"), zone("m3", "b"), zone("m4", "a")}, Units: us})
		w := h.where()
		var lost string
		for name, ms := range w {
			if ms[0] == "m3" {
				lost = name
			}
		}
		require.NotEmpty(t, lost)
		h.s.RemoveMachine("m3")
		plan := h.plan()
		require.Equal(t, "m2", plan.Ops[len(plan.Ops)-1].Placement.Machine, "zone b had lost one: the unit goes back to b")
	})
	t.Run("MaxPerMachine bounds a group both ways", func(t *testing.T) {
		s := NewScheduler(Snapshot{Machines: machines("m1", "m2"), Units: []Unit{
			mkUnit(t, "db1.service", "Group=db", "MaxPerMachine=1"),
			mkUnit(t, "db2.service", "Group=db", "MaxPerMachine=1"),
			mkUnit(t, "db3.service", "Group=db", "MaxPerMachine=1"),
			mkUnit(t, "other.service", "Group=db", "MachineID=m1"),
		}})
		plan := s.Plan()
		w := where(apply(nil, plan))
		require.Len(t, w, 2, "two machines, one db each; %v", plan.Unplaced)
		require.Contains(t, plan.Unplaced, "other.service", "a unit without the bound may not put one with it over")
		require.Contains(t, plan.Unplaced["db3.service"], "db allows 1 per machine")
	})
}

func TestExplain(t *testing.T) {
	s := NewScheduler(Snapshot{
		Machines: []machine.Machine{capMachine("m1", 2, 1, map[string]string{"role": "web"}), capMachine("m2", 2, 8, map[string]string{"role": "web"}), capMachine("m3", 2, 8, map[string]string{"role": "db"})},
		Units:    []Unit{mkUnit(t, "big.service", "Memory=2G", "MachineMetadata=role=web"), mkUnit(t, "small.service", "MachineID=m2")},
	})
	s.Plan()
	e, ok := s.Explain("big.service")
	require.True(t, ok)
	require.Equal(t, PolicySpread, e.Policy)
	require.Equal(t, []Verdict{
		{Machine: "m1", Verdict: "rejected", Checker: "Resources", Detail: "needs 2 GiB memory, 1 GiB free", Units: 0},
		{Machine: "m2", Verdict: "placed", Score: 1 - float64(shareLevel(demand{mem: 2 * gib}, &machine.Capacity{CPU: 2000, Memory: 8 * gib}))/shareLevels, Units: 2},
		{Machine: "m3", Verdict: "rejected", Checker: "MachineMetadata", Detail: "no metadata role=web", Units: 0},
	}, e.Machines)
	s.SetUnit(mkUnit(t, "next.service", "Memory=1G"))
	e, _ = s.Explain("next.service")
	require.Equal(t, "chosen", e.Machines[0].Verdict, "m1 is empty and has room for 1 GiB")
	_, ok = s.Explain("nope.service")
	require.False(t, ok)
}
