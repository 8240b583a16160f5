package bench

import (
	"os"
	"path/filepath"
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
	require.Contains(t, md, "| 3 x 500 | before (one unit at a time) | 2000 ms |")
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
