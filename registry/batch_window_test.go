package registry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTxnWindow follows the create window through fast, slow and refused
// transactions.
func TestTxnWindow(t *testing.T) {
	steps := []struct {
		name       string
		took       time.Duration
		overloaded bool
		want       int
	}{
		{"fast grows", time.Millisecond, false, createTxnsStart + 1},
		{"in between keeps", 50 * time.Millisecond, false, createTxnsStart + 1},
		{"slow halves", time.Second, false, (createTxnsStart + 1) / 2},
		{"slow again stays at one", time.Second, false, 1},
		{"fast grows again", time.Millisecond, false, 2},
		{"too many requests drops to one", time.Millisecond, true, 1},
	}
	w := newTxnWindow()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			w.acquire()
			w.release(s.took, s.overloaded)
			require.Equal(t, s.want, w.limit)
			require.Zero(t, w.inflight)
		})
	}
	for range 2 * createTxnsMax {
		w.acquire()
		w.release(0, false)
	}
	require.Equal(t, createTxnsMax, w.limit, "the window stops growing at its bound")
}
