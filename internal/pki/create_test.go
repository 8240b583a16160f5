package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const day = 24 * time.Hour

// newCA makes a CA in dir and loads it back, as fleetd tls does.
func newCA(t *testing.T, dir, name string) (CA, string) {
	t.Helper()
	certPEM, keyPEM, err := CreateCA(name, 365*day)
	require.NoError(t, err)
	certFile := filepath.Join(dir, name+".pem")
	keyFile := filepath.Join(dir, name+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	ca, err := LoadCA(certFile, keyFile)
	require.NoError(t, err)
	return ca, certFile
}

func writePair(t *testing.T, dir, name string, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

func TestIssueKinds(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	roots, err := LoadCertPool(caFile)
	require.NoError(t, err)

	tests := []struct {
		name     string
		req      CertRequest
		usages   []x509.ExtKeyUsage
		role     string
		dnsNames []string
		ips      []string
	}{
		{
			name:     "server",
			req:      CertRequest{Kind: Server, CommonName: "fleetd-1", Hosts: []string{"node1.example.com", "10.0.0.5", " ", "NODE1.example.com"}, Validity: day},
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			dnsNames: []string{"localhost", "node1.example.com"},
			ips:      []string{"127.0.0.1", "::1", "10.0.0.5"},
		},
		{
			name:     "server without hosts",
			req:      CertRequest{Kind: Server, CommonName: "fleetd-1", Validity: day},
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			dnsNames: []string{"localhost"},
			ips:      []string{"127.0.0.1", "::1"},
		},
		{
			name:   "admin client",
			req:    CertRequest{Kind: Client, CommonName: "alice", Role: RoleAdmin, Validity: day},
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			role:   RoleAdmin,
		},
		{
			name:   "read client",
			req:    CertRequest{Kind: Client, CommonName: "monitor", Role: RoleRead, Validity: day},
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			role:   RoleRead,
		},
		{
			name:     "peer",
			req:      CertRequest{Kind: Peer, CommonName: "machine-a", Hosts: []string{"fd00::5", "a.internal"}, Validity: day},
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			role:     RolePeer,
			dnsNames: []string{"localhost", "a.internal"},
			ips:      []string{"127.0.0.1", "::1", "fd00::5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.req)
			require.NoError(t, err)
			certFile, keyFile := writePair(t, t.TempDir(), "leaf", certPEM, keyPEM)
			pair, err := LoadKeyPair(certFile, keyFile)
			require.NoError(t, err)
			leaf := pair.Leaf

			require.Equal(t, tt.req.CommonName, leaf.Subject.CommonName)
			require.Equal(t, tt.role, CertRole(leaf))
			require.Equal(t, tt.dnsNames, leaf.DNSNames)
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			require.Equal(t, tt.ips, ips)
			require.False(t, leaf.IsCA)

			for _, usage := range tt.usages {
				_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
				require.NoError(t, err, "usage %v", usage)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if !containsUsage(tt.usages, usage) {
					_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
					require.Error(t, err, "usage %v must not verify", usage)
				}
			}
			if len(tt.dnsNames) > 0 {
				for _, name := range append(tt.dnsNames, tt.ips...) {
					_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
					require.NoError(t, err, "host %s", name)
				}
				_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com"})
				require.Error(t, err)
			}
		})
	}
}

func containsUsage(us []x509.ExtKeyUsage, u x509.ExtKeyUsage) bool {
	for _, x := range us {
		if x == u {
			return true
		}
	}
	return false
}

func TestIssueOtherCANotTrusted(t *testing.T) {
	dir := t.TempDir()
	_, caFile := newCA(t, dir, "ca")
	other, _ := newCA(t, dir, "other")
	roots, err := LoadCertPool(caFile)
	require.NoError(t, err)
	certPEM, _, err := other.Issue(CertRequest{Kind: Client, CommonName: "mallory", Role: RoleAdmin, Validity: day})
	require.NoError(t, err)
	_, err = parse(t, certPEM).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.ErrorAs(t, err, new(x509.UnknownAuthorityError))
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca, _ := newCA(t, t.TempDir(), "ca")
	tests := []struct {
		name string
		req  CertRequest
		want string
	}{
		{"client without role", CertRequest{Kind: Client, CommonName: "alice", Validity: day},
			`client certificate "alice" needs a role: admin or read`},
		{"client with unknown role", CertRequest{Kind: Client, CommonName: "alice", Role: "root", Validity: day},
			`client certificate "alice": unknown role "root", want admin or read`},
		{"client with peer role", CertRequest{Kind: Client, CommonName: "alice", Role: RolePeer, Validity: day},
			`client certificate "alice": unknown role "peer", want admin or read`},
		{"client with hosts", CertRequest{Kind: Client, CommonName: "alice", Role: RoleRead, Hosts: []string{"a"}, Validity: day},
			`client certificate "alice": a client certificate has no hosts`},
		{"server with role", CertRequest{Kind: Server, CommonName: "s", Role: RoleAdmin, Validity: day},
			`server certificate "s": a server certificate carries no role (got "admin")`},
		{"peer with admin role", CertRequest{Kind: Peer, CommonName: "p", Role: RoleAdmin, Validity: day},
			`peer certificate "p": the role of a peer is peer (got "admin")`},
		{"no common name", CertRequest{Kind: Server, Validity: day},
			`a server certificate needs a common name`},
		{"no kind", CertRequest{CommonName: "x", Validity: day},
			`certificate "x": unknown kind 0`},
		{"host with port", CertRequest{Kind: Server, CommonName: "s", Hosts: []string{"10.0.0.5:49153"}, Validity: day},
			`server certificate "s": host "10.0.0.5:49153" is neither an IP address nor a DNS name`},
		{"host as URL", CertRequest{Kind: Peer, CommonName: "p", Hosts: []string{"https://a.example"}, Validity: day},
			`peer certificate "p": host "https://a.example" is neither an IP address nor a DNS name`},
		{"negative validity", CertRequest{Kind: Server, CommonName: "s", Validity: -day},
			`server certificate validity -24h0m0s: must be positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ca.Issue(tt.req)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestIssueRefusesOutlivingTheCA(t *testing.T) {
	ca, _ := newCA(t, t.TempDir(), "ca")
	_, _, err := ca.Issue(CertRequest{Kind: Server, CommonName: "s", Validity: 400 * day})
	require.ErrorContains(t, err, "would outlive its CA, which expires on ")
}

func TestLoadKeyPairRefusesExpiredIssuedCert(t *testing.T) {
	dir := t.TempDir()
	ca, _ := newCA(t, dir, "ca")
	certPEM, keyPEM, err := ca.issue(CertRequest{Kind: Client, CommonName: "alice", Role: RoleAdmin, Validity: time.Hour}, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	certFile, keyFile := writePair(t, dir, "alice", certPEM, keyPEM)
	_, err = LoadKeyPair(certFile, keyFile)
	require.ErrorContains(t, err, "certificate "+certFile+" expired on ")
}

func TestLoadKeyPairRefusesWrongKey(t *testing.T) {
	dir := t.TempDir()
	ca, _ := newCA(t, dir, "ca")
	aCert, _, err := ca.Issue(CertRequest{Kind: Server, CommonName: "a", Validity: day})
	require.NoError(t, err)
	_, bKey, err := ca.Issue(CertRequest{Kind: Server, CommonName: "b", Validity: day})
	require.NoError(t, err)
	certFile, keyFile := writePair(t, dir, "a", aCert, bKey)
	_, err = LoadKeyPair(certFile, keyFile)
	require.ErrorContains(t, err, "certificate "+certFile+" with key "+keyFile+": ")
	require.ErrorContains(t, err, "private key does not match public key")
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	require.Equal(t, "ca", ca.Cert.Subject.CommonName)
	require.True(t, ca.Cert.IsCA)
	_, otherKey, err := CreateCA("other", day)
	require.NoError(t, err)
	otherKeyFile := filepath.Join(dir, "other-key.pem")
	require.NoError(t, os.WriteFile(otherKeyFile, otherKey, 0o600))
	leafCert, leafKey, err := ca.Issue(CertRequest{Kind: Server, CommonName: "s", Validity: day})
	require.NoError(t, err)
	leafFile, leafKeyFile := writePair(t, dir, "s", leafCert, leafKey)

	tests := []struct {
		name, cert, key, want string
	}{
		{"key of another CA", caFile, otherKeyFile, "CA key " + otherKeyFile + " does not match the certificate " + caFile},
		{"leaf is not a CA", leafFile, leafKeyFile, "CA certificate " + leafFile + ": not a CA certificate (no CA basic constraint or certSign usage)"},
		{"missing certificate", filepath.Join(dir, "nope.pem"), otherKeyFile, "certificate: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"key file holds a certificate", caFile, caFile, "key " + caFile + ": no PEM private key in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.cert, tt.key)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestCreateCARefusesBadInput(t *testing.T) {
	_, _, err := CreateCA(" ", day)
	require.EqualError(t, err, "a CA needs a common name")
	_, _, err = CreateCA("ca", 0)
	require.EqualError(t, err, "CA validity 0s: must be positive")
}

func TestServerAndClientConfigsHandshake(t *testing.T) {
	// The configs made from issued certificates agree end to end: a peer
	// certificate serves and authenticates with the same pair.
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	certPEM, keyPEM, err := ca.Issue(CertRequest{Kind: Peer, CommonName: "m1", Validity: day})
	require.NoError(t, err)
	certFile, keyFile := writePair(t, dir, "m1", certPEM, keyPEM)
	srv, err := ServerConfig(certFile, keyFile, caFile, true)
	require.NoError(t, err)
	cli, err := ClientConfig(caFile, certFile, keyFile)
	require.NoError(t, err)
	require.NoError(t, handshake(t, srv, cli))
}

// handshake runs a TLS handshake over an in-memory pipe and returns the
// client's error, or the server's when the client's side succeeded.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	cli = cli.Clone()
	cli.ServerName = "localhost"
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sConn, srv)
		err := s.Handshake()
		if err != nil {
			s.Close()
		}
		done <- err
	}()
	c := tls.Client(cConn, cli)
	cerr := c.Handshake()
	if cerr != nil {
		c.Close()
	}
	serr := <-done
	if cerr != nil {
		return cerr
	}
	return serr
}
