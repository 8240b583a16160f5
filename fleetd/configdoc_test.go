package fleetd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConfigKeysDocumentEveryKey keeps the man pages whole: every key has
// help text and is bound to exactly one Config field (so its default can be
// shown), whoever adds it.
func TestConfigKeysDocumentEveryKey(t *testing.T) {
	keys := ConfigKeys()
	require.Len(t, keys, len(fields()))
	for _, f := range fields() {
		_, ok := boundField(f)
		require.True(t, ok, "key %s: no single Config field changes when it is set", f.key)
	}
	byKey := map[string]ConfigKey{}
	for _, k := range keys {
		require.NotEmpty(t, k.Help, "key %s has no help text", k.Key)
		byKey[k.Key] = k
	}
	for key, want := range map[string]string{
		"agent_ttl":                 "5s",
		"machine_gc_after":          "24h",
		"engine_gc_interval":        "5m",
		"embedded_etcd_client_urls": "http://127.0.0.1:2379",
		"api_socket":                "/var/run/fleet.sock",
		"disable_engine":            "false",
		"embedded_etcd_quota_bytes": "2147483648",
		"etcd_servers":              "",
		"etcd_password":             "", // a secret never shows
	} {
		require.Equal(t, want, byKey[key].Default, "default of %s", key)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", time.Second: "1s", 1500 * time.Millisecond: "1.5s", 5 * time.Minute: "5m",
		90 * time.Minute: "1h30m", 24 * time.Hour: "24h", time.Hour + time.Second: "1h0m1s",
	} {
		require.Equal(t, want, formatDuration(d))
	}
}
