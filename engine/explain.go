package engine

import (
	"fmt"

	"github.com/seed-a1ce88ea/fleet/unit"
)

// Verdict is one machine's answer for one unit, as fleetctl explain shows it.
type Verdict struct {
	Machine string `json:"machineID"`
	// Verdict is "placed" (the unit runs there), "chosen" (the next plan
	// would put it there), "feasible" or "rejected".
	Verdict string `json:"verdict"`
	// Checker names the rule that rejected the machine (MachineID,
	// MachineMetadata, MachineOf, Resources, MaxPerMachine, Conflicts,
	// Replaces), Detail says how.
	Checker string `json:"checker,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Score ranks the machines that take the unit, higher first: under
	// spread 1 minus its fullest resource's share once the unit is there,
	// under binpack that share.
	Score float64 `json:"score"`
	// Units is how many units the machine holds.
	Units int `json:"units"`
}

// Explanation is why a unit is where it is, or nowhere.
type Explanation struct {
	Unit     string    `json:"unit"`
	Policy   Policy    `json:"policy"`
	Unplaced string    `json:"unplaced,omitempty"` // the reason, when it runs nowhere
	Machines []Verdict `json:"machines"`
}

// Explain runs every checker of the unit called name against every present
// machine, in machine ID order, and scores those that take it. ok is false
// when the scheduler does not know the unit. It decides nothing.
func (s *Scheduler) Explain(name string) (e Explanation, ok bool) {
	u := s.units[name]
	if u == nil {
		return Explanation{}, false
	}
	e = Explanation{Unit: name, Policy: s.policy, Unplaced: u.reason}
	var chosen *mstate
	if u.on.len() == 0 && u.wants() && u.Invalid == "" && !u.Fleet.Global && s.blocked(u) == "" {
		chosen = s.best(u)
	}
	for _, m := range s.order {
		v := Verdict{Machine: m.ID, Units: len(m.units)}
		switch r := s.check(u, m); {
		case u.Invalid != "":
			v.Verdict, v.Checker, v.Detail = "rejected", "Invalid", u.Invalid
		case u.on.has(m.ID) && r.ok():
			v.Verdict = "placed"
		case !r.ok():
			v.Verdict, v.Checker, v.Detail = "rejected", checkerNames[r.kind], s.detail(u, m, r)
		default:
			v.Verdict = "feasible"
			if m == chosen {
				v.Verdict = "chosen"
			}
		}
		if v.Verdict != "rejected" {
			v.Score = s.score(u, m)
		}
		e.Machines = append(e.Machines, v)
	}
	return e, true
}

// score is how well m takes u, higher better (see Verdict.Score).
func (s *Scheduler) score(u *ustate, m *mstate) float64 {
	used := m.used
	if _, on := m.units[u.Name]; !on {
		d := demandOf(u)
		used.cpu += d.cpu
		used.mem += d.mem
	}
	share := float64(shareLevel(used, m.Capacity)) / shareLevels
	if s.policy == PolicyBinpack {
		return share
	}
	return 1 - share
}

// detail says in words why r keeps u off m.
func (s *Scheduler) detail(u *ustate, m *mstate, r rejection) string {
	switch r.kind {
	case rejMachineID:
		return "not MachineID=" + u.Fleet.MachineID
	case rejMetadata:
		return "no metadata " + describeFleet(u.Fleet)
	case rejMachineOf:
		return r.other + " does not run there"
	case rejConflict:
		return "conflicts with " + r.other
	case rejReplaced:
		return "replaced by " + r.other
	case rejResources:
		f, d := free(u, m), demandOf(u)
		if r.other == resCPU {
			return fmt.Sprintf("needs %s CPU, %s free", unit.FormatCPU(d.cpu), unit.FormatCPU(max(f.cpu, 0)))
		}
		return fmt.Sprintf("needs %s memory, %s free", unit.FormatMemory(d.mem), unit.FormatMemory(max(f.mem, 0)))
	}
	return r.other
}
