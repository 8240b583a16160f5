package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Rollouts is what fleetctl update and fleetctl rollout need: server-side
// rolling updates, run by the engine leader (engine/rollout.go). Both
// Clients implement it; errors wrap the sentinel errors of Client.
type Rollouts interface {
	// StartRollout replaces the body of the target's units copy by copy
	// with req.Options. The target is a unit ("web.service", a global
	// unit) or a glob over instances ("web@*"). It fails with ErrNotFound
	// when no submitted unit matches, ErrInvalid when the body does not
	// parse or its options are refused, and ErrConflict when a unit is in
	// a rollout already or already has this body; nothing is changed then.
	StartRollout(ctx context.Context, req RolloutRequest) (*RolloutStatus, error)
	// Rollout returns the rollout of a target or of a unit in one (the
	// latest), or ErrNotFound.
	Rollout(ctx context.Context, target string) (*RolloutStatus, error)
	// Rollouts lists every rollout record, active or ended.
	Rollouts(ctx context.Context) ([]*RolloutStatus, error)
	// ControlRollout pauses, resumes or undoes (reverts) a rollout. Undo of
	// a rollout that is done starts a rollout back to the old body.
	ControlRollout(ctx context.Context, target, action string) (*RolloutStatus, error)
}

// Rollout control actions.
const (
	RolloutPause  = "pause"
	RolloutResume = "resume"
	RolloutUndo   = "undo"
)

// RolloutRequest asks for a rolling update of Target to the unit file
// Options.
type RolloutRequest struct {
	Target  string        `json:"target"`
	Options []*UnitOption `json:"options"`
}

// RolloutStatus is a rollout as the API shows it; field names are a stable
// contract (fleetctl rollout status -o json).
type RolloutStatus struct {
	ID             string        `json:"id"`
	Phase          string        `json:"phase"`
	Paused         bool          `json:"paused,omitempty"`
	Message        string        `json:"message,omitempty"`
	To             string        `json:"to"`
	Units          []RolloutUnit `json:"units"`
	Steps          []RolloutStep `json:"steps"`
	Healthy        int           `json:"healthy"`
	Total          int           `json:"total"`
	MaxUnavailable int           `json:"maxUnavailable"`
	MinHealthy     string        `json:"minHealthy"`
	HealthCheck    string        `json:"healthCheck,omitempty"`
	AutoRevert     bool          `json:"autoRevert,omitempty"`
	Identity       string        `json:"identity,omitempty"`
	Started        time.Time     `json:"started"`
	Changed        time.Time     `json:"changed,omitzero"`
	Ended          time.Time     `json:"ended,omitzero"`
	Reverting      time.Time     `json:"reverting,omitzero"`
}

// RolloutUnit is one unit of a rollout and the body hash it had before.
type RolloutUnit struct {
	Name   string `json:"name"`
	From   string `json:"from"`
	Global bool   `json:"global,omitempty"`
	// Template: the instances' submitted template, given the new body
	// (no steps: it runs nowhere).
	Template bool `json:"template,omitempty"`
}

