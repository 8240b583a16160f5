package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestSchedulerHoldsAtMostOnce covers at-most-once units whose machine
// leaves: their placement there is held (not written, not placed
// elsewhere) until the engine releases it, while other units move at once.
func TestSchedulerHoldsAtMostOnce(t *testing.T) {
	del := func(m, name string) registry.PlanOp {
		return registry.PlanOp{Placement: registry.Placement{Machine: m, Name: name}}
	}
	put := func(m string, u Unit) registry.PlanOp {
		return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: u.Name, Hash: u.Hash, DesiredState: u.State}}
	}
	// release does what the engine does a margin after the machine left:
	// delete the held placements (registry.ReleaseHeld), then Release.
	release := func(h *harness, id string) []string {
		names := h.s.HeldOn(id)
		for _, n := range names {
			delete(h.etcd, [2]string{id, n})
		}
		h.s.Release(id, names)
		return names
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"held on the lost machine, placed elsewhere only when released", func(t *testing.T) {
			amo, plain := mkUnit(t, "db.service", "AtMostOnce=true"), mkUnit(t, "web.service")
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{amo, plain}})
			require.Equal(t, map[string][]string{"db.service": {"m1"}, "web.service": {"m2"}}, h.where())
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Empty(t, p.Ops, "nothing written for the held unit")
			require.Equal(t, map[string]string{"db.service": "AtMostOnce: its machine m1 left; placed elsewhere once its copy there has surely stopped"}, p.Unplaced)
			require.Equal(t, []string{"m1"}, h.s.Held())
			require.Equal(t, []string{"db.service"}, h.s.HeldOn("m1"))

			require.Equal(t, []string{"db.service"}, release(h, "m1"))
			p = h.plan()
			require.Equal(t, []registry.PlanOp{put("m2", amo)}, p.Ops)
			require.Equal(t, []string{"db.service"}, p.Cleared)
			require.Empty(t, h.s.Held())
			checkInvariants(t, h)
		}},
		{"a plain unit on the lost machine moves at once", func(t *testing.T) {
			amo, plain := mkUnit(t, "db.service", "AtMostOnce=true"), mkUnit(t, "web.service", "MachineOf=db.service")
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{amo, plain}})
			require.Equal(t, map[string][]string{"db.service": {"m1"}, "web.service": {"m1"}}, h.where())
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Equal(t, []registry.PlanOp{del("m1", "web.service")}, p.Ops, "its follower leaves and waits for it")
			require.Equal(t, "waiting for MachineOf peer db.service to be placed", p.Unplaced["web.service"])
			release(h, "m1")
			p = h.plan()
			require.Equal(t, []registry.PlanOp{put("m2", amo), put("m2", plain)}, p.Ops, "the follower follows it")
			checkInvariants(t, h)
		}},
		{"the machine returns before the release: nothing is written, nothing moves", func(t *testing.T) {
			amo := mkUnit(t, "db.service", "AtMostOnce=true")
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{amo}})
			before := h.where()
			h.s.RemoveMachine("m1")
			h.plan()
			h.s.SetMachine(machine.Machine{ID: "m1"})
			p := h.plan()
			require.Empty(t, p.Ops)
			require.Equal(t, []string{"db.service"}, p.Cleared)
			require.Equal(t, before, h.where())
			require.Empty(t, h.s.Held())
			h.s.Release("m1", []string{"db.service"}) // a release racing the return does nothing
			require.Empty(t, h.plan().Ops)
			require.Equal(t, before, h.where())
		}},
		{"global and pinned units are kept, not held", func(t *testing.T) {
			g, pin := mkUnit(t, "g.service", "Global=true", "AtMostOnce=true"), mkUnit(t, "pin.service", "MachineID=m1", "AtMostOnce=true")
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{g, pin}})
			h.s.RemoveMachine("m1")
			p := h.plan()
			require.Empty(t, p.Ops)
			require.Empty(t, h.s.Held(), "nothing to release: they can run nowhere else")
			require.Contains(t, p.Unplaced["pin.service"], "MachineID=m1 is not present")
		}},
		{"a new scheduler holds what it finds on an absent machine", func(t *testing.T) {
			// A new engine leader does not know when m1 left: it holds the
			// placement from the start of its term.
			amo := mkUnit(t, "db.service", "AtMostOnce=true")
			h, p := newHarness(t, Snapshot{Machines: machines("m2"), Units: []Unit{amo},
				Placements: []registry.Placement{{Machine: "m1", Name: "db.service", Hash: amo.Hash, DesiredState: amo.State}}})
			require.Empty(t, p.Ops)
			require.Equal(t, []string{"m1"}, h.s.Held())
			release(h, "m1")
			require.Equal(t, []registry.PlanOp{put("m2", amo)}, h.plan().Ops)
		}},
		{"a held unit made inactive or no longer at-most-once is not held any more", func(t *testing.T) {
			amo := mkUnit(t, "db.service", "AtMostOnce=true")
			other := mkUnit(t, "job.service", "AtMostOnce=true")
			h, _ := newHarness(t, Snapshot{Machines: machines("m1", "m2"), Units: []Unit{amo, other},
				Placements: []registry.Placement{
					{Machine: "m1", Name: "db.service", Hash: amo.Hash, DesiredState: amo.State},
					{Machine: "m1", Name: "job.service", Hash: other.Hash, DesiredState: other.State}}})
			h.s.RemoveMachine("m1")
			h.plan()
			require.Equal(t, []string{"db.service", "job.service"}, h.s.HeldOn("m1"))
			inactive := amo
			inactive.State = registry.StateInactive
			h.s.SetUnit(inactive)
			require.Equal(t, []registry.PlanOp{del("m1", "db.service")}, h.plan().Ops)
			plain := mkUnit(t, "job.service", "AtMostOnce=false")
			h.s.SetUnit(plain)
			require.Equal(t, []registry.PlanOp{del("m1", "job.service"), put("m2", plain)}, h.plan().Ops)
			require.Empty(t, h.s.Held())
			checkInvariants(t, h)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}
