package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrMoving is returned by Move when the unit is being moved already.
var ErrMoving = errors.New("unit is being moved already")

// MoveRecord asks the engine leader to move one unit to one machine (fleetctl
// mv), stored at P/move/<unit> without a lease. The leader starts the unit
// there, waits until it is active and only then removes its other copies
// (make-before-break), unless the unit runs at most once or its Conflicts
// match its own name (then it stops the old copy first), and deletes the
// record when the move is over or can no longer be made.
type MoveRecord struct {
	Unit     string    `json:"-"`
	To       string    `json:"to"`
	Since    time.Time `json:"since"`
	Identity string    `json:"identity,omitempty"`
	Rev      int64     `json:"-"` // mod revision, for EndMove's fence
}

func (k keys) moves() string               { return k.prefix + "move/" }
func (k keys) moveUnit(name string) string { return k.moves() + name }

func decodeMove(name string, v []byte) (MoveRecord, error) {
	var m MoveRecord
	if err := json.Unmarshal(v, &m); err != nil {
		return m, fmt.Errorf("decode move record of %s: %w", name, err)
	}
	m.Unit = name
	return m, nil
}

// Move records a request to move m.Unit to m.To. It fails with ErrMoving
// when one is pending already, and writes nothing then.
func (r *Registry) Move(ctx context.Context, m MoveRecord) error {
	if m.Unit == "" || strings.Contains(m.Unit, "/") {
		return fmt.Errorf("move: invalid unit name %q", m.Unit)
	}
	if err := validMachineID(m.To); err != nil {
		return fmt.Errorf("move %s: %w", m.Unit, err)
	}
	key := r.keys.moveUnit(m.Unit)
	resp, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, mustJSON(m))})
	if err != nil {
		return fmt.Errorf("move %s: %w", m.Unit, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("move %s: %w", m.Unit, ErrMoving)
	}
	return nil
}

// Moves returns every pending move by unit name, and the revision read.
func (r *Registry) Moves(ctx context.Context) (map[string]MoveRecord, int64, error) {
	return readRecords(ctx, r, r.keys.moves(), "moves", decodeMove, func(m *MoveRecord, rev int64) { m.Rev = rev })
}

// EndMove deletes the move record m, fenced by the leadership and by the
// record being the one read (m.Rev).
func (r *Registry) EndMove(ctx context.Context, lead *Leadership, m MoveRecord) error {
	key := r.keys.moveUnit(m.Unit)
	ok, err := r.ifUnchanged(ctx, lead, key, m.Rev, clientv3.OpDelete(key))
	if err != nil {
		return fmt.Errorf("end move of %s: %w", m.Unit, err)
	}
	if !ok {
		return fmt.Errorf("end move of %s: %w (or the record changed)", m.Unit, ErrNotLeader)
	}
	return nil
}

// WatchMoves streams move record changes after rev; Key is the unit name.
func (r *Registry) WatchMoves(ctx context.Context, rev int64) <-chan Event[MoveRecord] {
	return watchPrefix(ctx, r.cli, r.keys.moves(), rev, decodeMove)
}

// AllStates reads every machine's unit states and the revision read, from
// which WatchStates(ctx, "", rev) follows them.
func (r *Registry) AllStates(ctx context.Context) ([]UnitState, int64, error) {
	resp, err := r.get(ctx, r.keys.states(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read unit states: %w", err)
	}
	out := make([]UnitState, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, name, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.states()))
		if !ok {
			return nil, 0, fmt.Errorf("read unit states: malformed key %q", kv.Key)
		}
		s := UnitState{Machine: m, Name: name}
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return nil, 0, fmt.Errorf("decode state %s: %w", kv.Key, err)
		}
		out = append(out, s)
	}
	return out, resp.Header.Revision, nil
}
