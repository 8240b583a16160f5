package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// Drainer drains machines and moves units, an extension of fleet's v1 API:
//
//	POST   /fleet/v1/machines/{id}/drain   DrainRequest -> 201 DrainPlan
//	DELETE /fleet/v1/machines/{id}/drain   204
//	POST   /fleet/v1/units/{name}/move     MoveRequest -> 202
//
// Both Clients (NewRegistryClient, NewHTTPClient) implement it. The engine
// leader does the work; these calls only record the request, all or
// nothing.
type Drainer interface {
	// DrainMachine starts draining the present machine id and returns what
	// the drain will do. It fails with ErrNotFound for a machine that is not
	// present, ErrInvalid for a bad deadline, and ErrConflict when the
	// machine is draining already or when units would run nowhere (the
	// machine is the last that may run them) and opts.Force is not set:
	// the error (a *DrainRefusal) then carries the plan, and nothing is
	// written.
	DrainMachine(ctx context.Context, id string, opts DrainRequest) (*DrainPlan, error)
	// UndrainMachine ends the drain of machine id (present or not); it
	// fails with ErrConflict when id is not draining.
	UndrainMachine(ctx context.Context, id string) error
	// MoveUnit asks the engine to move unit name to the present machine
	// machineID, make-before-break unless the unit runs at most once or its
	// Conflicts match its own name. It fails with ErrNotFound for an
	// unknown unit or machine and ErrConflict when the machine may not take
	// the unit now or a move of the unit is pending.
	MoveUnit(ctx context.Context, name, machineID string) error
}

// DrainRequest is the body of POST /fleet/v1/machines/{id}/drain.
type DrainRequest struct {
	// Deadline, a Go duration ("10m"), is when what has not moved is
	// stopped; empty: never.
	Deadline string `json:"deadline,omitempty"`
	// IncludeGlobal stops global units on the machine too, once nothing
	// else is left to move.
	IncludeGlobal bool `json:"includeGlobal,omitempty"`
	// Force drains even when units would then run nowhere.
	Force bool `json:"force,omitempty"`
}

// DrainPlan is what a drain does: units that move, global units stopped,
// units that stay (and why), units that would run nowhere (and why).
type DrainPlan struct {
	MachineID string            `json:"machineID"`
	Move      []string          `json:"move,omitempty"`
	Stop      []string          `json:"stop,omitempty"`
	Stay      map[string]string `json:"stay,omitempty"`
	Unplaced  map[string]string `json:"unplaced,omitempty"`
}

// MoveRequest is the body of POST /fleet/v1/units/{name}/move.
type MoveRequest struct {
	MachineID string `json:"machineID"`
}

// DrainRefusal is DrainMachine's error when the drain would leave units
// placed nowhere; it wraps ErrConflict.
type DrainRefusal struct {
	Plan *DrainPlan
}

func (e *DrainRefusal) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "draining %s would leave %d unit(s) running nowhere: ", e.Plan.MachineID, len(e.Plan.Unplaced))
	names := make([]string, 0, len(e.Plan.Unplaced))
	for n := range e.Plan.Unplaced {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", n, e.Plan.Unplaced[n])
	}
	b.WriteString(". Nothing was changed; drain with force (fleetctl drain --force) to stop them anyway")
	return b.String()
}

func (e *DrainRefusal) Unwrap() error { return ErrConflict }

// parseDeadline turns a drain request's deadline into a duration.
func parseDeadline(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errorf(ErrInvalid, "drain deadline %q is not a positive duration (for example 10m or 1h30m)", s)
	}
	return d, nil
}

func wirePlan(p engine.DrainPlan) *DrainPlan {
	out := &DrainPlan{MachineID: p.Machine, Move: p.Move, Stop: p.Stop, Stay: p.Stay, Unplaced: p.Unplaced}
	if len(out.Stay) == 0 {
		out.Stay = nil
	}
	if len(out.Unplaced) == 0 {
		out.Unplaced = nil
	}
	return out
}

func (c *registryClient) presentMachine(ctx context.Context, id string) error {
	ms, _, err := c.reg.Machines(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID == id {
			return nil
		}
	}
	return errorf(ErrNotFound, "machine %s is not present; see 'fleetctl list-machines' (IDs are full here)", id)
}

// DrainMachine checks the request, previews the drain with the engine's rules
// and records it (registry.Drain), as the caller of ctx.
func (c *registryClient) DrainMachine(ctx context.Context, id string, req DrainRequest) (*DrainPlan, error) {
	d, err := parseDeadline(req.Deadline)
	if err != nil {
		return nil, err
	}
	if err := c.presentMachine(ctx, id); err != nil {
		return nil, err
	}
	// A drain recorded by someone else between the preview and the write
	// would make the preview wrong: plan again with it in view.
	for attempt := 1; ; attempt++ {
		plan, err := c.drainOnce(ctx, id, req, d)
		if !errors.Is(err, registry.ErrDrainsChanged) {
			return plan, err
		}
		if attempt == 5 {
			return nil, errorf(ErrConflict, "machine %s: other drains kept being recorded while this one was planned; try again", id)
		}
	}
}

