package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// etcdBin is Debian's etcd-server (3.4): a real etcd cluster, as an operator runs it, not the
// embedded one fleetd falls back to.
const etcdBin = "/usr/bin/etcd"

const (
	// etcdHeartbeat and etcdElection are the members' raft timings in milliseconds: ten times
	// faster than etcd's defaults, so a lost leader is replaced in about a second, and still loose
	// enough for two busy cores (every member on one machine, next to the hosts and the tests).
	etcdHeartbeat = "50"
	etcdElection  = "500"
	// etcdReadyTimeout bounds the wait for a cluster to elect a leader and serve.
	etcdReadyTimeout = time.Minute
)

// EtcdTLS holds the files of a TLS etcd cluster (Config.EtcdTLS), PEM, paths on the machine.
type EtcdTLS struct {
	// CAFile signs every member's and client's certificate; members trust only it.
	CAFile string
	// CertFile and KeyFile are every member's certificate, for clients and peers alike: it must
	// name every member's IP and be good for both server and client authentication.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are the certificate the harness itself uses to check the
	// members' health.
	ClientCertFile, ClientKeyFile string
}

func (t *EtcdTLS) check() error {
	for name, f := range map[string]string{"CAFile": t.CAFile, "CertFile": t.CertFile, "KeyFile": t.KeyFile,
		"ClientCertFile": t.ClientCertFile, "ClientKeyFile": t.ClientKeyFile} {
		if f == "" {
			return fmt.Errorf("hosts: EtcdTLS.%s is required", name)
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("hosts: EtcdTLS.%s: %w", name, err)
		}
	}
	return nil
}

// flags are etcd's flags for serving clients and peers with t.
func (t *EtcdTLS) flags() []string {
	return []string{
		"--cert-file", t.CertFile, "--key-file", t.KeyFile,
		"--client-cert-auth", "--trusted-ca-file", t.CAFile,
		"--peer-cert-file", t.CertFile, "--peer-key-file", t.KeyFile,
		"--peer-client-cert-auth", "--peer-trusted-ca-file", t.CAFile,
	}
}

