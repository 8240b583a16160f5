package hosts

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests need neither root nor systemd-nspawn.

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr string
	}{
		{
			name: "zero value",
			want: Config{WorkDir: DefaultWorkDir, Bridge: DefaultBridge, Subnet: DefaultSubnet},
		},
		{
			name: "explicit",
			cfg:  Config{WorkDir: "/tmp/x/", Bridge: "br1", Subnet: "10.1.2"},
			want: Config{WorkDir: "/tmp/x", Bridge: "br1", Subnet: "10.1.2"},
		},
		{name: "relative work dir", cfg: Config{WorkDir: "x"}, wantErr: "not an absolute path"},
		{name: "long bridge", cfg: Config{Bridge: "a-very-long-bridge"}, wantErr: "longer than 15"},
		{name: "bad subnet", cfg: Config{Subnet: "10.77.0.0"}, wantErr: "three IPv4 octets"},
		{name: "bad subnet octet", cfg: Config{Subnet: "10.77.300"}, wantErr: "three IPv4 octets"},
		{name: "missing bin dir", cfg: Config{BinDir: "/nonexistent/bin"}, wantErr: "BinDir"},
		{name: "two kinds of docker", cfg: Config{Docker: true, DockerInHost: true}, wantErr: "exclusive"},
		{name: "negative etcd", cfg: Config{Etcd: -1}, wantErr: "members"},
		{name: "too many etcd members", cfg: Config{Etcd: MaxEtcdMembers + 1}, wantErr: "members"},
		{
			name: "etcd and docker in hosts",
			cfg:  Config{Etcd: 3, DockerInHost: true},
			want: Config{WorkDir: DefaultWorkDir, Bridge: DefaultBridge, Subnet: DefaultSubnet, Etcd: 3, DockerInHost: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.withDefaults()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, got.Log)
			got.Log = nil
			require.Equal(t, tt.want, got)
		})
	}
}

func TestAddresses(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, "10.77.0.1", cfg.gatewayIP())
	require.Equal(t, "10.77.0.11", cfg.hostIP(1))
	require.Equal(t, "10.77.0.254", cfg.hostIP(MaxHosts))
	require.Equal(t, "10.77.0.2", cfg.etcdIP(1))
	require.Equal(t, "10.77.0.10", cfg.etcdIP(MaxEtcdMembers), "etcd members stay below the hosts")
	// md5("fleet-h1"), as `printf fleet-h1 | md5sum` prints it.
	require.Equal(t, "cfd7554ad139454b87b6d1f5612503f6", machineID("h1"))
	require.NotEqual(t, machineID("h1"), machineID("h2"))
}

func TestMirror(t *testing.T) {
	const deb822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`
	tests := []struct {
		name   string
		deb822 bool
		text   string
		want   string
	}{
		{name: "deb822", deb822: true, text: deb822, want: "http://deb.debian.org/debian"},
		{
			name: "deb822 security only", deb822: true,
			text: "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
			want: "",
		},
		{
			name: "deb822 disabled and deb-src", deb822: true,
			text: "Types: deb\nURIs: http://a/debian\nSuites: bookworm\nEnabled: no\n\n" +
				"Types: deb-src\nURIs: http://b/debian\nSuites: bookworm\n\n" +
				"Types: deb deb-src\nURIs: http://c/debian http://d/debian\nSuites: bookworm\n",
			want: "http://c/debian",
		},
		{
			name: "list",
			text: "# comment\ndeb-src http://src/debian bookworm main\n" +
				"deb http://security.debian.org/debian-security bookworm-security main\n" +
				"deb http://mirror.example/debian bookworm main contrib\n",
			want: "http://mirror.example/debian",
		},
		{
			name: "list with options",
			text: "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m/debian bookworm main\n",
			want: "http://m/debian",
		},
		{name: "list other suite", text: "deb http://m/debian bullseye main\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mirrorFromList([]byte(tt.text), "bookworm")
			if tt.deb822 {
				got = mirrorFromDeb822([]byte(tt.text), "bookworm")
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	require.Equal(t, "/a b\tc\\d", unescapeMountinfo(`/a\040b\011c\134d`))
	require.Equal(t, "/plain", unescapeMountinfo("/plain"))
	require.Equal(t, `/odd\04`, unescapeMountinfo(`/odd\04`))
}
