package fleetd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoadConfigHygieneKeys(t *testing.T) {
	none := func(string) string { return "" }
	c, err := LoadConfig(nil, none)
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.MachineGCAfter)
	require.Equal(t, 5*time.Minute, c.EngineGCInterval)
	require.Equal(t, time.Minute, c.EngineBodyGrace)

	c, err = LoadConfig([]string{"-machine_gc_after", "72h", "-engine_gc_interval", "60", "-engine_body_grace", "5s"}, none)
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, c.MachineGCAfter)
	require.Equal(t, time.Minute, c.EngineGCInterval)
	require.Equal(t, 5*time.Second, c.EngineBodyGrace)

	for _, args := range [][]string{{"-engine_gc_interval", "0"}, {"-machine_gc_after", "0s"}, {"-engine_body_grace", "0"}} {
		_, err = LoadConfig(args, none)
		require.ErrorIs(t, err, ErrUsage, "%v", args)
		require.ErrorContains(t, err, "must be positive")
	}
}
