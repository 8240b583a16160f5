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

// ErrDraining is returned by Drain when the machine is draining already.
var ErrDraining = errors.New("machine is draining already")

// ErrNotDraining is returned by Undrain when the machine is not draining.
var ErrNotDraining = errors.New("machine is not draining")

// Drain reasons: who asked for it. A drain asked by an operator is undone
// only by an operator; one asked by the reboot coordinator is undone by it
// once the machine is back.
const (
	DrainByUser   = "user"
	DrainByReboot = "reboot"
)

// DrainRecord is a machine being drained, stored at P/drain/<machine ID>
// without a lease: it outlives the machine's presence, so a drained machine
// that reboots comes back drained until it is undrained.
//
// The engine leader places nothing new on a draining machine and moves its
// movable units elsewhere (make-before-break where the unit allows);
// Deadline, when set, is when the rest is stopped. Done is set by the engine
// leader once nothing movable is left on the machine.
type DrainRecord struct {
	Machine       string    `json:"-"`
	Since         time.Time `json:"since"`
	Deadline      time.Time `json:"deadline,omitzero"`
	IncludeGlobal bool      `json:"includeGlobal,omitempty"`
	By            string    `json:"by"`                 // DrainByUser or DrainByReboot
	Identity      string    `json:"identity,omitempty"` // the API caller who asked
	Done          time.Time `json:"done,omitzero"`
	Rev           int64     `json:"-"` // mod revision, for SetDrainDone's fence
}

// Draining reports whether the machine is still being drained.
func (d DrainRecord) Draining() bool { return d.Done.IsZero() }

func (k keys) drains() string                { return k.prefix + "drain/" }
func (k keys) drainMachine(id string) string { return k.drains() + id }

func decodeDrain(id string, v []byte) (DrainRecord, error) {
	var d DrainRecord
	if err := json.Unmarshal(v, &d); err != nil {
		return d, fmt.Errorf("decode drain record of %s: %w", id, err)
	}
	d.Machine = id
	return d, nil
}

func validMachineID(id string) error {
	if id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("invalid machine ID %q", id)
	}
	return nil
}

// ErrDrainsChanged is returned by DrainIfUnchanged when another drain was
// recorded after the revision its caller's plan was made at.
var ErrDrainsChanged = errors.New("another drain was recorded meanwhile")

// Drain starts draining machine d.Machine. It fails with ErrDraining when a
// drain record exists already, and writes nothing then.
func (r *Registry) Drain(ctx context.Context, d DrainRecord) error {
	return r.DrainIfUnchanged(ctx, d, 0)
}

// DrainIfUnchanged is Drain that also fails, with ErrDrainsChanged, when any
// drain record was written after revision rev (0: no such check). A caller
// that checked "is this the last machine that can run a unit?" against the
// drains read at rev needs it: two drains checked at once could otherwise
// both pass, and together leave the unit nowhere to run.
func (r *Registry) DrainIfUnchanged(ctx context.Context, d DrainRecord, rev int64) error {
	if err := validMachineID(d.Machine); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if d.By == "" {
		d.By = DrainByUser
	}
	d.Done = time.Time{}
	key := r.keys.drainMachine(d.Machine)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	if rev > 0 {
		// Over a range, a compare holds when it holds for every key in it.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r.keys.drains()), "<", rev+1).WithPrefix())
	}
	resp, err := r.txn(ctx, cmps, []clientv3.Op{clientv3.OpPut(key, mustJSON(d))},
		clientv3.OpGet(key, clientv3.WithCountOnly()))
	if err != nil {
		return fmt.Errorf("drain %s: %w", d.Machine, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return fmt.Errorf("drain %s: %w", d.Machine, ErrDraining)
		}
		return fmt.Errorf("drain %s: %w", d.Machine, ErrDrainsChanged)
	}
	return nil
}

