package fleetd

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEtcdKeysLoad(t *testing.T) {
	env := map[string]string{"FLEET_ETCD_PASSWORD": "s3cret-from-env"}
	c, err := LoadConfig([]string{
		"-etcd_servers", "https://10.0.0.1:2379,https://10.0.0.2:2379",
		"-etcd_cafile", "/etc/fleet/ca.pem", "-etcd_certfile", "/etc/fleet/etcd.pem", "-etcd_keyfile", "/etc/fleet/etcd-key.pem",
		"-etcd_username", "fleet",
		"-config", writeConf(t, "embedded_etcd_quota_bytes=1048576\nembedded_etcd_auto_compaction_retention=30m\n"),
	}, func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, "/etc/fleet/ca.pem", c.EtcdCAFile)
	require.Equal(t, "/etc/fleet/etcd.pem", c.EtcdCertFile)
	require.Equal(t, "/etc/fleet/etcd-key.pem", c.EtcdKeyFile)
	require.Equal(t, "fleet", c.EtcdUsername)
	require.Equal(t, "s3cret-from-env", string(c.EtcdPassword))
	require.Equal(t, int64(1<<20), c.EmbeddedEtcdQuotaBytes)
	require.Equal(t, 30*time.Minute, c.EmbeddedEtcdRetention)

	d := DefaultConfig()
	require.Equal(t, int64(2<<30), d.EmbeddedEtcdQuotaBytes, "the embedded etcd has a quota by default")
	require.Equal(t, time.Hour, d.EmbeddedEtcdRetention, "and compacts by default")
	require.NoError(t, d.validate(), "the defaults are valid")
}

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fleet.conf")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestEtcdKeysValidate(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		name string
		conf string
		want string // "" = valid
	}{
		{"https with system roots", "etcd_servers=https://etcd.example:2379\n", ""},
		{"https with client cert", "etcd_servers=https://10.0.0.1:2379\netcd_cafile=/ca.pem\netcd_certfile=/c.pem\netcd_keyfile=/k.pem\n", ""},
		{"cert without key", "etcd_servers=https://10.0.0.1:2379\netcd_certfile=/c.pem\n", "etcd_certfile and etcd_keyfile go together"},
		{"key without cert", "etcd_servers=https://10.0.0.1:2379\netcd_keyfile=/k.pem\n", "etcd_certfile and etcd_keyfile go together"},
		{"TLS files with http endpoint", "etcd_servers=https://10.0.0.1:2379,http://10.0.0.2:2379\netcd_cafile=/ca.pem\n", "http://10.0.0.2:2379 is http:// but etcd_cafile/etcd_certfile/etcd_keyfile are set"},
		{"mixed schemes", "etcd_servers=https://10.0.0.1:2379,http://10.0.0.2:2379\n", "mix plain (http://10.0.0.2:2379) and TLS (https://10.0.0.1:2379)"},
		{"bad scheme", "etcd_servers=ftp://10.0.0.1:2379\n", "scheme must be http or https"},
		{"user without password", "etcd_servers=https://10.0.0.1:2379\netcd_username=fleet\n", "etcd_username and etcd_password"},
		{"password without user", "etcd_servers=https://10.0.0.1:2379\netcd_password_file=/pw\n", "etcd_username and etcd_password"},
		{"password and file", "etcd_servers=https://10.0.0.1:2379\netcd_username=u\netcd_password=pw-value-1\netcd_password_file=/pw\n", "not both"},
		{"password over plain network", "etcd_servers=http://10.0.0.1:2379\netcd_username=u\netcd_password=pw-value-2\n", "clear text"},
		{"password over plain host:port", "etcd_servers=10.0.0.1:2379\netcd_username=u\netcd_password=pw-value-4\n", "clear text"},
		{"host:port with TLS keys", "etcd_servers=10.0.0.1:2379\netcd_cafile=/ca.pem\n", ""},
		{"password over plain loopback", "etcd_servers=http://127.0.0.1:2379\netcd_username=u\netcd_password=pw-value-3\n", ""},
		{"embedded default", "", ""},
		{"embedded beyond loopback without certs", "embedded_etcd_client_urls=http://0.0.0.0:2379\n",
			"set embedded_etcd_cert_file, embedded_etcd_key_file and embedded_etcd_client_ca_file"},
		{"embedded https without client CA", "embedded_etcd_client_urls=https://10.0.0.1:2379\nembedded_etcd_cert_file=/s.pem\nembedded_etcd_key_file=/s-key.pem\netcd_cafile=/ca.pem\n",
			"not loopback-only"},
		{"embedded plain peer beyond loopback", "embedded_etcd_peer_url=http://10.0.0.1:2380\n", "peer URL http://10.0.0.1:2380 is not loopback-only"},
		{"embedded https needs certs", "embedded_etcd_client_urls=https://127.0.0.1:2379\n", "no server certificate and key"},
		{"embedded certs need https", "embedded_etcd_cert_file=/s.pem\nembedded_etcd_key_file=/s-key.pem\netcd_cafile=/ca.pem\n", "use https://"},
		{"embedded secured, fleetd without client cert", "embedded_etcd_client_urls=https://0.0.0.0:2379\nembedded_etcd_cert_file=/s.pem\nembedded_etcd_key_file=/s-key.pem\nembedded_etcd_client_ca_file=/ca.pem\netcd_cafile=/ca.pem\n",
			"set etcd_certfile and etcd_keyfile to a client certificate signed by embedded_etcd_client_ca_file"},
		{"embedded secured, fleetd without CA", "embedded_etcd_client_urls=https://0.0.0.0:2379\nembedded_etcd_cert_file=/s.pem\nembedded_etcd_key_file=/s-key.pem\nembedded_etcd_client_ca_file=/ca.pem\netcd_certfile=/c.pem\netcd_keyfile=/k.pem\n",
			"set etcd_cafile"},
		{"embedded secured", "embedded_etcd_client_urls=https://0.0.0.0:2379\nembedded_etcd_peer_url=https://10.0.0.1:2380\nembedded_etcd_cert_file=/s.pem\nembedded_etcd_key_file=/s-key.pem\nembedded_etcd_client_ca_file=/ca.pem\netcd_cafile=/ca.pem\netcd_certfile=/c.pem\netcd_keyfile=/k.pem\n", ""},
		{"embedded plain with client TLS", "etcd_cafile=/ca.pem\n", "http://127.0.0.1:2379 is http://"},
		{"quota not positive", "embedded_etcd_quota_bytes=0\n", "embedded_etcd_quota_bytes (from config file"},
		{"quota not a number", "embedded_etcd_quota_bytes=2GiB\n", "embedded_etcd_quota_bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig([]string{"-config", writeConf(t, tc.conf)}, none)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrUsage)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "pw-value", "a password never reaches an error")
		})
	}
}

