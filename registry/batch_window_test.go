package registry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTxnWindow follows the create window through fast, slow and refused
// transactions.
func TestTxnWindow(t *testing.T) {
	w := newTxnWindow()
	step := func(took time.Duration, overloaded bool) int {
		w.acquire()
		w.release(took, overloaded)
		require.Zero(t, w.inflight)
		return w.limit
	}
	require.Equal(t, createTxnsStart, w.limit)
	require.Equal(t, max(1, createTxnsStart/2), step(time.Second, false), "a slow transaction halves it")
	require.Equal(t, 1, step(time.Second, false), "never below one")
	require.Equal(t, min(createTxnsMax, 2), step(time.Millisecond, false), "a fast one grows it by one")
	require.Equal(t, min(createTxnsMax, 2), step(50*time.Millisecond, false), "one in between keeps it")
	require.Equal(t, 1, step(time.Millisecond, true), "too many requests drops it to one")
	for range 2 * createTxnsMax {
		step(0, false)
	}
	require.Equal(t, createTxnsMax, w.limit, "it stops growing at its bound")
}
