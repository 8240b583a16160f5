package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// Kind is what a certificate is for.
type Kind int

const (
	// Server certificates serve fleet's API (extended key usage serverAuth).
	Server Kind = iota + 1
	// Client certificates authenticate fleetctl or another API client
	// (clientAuth) and carry a role.
	Client
	// Peer certificates are a fleetd's own identity: one certificate both
	// serves its API and calls other fleetds, so it has both usages and
	// the role "peer".
	Peer
)

func (k Kind) String() string {
	switch k {
	case Server:
		return "server"
	case Client:
		return "client"
	case Peer:
		return "peer"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// The roles a client or peer certificate carries in Subject.Organization[0].
// The API's authentication maps a certificate to the identity
// Subject.CommonName with this role.
const (
	RoleAdmin = "admin"
	RoleRead  = "read"
	RolePeer  = "peer"
)

// CertRole is the role a certificate carries (Subject.Organization[0]), or
// "" when it carries none.
func CertRole(c *x509.Certificate) string {
	if len(c.Subject.Organization) == 0 {
		return ""
	}
	return c.Subject.Organization[0]
}

// CertRequest describes a certificate for CA.Issue.
type CertRequest struct {
	Kind       Kind
	CommonName string
	// Role is required for Client certificates (RoleAdmin or RoleRead),
	// RolePeer or empty for Peer certificates, and empty for Server ones.
	Role string
	// Hosts are the names and IP addresses a Server or Peer certificate is
	// valid for, besides localhost, 127.0.0.1 and ::1 which it always has.
	Hosts    []string
	Validity time.Duration
}

// CA is a certificate authority that issues fleet's certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// clockSkew backdates NotBefore so a certificate made on one machine is
// valid at once on a machine whose clock is a little behind.
const clockSkew = time.Minute

// CreateCA makes a self-signed CA certificate and its ECDSA P-256 key,
// valid for validity from now, both PEM-encoded.
func CreateCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, nil, errors.New("a CA needs a common name")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("CA validity %s: must be positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs only leaves: an intermediate made from a stolen
		// leaf key must not verify.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadCA reads a CA certificate and its key, as CreateCA writes them. It
// refuses a certificate that is not a CA, is expired, or does not match
// the key.
func LoadCA(certFile, keyFile string) (CA, error) {
	cert, err := readCert(certFile)
	if err != nil {
		return CA{}, err
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return CA{}, fmt.Errorf("CA certificate %s: not a CA certificate (no CA basic constraint or certSign usage)", certFile)
	}
	if err := checkValidity(certFile, cert, time.Now()); err != nil {
		return CA{}, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return CA{}, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return CA{}, fmt.Errorf("CA key %s does not match the certificate %s", keyFile, certFile)
	}
	return CA{Cert: cert, Key: key}, nil
}

// Issue makes a certificate of req's kind signed by ca, with a new ECDSA
// P-256 key, both PEM-encoded.
func (ca CA) Issue(req CertRequest) (certPEM, keyPEM []byte, err error) {
	if req.Validity <= 0 {
		return nil, nil, fmt.Errorf("%s certificate validity %s: must be positive", req.Kind, req.Validity)
	}
	return ca.issue(req, time.Now())
}

// issue is Issue with the clock given, so tests can make a certificate that
// has already expired.
func (ca CA) issue(req CertRequest, now time.Time) (certPEM, keyPEM []byte, err error) {
	if ca.Cert == nil || ca.Key == nil {
		return nil, nil, errors.New("issue certificate: the CA has no certificate or key")
	}
	tmpl, err := template(req)
	if err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(req.Validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("%s certificate valid until %s would outlive its CA, which expires on %s: shorten the validity",
			req.Kind, tmpl.NotAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", req.Kind, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s certificate %q: %w", req.Kind, req.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// template checks req and turns it into a certificate template without
// serial number or validity.
func template(req CertRequest) (*x509.Certificate, error) {
	if strings.TrimSpace(req.CommonName) == "" {
		return nil, fmt.Errorf("a %s certificate needs a common name", req.Kind)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.CommonName},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	switch req.Kind {
	case Server:
		if req.Role != "" {
			return nil, fmt.Errorf("server certificate %q: a server certificate carries no role (got %q)", req.CommonName, req.Role)
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case Client:
		switch req.Role {
		case RoleAdmin, RoleRead:
		case "":
			return nil, fmt.Errorf("client certificate %q needs a role: %s or %s", req.CommonName, RoleAdmin, RoleRead)
		default:
			return nil, fmt.Errorf("client certificate %q: unknown role %q, want %s or %s", req.CommonName, req.Role, RoleAdmin, RoleRead)
		}
		if len(req.Hosts) > 0 {
			return nil, fmt.Errorf("client certificate %q: a client certificate has no hosts", req.CommonName)
		}
		tmpl.Subject.Organization = []string{req.Role}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case Peer:
		if req.Role != "" && req.Role != RolePeer {
			return nil, fmt.Errorf("peer certificate %q: the role of a peer is %s (got %q)", req.CommonName, RolePeer, req.Role)
		}
		tmpl.Subject.Organization = []string{RolePeer}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	default:
		return nil, fmt.Errorf("certificate %q: unknown kind %d", req.CommonName, int(req.Kind))
	}
	if req.Kind == Server || req.Kind == Peer {
		if err := addHosts(tmpl, req.Hosts); err != nil {
			return nil, fmt.Errorf("%s certificate %q: %w", req.Kind, req.CommonName, err)
		}
	}
	return tmpl, nil
}

// addHosts sets the subject alternative names: IP addresses as IP SANs,
// everything else as DNS SANs. Loopback is always there so local clients
// and health checks verify.
func addHosts(tmpl *x509.Certificate, hosts []string) error {
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		if !validDNSName(h) {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		h = strings.ToLower(h)
		if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return nil
}

// validDNSName accepts host names and a leading wildcard label; it catches
// the usual slips (a port, a URL, a space) rather than every RFC rule.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readCert reads the first PEM certificate in file.
func readCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("certificate %s: no PEM certificate in it", file)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", file, err)
		}
		return c, nil
	}
}

// readKey reads a PEM private key in PKCS #8, SEC 1 (EC) or PKCS #1 (RSA)
// form, so a CA made by openssl or cfssl loads too.
func readKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("key %s: no PEM private key in it", file)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", file, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key %s: a %T cannot sign certificates", file, key)
		}
		return signer, nil
	}
}
