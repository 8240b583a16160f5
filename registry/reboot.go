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

// Coordinated reboots (package reboot) keep their records under P/reboot/,
// none of them under a lease: a machine rebooting loses its lease, and the
// records must say what it was doing when it comes back.
//
//	P/reboot/holders/<machine>   RebootHolder: the semaphore; at most max keys
//	P/reboot/queue/<machine>     RebootQueued: wants a slot, waits for one
//	P/reboot/requests/<machine>  RebootRequest: fleetctl reboot, a remote sentinel
//	P/reboot/last/<machine>      RebootLast: how its last reboot went
//	P/reboot/step/<machine>      RebootStep: its latest step (fleetctl events)
//	P/reboot/policy              RebootPolicy: what the coordinators were started with

// ErrNotHolder is returned by ReleaseReboot when the machine no longer holds
// the slot read (it was released meanwhile, by a timeout say).
var ErrNotHolder = errors.New("does not hold a reboot slot")

// Reboot steps, as RebootStep.Step and `fleetctl events` name them.
const (
	RebootStepQueued    = "queued"    // wants to reboot, waits for a slot (or the window)
	RebootStepAcquired  = "acquired"  // took a slot
	RebootStepDraining  = "draining"  // asked for its drain
	RebootStepDrained   = "drained"   // drain done, or its deadline passed
	RebootStepRebooting = "rebooting" // ran the reboot command
	RebootStepFailed    = "failed"    // the reboot command failed; slot released
	RebootStepBack      = "back"      // registered again with a new boot ID; slot released
	RebootStepTimeout   = "timeout"   // not back within reboot_timeout; slot released by another machine
)

// RebootHolder is one machine holding a reboot slot.
type RebootHolder struct {
	Machine string    `json:"machine"`
	BootID  string    `json:"bootID"` // the boot that took the slot: another boot ID means it rebooted
	Since   time.Time `json:"since"`
	// Deadline is when any machine's coordinator releases the slot if the
	// holder is not back by then (since + the holder's reboot_timeout).
	Deadline time.Time `json:"deadline"`
	Rev      int64     `json:"-"` // mod revision, for ReleaseReboot's fence
}

// RebootQueued is a machine waiting for a reboot slot.
type RebootQueued struct {
	Machine string    `json:"-"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason"` // "sentinel <path>" or "request"
}

// RebootRequest is a reboot asked for remotely (fleetctl reboot); the
// machine's coordinator treats it as its sentinel file.
type RebootRequest struct {
	Machine  string    `json:"-"`
	Since    time.Time `json:"since"`
	Identity string    `json:"identity,omitempty"`
}

// RebootLast is how a machine's last reboot went.
type RebootLast struct {
	Machine   string    `json:"-"`
	Started   time.Time `json:"started"` // slot taken
	Ended     time.Time `json:"ended"`   // back, or released by timeout
	OldBootID string    `json:"oldBootID,omitempty"`
	NewBootID string    `json:"newBootID,omitempty"`
	Outcome   string    `json:"outcome"` // RebootStepBack, RebootStepTimeout or RebootStepFailed
}

// RebootStep is a machine's latest step; each write is one event.
type RebootStep struct {
	Machine string    `json:"-"`
	Step    string    `json:"step"`
	At      time.Time `json:"at"`
	Detail  string    `json:"detail,omitempty"`
}

// RebootPolicy is the configuration the coordinators run with (the last
// fleetd to start wrote it); every machine should have the same.
type RebootPolicy struct {
	MaxConcurrent int           `json:"maxConcurrent"`
	Window        string        `json:"window,omitempty"`
	Timeout       time.Duration `json:"timeout"`
}

// RebootStatus is every reboot record at one revision.
type RebootStatus struct {
	Holders  map[string]RebootHolder
	Queue    map[string]RebootQueued
	Requests map[string]RebootRequest
	Last     map[string]RebootLast
	Steps    map[string]RebootStep
	Policy   *RebootPolicy
	Rev      int64
}

func (k keys) reboot() string                 { return k.prefix + "reboot/" }
func (k keys) rebootHolders() string          { return k.reboot() + "holders/" }
func (k keys) rebootHolder(id string) string  { return k.rebootHolders() + id }
func (k keys) rebootQueue(id string) string   { return k.reboot() + "queue/" + id }
func (k keys) rebootRequests() string         { return k.reboot() + "requests/" }
func (k keys) rebootRequest(id string) string { return k.rebootRequests() + id }
func (k keys) rebootLast(id string) string    { return k.reboot() + "last/" + id }
func (k keys) rebootSteps() string            { return k.reboot() + "step/" }
func (k keys) rebootStep(id string) string    { return k.rebootSteps() + id }
func (k keys) rebootPolicy() string           { return k.reboot() + "policy" }
func (r *Registry) stepOp(s RebootStep) clientv3.Op {
	return clientv3.OpPut(r.keys.rebootStep(s.Machine), mustJSON(s))
}

