package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api/auth"
)

func TestRoleAllows(t *testing.T) {
	tests := []struct {
		role     auth.Role
		required auth.Role
		want     bool
	}{
		{auth.RoleRead, auth.RoleRead, true},
		{auth.RoleRead, auth.RolePeer, false},
		{auth.RoleRead, auth.RoleAdmin, false},
		{auth.RolePeer, auth.RoleRead, true},
		{auth.RolePeer, auth.RolePeer, true},
		{auth.RolePeer, auth.RoleAdmin, false},
		{auth.RoleAdmin, auth.RoleRead, true},
		{auth.RoleAdmin, auth.RolePeer, true},
		{auth.RoleAdmin, auth.RoleAdmin, true},
		{"", auth.RoleRead, false},
		{"root", auth.RoleRead, false},
		{auth.RoleAdmin, "", false},
		{auth.RoleAdmin, "root", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+"/"+string(tt.required), func(t *testing.T) {
			require.Equal(t, tt.want, tt.role.Allows(tt.required))
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"read", "admin", "peer"} {
		r, err := auth.ParseRole(s)
		require.NoError(t, err)
		require.Equal(t, auth.Role(s), r)
	}
	_, err := auth.ParseRole("Admin")
	require.EqualError(t, err, `unknown role "Admin"; the roles are read, admin and peer`)
}

func TestContext(t *testing.T) {
	_, ok := auth.FromContext(context.Background())
	require.False(t, ok)
	id := auth.Identity{Name: "ci", Role: auth.RoleAdmin, Via: auth.ViaToken}
	got, ok := auth.FromContext(auth.NewContext(context.Background(), id))
	require.True(t, ok)
	require.Equal(t, id, got)
}

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(d[:])
}

func TestParseTokens(t *testing.T) {
	file := "# fleet tokens\n\n" +
		"ci admin s3cret-admin-token\n" +
		"  dashboard   read\t" + digest("s3cret-read-token") + "  \n" +
		"# peer token\n" +
		"other-fleetd peer s3cret-peer-token\n"
	toks, err := auth.ParseTokens(strings.NewReader(file))
	require.NoError(t, err)
	require.Equal(t, 3, toks.Len())

	tests := []struct {
		secret string
		want   auth.Identity
		ok     bool
	}{
		{"s3cret-admin-token", auth.Identity{Name: "ci", Role: auth.RoleAdmin, Via: "token"}, true},
		{"s3cret-read-token", auth.Identity{Name: "dashboard", Role: auth.RoleRead, Via: "token"}, true},
		{"s3cret-peer-token", auth.Identity{Name: "other-fleetd", Role: auth.RolePeer, Via: "token"}, true},
		{digest("s3cret-read-token"), auth.Identity{}, false},
		{"s3cret-admin-toke", auth.Identity{}, false},
		{"", auth.Identity{}, false},
	}
	for _, tt := range tests {
		id, ok := toks.Lookup(tt.secret)
		require.Equal(t, tt.ok, ok, tt.secret)
		require.Equal(t, tt.want, id)
	}

	var none *auth.Tokens
	require.Equal(t, 0, none.Len())
	_, ok := none.Lookup("x")
	require.False(t, ok)
}

func TestParseTokensErrors(t *testing.T) {
	const secret = "do-not-print-me"
	tests := []struct {
		name, file, err string
	}{
		{"too few fields", "ci admin\n", "line 1: want NAME ROLE SECRET, found 2 fields"},
		{"too many fields", "# c\nci admin " + secret + " extra\n", "line 2: want NAME ROLE SECRET, found 4 fields"},
		{"bad role", "ci root " + secret + "\n", `line 1: token ci: unknown role "root"; the roles are read, admin and peer`},
		{"duplicate", "ci admin a\n\nci read " + secret + "\n", "line 3: token name ci is already used on line 1; names must be unique"},
		{"short digest", "ci admin sha256:abcd\n", "line 1: token ci: a sha256: secret must be followed by the 64 hex digits of the token's SHA-256 digest"},
		{"bad hex", "ci admin sha256:" + strings.Repeat("zz", 32) + "\n", "line 1: token ci: a sha256: secret must be followed by the 64 hex digits of the token's SHA-256 digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.ParseTokens(strings.NewReader(tt.file))
			require.EqualError(t, err, tt.err)
			require.NotContains(t, err.Error(), secret)
		})
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(path, []byte("ci admin x\nci read y\n"), 0o600))
	_, err := auth.LoadTokens(path)
	require.EqualError(t, err, "tokens file "+path+": line 2: token name ci is already used on line 1; names must be unique")

	_, err = auth.LoadTokens(filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "tokens file: open "+filepath.Join(dir, "missing"))

	require.NoError(t, os.WriteFile(path, []byte("ci admin x\n"), 0o600))
	toks, err := auth.LoadTokens(path)
	require.NoError(t, err)
	require.Equal(t, 1, toks.Len())
}

// clientCert is a certificate as a verified TLS handshake presents it.
func clientCert(cn string, org ...string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: org}}
}

