package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// UnitBatcher creates or destroys many units at once, as CreateUnit and
// DestroyUnit would each (an extension beside fleet's API, which has no
// batch): the registry client writes 63 new units, or 127 destroyed ones, to
// an etcd transaction, and the HTTP client sends one request per batch
// (POST and DELETE /fleet/v1/units), so a bulk command costs a few requests
// and writes instead of one of each per unit. fleetctl uses it when its
// client has it.
type UnitBatcher interface {
	// CreateUnits returns one result per unit, in order: its warnings, or
	// why it was not created (ErrExists when a unit of that name exists).
	CreateUnits(ctx context.Context, us []*Unit) []CreateResult
	// DestroyUnits returns one error per name, in order: nil, ErrNotFound
	// or why it was not destroyed.
	DestroyUnits(ctx context.Context, names []string) []error
}

// ErrNoBatch is the error of every unit of a batch the server does not take
// (a fleetd older than batches, or fleet's own server): send one request per
// unit instead.
var ErrNoBatch = errors.New("the server takes no batches")

// CreateResult is what CreateUnits says of one unit.
type CreateResult struct {
	Warnings []string
	Err      error
}

// maxBatch bounds the units of one batch request, so that one request
// stays a bounded amount of work and memory for the server.
const maxBatch = 10000

var (
	_ UnitBatcher = (*registryClient)(nil)
	_ UnitBatcher = (*httpClient)(nil)
)

func (c *registryClient) CreateUnits(ctx context.Context, us []*Unit) []CreateResult {
	t := time.Now()
	out := make([]CreateResult, len(us))
	var news []registry.NewUnit
	var at []int
	seen := make(map[string]bool, len(us))
	templates := map[string]string{}
	for i, u := range us {
		rec, body, warnings, err := c.prepare(ctx, u, false, templates)
		if err == nil && seen[rec.Name] {
			err = errorf(ErrExists, "unit %s already exists: it is given twice", rec.Name)
		}
		out[i] = CreateResult{Warnings: warnings, Err: err}
		if err != nil {
			continue
		}
		seen[rec.Name] = true
		news = append(news, registry.NewUnit{Unit: rec, Body: body})
		at = append(at, i)
	}
	timing(ctx).add("check", t)
	t = time.Now()
	errs := c.reg.CreateUnits(ctx, news)
	timing(ctx).add("etcd", t)
	for j, err := range errs {
		i := at[j]
		switch {
		case errors.Is(err, registry.ErrExists):
			out[i] = CreateResult{Err: errorf(ErrExists, "unit %s already exists", us[i].Name)}
		case err != nil:
			out[i] = CreateResult{Err: err}
		}
	}
	return out
}

func (c *registryClient) DestroyUnits(ctx context.Context, names []string) []error {
	t := time.Now()
	errs := c.reg.DestroyUnits(ctx, names)
	timing(ctx).add("etcd", t)
	for i, err := range errs {
		if errors.Is(err, registry.ErrNotFound) {
			errs[i] = errorf(ErrNotFound, "unit %s not found", names[i])
		}
	}
	return errs
}

// The wire form of a batch: POST /fleet/v1/units {"units":[...]} and
// DELETE /fleet/v1/units {"names":[...]} answer {"results":[...]}, one per
// unit in order, each {} or {"warnings":[...]} or {"error":{"code","message"}}
// with the code the single-unit call would answer (412 for a unit that
// exists, as a create-only PUT).

type batchCreate struct {
	Units []*Unit `json:"units"`
}

type batchDestroy struct {
	Names []string `json:"names"`
}

type batchResult struct {
	Warnings []string     `json:"warnings,omitempty"`
	Error    *errorEntity `json:"error,omitempty"`
}

type batchAnswer struct {
	Results []batchResult `json:"results"`
}

func resultOf(warnings []string, err error) batchResult {
	r := batchResult{Warnings: warnings}
	if err != nil {
		code := statusCode(err)
		if errors.Is(err, ErrExists) {
			code = http.StatusPreconditionFailed
		}
		r = batchResult{Error: &errorEntity{Code: code, Message: err.Error()}}
	}
	return r
}

func (r batchResult) err() error {
	if r.Error == nil {
		return nil
	}
	return &Error{Code: r.Error.Code, Message: r.Error.Message}
}

