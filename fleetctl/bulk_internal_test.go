package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInOrder(t *testing.T) {
	const n = 200
	boom := errors.New("boom")
	tests := []struct {
		name      string
		keepGoing bool
		fail      map[int]bool
		wantErr   string
		// wantEmitted: all items but the failed ones (keepGoing), or at
		// least those before the first failure.
		wantAllOthers bool
	}{
		{name: "all succeed", wantAllOthers: true},
		{name: "keep going past failures", keepGoing: true, fail: map[int]bool{3: true, 150: true}, wantErr: "item 3: boom\nitem 150: boom", wantAllOthers: true},
		{name: "stop at the first failure", fail: map[int]bool{40: true, 41: true}, wantErr: "item 40: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inFlight, most atomic.Int32
			var emitted []int
			err := inOrder(context.Background(), n, tt.keepGoing, func(ctx context.Context, i int) error {
				now := inFlight.Add(1)
				defer inFlight.Add(-1)
				for {
					m := most.Load()
					if now <= m || most.CompareAndSwap(m, now) {
						break
					}
				}
				// Later items finish first: the order comes from inOrder.
				select {
				case <-time.After(time.Duration((n-i)%7) * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				if tt.fail[i] {
					return fmt.Errorf("item %d: %w", i, boom)
				}
				return nil
			}, func(i int) { emitted = append(emitted, i) })
			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, tt.wantErr)
				require.ErrorIs(t, err, boom)
			}
			require.LessOrEqual(t, most.Load(), int32(bulkWorkers))
			require.IsIncreasing(t, emitted)
			var want []int
			for i := range n {
				if !tt.fail[i] {
					want = append(want, i)
				}
			}
			if tt.wantAllOthers {
				require.Equal(t, want, emitted)
				return
			}
			first := 0
			for i := range n {
				if tt.fail[i] {
					first = i
					break
				}
			}
			require.Equal(t, want[:first], emitted[:first], "every item before the failure is reported")
			require.Less(t, len(emitted), n-1, "items after the failure are not all started")
		})
	}
}

func TestInOrderCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	err := inOrder(ctx, 100, true, func(ctx context.Context, i int) error {
		if started.Add(1) == 5 {
			cancel()
		}
		<-ctx.Done()
		return fmt.Errorf("item %d: %w", i, ctx.Err())
	}, func(int) { t.Error("nothing succeeded") })
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, started.Load(), int32(100), "no new item starts once ctx ended")
}