// drainOnce previews the drain against the drains at one revision and
// records it only if no other drain was recorded since.
func (c *registryClient) drainOnce(ctx context.Context, id string, req DrainRequest, deadline time.Duration) (*DrainPlan, error) {
	drains, rev, err := c.reg.Drains(ctx)
	if err != nil {
		return nil, err
	}
	if cur, ok := drains[id]; ok {
		return nil, errorf(ErrConflict, "machine %s is %s already (since %s, by %s); undrain it first",
			id, registry.StateOf(&cur, false), cur.Since.Format(time.RFC3339), cur.By)
	}
	s, err := engine.LoadScheduler(ctx, c.reg, c.policy, c.atMostOnceDefault)
	if err != nil {
		return nil, err
	}
	plan := wirePlan(s.PreviewDrain(id, req.IncludeGlobal))
	if len(plan.Unplaced) > 0 && !req.Force {
		return nil, &DrainRefusal{Plan: plan}
	}
	now := time.Now().UTC()
	rec := registry.DrainRecord{Machine: id, Since: now, IncludeGlobal: req.IncludeGlobal, By: registry.DrainByUser}
	if deadline > 0 {
		rec.Deadline = now.Add(deadline)
	}
	if who, ok := auth.FromContext(ctx); ok {
		rec.Identity = who.Name
	}
	if err := c.reg.DrainIfUnchanged(ctx, rec, rev); err != nil {
		if errors.Is(err, registry.ErrDraining) {
			return nil, errorf(ErrConflict, "machine %s is draining already; undrain it first", id)
		}
		return nil, err
	}
	return plan, nil
}

// UndrainMachine deletes the machine's drain record.
func (c *registryClient) UndrainMachine(ctx context.Context, id string) error {
	if err := c.reg.Undrain(ctx, id); err != nil {
		if errors.Is(err, registry.ErrNotDraining) {
			return errorf(ErrConflict, "machine %s is not draining", id)
		}
		return err
	}
	return nil
}

// MoveUnit checks the move with the engine's rules and records it.
func (c *registryClient) MoveUnit(ctx context.Context, name, machineID string) error {
	if _, err := c.reg.Unit(ctx, name); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return errorf(ErrNotFound, "unit %s does not exist", name)
		}
		return err
	}
	if err := c.presentMachine(ctx, machineID); err != nil {
		return err
	}
	s, err := engine.LoadScheduler(ctx, c.reg, c.policy, c.atMostOnceDefault)
	if err != nil {
		return err
	}
	if err := s.CheckMove(name, machineID); err != nil {
		return errorf(ErrConflict, "cannot move %s to %s: %s", name, machineID, strings.TrimPrefix(err.Error(), engine.ErrInfeasible.Error()+": "))
	}
	rec := registry.MoveRecord{Unit: name, To: machineID, Since: time.Now().UTC()}
	if who, ok := auth.FromContext(ctx); ok {
		rec.Identity = who.Name
	}
	if err := c.reg.Move(ctx, rec); err != nil {
		if errors.Is(err, registry.ErrMoving) {
			return errorf(ErrConflict, "a move of %s is pending already", name)
		}
		return err
	}
	return nil
}

// machineStates fills in each machine's state (registry.StateOf) from the
// drain records and the reboot coordinator's slots.
func (c *registryClient) machineStates(ctx context.Context, ms []Machine) error {
	drains, _, err := c.reg.Drains(ctx)
	if err != nil {
		return err
	}
	holders, err := c.reg.RebootHolders(ctx)
	if err != nil {
		return err
	}
	for i := range ms {
		var d *registry.DrainRecord
		if rec, ok := drains[ms[i].ID]; ok {
			d = &rec
		}
		_, rebooting := holders[ms[i].ID]
		ms[i].State = registry.StateOf(d, rebooting)
	}
	return nil
}

func (c *httpClient) DrainMachine(ctx context.Context, id string, req DrainRequest) (*DrainPlan, error) {
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/machines/" + id + "/drain", body: req})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p DrainPlan
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil, fmt.Errorf("decode answer of fleetd at %s to drain %s: %w", c.endpoint, id, err)
	}
	return &p, nil
}

func (c *httpClient) UndrainMachine(ctx context.Context, id string) error {
	resp, err := c.do(ctx, request{method: http.MethodDelete, path: "/machines/" + id + "/drain"})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (c *httpClient) MoveUnit(ctx context.Context, name, machineID string) error {
	resp, err := c.do(ctx, request{method: http.MethodPost, path: unitPath(name) + "/move", body: MoveRequest{MachineID: machineID}})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (s *server) drainer(w http.ResponseWriter, r *http.Request) (Drainer, bool) {
	d, ok := s.c.(Drainer)
	if !ok {
		s.sendCode(w, http.StatusNotImplemented, "this fleetd cannot drain machines or move units")
	}
	return d, ok
}

func (s *server) drainMachine(w http.ResponseWriter, r *http.Request) {
	d, ok := s.drainer(w, r)
	if !ok {
		return
	}
	var req DrainRequest
	if !s.decodeBody(w, r, &req, "drain request") {
		return
	}
	id := r.PathValue("id")
	noteAudit(r.Context(), "machines.drain", "", fmt.Sprintf("machine=%s deadline=%q includeGlobal=%t force=%t", id, req.Deadline, req.IncludeGlobal, req.Force))
	plan, err := d.DrainMachine(r.Context(), id, req)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusCreated, plan)
}

func (s *server) undrainMachine(w http.ResponseWriter, r *http.Request) {
	d, ok := s.drainer(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	noteAudit(r.Context(), "machines.undrain", "", "machine="+id)
	if err := d.UndrainMachine(r.Context(), id); err != nil {
		s.sendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) moveUnit(w http.ResponseWriter, r *http.Request) {
	d, ok := s.drainer(w, r)
	if !ok {
		return
	}
	var req MoveRequest
	if !s.decodeBody(w, r, &req, "move request") {
		return
	}
	name := r.PathValue("name")
	noteAudit(r.Context(), "units.move", name, "to="+req.MachineID)
	if req.MachineID == "" {
		s.sendError(w, r, errorf(ErrInvalid, "move request names no machine: send {\"machineID\":\"...\"}"))
		return
	}
	if err := d.MoveUnit(r.Context(), name, req.MachineID); err != nil {
		s.sendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
