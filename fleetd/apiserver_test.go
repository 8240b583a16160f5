package fleetd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// testPKI is a CA in a temporary directory that issues certificate files.
type testPKI struct {
	t   *testing.T
	dir string
	ca  pki.CA
	// CAFile is the CA certificate, for api_client_ca_file.
	CAFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := pki.CreateCA("fleet test CA", 2*time.Hour)
	require.NoError(t, err)
	p := &testPKI{t: t, dir: dir, CAFile: filepath.Join(dir, "ca.pem")}
	keyFile := filepath.Join(dir, "ca-key.pem")
	require.NoError(t, os.WriteFile(p.CAFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	p.ca, err = pki.LoadCA(p.CAFile, keyFile)
	require.NoError(t, err)
	return p
}

// issue writes a certificate and its key and returns their files.
func (p *testPKI) issue(kind pki.Kind, cn, role string) (certFile, keyFile string) {
	p.t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(pki.CertRequest{Kind: kind, CommonName: cn, Role: role, Validity: time.Hour})
	require.NoError(p.t, err)
	certFile, keyFile = filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	require.NoError(p.t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(p.t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile
}

// client returns an https client trusting p's CA, presenting the
// certificate of cn if cn is not empty.
func (p *testPKI) client(kind pki.Kind, cn, role string) *http.Client {
	p.t.Helper()
	var certFile, keyFile string
	if cn != "" {
		certFile, keyFile = p.issue(kind, cn, role)
	}
	cfg, err := pki.ClientConfig(p.CAFile, certFile, keyFile)
	require.NoError(p.t, err)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func writeTokens(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// whoami answers every request with the caller Authorize let through.
type whoami struct {
	mu   sync.Mutex
	seen []auth.Identity
}

func (h *whoami) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	h.mu.Lock()
	h.seen = append(h.seen, id)
	h.mu.Unlock()
	io.WriteString(w, id.Name+" "+string(id.Role)+" "+id.Via)
}

// serveAPI serves h as Run does, with sec, on ls until the test ends.
func serveAPI(t *testing.T, sec apiSecurity, h http.Handler, ls ...net.Listener) {
	t.Helper()
	srv := newAPIServer(h, sec, slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for _, l := range sec.wrap(ls) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve %s: %v", l.Addr(), err)
			}
		}()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
	})
}

type answer struct {
	code int
	body string
}

func get(t *testing.T, c *http.Client, method, url, token string) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, strings.TrimSpace(string(b))}, nil
}

func TestLoadAPISecurityErrors(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.issue(pki.Peer, "m1", "")
	tests := []struct {
		name string
		set  func(*Config)
		err  string
	}{
		{"cert without key", func(c *Config) { c.APICertFile = cert },
			"bad configuration: api_cert_file and api_key_file go together: set both, or neither"},
		{"client CA without TLS", func(c *Config) { c.APIClientCAFile = p.CAFile },
			"bad configuration: api_client_ca_file needs api_cert_file and api_key_file: client certificates are checked in the TLS handshake"},
		{"missing tokens file", func(c *Config) { c.APITokensFile = "/nonexistent/tokens" },
			"bad configuration: api_tokens_file: tokens file: open /nonexistent/tokens: no such file or directory"},
		{"bad tokens file", func(c *Config) { c.APITokensFile = writeTokens(t, "ci admin\n") },
			"bad configuration: api_tokens_file: tokens file %s: line 1: want NAME ROLE SECRET, found 2 fields"},
		{"empty tokens file", func(c *Config) { c.APITokensFile = writeTokens(t, "# none yet\n") },
			"bad configuration: api_tokens_file %s has no tokens; add NAME ROLE SECRET lines or unset it"},
		{"missing key file", func(c *Config) { c.APICertFile, c.APIKeyFile = cert, key+".gone" },
			"bad configuration: API TLS (api_cert_file, api_key_file, api_client_ca_file): certificate " + cert + " with key " + key + ".gone: open " + key + ".gone: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.set(&cfg)
			_, err := loadAPISecurity(cfg)
			require.ErrorIs(t, err, ErrUsage)
			require.Equal(t, err, CheckAPISecurity(cfg, nil), "what a reload checks")
			want := tt.err
			if strings.Contains(want, "%s") {
				want = strings.ReplaceAll(want, "%s", cfg.APITokensFile)
			}
			require.EqualError(t, err, want)
		})
	}
}

