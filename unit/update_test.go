package unit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUpdatePolicy(t *testing.T) {
	for _, tc := range []struct {
		name, unit, text string
		want             UpdatePolicy
		err              string
	}{
		{name: "defaults", unit: "web@1.service", text: "[Service]\nExecStart=/bin/true\n",
			want: UpdatePolicy{MaxUnavailable: 1, MinHealthy: 10 * time.Second}},
		{name: "all", unit: "web@1.service",
			text: "[X-Fleet]\nUpdateMaxUnavailable=2\nUpdateMinHealthy=1min 30s\nUpdateAutoRevert=true\nHealthCheck=/bin/sh -c \"test -e /run/%i\"\n",
			want: UpdatePolicy{MaxUnavailable: 2, MinHealthy: 90 * time.Second, AutoRevert: true, HealthCheck: `/bin/sh -c "test -e /run/1"`}},
		{name: "url", unit: "web.service", text: "[X-Fleet]\nHealthCheck=http://127.0.0.1:8080/health\nUpdateMinHealthy=500ms\n",
			want: UpdatePolicy{MaxUnavailable: 1, MinHealthy: 500 * time.Millisecond, HealthCheck: "http://127.0.0.1:8080/health"}},
		{name: "zero unavailable", unit: "web.service", text: "[X-Fleet]\nUpdateMaxUnavailable=0\n", err: "UpdateMaxUnavailable"},
		{name: "bad span", unit: "web.service", text: "[X-Fleet]\nUpdateMinHealthy=soon\n", err: "not a time span"},
		// ParseFloat reads these; as Durations they would be negative.
		{name: "infinite span", unit: "web.service", text: "[X-Fleet]\nUpdateMinHealthy=inf\n", err: "not a usable time span"},
		{name: "nan span", unit: "web.service", text: "[X-Fleet]\nUpdateMinHealthy=NaN\n", err: "not a usable time span"},
		{name: "huge span", unit: "web.service", text: "[X-Fleet]\nUpdateMinHealthy=1e300s\n", err: "not a usable time span"},
		{name: "huge sum", unit: "web.service", text: "[X-Fleet]\nUpdateMinHealthy=9000000000s 9000000000s\n", err: "not a usable time span"},
		{name: "bad bool", unit: "web.service", text: "[X-Fleet]\nUpdateAutoRevert=maybe\n", err: "want true or false"},
		{name: "bad url", unit: "web.service", text: "[X-Fleet]\nHealthCheck=http://\n", err: "not a usable URL"},
		{name: "bad url with a password", unit: "web.service", text: "[X-Fleet]\nHealthCheck=http://ops:s3cret@/health\n", err: "not a usable URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseString(tc.text)
			require.NoError(t, err)
			got, err := f.UpdatePolicy(tc.unit)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), "s3cret", "a password in a URL never reaches an error text")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			// Placement ignores them, without warnings.
			_, warnings, err := f.FleetOptions(tc.unit)
			require.NoError(t, err)
			require.Empty(t, warnings)
		})
	}
}
