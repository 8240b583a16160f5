package fleetctl_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// sshEnv is the environment of a fleetctl user with the server's agent and
// a known hosts file that trusts the server.
func sshEnv(t *testing.T, s *sshServer) (map[string]string, string) {
	t.Helper()
	known := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte(s.knownHostsLine(s.hostKey.PublicKey())+"\n"), 0o600))
	return map[string]string{
		"SSH_AUTH_SOCK":             s.agentEnv,
		"FLEETCTL_KNOWN_HOSTS_FILE": known,
		"HOME":                      t.TempDir(), // no ~/.ssh keys of the real user
	}, known
}

func TestTunnel(t *testing.T) {
	s := newSSHServer(t)
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	env, _ := sshEnv(t, s)
	env["FLEETCTL_TUNNEL"] = s.addr

	// The fleetd socket on the far side, through `fleetctl fd-forward`.
	r := runFleetctl(h.ctx, env, "--endpoint", h.socket, "list-machines", "--no-legend")
	require.NoError(t, r.err)
	require.Equal(t, "113f16a7...\t10.0.0.3\t-\n", r.stdout)
	s.mu.Lock()
	require.Equal(t, "fleetctl fd-forward '"+strings.TrimPrefix(h.socket, "unix://")+"'", s.execs[0])
	s.mu.Unlock()

	// etcd, through a forwarded TCP connection.
	r = runFleetctl(h.ctx, env, "--driver", "etcd", "--endpoint", h.etcd, "--etcd-key-prefix", prefix, "list-machines", "--no-legend")
	require.NoError(t, r.err)
	require.Equal(t, "113f16a7...\t10.0.0.3\t-\n", r.stdout)
	s.mu.Lock()
	require.Contains(t, s.tunnels, strings.TrimPrefix(h.etcd, "http://"))
	s.mu.Unlock()

	s.mu.Lock()
	require.Equal(t, []string{"core", "core"}, s.users, "fleet's default --ssh-username")
	s.mu.Unlock()
	r = runFleetctl(h.ctx, env, "--ssh-username", "admin", "--endpoint", h.socket, "list-units")
	require.NoError(t, r.err)
	s.mu.Lock()
	require.Equal(t, "admin", s.users[2])
	s.mu.Unlock()

	// A host that accepts connections but never speaks SSH: bounded by
	// --ssh-timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	start := time.Now()
	r = runFleetctl(h.ctx, env, "--tunnel", silent.Addr().String(), "--ssh-timeout", "0.3", "--endpoint", h.socket, "list-units")
	require.Equal(t, fleetctl.ExitUnavailable, r.code, "err: %v", r.err)
	require.ErrorContains(t, r.err, "no connection within 300ms (raise --ssh-timeout)")
	require.Less(t, time.Since(start), 3*time.Second)

	// A bastion that cannot be reached is an unavailable error.
	env["FLEETCTL_TUNNEL"] = "127.0.0.1:1"
	r = runFleetctl(h.ctx, env, "--endpoint", h.socket, "list-units")
	require.Equal(t, fleetctl.ExitUnavailable, r.code, "err: %v", r.err)
	require.ErrorContains(t, r.err, "SSH to 127.0.0.1:1")
}

func TestKnownHosts(t *testing.T) {
	s := newSSHServer(t)
	h := newHarness(t, "api")
	env, _ := sshEnv(t, s)
	known := filepath.Join(t.TempDir(), "dir", "known_hosts")
	env["FLEETCTL_KNOWN_HOSTS_FILE"] = known
	args := []string{"--tunnel", s.addr, "--endpoint", h.socket, "list-units", "--no-legend"}

	// Unknown host, not confirmed: refused, nothing recorded.
	r := runFleetctlWith(h.ctx, env, []fleetctl.Option{fleetctl.WithStdin(strings.NewReader("no\n"))}, args...)
	require.Equal(t, fleetctl.ExitFailed, r.code, "err: %v", r.err)
	require.ErrorContains(t, r.err, "host key not confirmed for [127.0.0.1]:"+s.port())
	require.Contains(t, r.stderr, "The authenticity of host '[127.0.0.1]:"+s.port()+"' can't be established.\nssh-ed25519 key fingerprint is "+ssh.FingerprintSHA256(s.hostKey.PublicKey()))
	b, err := os.ReadFile(known)
	require.NoError(t, err)
	require.Empty(t, b)

	// Confirmed: recorded, and not asked again.
	r = runFleetctlWith(h.ctx, env, []fleetctl.Option{fleetctl.WithStdin(strings.NewReader("yes\n"))}, args...)
	require.NoError(t, r.err)
	require.Contains(t, r.stderr, "Permanently added")
	b, err = os.ReadFile(known)
	require.NoError(t, err)
	require.Contains(t, string(b), "[127.0.0.1]:"+s.port()+" ssh-ed25519 ")
	r = runFleetctl(h.ctx, env, args...)
	require.NoError(t, r.err)
	require.Empty(t, r.stderr)

	// Another key for the host: refused, loudly.
	_, other, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherSigner, err := ssh.NewSignerFromKey(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(known, []byte(s.knownHostsLine(otherSigner.PublicKey())+"\n"), 0o600))
	r = runFleetctl(h.ctx, env, args...)
	require.Equal(t, fleetctl.ExitFailed, r.code)
	require.ErrorContains(t, r.err, "REMOTE HOST IDENTIFICATION HAS CHANGED for [127.0.0.1]:"+s.port())
	require.ErrorContains(t, r.err, known+":1 holds another")

	// Unless checking is off.
	r = runFleetctl(h.ctx, env, append([]string{"--strict-host-key-checking=false"}, args...)...)
	require.NoError(t, r.err)

	// No key at all: a usage error saying what to set up.
	delete(env, "SSH_AUTH_SOCK")
	r = runFleetctl(h.ctx, env, args...)
	require.Equal(t, fleetctl.ExitUsage, r.code)
	require.ErrorContains(t, r.err, "no SSH key")
}

