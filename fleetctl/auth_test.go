package fleetctl_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
	"github.com/seed-a1ce88ea/fleet/registry"
)

const (
	adminToken = "admin-s3cret"
	readToken  = "read-s3cret"
)

// testPKI is a CA with its files, and another CA the servers do not trust.
type testPKI struct {
	dir          string
	ca, other    pki.CA
	caFile       string
	otherCAFile  string
	serverCert   string
	serverKey    string
	adminCert    string
	adminKey     string
	strangerCert string // an admin certificate signed by the other CA
	strangerKey  string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.ca, p.caFile = p.createCA(t, "ca")
	p.other, p.otherCAFile = p.createCA(t, "other")
	p.serverCert, p.serverKey = p.issue(t, p.ca, "server", pki.CertRequest{Kind: pki.Server, CommonName: "fleetd"})
	p.adminCert, p.adminKey = p.issue(t, p.ca, "alice", pki.CertRequest{Kind: pki.Client, CommonName: "alice", Role: pki.RoleAdmin})
	p.strangerCert, p.strangerKey = p.issue(t, p.other, "mallory", pki.CertRequest{Kind: pki.Client, CommonName: "mallory", Role: pki.RoleAdmin})
	return p
}

func (p *testPKI) createCA(t *testing.T, name string) (pki.CA, string) {
	t.Helper()
	certPEM, keyPEM, err := pki.CreateCA(name, 24*time.Hour)
	require.NoError(t, err)
	certFile, keyFile := p.write(t, name, certPEM, keyPEM)
	ca, err := pki.LoadCA(certFile, keyFile)
	require.NoError(t, err)
	return ca, certFile
}

func (p *testPKI) issue(t *testing.T, ca pki.CA, name string, req pki.CertRequest) (certFile, keyFile string) {
	t.Helper()
	req.Validity = time.Hour
	certPEM, keyPEM, err := ca.Issue(req)
	require.NoError(t, err)
	return p.write(t, name, certPEM, keyPEM)
}

func (p *testPKI) write(t *testing.T, name string, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile
}

// authHandler is a stand-in for fleetd's authentication (not this
// package's to test): a bearer token or a verified client certificate
// names a role; read may only GET. It answers in fleet's error shape.
func authHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role := ""
		switch r.Header.Get("Authorization") {
		case "Bearer " + adminToken:
			role = pki.RoleAdmin
		case "Bearer " + readToken:
			role = pki.RoleRead
		case "":
			if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
				role = pki.CertRole(r.TLS.VerifiedChains[0][0])
			}
		}
		switch {
		case role == "" && r.Header.Get("Authorization") != "":
			writeAPIError(w, http.StatusUnauthorized, "the token is not valid")
		case role == "":
			writeAPIError(w, http.StatusUnauthorized, "authentication required: no token or client certificate.")
		case role == pki.RoleRead && r.Method != http.MethodGet:
			writeAPIError(w, http.StatusForbidden, "role read may not "+r.Method+" "+r.URL.Path+"; it needs role admin")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeAPIError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	_ = json.NewEncoder(w).Encode(body)
}