func TestCheckListeners(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.issue(pki.Peer, "m1", "")
	tokens := writeTokens(t, "ci admin s3cret\n")
	loopback := listen(t, "tcp", "127.0.0.1:0")
	any4 := listen(t, "tcp", "0.0.0.0:0")
	unix := listen(t, "unix", filepath.Join(t.TempDir(), "fleet.sock"))
	const (
		loopbackWarning = `level=WARN msg="API listener on loopback without authentication: every user of this machine may act as a fleet admin; set api_tokens_file to require a token"`
		insecureWarning = `level=WARN msg="API listener reachable from other machines without TLS and authentication (api_insecure=true): anyone who reaches it may control every machine of the cluster"`
	)
	tests := []struct {
		name      string
		set       func(*Config)
		listeners []net.Listener
		err       string // %s: the address of the second listener
		warning   string // "": nothing logged
	}{
		{"unix needs nothing", func(*Config) {}, []net.Listener{unix}, "", ""},
		{"loopback with tokens", func(c *Config) { c.APITokensFile = tokens }, []net.Listener{unix, loopback}, "", ""},
		{"loopback without authentication", func(*Config) {}, []net.Listener{unix, loopback}, "", loopbackWarning},
		{"open listener", func(*Config) {}, []net.Listener{unix, any4},
			"bad configuration: API listener %s is reachable from other machines but has neither TLS nor authentication: set api_cert_file and api_key_file, and api_tokens_file or api_client_ca_file (or set api_insecure=true to run it open: anyone who reaches it then controls every machine)", ""},
		{"tokens without TLS", func(c *Config) { c.APITokensFile = tokens }, []net.Listener{loopback, any4},
			"bad configuration: API listener %s is reachable from other machines but has no TLS, so its tokens would cross the network in clear text: set api_cert_file and api_key_file (or set api_insecure=true to run it open: anyone who reaches it then controls every machine)", ""},
		{"TLS without authentication", func(c *Config) { c.APICertFile, c.APIKeyFile = cert, key }, []net.Listener{unix, any4},
			"bad configuration: API listener %s is reachable from other machines but has no authentication: set api_tokens_file or api_client_ca_file (or set api_insecure=true to run it open: anyone who reaches it then controls every machine)", ""},
		{"TLS and tokens", func(c *Config) { c.APICertFile, c.APIKeyFile, c.APITokensFile = cert, key, tokens }, []net.Listener{loopback, any4}, "", ""},
		{"TLS and client certificates", func(c *Config) { c.APICertFile, c.APIKeyFile, c.APIClientCAFile = cert, key, p.CAFile }, []net.Listener{loopback, any4}, "", ""},
		{"insecure on purpose", func(c *Config) { c.APIInsecure = true }, []net.Listener{unix, any4}, "", insecureWarning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.set(&cfg)
			sec, err := loadAPISecurity(cfg)
			require.NoError(t, err)
			var logs bytes.Buffer
			err = sec.checkListeners(cfg, tt.listeners, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.err != "" {
				require.ErrorIs(t, err, ErrUsage)
				require.EqualError(t, err, strings.ReplaceAll(tt.err, "%s", tt.listeners[1].Addr().String()))
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, err, CheckAPISecurity(cfg, tt.listeners), "a reload refuses what a start refuses")
			if tt.warning == "" {
				require.Empty(t, logs.String())
				return
			}
			require.Contains(t, logs.String(), tt.warning)
			require.Contains(t, logs.String(), "addr="+tt.listeners[1].Addr().String())
		})
	}
	if l, err := net.Listen("tcp", "[::]:0"); err == nil {
		defer l.Close()
		cfg := DefaultConfig()
		sec, err := loadAPISecurity(cfg)
		require.NoError(t, err)
		require.ErrorIs(t, sec.checkListeners(cfg, []net.Listener{l}, slog.New(slog.DiscardHandler)), ErrUsage, ":: is every address too")
	}
}

