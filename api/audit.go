package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// auditTimeout bounds storing one audit record in etcd.
const auditTimeout = 10 * time.Second

// auditRecorder stores audit records where `fleetctl events` shows them;
// NewRegistryClient's Client is one.
type auditRecorder interface {
	RecordAudit(ctx context.Context, rec registry.AuditRecord) error
}

// RecordAudit stores rec in etcd (registry.RecordAudit).
func (c *registryClient) RecordAudit(ctx context.Context, rec registry.AuditRecord) error {
	return c.reg.RecordAudit(ctx, rec)
}

// auditNote is what a mutating handler tells the audit about its call.
type auditNote struct {
	action, unit, detail string
	recorded             bool // the handler recorded the call itself (auditBeside)
}

type auditNoteKey struct{}

// noteAudit records, for the audit of the request of ctx, what it did.
func noteAudit(ctx context.Context, action, unit, detail string) {
	if n, ok := ctx.Value(auditNoteKey{}).(*auditNote); ok {
		n.action, n.unit, n.detail = action, unit, detail
	}
}

// audited wraps the handler of a method that may change the cluster: once
// it has answered, the call is logged ("audit") and, when the server's
// Client can store them, recorded in etcd for the event stream.
func (s *server) audited(method, path string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		note := &auditNote{action: method + " " + path, unit: r.PathValue("name")}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note)))
		if !note.recorded {
			s.audit(r, note, sw.code)
		}
	}
}

func (s *server) audit(r *http.Request, note *auditNote, code int) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		// The server runs without Authorize in front (tests, embedding).
		id = auth.Identity{Name: "unknown", Via: "unauthenticated"}
	}
	rec := registry.AuditRecord{
		Time: time.Now().UTC(), Machine: s.local, Identity: id.Name, Via: id.Via,
		Method: r.Method, Path: r.URL.Path, Action: note.action, Unit: note.unit, Detail: note.detail, Status: code,
	}
	s.log.Info("audit", "identity", rec.Identity, "via", rec.Via, "method", rec.Method, "path", rec.Path,
		"action", rec.Action, "unit", rec.Unit, "detail", rec.Detail, "status", rec.Status)
	if s.auditor == nil {
		return
	}
	// The write is part of the call: done beside the answer, it would
	// outlive the server that no one can wait for, and be lost when fleetd
	// stops. It costs one etcd write next to the call's own. A caller that
	// goes away does not cancel it; a failure is logged, as the record is
	// then in this log only.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.auditor.RecordAudit(ctx, rec); err != nil {
		s.log.Warn("audit record not stored in etcd; it is in this log only", "identity", rec.Identity,
			"method", rec.Method, "path", rec.Path, "status", rec.Status, "err", err)
	}
}

// statusWriter remembers the status code of an answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// resultText renders an HTTP status for people: "201 Created".
func resultText(code int) string {
	return fmt.Sprintf("%d %s", code, http.StatusText(code))
}