// serveTLS serves the harness's API over TLS with the test PKI's server
// certificate, verifying client certificates against its CA (required
// when requireCert).
func (p *testPKI) serveTLS(t *testing.T, h *harness, requireCert bool) string {
	t.Helper()
	cfg, err := pki.ServerConfig(p.serverCert, p.serverKey, p.caFile, requireCert)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(authHandler(api.NewServer(api.NewRegistryClient(h.reg))))
	srv.TLS = cfg
	// Refused handshakes are what these tests make; not worth a log line.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAuthTokenAndTLS(t *testing.T) {
	p := newTestPKI(t)
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	url := p.serveTLS(t, h, false)
	host := strings.TrimPrefix(url, "https://")
	dir := t.TempDir()
	hello := writeUnit(t, dir, "hello.service", helloUnit)
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600))
	emptyFile := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(emptyFile, []byte(" \n"), 0o600))
	missingFile := filepath.Join(dir, "missing")

	// An admin submits with a token; every way of giving it works.
	r := runFleetctl(h.ctx, nil, "--endpoint", url, "--ca-file", p.caFile, "--token", adminToken, "submit", hello)
	require.NoError(t, r.err)
	h.place(m1, "hello.service", registry.StateLaunched)
	h.publish(m1, "hello.service", "loaded", "active", "running")
	const listed = "hello.service\t113f16a7.../10.0.0.3\tactive\trunning\n"
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"--token", nil, []string{"--token", adminToken}},
		{"FLEETCTL_TOKEN", map[string]string{"FLEETCTL_TOKEN": readToken}, nil},
		{"--token-file", nil, []string{"--token-file", tokenFile}},
		{"FLEETCTL_TOKEN_FILE", map[string]string{"FLEETCTL_TOKEN_FILE": tokenFile}, nil},
		{"--token-file wins over FLEETCTL_TOKEN", map[string]string{"FLEETCTL_TOKEN": "wrong"}, []string{"--token-file", tokenFile}},
		{"--token wins over FLEETCTL_TOKEN_FILE", map[string]string{"FLEETCTL_TOKEN_FILE": missingFile}, []string{"--token", readToken}},
		{"admin client certificate", nil, []string{"--cert-file", p.adminCert, "--key-file", p.adminKey}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--endpoint", url, "--ca-file", p.caFile}, tt.args...)
			r := runFleetctl(h.ctx, tt.env, append(args, "list-units", "--no-legend")...)
			require.NoError(t, r.err)
			require.Equal(t, listed, r.stdout)
		})
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
		code int
	}{
		{
			name: "no token",
			args: []string{"--ca-file", p.caFile, "list-units"},
			want: "authentication required: no token or client certificate; give a token with --token or FLEETCTL_TOKEN, or a client certificate",
			code: fleetctl.ExitAuth,
		},
		{
			name: "wrong token",
			env:  map[string]string{"FLEETCTL_TOKEN": "guess"},
			args: []string{"--ca-file", p.caFile, "list-units"},
			want: "the token is not valid; give a token with --token or FLEETCTL_TOKEN, or a client certificate",
			code: fleetctl.ExitAuth,
		},
		{
			name: "read token may not start",
			args: []string{"--ca-file", p.caFile, "--token", readToken, "destroy", "hello.service"},
			want: "role read may not DELETE /fleet/v1/units/hello.service; it needs role admin",
			code: fleetctl.ExitAuth,
		},
		{
			name: "server certificate from another CA",
			args: []string{"--ca-file", p.otherCAFile, "--token", adminToken, "list-units"},
			want: "fleetd at " + url + " presents a certificate not signed by the CA in --ca-file " + p.otherCAFile,
			code: fleetctl.ExitAuth,
		},
		{
			name: "no CA file",
			args: []string{"--token", adminToken, "list-units"},
			want: "fleetd at " + url + " presents a certificate not signed by the system's roots (give the cluster's CA with --ca-file)",
			code: fleetctl.ExitAuth,
		},
		{
			name: "client certificate from another CA",
			args: []string{"--ca-file", p.caFile, "--cert-file", p.strangerCert, "--key-file", p.strangerKey, "list-units"},
			want: "fleetd at " + url + " refused the client certificate (--cert-file " + p.strangerCert + "): it needs one signed by its api_client_ca_file",
			code: fleetctl.ExitAuth,
		},
		{
			name: "plain http to the TLS port",
			args: []string{"--token", adminToken, "--endpoint", "http://" + host, "list-units"},
			want: "fleetd at http://" + host + " serves HTTPS: use https://" + host,
			code: fleetctl.ExitUsage,
		},
		{
			name: "token file missing",
			args: []string{"--token-file", missingFile, "list-units"},
			want: "--token-file: open " + missingFile + ": no such file or directory",
			code: fleetctl.ExitUsage,
		},
		{
			name: "token file empty",
			env:  map[string]string{"FLEETCTL_TOKEN_FILE": emptyFile},
			args: []string{"list-units"},
			want: "--token-file " + emptyFile + " is empty; it should hold the token",
			code: fleetctl.ExitUsage,
		},
		{
			name: "token and token file",
			args: []string{"--token", adminToken, "--token-file", tokenFile, "list-units"},
			want: "give --token or --token-file, not both",
			code: fleetctl.ExitUsage,
		},
		{
			name: "token with a space",
			env:  map[string]string{"FLEETCTL_TOKEN": "two words"},
			args: []string{"list-units"},
			want: "the token of --token has a space or control character in it",
			code: fleetctl.ExitUsage,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runFleetctl(h.ctx, tt.env, append([]string{"--endpoint", url}, tt.args...)...)
			require.EqualError(t, r.err, tt.want)
			require.Equal(t, tt.code, r.code)
			require.Empty(t, r.stdout)
		})
	}

	// --debug shows requests, never the token.
	r = runFleetctl(h.ctx, nil, "--endpoint", url, "--ca-file", p.caFile, "--token", adminToken, "--debug", "list-units")
	require.NoError(t, r.err)
	require.Contains(t, r.stderr, "DEBUG: GET "+url+"/fleet/v1/state?pageSize=65535: 200 OK")
	require.NotContains(t, r.stderr, adminToken)
}

func TestAuthClientCertificateRequired(t *testing.T) {
	p := newTestPKI(t)
	h := newHarness(t, "api")
	url := p.serveTLS(t, h, true)

	r := runFleetctl(h.ctx, nil, "--endpoint", url, "--ca-file", p.caFile, "--token", adminToken, "list-units")
	require.EqualError(t, r.err, "fleetd at "+url+" requires a client certificate: give --cert-file and --key-file, one signed by its api_client_ca_file")
	require.Equal(t, fleetctl.ExitAuth, r.code)

	r = runFleetctl(h.ctx, nil, "--endpoint", url, "--ca-file", p.caFile, "--cert-file", p.strangerCert, "--key-file", p.strangerKey, "list-units")
	require.EqualError(t, r.err, "fleetd at "+url+" refused the client certificate (--cert-file "+p.strangerCert+"): it needs one signed by its api_client_ca_file")
	require.Equal(t, fleetctl.ExitAuth, r.code)

	r = runFleetctl(h.ctx, nil, "--endpoint", url, "--ca-file", p.caFile, "--cert-file", p.adminCert, "--key-file", p.adminKey, "list-units", "--no-legend")
	require.NoError(t, r.err)
}

