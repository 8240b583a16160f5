package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Rolling updates (fleetctl update): a rollout record at P/rollouts/<id>
// says what is being replaced and how far it got; the units it covers carry
// a marker (Unit.Rollout) naming it. Both change only together, in one
// transaction: StartRollout (the API) writes the new hash to every unit at
// once and holds their placements back at the old body; the engine leader
// then releases them step by step (AdvanceRollout, fenced by its
// leadership) and drops the markers at the end. Users only flip the
// record's Paused and Phase (ControlRollout); the engine does the rest.

// ErrRolloutActive is returned when a unit already belongs to a rollout
// that has not ended.
var ErrRolloutActive = errors.New("unit is being rolled out already")

// Rollout phases.
const (
	RolloutRunning   = "running"   // replacing copies, step by step
	RolloutReverting = "reverting" // putting the old body back on replaced copies
	RolloutFailed    = "failed"    // a copy failed and AutoRevert is off: waits for resume or undo
	RolloutDone      = "done"      // every copy runs the new body
	RolloutReverted  = "reverted"  // every copy runs the old body again
)

// Step states.
const (
	StepPending   = "pending"   // still on the old body
	StepUpdating  = "updating"  // released to the new body, not yet healthy for MinHealthy
	StepHealthy   = "healthy"   // the new copy was active (and passed its check) for MinHealthy
	StepFailed    = "failed"    // the new copy failed
	StepReverting = "reverting" // put back on the old body, not yet active again
	StepReverted  = "reverted"  // active on the old body again
)

// UnitRollout marks a unit record that belongs to a rollout. While Hash is
// set, its placements carry Hash (the old body) instead of the unit's hash,
// except on the machines in Updated: the engine's placements lag the unit
// record until each copy's turn (see Lag). A unit that is not global is
// released as a whole by clearing Hash; a global unit machine by machine.
type UnitRollout struct {
	ID      string   `json:"id"`
	Hash    string   `json:"hash,omitempty"`
	Updated []string `json:"updated,omitempty"`
}

// HashOn returns the body a placement of a unit whose record holds
// unitHash and marker ro carries on machine.
func (ro *UnitRollout) HashOn(unitHash, machine string) string {
	if ro == nil || ro.Hash == "" || slices.Contains(ro.Updated, machine) {
		return unitHash
	}
	return ro.Hash
}

// Equal reports whether two markers hold back the same placements.
func (ro *UnitRollout) Equal(o *UnitRollout) bool {
	if ro == nil || o == nil {
		return ro == o
	}
	return ro.ID == o.ID && ro.Hash == o.Hash && slices.Equal(ro.Updated, o.Updated)
}

// RolloutUnit is one unit of a rollout and the body it had before.
type RolloutUnit struct {
	Name   string `json:"name"`
	From   string `json:"from"`
	Global bool   `json:"global,omitempty"`
	// Template marks the submitted template of instances in the rollout:
	// it runs nowhere, so it has no steps, but it takes the new body (and
	// the old one back on a revert) so that instances started later from
	// it get the body their siblings run.
	Template bool `json:"template,omitempty"`
}

// RolloutStep is one copy to replace: a unit, or for a global unit one of
// its machines.
type RolloutStep struct {
	Unit    string    `json:"unit"`
	Machine string    `json:"machine,omitempty"`
	State   string    `json:"state"`
	Since   time.Time `json:"since,omitzero"`
	// Why a step failed.
	Reason string `json:"reason,omitempty"`
}

// Rollout is a rolling update, stored at P/rollouts/<ID>. ID is the target
// as asked ("web@*.service", "web@1.service", "agent.service").
type Rollout struct {
	ID    string        `json:"-"`
	To    string        `json:"to"`
	Units []RolloutUnit `json:"units"`
	Steps []RolloutStep `json:"steps"`

	MaxUnavailable int           `json:"maxUnavailable"`
	MinHealthy     time.Duration `json:"minHealthy"`
	HealthCheck    string        `json:"healthCheck,omitempty"`
	AutoRevert     bool          `json:"autoRevert,omitempty"`

	Phase   string `json:"phase"`
	Paused  bool   `json:"paused,omitempty"`
	Message string `json:"message,omitempty"`

	Identity string    `json:"identity,omitempty"`
	Started  time.Time `json:"started"`
	Changed  time.Time `json:"changed"`
	Ended    time.Time `json:"ended,omitzero"`
	// Reverting is when the rollout began to revert.
	Reverting time.Time `json:"reverting,omitzero"`

	Rev int64 `json:"-"` // mod revision, the fence of every change
}

// Active reports whether the rollout still holds its units.
func (ro Rollout) Active() bool {
	return ro.Phase == RolloutRunning || ro.Phase == RolloutReverting || ro.Phase == RolloutFailed
}

// Unit returns the rollout's entry for unit name.
func (ro Rollout) Unit(name string) (RolloutUnit, bool) {
	for _, u := range ro.Units {
		if u.Name == name {
			return u, true
		}
	}
	return RolloutUnit{}, false
}

func (k keys) rollouts() string         { return k.prefix + "rollouts/" }
func (k keys) rollout(id string) string { return k.rollouts() + id }

func decodeRollout(id string, v []byte) (Rollout, error) {
	var ro Rollout
	if err := json.Unmarshal(v, &ro); err != nil {
		return ro, fmt.Errorf("decode rollout %s: %w", id, err)
	}
	ro.ID = id
	return ro, nil
}

