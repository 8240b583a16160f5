package fleetctl_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// sshServer is a test double of a cluster machine's sshd, on loopback. It
// accepts the keys of its agent, and:
//   - "exec fleetctl fd-forward SOCKET" connects the session to SOCKET, as
//     fleetctl on the machine would;
//   - any other exec prints "ran: <command>" and exits with status 3 for
//     "exit 3", else 0; a shell prints "shell";
//   - direct-tcpip channels (tunnels) are dialed and piped;
//   - with agent forwarding, it lists the forwarded agent's keys.
type sshServer struct {
	t        *testing.T
	addr     string
	hostKey  ssh.Signer
	agentEnv string // SSH_AUTH_SOCK of an agent holding the accepted key

	mu             sync.Mutex
	users          []string
	execs          []string
	tunnels        []string
	forwardedKeys  int
	agentForwarded bool
}

func newSSHServer(t *testing.T) *sshServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	_, userPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	userKey, err := ssh.NewSignerFromKey(userPriv)
	require.NoError(t, err)

	// An ssh-agent holding the user's key, on a unix socket.
	keyring := agent.NewKeyring()
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: userPriv}))
	dir, err := os.MkdirTemp("", "agent")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	al, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = al.Close() })
	go func() {
		for {
			c, err := al.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(keyring, c); _ = c.Close() }()
		}
	}()

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(userKey.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &sshServer{t: t, addr: l.Addr().String(), hostKey: hostKey, agentEnv: sock}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c, cfg)
			}()
		}
	}()
	return s
}

func (s *sshServer) port() string {
	_, p, _ := net.SplitHostPort(s.addr)
	return p
}

func (s *sshServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		_ = c.Close()
		return
	}
	defer conn.Close()
	s.mu.Lock()
	s.users = append(s.users, conn.User())
	s.mu.Unlock()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, reqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.session(conn, ch, reqs)
			}()
		case "direct-tcpip":
			host, port := parseDirectTCPIP(nc.ExtraData())
			addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
			target, err := net.Dial("tcp", addr)
			if err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				_ = target.Close()
				continue
			}
			s.mu.Lock()
			s.tunnels = append(s.tunnels, addr)
			s.mu.Unlock()
			go ssh.DiscardRequests(reqs)
			wg.Add(1)
			go func() {
				defer wg.Done()
				pipe(ch, target)
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "not supported")
		}
	}
}

// parseDirectTCPIP reads the host and port of a direct-tcpip channel
// (RFC 4254 7.2).
func parseDirectTCPIP(b []byte) (string, uint32) {
	n := binary.BigEndian.Uint32(b)
	host := string(b[4 : 4+n])
	return host, binary.BigEndian.Uint32(b[4+n:])
}

func pipe(ch ssh.Channel, c net.Conn) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(c, ch); done <- struct{}{} }()
	go func() { _, _ = io.Copy(ch, c); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = ch.Close()
	<-done
}

func (s *sshServer) session(conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	exit := func(code uint32) {
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
	}
	for req := range reqs {
		switch req.Type {
		case "auth-agent-req@openssh.com":
			s.mu.Lock()
			s.agentForwarded = true
			s.mu.Unlock()
			_ = req.Reply(true, nil)
		case "pty-req", "env":
			_ = req.Reply(true, nil)
		case "shell":
			_ = req.Reply(true, nil)
			_, _ = io.WriteString(ch, "shell\n")
			exit(0)
			return
		case "exec":
			var payload struct{ Command string }
			_ = ssh.Unmarshal(req.Payload, &payload)
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.execs = append(s.execs, payload.Command)
			agentWanted := s.agentForwarded
			s.mu.Unlock()
			if sock, ok := strings.CutPrefix(payload.Command, "fleetctl fd-forward "); ok {
				c, err := net.Dial("unix", strings.Trim(sock, "'"))
				if err != nil {
					exit(1)
					return
				}
				pipe(ch, c)
				return
			}
			if agentWanted {
				s.listForwardedKeys(conn)
			}
			_, _ = fmt.Fprintf(ch, "ran: %s\n", payload.Command)
			if payload.Command == "exit 3" {
				exit(3)
			} else {
				exit(0)
			}
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// listForwardedKeys asks the client's forwarded agent for its keys, as a
// program on the machine would.
func (s *sshServer) listForwardedKeys(conn *ssh.ServerConn) {
	ch, reqs, err := conn.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	keys, err := agent.NewClient(ch).List()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.forwardedKeys = len(keys)
	s.mu.Unlock()
}

// knownHostsLine is the known_hosts line of the server's host key.
func (s *sshServer) knownHostsLine(key ssh.PublicKey) string {
	return "[127.0.0.1]:" + s.port() + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}