// TestRunRefusesOpenListener runs fleetd with a plain, unauthenticated
// listener on every address: it stops at once, before touching etcd or
// systemd, saying what to set.
func TestRunRefusesOpenListener(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APISocket = ""
	cfg.APIListen = "0.0.0.0:0"
	cfg.EtcdServers = []string{"http://127.0.0.1:1"}
	cfg.MachineID = "0123456789abcdef0123456789abcdef"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, cfg, "test", slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrUsage)
	require.Regexp(t, `API listener (0\.0\.0\.0|\[::\]):\d+ is reachable`, err.Error())
	require.ErrorContains(t, err, "is reachable from other machines but has neither TLS nor authentication: set api_cert_file and api_key_file, and api_tokens_file or api_client_ca_file")

	// Run reads the tokens file itself, so a reload (SIGHUP runs Run
	// again) reads it anew; a broken one stops it, naming the file.
	cfg.APIListen = "127.0.0.1:0"
	cfg.APITokensFile = writeTokens(t, "ci admin s3cret\nci read other\n")
	err = Run(ctx, cfg, "test", slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrUsage)
	require.EqualError(t, err, "bad configuration: api_tokens_file: tokens file "+cfg.APITokensFile+": line 2: token name ci is already used on line 1; names must be unique")
}

func TestTokensReadAnewByEachRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APITokensFile = writeTokens(t, "old admin old-token\n")
	l := listen(t, "tcp", "127.0.0.1:0")
	url := "http://" + l.Addr().String() + "/fleet/v1/units"
	c := &http.Client{Timeout: 10 * time.Second}

	// What one Run serves...
	sec, err := loadAPISecurity(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.APITokensFile, []byte("new admin new-token\n"), 0o600))
	h := &whoami{}
	srv := newAPIServer(h, sec, slog.New(slog.DiscardHandler))
	go srv.Serve(keptListener{l})
	a, err := get(t, c, "GET", url, "old-token")
	require.NoError(t, err)
	require.Equal(t, answer{200, "old admin token"}, a, "a Run keeps the tokens it read")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))

	// ...and the next, after SIGHUP, on the same listener.
	require.NoError(t, keptListener{l}.serve())
	sec, err = loadAPISecurity(cfg)
	require.NoError(t, err)
	serveAPI(t, sec, h, keptListener{l})
	a, err = get(t, c, "GET", url, "old-token")
	require.NoError(t, err)
	require.Equal(t, 401, a.code)
	require.Contains(t, a.body, "token not recognised")
	a, err = get(t, c, "GET", url, "new-token")
	require.NoError(t, err)
	require.Equal(t, answer{200, "new admin token"}, a)
}

func TestTLSListenerNeedsCredentials(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.issue(pki.Peer, "m1", "")
	cfg := DefaultConfig()
	cfg.APICertFile, cfg.APIKeyFile, cfg.APIClientCAFile = cert, key, p.CAFile
	cfg.APITokensFile = writeTokens(t, "ci admin s3cret-admin\nviewer read s3cret-read\n")
	sec, err := loadAPISecurity(cfg)
	require.NoError(t, err)
	l := listen(t, "tcp", "127.0.0.1:0")
	serveAPI(t, sec, &whoami{}, l)
	url := "https://" + l.Addr().String() + "/fleet/v1/units/x.service"

	tests := []struct {
		name   string
		client *http.Client
		method string
		token  string
		want   answer
		err    string
	}{
		{name: "nothing", client: p.client(0, "", ""), method: "GET",
			want: answer{401, `{"error":{"code":401,"message":"authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token) or a client certificate (fleetctl --cert-file/--key-file)"}}`}},
		{name: "admin token", client: p.client(0, "", ""), method: "DELETE", token: "s3cret-admin", want: answer{200, "ci admin token"}},
		{name: "wrong token", client: p.client(0, "", ""), method: "GET", token: "guess",
			want: answer{401, `{"error":{"code":401,"message":"token not recognised"}}`}},
		{name: "read token may read", client: p.client(0, "", ""), method: "GET", token: "s3cret-read", want: answer{200, "viewer read token"}},
		{name: "read token may not write", client: p.client(0, "", ""), method: "DELETE", token: "s3cret-read",
			want: answer{403, `{"error":{"code":403,"message":"DELETE /fleet/v1/units/x.service needs role admin; viewer has role read (authenticated by token)"}}`}},
		{name: "admin certificate", client: p.client(pki.Client, "alice", "admin"), method: "DELETE", want: answer{200, "alice admin cert"}},
		{name: "read certificate", client: p.client(pki.Client, "bob", "read"), method: "DELETE",
			want: answer{403, `{"error":{"code":403,"message":"DELETE /fleet/v1/units/x.service needs role admin; bob has role read (authenticated by cert)"}}`}},
		{name: "peer certificate", client: p.client(pki.Peer, "m2", ""), method: "GET", want: answer{200, "m2 peer cert"}},
		{name: "certificate of another CA", client: func() *http.Client {
			c := newTestPKI(t).client(pki.Client, "mallory", "admin")
			c.Transport.(*http.Transport).TLSClientConfig.RootCAs = p.client(0, "", "").Transport.(*http.Transport).TLSClientConfig.RootCAs
			return c
		}(), method: "GET", err: "remote error: tls: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := get(t, tt.client, tt.method, url, tt.token)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, a)
		})
	}

	// Plain http to the TLS port gets nowhere.
	a, err := get(t, &http.Client{Timeout: 10 * time.Second}, "GET", strings.Replace(url, "https://", "http://", 1), "s3cret-admin")
	require.NoError(t, err)
	require.Equal(t, 400, a.code)
	require.Contains(t, a.body, "Client sent an HTTP request to an HTTPS server")

	// Without tokens, a client certificate is required in the handshake.
	cfg.APITokensFile = ""
	sec, err = loadAPISecurity(cfg)
	require.NoError(t, err)
	l2 := listen(t, "tcp", "127.0.0.1:0")
	serveAPI(t, sec, &whoami{}, l2)
	_, err = get(t, p.client(0, "", ""), "GET", "https://"+l2.Addr().String()+"/fleet/v1/units", "")
	require.Error(t, err)
	require.ErrorContains(t, err, "certificate required")
}

