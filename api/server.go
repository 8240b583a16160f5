package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-a1ce88ea/fleet/api/auth"
)

const (
	// maxRequestBody bounds a PUT or PATCH body; unit files are small.
	maxRequestBody = 1 << 20
	// defaultMaxEventStreams bounds the event streams one identity may
	// hold open at once: each holds an etcd watch.
	defaultMaxEventStreams = 16
	// maxJournalLines bounds ?lines= of the journal endpoint.
	maxJournalLines = 100000
	// defaultJournalLines is fleetctl journal's default.
	defaultJournalLines = 10
	// firstChunkWait is how long a streamed answer waits for its first
	// bytes before sending its header anyway: a failure within that time
	// still gets an error status.
	firstChunkWait = 500 * time.Millisecond
)

// ServerOption configures NewServer.
type ServerOption func(*server)

// WithVersion sets the version the server names in its Server header
// ("fleetd/<version>"; default "dev").
func WithVersion(v string) ServerOption {
	return func(s *server) {
		if v != "" {
			s.version = v
		}
	}
}

// WithLocalMachine tells the server which machine it runs on and how to read
// that machine's systemd: status and journal requests for units scheduled
// here are answered by insp; others are forwarded to the unit's machine.
func WithLocalMachine(id string, insp Inspector) ServerOption {
	return func(s *server) { s.local, s.insp = id, insp }
}

// WithLogger sets the logger for failed requests (default: discard).
func WithLogger(l *slog.Logger) ServerOption {
	return func(s *server) {
		if l != nil {
			s.log = l
		}
	}
}

// WithMaxEventStreams sets how many event streams one caller (one
// identity) may hold open at once (default 16); beyond it a request gets
// 429 Too Many Requests.
func WithMaxEventStreams(n int) ServerOption {
	return func(s *server) {
		if n > 0 {
			s.maxStreams = n
		}
	}
}

type server struct {
	c       Client
	version string
	local   string
	insp    Inspector
	log     *slog.Logger
	// auditor stores audit records in etcd; nil when the Client cannot.
	auditor auditRecorder

	maxStreams int
	streamsMu  sync.Mutex
	streams    map[string]int // open event streams by caller

	lists *listCache // listings being paged through
}

// NewServer returns the handler of fleet's v1 API on top of c:
//
//	GET    /fleet/v1/units                 {"units":[...],"nextPageToken":"..."}
//	GET    /fleet/v1/units/{name}          a Unit
//	PUT    /fleet/v1/units/{name}          create (201), set desiredState (204)
//	DELETE /fleet/v1/units/{name}          destroy (204)
//	GET    /fleet/v1/state                 {"states":[...],"nextPageToken":"..."}, ?machineID= ?unitName=
//	GET    /fleet/v1/state/{name}          a UnitState (404 until the unit's agent reports one)
//	GET    /fleet/v1/machines              {"machines":[...],"nextPageToken":"..."}
//	PATCH  /fleet/v1/machines              dynamic metadata, JSON Patch (204)
//	GET    /fleet/v1/discovery             the discovery document of this API
//
// and extensions:
//
//	GET    /fleet/v1/units?view=summary    {"view":"summary","units":[UnitSummary...],"nextPageToken":"..."}
//	GET    /fleet/v1/units/{name}/status   text of systemctl status
//	GET    /fleet/v1/units/{name}/journal  journal text, ?lines=N ?follow=true ?output=MODE
//	GET    /fleet/v1/units/{name}/placement every machine with the checker that rejects the unit or its score
//	GET    /fleet/v1/events                cluster events, one JSON object per line, until closed
//	POST   /fleet/v1/machines/{id}/drain   drain a machine (201, the plan); DELETE ends it (204)
//	POST   /fleet/v1/units/{name}/move     move a unit to {"machineID"} (202); see Drainer
//
// Collections come in pages of 100 with fleet's page tokens; a bad token is
// a 400. PUT follows fleet: a body with options creates the unit (409
// without options); for an existing unit it must carry the same options (or
// none) and a desiredState, which is then set; different options answer 409
// unless ?replace=true. Extensions: If-None-Match: * makes a PUT create only
// (412 if the unit exists), If-Match: * makes it update only (404 if the
// unit does not exist), and warnings about the unit come back in Warning
// headers.
//
// Errors are {"error":{"code":N,"message":"..."}}.
func NewServer(c Client, opts ...ServerOption) http.Handler {
	s := &server{c: c, version: "dev", log: slog.New(slog.DiscardHandler), maxStreams: defaultMaxEventStreams, streams: map[string]int{}, lists: newListCache()}
	for _, o := range opts {
		o(s)
	}
	s.auditor, _ = c.(auditRecorder)
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		var allowed []string
		for method, h := range rt.handlers {
			if method != http.MethodGet && method != http.MethodHead {
				h = s.audited(method, rt.path, h)
			}
			mux.HandleFunc(method+" "+rt.path, h)
			allowed = append(allowed, method)
		}
		slices.Sort(allowed)
		// Requests with other methods fall through to this less specific
		// pattern, so a 405 carries a JSON body like every other error.
		mux.HandleFunc(rt.path, s.methodNotAllowed(allowed))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.sendError(w, r, errorf(ErrNotFound, "no such API resource: %s", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "fleetd/"+s.version)
		mux.ServeHTTP(w, r)
	})
}

