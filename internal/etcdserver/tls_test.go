package etcdserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// A member beyond loopback serves TLS and lets in only clients with a
// certificate of its client CA. It listens on the wildcard address, the
// case Check insists on TLS for, while every test connection stays on
// loopback.
func TestExposedMemberRequiresClientCertificates(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := freePort(t)
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:    t.TempDir(),
		ClientURLs: []string{fmt.Sprintf("https://0.0.0.0:%d", port)},
		// Peer TLS on the same files.
		PeerURL:      fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		CertFile:     certs.ServerCert,
		KeyFile:      certs.ServerKey,
		ClientCAFile: certs.CAFile,
		Fast:         true,
	})
	require.NoError(t, err)
	defer srv.Close()
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", port)
	require.Equal(t, []string{endpoint}, srv.Endpoints())

	// put writes key and reads it back.
	put := func(t *testing.T, endpoint string, tlsCfg *tls.Config, key string) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsCfg})
		require.NoError(t, err)
		defer cli.Close()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, key, "v"); err != nil {
			return err
		}
		_, err = cli.Get(ctx, key)
		return err
	}
	clientTLS := func(t *testing.T, ca, cert, key string) *tls.Config {
		cfg, err := pki.ClientConfig(ca, cert, key)
		require.NoError(t, err)
		return cfg
	}
	// handshake is the TLS view of a refusal, which the etcd client only
	// reports as a deadline: with TLS 1.3 the server's alert arrives on the
	// first read after the handshake.
	handshake := func(t *testing.T, tlsCfg *tls.Config) error {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), tlsCfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	good := clientTLS(t, certs.CAFile, certs.ClientCert, certs.ClientKey)
	refused := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		require.True(t, errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded,
			"the request never gets through: %v", err)
	}
	// absent asserts that a refused client's write did not happen.
	absent := func(t *testing.T, key string) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: good})
		require.NoError(t, err)
		defer cli.Close()
		resp, err := cli.Get(ctx, key)
		require.NoError(t, err)
		require.Zero(t, resp.Count, "%s was written", key)
	}

	t.Run("certificate of the client CA", func(t *testing.T) {
		require.NoError(t, put(t, endpoint, good, "good"))
	})
	t.Run("no certificate", func(t *testing.T) {
		refused(t, put(t, endpoint, clientTLS(t, certs.CAFile, "", ""), "no-cert"))
		absent(t, "no-cert")
		require.ErrorContains(t, handshake(t, clientTLS(t, certs.CAFile, "", "")), "certificate required")
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		other := clientTLS(t, certs.CAFile, certs.OtherCert, certs.OtherKey)
		// Go's client would hold back a certificate the server's CA list
		// does not name; an attacker would not.
		cert := other.Certificates[0]
		other.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		refused(t, put(t, endpoint, other, "other-ca"))
		absent(t, "other-ca")
		require.ErrorContains(t, handshake(t, other), "unknown certificate authority")
	})
	t.Run("plain http", func(t *testing.T) {
		refused(t, put(t, fmt.Sprintf("http://127.0.0.1:%d", port), nil, "plain"))
		absent(t, "plain")
	})
}
