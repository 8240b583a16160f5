package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is a unit's desired (target) state, in fleet's three values.
type State string

// Fleet's target states.
const (
	StateInactive State = "inactive" // submitted, not scheduled
	StateLoaded   State = "loaded"   // scheduled, unit file loaded, not started
	StateLaunched State = "launched" // scheduled and started
)

// ParseState validates a target state name.
func ParseState(s string) (State, error) {
	switch State(s) {
	case StateInactive, StateLoaded, StateLaunched:
		return State(s), nil
	}
	return "", fmt.Errorf("invalid target state %q: want inactive, loaded or launched", s)
}

// Unit is a submitted unit: its name, the hash of its body and its desired
// state. The body lives apart, under its hash (see Body).
type Unit struct {
	Name         string `json:"-"`
	Hash         string `json:"hash"`
	DesiredState State  `json:"desiredState"`
	// Rollout marks a unit under a rolling update (see StartRollout).
	Rollout *UnitRollout `json:"rollout,omitempty"`
	// ModRev is the etcd revision of the last change to this record.
	ModRev int64 `json:"-"`
}

// CreateUnit stores body under hash and creates the unit record in one
// transaction. With replace false an existing unit is left untouched and
// ErrExists returned; with replace true its hash and desired state are
// overwritten.
func (r *Registry) CreateUnit(ctx context.Context, u Unit, body string, replace bool) error {
	if u.Hash == "" || u.Name == "" {
		return fmt.Errorf("create unit %q: name and hash are required", u.Name)
	}
	puts := []clientv3.Op{
		clientv3.OpPut(r.keys.body(u.Hash), body),
		clientv3.OpPut(r.keys.unit(u.Name), mustJSON(u)),
	}
	var cmps []clientv3.Cmp
	if !replace {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.keys.unit(u.Name)), "=", 0))
	} else {
		// A unit in a rolling update changes body only through it: a
		// blind put would drop its marker and release every copy at once.
		cur, err := r.Unit(ctx, u.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.keys.unit(u.Name)), "=", 0))
		case err != nil:
			return fmt.Errorf("create unit %s: %w", u.Name, err)
		case cur.Rollout != nil:
			return fmt.Errorf("replace unit %s: %w (rollout %s); use fleetctl rollout status|undo", u.Name, ErrRolloutActive, cur.Rollout.ID)
		default:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r.keys.unit(u.Name)), "=", cur.ModRev))
		}
	}
	resp, err := r.txn(ctx, cmps, puts)
	if err != nil {
		return fmt.Errorf("create unit %s: %w", u.Name, err)
	}
	if !resp.Succeeded && replace {
		return fmt.Errorf("replace unit %s: %w: try again", u.Name, ErrConflict)
	}
	if !resp.Succeeded {
		return fmt.Errorf("create unit %s: %w", u.Name, ErrExists)
	}
	return nil
}

// SetDesiredState changes a unit's desired state, keeping its body.
func (r *Registry) SetDesiredState(ctx context.Context, name string, s State) error {
	for {
		u, err := r.Unit(ctx, name)
		if err != nil {
			return fmt.Errorf("set desired state of %s: %w", name, err)
		}
		if u.DesiredState == s {
			return nil
		}
		u.DesiredState = s
		key := r.keys.unit(name)
		resp, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", u.ModRev)},
			[]clientv3.Op{clientv3.OpPut(key, mustJSON(u))})
		if err != nil {
			return fmt.Errorf("set desired state of %s: %w", name, err)
		}
		if resp.Succeeded {
			return nil
		}
	}
}

// DestroyUnit deletes a unit record. Its body stays until no unit or
// placement refers to it (the engine leader collects it, see
// UnreferencedBodies); the engine then unschedules it.
func (r *Registry) DestroyUnit(ctx context.Context, name string) error {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := r.cli.Delete(ctx, r.keys.unit(name))
	if err != nil {
		return fmt.Errorf("destroy unit %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("destroy unit %s: %w", name, ErrNotFound)
	}
	return nil
}

// Unit reads one unit record.
func (r *Registry) Unit(ctx context.Context, name string) (Unit, error) {
	resp, err := r.get(ctx, r.keys.unit(name))
	if err != nil {
		return Unit{}, err
	}
	if len(resp.Kvs) == 0 {
		return Unit{}, fmt.Errorf("unit %s: %w", name, ErrNotFound)
	}
	return decodeUnit(name, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// Units lists every unit record, sorted by name, and the revision they were
// read at (to start a watch from).
func (r *Registry) Units(ctx context.Context) ([]Unit, int64, error) {
	resp, err := r.get(ctx, r.keys.units(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("list units: %w", err)
	}
	out := make([]Unit, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, err := decodeUnit(strings.TrimPrefix(string(kv.Key), r.keys.units()), kv.Value, kv.ModRevision)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, u)
	}
	return out, resp.Header.Revision, nil
}

// Body reads a unit body by hash. The read is linearizable although a
// body is immutable (a serializable read would do): etcd's ReadIndex waits
// for the member's apply, and that wait is what paces agents and the
// standby engine when etcd falls behind; two 10,000-machine runs with
// serializable body reads (and a faster submission) lost their presences
// (BENCHMARKS.md, session 4).
func (r *Registry) Body(ctx context.Context, hash string) (string, error) {
	resp, err := r.get(ctx, r.keys.body(hash))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("unit body %s: %w", hash, ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

// Bodies reads every stored body, keyed by hash.
func (r *Registry) Bodies(ctx context.Context) (map[string]string, error) {
	resp, err := r.get(ctx, r.keys.bodies(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list unit bodies: %w", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), r.keys.bodies())] = string(kv.Value)
	}
	return out, nil
}

func decodeUnit(name string, v []byte, rev int64) (Unit, error) {
	var u Unit
	if err := json.Unmarshal(v, &u); err != nil {
		return Unit{}, fmt.Errorf("decode unit %s: %w", name, err)
	}
	u.Name, u.ModRev = name, rev
	return u, nil
}
