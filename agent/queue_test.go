package agent

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		want     time.Duration
	}{
		{name: "first retry", failures: 1, want: 100 * time.Millisecond},
		{name: "second", failures: 2, want: 200 * time.Millisecond},
		{name: "fifth", failures: 5, want: 1600 * time.Millisecond},
		{name: "capped", failures: 8, want: 10 * time.Second},
		{name: "far beyond the cap", failures: 1000, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, backoff(tt.failures))
		})
	}
}

func TestQueueCoalesces(t *testing.T) {
	q := newQueue()
	defer q.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 100 {
		q.add("b.service", "a.service")
	}
	names, ok := q.next(ctx)
	require.True(t, ok)
	require.Equal(t, []string{"a.service", "b.service"}, names, "each waiting name once, sorted")

	// Added again while being reconciled: waits for the next batch.
	q.add("a.service")
	names, ok = q.next(ctx)
	require.True(t, ok)
	require.Equal(t, []string{"a.service"}, names)

	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	_, ok = q.next(cctx)
	require.False(t, ok, "next returns when ctx ends")
}

func TestQueueRetry(t *testing.T) {
	q := newQueue()
	defer q.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	require.Equal(t, 100*time.Millisecond, q.retry("a.service"))
	require.Equal(t, 200*time.Millisecond, q.retry("a.service"), "a pending retry keeps its earlier time")
	start := time.Now()
	names, ok := q.next(ctx)
	require.True(t, ok)
	require.Equal(t, []string{"a.service"}, names)
	require.GreaterOrEqual(t, time.Since(start), 90*time.Millisecond)
	require.Less(t, time.Since(start), time.Second)

	q.forget("a.service")
	require.Equal(t, 100*time.Millisecond, q.retry("a.service"), "forget resets the backoff")

	q.stop()
	q.add("b.service")
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Empty(t, q.timers, "stop cancels delayed adds")
	require.Empty(t, q.waiting, "a stopped queue takes nothing")
}