// route is one path of the API and its handler per method.
type route struct {
	path     string
	handlers map[string]http.HandlerFunc
}

// routes is the API's route table; RequiredRole decides who may use each.
func (s *server) routes() []route {
	return []route{
		{"/fleet/v1/units", map[string]http.HandlerFunc{
			http.MethodGet:    s.listUnits,
			http.MethodPost:   s.createUnits,  // batch, see UnitBatcher
			http.MethodDelete: s.destroyUnits, // batch
		}},
		{"/fleet/v1/units/{name}", map[string]http.HandlerFunc{
			http.MethodGet:    s.getUnit,
			http.MethodPut:    s.putUnit,
			http.MethodDelete: s.deleteUnit,
		}},
		{"/fleet/v1/units/{name}/status", map[string]http.HandlerFunc{http.MethodGet: s.unitStatus}},
		{"/fleet/v1/units/{name}/journal", map[string]http.HandlerFunc{http.MethodGet: s.unitJournal}},
		{"/fleet/v1/units/{name}/placement", map[string]http.HandlerFunc{http.MethodGet: s.unitPlacement}},
		{"/fleet/v1/state", map[string]http.HandlerFunc{http.MethodGet: s.listStates}},
		{"/fleet/v1/state/{name}", map[string]http.HandlerFunc{http.MethodGet: s.getState}},
		{"/fleet/v1/machines", map[string]http.HandlerFunc{
			http.MethodGet:   s.listMachines,
			http.MethodPatch: s.patchMachines,
		}},
		{"/fleet/v1/discovery", map[string]http.HandlerFunc{http.MethodGet: s.discovery}},
		{"/fleet/v1/events", map[string]http.HandlerFunc{http.MethodGet: s.events}},
		{"/fleet/v1/machines/{id}/drain", map[string]http.HandlerFunc{
			http.MethodPost:   s.drainMachine,
			http.MethodDelete: s.undrainMachine,
		}},
		{"/fleet/v1/units/{name}/move", map[string]http.HandlerFunc{http.MethodPost: s.moveUnit}},
		{"/fleet/v1/rollouts", map[string]http.HandlerFunc{http.MethodGet: s.listRollouts, http.MethodPost: s.postRollout}},
		{"/fleet/v1/rollouts/{name}", map[string]http.HandlerFunc{http.MethodGet: s.getRollout}},
		{"/fleet/v1/rollouts/{name}/{action}", map[string]http.HandlerFunc{http.MethodPost: s.controlRollout}},
		{"/fleet/v1/machines/{id}/reboot", map[string]http.HandlerFunc{http.MethodPut: s.putReboot}},
		{"/fleet/v1/reboots", map[string]http.HandlerFunc{http.MethodGet: s.getReboots}},
	}
}

func (s *server) methodNotAllowed(allowed []string) http.HandlerFunc {
	list := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", list)
		s.sendCode(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, list))
	}
}

func (s *server) listUnits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tok, err := pageFromQuery(q)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	if sum, ok, err := summarizer(s.c, q); err != nil || ok {
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		s.listSummaries(w, r, sum, tok)
		return
	}
	items, next, err := page(s, "units", tok, func() ([]*Unit, error) { return s.c.Units(r.Context()) })
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	sendPage(s, w, "units", items, next)
}

func (s *server) getUnit(w http.ResponseWriter, r *http.Request) {
	u, err := s.c.Unit(r.Context(), r.PathValue("name"))
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendJSON(w, http.StatusOK, u)
}

