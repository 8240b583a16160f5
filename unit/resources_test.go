package unit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCPU(t *testing.T) {
	for in, want := range map[string]int64{"0.5": 500, "2": 2000, "150%": 1500, " 0.001 ": 1, "0": 0} {
		got, err := ParseCPU(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	// An amount past int64 millicores would wrap to a negative demand,
	// which adds capacity to the machine it is placed on.
	for _, in := range []string{"", "-1", "inf", "NaN", "two", "1e300", "1e20%"} {
		_, err := ParseCPU(in)
		require.ErrorContains(t, err, "is not a CPU amount", in)
	}
}