func TestSSHCommand(t *testing.T) {
	s := newSSHServer(t)
	h := newHarness(t, "api")
	h.addMachine(m1, "127.0.0.1", nil)
	h.addMachine(m2, "127.0.0.1", nil)
	h.addMachine("11aa0000000000000000000000000000", "127.0.0.1", nil)
	dir := t.TempDir()
	require.NoError(t, h.run("submit", writeUnit(t, dir, "hello.service", helloUnit)).err)
	h.place(m1, "hello.service", registry.StateLaunched)
	env, _ := sshEnv(t, s)
	run := func(args ...string) result {
		return runFleetctl(h.ctx, env, append([]string{"--endpoint", h.socket}, args...)...)
	}

	r := run("ssh", "--ssh-port", s.port(), "113f", "systemctl", "status", "-l", "hello")
	require.NoError(t, r.err)
	require.Equal(t, "ran: systemctl status -l hello\n", r.stdout, "flags after the machine belong to the command")
	r = run("ssh", "--ssh-port", s.port(), "hello", "exit 3")
	require.Equal(t, 3, r.code, "the remote command's status")
	require.Equal(t, "ran: exit 3\n", r.stdout)
	r = run("ssh", "--ssh-port", s.port(), "--unit", "hello.service", "true")
	require.NoError(t, r.err)
	r = run("ssh", "--ssh-port", s.port(), "--machine", m2)
	require.NoError(t, r.err)
	require.Equal(t, "shell\n", r.stdout)

	// Through a bastion, with the agent forwarded.
	r = run("--tunnel", s.addr, "ssh", "-A", "--ssh-port", s.port(), "8d5f", "id")
	require.NoError(t, r.err)
	require.Equal(t, "ran: id\n", r.stdout)
	s.mu.Lock()
	require.True(t, s.agentForwarded)
	require.Equal(t, 1, s.forwardedKeys, "the machine sees the forwarded agent's key")
	require.Contains(t, s.tunnels, "127.0.0.1:"+s.port())
	s.mu.Unlock()

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ssh"}, 2, "name a machine or a unit"},
		{[]string{"ssh", "--machine", "1", "--unit", "x"}, 2, "not both"},
		{[]string{"ssh", "--machine", ""}, 2, "name a machine or a unit"},
		{[]string{"ssh", "nope"}, 7, `no machine's ID starts with "nope"`},
		{[]string{"ssh", "--machine", "11"}, 2, `"11" is the start of several machine IDs`},
		{[]string{"ssh", "--unit", "nope"}, 7, "unit nope.service not found"},
	} {
		r := run(tt.args...)
		require.Equal(t, tt.code, r.code, "%v: %v", tt.args, r.err)
		require.ErrorContains(t, r.err, tt.want, "%v", tt.args)
	}
}

func TestFDForward(t *testing.T) {
	h := newHarness(t, "api")
	req := "GET /fleet/v1/machines HTTP/1.1\r\nHost: fleetd\r\nConnection: close\r\n\r\n"
	// Standard input stays open, as an SSH session's does until its client
	// is done; fleetd closes the connection after its answer.
	stdin := &openReader{data: []byte(req), done: make(chan struct{})}
	t.Cleanup(func() { close(stdin.done) })
	r := runFleetctlWith(h.ctx, nil, []fleetctl.Option{fleetctl.WithStdin(stdin)},
		"fd-forward", strings.TrimPrefix(h.socket, "unix://"))
	require.NoError(t, r.err)
	require.True(t, strings.HasPrefix(r.stdout, "HTTP/1.1 200 OK\r\n"), r.stdout)
	require.Contains(t, r.stdout, `{"machines":[]}`)

	r = runFleetctl(h.ctx, nil, "fd-forward", "/nonexistent.sock")
	require.Equal(t, fleetctl.ExitUnavailable, r.code)
}

// openReader returns data, then blocks until done is closed.
type openReader struct {
	data []byte
	done chan struct{}
}

func (r *openReader) Read(b []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(b, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	<-r.done
	return 0, io.EOF
}
