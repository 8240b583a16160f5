package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLeaseClock(t *testing.T) {
	renewed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		ttl         time.Duration
		since       time.Duration // from the last renewal to now
		wantDoubt   bool
		wantRecheck time.Duration
	}{
		{"just renewed", 5 * time.Second, 0, false, 2500 * time.Millisecond},
		{"one renewal late (every TTL/6)", 5 * time.Second, 1700 * time.Millisecond, false, 800 * time.Millisecond},
		{"just before half the TTL", 5 * time.Second, 2499 * time.Millisecond, false, time.Millisecond},
		{"half the TTL: in doubt", 5 * time.Second, 2500 * time.Millisecond, true, doubtPoll},
		{"the lease may have expired", 5 * time.Second, 6 * time.Second, true, doubtPoll},
		{"etcd's minimum TTL", 2 * time.Second, time.Second, true, doubtPoll},
		{"odd TTL: doubt at the later half", 3 * time.Second, 1499 * time.Millisecond, false, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := renewed.Add(tt.since)
			c := leaseClock{now: func() time.Time { return now }, poll: doubtPoll}
			doubt, recheck := c.check(renewed, tt.ttl)
			require.Equal(t, tt.wantDoubt, doubt)
			require.Equal(t, tt.wantRecheck, recheck)
		})
	}
}

// TestLeaseClockNeverOverlaps checks the argument of lease.go over a range
// of TTLs and renewal delays: the agent is in doubt (and stops its
// at-most-once units) at least TTL/2 before the lease can expire, so at
// least TTL/2 + margin before the engine may place them elsewhere.
func TestLeaseClockNeverOverlaps(t *testing.T) {
	const margin = 2 * time.Second
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ttl := range []time.Duration{2 * time.Second, 3 * time.Second, 5 * time.Second, 30 * time.Second} {
		for _, transit := range []time.Duration{0, time.Millisecond, 500 * time.Millisecond} {
			// etcd restarts the TTL when the keepalive arrives, transit
			// after it was sent; the engine sees the expiry no earlier.
			expiry := sent.Add(transit + ttl)
			releaseAt := expiry.Add(margin)
			// The first instant the agent is in doubt.
			var doubtAt time.Time
			for at := sent; at.Before(expiry.Add(time.Second)); at = at.Add(time.Millisecond) {
				c := leaseClock{now: func() time.Time { return at }, poll: doubtPoll}
				if d, _ := c.check(sent, ttl); d {
					doubtAt = at
					break
				}
			}
			require.False(t, doubtAt.IsZero(), "TTL %s: never in doubt", ttl)
			require.LessOrEqual(t, doubtAt.Add(ttl/2+margin), releaseAt, "TTL %s, transit %s: the stop gets TTL/2 + margin", ttl, transit)
		}
	}
}

func TestAtMostOnceHere(t *testing.T) {
	const self = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, xfleet   string
		clusterDefault bool
		want           bool
	}{
		{"AtMostOnce=true", "AtMostOnce=true", false, true},
		{"not set, default off", "", false, false},
		{"not set, default on", "", true, true},
		{"AtMostOnce=false wins over the default", "AtMostOnce=false", true, false},
		{"global units never are", "Global=true\nAtMostOnce=true", true, false},
		{"pinned here: runs nowhere else", "MachineID=" + self + "\nAtMostOnce=true", false, false},
		{"pinned here by the short ID", "MachineID=01234567\nAtMostOnce=true", true, false},
		{"pinned elsewhere", "MachineID=fedcba98\nAtMostOnce=true", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{machine: self, atMostOnceDefault: tt.clusterDefault, amo: map[string]amoEntry{}}
			it := &item{name: "db.service", log: slog.New(slog.DiscardHandler)}
			body := "[Service]\nExecStart=/bin/true\n"
			if tt.xfleet != "" {
				body += "[X-Fleet]\n" + tt.xfleet + "\n"
			}
			require.Equal(t, tt.want, a.atMostOnce(it, "h1", body))
			require.Equal(t, tt.want, a.atMostOnce(it, "h1", "not read again: cached by hash"))
		})
	}
}