func TestEtcdPasswordNeverShown(t *testing.T) {
	_, err := LoadConfig([]string{"-etcd_password", "hunter2-flag"}, func(string) string { return "" })
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "use etcd_password_file or FLEET_ETCD_PASSWORD")
	require.NotContains(t, err.Error(), "hunter2-flag")

	// A line that is not key=value is not echoed: it may hold a password.
	_, err = LoadConfig([]string{"-config", writeConf(t, "etcd_password: hunter2-colon\n")}, func(string) string { return "" })
	require.ErrorContains(t, err, "line 1: not key=value")
	require.NotContains(t, err.Error(), "hunter2-colon")

	c := DefaultConfig()
	c.EtcdPassword = "hunter2-config"
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "password", c.EtcdPassword, "config", c)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", c, c, c, c.EtcdPassword)
	require.NotContains(t, out, "hunter2-config")
	require.Contains(t, out, redacted)
}

func TestEtcdCredentials(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "etcd-password")
	require.NoError(t, os.WriteFile(pwFile, []byte("from-the-file\n"), 0o600))

	c := DefaultConfig()
	c.EtcdServers, c.EtcdUsername, c.EtcdPasswordFile = []string{"http://127.0.0.1:2379"}, "fleet", pwFile
	tlsCfg, pw, err := c.etcdCredentials(c.etcdEndpoints())
	require.NoError(t, err)
	require.Nil(t, tlsCfg, "plain endpoints, no TLS keys: no TLS")
	require.Equal(t, "from-the-file", pw, "the trailing newline is not part of the password")

	c.EtcdPasswordFile = filepath.Join(dir, "missing")
	_, _, err = c.etcdCredentials(c.etcdEndpoints())
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "etcd_password_file")
	require.ErrorContains(t, err, filepath.Join(dir, "missing"))

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	c.EtcdPasswordFile = empty
	_, _, err = c.etcdCredentials(c.etcdEndpoints())
	require.ErrorContains(t, err, "is empty")

	c = DefaultConfig()
	c.EtcdServers = []string{"https://etcd.example:2379"}
	tlsCfg, _, err = c.etcdCredentials(c.etcdEndpoints())
	require.NoError(t, err)
	require.NotNil(t, tlsCfg)
	require.Nil(t, tlsCfg.RootCAs, "no etcd_cafile: the system's roots")

	c.EtcdCAFile = filepath.Join(dir, "no-ca.pem")
	_, _, err = c.etcdCredentials(c.etcdEndpoints())
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "no-ca.pem", "the error names the file")
}
