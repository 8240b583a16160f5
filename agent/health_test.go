package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRunHealthCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct{ check, want string }{
		{"true", "pass"},
		{"exit 3", "fail: exit status 3"},
		{"test -e /nonexistent-fleet-file", "fail: exit status 1"},
		{srv.URL + "/ok", "pass"},
		{srv.URL + "/bad", "fail: HTTP 500"},
		{"http://127.0.0.1:1/", "fail: request failed"},
	} {
		t.Run(tc.check, func(t *testing.T) {
			require.Equal(t, tc.want, runHealthCheck(context.Background(), tc.check))
		})
	}
}

func TestHealthOfFollowsTheBody(t *testing.T) {
	a := &Agent{}
	a.noteHealthCheck(&item{name: "web.service"}, "h1", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nHealthCheck=true\n")
	a.health.checks["web.service"] = healthCheck{hash: "h1", check: "true", result: "pass"}
	require.Equal(t, "pass", a.healthOf("web.service", "h1", "active"))
	require.Empty(t, a.healthOf("web.service", "h1", "activating"), "only an active copy has a health")
	require.Empty(t, a.healthOf("web.service", "h2", "active"), "a result belongs to the body it was taken for")
	a.noteHealthCheck(&item{name: "web.service"}, "h2", "[Service]\nExecStart=/bin/true\n")
	require.Empty(t, a.health.checks, "a body without a check forgets it")
}

// TestHealthCheckTimeoutKillsItsProcesses: a command check that outlives
// its timeout is killed with everything it started, or a check that hangs
// would leave one more process behind every healthInterval.
func TestHealthCheckTimeoutKillsItsProcesses(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := runHealthCheck(ctx, "sleep 1000 & echo $! > "+pidFile+"; wait")
	require.True(t, strings.HasPrefix(res, "fail: did not end within"), res)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	// SIGKILL wakes a sleeping process to die, so for a moment it may still
	// show as running (R); one that was not killed keeps sleeping (S).
	state := func() string {
		stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
		if err != nil {
			return "gone"
		}
		return strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))[0]
	}
	// A zombie (state Z) waits for a reaper only: it runs no more.
	var last string
	require.Eventually(t, func() bool { last = state(); return last == "Z" || last == "gone" }, 5*time.Second, 10*time.Millisecond,
		"the check's child still runs")
	require.Contains(t, []string{"Z", "gone"}, last)
}
