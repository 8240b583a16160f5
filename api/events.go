package api

import (
	"context"
	"maps"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// Event types. The set may grow; consumers skip types they do not know.
const (
	// EventStreamStarted is always the first event of a stream: every
	// change after Revision follows. MachineID is the engine leader then.
	EventStreamStarted = "stream.started"
	// EventUnitSubmitted: a unit was submitted. To is its desired state.
	EventUnitSubmitted = "unit.submitted"
	// EventUnitReplaced: a unit's file was replaced (fleetctl --replace).
	EventUnitReplaced = "unit.replaced"
	// EventUnitDestroyed: a unit was destroyed.
	EventUnitDestroyed = "unit.destroyed"
	// EventUnitTarget: a unit's desired state changed, From -> To.
	EventUnitTarget = "unit.target"
	// EventUnitPlaced: the engine scheduled a unit on MachineID; To is the
	// scheduled state (loaded or launched).
	EventUnitPlaced = "unit.placed"
	// EventUnitMoved: the engine moved a unit from machine From to
	// MachineID (= To).
	EventUnitMoved = "unit.moved"
	// EventUnitUnplaced: the engine unscheduled a unit from MachineID.
	EventUnitUnplaced = "unit.unplaced"
	// EventUnitUnplaceable: the engine found no machine for a unit; To is
	// why (the constraint no machine meets).
	EventUnitUnplaceable = "unit.unplaceable"
	// EventUnitState: systemd on MachineID reports a unit in a new state,
	// as "<active>/<sub>": From -> To (From empty for the first report).
	EventUnitState = "unit.state"
	// EventMachineJoined: a machine joined the cluster.
	EventMachineJoined = "machine.joined"
	// EventMachineLeft: a machine left the cluster (its lease ended).
	EventMachineLeft = "machine.left"
	// EventMachineUpdated: a machine's IP or metadata changed.
	EventMachineUpdated = "machine.updated"
	// EventLeaderChanged: engine leadership moved From -> To (machine IDs;
	// empty for none). MachineID is the new leader.
	EventLeaderChanged = "leader.changed"
	// EventAPICall: a call that may change the cluster reached the API of
	// MachineID's fleetd. Identity made it (a token's name, a
	// certificate's common name, "root" on the unix socket), Action says
	// what it asked (unit.create, unit.replace, unit.set-state,
	// unit.destroy, machines.set-metadata, or the method and route), Unit
	// which unit, To the desired state asked for, and Result the HTTP
	// status of the answer ("201 Created").
	EventAPICall = "api.call"
	// EventRolloutStarted: rolling update Rollout began (fleetctl update);
	// To is the new body's hash.
	EventRolloutStarted = "rollout.started"
	// EventRolloutStep: a copy of Unit (on MachineID for a global unit) in
	// Rollout moved From -> To (pending, updating, healthy, failed,
	// reverting, reverted); Result says why, when it failed.
	EventRolloutStep = "rollout.step"
	// EventRolloutPhase: Rollout moved From -> To (running, reverting,
	// failed, done, reverted); Result is its message.
	EventRolloutPhase = "rollout.phase"
	// EventRolloutPaused and EventRolloutResumed: an operator paused or
	// resumed Rollout.
	EventRolloutPaused  = "rollout.paused"
	EventRolloutResumed = "rollout.resumed"
)

// Event is one change in the cluster, as GET /fleet/v1/events streams it
// (one JSON object per line). Field names are a stable contract.
type Event struct {
	Type string `json:"type"`
	// Time is when fleetd saw the change.
	Time time.Time `json:"time"`
	// Revision is the etcd revision of the change.
	Revision  int64             `json:"revision,omitempty"`
	Unit      string            `json:"unit,omitempty"`
	MachineID string            `json:"machineID,omitempty"`
	PrimaryIP string            `json:"primaryIP,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	From      string            `json:"from,omitempty"`
	To        string            `json:"to,omitempty"`
	// Identity, Action and Result describe an EventAPICall.
	Identity string `json:"identity,omitempty"`
	Action   string `json:"action,omitempty"`
	Result   string `json:"result,omitempty"`
	// Rollout names the rolling update of an EventRollout* event.
	Rollout string `json:"rollout,omitempty"`
}

// registryEvents streams events from etcd: one watch over fleet's keys from
// the current revision, each batch of changes translated to events.
func registryEvents(ctx context.Context, reg *registry.Registry, fn func(Event) error) error {
	rev, err := reg.Revision(ctx)
	if err != nil {
		return err
	}
	leader, err := reg.Leader(ctx)
	if err != nil {
		return err
	}
	ch := reg.WatchChanges(ctx, rev)
	if err := fn(Event{Type: EventStreamStarted, Time: time.Now(), Revision: rev, MachineID: leader}); err != nil {
		return err
	}
	for b := range ch {
		if b.Err != nil {
			return errorf(ErrUnavailable, "event stream ended: %v", b.Err)
		}
		var leaderChanged bool
		for _, e := range translate(b.Changes, &leaderChanged) {
			if err := fn(e); err != nil {
				return err
			}
		}
		if leaderChanged {
			now, err := reg.Leader(ctx)
			if err != nil {
				return err
			}
			if now != leader {
				e := Event{Type: EventLeaderChanged, Time: time.Now(), Revision: b.Rev, MachineID: now, From: leader, To: now}
				leader = now
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return ctx.Err()
}

// translate turns one batch of changes (one etcd transaction or more) into
// events. A unit unscheduled from one machine and scheduled on another in the
// same batch is one move. leaderChanged is set when the engine election
// changed; the caller reads the new leader.
func translate(changes []registry.Change, leaderChanged *bool) []Event {
	now := time.Now()
	// Pair each new placement with a removed placement of the same unit.
	movedFrom := map[int]string{}
	paired := map[int]bool{}
	for i, c := range changes {
		if c.Placement == nil || c.Placement.Prev != nil || c.Placement.Cur == nil {
			continue
		}
		for j, d := range changes {
			if d.Placement != nil && d.Placement.Cur == nil && !paired[j] && d.Placement.Prev.Name == c.Placement.Cur.Name {
				movedFrom[i], paired[j] = d.Placement.Prev.Machine, true
				break
			}
		}
	}
	var out []Event
	add := func(e Event, rev int64) {
		e.Time, e.Revision = now, rev
		out = append(out, e)
	}
	for i, c := range changes {
		switch {
		case c.Unit != nil:
			prev, cur := c.Unit.Prev, c.Unit.Cur
			switch {
			case prev == nil:
				add(Event{Type: EventUnitSubmitted, Unit: cur.Name, To: string(cur.DesiredState)}, c.Rev)
			case cur == nil:
				add(Event{Type: EventUnitDestroyed, Unit: prev.Name}, c.Rev)
			default:
				if prev.Hash != cur.Hash {
					add(Event{Type: EventUnitReplaced, Unit: cur.Name}, c.Rev)
				}
				if prev.DesiredState != cur.DesiredState {
					add(Event{Type: EventUnitTarget, Unit: cur.Name, From: string(prev.DesiredState), To: string(cur.DesiredState)}, c.Rev)
				}
			}
		case c.Placement != nil:
			prev, cur := c.Placement.Prev, c.Placement.Cur
			switch {
			case cur == nil && !paired[i]:
				add(Event{Type: EventUnitUnplaced, Unit: prev.Name, MachineID: prev.Machine}, c.Rev)
			case cur != nil && prev == nil:
				if from, ok := movedFrom[i]; ok {
					add(Event{Type: EventUnitMoved, Unit: cur.Name, MachineID: cur.Machine, From: from, To: cur.Machine}, c.Rev)
				} else {
					add(Event{Type: EventUnitPlaced, Unit: cur.Name, MachineID: cur.Machine, To: string(cur.DesiredState)}, c.Rev)
				}
			}
		case c.State != nil:
			prev, cur := c.State.Prev, c.State.Cur
			if cur == nil {
				continue // unloaded: the unplaced event tells
			}
			to := cur.ActiveState + "/" + cur.SubState
			from := ""
			if prev != nil {
				from = prev.ActiveState + "/" + prev.SubState
			}
			if from != to {
				add(Event{Type: EventUnitState, Unit: cur.Name, MachineID: cur.Machine, From: from, To: to}, c.Rev)
			}
		case c.Unplaced != nil:
			if cur := c.Unplaced.Cur; cur != nil && (c.Unplaced.Prev == nil || c.Unplaced.Prev.Reason != cur.Reason) {
				add(Event{Type: EventUnitUnplaceable, Unit: cur.Name, To: cur.Reason}, c.Rev)
			}
		case c.Machine != nil:
			prev, cur := c.Machine.Prev, c.Machine.Cur
			switch {
			case prev == nil:
				add(Event{Type: EventMachineJoined, MachineID: cur.ID, PrimaryIP: cur.PublicIP, Metadata: cur.Metadata}, c.Rev)
			case cur == nil:
				add(Event{Type: EventMachineLeft, MachineID: prev.ID, PrimaryIP: prev.PublicIP}, c.Rev)
			case prev.PublicIP != cur.PublicIP || !maps.Equal(prev.Metadata, cur.Metadata):
				add(Event{Type: EventMachineUpdated, MachineID: cur.ID, PrimaryIP: cur.PublicIP, Metadata: cur.Metadata}, c.Rev)
			}
		case c.Leader:
			*leaderChanged = true
		case c.Rollout != nil:
			for _, e := range rolloutEvents(c.Rollout.Prev, c.Rollout.Cur) {
				add(e, c.Rev)
			}
		case c.Audit != nil:
			a := c.Audit
			add(Event{Type: EventAPICall, Unit: a.Unit, MachineID: a.Machine, To: a.Detail,
				Identity: a.Identity, Action: a.Action, Result: resultText(a.Status)}, c.Rev)
		case c.RebootStep != nil && c.RebootStep.Cur != nil:
			add(rebootEvent(c.RebootStep.Prev, c.RebootStep.Cur), c.Rev)
		}
	}
	return out
}