func TestAuthenticate(t *testing.T) {
	toks, err := auth.ParseTokens(strings.NewReader("ci admin admin-token\nviewer read read-token\n"))
	require.NoError(t, err)
	verified := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	tests := []struct {
		name   string
		authn  *auth.Authenticator
		header string
		tls    *tls.ConnectionState
		want   auth.Identity
		kind   error
		err    string
	}{
		{name: "admin token", authn: auth.NewAuthenticator(toks, true), header: "Bearer admin-token",
			want: auth.Identity{Name: "ci", Role: auth.RoleAdmin, Via: "token"}},
		{name: "scheme is case-insensitive", authn: auth.NewAuthenticator(toks, false), header: "bearer read-token",
			want: auth.Identity{Name: "viewer", Role: auth.RoleRead, Via: "token"}},
		{name: "token wins over certificate", authn: auth.NewAuthenticator(toks, true), header: "Bearer read-token",
			tls: verified(clientCert("alice", "admin")), want: auth.Identity{Name: "viewer", Role: auth.RoleRead, Via: "token"}},
		{name: "wrong token", authn: auth.NewAuthenticator(toks, true), header: "Bearer guess",
			tls: verified(clientCert("alice", "admin")), kind: auth.ErrUnauthenticated, err: "token not recognised"},
		{name: "basic auth", authn: auth.NewAuthenticator(toks, false), header: "Basic YTpi",
			kind: auth.ErrUnauthenticated, err: `the Authorization header must be "Bearer TOKEN", not the "Basic" scheme`},
		{name: "empty bearer", authn: auth.NewAuthenticator(toks, false), header: "Bearer ",
			kind: auth.ErrUnauthenticated, err: "the Authorization header has no token after Bearer"},
		{name: "no tokens configured", authn: auth.NewAuthenticator(nil, true), header: "Bearer admin-token",
			kind: auth.ErrUnauthenticated, err: "this fleetd accepts no bearer tokens (it has no api_tokens_file); use a client certificate"},
		{name: "admin certificate", authn: auth.NewAuthenticator(nil, true), tls: verified(clientCert("alice", "admin")),
			want: auth.Identity{Name: "alice", Role: auth.RoleAdmin, Via: "cert"}},
		{name: "peer certificate", authn: auth.NewAuthenticator(toks, true), tls: verified(clientCert("fleetd-m2", "peer", "ignored")),
			want: auth.Identity{Name: "fleetd-m2", Role: auth.RolePeer, Via: "cert"}},
		{name: "certificate without role", authn: auth.NewAuthenticator(nil, true), tls: verified(clientCert("bob")),
			kind: auth.ErrUnauthenticated, err: `client certificate "bob" has no fleet role: its organization (O) must be read, admin or peer; issue one with fleetd tls cert create --client --role ROLE`},
		{name: "certificate with unknown role", authn: auth.NewAuthenticator(nil, true), tls: verified(clientCert("bob", "Acme Corp")),
			kind: auth.ErrUnauthenticated, err: `client certificate "bob" has no fleet role: its organization (O) "Acme Corp" must be read, admin or peer; issue one with fleetd tls cert create --client --role ROLE`},
		{name: "certificate without name", authn: auth.NewAuthenticator(nil, true), tls: verified(clientCert("", "admin")),
			kind: auth.ErrUnauthenticated, err: "client certificate has no common name to identify its holder"},
		{name: "certificates not trusted", authn: auth.NewAuthenticator(toks, false), tls: verified(clientCert("alice", "admin")),
			kind: auth.ErrUnauthenticated, err: `client certificate "alice" is not trusted by this fleetd (no api_client_ca_file signs it); send a bearer token`},
		{name: "unverified certificate", authn: auth.NewAuthenticator(toks, true),
			tls:  &tls.ConnectionState{PeerCertificates: []*x509.Certificate{clientCert("alice", "admin")}},
			kind: auth.ErrUnauthenticated, err: `client certificate "alice" is not trusted by this fleetd (no api_client_ca_file signs it); send a bearer token`},
		{name: "nothing, tokens", authn: auth.NewAuthenticator(toks, false), tls: &tls.ConnectionState{},
			kind: auth.ErrNoCredentials, err: "authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token)"},
		{name: "nothing, certificates", authn: auth.NewAuthenticator(nil, true),
			kind: auth.ErrNoCredentials, err: "authentication required: send a client certificate (fleetctl --cert-file/--key-file)"},
		{name: "nothing, both", authn: auth.NewAuthenticator(toks, true),
			kind: auth.ErrNoCredentials, err: "authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token) or a client certificate (fleetctl --cert-file/--key-file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/fleet/v1/units", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			r.TLS = tt.tls
			id, err := tt.authn.Authenticate(r)
			if tt.kind != nil {
				require.ErrorIs(t, err, tt.kind)
				require.EqualError(t, err, tt.err)
				if secret := strings.TrimSpace(strings.TrimPrefix(tt.header, "Bearer")); secret != "" {
					require.NotContains(t, err.Error(), secret, "no secret in the message")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, id)
		})
	}
}