func (s *server) putUnit(w http.ResponseWriter, r *http.Request) {
	if err := checkJSON(r); err != nil {
		s.sendCode(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	name := r.PathValue("name")
	var u Unit
	if !s.decodeBody(w, r, &u, "unit file") {
		return
	}
	if u.Name == "" {
		u.Name = name
	}
	if u.Name != name {
		s.sendError(w, r, errorf(ErrInvalid, "unit name %q in the body differs from %q in the URL", u.Name, name))
		return
	}
	p := putRequest{
		unit:       &u,
		createOnly: r.Header.Get("If-None-Match") == "*",
		updateOnly: r.Header.Get("If-Match") == "*",
	}
	if v := r.URL.Query().Get("replace"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.sendError(w, r, errorf(ErrInvalid, "replace must be true or false, not %q", v))
			return
		}
		p.replace = b
	}
	created, warnings, err := s.put(r.Context(), p)
	action := "unit.set-state"
	switch {
	case err != nil:
		action = "unit.put"
	case created:
		action = "unit.create"
	case p.replace && len(u.Options) > 0:
		action = "unit.replace"
	}
	noteAudit(r.Context(), action, name, u.DesiredState)
	if err != nil {
		if p.createOnly && errors.Is(err, ErrExists) {
			s.sendCode(w, http.StatusPreconditionFailed, err.Error())
			return
		}
		s.sendError(w, r, err)
		return
	}
	for _, wn := range warnings {
		w.Header().Add("Warning", formatWarning(wn))
	}
	if created {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type putRequest struct {
	unit       *Unit
	replace    bool // ?replace=true: overwrite a different unit file
	createOnly bool // If-None-Match: *
	updateOnly bool // If-Match: *
}

// put decides what a PUT means, following fleet: create a missing unit,
// set the desired state of an existing one whose options match (or are not
// given), refuse different options unless replacing.
func (s *server) put(ctx context.Context, p putRequest) (created bool, warnings []string, err error) {
	u := p.unit
	existing, err := s.c.Unit(ctx, u.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		if p.updateOnly {
			return false, nil, err
		}
		if p.replace {
			warnings, err = s.c.ReplaceUnit(ctx, u)
		} else {
			warnings, err = s.c.CreateUnit(ctx, u)
		}
		return err == nil, warnings, err
	case err != nil:
		return false, nil, err
	case p.createOnly:
		return false, nil, errorf(ErrExists, "unit %s already exists", u.Name)
	}
	if p.replace && len(u.Options) > 0 {
		warnings, err = s.c.ReplaceUnit(ctx, u)
		return false, warnings, err
	}
	if len(u.Options) > 0 && FileFromOptions(u.Options).Hash() != FileFromOptions(existing.Options).Hash() {
		return false, nil, errorf(ErrConflict, "unit %s already exists with a different unit file; destroy it first or replace it", u.Name)
	}
	if u.DesiredState == "" {
		return false, nil, errorf(ErrConflict, "unit %s already exists; give a desiredState to change it", u.Name)
	}
	return false, nil, s.c.SetUnitTargetState(ctx, u.Name, u.DesiredState)
}

// checkJSON accepts exactly one Content-Type, application/json (with any
// parameters).
func checkJSON(r *http.Request) error {
	values := r.Header.Values("Content-Type")
	if len(values) != 1 {
		return fmt.Errorf("expected one Content-Type header, got %d; send application/json", len(values))
	}
	mt, _, err := mime.ParseMediaType(values[0])
	if err != nil || mt != "application/json" {
		return fmt.Errorf("Content-Type %q is not accepted; send application/json", values[0])
	}
	return nil
}

func (s *server) deleteUnit(w http.ResponseWriter, r *http.Request) {
	noteAudit(r.Context(), "unit.destroy", r.PathValue("name"), "")
	if err := s.c.DestroyUnit(r.Context(), r.PathValue("name")); err != nil {
		s.sendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listStates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tok, err := pageFromQuery(q)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	f := StateFilter{MachineIDs: q["machineID"], UnitNames: q["unitName"]}
	key := "state?" + url.Values{"machineID": f.MachineIDs, "unitName": f.UnitNames}.Encode()
	items, next, err := page(s, key, tok, func() ([]*UnitState, error) { return s.c.UnitStates(r.Context(), f) })
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	sendPage(s, w, "states", items, next)
}

// getState answers fleet v1.0's fleetctl, which waits on it after a start:
// the state the agent of the unit's machine published (of the several a
// moving unit may briefly have, that machine's).
func (s *server) getState(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	states, err := s.c.UnitStates(r.Context(), StateFilter{UnitNames: []string{name}})
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	if len(states) == 0 {
		s.sendError(w, r, errorf(ErrNotFound, "unit %s has no state: no machine's agent reported it", name))
		return
	}
	st := states[0]
	if len(states) > 1 {
		if u, err := s.c.Unit(r.Context(), name); err == nil {
			if on := stateOn(states, u.MachineID); on != nil {
				st = on
			}
		}
	}
	s.sendJSON(w, http.StatusOK, st)
}

// stateOn returns the state of ss published by machine id (nil if none).
func stateOn(ss []*UnitState, id string) *UnitState {
	for _, s := range ss {
		if s.MachineID == id {
			return s
		}
	}
	return nil
}

func (s *server) listMachines(w http.ResponseWriter, r *http.Request) {
	tok, err := pageFromQuery(r.URL.Query())
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	items, next, err := page(s, "machines", tok, func() ([]Machine, error) { return s.c.Machines(r.Context()) })
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	sendPage(s, w, "machines", items, next)
}

// patchMachines applies fleet's JSON Patch of machine metadata. Like fleet
// it ignores the Content-Type (fleet's own clients sent none, curl -d sends
// a form type): the body must be the JSON list either way.
func (s *server) patchMachines(w http.ResponseWriter, r *http.Request) {
	var ops []MachineMetadataOp
	if !s.decodeBody(w, r, &ops, "machine metadata patch") {
		return
	}
	noteAudit(r.Context(), "machines.set-metadata", "", describeOps(ops))
	if err := s.c.SetMachineMetadata(r.Context(), ops); err != nil {
		s.sendError(w, r, err)
		return
	}
	// fleet answered this 204 as JSON.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
}

// describeOps lists metadata operations for the audit: "add /m1/metadata/k".
// Values are left out; the list is clipped, as a body may hold many.
func describeOps(ops []MachineMetadataOp) string {
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(op.Op + " " + op.Path)
	}
	return clipText(b.String(), 200)
}

// decodeBody decodes a bounded JSON body, a what, into v; on failure it
// answers and returns false.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, v any, what string) bool {
	tooLarge := func() bool {
		s.sendCode(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than 1 MiB: the request body may be at most %d bytes", what, maxRequestBody))
		return false
	}
	if r.ContentLength > maxRequestBody {
		return tooLarge()
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		s.sendError(w, r, errorf(ErrInvalid, "decode request body: %v", err))
		return false
	}
	return true
}

func (s *server) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, discoveryJSON) // the client went away; nothing to do
}

func (s *server) unitStatus(w http.ResponseWriter, r *http.Request) {
	name, local, ok := s.locate(w, r)
	if !ok {
		return
	}
	var text string
	var err error
	if local {
		text, err = s.insp.Status(r.Context(), name)
	} else {
		text, err = s.c.UnitStatus(r.Context(), name)
	}
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, text) // the client went away; nothing to do
}

