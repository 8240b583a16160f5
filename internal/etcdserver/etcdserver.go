// Package etcdserver runs a single-member etcd inside the process (etcd's
// server/v3/embed), for fleetd's one-command mode and for tests.
package etcdserver

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config describes the embedded member.
type Config struct {
	Name       string   // member name; default "default"
	DataDir    string   // required
	ClientURLs []string // default http://127.0.0.1:2379 (loopback only)
	PeerURL    string   // default http://127.0.0.1:2380
	// Fast makes elections and heartbeats 10x faster than etcd's defaults
	// and skips fsync: for tests only.
	Fast bool
}

// Server is a running embedded etcd member.
type Server struct {
	etcd *embed.Etcd
	urls []string
}

// Start starts the member and blocks until it serves clients, ctx ends, or
// 60 s pass.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("embedded etcd: data directory is required")
	}
	if len(cfg.ClientURLs) == 0 {
		cfg.ClientURLs = []string{"http://127.0.0.1:2379"}
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "http://127.0.0.1:2380"
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
	if cfg.Fast {
		ec.TickMs, ec.ElectionMs = 10, 100
		ec.UnsafeNoFsync = true
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
	return &Server{etcd: e, urls: cfg.ClientURLs}, nil
}

// Endpoints returns the client URLs.
func (s *Server) Endpoints() []string { return s.urls }

// Err returns a channel that receives a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member gracefully.
func (s *Server) Close() { s.etcd.Close() }

func parseURLs(ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: bad URL %q: %w", s, err)
		}
		out = append(out, *u)
	}
	return out, nil
}
