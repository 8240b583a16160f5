// Package etcdtest starts a real embedded etcd for tests: one member on free
// loopback ports in a temporary directory, removed when the test ends.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
)

// Etcd is a running test member.
type Etcd struct {
	Server    *etcdserver.Server
	Endpoints []string
}

// Start starts a member for tb and stops it in tb.Cleanup.
func Start(tb testing.TB) *Etcd {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cport, pport := freePort(tb), freePort(tb)
	s, err := etcdserver.Start(ctx, etcdserver.Config{
		DataDir:    tb.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", cport)},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", pport),
		Fast:       true,
	})
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(s.Close)
	return &Etcd{Server: s, Endpoints: s.Endpoints()}
}

// Client returns a new client of e, closed in tb.Cleanup.
func (e *Etcd) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

// LeakOptions are the goleak options for a test package that starts etcd:
// etcd's embedded server and client leave process-wide goroutines behind
// that no test can stop. Use them as
// goleak.VerifyTestMain(m, etcdtest.LeakOptions()...).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
