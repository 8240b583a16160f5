// Package etcdserver runs a single-member etcd inside the process (etcd's
// server/v3/embed), for fleetd's one-command mode and for tests.
//
// A member reachable from other machines is a member anyone on the network
// could write units to, and a unit runs as root. So when a client URL is not
// loopback-only, Start insists on https with client certificates verified
// against ClientCAFile, and refuses to start otherwise.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// Defaults of the backend quota and of the history kept by auto-compaction.
const (
	DefaultQuotaBytes              = 2 << 30
	DefaultAutoCompactionRetention = time.Hour
)

// ErrInsecure is returned by Check and Start for a member other machines
// could reach without TLS and client certificates.
var ErrInsecure = errors.New("embedded etcd is reachable beyond loopback without TLS client authentication")

// Config describes the embedded member.
type Config struct {
	Name       string   // member name; default "default"
	DataDir    string   // required
	ClientURLs []string // default http://127.0.0.1:2379 (loopback only)
	PeerURL    string   // default http://127.0.0.1:2380

	// CertFile and KeyFile are the member's server certificate, served on
	// every https client URL and, when the peer URL is https, on the peer
	// URL too (there it also acts as the client certificate towards other
	// members, so it needs both the server and client key usages).
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the member require a client certificate
	// signed by it on every https URL.
	ClientCAFile string

	// QuotaBytes caps the backend database; beyond it etcd raises its
	// NOSPACE alarm and accepts only reads and deletes. 0 means
	// DefaultQuotaBytes.
	QuotaBytes int64
	// AutoCompactionRetention is how much history periodic compaction
	// keeps: watches that fall further behind must re-list. 0 means
	// DefaultAutoCompactionRetention; negative disables compaction.
	AutoCompactionRetention time.Duration

	// InsecureNonLoopback allows plain or unauthenticated client URLs that
	// are not loopback-only: for private test networks only.
	InsecureNonLoopback bool
	// Fast makes elections and heartbeats 10x faster than etcd's defaults
	// and skips fsync: for tests only.
	Fast bool
}

// Server is a running embedded etcd member.
type Server struct {
	etcd *embed.Etcd
	urls []string
}

// Check reports whether cfg is one Start accepts: URLs that parse, https
// exactly when certificates are given, and client certificates required on
// any client URL that is not loopback-only. Errors for an exposed member
// wrap ErrInsecure.
func Check(cfg Config) error {
	cfg = withDefaults(cfg)
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return fmt.Errorf("embedded etcd: a server certificate needs both its certificate and its key file")
	}
	if cfg.ClientCAFile != "" && cfg.CertFile == "" {
		return fmt.Errorf("embedded etcd: client certificates can be required only with a server certificate and key")
	}
	tlsOn := cfg.CertFile != ""
	for i, s := range append(append([]string(nil), cfg.ClientURLs...), cfg.PeerURL) {
		u, err := parseURL(s)
		if err != nil {
			return err
		}
		switch {
		case u.Scheme == "https" && !tlsOn:
			return fmt.Errorf("embedded etcd: %s is https but no server certificate and key are given", s)
		case u.Scheme == "http" && tlsOn && i < len(cfg.ClientURLs):
			// etcd would serve this URL in plain text next to the TLS
			// ones, open to every local user; with certificates, clients
			// use TLS everywhere. (A loopback peer URL may stay http: no
			// client talks to it and a single member has no peers.)
			return fmt.Errorf("embedded etcd: client URL %s is plain http although a server certificate is given: use https://", s)
		}
	}
	if cfg.InsecureNonLoopback {
		return nil
	}
	for _, s := range cfg.ClientURLs {
		if IsLoopbackURL(s) {
			continue
		}
		if !tlsOn || cfg.ClientCAFile == "" {
			return fmt.Errorf("%w: client URL %s is not loopback-only, so it must be https with a server certificate, key and a client CA whose certificates clients must present", ErrInsecure, s)
		}
	}
	if !IsLoopbackURL(cfg.PeerURL) && (!tlsOn || cfg.ClientCAFile == "") {
		return fmt.Errorf("%w: peer URL %s is not loopback-only, so it must be https with a server certificate, key and a client CA", ErrInsecure, cfg.PeerURL)
	}
	return nil
}

