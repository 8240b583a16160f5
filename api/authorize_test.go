package api

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api/auth"
)

// notFoundClient is a Client that knows no unit: every call fails with
// ErrNotFound, and Events ends at once. Handlers behind Authorize answer
// through it without a cluster.
type notFoundClient struct{}

var errNoUnit = errorf(ErrNotFound, "no such unit (notFoundClient)")

func (notFoundClient) Machines(context.Context) ([]Machine, error) { return nil, errNoUnit }
func (notFoundClient) SetMachineMetadata(context.Context, []MachineMetadataOp) error {
	return errNoUnit
}
func (notFoundClient) Units(context.Context) ([]*Unit, error)      { return nil, errNoUnit }
func (notFoundClient) Unit(context.Context, string) (*Unit, error) { return nil, errNoUnit }
func (notFoundClient) UnitStates(context.Context, StateFilter) ([]*UnitState, error) {
	return nil, errNoUnit
}
func (notFoundClient) CreateUnit(context.Context, *Unit) ([]string, error)      { return nil, errNoUnit }
func (notFoundClient) ReplaceUnit(context.Context, *Unit) ([]string, error)     { return nil, errNoUnit }
func (notFoundClient) SetUnitTargetState(context.Context, string, string) error { return errNoUnit }
func (notFoundClient) DestroyUnit(context.Context, string) error                { return errNoUnit }
func (notFoundClient) UnitStatus(context.Context, string) (string, error)       { return "", errNoUnit }
func (notFoundClient) Events(context.Context, func(Event) error) error          { return nil }
func (notFoundClient) UnitJournal(context.Context, string, JournalOptions) (io.ReadCloser, error) {
	return nil, errNoUnit
}

// TestAuthorizeEveryRoute walks every route of NewServer with every role,
// with unknown credentials and with none, and checks who gets through.
func TestAuthorizeEveryRoute(t *testing.T) {
	// The role each route needs, written out: a route added to the server
	// without a line here fails the test.
	want := map[string]auth.Role{
		"GET /fleet/v1/units":                     auth.RoleRead,
		"GET /fleet/v1/units?view=summary":        auth.RoleRead, // summaries: same route, same role
		"GET /fleet/v1/units/{name}":              auth.RoleRead,
		"PUT /fleet/v1/units/{name}":              auth.RoleAdmin,
		"DELETE /fleet/v1/units/{name}":           auth.RoleAdmin,
		"GET /fleet/v1/units/{name}/status":       auth.RoleRead,
		"GET /fleet/v1/units/{name}/journal":      auth.RoleRead,
		"GET /fleet/v1/state":                     auth.RoleRead,
		"GET /fleet/v1/state/{name}":              auth.RoleRead,
		"GET /fleet/v1/machines":                  auth.RoleRead,
		"PATCH /fleet/v1/machines":                auth.RoleAdmin,
		"GET /fleet/v1/discovery":                 auth.RoleRead,
		"GET /fleet/v1/events":                    auth.RoleRead,
		"HEAD /fleet/v1/units":                    auth.RoleRead,
		"HEAD /fleet/v1/units/{name}/status":      auth.RoleRead,
		"POST /fleet/v1/units":                    auth.RoleAdmin, // batch create
		"POST /fleet/v1/units/{name}":             auth.RoleAdmin,
		"PATCH /fleet/v1/units/{name}":            auth.RoleAdmin,
		"DELETE /fleet/v1/units":                  auth.RoleAdmin, // batch destroy
		"DELETE /fleet/v1/units/{name}/status":    auth.RoleAdmin,
		"PUT /fleet/v1/machines":                  auth.RoleAdmin,
		"POST /fleet/v1/events":                   auth.RoleAdmin,
		"GET /fleet/v1/nothing":                   auth.RoleRead, // 404 for a reader
		"POST /fleet/v1/machines/{id}/drain":      auth.RoleAdmin,
		"DELETE /fleet/v1/machines/{id}/drain":    auth.RoleAdmin,
		"POST /fleet/v1/units/{name}/move":        auth.RoleAdmin,
		"GET /":                                   auth.RoleAdmin,
		"GET /fleet/v1/rollouts":                  auth.RoleRead,
		"POST /fleet/v1/rollouts":                 auth.RoleAdmin,
		"GET /fleet/v1/rollouts/{name}":           auth.RoleRead,
		"POST /fleet/v1/rollouts/{name}/{action}": auth.RoleAdmin,
		"GET /fleet/v1/units/{name}/placement":    auth.RoleRead,
		"PUT /fleet/v1/machines/{id}/reboot":      auth.RoleAdmin,
		"GET /fleet/v1/reboots":                   auth.RoleRead,
	}
	var routed []string
	for _, rt := range (&server{}).routes() {
		for method := range rt.handlers {
			routed = append(routed, method+" "+rt.path)
		}
	}
	for _, r := range routed {
		require.Contains(t, want, r, "route %s of NewServer has no line in this test", r)
	}

	toks, err := auth.ParseTokens(strings.NewReader("viewer read read-token\nm2 peer peer-token\nci admin admin-token\n"))
	require.NoError(t, err)
	h := Authorize(auth.NewAuthenticator(toks, false), NewServer(notFoundClient{}))
	callers := []struct {
		name   string
		bearer string
		ctxID  *auth.Identity
		role   auth.Role // "" for a refused caller
		code   int       // answer of a refused caller
	}{
		{name: "none", code: http.StatusUnauthorized},
		{name: "unknown token", bearer: "guess", code: http.StatusUnauthorized},
		{name: "read", bearer: "read-token", role: auth.RoleRead},
		{name: "peer", bearer: "peer-token", role: auth.RolePeer},
		{name: "admin", bearer: "admin-token", role: auth.RoleAdmin},
		{name: "unix root", ctxID: &auth.Identity{Name: "root", Role: auth.RoleAdmin, Via: auth.ViaUnix}, role: auth.RoleAdmin},
		{name: "unix reader", bearer: "admin-token", ctxID: &auth.Identity{Name: "x", Role: auth.RoleRead, Via: auth.ViaUnix}, role: auth.RoleRead},
	}
	for _, route := range slices.Sorted(maps.Keys(want)) {
		method, path, _ := strings.Cut(route, " ")
		need := want[route]
		require.Equal(t, need, RequiredRole(method, path), "RequiredRole(%s)", route)
		for _, c := range callers {
			t.Run(route+"/"+c.name, func(t *testing.T) {
				var body io.Reader
				if method == http.MethodPut || method == http.MethodPatch {
					body = strings.NewReader("{}")
				}
				r := httptest.NewRequest(method, strings.ReplaceAll(path, "{name}", "hello.service"), body)
				r.Header.Set("Content-Type", "application/json")
				if c.bearer != "" {
					r.Header.Set("Authorization", "Bearer "+c.bearer)
				}
				if c.ctxID != nil {
					r = r.WithContext(auth.NewContext(r.Context(), *c.ctxID))
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				var e errorBody
				if method != http.MethodHead && w.Code >= 400 {
					require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "fleet's error shape: %s", w.Body)
					require.Equal(t, w.Code, e.Error.Code)
				}
				switch {
				case c.role == "":
					require.Equal(t, c.code, w.Code, w.Body.String())
					require.Equal(t, `Bearer realm="fleet"`, strings.Split(w.Header().Get("WWW-Authenticate"), ",")[0])
				case !c.role.Allows(need):
					require.Equal(t, http.StatusForbidden, w.Code, w.Body.String())
					if method != http.MethodHead {
						require.Contains(t, e.Error.Message, "needs role "+string(need)+"; ")
						require.Contains(t, e.Error.Message, "has role "+string(c.role))
					}
				default:
					require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, w.Code, w.Body.String())
				}
			})
		}
	}
}