func (s *server) createUnits(w http.ResponseWriter, r *http.Request) {
	if err := checkJSON(r); err != nil {
		s.sendCode(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	ctx, st := withTiming(r.Context())
	t := time.Now()
	var req batchCreate
	if !s.decodeBody(w, r, &req, "batch of units") {
		return
	}
	st.add("decode", t)
	b, ok := s.batcher(w, r, len(req.Units))
	if !ok {
		return
	}
	noteAudit(ctx, "unit.create-batch", "", fmt.Sprintf("%d units", len(req.Units)))
	out := batchAnswer{Results: make([]batchResult, len(req.Units))}
	s.auditBeside(r, func() {
		for i, res := range b.CreateUnits(ctx, req.Units) {
			out.Results[i] = resultOf(res.Warnings, res.Err)
		}
	})
	st.header(w)
	s.sendJSON(w, http.StatusOK, out)
}

func (s *server) destroyUnits(w http.ResponseWriter, r *http.Request) {
	if err := checkJSON(r); err != nil {
		s.sendCode(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	ctx, st := withTiming(r.Context())
	t := time.Now()
	var req batchDestroy
	if !s.decodeBody(w, r, &req, "batch of unit names") {
		return
	}
	st.add("decode", t)
	b, ok := s.batcher(w, r, len(req.Names))
	if !ok {
		return
	}
	noteAudit(ctx, "unit.destroy-batch", "", fmt.Sprintf("%d units", len(req.Names)))
	out := batchAnswer{Results: make([]batchResult, len(req.Names))}
	s.auditBeside(r, func() {
		for i, err := range b.DestroyUnits(ctx, req.Names) {
			out.Results[i] = resultOf(nil, err)
		}
	})
	st.header(w)
	s.sendJSON(w, http.StatusOK, out)
}

// serverTiming is where a batch request's time went on the server, sent
// back in a Server-Timing header (fleetctl --debug prints it): a batch is
// one request, so the client alone cannot tell fleetd's work from etcd's.
type serverTiming struct {
	mu    sync.Mutex
	parts []string
}

type serverTimingKey struct{}

func withTiming(ctx context.Context) (context.Context, *serverTiming) {
	st := &serverTiming{}
	return context.WithValue(ctx, serverTimingKey{}, st), st
}

// timing is ctx's serverTiming, nil (which records nothing) if none.
func timing(ctx context.Context) *serverTiming {
	st, _ := ctx.Value(serverTimingKey{}).(*serverTiming)
	return st
}

// add records that part took from start until now.
func (st *serverTiming) add(part string, start time.Time) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.parts = append(st.parts, fmt.Sprintf("%s;dur=%.1f", part, float64(time.Since(start).Microseconds())/1000))
}

func (st *serverTiming) header(w http.ResponseWriter) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.parts) > 0 {
		w.Header().Set("Server-Timing", strings.Join(st.parts, ", "))
	}
}

// auditBeside runs a batch's work while the call's audit is recorded, as
// answered 200 (a batch is, whatever becomes of its units), instead of
// after the work as for other calls: the record's etcd write then shares
// the batch's first raft round, where after the batch's writes it would
// queue behind the cluster's answer to them (the engine placing, every
// agent starting units and publishing states), which grows with the
// machines: 40-125 ms of a 300-unit start on 10 real hosts, 1-5 ms on 3
// (BENCHMARKS.md). The record is still stored before the answer, so a
// caller's next call comes after it in the event stream, but it may come
// before the batch's own unit events.
func (s *server) auditBeside(r *http.Request, work func()) {
	note, ok := r.Context().Value(auditNoteKey{}).(*auditNote)
	if !ok {
		work()
		return
	}
	note.recorded = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.audit(r, note, http.StatusOK)
	}()
	work()
	<-done
}

// batcher returns the server's client as a UnitBatcher, or answers why a
// batch of n cannot be served.
func (s *server) batcher(w http.ResponseWriter, r *http.Request, n int) (UnitBatcher, bool) {
	b, ok := s.c.(UnitBatcher)
	switch {
	case !ok:
		s.sendCode(w, http.StatusNotImplemented, "this server does not take batches; send one request per unit")
	case n == 0:
		s.sendError(w, r, errorf(ErrInvalid, "the batch is empty"))
		ok = false
	case n > maxBatch:
		s.sendError(w, r, errorf(ErrInvalid, "a batch holds at most %d units, not %d; send several", maxBatch, n))
		ok = false
	}
	return b, ok
}

func (c *httpClient) CreateUnits(ctx context.Context, us []*Unit) []CreateResult {
	out := make([]CreateResult, len(us))
	for start := 0; start < len(us); start += maxBatch {
		part := us[start:min(len(us), start+maxBatch)]
		ans, err := c.batch(ctx, http.MethodPost, batchCreate{Units: part}, len(part))
		for i := range part {
			if err != nil {
				out[start+i] = CreateResult{Err: err}
				continue
			}
			out[start+i] = CreateResult{Warnings: ans.Results[i].Warnings, Err: ans.Results[i].err()}
		}
	}
	return out
}

func (c *httpClient) DestroyUnits(ctx context.Context, names []string) []error {
	out := make([]error, len(names))
	for start := 0; start < len(names); start += maxBatch {
		part := names[start:min(len(names), start+maxBatch)]
		ans, err := c.batch(ctx, http.MethodDelete, batchDestroy{Names: part}, len(part))
		for i := range part {
			if err != nil {
				out[start+i] = err
				continue
			}
			out[start+i] = ans.Results[i].err()
		}
	}
	return out
}

func (c *httpClient) batch(ctx context.Context, method string, body any, n int) (batchAnswer, error) {
	var ans batchAnswer
	resp, err := c.do(ctx, request{method: method, path: "/units", body: body})
	var apiErr *Error
	if errors.As(err, &apiErr) && (apiErr.Code == http.StatusMethodNotAllowed || apiErr.Code == http.StatusNotImplemented) {
		return ans, fmt.Errorf("%w: %s", ErrNoBatch, apiErr.Message)
	}
	if err != nil {
		return ans, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return ans, fmt.Errorf("decode batch answer: %w", err)
	}
	if len(ans.Results) != n {
		return ans, fmt.Errorf("batch answer holds %d results for %d units", len(ans.Results), n)
	}
	return ans, nil
}
