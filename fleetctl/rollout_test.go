package fleetctl_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

// TestUpdateAndRollout starts a rollout with fleetctl update and steers it
// with fleetctl rollout, on both drivers; bad input fails with a clear
// error and the right exit code.
func TestUpdateAndRollout(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			dir := t.TempDir()
			writeUnit(t, dir, "web@.service", "[Service]\nExecStart=/bin/sleep 1000\n")
			// Instances from the local template file.
			r := h.run("submit", filepath.Join(dir, "web@1.service"), filepath.Join(dir, "web@2.service"))
			require.NoError(t, r.err, r.stderr)
			next := writeUnit(t, dir, "new.service", "[Service]\nExecStart=/bin/sleep 2000\n[X-Fleet]\nUpdateMinHealthy=1s\nUpdateAutoRevert=true\n")

			r = h.run("update", "nope", "--file", next)
			require.Equal(t, fleetctl.ExitNotFound, r.code, r.stderr)
			require.ErrorContains(t, r.err, "no submitted unit matches nope.service")
			r = h.run("update", "web@*")
			require.Equal(t, fleetctl.ExitUsage, r.code)
			require.ErrorContains(t, r.err, "--file")
			bad := writeUnit(t, dir, "bad.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nUpdateMinHealthy=later\n")
			r = h.run("update", "web@*", "--file", bad)
			require.Equal(t, fleetctl.ExitUsage, r.code)
			require.ErrorContains(t, r.err, "UpdateMinHealthy")

			r = h.run("update", "web@*", "--file", next)
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "Rollout web@*.service: running, 0/2 copies healthy")
			require.Contains(t, r.stdout, "auto-revert")

			r = h.run("update", "web@2", "--file", next)
			require.Equal(t, fleetctl.ExitFailed, r.code)
			require.ErrorContains(t, r.err, "being rolled out already")

			r = h.run("rollout", "status", "web@1", "-o", "json")
			require.NoError(t, r.err, r.stderr)
			var st api.RolloutStatus
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
			require.Equal(t, "web@*.service", st.ID)
			require.Equal(t, 2, st.Total)
			require.Equal(t, "1s", st.MinHealthy)

			r = h.run("rollout", "pause", "web@*")
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "running (paused)")
			r = h.run("rollout", "pause", "web@*")
			require.Equal(t, fleetctl.ExitFailed, r.code)
			r = h.run("rollout", "resume", "web@*")
			require.NoError(t, r.err, r.stderr)
			r = h.run("rollout", "undo", "web@*")
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "reverting")
			r = h.run("rollout", "status")
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "web@*.service")
			r = h.run("rollout", "status", "db")
			require.Equal(t, fleetctl.ExitNotFound, r.code)

			// start --replace of a launched unit whose new file has an
			// update policy rolls it out instead of replacing it at once.
			app := writeUnit(t, dir, "app.service", "[Service]\nExecStart=/bin/sleep 1000\n")
			r = h.run("start", "--no-block", app)
			require.NoError(t, r.err, r.stderr)
			dir2 := t.TempDir()
			app2 := writeUnit(t, dir2, "app.service", "[Service]\nExecStart=/bin/sleep 2000\n[X-Fleet]\nUpdateMinHealthy=1s\n")
			r = h.run("start", "--no-block", "--replace", app2)
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stderr, "rolling update app.service started")
			r = h.run("rollout", "status", "app", "-o", "json")
			require.NoError(t, r.err, r.stderr)
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
			require.Equal(t, "app.service", st.ID)
			require.Equal(t, 1, st.Total)
		})
	}
}