func decodeHolder(id string, v []byte) (RebootHolder, error) {
	var h RebootHolder
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("decode reboot holder %s: %w", id, err)
	}
	h.Machine = id
	return h, nil
}

func decodeStep(id string, v []byte) (RebootStep, error) {
	var s RebootStep
	if err := json.Unmarshal(v, &s); err != nil {
		return s, fmt.Errorf("decode reboot step of %s: %w", id, err)
	}
	s.Machine = id
	return s, nil
}

// RebootHolders returns the machines holding a reboot slot, by machine ID.
func (r *Registry) RebootHolders(ctx context.Context) (map[string]RebootHolder, error) {
	hs, _, err := r.rebootHolders(ctx)
	return hs, err
}

func (r *Registry) rebootHolders(ctx context.Context) (map[string]RebootHolder, int64, error) {
	return readRecords(ctx, r, r.keys.rebootHolders(), "reboot holders", decodeHolder, func(h *RebootHolder, rev int64) { h.Rev = rev })
}

// AcquireReboot takes a reboot slot for h.Machine if fewer than slots are
// held, and records step in the same transaction (which also takes the
// machine off the queue). It returns false when every slot is held. Taking
// a slot the machine holds already returns true and changes nothing.
//
// The transaction compares that no holder key changed since the holders
// were read (a range compare over the holders prefix), so two machines
// racing for the last slot cannot both win.
func (r *Registry) AcquireReboot(ctx context.Context, h RebootHolder, slots int, step RebootStep) (bool, error) {
	if err := validMachineID(h.Machine); err != nil {
		return false, fmt.Errorf("acquire reboot slot: %w", err)
	}
	for {
		hs, rev, err := r.rebootHolders(ctx)
		if err != nil {
			return false, err
		}
		if _, ok := hs[h.Machine]; ok {
			return true, nil
		}
		if len(hs) >= slots {
			return false, nil
		}
		cmp := clientv3.Compare(clientv3.ModRevision(r.keys.rebootHolders()), "<", rev+1).WithPrefix()
		resp, err := r.txn(ctx, []clientv3.Cmp{cmp}, []clientv3.Op{
			clientv3.OpPut(r.keys.rebootHolder(h.Machine), mustJSON(h)),
			clientv3.OpDelete(r.keys.rebootQueue(h.Machine)),
			r.stepOp(step),
		})
		if err != nil {
			return false, fmt.Errorf("acquire reboot slot for %s: %w", h.Machine, err)
		}
		if resp.Succeeded {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}

// ReleaseReboot gives back h's slot, fenced by h.Rev: it fails with
// ErrNotHolder when the slot was released or retaken since h was read. In
// the same transaction it deletes the machine's request and queue entry,
// records last and the step.
func (r *Registry) ReleaseReboot(ctx context.Context, h RebootHolder, last RebootLast, step RebootStep) error {
	key := r.keys.rebootHolder(h.Machine)
	ok, err := r.ifUnchanged(ctx, nil, key, h.Rev,
		clientv3.OpDelete(key),
		clientv3.OpDelete(r.keys.rebootRequest(h.Machine)),
		clientv3.OpDelete(r.keys.rebootQueue(h.Machine)),
		clientv3.OpPut(r.keys.rebootLast(h.Machine), mustJSON(last)),
		r.stepOp(step),
	)
	if err != nil {
		return fmt.Errorf("release reboot slot of %s: %w", h.Machine, err)
	}
	if !ok {
		return fmt.Errorf("release reboot slot of %s: %w", h.Machine, ErrNotHolder)
	}
	return nil
}

// QueueReboot records that q.Machine waits for a slot, with step, unless it
// is queued already (then nothing is written and false returned).
func (r *Registry) QueueReboot(ctx context.Context, q RebootQueued, step RebootStep) (bool, error) {
	key := r.keys.rebootQueue(q.Machine)
	resp, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, mustJSON(q)), r.stepOp(step)})
	if err != nil {
		return false, fmt.Errorf("queue reboot of %s: %w", q.Machine, err)
	}
	return resp.Succeeded, nil
}

// Unqueue takes machine id off the reboot queue (it no longer needs one).
func (r *Registry) Unqueue(ctx context.Context, id string) error {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	if _, err := r.cli.Delete(ctx, r.keys.rebootQueue(id)); err != nil {
		return fmt.Errorf("unqueue reboot of %s: %w", id, err)
	}
	return nil
}