// RolloutStep is one copy to replace: a unit, or a global unit's machine.
type RolloutStep struct {
	Unit      string    `json:"unit"`
	MachineID string    `json:"machineID,omitempty"`
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

func rolloutStatus(ro registry.Rollout) *RolloutStatus {
	s := &RolloutStatus{ID: ro.ID, Phase: ro.Phase, Paused: ro.Paused, Message: ro.Message, To: ro.To,
		MaxUnavailable: ro.MaxUnavailable, MinHealthy: ro.MinHealthy.String(), HealthCheck: ro.HealthCheck,
		AutoRevert: ro.AutoRevert, Identity: ro.Identity, Started: ro.Started, Changed: ro.Changed, Ended: ro.Ended, Reverting: ro.Reverting,
		Total: len(ro.Steps)}
	for _, u := range ro.Units {
		s.Units = append(s.Units, RolloutUnit{Name: u.Name, From: u.From, Global: u.Global, Template: u.Template})
	}
	for _, st := range ro.Steps {
		s.Steps = append(s.Steps, RolloutStep{Unit: st.Unit, MachineID: st.Machine, State: st.State, Since: st.Since, Reason: st.Reason})
		if st.State == registry.StepHealthy {
			s.Healthy++
		}
	}
	return s
}

// rolloutID is the record ID of a target as asked: "web@*" and
// "web@*.service" are one.
func rolloutID(target string) (string, error) {
	id := unit.Normalize(strings.TrimSpace(target))
	if id == "" {
		return "", errorf(ErrInvalid, "no unit given: name a unit, a global unit or a pattern such as 'web@*'")
	}
	if strings.Contains(id, "*") || strings.Contains(id, "?") || strings.Contains(id, "[") {
		if _, err := path.Match(id, ""); err != nil || strings.Contains(id, "/") {
			return "", errorf(ErrInvalid, "%q is not a usable pattern", target)
		}
		return id, nil
	}
	if _, err := unit.ParseName(id); err != nil {
		return "", errorf(ErrInvalid, "%v", err)
	}
	return id, nil
}

func (c *registryClient) StartRollout(ctx context.Context, req RolloutRequest) (*RolloutStatus, error) {
	id, err := rolloutID(req.Target)
	if err != nil {
		return nil, err
	}
	if len(req.Options) == 0 {
		return nil, errorf(ErrInvalid, "rollout of %s: no unit file given", id)
	}
	f, err := unit.ParseString(FileFromOptions(req.Options).String())
	if err != nil {
		return nil, errorf(ErrInvalid, "rollout of %s: %s", id, oneLine(err))
	}
	all, _, err := c.reg.Units(ctx)
	if err != nil {
		return nil, err
	}
	var targets, templates []registry.Unit
	for _, u := range all {
		n, err := unit.ParseName(u.Name)
		if err != nil {
			continue
		}
		if ok, _ := path.Match(id, u.Name); !ok {
			continue
		}
		if n.Template {
			templates = append(templates, u)
		} else {
			targets = append(targets, u)
		}
	}
	if len(targets) == 0 {
		if n, err := unit.ParseName(id); err == nil && n.Template {
			return nil, errorf(ErrInvalid, "%s is a template: roll out its instances, as in fleetctl update '%s@*'", id, n.Prefix)
		}
		return nil, errorf(ErrNotFound, "no submitted unit matches %s: submit it first (fleetctl start)", id)
	}
	to := f.Hash().String()
	ro := registry.Rollout{ID: id, To: to, Phase: registry.RolloutRunning}
	pol, err := f.UpdatePolicy(targets[0].Name)
	if err != nil {
		return nil, errorf(ErrInvalid, "rollout of %s: %s", id, oneLine(err))
	}
	ro.MaxUnavailable, ro.MinHealthy, ro.HealthCheck, ro.AutoRevert = pol.MaxUnavailable, pol.MinHealthy, pol.HealthCheck, pol.AutoRevert
	var units []registry.Unit
	for _, u := range targets {
		if u.Rollout != nil {
			return nil, errorf(ErrConflict, "unit %s is being rolled out already (rollout %s): see fleetctl rollout status %s; undo or wait for it first", u.Name, u.Rollout.ID, u.Rollout.ID)
		}
		x, _, err := f.FleetOptions(u.Name)
		if err == nil {
			err = x.Validate(u.Name)
		}
		if err != nil {
			return nil, errorf(ErrInvalid, "rollout of %s: unit %s: %s", id, u.Name, oneLine(err))
		}
		if u.Hash == to {
			continue // has this body already
		}
		units = append(units, u)
		ro.Units = append(ro.Units, registry.RolloutUnit{Name: u.Name, From: u.Hash, Global: x.Global})
		if !x.Global {
			ro.Steps = append(ro.Steps, registry.RolloutStep{Unit: u.Name, State: registry.StepPending})
			continue
		}
		ps, err := c.reg.PlacementsOf(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			ro.Steps = append(ro.Steps, registry.RolloutStep{Unit: u.Name, Machine: p.Machine, State: registry.StepPending})
		}
	}
	if len(units) == 0 {
		return nil, errorf(ErrConflict, "every unit of %s has this body already: nothing to roll out", id)
	}
	for _, u := range templates {
		if u.Rollout != nil {
			return nil, errorf(ErrConflict, "template %s is being rolled out already (rollout %s): see fleetctl rollout status %s; undo or wait for it first", u.Name, u.Rollout.ID, u.Rollout.ID)
		}
		if u.Hash != to {
			units = append(units, u)
			ro.Units = append(ro.Units, registry.RolloutUnit{Name: u.Name, From: u.Hash, Template: true})
		}
	}
	var prevRev int64
	switch prev, err := c.reg.GetRollout(ctx, id); {
	case err == nil && prev.Active():
		return nil, errorf(ErrConflict, "rollout %s is %s: see fleetctl rollout status %s; undo or wait for it first", id, prev.Phase, id)
	case err == nil:
		prevRev = prev.Rev // an ended rollout of the same target: replaced
	case !errors.Is(err, registry.ErrNotFound):
		return nil, err
	}
	now := time.Now().UTC()
	ro.Started, ro.Changed = now, now
	if who, ok := auth.FromContext(ctx); ok {
		ro.Identity = who.Name
	}
	err = c.reg.StartRollout(ctx, ro, units, f.String(), prevRev)
	switch {
	case errors.Is(err, registry.ErrRolloutActive):
		return nil, errorf(ErrConflict, "%v", err)
	case errors.Is(err, registry.ErrConflict):
		return nil, errorf(ErrConflict, "rollout of %s: a unit or the rollout changed meanwhile; nothing was changed; try again", id)
	case err != nil:
		return nil, err
	}
	noteAudit(ctx, "rollout.start", id, fmt.Sprintf("%d units, to %.12s", len(units), to))
	return c.Rollout(ctx, id)
}

// findRollout returns the record of target, or of the rollout a unit is in
// (the latest started when it was in several).
func (c *registryClient) findRollout(ctx context.Context, target string) (registry.Rollout, error) {
	id, err := rolloutID(target)
	if err != nil {
		return registry.Rollout{}, err
	}
	ro, err := c.reg.GetRollout(ctx, id)
	if err == nil || !errors.Is(err, registry.ErrNotFound) {
		return ro, err
	}
	if u, err := c.reg.Unit(ctx, id); err == nil && u.Rollout != nil {
		return c.reg.GetRollout(ctx, u.Rollout.ID)
	}
	all, _, err := c.reg.Rollouts(ctx)
	if err != nil {
		return ro, err
	}
	var found *registry.Rollout
	for i := range all {
		if _, ok := all[i].Unit(id); ok && (found == nil || all[i].Started.After(found.Started)) {
			found = &all[i]
		}
	}
	if found == nil {
		return ro, errorf(ErrNotFound, "no rollout of %s: start one with fleetctl update %s --file NEW", id, target)
	}
	return *found, nil
}

func (c *registryClient) Rollout(ctx context.Context, target string) (*RolloutStatus, error) {
	ro, err := c.findRollout(ctx, target)
	if err != nil {
		return nil, err
	}
	return rolloutStatus(ro), nil
}

func (c *registryClient) Rollouts(ctx context.Context) ([]*RolloutStatus, error) {
	all, _, err := c.reg.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*RolloutStatus, 0, len(all))
	for _, ro := range all {
		out = append(out, rolloutStatus(ro))
	}
	return out, nil
}

