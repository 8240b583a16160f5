package etcdserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestCheck(t *testing.T) {
	const cert, key, ca = "/s.pem", "/s-key.pem", "/ca.pem"
	tests := []struct {
		name string
		cfg  etcdserver.Config
		want string // "" = accepted
	}{
		{"defaults", etcdserver.Config{}, ""},
		{"localhost", etcdserver.Config{ClientURLs: []string{"http://localhost:2379", "http://[::1]:2379"}}, ""},
		{"wildcard plain", etcdserver.Config{ClientURLs: []string{"http://0.0.0.0:2379"}}, "client URL http://0.0.0.0:2379 is not loopback-only"},
		{"ipv6 wildcard plain", etcdserver.Config{ClientURLs: []string{"http://[::]:2379"}}, "not loopback-only"},
		{"address plain", etcdserver.Config{ClientURLs: []string{"http://127.0.0.1:2379", "http://10.1.2.3:2379"}}, "http://10.1.2.3:2379 is not loopback-only"},
		{"name plain", etcdserver.Config{ClientURLs: []string{"http://etcd.example:2379"}}, "not loopback-only"},
		{"tls without client CA", etcdserver.Config{ClientURLs: []string{"https://0.0.0.0:2379"}, CertFile: cert, KeyFile: key}, "not loopback-only"},
		{"tls with client CA", etcdserver.Config{ClientURLs: []string{"https://0.0.0.0:2379"}, CertFile: cert, KeyFile: key, ClientCAFile: ca}, ""},
		{"plain peer beyond loopback", etcdserver.Config{PeerURL: "http://10.1.2.3:2380"}, "peer URL http://10.1.2.3:2380 is not loopback-only"},
		{"tls peer", etcdserver.Config{ClientURLs: []string{"https://10.1.2.3:2379"}, PeerURL: "https://10.1.2.3:2380", CertFile: cert, KeyFile: key, ClientCAFile: ca}, ""},
		{"https without cert", etcdserver.Config{ClientURLs: []string{"https://127.0.0.1:2379"}}, "no server certificate and key"},
		{"http next to https", etcdserver.Config{ClientURLs: []string{"https://0.0.0.0:2379", "http://127.0.0.1:2378"}, CertFile: cert, KeyFile: key, ClientCAFile: ca}, "client URL http://127.0.0.1:2378 is plain http"},
		{"cert without key", etcdserver.Config{CertFile: cert}, "both its certificate and its key"},
		{"client CA without cert", etcdserver.Config{ClientCAFile: ca}, "only with a server certificate"},
		{"no port", etcdserver.Config{ClientURLs: []string{"http://127.0.0.1"}}, "has no port"},
		{"bad scheme", etcdserver.Config{ClientURLs: []string{"unix:///run/etcd.sock"}}, "scheme must be http or https"},
		{"insecure allowed explicitly", etcdserver.Config{ClientURLs: []string{"http://10.1.2.3:2379"}, PeerURL: "http://10.1.2.3:2380", InsecureNonLoopback: true}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := etcdserver.Check(tc.cfg)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			if strings.Contains(tc.want, "not loopback-only") {
				require.ErrorIs(t, err, etcdserver.ErrInsecure)
			}
		})
	}
}

// An exposed member without certificates never starts, and never listens.
func TestStartRefusesExposedPlainMember(t *testing.T) {
	port := freePort(t)
	_, err := etcdserver.Start(context.Background(), etcdserver.Config{
		DataDir:    t.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://0.0.0.0:%d", port)},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		Fast:       true,
	})
	require.ErrorIs(t, err, etcdserver.ErrInsecure)
	require.ErrorContains(t, err, "must be https with a server certificate, key and a client CA")
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err, "nothing listens on the refused port")
	l.Close()
}

// Past QuotaBytes the member refuses writes with etcd's NOSPACE error, as
// it does at the default 2 GiB, instead of filling the disk.
func TestQuota(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:    t.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		QuotaBytes: 1 << 20,
		Fast:       true,
	})
	require.NoError(t, err)
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer cli.Close()

	// The quota is checked against the database as last committed (every
	// 100 ms), so write until the refusal comes rather than a fixed amount.
	value := strings.Repeat("x", 100<<10)
	i := 0
	require.Eventually(t, func() bool {
		i++
		_, err := cli.Put(ctx, fmt.Sprintf("k%d", i), value)
		return errors.Is(err, rpctypes.ErrNoSpace)
	}, 30*time.Second, 10*time.Millisecond, "100 KB values into a 1 MiB quota")
	require.Greater(t, i, 5, "the first writes fit")
	_, err = cli.Get(ctx, "k0")
	require.NoError(t, err, "reads still work")
}

// A member listening on a wildcard address is dialled on loopback.
func TestEndpointsOfWildcard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := freePort(t)
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:    t.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://0.0.0.0:%d", port)},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		// Plain on a wildcard is refused unless allowed; this test is about
		// the endpoints, and its traffic stays on loopback.
		InsecureNonLoopback: true,
		Fast:                true,
	})
	require.NoError(t, err)
	defer srv.Close()
	require.Equal(t, []string{fmt.Sprintf("http://127.0.0.1:%d", port)}, srv.Endpoints())
}

// Periodic auto-compaction drops history older than the retention: an old
// revision becomes ErrCompacted while the current data stays.
func TestAutoCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:                 t.TempDir(),
		ClientURLs:              []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
		PeerURL:                 fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		AutoCompactionRetention: time.Second,
		Fast:                    true,
	})
	require.NoError(t, err)
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer cli.Close()

	first, err := cli.Put(ctx, "k", "v0")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		// Keep writing: the compactor compacts to a revision it saw a
		// retention ago, so it needs revisions to move on.
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			return false
		}
		_, err := cli.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
		return err != nil && errors.Is(err, rpctypes.ErrCompacted)
	}, 45*time.Second, 100*time.Millisecond, "revision %d is compacted away", first.Header.Revision)
	got, err := cli.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(got.Kvs[0].Value))
}