// Undrain ends the drain of machine id: it may take placements again. It
// fails with ErrNotDraining when there is no drain record.
func (r *Registry) Undrain(ctx context.Context, id string) error {
	if err := validMachineID(id); err != nil {
		return fmt.Errorf("undrain: %w", err)
	}
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := r.cli.Delete(ctx, r.keys.drainMachine(id))
	if err != nil {
		return fmt.Errorf("undrain %s: %w", id, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("undrain %s: %w", id, ErrNotDraining)
	}
	return nil
}

// EndDrain deletes the drain record d, fenced by d.Rev: it fails with
// ErrNotDraining when the record is gone or was replaced since it was read.
// The reboot coordinator undrains with it, so that an operator's drain made
// after it read its own (an undrain and a drain in between) is not ended
// by mistake, as a plain Undrain would.
func (r *Registry) EndDrain(ctx context.Context, d DrainRecord) error {
	key := r.keys.drainMachine(d.Machine)
	ok, err := r.ifUnchanged(ctx, nil, key, d.Rev, clientv3.OpDelete(key))
	if err != nil {
		return fmt.Errorf("end drain of %s: %w", d.Machine, err)
	}
	if !ok {
		return fmt.Errorf("end drain of %s: %w (or its record changed)", d.Machine, ErrNotDraining)
	}
	return nil
}

// ifUnchanged runs ops if key's mod revision is still rev (the record as
// read) and, with lead, lead is still the leader; it reports whether they
// ran. Records the engine leader and operators both write (drains, moves,
// reboot slots) change only this way, so neither undoes the other's
// newer write.
func (r *Registry) ifUnchanged(ctx context.Context, lead *Leadership, key string, rev int64, ops ...clientv3.Op) (bool, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	if lead != nil {
		cmps = append(cmps, lead.fence())
	}
	resp, err := r.txn(ctx, cmps, ops)
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// DrainOf returns machine id's drain record; ok is false when it is not
// draining.
func (r *Registry) DrainOf(ctx context.Context, id string) (d DrainRecord, ok bool, err error) {
	resp, err := r.get(ctx, r.keys.drainMachine(id))
	if err != nil {
		return d, false, fmt.Errorf("read drain of %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return d, false, nil
	}
	d, err = decodeDrain(id, resp.Kvs[0].Value)
	d.Rev = resp.Kvs[0].ModRevision
	return d, err == nil, err
}

// Drains returns every drain record by machine ID, and the revision read.
func (r *Registry) Drains(ctx context.Context) (map[string]DrainRecord, int64, error) {
	return readRecords(ctx, r, r.keys.drains(), "drains", decodeDrain, func(d *DrainRecord, rev int64) { d.Rev = rev })
}

// readRecords reads every record under prefix, keyed by the rest of its key,
// with its mod revision set by setRev, and returns the revision read.
func readRecords[T any](ctx context.Context, r *Registry, prefix, what string, decode func(key string, v []byte) (T, error), setRev func(*T, int64)) (map[string]T, int64, error) {
	resp, err := r.get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", what, err)
	}
	out := make(map[string]T, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), prefix)
		v, err := decode(key, kv.Value)
		if err != nil {
			return nil, 0, err
		}
		setRev(&v, kv.ModRevision)
		out[key] = v
	}
	return out, resp.Header.Revision, nil
}

// SetDrainDone records, fenced by the leadership and by the record being the
// one read (d.Rev), that nothing movable is left on d.Machine.
func (r *Registry) SetDrainDone(ctx context.Context, lead *Leadership, d DrainRecord, at time.Time) error {
	key := r.keys.drainMachine(d.Machine)
	d.Done = at
	ok, err := r.ifUnchanged(ctx, lead, key, d.Rev, clientv3.OpPut(key, mustJSON(d)))
	if err != nil {
		return fmt.Errorf("mark drain of %s done: %w", d.Machine, err)
	}
	if !ok {
		return fmt.Errorf("mark drain of %s done: %w (or the record changed)", d.Machine, ErrNotLeader)
	}
	return nil
}

// WatchDrains streams drain record changes after rev; Key is the machine ID.
func (r *Registry) WatchDrains(ctx context.Context, rev int64) <-chan Event[DrainRecord] {
	return watchPrefix(ctx, r.cli, r.keys.drains(), rev, decodeDrain)
}

// Machine states as list-machines shows them (the "state" field of the API's
// machines).
const (
	MachineActive    = "active"
	MachineDraining  = "draining"
	MachineDrained   = "drained"
	MachineRebooting = "rebooting"
)

// StateOf returns a machine's state from its drain record (nil: none) and
// whether the reboot coordinator holds a reboot slot for it: rebooting wins,
// then draining or drained, else active.
func StateOf(d *DrainRecord, rebooting bool) string {
	switch {
	case rebooting:
		return MachineRebooting
	case d == nil:
		return MachineActive
	case d.Draining():
		return MachineDraining
	}
	return MachineDrained
}
