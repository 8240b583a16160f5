package etcdtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// Certs are the files of a TLS test member and its clients, made with
// internal/pki in a temporary directory.
type Certs struct {
	CAFile                string // the CA that signed all but Other*
	ServerCert, ServerKey string // a peer certificate (server and client usage) for localhost
	ClientCert, ClientKey string // an admin client certificate
	OtherCert, OtherKey   string // an admin client certificate of another CA
	OtherCAFile           string // that other CA
}

// NewCerts makes a CA, a server certificate and a client certificate it
// signed, and a client certificate of an unrelated CA, for tb.
func NewCerts(tb testing.TB) Certs {
	tb.Helper()
	dir := tb.TempDir()
	var c Certs
	ca := newCA(tb, dir, "ca", &c.CAFile)
	other := newCA(tb, dir, "other-ca", &c.OtherCAFile)
	c.ServerCert, c.ServerKey = issue(tb, ca, dir, "server", pki.CertRequest{Kind: pki.Peer, CommonName: "etcd"})
	c.ClientCert, c.ClientKey = issue(tb, ca, dir, "client", pki.CertRequest{Kind: pki.Client, CommonName: "fleetd", Role: pki.RoleAdmin})
	c.OtherCert, c.OtherKey = issue(tb, other, dir, "other", pki.CertRequest{Kind: pki.Client, CommonName: "intruder", Role: pki.RoleAdmin})
	return c
}

func newCA(tb testing.TB, dir, name string, certFile *string) pki.CA {
	tb.Helper()
	certPEM, keyPEM, err := pki.CreateCA(name, time.Hour)
	if err != nil {
		tb.Fatalf("create CA: %v", err)
	}
	var keyFile string
	*certFile, keyFile = write(tb, dir, name, certPEM, keyPEM)
	ca, err := pki.LoadCA(*certFile, keyFile)
	if err != nil {
		tb.Fatalf("load CA: %v", err)
	}
	return ca
}

func issue(tb testing.TB, ca pki.CA, dir, name string, req pki.CertRequest) (certFile, keyFile string) {
	tb.Helper()
	req.Validity = 30 * time.Minute
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		tb.Fatalf("issue %s certificate: %v", name, err)
	}
	return write(tb, dir, name, certPEM, keyPEM)
}

func write(tb testing.TB, dir, name string, certPEM, keyPEM []byte) (certFile, keyFile string) {
	tb.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}
