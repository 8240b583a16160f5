package fleetd

import (
	"errors"
	"reflect"
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
		require.True(t, ok, "key %s: no single Config field changes when it is set to any of boundField's probes; "+
			"if it takes a fixed set of words, name its Config field like the key or add a word to the probes, so fleet.conf(5) can show its default", f.key)
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

type level int

func (l level) String() string { return [...]string{"low", "high"}[l] }

func TestFormatDefaultUsesTheValuesOwnText(t *testing.T) {
	require.Equal(t, "high", formatDefault(reflect.ValueOf(level(1))))
	require.Equal(t, "a,b", formatDefault(reflect.ValueOf([]string{"a", "b"})))
	require.Equal(t, "1m30s", formatDefault(reflect.ValueOf(90*time.Second)))
}

// A key whose setter takes none of the probes (a fixed set of words) is
// found by its field's name.
func TestBoundFieldByName(t *testing.T) {
	refuse := func(*Config, string) error { return errors.New("want spread or binpack") }
	i, ok := boundField(field{key: "agent_ttl", set: refuse})
	require.True(t, ok)
	require.Equal(t, "AgentTTL", reflect.TypeOf(Config{}).Field(i).Name)
	_, ok = boundField(field{key: "no_such_key", set: refuse})
	require.False(t, ok)
}
