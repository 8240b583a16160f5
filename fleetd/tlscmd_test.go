package fleetd

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

func runTLS(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := TLSCommand(args, &out)
	return out.String(), err
}

func TestTLSCommandCreatesAVerifyingCluster(t *testing.T) {
	dir := t.TempDir()
	out, err := runTLS(t, "ca", "create", "--dir", dir, "--name", "test CA", "--days", "30")
	require.NoError(t, err)
	caFile, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	require.Equal(t, "CA certificate: "+caFile+"\nCA key:         "+caKey+" (keep it secret: it signs every certificate of the cluster)\n", out)
	requireMode(t, caKey, 0o600)
	ca, err := pki.LoadCA(caFile, caKey)
	require.NoError(t, err)
	require.Equal(t, "test CA", ca.Cert.Subject.CommonName)
	roots, err := pki.LoadCertPool(caFile)
	require.NoError(t, err)

	tests := []struct {
		name     string
		args     []string
		file     string
		kind     string
		role     string
		usages   []x509.ExtKeyUsage
		dnsNames []string
		ips      []string
	}{
		{
			name:     "server named after its first host",
			args:     []string{"--server", "--hosts", "m1.example.com, 10.0.0.5"},
			file:     "m1.example.com",
			kind:     "server",
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			dnsNames: []string{"localhost", "m1.example.com"},
			ips:      []string{"127.0.0.1", "::1", "10.0.0.5"},
		},
		{
			name:     "server without hosts",
			args:     []string{"--server"},
			file:     "server",
			kind:     "server",
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			dnsNames: []string{"localhost"},
			ips:      []string{"127.0.0.1", "::1"},
		},
		{
			name:   "named admin client",
			args:   []string{"--client", "--role", "admin", "--name", "alice"},
			file:   "alice",
			kind:   "client",
			role:   "admin",
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
		{
			name:   "read client named after its role",
			args:   []string{"--client", "--role", "read"},
			file:   "read",
			kind:   "client",
			role:   "read",
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
		{
			name:     "peer",
			args:     []string{"--peer", "--name", "machine-a", "--hosts", "10.0.0.6", "--days", "7"},
			file:     "machine-a",
			kind:     "peer",
			role:     "peer",
			usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			dnsNames: []string{"localhost"},
			ips:      []string{"127.0.0.1", "::1", "10.0.0.6"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTLS(t, append([]string{"cert", "create", "--dir", dir, "--days", "1"}, tt.args...)...)
			require.NoError(t, err)
			certFile := filepath.Join(dir, tt.file+".pem")
			keyFile := filepath.Join(dir, tt.file+"-key.pem")
			require.Equal(t, tt.kind+" certificate: "+certFile+"\n"+tt.kind+" key:         "+keyFile+"\n", out)
			requireMode(t, keyFile, 0o600)

			pair, err := pki.LoadKeyPair(certFile, keyFile)
			require.NoError(t, err)
			leaf := pair.Leaf
			require.Equal(t, tt.file, leaf.Subject.CommonName)
			require.Equal(t, tt.role, pki.CertRole(leaf))
			require.Equal(t, tt.dnsNames, leaf.DNSNames)
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			require.Equal(t, tt.ips, ips)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: tt.usages})
			require.NoError(t, err)
			// All the usages, not any one of them.
			for _, u := range tt.usages {
				_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}})
				require.NoError(t, err)
			}
		})
	}
}

func TestTLSCommandCertWithExplicitCA(t *testing.T) {
	caDir, certDir := t.TempDir(), filepath.Join(t.TempDir(), "certs")
	_, err := runTLS(t, "ca", "create", "--dir", caDir)
	require.NoError(t, err)
	_, err = runTLS(t, "cert", "create", "--client", "--role", "read", "--name", "bob", "--dir", certDir,
		"--ca", filepath.Join(caDir, "ca.pem"), "--ca-key", filepath.Join(caDir, "ca-key.pem"))
	require.NoError(t, err)
	info, err := os.Stat(certDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	_, err = pki.LoadKeyPair(filepath.Join(certDir, "bob.pem"), filepath.Join(certDir, "bob-key.pem"))
	require.NoError(t, err)
}

func TestTLSCommandRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	_, err := runTLS(t, "ca", "create", "--dir", dir)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	before, err := os.ReadFile(caFile)
	require.NoError(t, err)

	_, err = runTLS(t, "ca", "create", "--dir", dir)
	require.EqualError(t, err, caFile+" exists; not overwriting it (give --force to replace it)")
	require.NotErrorIs(t, err, ErrUsage)
	after, err := os.ReadFile(caFile)
	require.NoError(t, err)
	require.Equal(t, before, after)

	// A key left with a loose mode is replaced with 0600, not rewritten in place.
	require.NoError(t, os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644))
	_, err = runTLS(t, "ca", "create", "--dir", dir, "--force")
	require.NoError(t, err)
	after, err = os.ReadFile(caFile)
	require.NoError(t, err)
	require.NotEqual(t, before, after)
	requireMode(t, filepath.Join(dir, "ca-key.pem"), 0o600)

	_, err = runTLS(t, "cert", "create", "--dir", dir, "--server")
	require.NoError(t, err)
	_, err = runTLS(t, "cert", "create", "--dir", dir, "--server")
	require.EqualError(t, err, filepath.Join(dir, "server.pem")+" exists; not overwriting it (give --force to replace it)")
}

func TestTLSCommandErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := runTLS(t, "ca", "create", "--dir", dir)
	require.NoError(t, err)
	missing := filepath.Join(t.TempDir(), "none")

	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"no command", nil, "tls: give a command: ca create or cert create (see fleetd tls -h)", true},
		{"unknown command", []string{"key", "create"}, `tls: unknown command "key create": want ca create or cert create (see fleetd tls -h)`, true},
		{"ca without create", []string{"ca"}, `tls: unknown command "ca": want ca create or cert create (see fleetd tls -h)`, true},
		{"unknown flag", []string{"cert", "create", "--bogus"}, "tls cert create: flag provided but not defined: -bogus (see fleetd tls -h)", true},
		{"extra argument", []string{"ca", "create", "now"}, `tls ca create: unexpected argument "now" (see fleetd tls -h)`, true},
		{"no kind", []string{"cert", "create", "--dir", dir}, "tls cert create: give one of --server, --client or --peer (see fleetd tls -h)", true},
		{"two kinds", []string{"cert", "create", "--dir", dir, "--server", "--peer"}, "tls cert create: give only one of --server, --peer", true},
		{"client without role", []string{"cert", "create", "--dir", dir, "--client"}, "tls cert create: --client needs --role admin or --role read", true},
		{"client with bad role", []string{"cert", "create", "--dir", dir, "--client", "--role", "root"}, `tls cert create: client certificate "root": unknown role "root", want admin or read`, true},
		{"role on a server", []string{"cert", "create", "--dir", dir, "--server", "--role", "admin"}, "tls cert create: --role is for --client certificates only", true},
		{"hosts on a client", []string{"cert", "create", "--dir", dir, "--client", "--role", "read", "--hosts", "a"}, "tls cert create: --hosts is for --server and --peer certificates only", true},
		{"host with a port", []string{"cert", "create", "--dir", dir, "--peer", "--name", "p", "--hosts", "10.0.0.5:49153"}, `tls cert create: peer certificate "p": host "10.0.0.5:49153" is neither an IP address nor a DNS name`, true},
		{"name with a slash", []string{"cert", "create", "--dir", dir, "--server", "--name", "../x"}, `tls cert create: --name "../x": names the files too, so it may not contain a slash or start with a dot`, true},
		{"zero days", []string{"ca", "create", "--dir", t.TempDir(), "--days", "0"}, "tls ca create: --days 0: must be positive", true},
		{"outliving the CA", []string{"cert", "create", "--dir", dir, "--server", "--days", "4000"}, "would outlive its CA", true},
		{"no CA", []string{"cert", "create", "--dir", missing, "--server"},
			"certificate: open " + filepath.Join(missing, "ca.pem") + ": no such file or directory (make one with fleetd tls ca create, or give --ca and --ca-key)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runTLS(t, tt.args...)
			require.Error(t, err)
			if strings.HasPrefix(tt.want, "would") {
				require.ErrorContains(t, err, tt.want)
			} else {
				require.EqualError(t, err, tt.want)
			}
			if tt.usage {
				require.ErrorIs(t, err, ErrUsage)
			} else {
				require.NotErrorIs(t, err, ErrUsage)
			}
		})
	}
	_, err = os.Stat(missing)
	require.ErrorIs(t, err, os.ErrNotExist, "a failed command creates no directory")
}

func TestTLSCommandHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"cert", "create", "-h"}} {
		out, err := runTLS(t, args...)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, "Usage:\n  fleetd tls ca create"), out)
	}
}

func requireMode(t *testing.T, file string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, want, info.Mode().Perm(), file)
}
