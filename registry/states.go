package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// UnitState is what an agent last saw of a unit in its systemd.
type UnitState struct {
	Name        string `json:"-"`
	Machine     string `json:"-"`
	Hash        string `json:"hash"`
	LoadState   string `json:"loadState"`
	ActiveState string `json:"activeState"`
	SubState    string `json:"subState"`
	// Reason says why the agent does not run the unit although it is
	// scheduled here (a unit of the host has its name); empty otherwise.
	Reason string `json:"reason,omitempty"`
	// Health is the last result of the unit's [X-Fleet] HealthCheck= on
	// this machine while it is active: "pass", or "fail: <why>"; empty
	// without a check.
	Health string `json:"health,omitempty"`
}

// Health results (UnitState.Health).
const (
	HealthPass = "pass"
	HealthFail = "fail"
)

// PublishState records a unit's state under the machine's lease, so it
// vanishes with the machine.
func (p *Presence) PublishState(ctx context.Context, s UnitState) error {
	ctx, cancel := p.r.reqCtx(ctx)
	defer cancel()
	s.Machine = p.m.ID
	if _, err := p.r.cli.Put(ctx, p.r.keys.state(s.Machine, s.Name), mustJSON(s), clientv3.WithLease(p.lease)); err != nil {
		return fmt.Errorf("publish state of %s: %w", s.Name, err)
	}
	return nil
}

// PublishStates records the states of many units under the machine's
// lease, in one transaction per maxTxnOps states: an agent that started a
// hundred units reports them in one write, not a hundred. On an error,
// states of earlier transactions may have been written; publishing them
// again does no harm.
func (p *Presence) PublishStates(ctx context.Context, states []UnitState) error {
	for len(states) > 0 {
		batch := states[:min(len(states), maxTxnOps)]
		states = states[len(batch):]
		ops := make([]clientv3.Op, len(batch))
		for i, s := range batch {
			s.Machine = p.m.ID
			ops[i] = clientv3.OpPut(p.r.keys.state(s.Machine, s.Name), mustJSON(s), clientv3.WithLease(p.lease))
		}
		rctx, cancel := p.r.reqCtx(ctx)
		_, err := p.r.cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("publish states of %d units (%s...): %w", len(batch), batch[0].Name, err)
		}
	}
	return nil
}

// DeleteState removes a unit's published state on this machine.
func (p *Presence) DeleteState(ctx context.Context, name string) error {
	ctx, cancel := p.r.reqCtx(ctx)
	defer cancel()
	if _, err := p.r.cli.Delete(ctx, p.r.keys.state(p.m.ID, name)); err != nil {
		return fmt.Errorf("delete state of %s: %w", name, err)
	}
	return nil
}

// PublishedStates reads the states this machine published earlier (for
// example by the fleetd this one replaces).
func (p *Presence) PublishedStates(ctx context.Context) ([]UnitState, error) {
	return p.r.states(ctx, p.r.keys.machineStates(p.m.ID))
}

// States reads unit states; machineID "" means every machine.
func (r *Registry) States(ctx context.Context, machineID string) ([]UnitState, error) {
	prefix := r.keys.states()
	if machineID != "" {
		prefix = r.keys.machineStates(machineID)
	}
	return r.states(ctx, prefix)
}

func (r *Registry) states(ctx context.Context, prefix string) ([]UnitState, error) {
	resp, err := r.get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read unit states: %w", err)
	}
	out := make([]UnitState, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, name, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.states()))
		if !ok {
			return nil, fmt.Errorf("read unit states: malformed key %q", kv.Key)
		}
		s, err := readState(m, name, kv.Value)
		if err != nil {
			return nil, fmt.Errorf("decode state %s: %w", kv.Key, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// readState decodes a published state, with fastState when it can; the
// error is encoding/json's.
func readState(machine, name string, v []byte) (UnitState, error) {
	if s, ok := fastState(machine, name, v); ok {
		return s, nil
	}
	s := UnitState{Machine: machine, Name: name}
	err := json.Unmarshal(v, &s)
	return s, err
}
