package bench

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBulkMarkdown: the bulk section shows ours beside systemd alone with
// their ratio, the earlier fleetctl's row when measured, fleet v1.0's
// commands, and rewrites only its own section of BENCHMARKS.md.
func TestBulkMarkdown(t *testing.T) {
	r := &BulkResult{
		Runs: []BulkFigures{{
			Hosts: 3, Units: 500,
			StartFigures: StartFigures{Submit: 600 * time.Millisecond, Placed: 580 * time.Millisecond, Active: 6 * time.Second,
				Destroy: 400 * time.Millisecond, Gone: 2500 * time.Millisecond},
			Before:   &StartFigures{Submit: 2 * time.Second, Active: 8 * time.Second, Destroy: 3 * time.Second, Gone: 4 * time.Second},
			Baseline: 5 * time.Second, BaselineReload: time.Second, BaselineStart: 2 * time.Second,
			Split: []int{166, 167, 167}, Exec: 10 * time.Millisecond,
		}},
		FleetV1: []FleetV1Command{{Command: "fleetctl start /root/hello.service", Exit: 0, Took: time.Second, Output: "Unit hello.service launched | x"}},
	}
	md := BulkMarkdown(Env{Command: "fleet-bench -only bulk"}, r)
	require.Contains(t, md, "| 3 x 500 | this commit | 600 ms | 580 ms | 6000 ms | 5000 ms (1000 ms / 2000 ms) | 1.20x | 400 ms | 2500 ms | 166/167/167 | 10 ms |")
	require.Contains(t, md, "| 3 x 500 | before (the -before-fleetctl binary) | 2000 ms |")
	require.Contains(t, md, "start --no-block 17.5x faster than fleet v1.0's; all active within 1.20x of systemd alone")
	require.Contains(t, md, "| `fleetctl start /root/hello.service` | 0 | 1000 ms | Unit hello.service launched \\| x |")

	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	require.NoError(t, os.WriteFile(path, []byte("# Benchmarks\n\nkept\n"), 0o644))
	require.NoError(t, WriteSection(path, BulkSection, md))
	require.NoError(t, WriteSection(path, BulkSection, md)) // rewritten, not appended
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), "## Bulk work on real hosts"))
	require.Contains(t, string(b), "kept\n")
}

// TestCPUWindow: what each group of processes used between two snapshots:
// the first host's processes apart, the other hosts' summed with their
// count, a process new in the window whole, kernel threads renamed meanwhile
// by their difference, and this process's reaped children less fleetctl's
// own time, which is shown as fleetctl's.
func TestCPUWindow(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	a := cpuSnap{self: 1, children: ms(100), procs: map[int]procShare{
		1:  {comm: "fleet-bench", cpu: ms(1000)},
		10: {comm: "fleetd", host: "h1", cpu: ms(500)},
		20: {comm: "fleetd", host: "h2", cpu: ms(300)},
		30: {comm: "fleetd", host: "h3", cpu: ms(300)},
		40: {comm: "kworker/0:1-events", cpu: ms(900)},
		50: {comm: "systemd-journal", host: "h2", cpu: ms(70)},
	}}
	b := cpuSnap{self: 1, children: ms(160), procs: map[int]procShare{
		1:  {comm: "fleet-bench", cpu: ms(1040)},
		10: {comm: "fleetd", host: "h1", cpu: ms(530)},
		20: {comm: "fleetd", host: "h2", cpu: ms(320)},
		30: {comm: "fleetd", host: "h3", cpu: ms(315)},
		31: {comm: "sleep", host: "h3", cpu: ms(2)},
		40: {comm: "kworker/0:1-rcu_gp", cpu: ms(905)},
		50: {comm: "systemd-journal", host: "h2", cpu: ms(71)},
	}}
	got := cpuWindow(a, b, "h1", ms(20))
	require.True(t, slices.IsSortedFunc(got, func(x, y cpuShare) int { return cmp.Compare(y.CPU, x.CPU) }), "largest first: %v", got)
	byWho := map[string]time.Duration{}
	for _, s := range got {
		byWho[s.Who] = s.CPU
	}
	require.Equal(t, map[string]time.Duration{
		"fleet-bench (embedded etcd, observer, poller)":            ms(40),
		"fleet-bench's children (nsenter, the poller's systemctl)": ms(40),
		"fleetd other hosts (2)":                                   ms(35),
		"fleetd h1":                                                ms(30),
		"fleetctl h1":                                              ms(20),
		"machine: kworker/0:1-rcu_gp":                              ms(5),
		"sleep other hosts":                                        ms(2),
		"systemd-journal other hosts":                              ms(1),
	}, byWho)
	// Groups under 1% of the window's capacity (2 ms of 200) are left out.
	require.Equal(t, "173 ms of CPU in 100 ms wall on 2 cores; fleet-bench (embedded etcd, observer, poller) 40 ms; "+
		"fleet-bench's children (nsenter, the poller's systemctl) 40 ms; fleetd other hosts (2) 35 ms; fleetd h1 30 ms; "+
		"fleetctl h1 20 ms; machine: kworker/0:1-rcu_gp 5.00 ms; sleep other hosts 2.00 ms", cpuLine(got, ms(100), 2))
}
