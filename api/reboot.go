package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// EventRebootStep: a machine's coordinated reboot took a step (package
// reboot): To is the step (queued, acquired, draining, drained, rebooting,
// failed, back, timeout), From the previous one, Result its detail.
const EventRebootStep = "reboot.step"

// Rebooter is the part of the API for coordinated reboots:
//
//	PUT /fleet/v1/machines/{id}/reboot   ask machine id to reboot (204; 404 if it is not present)
//	GET /fleet/v1/reboots                RebootStatus
//
// Both the registry client and the HTTP client implement it.
type Rebooter interface {
	// RequestReboot asks a present machine to reboot, as its sentinel file
	// would: it waits for a slot, drains, reboots. ErrNotFound when the
	// machine is not present; asking again changes nothing.
	RequestReboot(ctx context.Context, machineID string) error
	// RebootStatus returns the slots, the queue, the requests and each
	// machine's last reboot.
	RebootStatus(ctx context.Context) (*RebootStatus, error)
}

// RebootStatus is GET /fleet/v1/reboots. Lists are sorted by machine ID.
type RebootStatus struct {
	// Policy is what the coordinators run with; nil before any started.
	Policy   *RebootPolicy   `json:"policy,omitempty"`
	Holders  []RebootHolder  `json:"holders"`
	Queue    []RebootQueued  `json:"queue"`
	Requests []RebootRequest `json:"requests"`
	Machines []RebootMachine `json:"machines"`
}

// RebootPolicy is reboot_max_concurrent, reboot_window and reboot_timeout.
type RebootPolicy struct {
	MaxConcurrent int    `json:"maxConcurrent"`
	Window        string `json:"window,omitempty"`
	Timeout       string `json:"timeout"`
}

// RebootHolder is a machine holding a reboot slot.
type RebootHolder struct {
	MachineID string    `json:"machineID"`
	BootID    string    `json:"bootID"`
	Since     time.Time `json:"since"`
	Deadline  time.Time `json:"deadline"`
}

// RebootQueued is a machine waiting for a slot (or the window).
type RebootQueued struct {
	MachineID string    `json:"machineID"`
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
}

// RebootRequest is a reboot asked with fleetctl reboot, not done yet.
type RebootRequest struct {
	MachineID string    `json:"machineID"`
	Since     time.Time `json:"since"`
	Identity  string    `json:"identity,omitempty"`
}

// RebootMachine is one machine's latest step and last reboot.
type RebootMachine struct {
	MachineID string    `json:"machineID"`
	Step      string    `json:"step,omitempty"`
	StepAt    time.Time `json:"stepAt,omitzero"`
	Detail    string    `json:"detail,omitempty"`
	// Last* describe the last reboot that ended: LastOutcome is back,
	// timeout or failed.
	LastOutcome string    `json:"lastOutcome,omitempty"`
	LastStarted time.Time `json:"lastStarted,omitzero"`
	LastEnded   time.Time `json:"lastEnded,omitzero"`
	LastBootID  string    `json:"lastBootID,omitempty"`
}

// RequestReboot records a reboot request (registry.RequestReboot) by the
// caller in ctx.
func (c *registryClient) RequestReboot(ctx context.Context, machineID string) error {
	if machineID == "" {
		return errorf(ErrInvalid, "no machine ID given")
	}
	id, _ := auth.FromContext(ctx)
	err := c.reg.RequestReboot(ctx, registry.RebootRequest{Machine: machineID, Since: time.Now().UTC(), Identity: id.Name})
	if errors.Is(err, registry.ErrNotFound) {
		return errorf(ErrNotFound, "machine %s is not present: fleetctl list-machines shows the machines that are", machineID)
	}
	return err
}

// RebootStatus reads every reboot record at once.
func (c *registryClient) RebootStatus(ctx context.Context) (*RebootStatus, error) {
	st, err := c.reg.RebootStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := &RebootStatus{Holders: []RebootHolder{}, Queue: []RebootQueued{}, Requests: []RebootRequest{}, Machines: []RebootMachine{}}
	if p := st.Policy; p != nil {
		out.Policy = &RebootPolicy{MaxConcurrent: p.MaxConcurrent, Window: p.Window, Timeout: p.Timeout.String()}
	}
	for id, h := range st.Holders {
		out.Holders = append(out.Holders, RebootHolder{MachineID: id, BootID: h.BootID, Since: h.Since, Deadline: h.Deadline})
	}
	for id, q := range st.Queue {
		out.Queue = append(out.Queue, RebootQueued{MachineID: id, Since: q.Since, Reason: q.Reason})
	}
	for id, q := range st.Requests {
		out.Requests = append(out.Requests, RebootRequest{MachineID: id, Since: q.Since, Identity: q.Identity})
	}
	ids := map[string]bool{}
	for id := range st.Steps {
		ids[id] = true
	}
	for id := range st.Last {
		ids[id] = true
	}
	for id := range ids {
		m := RebootMachine{MachineID: id}
		if s, ok := st.Steps[id]; ok {
			m.Step, m.StepAt, m.Detail = s.Step, s.At, s.Detail
		}
		if l, ok := st.Last[id]; ok {
			m.LastOutcome, m.LastStarted, m.LastEnded, m.LastBootID = l.Outcome, l.Started, l.Ended, l.NewBootID
		}
		out.Machines = append(out.Machines, m)
	}
	sort.Slice(out.Holders, func(i, j int) bool { return out.Holders[i].MachineID < out.Holders[j].MachineID })
	sort.Slice(out.Queue, func(i, j int) bool { return out.Queue[i].MachineID < out.Queue[j].MachineID })
	sort.Slice(out.Requests, func(i, j int) bool { return out.Requests[i].MachineID < out.Requests[j].MachineID })
	sort.Slice(out.Machines, func(i, j int) bool { return out.Machines[i].MachineID < out.Machines[j].MachineID })
	return out, nil
}

func (c *httpClient) RequestReboot(ctx context.Context, machineID string) error {
	resp, err := c.do(ctx, request{method: http.MethodPut, path: "/machines/" + machineID + "/reboot"})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (c *httpClient) RebootStatus(ctx context.Context) (*RebootStatus, error) {
	var st RebootStatus
	if err := c.getJSON(ctx, "/reboots", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *server) rebooter(w http.ResponseWriter) (Rebooter, bool) {
	rb, ok := s.c.(Rebooter)
	if !ok {
		s.sendCode(w, http.StatusNotImplemented, "this fleetd does not coordinate reboots")
	}
	return rb, ok
}

func (s *server) putReboot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	noteAudit(r.Context(), "machine.reboot", "", id)
	rb, ok := s.rebooter(w)
	if !ok {
		return
	}
	if err := rb.RequestReboot(r.Context(), id); err != nil {
		s.sendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) getReboots(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.rebooter(w)
	if !ok {
		return
	}
	st, err := rb.RebootStatus(r.Context())
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusOK, st)
}

// rebootEvent turns a reboot step into an event; prev is the machine's
// step before, if known.
func rebootEvent(prev, cur *registry.RebootStep) Event {
	e := Event{Type: EventRebootStep, MachineID: cur.Machine, To: cur.Step, Result: cur.Detail}
	if prev != nil && !slices.Contains([]string{"", cur.Step}, prev.Step) {
		e.From = prev.Step
	}
	return e
}
