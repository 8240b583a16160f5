package platform

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// Paths inside every host of what Security installs there.
const (
	HostTLSDir     = "/etc/fleet/tls"
	HostCAFile     = HostTLSDir + "/ca.pem"
	HostCertFile   = HostTLSDir + "/fleetd.pem"
	HostKeyFile    = HostTLSDir + "/fleetd-key.pem"
	HostTokensFile = "/etc/fleet/tokens"
)

// certValidity is long enough for any run, short enough that a leftover
// directory is worthless soon.
const certValidity = 7 * 24 * time.Hour

// Security is a secured cluster's credentials, made fresh for every cluster
// as an operator would with `fleetd tls`: one CA; a peer certificate per
// host (its fleetd's API and its identity towards etcd and other fleetds);
// certificates of the etcd members; admin and read bearer tokens. The files
// live on the machine in Dir; hosts get copies (InstallHost).
type Security struct {
	// Dir holds every file on the machine (the test process's side).
	Dir string
	// CAFile is the CA every certificate is signed by.
	CAFile string
	// AdminCertFile/AdminKeyFile are a client certificate with role admin.
	AdminCertFile, AdminKeyFile string
	// AdminToken and ReadToken are bearer tokens of roles admin and read;
	// AdminTokenFile and ReadTokenFile hold them (fleetctl --token-file).
	AdminToken, ReadToken         string
	AdminTokenFile, ReadTokenFile string
	// EtcdTLS is the etcd cluster's, when the cluster runs one.
	EtcdTLS *hosts.EtcdTLS

	ca pki.CA
}

// NewSecurity makes the CA, the admin client certificate, the tokens and,
// for etcd members, their certificate for etcdHosts
// (hosts.Config.EtcdCertHosts), in dir.
func NewSecurity(dir string, etcdHosts []string) (*Security, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	s := &Security{Dir: dir, CAFile: filepath.Join(dir, "ca.pem")}
	certPEM, keyPEM, err := pki.CreateCA("fleet test CA", 2*certValidity) // outlives what it signs
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	caKey := filepath.Join(dir, "ca-key.pem")
	if err := writeFiles(map[string][]byte{s.CAFile: certPEM, caKey: keyPEM}); err != nil {
		return nil, err
	}
	if s.ca, err = pki.LoadCA(s.CAFile, caKey); err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	if s.AdminCertFile, s.AdminKeyFile, err = s.Issue("admin", pki.CertRequest{Kind: pki.Client, CommonName: "admin", Role: pki.RoleAdmin}); err != nil {
		return nil, err
	}
	for _, tok := range []*string{&s.AdminToken, &s.ReadToken} {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("security: token: %w", err)
		}
		*tok = hex.EncodeToString(b)
	}
	s.AdminTokenFile, s.ReadTokenFile = filepath.Join(dir, "admin.token"), filepath.Join(dir, "read.token")
	if err := writeFiles(map[string][]byte{s.AdminTokenFile: []byte(s.AdminToken + "\n"), s.ReadTokenFile: []byte(s.ReadToken + "\n")}); err != nil {
		return nil, err
	}
	if len(etcdHosts) > 0 {
		cert, key, err := s.Issue("etcd", pki.CertRequest{Kind: pki.Peer, CommonName: "etcd", Hosts: etcdHosts})
		if err != nil {
			return nil, err
		}
		s.EtcdTLS = &hosts.EtcdTLS{CAFile: s.CAFile, CertFile: cert, KeyFile: key,
			ClientCertFile: s.AdminCertFile, ClientKeyFile: s.AdminKeyFile}
	}
	return s, nil
}

// Issue signs a certificate for req with the cluster's CA and writes it
// and its key as Dir/name.pem and Dir/name-key.pem.
func (s *Security) Issue(name string, req pki.CertRequest) (certFile, keyFile string, err error) {
	req.Validity = certValidity
	certPEM, keyPEM, err := s.ca.Issue(req)
	if err != nil {
		return "", "", fmt.Errorf("security: certificate %s: %w", name, err)
	}
	certFile, keyFile = filepath.Join(s.Dir, name+".pem"), filepath.Join(s.Dir, name+"-key.pem")
	return certFile, keyFile, writeFiles(map[string][]byte{certFile: certPEM, keyFile: keyPEM})
}

// Tokens is the api_tokens_file every host gets.
func (s *Security) Tokens() string {
	return fmt.Sprintf("# NAME ROLE SECRET\nadmin admin %s\nviewer read %s\n", s.AdminToken, s.ReadToken)
}

// InstallHost writes h's peer certificate (for its name and IP), the CA and
// the tokens file into h, where APIConf and EtcdClientConf name them.
func (s *Security) InstallHost(h *hosts.Host) error {
	cert, key, err := s.Issue("fleetd-"+h.Name, pki.CertRequest{Kind: pki.Peer, CommonName: h.Name, Hosts: []string{h.IP, h.Name}})
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		return fmt.Errorf("security: %w", err)
	}
	files := map[string][]byte{h.Path(HostCAFile): ca, h.Path(HostTokensFile): []byte(s.Tokens())}
	for src, dst := range map[string]string{cert: HostCertFile, key: HostKeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("security: %w", err)
		}
		files[h.Path(dst)] = b
	}
	if err := writeFiles(files); err != nil {
		return fmt.Errorf("security: install on %s: %w", h.Name, err)
	}
	return nil
}

// APIConf are the fleet.conf keys of a fleetd serving its API with TLS,
// tokens and client certificates, from the files InstallHost writes.
func APIConf() map[string]string {
	return map[string]string{
		"api_cert_file":      HostCertFile,
		"api_key_file":       HostKeyFile,
		"api_client_ca_file": HostCAFile,
		"api_tokens_file":    HostTokensFile,
	}
}

// EtcdClientConf are the fleet.conf keys of a fleetd that talks to a TLS etcd
// with its peer certificate.
func EtcdClientConf() map[string]string {
	return map[string]string{"etcd_cafile": HostCAFile, "etcd_certfile": HostCertFile, "etcd_keyfile": HostKeyFile}
}

// writeFiles writes each file with mode 0600, making its directory.
func writeFiles(files map[string][]byte) error {
	for path, b := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("security: %w", err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("security: %w", err)
		}
	}
	return nil
}

// EtcdTLSConfig is what a client on the machine (a test) reaches the
// cluster's etcd with: the CA and the admin client certificate; nil when
// etcd serves plain HTTP.
func (c *Cluster) EtcdTLSConfig() (*tls.Config, error) {
	if !c.etcdTLS {
		return nil, nil
	}
	return pki.ClientConfig(c.Security.CAFile, c.Security.AdminCertFile, c.Security.AdminKeyFile)
}