// httpClient is a client of members served with t.
func (t *EtcdTLS) httpClient() (*http.Client, error) {
	cfg, err := pki.ClientConfig(t.CAFile, t.ClientCertFile, t.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("hosts: etcd client: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// MaxEtcdMembers is the largest Config.Etcd: member eI has address .(1+i), below the hosts' .11 up.
const MaxEtcdMembers = 9

// EtcdMember is one member of the etcd cluster a Cluster runs on the machine (Config.Etcd). It has an
// address of its own on the bridge, so hosts reach each member as they would an etcd on another
// machine, and tests can kill it, stop it and start it again with its data. Its methods are safe for
// concurrent use.
type EtcdMember struct {
	// Name is the member's name: "e1", "e2"...
	Name string
	// IP is the member's address on the bridge: Subnet.(1+i) for member eI.
	IP string
	// ClientURL is where the member serves clients: http://IP:2379.
	ClientURL string
	// PeerURL is where the member talks to its peers: http://IP:2380.
	PeerURL string

	initialCluster string // name=peerURL,... of every member
	tls            *EtcdTLS
	client         *http.Client // for Healthy and IsLeader
	dir            string       // WorkDir/state/eI: data/, etcd.log, etcd.pid
	log            *slog.Logger

	op   sync.Mutex // serializes Start, Stop and Kill
	mu   sync.Mutex
	proc *os.Process   // nil when the member is down
	done chan struct{} // closed once the current process exited and was reaped
}

// newEtcdMembers describes members e1..eN of cfg's cluster.
func newEtcdMembers(cfg Config, log *slog.Logger) ([]*EtcdMember, error) {
	ms := make([]*EtcdMember, cfg.Etcd)
	scheme, client := "http://", http.DefaultClient
	if cfg.EtcdTLS != nil {
		var err error
		if client, err = cfg.EtcdTLS.httpClient(); err != nil {
			return nil, err
		}
		scheme = "https://"
	}
	var peers []string
	for i := range ms {
		name := fmt.Sprintf("e%d", i+1)
		ip := cfg.etcdIP(i + 1)
		ms[i] = &EtcdMember{
			Name:      name,
			IP:        ip,
			ClientURL: scheme + net.JoinHostPort(ip, "2379"),
			PeerURL:   scheme + net.JoinHostPort(ip, "2380"),
			dir:       filepath.Join(cfg.stateDir(), name),
			log:       log.With("etcd", name),
			tls:       cfg.EtcdTLS,
			client:    client,
		}
		peers = append(peers, name+"="+ms[i].PeerURL)
	}
	for _, m := range ms {
		m.initialCluster = strings.Join(peers, ",")
	}
	return ms, nil
}

// Running reports whether the member's process runs.
func (m *EtcdMember) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc != nil
}

// LogPath returns the machine-side path of the member's log (etcd's own output, across restarts).
func (m *EtcdMember) LogPath() string { return filepath.Join(m.dir, "etcd.log") }

// Start starts the member if it is down, with the data it had: a member started before rejoins its
// cluster, a new one forms it with its peers. It returns once the member accepts client connections,
// which it does before it has a leader: see Cluster.WaitEtcd.
func (m *EtcdMember) Start(ctx context.Context) error {
	m.op.Lock()
	defer m.op.Unlock()
	if m.Running() {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(m.dir, "data"), 0o700); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	logf, err := os.OpenFile(m.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== fleet-hosts: starting %s at %s\n", m.Name, time.Now().Format(time.RFC3339Nano))
	// Flags, not ETCD_* variables: the environment is clean (commandInCgroups), and a data
	// directory that already holds a member makes etcd ignore the --initial-* flags.
	args := []string{
		"--name", m.Name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", m.initialCluster,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "fleet-hosts",
		"--heartbeat-interval", etcdHeartbeat,
		"--election-timeout", etcdElection,
		"--logger", "zap", "--log-outputs", "stderr",
	}
	if m.tls != nil {
		args = append(args, m.tls.flags()...)
	}
	cmd, err := commandInCgroups(cgroupDirs(m.Name), nil, etcdBin, args...)
	if err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.proc, m.done = cmd.Process, done
	m.mu.Unlock()
	go m.wait(cmd, done)
	if err := writePIDRecord(filepath.Join(m.dir, "etcd.pid"), cmd.Process.Pid); err != nil {
		return errors.Join(fmt.Errorf("start etcd %s: %w", m.Name, err), m.kill())
	}
	if err := m.waitListening(ctx, done); err != nil {
		return errors.Join(fmt.Errorf("start etcd %s: %w", m.Name, err), m.kill())
	}
	m.log.Info("etcd member started", "client", m.ClientURL)
	return nil
}

// waitListening waits until the member's client port accepts connections.
func (m *EtcdMember) waitListening(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, etcdReadyTimeout)
	defer cancel()
	addr := strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://")
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("etcd exited at start-up; end of %s:\n%s", m.LogPath(), tail(m.LogPath(), 2000))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w; end of %s:\n%s", addr, ctx.Err(), m.LogPath(), tail(m.LogPath(), 2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait reaps the member's process and forgets it.
func (m *EtcdMember) wait(cmd *exec.Cmd, done chan struct{}) {
	defer close(done)
	err := cmd.Wait()
	m.mu.Lock()
	m.proc = nil
	m.mu.Unlock()
	if rerr := os.Remove(filepath.Join(m.dir, "etcd.pid")); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		m.log.Warn("remove pid record", "err", rerr)
	}
	m.log.Debug("etcd exited", "err", err)
}

// Kill SIGKILLs the member, as a machine losing power would, and waits until it is gone. Its data
// stays; Start brings it back. Killing a member that is down does nothing.
func (m *EtcdMember) Kill() error {
	m.op.Lock()
	defer m.op.Unlock()
	return m.kill()
}

func (m *EtcdMember) kill() error {
	m.mu.Lock()
	proc, done := m.proc, m.done
	m.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = proc.Kill() // exited already is fine
	select {
	case <-done:
	case <-time.After(exitTimeout):
		return fmt.Errorf("kill etcd %s: still running after %s", m.Name, exitTimeout)
	}
	m.log.Info("etcd member killed")
	return nil
}

// Stop stops the member cleanly (SIGTERM) and waits until it is gone; if ctx ends first, it is
// killed and ctx's error returned. Stopping a member that is down does nothing.
func (m *EtcdMember) Stop(ctx context.Context) error {
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	proc, done := m.proc, m.done
	m.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = proc.Signal(syscall.SIGTERM) // exited already is fine
	select {
	case <-done:
		m.log.Info("etcd member stopped")
		return nil
	case <-ctx.Done():
		if err := m.kill(); err != nil {
			return fmt.Errorf("stop etcd %s: %w (then %v)", m.Name, ctx.Err(), err)
		}
		return fmt.Errorf("stop etcd %s: %w (killed)", m.Name, ctx.Err())
	}
}

// Healthy reports whether the member answers /health with true: it is part of a cluster that has a
// leader and serves requests.
func (m *EtcdMember) Healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// IsLeader reports whether the member says it leads its cluster.
func (m *EtcdMember) IsLeader(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.ClientURL+"/v3/maintenance/status", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Leader != "" && st.Leader == st.Header.MemberID
}

// Etcd returns the members of the cluster's etcd (Config.Etcd), e1 first; none without one.
func (c *Cluster) Etcd() []*EtcdMember { return c.etcd }

// EtcdEndpoints returns the client URLs of every etcd member, comma-separated: fleetd's etcd_servers.
// It is "" without Config.Etcd.
func (c *Cluster) EtcdEndpoints() string {
	urls := make([]string, len(c.etcd))
	for i, m := range c.etcd {
		urls[i] = m.ClientURL
	}
	return strings.Join(urls, ",")
}

// StartEtcd starts every member of the etcd cluster that is down and waits until all of them are
// healthy (WaitEtcd).
func (c *Cluster) StartEtcd(ctx context.Context) error {
	if len(c.etcd) == 0 {
		return ErrNoEtcd
	}
	errs := make([]error, len(c.etcd))
	var wg sync.WaitGroup
	for i, m := range c.etcd {
		wg.Go(func() { errs[i] = m.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitEtcd(ctx)
}

// StopEtcd stops every member of the etcd cluster at once, cleanly (SIGTERM, SIGKILL once ctx ends).
// A member with clients connected takes a few seconds: etcd lets them drain first.
func (c *Cluster) StopEtcd(ctx context.Context) error {
	if len(c.etcd) == 0 {
		return ErrNoEtcd
	}
	errs := make([]error, len(c.etcd))
	var wg sync.WaitGroup
	for i, m := range c.etcd {
		wg.Go(func() { errs[i] = m.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitEtcd waits until every running member of the etcd cluster is healthy, or ctx ends (or a
// minute passes). Members that are down are not waited for.
func (c *Cluster) WaitEtcd(ctx context.Context) error {
	if len(c.etcd) == 0 {
		return ErrNoEtcd
	}
	ctx, cancel := context.WithTimeout(ctx, etcdReadyTimeout)
	defer cancel()
	for {
		var sick []string
		for _, m := range c.etcd {
			if m.Running() && !m.Healthy(ctx) {
				sick = append(sick, m.Name)
			}
		}
		if len(sick) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for etcd members %v to be healthy: %w", sick, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