// StartRollout creates rollout ro over units (as read, with their ModRev)
// and stores body under ro.To, in one transaction: every unit gets hash
// ro.To and a marker holding its placements at its old hash, and ro is
// stored. It fails with ErrRolloutActive when a unit is in another active
// rollout, and with ErrConflict when a unit or the record changed since it
// was read (prevRev: the mod revision of the record ro replaces, 0 for
// none); then nothing is written.
func (r *Registry) StartRollout(ctx context.Context, ro Rollout, units []Unit, body string, prevRev int64) error {
	if ro.ID == "" || strings.Contains(ro.ID, "/") || len(units) == 0 {
		return fmt.Errorf("start rollout %q: an ID and units are required", ro.ID)
	}
	if len(units)+2 > maxTxnOps {
		return fmt.Errorf("start rollout %s: %d units in one rollout; at most %d", ro.ID, len(units), maxTxnOps-2)
	}
	key := r.keys.rollout(ro.ID)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", prevRev)}
	ops := []clientv3.Op{clientv3.OpPut(r.keys.body(ro.To), body), clientv3.OpPut(key, mustJSON(ro))}
	for _, u := range units {
		if u.Rollout != nil {
			return fmt.Errorf("start rollout %s: %s: %w (rollout %s)", ro.ID, u.Name, ErrRolloutActive, u.Rollout.ID)
		}
		uk := r.keys.unit(u.Name)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(uk), "=", u.ModRev))
		old := u.Hash
		u.Hash = ro.To
		u.Rollout = &UnitRollout{ID: ro.ID, Hash: old}
		ops = append(ops, clientv3.OpPut(uk, mustJSON(u)))
	}
	resp, err := r.txn(ctx, cmps, ops)
	if err != nil {
		return fmt.Errorf("start rollout %s: %w", ro.ID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("start rollout %s: %w: a unit or the rollout record changed meanwhile; try again", ro.ID, ErrConflict)
	}
	return nil
}

// GetRollout reads rollout id.
func (r *Registry) GetRollout(ctx context.Context, id string) (Rollout, error) {
	resp, err := r.get(ctx, r.keys.rollout(id))
	if err != nil {
		return Rollout{}, err
	}
	if len(resp.Kvs) == 0 {
		return Rollout{}, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	ro, err := decodeRollout(id, resp.Kvs[0].Value)
	ro.Rev = resp.Kvs[0].ModRevision
	return ro, err
}

// Rollouts lists every rollout record, sorted by ID, and the revision read.
func (r *Registry) Rollouts(ctx context.Context) ([]Rollout, int64, error) {
	resp, err := r.get(ctx, r.keys.rollouts(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("list rollouts: %w", err)
	}
	out := make([]Rollout, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ro, err := decodeRollout(strings.TrimPrefix(string(kv.Key), r.keys.rollouts()), kv.Value)
		if err != nil {
			return nil, 0, err
		}
		ro.Rev = kv.ModRevision
		out = append(out, ro)
	}
	return out, resp.Header.Revision, nil
}

// ControlRollout applies change to rollout id and stores it, fenced by the
// record's mod revision (read again and retried when the engine wrote it
// meanwhile). change sees the current record; an error from it is returned
// as is and nothing is written.
func (r *Registry) ControlRollout(ctx context.Context, id string, change func(*Rollout) error) (Rollout, error) {
	for {
		ro, err := r.GetRollout(ctx, id)
		if err != nil {
			return ro, err
		}
		if err := change(&ro); err != nil {
			return ro, err
		}
		key := r.keys.rollout(id)
		resp, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", ro.Rev)},
			[]clientv3.Op{clientv3.OpPut(key, mustJSON(ro))})
		if err != nil {
			return ro, fmt.Errorf("change rollout %s: %w", id, err)
		}
		if resp.Succeeded {
			ro.Rev = resp.Header.Revision
			return ro, nil
		}
		if err := ctx.Err(); err != nil {
			return ro, err
		}
	}
}

// AdvanceRollout stores ro and the given unit records (their markers, and
// at the end their hash), in one transaction fenced by lead, by ro.Rev and
// by each unit's ModRev. A unit with a nil Rollout loses its marker. It
// fails with ErrNotLeader when lead was deposed and ErrConflict when a
// record changed; the caller reads again.
func (r *Registry) AdvanceRollout(ctx context.Context, lead *Leadership, ro Rollout, units []Unit) (int64, error) {
	key := r.keys.rollout(ro.ID)
	cmps := []clientv3.Cmp{lead.fence(), clientv3.Compare(clientv3.ModRevision(key), "=", ro.Rev)}
	ops := []clientv3.Op{clientv3.OpPut(key, mustJSON(ro))}
	for _, u := range units {
		uk := r.keys.unit(u.Name)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(uk), "=", u.ModRev))
		ops = append(ops, clientv3.OpPut(uk, mustJSON(u)))
	}
	resp, err := r.txn(ctx, cmps, ops, clientv3.OpGet(lead.key))
	if err != nil {
		return 0, fmt.Errorf("advance rollout %s: %w", ro.ID, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || kvs[0].CreateRevision != lead.rev {
			return 0, fmt.Errorf("advance rollout %s: %w", ro.ID, ErrNotLeader)
		}
		return 0, fmt.Errorf("advance rollout %s: %w", ro.ID, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// WatchRollouts streams rollout record changes after rev; Key is the ID.
func (r *Registry) WatchRollouts(ctx context.Context, rev int64) <-chan Event[Rollout] {
	return watchPrefix(ctx, r.cli, r.keys.rollouts(), rev, decodeRollout)
}
