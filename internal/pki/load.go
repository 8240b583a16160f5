// Package pki loads and makes the X.509 certificates fleet's TLS uses: the
// API's server and client certificates, fleetd's peer certificate, and the
// certificates of etcd's clients. Errors name the file they are about, so an
// operator knows which one to fix.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// LoadCertPool reads the PEM CA certificates in path.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// LoadKeyPair reads a certificate and its key, and refuses a certificate
// that is expired or not yet valid: a TLS handshake would only fail later
// with a message that names neither file.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	if err := checkValidity(certFile, leaf, time.Now()); err != nil {
		return tls.Certificate{}, err
	}
	cert.Leaf = leaf
	return cert, nil
}

func checkValidity(file string, c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("certificate %s expired on %s", file, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("certificate %s is not valid before %s", file, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// ServerConfig is the TLS configuration of a server with the certificate
// in certFile/keyFile. With clientCAFile, clients' certificates are verified
// against it: required when requireClientCert, else verified if given (so
// a client may authenticate with a bearer token instead).
func ServerConfig(certFile, keyFile, clientCAFile string, requireClientCert bool) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("a TLS server needs both a certificate and a key file")
	}
	cert, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		if cfg.ClientCAs, err = LoadCertPool(clientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// ClientConfig is the TLS configuration of a client that verifies servers
// against caFile (the system's roots when empty) and, with certFile and
// keyFile, presents that certificate.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
