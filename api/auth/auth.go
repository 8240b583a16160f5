package auth

import (
	"context"
	"fmt"
)

// Role is what an identity may do.
type Role string

// Roles. An admin may do everything; read and peer may only read.
const (
	// RoleRead may list units, machines and states, cat units, read status,
	// journals, events, discovery and metrics.
	RoleRead Role = "read"
	// RoleAdmin may also change the cluster: submit, start, stop, destroy
	// units, set machine metadata.
	RoleAdmin Role = "admin"
	// RolePeer is another fleetd: it may do what read may, which covers
	// the status and journal requests it forwards to the unit's machine.
	RolePeer Role = "peer"
)

// ParseRole returns the Role named s, or an error listing the known ones.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRead, RoleAdmin, RolePeer:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q; the roles are read, admin and peer", s)
}

// Allows reports whether r may do what needs required. An unknown role
// allows nothing, and nothing allows an unknown requirement.
func (r Role) Allows(required Role) bool {
	switch required {
	case RoleRead:
		return r == RoleRead || r == RolePeer || r == RoleAdmin
	case RolePeer:
		return r == RolePeer || r == RoleAdmin
	case RoleAdmin:
		return r == RoleAdmin
	}
	return false
}

// Identity is who a request comes from.
type Identity struct {
	// Name is the token's name or the client certificate's common name.
	Name string
	Role Role
	// Via says how the caller was identified: "token", "cert", "unix" (a
	// local connection to fleetd's unix socket) or "insecure" (a listener
	// without authentication).
	Via string
}

// Ways of identifying a caller (Identity.Via).
const (
	ViaToken    = "token"
	ViaCert     = "cert"
	ViaUnix     = "unix"
	ViaInsecure = "insecure"
)

func (id Identity) String() string {
	return fmt.Sprintf("%s (role %s, via %s)", id.Name, id.Role, id.Via)
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the Identity ctx carries, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
