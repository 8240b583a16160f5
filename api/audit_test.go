package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/api/auth"
)

// logRecorder is a slog.Handler that keeps the records logged, with their
// attributes flattened to strings.
type logRecorder struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, m)
	return nil
}

func (h *logRecorder) withMsg(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestAudit makes mutating calls through Authorize and the server, with
// tokens of both roles, and checks each is logged and streamed as an
// api.call event naming the caller.
func TestAudit(t *testing.T) {
	c := newCluster(t)
	logs := &logRecorder{}
	toks, err := auth.ParseTokens(strings.NewReader("ci admin admin-token\nviewer read read-token\n"))
	require.NoError(t, err)
	srv := serveTCP(t, api.Authorize(auth.NewAuthenticator(toks, false),
		api.NewServer(c.rc, api.WithLogger(slog.New(logs)), api.WithLocalMachine("m1", nil)), api.WithRefusalLog(slog.New(logs))))

	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	events, done := apiCallEvents(t, ctx, c, 100)

	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	a := call(t, srv.URL, "PUT", "/fleet/v1/units/hello.service", `{"desiredState":"launched",`+helloJSON[1:], bearer("admin-token")...)
	require.Equal(t, http.StatusCreated, a.code, a.body)
	a = call(t, srv.URL, "PUT", "/fleet/v1/units/hello.service", `{"desiredState":"inactive"}`, bearer("admin-token")...)
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	a = call(t, srv.URL, "DELETE", "/fleet/v1/units/nope.service", "", bearer("admin-token")...)
	require.Equal(t, http.StatusNotFound, a.code, a.body)
	a = call(t, srv.URL, "PATCH", "/fleet/v1/machines", `[{"op":"add","path":"/m1/metadata/k","value":"v"}]`, bearer("admin-token")...)
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	// Refused before the server: logged, but not stored in etcd.
	a = call(t, srv.URL, "DELETE", "/fleet/v1/units/hello.service", "", bearer("read-token")...)
	require.Equal(t, http.StatusForbidden, a.code, a.body)
	a = call(t, srv.URL, "PUT", "/fleet/v1/units/evil.service", helloJSON, bearer("guess")...)
	require.Equal(t, http.StatusUnauthorized, a.code, a.body)
	// Reads are not audited.
	a = call(t, srv.URL, "GET", "/fleet/v1/units/hello.service", "", bearer("read-token")...)
	require.Equal(t, http.StatusOK, a.code, a.body)
	a = call(t, srv.URL, "DELETE", "/fleet/v1/units/hello.service", "", bearer("admin-token")...)
	require.Equal(t, http.StatusNoContent, a.code, a.body)

	want := []map[string]string{
		{"msg": "audit", "identity": "ci", "via": "token", "method": "PUT", "path": "/fleet/v1/units/hello.service",
			"action": "unit.create", "unit": "hello.service", "detail": "launched", "status": "201"},
		{"msg": "audit", "identity": "ci", "via": "token", "method": "PUT", "path": "/fleet/v1/units/hello.service",
			"action": "unit.set-state", "unit": "hello.service", "detail": "inactive", "status": "204"},
		{"msg": "audit", "identity": "ci", "via": "token", "method": "DELETE", "path": "/fleet/v1/units/nope.service",
			"action": "unit.destroy", "unit": "nope.service", "detail": "", "status": "404"},
		{"msg": "audit", "identity": "ci", "via": "token", "method": "PATCH", "path": "/fleet/v1/machines",
			"action": "machines.set-metadata", "unit": "", "detail": "add /m1/metadata/k", "status": "204"},
		{"msg": "audit", "identity": "viewer", "via": "token", "method": "DELETE", "path": "/fleet/v1/units/hello.service",
			"action": "refused", "status": "403", "reason": "DELETE /fleet/v1/units/hello.service needs role admin; viewer has role read (authenticated by token)"},
		{"msg": "audit", "identity": "unauthenticated", "via": "", "method": "PUT", "path": "/fleet/v1/units/evil.service",
			"action": "refused", "status": "401", "reason": "token not recognised"},
		{"msg": "audit", "identity": "ci", "via": "token", "method": "DELETE", "path": "/fleet/v1/units/hello.service",
			"action": "unit.destroy", "unit": "hello.service", "detail": "", "status": "204"},
	}
	require.Equal(t, want, logs.withMsg("audit"))

	type seen struct{ identity, action, unit, to, result, machine string }
	var got []seen
	timeout := time.After(10 * time.Second)
	for len(got) < 5 {
		select {
		case e := <-events:
			require.Equal(t, api.EventAPICall, e.Type)
			got = append(got, seen{e.Identity, e.Action, e.Unit, e.To, e.Result, e.MachineID})
		case <-timeout:
			t.Fatalf("api.call events: got %v, want %d", got, len(want))
		}
	}
	require.Equal(t, []seen{
		{"ci", "unit.create", "hello.service", "launched", "201 Created", "m1"},
		{"ci", "unit.set-state", "hello.service", "inactive", "204 No Content", "m1"},
		{"ci", "unit.destroy", "nope.service", "", "404 Not Found", "m1"},
		{"ci", "machines.set-metadata", "", "add /m1/metadata/k", "204 No Content", "m1"},
		// The refusals in between are not in etcd.
		{"ci", "unit.destroy", "hello.service", "", "204 No Content", "m1"},
	}, got)
	require.Empty(t, logs.withMsg("audit record not stored in etcd; it is in this log only"))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// apiCallEvents follows the cluster's event stream from its start and
// passes on its api.call events; done has the stream's end.
func apiCallEvents(t *testing.T, ctx context.Context, c *cluster, buf int) (events <-chan api.Event, done <-chan error) {
	t.Helper()
	ch, end := make(chan api.Event, buf), make(chan error, 1)
	go func() {
		end <- c.rc.Events(ctx, func(e api.Event) error {
			if e.Type == api.EventAPICall || e.Type == api.EventStreamStarted {
				ch <- e
			}
			return nil
		})
	}()
	require.Equal(t, api.EventStreamStarted, (<-ch).Type)
	return ch, end
}