// IsLoopbackURL reports whether only this machine can reach the URL: its
// host is localhost or a loopback IP. A wildcard (0.0.0.0, ::, empty) or any
// other name listens beyond the machine.
func IsLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func withDefaults(cfg Config) Config {
	if len(cfg.ClientURLs) == 0 {
		cfg.ClientURLs = []string{"http://127.0.0.1:2379"}
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "http://127.0.0.1:2380"
	}
	if cfg.QuotaBytes == 0 {
		cfg.QuotaBytes = DefaultQuotaBytes
	}
	if cfg.AutoCompactionRetention == 0 {
		cfg.AutoCompactionRetention = DefaultAutoCompactionRetention
	}
	return cfg
}

// embedConfig translates cfg into etcd's configuration.
func embedConfig(cfg Config) (*embed.Config, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("embedded etcd: data directory is required")
	}
	if err := Check(cfg); err != nil {
		return nil, err
	}
	cfg = withDefaults(cfg)
	if cfg.CertFile != "" {
		// etcd reports a bad certificate as a failed handshake per
		// connection; load it here so the error names the file and an
		// expired certificate stops the start.
		if _, err := pki.ServerConfig(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile, cfg.ClientCAFile != ""); err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
	}
	ec := embed.NewConfig()
	if cfg.Name != "" {
		ec.Name = cfg.Name
	}
	ec.Dir = cfg.DataDir
	// etcd logs shutdown races at error level; fleetd reports what matters.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	curls, err := parseURLs(cfg.ClientURLs)
	if err != nil {
		return nil, err
	}
	purls, err := parseURLs([]string{cfg.PeerURL})
	if err != nil {
		return nil, err
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = curls, curls
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = purls, purls
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.CertFile != "" {
		tlsInfo := transport.TLSInfo{
			CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
			TrustedCAFile: cfg.ClientCAFile, ClientCertAuth: cfg.ClientCAFile != "",
		}
		ec.ClientTLSInfo = tlsInfo
		if purls[0].Scheme == "https" {
			ec.PeerTLSInfo = tlsInfo
		}
	}
	ec.QuotaBackendBytes = cfg.QuotaBytes
	if cfg.AutoCompactionRetention > 0 {
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	} else {
		ec.AutoCompactionRetention = "0"
	}
	if cfg.Fast {
		ec.TickMs, ec.ElectionMs = 10, 100
		ec.UnsafeNoFsync = true
	}
	return ec, nil
}

// Start starts the member and blocks until it serves clients, ctx ends, or
// 60 s pass. It refuses a configuration Check refuses.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	ec, err := embedConfig(cfg)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", ctx.Err())
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: not ready after 60s")
	}
	return &Server{etcd: e, urls: dialable(withDefaults(cfg).ClientURLs)}, nil
}

// Endpoints returns the client URLs to dial from this machine: a wildcard
// listen address is dialled on loopback, so a server certificate for a
// member listening on 0.0.0.0 needs 127.0.0.1 among its addresses.
func (s *Server) Endpoints() []string { return s.urls }

// Err returns a channel that receives a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member gracefully.
func (s *Server) Close() { s.etcd.Close() }

func dialable(urls []string) []string {
	out := make([]string, 0, len(urls))
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "" || (ip != nil && ip.IsUnspecified()) {
			loop := "127.0.0.1"
			if ip != nil && ip.To4() == nil {
				loop = "::1"
			}
			u.Host = net.JoinHostPort(loop, u.Port())
		}
		out = append(out, u.String())
	}
	return out
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: bad URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("embedded etcd: URL %q: scheme must be http or https", s)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("embedded etcd: URL %q has no port", s)
	}
	return u, nil
}

func parseURLs(ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := parseURL(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, nil
}