func TestUnixSocketIdentity(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APISocket = filepath.Join(t.TempDir(), "run", "fleet.sock")
	cfg.APIListen = "127.0.0.1:0"
	cfg.APITokensFile = writeTokens(t, "ci admin s3cret\n")
	ls, err := apiListeners(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { CloseListeners(ls) })
	require.Len(t, ls, 2)
	st, err := os.Stat(cfg.APISocket)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o660), st.Mode().Perm(), "root and the fleet group only")

	sec, err := loadAPISecurity(cfg)
	require.NoError(t, err)
	serveAPI(t, sec, &whoami{}, ls...)
	unixClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", cfg.APISocket)
		},
	}}
	a, err := get(t, unixClient, "DELETE", "http://fleetd/fleet/v1/units/x.service", "")
	require.NoError(t, err)
	require.Equal(t, answer{200, "root admin unix"}, a, "the socket's caller is root")
	a, err = get(t, unixClient, "DELETE", "http://fleetd/fleet/v1/units/x.service", "wrong")
	require.NoError(t, err)
	require.Equal(t, answer{200, "root admin unix"}, a, "a token does not matter on the socket")

	a, err = get(t, &http.Client{Timeout: 10 * time.Second}, "DELETE", "http://"+ls[1].Addr().String()+"/fleet/v1/units/x.service", "")
	require.NoError(t, err)
	require.Equal(t, 401, a.code, "TCP callers must authenticate")
}

func TestAPIURLScheme(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MachineID = "m1"
	cfg.PublicIP = "10.0.0.1"
	cfg.APIListen = "0.0.0.0:49153"
	m, err := describeMachine(cfg, "test")
	require.NoError(t, err)
	require.Equal(t, "http://10.0.0.1:49153", m.APIURL)
	cfg.APICertFile, cfg.APIKeyFile = "/etc/fleet/api.pem", "/etc/fleet/api-key.pem"
	m, err = describeMachine(cfg, "test")
	require.NoError(t, err)
	require.Equal(t, "https://10.0.0.1:49153", m.APIURL)
}

// TestStreamsReachTheConnection checks that a handler behind fleetd's
// metrics and Authorize can still lift the server's deadlines, as streamed
// answers do: every wrapper of the ResponseWriter unwraps.
func TestStreamsReachTheConnection(t *testing.T) {
	m := newMetrics()
	h := m.instrument(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rc := http.NewResponseController(w)
		if err := errors.Join(rc.SetWriteDeadline(time.Time{}), rc.SetReadDeadline(time.Time{})); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "deadlines lifted")
	}))
	l := listen(t, "tcp", "127.0.0.1:0")
	serveAPI(t, apiSecurity{}, h, l)
	a, err := get(t, &http.Client{Timeout: 10 * time.Second}, "GET", "http://"+l.Addr().String()+"/fleet/v1/events", "")
	require.NoError(t, err)
	require.Equal(t, answer{200, "deadlines lifted"}, a)
}
