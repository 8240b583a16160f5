package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// Event is one change seen by a watch. When Err is set the watch has ended
// (for example the revision was compacted): the caller re-lists and watches
// again from the new revision.
type Event[T any] struct {
	Deleted bool
	Key     string // the unit name, machine ID, or "<machine>/<unit>"
	Value   T      // zero when Deleted
	Rev     int64
	Err     error
}

// watchPrefix streams decoded events under prefix after revision rev. The
// channel closes when ctx ends or after an event carrying Err.
func watchPrefix[T any](ctx context.Context, cli *clientv3.Client, prefix string, rev int64, decode func(key string, v []byte) (T, error)) <-chan Event[T] {
	out := make(chan Event[T], 64)
	go func() {
		defer close(out)
		// Progress notifications move the revision the client resumes
		// from after a reconnect even when the prefix is quiet, so that
		// the engine leader's compaction (which keeps the last minutes)
		// does not end a quiet watch.
		wc := cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		for resp := range wc {
			if err := resp.Err(); err != nil {
				send(ctx, out, Event[T]{Err: fmt.Errorf("watch %s: %w", prefix, err)})
				return
			}
			for _, ev := range resp.Events {
				e := Event[T]{Key: strings.TrimPrefix(string(ev.Kv.Key), prefix), Rev: ev.Kv.ModRevision, Deleted: ev.Type == clientv3.EventTypeDelete}
				if !e.Deleted {
					v, err := decode(e.Key, ev.Kv.Value)
					if err != nil {
						e.Err = err
						send(ctx, out, e)
						return
					}
					e.Value = v
				}
				if !send(ctx, out, e) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(ctx, out, Event[T]{Err: fmt.Errorf("watch %s: closed", prefix)})
		}
	}()
	return out
}

func send[T any](ctx context.Context, ch chan<- Event[T], e Event[T]) bool {
	select {
	case ch <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// WatchUnits streams unit record changes after rev.
func (r *Registry) WatchUnits(ctx context.Context, rev int64) <-chan Event[Unit] {
	return watchPrefix(ctx, r.cli, r.keys.units(), rev, func(k string, v []byte) (Unit, error) { return decodeUnit(k, v, 0) })
}

// WatchMachines streams machine changes after rev; a lease that expires
// arrives as a delete.
func (r *Registry) WatchMachines(ctx context.Context, rev int64) <-chan Event[machine.Machine] {
	return watchPrefix(ctx, r.cli, r.keys.machines(), rev, decodeMachine)
}

// WatchSchedule streams changes to one machine's schedule after rev. Only
// this machine's changes wake the watcher. Key is the unit name.
func (r *Registry) WatchSchedule(ctx context.Context, machineID string, rev int64) <-chan Event[Placement] {
	prefix := r.keys.schedule(machineID)
	return watchPrefix(ctx, r.cli, prefix, rev, func(k string, v []byte) (Placement, error) {
		return r.decodePlacement(prefix+k, v)
	})
}

// WatchPlacements streams changes to every machine's schedule after rev. Key
// is "<machine>/<unit>".
func (r *Registry) WatchPlacements(ctx context.Context, rev int64) <-chan Event[Placement] {
	prefix := r.keys.schedules()
	return watchPrefix(ctx, r.cli, prefix, rev, func(k string, v []byte) (Placement, error) {
		return r.decodePlacement(prefix+k, v)
	})
}

// WatchStates streams unit state changes after rev (machineID "" = all). Key
// is "<machine>/<unit>" for all machines, the unit name for one.
func (r *Registry) WatchStates(ctx context.Context, machineID string, rev int64) <-chan Event[UnitState] {
	prefix := r.keys.states()
	if machineID != "" {
		prefix = r.keys.machineStates(machineID)
	}
	return watchPrefix(ctx, r.cli, prefix, rev, func(k string, v []byte) (UnitState, error) {
		var s UnitState
		if err := json.Unmarshal(v, &s); err != nil {
			return s, fmt.Errorf("decode state %s: %w", k, err)
		}
		if m, n, ok := splitMachineKey(k); ok {
			s.Machine, s.Name = m, n
		} else {
			s.Machine, s.Name = machineID, k
		}
		return s, nil
	})
}

// WatchBodies streams unit body changes after rev. Key is the body's hash,
// Value its text ("" when Deleted). Bodies are immutable: a put is a body
// stored (again), a delete the hygiene collecting it. A create transaction
// writes a unit and its body together, so both arrive at one revision.
func (r *Registry) WatchBodies(ctx context.Context, rev int64) <-chan Event[string] {
	return watchPrefix(ctx, r.cli, r.keys.bodies(), rev, func(_ string, v []byte) (string, error) { return string(v), nil })
}
