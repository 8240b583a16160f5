package fleetd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// Timeouts of the API's http.Server. Streamed answers (events, a followed
// journal) lift the read and write timeouts for themselves.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = 30 * time.Second
	// apiWriteTimeout leaves room for a forwarded status request
	// (15 s) and for listing a large cluster.
	apiWriteTimeout = 60 * time.Second
	apiIdleTimeout  = 2 * time.Minute
)

// apiSecurity is how the API's TCP listeners are secured, as the
// configuration says: read anew by every Run, so a SIGHUP picks up a
// changed tokens file or a renewed certificate.
type apiSecurity struct {
	// serverTLS is the TLS of TCP listeners; nil serves them plain.
	serverTLS *tls.Config
	// authn authenticates callers on TCP listeners; nil when neither
	// tokens nor client certificates are configured.
	authn *auth.Authenticator
	// peerTLS is how this fleetd forwards to others; nil: plain http.
	peerTLS *tls.Config
	// peerCertMissing: TLS is on but api_cert_file cannot identify this
	// fleetd to others (it lacks the client usage).
	peerCertMissing bool
}

// loadAPISecurity reads the API's certificates and tokens. Errors wrap
// ErrUsage and name the key and file to fix.
func loadAPISecurity(cfg Config) (apiSecurity, error) {
	var sec apiSecurity
	if (cfg.APICertFile == "") != (cfg.APIKeyFile == "") {
		return sec, fmt.Errorf("%w: api_cert_file and api_key_file go together: set both, or neither", ErrUsage)
	}
	tlsOn := cfg.APICertFile != ""
	if cfg.APIClientCAFile != "" && !tlsOn {
		return sec, fmt.Errorf("%w: api_client_ca_file needs api_cert_file and api_key_file: client certificates are checked in the TLS handshake", ErrUsage)
	}
	var tokens *auth.Tokens
	if cfg.APITokensFile != "" {
		var err error
		if tokens, err = auth.LoadTokens(cfg.APITokensFile); err != nil {
			return sec, fmt.Errorf("%w: api_tokens_file: %w", ErrUsage, err)
		}
		if tokens.Len() == 0 {
			return sec, fmt.Errorf("%w: api_tokens_file %s has no tokens; add NAME ROLE SECRET lines or unset it", ErrUsage, cfg.APITokensFile)
		}
	}
	if tlsOn {
		// Without tokens a client certificate is the only credential, so
		// the handshake may as well demand it.
		requireCert := cfg.APIClientCAFile != "" && tokens.Len() == 0
		var err error
		if sec.serverTLS, err = pki.ServerConfig(cfg.APICertFile, cfg.APIKeyFile, cfg.APIClientCAFile, requireCert); err != nil {
			return sec, fmt.Errorf("%w: API TLS (api_cert_file, api_key_file, api_client_ca_file): %w", ErrUsage, err)
		}
		// The same certificate identifies this fleetd when it forwards to
		// another, if it may be used by a client (a --peer certificate).
		certFile, keyFile := cfg.APICertFile, cfg.APIKeyFile
		if !clientUsable(sec.serverTLS.Certificates[0].Leaf) {
			certFile, keyFile, sec.peerCertMissing = "", "", true
		}
		if sec.peerTLS, err = pki.ClientConfig(cfg.APIClientCAFile, certFile, keyFile); err != nil {
			return sec, fmt.Errorf("%w: peer TLS (api_client_ca_file, api_cert_file, api_key_file): %w", ErrUsage, err)
		}
	}
	if tokens.Len() > 0 || cfg.APIClientCAFile != "" {
		sec.authn = auth.NewAuthenticator(tokens, cfg.APIClientCAFile != "")
	}
	return sec, nil
}

// CheckAPISecurity reads the certificates and tokens the API's
// configuration names and checks that the listeners ls may serve with them,
// as Run does at its start. A reload checks them first, so that a broken
// tokens file, or a configuration that would leave a reachable listener
// open, keeps the running configuration instead of stopping fleetd.
func CheckAPISecurity(cfg Config, ls []net.Listener) error {
	sec, err := loadAPISecurity(cfg)
	if err != nil {
		return err
	}
	// Run warns about what is allowed; here only refusals matter.
	return sec.checkListeners(cfg, ls, slog.New(slog.DiscardHandler))
}

// clientUsable reports whether a certificate may authenticate a TLS client.
func clientUsable(c *x509.Certificate) bool {
	return c != nil && (len(c.ExtKeyUsage) == 0 ||
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny))
}

// checkListeners refuses a TCP listener that other machines can reach
// unless it has both TLS and authentication, or api_insecure allows it
// (then it warns).
func (sec apiSecurity) checkListeners(cfg Config, ls []net.Listener, log *slog.Logger) error {
	if sec.serverTLS != nil && sec.authn != nil {
		return nil
	}
	for _, l := range ls {
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			continue
		}
		if addr.IP.IsLoopback() {
			if sec.authn == nil {
				log.Warn("API listener on loopback without authentication: every user of this machine may act as a fleet admin; set api_tokens_file to require a token", "addr", addr.String())
			}
			continue
		}
		var missing string
		switch {
		case sec.serverTLS == nil && sec.authn == nil:
			missing = "neither TLS nor authentication: set api_cert_file and api_key_file, and api_tokens_file or api_client_ca_file"
		case sec.serverTLS == nil:
			missing = "no TLS, so its tokens would cross the network in clear text: set api_cert_file and api_key_file"
		default:
			missing = "no authentication: set api_tokens_file or api_client_ca_file"
		}
		if cfg.APIInsecure {
			log.Warn("API listener reachable from other machines without TLS and authentication (api_insecure=true): anyone who reaches it may control every machine of the cluster", "addr", addr.String(), "lacks", missing)
			continue
		}
		return fmt.Errorf("%w: API listener %s is reachable from other machines but has %s (or set api_insecure=true to run it open: anyone who reaches it then controls every machine)", ErrUsage, addr, missing)
	}
	return nil
}

// wrap returns the listeners to serve on: TCP ones behind TLS when it is
// configured; unix sockets as they are.
func (sec apiSecurity) wrap(ls []net.Listener) []net.Listener {
	out := make([]net.Listener, len(ls))
	for i, l := range ls {
		out[i] = l
		if _, tcp := l.Addr().(*net.TCPAddr); tcp && sec.serverTLS != nil {
			out[i] = tls.NewListener(l, sec.serverTLS)
		}
	}
	return out
}

// registryOptions are the options of the API's registry client.
func (sec apiSecurity) registryOptions() []api.RegistryOption {
	if sec.peerTLS == nil {
		return nil
	}
	return []api.RegistryOption{api.WithPeerTLS(sec.peerTLS)}
}

// newAPIServer returns the http.Server of the API: h behind Authorize and
// RefuseCrossOrigin (the dashboard brings browsers), callers on unix
// sockets known as root, and timeouts for slow clients.
func newAPIServer(h http.Handler, sec apiSecurity, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler: api.RefuseCrossOrigin(api.Authorize(sec.authn, h, api.WithRefusalLog(log))),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if _, ok := c.(*net.UnixConn); ok {
				// Only root and the fleet group can connect to the socket
				// (restrictSocket, fleet.socket's SocketMode).
				return auth.NewContext(ctx, auth.Identity{Name: "root", Role: auth.RoleAdmin, Via: auth.ViaUnix})
			}
			return ctx
		},
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		// Failed TLS handshakes, and panics, are worth an operator's eye.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
}
