package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/seed-a1ce88ea/fleet/api/auth"
)

// RoleNone is what RequiredRole returns for a request anyone may make,
// authenticated or not; Authorize does not authenticate it.
const RoleNone auth.Role = ""

// RequiredRole returns the role a request needs: reading (GET or HEAD) the
// API, its discovery document, events or metrics needs read; reading the
// web dashboard's files (/ui, /ui/...) needs none; anything else, which may
// change the cluster, needs admin.
//
// The dashboard's files are open, as Nomad's UI is, because a browser
// cannot send a bearer token when it loads a page: the page asks for the
// token and sends it with every API call it makes, so every datum and
// every action of the dashboard still passes the API's own role check. The
// files hold no cluster data (package ui).
func RequiredRole(method, path string) auth.Role {
	if method != http.MethodGet && method != http.MethodHead {
		return auth.RoleAdmin
	}
	if path == "/ui" || strings.HasPrefix(path, "/ui/") {
		return RoleNone
	}
	if path == "/fleet/v1" || strings.HasPrefix(path, "/fleet/v1/") || path == "/metrics" {
		return auth.RoleRead
	}
	return auth.RoleAdmin
}

// AuthorizeOption configures Authorize.
type AuthorizeOption func(*authorizeOptions)

type authorizeOptions struct {
	log *slog.Logger
}

// WithRefusalLog makes Authorize log every refused request that could have
// changed the cluster (any method but GET and HEAD), as the audit does the
// ones let through: msg "audit", the caller if known, the status and why.
// They are not stored in etcd: whoever is refused must not be able to fill
// it.
func WithRefusalLog(l *slog.Logger) AuthorizeOption {
	return func(o *authorizeOptions) { o.log = l }
}

// Authorize lets a request through to next only if its caller's role
// allows it (RequiredRole); one that needs RoleNone goes through without
// authentication. The caller is the Identity already in the
// request's context (fleetd puts one there for its unix socket), else who
// a authenticates; a nil a stands for a listener that is deliberately
// insecure or reachable only from this machine, whose callers are all
// "anonymous" admins. next finds the caller with auth.FromContext.
//
// Refusals use fleet's error shape: 401, with a WWW-Authenticate header,
// when the request has no or unknown credentials (the message says what to
// send); 403 when the caller's role does not allow the request (the
// message names the caller, its role and the role needed).
func Authorize(a *auth.Authenticator, next http.Handler, opts ...AuthorizeOption) http.Handler {
	var o authorizeOptions
	for _, opt := range opts {
		opt(&o)
	}
	refuse := func(w http.ResponseWriter, r *http.Request, id auth.Identity, code int, msg string) {
		if o.log != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			o.log.Info("audit", "identity", id.Name, "via", id.Via, "method", r.Method, "path", r.URL.Path,
				"action", "refused", "status", code, "reason", msg)
		}
		writeError(w, code, msg)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if RequiredRole(r.Method, r.URL.Path) == RoleNone {
			next.ServeHTTP(w, r)
			return
		}
		id, ok := auth.FromContext(r.Context())
		if !ok {
			// The caller of a listener without authentication.
			id = auth.Identity{Name: "anonymous", Role: auth.RoleAdmin, Via: auth.ViaInsecure}
			if a != nil {
				var err error
				if id, err = a.Authenticate(r); err != nil {
					challenge := `Bearer realm="fleet"`
					if !errors.Is(err, auth.ErrNoCredentials) {
						challenge += `, error="invalid_token"`
					}
					w.Header().Set("WWW-Authenticate", challenge)
					refuse(w, r, auth.Identity{Name: "unauthenticated"}, http.StatusUnauthorized, err.Error())
					return
				}
			}
			r = r.WithContext(auth.NewContext(r.Context(), id))
		}
		if need := RequiredRole(r.Method, r.URL.Path); !id.Role.Allows(need) {
			refuse(w, r, id, http.StatusForbidden, fmt.Sprintf("%s %s needs role %s; %s has role %s (authenticated by %s)",
				r.Method, r.URL.Path, need, id.Name, id.Role, id.Via))
			return
		}
		next.ServeHTTP(w, r)
	})
}
