package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors of Authenticate; check them with errors.Is.
var (
	// ErrNoCredentials: the request carries neither a bearer token nor a
	// client certificate.
	ErrNoCredentials = errors.New("no credentials")
	// ErrUnauthenticated: the request's credentials identify no one (an
	// unknown token, a certificate without a fleet role).
	ErrUnauthenticated = errors.New("not authenticated")
)

// authError is an error whose message is a whole sentence and which wraps
// a sentinel without repeating its text.
type authError struct {
	kind error
	msg  string
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.kind }

func refused(format string, args ...any) error {
	return &authError{kind: ErrUnauthenticated, msg: fmt.Sprintf(format, args...)}
}

// Authenticator identifies the callers of a TLS or plain listener from their
// bearer tokens and, when trusted, their verified client certificates.
// It is safe for concurrent use.
type Authenticator struct {
	tokens     *Tokens
	trustCerts bool
}

// NewAuthenticator returns an Authenticator accepting tokens (nil: none)
// and, with trustClientCerts, client certificates the TLS handshake
// verified: the listener's client CA vouches for them, and their subject
// says who they are (common name) and what role they have (first
// organization: read, admin or peer).
func NewAuthenticator(tokens *Tokens, trustClientCerts bool) *Authenticator {
	return &Authenticator{tokens: tokens, trustCerts: trustClientCerts}
}

// Authenticate returns who r comes from: the owner of its
// "Authorization: Bearer TOKEN" header if it has one, else the subject of
// its verified client certificate. Without either it fails with
// ErrNoCredentials; with credentials that identify no one, with
// ErrUnauthenticated. Messages say what to send instead and never repeat a
// token.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return Identity{}, refused("the Authorization header must be \"Bearer TOKEN\", not the %q scheme", scheme)
		}
		if secret = strings.TrimSpace(secret); secret == "" {
			return Identity{}, refused("the Authorization header has no token after Bearer")
		}
		if a.tokens.Len() == 0 {
			return Identity{}, refused("this fleetd accepts no bearer tokens (it has no api_tokens_file); use a client certificate")
		}
		id, ok := a.tokens.Lookup(secret)
		if !ok {
			return Identity{}, refused("token not recognised")
		}
		return id, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		if !a.trustCerts || len(r.TLS.VerifiedChains) == 0 {
			return Identity{}, refused("client certificate %q is not trusted by this fleetd (no api_client_ca_file signs it); send a bearer token", leaf.Subject.CommonName)
		}
		leaf = r.TLS.VerifiedChains[0][0]
		name := leaf.Subject.CommonName
		if name == "" {
			return Identity{}, refused("client certificate has no common name to identify its holder")
		}
		if len(leaf.Subject.Organization) == 0 {
			return Identity{}, refused("client certificate %q has no fleet role: its organization (O) must be read, admin or peer; issue one with fleetd tls cert create --client --role ROLE", name)
		}
		role, err := ParseRole(leaf.Subject.Organization[0])
		if err != nil {
			return Identity{}, refused("client certificate %q has no fleet role: its organization (O) %q must be read, admin or peer; issue one with fleetd tls cert create --client --role ROLE", name, leaf.Subject.Organization[0])
		}
		return Identity{Name: name, Role: role, Via: ViaCert}, nil
	}
	return Identity{}, &authError{kind: ErrNoCredentials, msg: a.wanted()}
}

// wanted says what credentials this authenticator accepts.
func (a *Authenticator) wanted() string {
	switch {
	case a.tokens.Len() > 0 && a.trustCerts:
		return "authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token) or a client certificate (fleetctl --cert-file/--key-file)"
	case a.trustCerts:
		return "authentication required: send a client certificate (fleetctl --cert-file/--key-file)"
	default:
		return "authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token)"
	}
}