func (c *registryClient) ControlRollout(ctx context.Context, target, action string) (*RolloutStatus, error) {
	found, err := c.findRollout(ctx, target)
	if err != nil {
		return nil, err
	}
	who := "an operator"
	if id, ok := auth.FromContext(ctx); ok {
		who = id.Name
	}
	if action == RolloutUndo && (found.Phase == registry.RolloutDone) {
		return c.undoDone(ctx, found)
	}
	ro, err := c.reg.ControlRollout(ctx, found.ID, func(ro *registry.Rollout) error {
		now := time.Now().UTC()
		switch action {
		case RolloutPause:
			if !ro.Active() || ro.Paused {
				return errorf(ErrConflict, "rollout %s is %s%s: nothing to pause", ro.ID, ro.Phase, map[bool]string{true: " and paused"}[ro.Paused])
			}
			ro.Paused = true
		case RolloutResume:
			switch {
			case ro.Phase == registry.RolloutFailed:
				ro.Phase, ro.Paused, ro.Message = registry.RolloutRunning, false, ""
				for i, s := range ro.Steps {
					if s.State == registry.StepFailed {
						ro.Steps[i].State, ro.Steps[i].Since, ro.Steps[i].Reason = registry.StepUpdating, now, ""
					}
				}
			case ro.Paused && ro.Active():
				ro.Paused = false
			default:
				return errorf(ErrConflict, "rollout %s is %s, not paused: nothing to resume", ro.ID, ro.Phase)
			}
		case RolloutUndo:
			if !ro.Active() || ro.Phase == registry.RolloutReverting {
				return errorf(ErrConflict, "rollout %s is %s: nothing to undo", ro.ID, ro.Phase)
			}
			ro.Phase, ro.Paused, ro.Message, ro.Reverting = registry.RolloutReverting, false, "undo asked by "+who, now
		default:
			return errorf(ErrInvalid, "unknown rollout action %q: want pause, resume or undo", action)
		}
		ro.Changed = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	noteAudit(ctx, "rollout."+action, ro.ID, "")
	return rolloutStatus(ro), nil
}

// undoDone rolls a finished rollout back: a new rollout of the same units
// to the body they had before.
func (c *registryClient) undoDone(ctx context.Context, ro registry.Rollout) (*RolloutStatus, error) {
	var from string
	for _, u := range ro.Units {
		if u.Template {
			continue // follows its instances' body
		}
		if from != "" && u.From != from {
			return nil, errorf(ErrConflict, "rollout %s replaced several bodies; undo each unit with fleetctl update UNIT --file OLD", ro.ID)
		}
		from = u.From
	}
	body, err := c.reg.Body(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("undo rollout %s: the old body: %w", ro.ID, err)
	}
	f, err := unit.ParseString(body)
	if err != nil {
		return nil, fmt.Errorf("undo rollout %s: the old body: %w", ro.ID, err)
	}
	target := ro.ID
	if !strings.ContainsAny(target, "*?[") && len(ro.Units) == 1 && !ro.Units[0].Template {
		target = ro.Units[0].Name
	}
	return c.StartRollout(ctx, RolloutRequest{Target: target, Options: OptionsFromFile(f)})
}

// Server side.

func (s *server) rollouts(w http.ResponseWriter) (Rollouts, bool) {
	r, ok := s.c.(Rollouts)
	if !ok {
		s.sendCode(w, http.StatusNotImplemented, "this fleetd cannot run rolling updates")
	}
	return r, ok
}

func (s *server) postRollout(w http.ResponseWriter, r *http.Request) {
	rc, ok := s.rollouts(w)
	if !ok {
		return
	}
	var req RolloutRequest
	if !s.decodeBody(w, r, &req, "rollout request") {
		return
	}
	st, err := rc.StartRollout(r.Context(), req)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusCreated, st)
}

func (s *server) listRollouts(w http.ResponseWriter, r *http.Request) {
	rc, ok := s.rollouts(w)
	if !ok {
		return
	}
	all, err := rc.Rollouts(r.Context())
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusOK, struct {
		Rollouts []*RolloutStatus `json:"rollouts"`
	}{all})
}