// RequestReboot asks machine q.Machine to reboot. The machine must be
// present: a request for an unknown machine fails with ErrNotFound and
// writes nothing. Asking again keeps the first request.
func (r *Registry) RequestReboot(ctx context.Context, q RebootRequest) error {
	if err := validMachineID(q.Machine); err != nil {
		return fmt.Errorf("request reboot: %w", err)
	}
	key := r.keys.rebootRequest(q.Machine)
	present := clientv3.Compare(clientv3.CreateRevision(r.keys.machine(q.Machine)), ">", 0)
	resp, err := r.txn(ctx, []clientv3.Cmp{present},
		[]clientv3.Op{clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(key, mustJSON(q))}, nil)})
	if err != nil {
		return fmt.Errorf("request reboot of %s: %w", q.Machine, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("request reboot of %s: machine %w (is it up? fleetctl list-machines)", q.Machine, ErrNotFound)
	}
	return nil
}

// RebootRequested reports whether a reboot of machine id was requested.
func (r *Registry) RebootRequested(ctx context.Context, id string) (bool, error) {
	resp, err := r.get(ctx, r.keys.rebootRequest(id), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read reboot request of %s: %w", id, err)
	}
	return resp.Count > 0, nil
}

// RecordRebootStep records machine s.Machine's latest step.
func (r *Registry) RecordRebootStep(ctx context.Context, s RebootStep) error {
	if _, err := r.txn(ctx, nil, []clientv3.Op{r.stepOp(s)}); err != nil {
		return fmt.Errorf("record reboot step of %s: %w", s.Machine, err)
	}
	return nil
}

// SetRebootPolicy records the configuration a coordinator runs with, for
// reboot-status.
func (r *Registry) SetRebootPolicy(ctx context.Context, p RebootPolicy) error {
	if _, err := r.txn(ctx, nil, []clientv3.Op{clientv3.OpPut(r.keys.rebootPolicy(), mustJSON(p))}); err != nil {
		return fmt.Errorf("record reboot policy: %w", err)
	}
	return nil
}

// RebootStatus reads every reboot record in one request.
func (r *Registry) RebootStatus(ctx context.Context) (RebootStatus, error) {
	st := RebootStatus{Holders: map[string]RebootHolder{}, Queue: map[string]RebootQueued{},
		Requests: map[string]RebootRequest{}, Last: map[string]RebootLast{}, Steps: map[string]RebootStep{}}
	resp, err := r.get(ctx, r.keys.reboot(), clientv3.WithPrefix())
	if err != nil {
		return st, fmt.Errorf("read reboot status: %w", err)
	}
	st.Rev = resp.Header.Revision
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), r.keys.reboot())
		kind, id, _ := strings.Cut(rest, "/")
		var err error
		switch kind {
		case "holders":
			var h RebootHolder
			h, err = decodeHolder(id, kv.Value)
			h.Rev = kv.ModRevision
			st.Holders[id] = h
		case "queue":
			q := RebootQueued{Machine: id}
			err = json.Unmarshal(kv.Value, &q)
			st.Queue[id] = q
		case "requests":
			q := RebootRequest{Machine: id}
			err = json.Unmarshal(kv.Value, &q)
			st.Requests[id] = q
		case "last":
			l := RebootLast{Machine: id}
			err = json.Unmarshal(kv.Value, &l)
			st.Last[id] = l
		case "step":
			var s RebootStep
			s, err = decodeStep(id, kv.Value)
			st.Steps[id] = s
		case "policy":
			var p RebootPolicy
			err = json.Unmarshal(kv.Value, &p)
			st.Policy = &p
		}
		if err != nil {
			return st, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
	}
	return st, nil
}

// WatchRebootHolders streams reboot slot changes after rev; Key is the
// machine ID.
func (r *Registry) WatchRebootHolders(ctx context.Context, rev int64) <-chan Event[RebootHolder] {
	return watchPrefix(ctx, r.cli, r.keys.rebootHolders(), rev, decodeHolder)
}

// WatchRebootRequests streams reboot request changes after rev; Key is the
// machine ID.
func (r *Registry) WatchRebootRequests(ctx context.Context, rev int64) <-chan Event[RebootRequest] {
	return watchPrefix(ctx, r.cli, r.keys.rebootRequests(), rev, func(id string, v []byte) (RebootRequest, error) {
		q := RebootRequest{Machine: id}
		if err := json.Unmarshal(v, &q); err != nil {
			return q, fmt.Errorf("decode reboot request of %s: %w", id, err)
		}
		return q, nil
	})
}