func (s *server) unitJournal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := JournalOptions{Lines: defaultJournalLines, Output: q.Get("output")}
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxJournalLines {
			s.sendError(w, r, errorf(ErrInvalid, "lines must be a number from 0 to %d, not %q", maxJournalLines, v))
			return
		}
		opts.Lines = n
	}
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.sendError(w, r, errorf(ErrInvalid, "follow must be true or false, not %q", v))
			return
		}
		opts.Follow = b
	}
	if err := checkJournalOptions(opts); err != nil {
		s.sendError(w, r, err)
		return
	}
	name, local, ok := s.locate(w, r)
	if !ok {
		return
	}
	s.unbounded(w, r)
	var rc io.ReadCloser
	var err error
	if local {
		rc, err = s.insp.Journal(r.Context(), name, opts)
	} else {
		rc, err = s.c.UnitJournal(r.Context(), name, opts)
	}
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.sendStream(w, r, rc, "text/plain; charset=utf-8")
}

// locate decides who answers a request for machine-local data about a unit:
// this machine's Inspector when the unit is scheduled here (or is global),
// otherwise the Client, which forwards to the unit's machine. A forwarded
// request is never forwarded again. On failure it answers and ok is false.
func (s *server) locate(w http.ResponseWriter, r *http.Request) (name string, local, ok bool) {
	ctx, name := r.Context(), r.PathValue("name")
	u, err := s.c.Unit(ctx, name)
	if err != nil {
		s.sendError(w, r, err)
		return name, false, false
	}
	local = s.insp != nil && s.local != "" && (u.MachineID == s.local || (u.MachineID == "" && IsGlobal(u)))
	if !local && r.Header.Get(forwardedHeader) != "" {
		where := "another machine"
		if u.MachineID != "" {
			where = "machine " + u.MachineID
		}
		s.sendError(w, r, errorf(ErrUnavailable, "unit %s is not scheduled to this machine (%s) but to %s; it may have just moved, try again", name, s.local, where))
		return name, false, false
	}
	return name, local, true
}