func (s *server) getRollout(w http.ResponseWriter, r *http.Request) {
	rc, ok := s.rollouts(w)
	if !ok {
		return
	}
	st, err := rc.Rollout(r.Context(), r.PathValue("name"))
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusOK, st)
}

func (s *server) controlRollout(w http.ResponseWriter, r *http.Request) {
	rc, ok := s.rollouts(w)
	if !ok {
		return
	}
	action := r.PathValue("action")
	if !slices.Contains([]string{RolloutPause, RolloutResume, RolloutUndo}, action) {
		s.sendError(w, r, errorf(ErrNotFound, "no such rollout action %q: use pause, resume or undo", action))
		return
	}
	st, err := rc.ControlRollout(r.Context(), r.PathValue("name"), action)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusOK, st)
}

// HTTP client side.

func rolloutPath(target string) string { return "/rollouts/" + target }

func (c *httpClient) StartRollout(ctx context.Context, req RolloutRequest) (*RolloutStatus, error) {
	return c.rolloutCall(ctx, http.MethodPost, "/rollouts", &req)
}

func (c *httpClient) Rollout(ctx context.Context, target string) (*RolloutStatus, error) {
	var st RolloutStatus
	if err := c.getJSON(ctx, rolloutPath(target), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (c *httpClient) Rollouts(ctx context.Context) ([]*RolloutStatus, error) {
	var page struct {
		Rollouts []*RolloutStatus `json:"rollouts"`
	}
	if err := c.getJSON(ctx, "/rollouts", nil, &page); err != nil {
		return nil, err
	}
	return page.Rollouts, nil
}

func (c *httpClient) ControlRollout(ctx context.Context, target, action string) (*RolloutStatus, error) {
	return c.rolloutCall(ctx, http.MethodPost, rolloutPath(target)+"/"+action, nil)
}

func (c *httpClient) rolloutCall(ctx context.Context, method, p string, body any) (*RolloutStatus, error) {
	resp, err := c.do(ctx, request{method: method, path: p, body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st RolloutStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode answer of fleetd at %s to %s %s: %w", c.endpoint, method, p, err)
	}
	return &st, nil
}

// rolloutEvents turns a change of a rollout record into events: one per
// step that moved, and one for the phase or pause.
func rolloutEvents(prev, cur *registry.Rollout) []Event {
	if cur == nil {
		return nil
	}
	var out []Event
	if prev == nil || prev.Started != cur.Started {
		out = append(out, Event{Type: EventRolloutStarted, Rollout: cur.ID, Unit: cur.ID, To: cur.To})
		prev = nil
	}
	before := map[string]string{}
	if prev != nil {
		for _, s := range prev.Steps {
			before[s.Unit+"\x00"+s.Machine] = s.State
		}
	}
	for _, s := range cur.Steps {
		from, ok := before[s.Unit+"\x00"+s.Machine]
		if prev == nil && s.State == registry.StepPending {
			continue
		}
		if !ok || from != s.State {
			out = append(out, Event{Type: EventRolloutStep, Rollout: cur.ID, Unit: s.Unit, MachineID: s.Machine, From: from, To: s.State, Result: s.Reason})
		}
	}
	if prev != nil && prev.Phase != cur.Phase {
		out = append(out, Event{Type: EventRolloutPhase, Rollout: cur.ID, Unit: cur.ID, From: prev.Phase, To: cur.Phase, Result: cur.Message})
	}
	if prev != nil && prev.Paused != cur.Paused {
		t := EventRolloutResumed
		if cur.Paused {
			t = EventRolloutPaused
		}
		out = append(out, Event{Type: t, Rollout: cur.ID, Unit: cur.ID})
	}
	return out
}