func TestAuthServerCertificateForOtherHosts(t *testing.T) {
	p := newTestPKI(t)
	h := newHarness(t, "api")
	// The whole of 127.0.0.0/8 is this machine's on Linux, but the server
	// certificate names only 127.0.0.1.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	cfg, err := pki.ServerConfig(p.serverCert, p.serverKey, "", false)
	require.NoError(t, err)
	srv := &httptest.Server{Listener: l, TLS: cfg, Config: &http.Server{
		Handler:  authHandler(api.NewServer(api.NewRegistryClient(h.reg))),
		ErrorLog: log.New(io.Discard, "", 0),
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	r := runFleetctl(h.ctx, nil, "--endpoint", srv.URL, "--ca-file", p.caFile, "--token", adminToken, "list-units")
	require.EqualError(t, r.err, "fleetd at "+srv.URL+" presents a certificate for other hosts (certificate is valid for 127.0.0.1, ::1, not 127.0.0.2): use one of its names in --endpoint, or give it a certificate made with --hosts naming this one")
	require.Equal(t, fleetctl.ExitAuth, r.code)
}

func TestAuthLocalCertificateChecks(t *testing.T) {
	p := newTestPKI(t)
	// An expired client certificate, made by hand: pki only issues valid ones.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "old", Organization: []string{pki.RoleAdmin}},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	adminLeaf, err := leafOf(p.adminCert, p.adminKey)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, adminLeaf.PublicKey, p.ca.Key)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(p.adminKey)
	require.NoError(t, err)
	expiredCert, expiredKey := p.write(t, "old", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"expired client certificate", []string{"--cert-file", expiredCert, "--key-file", expiredKey},
			"certificate " + expiredCert + " expired on " + tmpl.NotAfter.UTC().Format(time.RFC3339)},
		{"key of another certificate", []string{"--cert-file", p.adminCert, "--key-file", p.strangerKey},
			"certificate " + p.adminCert + " with key " + p.strangerKey + ": tls: private key does not match public key"},
		{"key file as CA file", []string{"--ca-file", p.adminKey},
			"CA file " + p.adminKey + ": no PEM certificate in it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Nothing is dialed: the files are checked first.
			r := runFleetctl(t.Context(), nil, append([]string{"--endpoint", "https://192.0.2.1:1"}, append(tt.args, "list-units")...)...)
			require.EqualError(t, r.err, tt.want)
			require.Equal(t, fleetctl.ExitUsage, r.code)
		})
	}
}

// leafOf returns the certificate of a key pair, parsed.
func leafOf(certFile, keyFile string) (*x509.Certificate, error) {
	pair, err := pki.LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return pair.Leaf, nil
}

func TestAuthTokenNeverInClearText(t *testing.T) {
	h := newHarness(t, "api")
	srv := httptest.NewServer(authHandler(api.NewServer(api.NewRegistryClient(h.reg))))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]

	for _, ep := range []string{"http://10.0.0.5:4002", "10.0.0.5:4002", "http://fleet.example.com:80"} {
		r := runFleetctl(h.ctx, map[string]string{"FLEETCTL_TOKEN": adminToken}, "--endpoint", ep, "list-units")
		require.EqualError(t, r.err, "refusing to send the token in clear text to fleetd at "+ep+": use an https:// endpoint or a unix socket")
		require.Equal(t, fleetctl.ExitUsage, r.code)
	}
	// Loopback stays on this machine.
	for _, ep := range []string{srv.URL, "localhost:" + port, "http://[::1]:" + port} {
		r := runFleetctl(h.ctx, map[string]string{"FLEETCTL_TOKEN": adminToken}, "--endpoint", ep, "list-units", "--no-legend")
		if ep == "http://[::1]:"+port {
			// httptest listens on 127.0.0.1 only: the request is let
			// through and fails to connect, which is what this checks.
			require.ErrorContains(t, r.err, "cannot reach fleetd at "+ep)
			continue
		}
		require.NoError(t, r.err, ep)
	}
	// A plain https endpoint on a TCP port that speaks HTTP.
	r := runFleetctl(h.ctx, nil, "--endpoint", "https://127.0.0.1:"+port, "--token", adminToken, "list-units")
	require.EqualError(t, r.err, "fleetd at https://127.0.0.1:"+port+" serves plain HTTP, not HTTPS: use http:// or ask its operator to configure api_cert_file")
	require.Equal(t, fleetctl.ExitUsage, r.code)
}

func TestHelpListsAuthExitCode(t *testing.T) {
	r := runFleetctl(t.Context(), nil, "help")
	require.NoError(t, r.err)
	require.Contains(t, r.stdout, "  8  fleetd refused the credentials (no or a wrong token or client certificate,\n     or a role that may not do it), or its certificate is not trusted\n")
	require.Contains(t, r.stdout, "--token-file string")
}
