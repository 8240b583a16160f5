package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// testCA is a throwaway certificate authority. (fleetd tls makes the real
// ones; these tests need only a CA and leaf certificates in memory.)
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for 127.0.0.1 usable by servers and clients,
// like a fleetd peer certificate: common name cn, organization (role) org.
func (ca *testCA) issue(t *testing.T, cn string, org ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: org},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// identityRecorder remembers who reached the handler behind Authorize.
type identityRecorder struct {
	mu   sync.Mutex
	seen []auth.Identity
}

func (r *identityRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, _ := auth.FromContext(req.Context())
		r.mu.Lock()
		r.seen = append(r.seen, id)
		r.mu.Unlock()
		next.ServeHTTP(w, req)
	})
}

func TestPeerTLSForwarding(t *testing.T) {
	c := newCluster(t)
	ca := newTestCA(t)
	// m2's fleetd serves TLS, verifies client certificates if given and
	// also takes tokens.
	toks, err := auth.ParseTokens(strings.NewReader("ci admin admin-token\n"))
	require.NoError(t, err)
	seen := &identityRecorder{}
	srv2 := httptest.NewUnstartedServer(api.Authorize(auth.NewAuthenticator(toks, true),
		seen.wrap(api.NewServer(c.rc, api.WithLocalMachine("m2", fakeInspector{"m2"})))))
	srv2.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "fleetd-m2", "peer")}, ClientCAs: ca.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv2.StartTLS()
	t.Cleanup(srv2.Close)
	// m3's fleetd serves plain http.
	srv3 := serveTCP(t, api.NewServer(c.rc, api.WithLocalMachine("m3", fakeInspector{"m3"})))
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2", APIURL: srv2.URL})
	c.addMachine(machine.Machine{ID: "m3", PublicIP: "10.0.0.3", APIURL: srv3.URL})
	for m, n := range map[string]string{"m2": "two.service", "m3": "three.service"} {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: n, Options: helloOpts})
		require.NoError(t, err)
		c.place(m, n, registry.StateLaunched)
	}
	require.True(t, strings.HasPrefix(srv2.URL, "https://"))

	// m1 forwards with its peer certificate: m2 knows it as a peer.
	m1 := api.NewRegistryClient(c.reg, api.WithPeerTLS(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "fleetd-m1", "peer")}}))
	got, err := m1.UnitStatus(c.ctx, "two.service")
	require.NoError(t, err)
	require.Equal(t, "status of two.service on m2\n", got)
	rc, err := m1.UnitJournal(c.ctx, "two.service", api.JournalOptions{Lines: 4})
	require.Equal(t, "4 journal lines of two.service on m2\n", readAll(t, rc, err))
	require.Equal(t, []auth.Identity{{Name: "fleetd-m1", Role: auth.RolePeer, Via: "cert"}, {Name: "fleetd-m1", Role: auth.RolePeer, Via: "cert"}}, seen.seen)

	// Never in clear text, with peer TLS on.
	_, err = m1.UnitStatus(c.ctx, "three.service")
	require.ErrorIs(t, err, api.ErrUnavailable)
	require.EqualError(t, err, "unit three.service runs on machine m3 (10.0.0.3), whose fleetd serves its API without TLS ("+srv3.URL+"); this fleetd forwards only over TLS: set api_cert_file, api_key_file and api_client_ca_file on machine m3")

	// Without a certificate m2 does not know this fleetd: a 502 that says
	// whose credentials are missing.
	anon := api.NewRegistryClient(c.reg, api.WithPeerTLS(&tls.Config{RootCAs: ca.pool}))
	_, err = anon.UnitStatus(c.ctx, "two.service")
	var apiErr *api.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusBadGateway, apiErr.Code)
	require.Equal(t, "the fleetd of machine m2 (10.0.0.2) refused this fleetd's forwarded request: authentication required: send a bearer token (Authorization: Bearer TOKEN, fleetctl --token) or a client certificate (fleetctl --cert-file/--key-file); give this fleetd a peer certificate (api_cert_file, api_key_file) signed by the api_client_ca_file of machine m2", err.Error())

	// A certificate from another CA fails the handshake.
	other := newTestCA(t)
	stranger := api.NewRegistryClient(c.reg, api.WithPeerTLS(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{other.issue(t, "fleetd-x", "peer")}}))
	_, err = stranger.UnitStatus(c.ctx, "two.service")
	require.ErrorIs(t, err, api.ErrUnavailable)
	require.ErrorContains(t, err, "cannot reach fleetd at "+srv2.URL)

	// And a fleetd that does not trust m2's CA does not talk to it.
	distrust := api.NewRegistryClient(c.reg, api.WithPeerTLS(&tls.Config{RootCAs: other.pool, Certificates: []tls.Certificate{ca.issue(t, "fleetd-m1", "peer")}}))
	_, err = distrust.UnitStatus(c.ctx, "two.service")
	require.ErrorIs(t, err, api.ErrUnavailable)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
}
