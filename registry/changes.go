package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// Diff is one record's change: Prev is nil when the record was created, Cur
// is nil when it was deleted.
type Diff[T any] struct {
	Prev, Cur *T
}

// Change is one change of fleet's state. Exactly one field besides Rev is
// set.
type Change struct {
	Rev       int64
	Unit      *Diff[Unit]
	Machine   *Diff[machine.Machine]
	Placement *Diff[Placement]
	State     *Diff[UnitState]
	// Unplaced is the engine's reason for placing a unit nowhere.
	Unplaced *Diff[UnplacedOp]
	// Leader is set when an engine election key changed: the leader may have
	// changed (read it with Leader).
	Leader bool
	// Audit is a new audit record (RecordAudit). Records only come and
	// expire; their expiry is not reported.
	Audit *AuditRecord
	// Rollout is a rolling update's record (StartRollout, AdvanceRollout).
	Rollout *Diff[Rollout]
	// RebootStep is a machine's new reboot step (package reboot).
	RebootStep *Diff[RebootStep]
}

// ChangeBatch holds the changes of one etcd revision or more, in order. When
// Err is set the watch has ended (for example its revision was compacted).
type ChangeBatch struct {
	Rev     int64
	Changes []Change
	Err     error
}

// Revision returns etcd's current revision: watch from it to see only what
// happens next.
func (r *Registry) Revision(ctx context.Context) (int64, error) {
	resp, err := r.get(ctx, r.keys.election(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// WatchChanges streams every change of units, machines, schedules, unit
// states, unplaced reasons, audit records and the engine election after rev, through a single etcd watch, so
// changes come in the order etcd applied them and the changes of one
// transaction come in one batch. Unit bodies and other keys are skipped.
//
// The channel closes when ctx ends or after a batch carrying Err.
func (r *Registry) WatchChanges(ctx context.Context, rev int64) <-chan ChangeBatch {
	out := make(chan ChangeBatch, 16)
	go func() {
		defer close(out)
		sendBatch := func(b ChangeBatch) bool {
			select {
			case out <- b:
				return true
			case <-ctx.Done():
				return false
			}
		}
		wc := r.cli.Watch(clientv3.WithRequireLeader(ctx), r.keys.prefix, clientv3.WithPrefix(),
			clientv3.WithRev(rev+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
		for resp := range wc {
			if err := resp.Err(); err != nil {
				sendBatch(ChangeBatch{Err: fmt.Errorf("watch %s: %w", r.keys.prefix, err)})
				return
			}
			b := ChangeBatch{Rev: resp.Header.Revision}
			for _, ev := range resp.Events {
				c, ok, err := r.decodeChange(ev)
				if err != nil {
					sendBatch(ChangeBatch{Err: err})
					return
				}
				if ok {
					b.Changes = append(b.Changes, c)
				}
			}
			if len(b.Changes) > 0 && !sendBatch(b) {
				return
			}
		}
		if ctx.Err() == nil {
			sendBatch(ChangeBatch{Err: fmt.Errorf("watch %s: closed", r.keys.prefix)})
		}
	}()
	return out
}

// decodeChange turns a watch event into a Change; ok is false for keys
// outside the collections it reports.
func (r *Registry) decodeChange(ev *clientv3.Event) (Change, bool, error) {
	key := string(ev.Kv.Key)
	c := Change{Rev: ev.Kv.ModRevision}
	var cur, prev []byte
	if ev.Type == clientv3.EventTypePut {
		cur = ev.Kv.Value
	}
	if ev.PrevKv != nil {
		prev = ev.PrevKv.Value
	}
	var err error
	switch {
	case strings.HasPrefix(key, r.keys.units()):
		name := strings.TrimPrefix(key, r.keys.units())
		c.Unit, err = diff(cur, prev, func(v []byte) (Unit, error) { return decodeUnit(name, v, c.Rev) })
	case strings.HasPrefix(key, r.keys.machines()):
		id := strings.TrimPrefix(key, r.keys.machines())
		c.Machine, err = diff(cur, prev, func(v []byte) (machine.Machine, error) { return decodeMachine(id, v) })
	case strings.HasPrefix(key, r.keys.schedules()):
		c.Placement, err = diff(cur, prev, func(v []byte) (Placement, error) { return r.decodePlacement(key, v) })
	case strings.HasPrefix(key, r.keys.states()):
		m, name, ok := splitMachineKey(strings.TrimPrefix(key, r.keys.states()))
		if !ok {
			return c, false, nil
		}
		c.State, err = diff(cur, prev, func(v []byte) (UnitState, error) {
			s := UnitState{Machine: m, Name: name}
			if err := json.Unmarshal(v, &s); err != nil {
				return s, fmt.Errorf("decode state %s: %w", key, err)
			}
			return s, nil
		})
	case strings.HasPrefix(key, r.keys.unplaced()):
		name := strings.TrimPrefix(key, r.keys.unplaced())
		c.Unplaced, err = diff(cur, prev, func(v []byte) (UnplacedOp, error) {
			why, err := decodeUnplaced(name, v)
			return UnplacedOp{Name: name, Reason: why}, err
		})
	case strings.HasPrefix(key, r.keys.election()+"/"):
		c.Leader = true
	case strings.HasPrefix(key, r.keys.rollouts()):
		id := strings.TrimPrefix(key, r.keys.rollouts())
		c.Rollout, err = diff(cur, prev, func(v []byte) (Rollout, error) { return decodeRollout(id, v) })
	case strings.HasPrefix(key, r.keys.audit()):
		if cur == nil {
			return c, false, nil
		}
		var rec AuditRecord
		rec, err = decodeAudit(key, cur)
		c.Audit = &rec
	case strings.HasPrefix(key, r.keys.rebootSteps()):
		if cur == nil {
			return c, false, nil
		}
		id := strings.TrimPrefix(key, r.keys.rebootSteps())
		c.RebootStep, err = diff(cur, prev, func(v []byte) (RebootStep, error) { return decodeStep(id, v) })
	default:
		return c, false, nil
	}
	return c, err == nil, err
}

func diff[T any](cur, prev []byte, decode func([]byte) (T, error)) (*Diff[T], error) {
	d := &Diff[T]{}
	for _, x := range []struct {
		v   []byte
		dst **T
	}{{cur, &d.Cur}, {prev, &d.Prev}} {
		if x.v == nil {
			continue
		}
		t, err := decode(x.v)
		if err != nil {
			return nil, err
		}
		*x.dst = &t
	}
	return d, nil
}
