package fleetctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshConn is an SSH connection to a machine, possibly made through the
// --tunnel bastion (closed with it).
type sshConn struct {
	client *ssh.Client
	via    *sshConn
	// agent is the local ssh-agent, if any (forwarded with -A).
	agent agent.ExtendedAgent
}

// Close closes the connection and the bastion connection under it.
func (s *sshConn) Close() error {
	err := s.client.Close()
	if s.via != nil {
		_ = s.via.Close() // the top connection's error is the one that matters
	}
	return err
}

// dial opens a connection from the remote machine to addr.
func (s *sshConn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.client.DialContext(ctx, network, addr)
}

// dialFleet reaches a fleetd through the remote machine: its unix socket by
// running `fleetctl fd-forward` there (as fleetctl always did, so no sshd
// socket forwarding is needed), a TCP address directly.
func (s *sshConn) dialFleet(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "unix" {
		return s.dial(ctx, network, addr)
	}
	sess, err := s.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open SSH session for fd-forward: %w", err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	if err := sess.Start("fleetctl fd-forward " + shellQuote(addr)); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("run fleetctl fd-forward on the tunnel host: %w", err)
	}
	return &sessionConn{sess: sess, r: stdout, w: stdin}, nil
}

// sessionConn is a net.Conn over an SSH session's standard input and
// output. Deadlines are not supported: requests are bounded by their ctx.
type sessionConn struct {
	sess *ssh.Session
	r    io.Reader
	w    io.WriteCloser
}

func (c *sessionConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *sessionConn) Write(b []byte) (int, error) { return c.w.Write(b) }

func (c *sessionConn) Close() error {
	_ = c.w.Close() // closing the session ends it either way
	return c.sess.Close()
}

func (c *sessionConn) LocalAddr() net.Addr              { return sessionAddr{} }
func (c *sessionConn) RemoteAddr() net.Addr             { return sessionAddr{} }
func (c *sessionConn) SetDeadline(time.Time) error      { return nil }
func (c *sessionConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sessionConn) SetWriteDeadline(time.Time) error { return nil }

type sessionAddr struct{}

func (sessionAddr) Network() string { return "ssh" }
func (sessionAddr) String() string  { return "fleetctl fd-forward" }

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// withPort adds port to a host without one.
func withPort(host string, port int) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
}

// dialTunnel connects to the --tunnel host.
func (a *app) dialTunnel(ctx context.Context) (*sshConn, error) {
	return a.dialSSH(ctx, withPort(a.tunnel, 22), nil)
}

// dialSSH connects to addr as --ssh-username, through via if not nil. The
// whole handshake is bounded by --ssh-timeout.
func (a *app) dialSSH(ctx context.Context, addr string, via *sshConn) (*sshConn, error) {
	cfg, ag, err := a.sshConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.sshTimeout))
	defer cancel()
	var conn net.Conn
	if via != nil {
		conn, err = via.dial(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, withCode(ExitUnavailable, fmt.Errorf("SSH to %s: %w", addr, err))
	}
	// The handshake does not take a ctx: a deadline on the connection
	// bounds it instead (it is a no-op on a tunnelled channel).
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.Close() // ends a handshake stuck on a tunnelled channel
		case <-done:
		}
	}()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		_ = conn.Close()
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) || errors.Is(err, errHostKeyRefused) {
			return nil, fmt.Errorf("SSH to %s: %w", addr, err)
		}
		var ne net.Error
		if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, withCode(ExitUnavailable, fmt.Errorf("SSH to %s: no connection within %s (raise --ssh-timeout)", addr, time.Duration(a.sshTimeout)))
		}
		return nil, fmt.Errorf("SSH to %s as %s: %w (is your key in ssh-agent, SSH_AUTH_SOCK set, and --ssh-username right?)", addr, a.sshUsername, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &sshConn{client: ssh.NewClient(c, chans, reqs), via: via, agent: ag}, nil
}

// errHostKeyRefused: the user did not confirm an unknown host key.
var errHostKeyRefused = errors.New("host key not confirmed")

// sshConfig builds the client configuration: keys from ssh-agent
// (SSH_AUTH_SOCK) and the usual key files, host keys checked against the
// known hosts file unless --strict-host-key-checking=false.
func (a *app) sshConfig() (*ssh.ClientConfig, agent.ExtendedAgent, error) {
	var methods []ssh.AuthMethod
	var ag agent.ExtendedAgent
	if sock := a.env("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to ssh-agent at SSH_AUTH_SOCK=%s: %w", sock, err)
		}
		ag = agent.NewClient(conn)
		methods = append(methods, ssh.PublicKeysCallback(ag.Signers))
	}
	if signers := a.keyFileSigners(); len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if len(methods) == 0 {
		return nil, nil, usageErrorf("no SSH key: start ssh-agent, add your key (ssh-add) and set SSH_AUTH_SOCK")
	}
	hostKeys := ssh.InsecureIgnoreHostKey() // #nosec: --strict-host-key-checking=false asks for it
	if a.strictHostKeys {
		hostKeys = a.checkHostKey
	}
	return &ssh.ClientConfig{
		User:            a.sshUsername,
		Auth:            methods,
		HostKeyCallback: hostKeys,
		Timeout:         time.Duration(a.sshTimeout),
	}, ag, nil
}

// keyFileSigners loads the unencrypted default key files of ~/.ssh.
func (a *app) keyFileSigners() []ssh.Signer {
	var out []ssh.Signer
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		b, err := os.ReadFile(a.homePath("$HOME/.ssh/" + name))
		if err != nil {
			continue
		}
		if s, err := ssh.ParsePrivateKey(b); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// checkHostKey verifies a host key against the known hosts file. An unknown
// host is added once the user confirms its fingerprint; a changed key is
// refused.
func (a *app) checkHostKey(hostname string, remote net.Addr, key ssh.PublicKey) error {
	file := a.homePath(a.knownHostsFile)
	host := knownhosts.Normalize(hostname) // as known_hosts and ssh write it
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("known hosts file %s: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts file %s: %w", file, err)
	}
	_ = f.Close() // created if missing; knownhosts reads it itself
	check, err := knownhosts.New(file)
	if err != nil {
		return fmt.Errorf("known hosts file %s: %w", file, err)
	}
	err = check(hostname, remote, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ke):
		return err
	case len(ke.Want) > 0:
		return fmt.Errorf("REMOTE HOST IDENTIFICATION HAS CHANGED for %s: its %s key is %s, but %s:%d holds another; someone may be intercepting the connection. If the host was reinstalled, remove that line",
			host, key.Type(), ssh.FingerprintSHA256(key), ke.Want[0].Filename, ke.Want[0].Line)
	}
	fmt.Fprintf(a.stderr, "The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)? ",
		host, key.Type(), ssh.FingerprintSHA256(key))
	answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(answer)) != "yes" {
		fmt.Fprintln(a.stderr)
		return fmt.Errorf("%w for %s: add it to %s or pass --strict-host-key-checking=false", errHostKeyRefused, host, file)
	}
	line := knownhosts.Line([]string{host}, key)
	af, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts file %s: %w", file, err)
	}
	defer af.Close()
	if _, err := fmt.Fprintln(af, line); err != nil {
		return fmt.Errorf("known hosts file %s: %w", file, err)
	}
	fmt.Fprintf(a.stderr, "Warning: Permanently added '%s' (%s) to the list of known hosts.\n", host, key.Type())
	return nil
}
