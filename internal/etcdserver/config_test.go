package etcdserver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
)

func TestEmbedConfigHygiene(t *testing.T) {
	ec, err := embedConfig(Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, int64(2<<30), ec.QuotaBackendBytes, "a quota by default")
	require.Equal(t, embed.CompactorModePeriodic, ec.AutoCompactionMode)
	require.Equal(t, "1h0m0s", ec.AutoCompactionRetention, "an hour of history by default")

	ec, err = embedConfig(Config{DataDir: t.TempDir(), QuotaBytes: 1 << 30, AutoCompactionRetention: 10 * time.Minute})
	require.NoError(t, err)
	require.Equal(t, int64(1<<30), ec.QuotaBackendBytes)
	require.Equal(t, "10m0s", ec.AutoCompactionRetention)

	ec, err = embedConfig(Config{DataDir: t.TempDir(), AutoCompactionRetention: -1})
	require.NoError(t, err)
	require.Equal(t, "0", ec.AutoCompactionRetention, "negative disables compaction")
}
