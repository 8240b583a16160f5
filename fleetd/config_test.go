package fleetd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.conf")
	require.NoError(t, os.WriteFile(path, []byte(`# fleet.conf
etcd_servers=http://10.0.0.1:2379, http://10.0.0.2:2379
metadata="role=web,region=eu"
agent_ttl=7
public_ip=10.0.0.5
disable_engine=true
`), 0o644))
	env := map[string]string{"FLEET_PUBLIC_IP": "10.0.0.6", "FLEET_AGENT_TTL": "9s"}
	getenv := func(k string) string { return env[k] }

	c, err := LoadConfig([]string{"-config", path, "-agent_ttl", "4"}, getenv)
	require.NoError(t, err)
	require.Equal(t, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}, c.EtcdServers, "from the file")
	require.Equal(t, "role=web,region=eu", c.Metadata, "quotes are removed")
	require.Equal(t, "10.0.0.6", c.PublicIP, "the environment wins over the file")
	require.Equal(t, 4*time.Second, c.AgentTTL, "a flag wins over the environment")
	require.True(t, c.DisableEngine)
	require.Equal(t, "/run/fleet/units", c.UnitsDirectory, "defaults stay")
}

func TestLoadConfigErrors(t *testing.T) {
	none := func(string) string { return "" }
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.conf", len(body)))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing explicit file", []string{"-config", filepath.Join(dir, "nope.conf")}, nil, "nope.conf"},
		{"unknown key", []string{"-config", write("etcd_server=x\n")}, nil, `unknown key "etcd_server"`},
		{"not key=value", []string{"-config", write("hello\n")}, nil, "line 1"},
		{"bad duration names its source", nil, map[string]string{"FLEET_AGENT_TTL": "soon"}, "agent_ttl (from FLEET_AGENT_TTL)"},
		{"ttl below etcd minimum", []string{"-agent_ttl", "1"}, nil, "below etcd's minimum"},
		{"negative duration", []string{"-engine_leader_ttl", "-1"}, nil, `"-1" is negative`},
		{"NaN seconds", []string{"-engine_reconcile_interval", "NaN"}, nil, "out of range"},
		{"seconds beyond range", []string{"-etcd_request_timeout", "1e300"}, nil, "out of range"},
		{"unknown flag", []string{"-bogus"}, nil, "bogus"},
		{"stray argument", []string{"run"}, nil, `unexpected argument "run"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := none
			if tc.env != nil {
				getenv = func(k string) string { return tc.env[k] }
			}
			_, err := LoadConfig(tc.args, getenv)
			require.ErrorContains(t, err, tc.want)
			require.ErrorIs(t, err, ErrUsage)
		})
	}
}

func TestDescribeMachine(t *testing.T) {
	dir := t.TempDir()
	idFile := filepath.Join(dir, "machine-id")
	require.NoError(t, os.WriteFile(idFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o444))
	cfg := DefaultConfig()
	cfg.MachineIDFile, cfg.PublicIP, cfg.Metadata, cfg.APIListen = idFile, "10.1.2.3", "role=web", "0.0.0.0:49153"
	m, err := describeMachine(cfg, "v1")
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123456789abcdef", m.ID)
	require.Equal(t, map[string]string{"role": "web"}, m.Metadata)
	require.Equal(t, "http://10.1.2.3:49153", m.APIURL, "a wildcard listen address is advertised at the public IP")

	cfg.MachineID = "override"
	m, err = describeMachine(cfg, "v1")
	require.NoError(t, err)
	require.Equal(t, "override", m.ID)

	cfg.MachineID, cfg.MachineIDFile = "", filepath.Join(dir, "missing")
	_, err = describeMachine(cfg, "v1")
	require.ErrorContains(t, err, "set machine_id or machine_id_file")
}
