package functional

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// requireRoot skips without root, except under CI=true where a missing
// real component is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("functional tests need root to boot systemd-nspawn hosts")
	}
	t.Skip("functional tests need root")
}

// bootCluster builds the binaries and boots n hosts running fleetd, with one
// dockerd shared by the hosts. With externalEtcd, every fleetd uses an etcd
// in the test process (so killing any host leaves etcd up); otherwise h1's
// fleetd runs its embedded etcd and the others use it. Host journals are
// printed if the test fails.
func bootCluster(t *testing.T, n int, externalEtcd bool, conf map[string]string) *platform.Cluster {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	binDir := t.TempDir()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.NoError(t, platform.BuildBinaries(ctx, root, binDir))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	opts := platform.Options{Hosts: hosts.Config{BinDir: binDir, Docker: true, Log: log}, N: n, Conf: conf}
	if externalEtcd {
		opts.EtcdDir = t.TempDir()
	}
	c, err := platform.Start(ctx, opts)
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				dumpJournals(t, c)
			}
			require.NoError(t, c.Close())
		})
	}
	require.NoError(t, err)
	t.Logf("%d hosts with fleetd up in %.1fs", n, time.Since(start).Seconds())
	require.NoError(t, c.BuildHelloImage(ctx, binDir))
	return c
}

func dumpJournals(t *testing.T, c *platform.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range c.Hosts() {
		out, _ := h.Exec(ctx, "journalctl", "-b", "--no-pager", "-q", "-u", "fleet.service", "-n", "200")
		fmt.Fprintf(os.Stderr, "===== journal of fleet.service on %s (%s)\n%s\n", h.Name, h.IP, out)
	}
}
