package functional

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// The suite is a few groups of scenarios (TestCluster, TestHostFailures,
// TestEtcdFailures, TestDockerInHost, TestEmbeddedEtcd). Each group boots
// its hosts once, runs its scenarios one after another as subtests, each
// leaving the cluster as it found it (no units, every host up), and tears the
// hosts down. Groups run one after another: hosts are a machine-wide
// resource (internal/hosts holds a machine-wide lock).

// suiteTimeout bounds one group, waiting for the machine included.
const suiteTimeout = 15 * time.Minute

// unitsDir is where the fixtures are, inside every host.
const unitsDir = "/root/units"

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir) // best effort: a temporary directory
	}
	printFigures()
	os.Exit(code)
}

// binDir holds the binaries under test, built once for every group (see
// buildBinaries), removed by TestMain.
var binDir string

// buildBinaries builds fleetd, fleetctl and the hello payload from this
// module, once.
var buildBinaries = sync.OnceValue(func() error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if binDir, err = os.MkdirTemp("", "fleet-functional-bin"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return platform.BuildBinaries(ctx, root, binDir)
})

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

// etcdMode is where fleet's etcd runs.
type etcdMode int

const (
	// etcdCluster is a real three-member etcd cluster on the machine
	// (Debian's etcd-server), every fleetd pointed at all members.
	etcdCluster etcdMode = iota
	// etcdEmbedded is fleetd's own: h1 runs it, the others use it.
	etcdEmbedded
)

// dockerMode is how hosts run containers.
type dockerMode int

const (
	dockerShared dockerMode = iota // one dockerd on the machine for all hosts
	dockerInHost                   // a dockerd in every host: containers die with their host
)

// spec describes a group's cluster.
type spec struct {
	hosts  int
	etcd   etcdMode
	docker dockerMode
	// conf adds fleet.conf keys for every host.
	conf map[string]string
}

// env is a booted group: the cluster and what scenarios share.
type env struct {
	*platform.Cluster
	ctx   context.Context
	conf  map[string]string
	group string
	// quiet are hosts fleetctl and the API must not be used on: their
	// fleetd is down on purpose, or they are cut off.
	quiet map[*hosts.Host]bool
	// size is the number of running machines heal restores.
	size int
}

// boot builds the binaries (once) and boots a group's cluster: s.hosts
// hosts with fleetd installed from dist/, the fixtures in /root/units of
// every host, and fleet/hello:latest in Docker. Every host's logs are saved if the group
// fails (see saveLogs); the hosts go at the end of the group.
func boot(t *testing.T, s spec) *env {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
	t.Cleanup(cancel)
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, buildBinaries())
	built := time.Since(start)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hc := hosts.Config{BinDir: binDir, Log: log}
	switch s.docker {
	case dockerShared:
		hc.Docker = true
	case dockerInHost:
		hc.DockerInHost = true
	}
	opts := platform.Options{Hosts: hc, N: s.hosts, DistDir: filepath.Join(root, "dist"), Conf: s.conf}
	if s.etcd == etcdCluster {
		opts.Hosts.Etcd = 3
	}
	start = time.Now()
	c, err := platform.Start(ctx, opts)
	e := &env{Cluster: c, ctx: ctx, conf: s.conf, group: t.Name(), quiet: map[*hosts.Host]bool{}, size: s.hosts}
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				e.saveLogs(t)
			}
			require.NoError(t, c.Close())
		})
	}
	require.NoError(t, err)
	booted := time.Since(start)
	require.NoError(t, c.BuildHelloImage(ctx, binDir))
	for _, h := range c.Hosts() {
		e.copyFixtures(t, h)
	}
	t.Logf("binaries built in %.1fs; %d hosts with fleetd up in %.1fs (waiting for the machine included)",
		built.Seconds(), s.hosts, booted.Seconds())
	return e
}

// copyFixtures copies functional/fixtures/units into h's /root/units.
func (e *env) copyFixtures(t *testing.T, h *hosts.Host) {
	t.Helper()
	ents, err := os.ReadDir("fixtures/units")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(h.Path(unitsDir), 0o755))
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("fixtures/units", ent.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(h.Path(unitsDir+"/"+ent.Name()), b, 0o644))
	}
}

// addHost boots one more host with fleetd configured like the others and
// the fixtures, and waits until it is a machine of the cluster.
func (e *env) addHost(t *testing.T) *hosts.Host {
	t.Helper()
	h, err := e.AddHost(e.ctx)
	require.NoError(t, err)
	conf := e.FleetConf(h)
	maps.Copy(conf, e.conf)
	require.NoError(t, e.InstallFleet(e.ctx, h, conf))
	e.copyFixtures(t, h)
	return h
}

// saveLogs keeps the logs of every host of the group (killed ones too) in
// $FLEET_FUNCTIONAL_LOGS (default /var/lib/fleet-hosts/functional-logs)
// under <group>-<time>, and puts the end of each fleetd's journal in the
// test output. The ten most recent such directories are kept.
func (e *env) saveLogs(t *testing.T) {
	base := os.Getenv("FLEET_FUNCTIONAL_LOGS")
	if base == "" {
		base = filepath.Join(hosts.DefaultWorkDir, "functional-logs")
	}
	dir := filepath.Join(base, strings.ReplaceAll(e.group, "/", "_")+"-"+time.Now().UTC().Format("20060102T150405"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	summary, err := e.SaveLogs(ctx, dir)
	t.Logf("logs of every host kept in %s (err: %v)\n%s", dir, err, summary)
	old, _ := filepath.Glob(filepath.Join(base, "*"))
	slices.Sort(old) // by group, then time: prune per group
	byGroup := map[string][]string{}
	for _, d := range old {
		g := filepath.Base(d)
		g = g[:max(0, strings.LastIndex(g, "-"))]
		byGroup[g] = append(byGroup[g], d)
	}
	for _, ds := range byGroup {
		for len(ds) > 10 {
			_ = os.RemoveAll(ds[0]) // best effort
			ds = ds[1:]
		}
	}
}

// --- figures: what the scenarios measure, printed at the end of the run.

var (
	figuresMu sync.Mutex
	figures   []string
)

// figure records a measurement of the scenario t (also logged with -v).
func figure(t *testing.T, name string, d time.Duration, note string) {
	t.Helper()
	line := fmt.Sprintf("%-45s %7.2f s  %s\n    (%s)", name, d.Seconds(), note, t.Name())
	t.Logf("figure: %s %.2f s %s", name, d.Seconds(), note)
	figuresMu.Lock()
	figures = append(figures, line)
	figuresMu.Unlock()
}

// printFigures prints every figure of the run; with go test -v, or in the
// file $FLEET_FUNCTIONAL_FIGURES when it is set.
func printFigures() {
	figuresMu.Lock()
	defer figuresMu.Unlock()
	if len(figures) == 0 {
		return
	}
	text := "figures measured by the functional scenarios:\n" + strings.Join(figures, "\n") + "\n"
	fmt.Print(text)
	if p := os.Getenv("FLEET_FUNCTIONAL_FIGURES"); p != "" {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write figures: %v\n", err)
		}
	}
}
