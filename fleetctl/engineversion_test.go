package fleetctl_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestResetEngineVersion: the recorded engine version is cleared while no
// engine leads; while one leads only with --force; never over the API.
func TestResetEngineVersion(t *testing.T) {
	h := newHarness(t, "etcd")
	r := h.run("reset-engine-version")
	require.NoError(t, r.err)
	require.Equal(t, "No engine version is recorded.\n", r.stdout)

	require.NoError(t, h.reg.SetEngineVersion(h.ctx, h.leadership(), "9.9.9", 0))
	r = h.run("reset-engine-version")
	require.Equal(t, 1, r.code, "an engine leads: refused")
	require.ErrorContains(t, r.err, "test-engine")
	require.ErrorContains(t, r.err, "--force")
	v, _, err := h.reg.EngineVersion(h.ctx)
	require.NoError(t, err)
	require.Equal(t, "9.9.9", v)

	r = h.run("reset-engine-version", "--force")
	require.NoError(t, r.err)
	require.Equal(t, "Cleared the cluster engine version 9.9.9; the next engine to lead records its own.\n", r.stdout)

	require.NoError(t, h.reg.SetEngineVersion(h.ctx, h.leadership(), "3146401", 0))
	require.NoError(t, h.leadership().Resign(h.ctx))
	r = h.run("reset-engine-version")
	require.NoError(t, r.err, "nobody leads: cleared without --force")
	require.Contains(t, r.stdout, "3146401")
	v, _, err = h.reg.EngineVersion(h.ctx)
	require.NoError(t, err)
	require.Empty(t, v)

	api := newHarness(t, "api")
	r = api.run("reset-engine-version")
	require.Equal(t, 2, r.code)
	require.ErrorContains(t, r.err, "--driver=etcd")
}
