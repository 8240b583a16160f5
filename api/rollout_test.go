package api_test

import (
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestRolloutBadInput drives rollouts through the HTTP API: bad requests get
// a clear error and change nothing in etcd.
func TestRolloutBadInput(t *testing.T) {
	c := newCluster(t)
	logs := &logRecorder{}
	srv := serveTCP(t, api.NewServer(c.rc, api.WithLogger(slog.New(logs))))
	hc, err := api.NewHTTPClient(srv.URL, 0)
	require.NoError(t, err)
	rc := hc.(api.Rollouts)
	for _, n := range []string{"web@1.service", "web@2.service"} {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: n, Options: helloOpts, DesiredState: "launched"})
		require.NoError(t, err)
	}
	before, _, err := c.reg.Units(c.ctx)
	require.NoError(t, err)
	newBody := opts("Service", "ExecStart", "/bin/sleep 2000", "X-Fleet", "UpdateMinHealthy", "1s")

	for _, tc := range []struct {
		name string
		req  api.RolloutRequest
		kind error
		msg  string
	}{
		{"unknown unit", api.RolloutRequest{Target: "nope", Options: newBody}, api.ErrNotFound, "no submitted unit matches nope.service"},
		{"no match", api.RolloutRequest{Target: "db@*", Options: newBody}, api.ErrNotFound, "no submitted unit matches db@*.service"},
		{"template", api.RolloutRequest{Target: "web@", Options: newBody}, api.ErrInvalid, "roll out its instances"},
		{"body does not parse", api.RolloutRequest{Target: "web@*", Options: opts("Service", "", "x")}, api.ErrInvalid, "rollout of web@*.service"},
		{"bad policy", api.RolloutRequest{Target: "web@*", Options: opts("Service", "ExecStart", "/bin/true", "X-Fleet", "UpdateMaxUnavailable", "none")}, api.ErrInvalid, "UpdateMaxUnavailable"},
		{"same body", api.RolloutRequest{Target: "web@*", Options: helloOpts}, api.ErrConflict, "has this body already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rc.StartRollout(c.ctx, tc.req)
			require.ErrorIs(t, err, tc.kind)
			require.ErrorContains(t, err, tc.msg)
			after, _, err := c.reg.Units(c.ctx)
			require.NoError(t, err)
			require.Equal(t, before, after, "nothing changed")
		})
	}

	st, err := rc.StartRollout(c.ctx, api.RolloutRequest{Target: "web@*", Options: newBody})
	require.NoError(t, err)
	require.Equal(t, "web@*.service", st.ID)
	require.Equal(t, registry.RolloutRunning, st.Phase)
	require.Equal(t, 2, st.Total)
	require.Equal(t, "1s", st.MinHealthy)

	// A second rollout of a unit in it is refused, and so is replacing it.
	_, err = rc.StartRollout(c.ctx, api.RolloutRequest{Target: "web@2", Options: opts("Service", "ExecStart", "/bin/sleep 3000")})
	require.ErrorIs(t, err, api.ErrConflict)
	require.ErrorContains(t, err, "being rolled out already")
	var apiErr *api.Error
	require.True(t, errors.As(err, &apiErr))
	require.Equal(t, http.StatusConflict, apiErr.Code)
	_, err = hc.ReplaceUnit(c.ctx, &api.Unit{Name: "web@2.service", Options: helloOpts})
	require.ErrorIs(t, err, api.ErrConflict)

	// Status by the target or by one of its units; control actions.
	got, err := rc.Rollout(c.ctx, "web@2")
	require.NoError(t, err)
	require.Equal(t, st.ID, got.ID)
	got, err = rc.ControlRollout(c.ctx, "web@*", api.RolloutPause)
	require.NoError(t, err)
	require.True(t, got.Paused)
	_, err = rc.ControlRollout(c.ctx, "web@*", api.RolloutPause)
	require.ErrorIs(t, err, api.ErrConflict)
	got, err = rc.ControlRollout(c.ctx, "web@*", api.RolloutResume)
	require.NoError(t, err)
	require.False(t, got.Paused)
	got, err = rc.ControlRollout(c.ctx, "web@*", api.RolloutUndo)
	require.NoError(t, err)
	require.Equal(t, registry.RolloutReverting, got.Phase)
	_, err = rc.ControlRollout(c.ctx, "web@*", "explode")
	require.ErrorIs(t, err, api.ErrNotFound)
	_, err = rc.Rollout(c.ctx, "db.service")
	require.ErrorIs(t, err, api.ErrNotFound)

	// Every change went through the audit, refused ones included.
	actions := map[string][]string{}
	for _, r := range logs.withMsg("audit") {
		actions[r["action"]] = append(actions[r["action"]], r["status"])
	}
	require.Equal(t, []string{"201"}, actions["rollout.start"])
	require.Equal(t, []string{"200"}, actions["rollout.pause"])
	require.Equal(t, []string{"200"}, actions["rollout.undo"])
	require.Contains(t, actions["POST /fleet/v1/rollouts"], "409", "the second rollout, refused")
}
