package fleetd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
)

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fleetd's own client reaches its exposed embedded etcd on loopback, over
// TLS with etcd_certfile; the configuration is loaded as an operator
// writes it.
func TestOpenEtcdEmbeddedTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	port := freeLoopbackPort(t)
	conf := fmt.Sprintf(`embedded_etcd_dir=%s
embedded_etcd_client_urls=https://0.0.0.0:%d
embedded_etcd_peer_url=https://127.0.0.1:%d
embedded_etcd_cert_file=%s
embedded_etcd_key_file=%s
embedded_etcd_client_ca_file=%s
etcd_cafile=%s
etcd_certfile=%s
etcd_keyfile=%s
`, t.TempDir(), port, freeLoopbackPort(t), certs.ServerCert, certs.ServerKey, certs.CAFile, certs.CAFile, certs.ClientCert, certs.ClientKey)
	cfg, err := LoadConfig([]string{"-config", writeConf(t, conf)}, func(string) string { return "" })
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, closeEtcd, err := openEtcd(ctx, cfg, newMetrics().etcdInterceptor(), quietLog())
	require.NoError(t, err)
	defer closeEtcd()
	require.Equal(t, []string{fmt.Sprintf("https://127.0.0.1:%d", port)}, cli.Endpoints(), "fleetd dials its member on loopback")
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err)
}

// fleetd refuses to run an embedded etcd open to the network, naming the
// keys to set.
func TestOpenEtcdRefusesExposedPlainEmbedded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EmbeddedEtcdDir = t.TempDir()
	cfg.EmbeddedEtcdClientURLs = []string{fmt.Sprintf("http://0.0.0.0:%d", freeLoopbackPort(t))}
	require.Error(t, cfg.validate())
	_, _, err := openEtcd(context.Background(), cfg, newMetrics().etcdInterceptor(), quietLog())
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorIs(t, err, etcdserver.ErrInsecure)
	require.ErrorContains(t, err, "http://0.0.0.0")
}

// etcd_servers with TLS and etcd's own authentication: the password comes
// from etcd_password_file, and a wrong one is refused.
func TestOpenEtcdTLSAndPassword(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:      t.TempDir(),
		ClientURLs:   []string{fmt.Sprintf("https://127.0.0.1:%d", freeLoopbackPort(t))},
		PeerURL:      fmt.Sprintf("http://127.0.0.1:%d", freeLoopbackPort(t)),
		CertFile:     certs.ServerCert,
		KeyFile:      certs.ServerKey,
		ClientCAFile: certs.CAFile,
		Fast:         true,
	})
	require.NoError(t, err)
	defer srv.Close()

	cfg := DefaultConfig()
	cfg.EtcdServers = srv.Endpoints()
	cfg.EtcdCAFile, cfg.EtcdCertFile, cfg.EtcdKeyFile = certs.CAFile, certs.ClientCert, certs.ClientKey
	admin, closeAdmin, err := openEtcd(ctx, cfg, newMetrics().etcdInterceptor(), quietLog())
	require.NoError(t, err)
	defer closeAdmin()
	_, err = admin.UserAdd(ctx, "root", "root-password-1")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)

	pwFile := filepath.Join(t.TempDir(), "etcd-password")
	require.NoError(t, os.WriteFile(pwFile, []byte("root-password-1\n"), 0o600))
	cfg.EtcdUsername, cfg.EtcdPasswordFile = "root", pwFile
	require.NoError(t, cfg.validate())
	cli, closeEtcd, err := openEtcd(ctx, cfg, newMetrics().etcdInterceptor(), quietLog())
	require.NoError(t, err)
	defer closeEtcd()
	_, err = cli.Put(ctx, "k", "v")
	require.NoError(t, err, "the password from the file authenticates")

	require.NoError(t, os.WriteFile(pwFile, []byte("wrong-password-2\n"), 0o600))
	_, closeWrong, err := openEtcd(ctx, cfg, newMetrics().etcdInterceptor(), quietLog())
	if err == nil {
		closeWrong()
	}
	require.Error(t, err, "a wrong password is refused")
	require.NotContains(t, err.Error(), "wrong-password-2")
	require.ErrorContains(t, err, "authentication failed")
}
