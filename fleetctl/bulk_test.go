package fleetctl_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

// writeUnits writes n unit files bulk-<i>.service into a new directory and
// returns their paths.
func writeUnits(t *testing.T, n int) []string {
	t.Helper()
	dir := t.TempDir()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = writeUnit(t, dir, fmt.Sprintf("bulk-%03d.service", i), fmt.Sprintf("[Service]\nExecStart=/bin/sleep %d\n", 1000+i))
	}
	return paths
}

// TestBulkOrderAndErrors: a command over many units (more than are in
// flight at once) prints its lines in argument order, and a failing unit is
// reported with the exit code it has alone.
func TestBulkOrderAndErrors(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.3", nil)
			files := writeUnits(t, 100)
			r := h.run(append([]string{"start", "--no-block"}, files...)...)
			require.NoError(t, r.err)
			var want strings.Builder
			for i := range files {
				fmt.Fprintf(&want, "Triggered unit bulk-%03d.service start\n", i)
			}
			require.Equal(t, want.String(), r.stdout)

			// Blocking: every unit reported once it is active, the failing
			// one as failed, and the command fails as for one unit.
			h.fakeFleet("bulk-042.service")
			r = h.run(append([]string{"start"}, files...)...)
			require.Equal(t, fleetctl.ExitUnitFailed, r.code, r.stderr)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			require.Len(t, lines, 100)
			require.Contains(t, lines, "Unit bulk-042.service failed on 113f16a7.../10.0.0.3")
			require.Contains(t, lines, "Unit bulk-099.service launched on 113f16a7.../10.0.0.3")

			// A name among many that is not in the cluster: the others are
			// destroyed, it is reported, and the exit code says not found.
			names := []string{"bulk-000", "nope.service"}
			for i := 1; i < 100; i++ {
				names = append(names, fmt.Sprintf("bulk-%03d", i))
			}
			r = h.run(append([]string{"destroy"}, names...)...)
			require.Equal(t, fleetctl.ExitNotFound, r.code, r.err)
			require.ErrorContains(t, r.err, "nope.service")
			want.Reset()
			for i := range files {
				fmt.Fprintf(&want, "Destroyed bulk-%03d.service\n", i)
			}
			require.Equal(t, want.String(), r.stdout)
			r = h.run("list-unit-files", "--no-legend")
			require.NoError(t, r.err)
			require.Empty(t, r.stdout)
		})
	}
}

// TestBulkBadFileChangesNothing: a unit file that does not parse, anywhere
// among the arguments, is refused before any unit is submitted.
func TestBulkBadFileChangesNothing(t *testing.T) {
	h := newHarness(t, "api")
	files := writeUnits(t, 50)
	bad := writeUnit(t, filepath.Dir(files[0]), "bad.service", "[Service\nExecStart=/bin/true\n")
	r := h.run(append(append([]string{"start", "--no-block"}, files...), bad)...)
	require.Equal(t, fleetctl.ExitUsage, r.code, r.err)
	require.Empty(t, r.stdout)
	r = h.run("list-unit-files", "--no-legend")
	require.NoError(t, r.err)
	require.Empty(t, r.stdout)
}

// TestWaitWithoutEvents: a blocking start completes against a fleetd whose
// event stream is refused (an older fleetd), or cut in the middle of the
// wait: the wait then reads the units every interval.
func TestWaitWithoutEvents(t *testing.T) {
	for _, mode := range []string{"refused", "cut"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, "api")
			h.addMachine(m1, "10.0.0.3", nil)
			srv := api.NewServer(api.NewRegistryClient(h.reg))
			var streams atomic.Int32
			h.socket = serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/fleet/v1/events" {
					srv.ServeHTTP(w, r)
					return
				}
				streams.Add(1)
				if mode == "refused" {
					http.Error(w, `{"error":{"code":404,"message":"no such API resource"}}`, http.StatusNotFound)
					return
				}
				// Cut: the stream starts, then breaks at once.
				ctx, cancel := context.WithTimeout(r.Context(), 50*time.Millisecond)
				defer cancel()
				srv.ServeHTTP(w, r.WithContext(ctx))
			}))
			files := writeUnits(t, 20)
			h.fakeFleet()
			r := h.run(append([]string{"start"}, files...)...)
			require.NoError(t, r.err, r.stderr)
			require.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 20)
			require.Positive(t, streams.Load(), "fleetctl asked for the event stream")
		})
	}
}