// sendStream copies rc to the client as it comes, flushing every chunk,
// until rc ends, the client goes away or the request's ctx ends. A failure
// before the first bytes (within firstChunkWait) gets an error status; a
// later one just ends the answer.
func (s *server) sendStream(w http.ResponseWriter, r *http.Request, rc io.ReadCloser, contentType string) {
	defer rc.Close()
	type chunk struct {
		n   int
		err error
	}
	buf := make([]byte, 32<<10)
	first := make(chan chunk, 1)
	go func() {
		n, err := rc.Read(buf)
		first <- chunk{n, err}
	}()
	flusher, _ := w.(http.Flusher)
	started := false
	start := func() {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if flusher != nil {
			flusher.Flush()
		}
		started = true
	}
	timer := time.NewTimer(firstChunkWait)
	defer timer.Stop()
	var c chunk
	select {
	case c = <-first:
	case <-timer.C:
		start()
		select {
		case c = <-first:
		case <-r.Context().Done():
			_ = rc.Close() // ends the pending Read
			<-first
			return
		}
	case <-r.Context().Done():
		_ = rc.Close()
		<-first
		return
	}
	if !started {
		if c.n == 0 && c.err != nil && !errors.Is(c.err, io.EOF) {
			s.sendError(w, r, c.err)
			return
		}
		start()
	}
	for {
		if c.n > 0 {
			if _, err := w.Write(buf[:c.n]); err != nil {
				return // the client went away
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if c.err != nil {
			if !errors.Is(c.err, io.EOF) && r.Context().Err() == nil {
				s.log.Warn("API stream ended early", "path", r.URL.Path, "err", c.err)
			}
			return
		}
		c.n, c.err = rc.Read(buf)
	}
}

// openStream counts an event stream of caller, unless it has the most it
// may have open.
func (s *server) openStream(caller string) bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams[caller] >= s.maxStreams {
		return false
	}
	s.streams[caller]++
	return true
}

func (s *server) closeStream(caller string) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams[caller]--; s.streams[caller] <= 0 {
		delete(s.streams, caller)
	}
}

// unbounded lifts the http.Server's read and write timeouts off a streamed
// answer, which lasts as long as the client wants: they are meant for
// slow or stuck clients of ordinary requests. (A read deadline that passed
// would also cancel the request's context.)
func (s *server) unbounded(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	for _, err := range []error{rc.SetWriteDeadline(time.Time{}), rc.SetReadDeadline(time.Time{})} {
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Debug("stream deadline not lifted", "path", r.URL.Path, "err", err)
		}
	}
}

// events streams cluster events as newline-delimited JSON until the client
// goes away.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		id = auth.Identity{Name: "unknown"}
	}
	// A token and a certificate may carry the same name: they are
	// different callers.
	caller := id.Via + ":" + id.Name
	if !s.openStream(caller) {
		s.sendCode(w, http.StatusTooManyRequests, fmt.Sprintf("%s has %d event streams open, the most one caller may; close one before opening another", id.Name, s.maxStreams))
		return
	}
	defer s.closeStream(caller)
	s.unbounded(w, r)
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	err := s.c.Events(r.Context(), func(e Event) error {
		if err := enc.Encode(e); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		s.log.Warn("event stream ended", "err", err)
	}
}

func (s *server) sendJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode API answer", "err", err)
		code, b = http.StatusInternalServerError, []byte(`{"error":{"code":500,"message":"encode answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // the client went away; nothing to do
}

// sendError answers with err's status code and message. Server-side
// failures (5xx) are also logged, since the caller may not be able to act on
// them.
func (s *server) sendError(w http.ResponseWriter, r *http.Request, err error) {
	code := statusCode(err)
	if code >= 500 {
		s.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	s.sendCode(w, code, err.Error())
}

func (s *server) sendCode(w http.ResponseWriter, code int, msg string) {
	writeError(w, code, msg)
}

// writeError answers with fleet's error shape,
// {"error":{"code":N,"message":"..."}}.
func writeError(w http.ResponseWriter, code int, msg string) {
	// Marshalling a struct of an int and a string cannot fail.
	b, _ := json.Marshal(errorBody{Error: errorEntity{Code: code, Message: msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // the client went away; nothing to do
}