func TestAuthorizeMessages(t *testing.T) {
	toks, err := auth.ParseTokens(strings.NewReader("viewer read read-token\n"))
	require.NoError(t, err)
	h := Authorize(auth.NewAuthenticator(toks, false), NewServer(notFoundClient{}))
	tests := []struct {
		name, method, bearer string
		code                 int
		challenge, msg       string
	}{
		{"no credentials", "GET", "", 401, `Bearer realm="fleet"`,
			"authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token)"},
		{"wrong token", "GET", "guess", 401, `Bearer realm="fleet", error="invalid_token"`, "token not recognised"},
		{"read may not write", "DELETE", "read-token", 403, "",
			"DELETE /fleet/v1/units/hello.service needs role admin; viewer has role read (authenticated by token)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/fleet/v1/units/hello.service", nil)
			if tt.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tt.code, w.Code)
			require.Equal(t, tt.challenge, w.Header().Get("WWW-Authenticate"))
			require.Equal(t, "application/json", w.Header().Get("Content-Type"))
			var e errorBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
			require.Equal(t, errorEntity{Code: tt.code, Message: tt.msg}, e.Error)
		})
	}

	// No authenticator: an insecure listener's callers are anonymous admins.
	var got auth.Identity
	h = Authorize(nil, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got, _ = auth.FromContext(r.Context()) }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/fleet/v1/units/x.service", nil))
	require.Equal(t, auth.Identity{Name: "anonymous", Role: auth.RoleAdmin, Via: "insecure"}, got)
}

func TestRequiredRoleOutsideTheAPI(t *testing.T) {
	tests := []struct {
		method, path string
		want         auth.Role
	}{
		{"GET", "/metrics", auth.RoleRead},
		{"HEAD", "/metrics", auth.RoleRead},
		{"POST", "/metrics", auth.RoleAdmin},
		{"GET", "/metrics/x", auth.RoleAdmin},
		{"GET", "/ui", RoleNone},
		{"GET", "/ui/units", RoleNone},
		{"HEAD", "/ui/app.js", RoleNone},
		{"POST", "/ui/units", auth.RoleAdmin},
		{"GET", "/uix", auth.RoleAdmin},
		{"GET", "/fleet/v1", auth.RoleRead},
		{"GET", "/fleet/v10/units", auth.RoleAdmin},
		{"OPTIONS", "/fleet/v1/units", auth.RoleAdmin},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, RequiredRole(tt.method, tt.path), "%s %s", tt.method, tt.path)
	}
}

// TestAuthorizeDashboardShell: the dashboard's files load without
// credentials (and with wrong ones), but nothing else under /ui is open.
func TestAuthorizeDashboardShell(t *testing.T) {
	toks, err := auth.ParseTokens(strings.NewReader("viewer read read-token\n"))
	require.NoError(t, err)
	var reached bool
	h := Authorize(auth.NewAuthenticator(toks, false), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached = true
		w.WriteHeader(http.StatusOK)
	}))
	tests := []struct {
		name, method, path, bearer string
		code                       int
	}{
		{"shell without credentials", "GET", "/ui/", "", 200},
		{"script with a wrong token", "GET", "/ui/app.js", "guess", 200},
		{"HEAD of the shell", "HEAD", "/ui", "", 200},
		{"POST to the shell", "POST", "/ui/", "", 401},
		{"read token may not POST", "POST", "/ui/", "read-token", 403},
		{"the API still needs a token", "GET", "/fleet/v1/units", "", 401},
		{"a look-alike path is not the shell", "GET", "/uix/", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached = false
			r := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tt.code, w.Code, w.Body.String())
			require.Equal(t, tt.code == 200, reached)
		})
	}
}
