package fleetd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/agent/systemd"
	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// Sentinel results of LoadConfig and Run.
var (
	ErrUsage   = errors.New("bad configuration")
	ErrVersion = errors.New("version requested")
)

// Run runs fleetd until ctx ends. It returns an error only for what a
// restart cannot fix by itself waiting (bad configuration, a duplicate
// machine ID, no systemd); an unreachable etcd is retried with backoff while
// the units this machine runs keep running. With WithListeners it serves the
// API on listeners of Listen and leaves them open, for the next Run.
func Run(ctx context.Context, cfg Config, version string, log *slog.Logger, opts ...RunOption) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	endpoints := cfg.EtcdServers
	if len(endpoints) == 0 {
		if err := os.MkdirAll(cfg.EmbeddedEtcdDir, 0o700); err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		srv, err := etcdserver.Start(ctx, etcdserver.Config{
			DataDir: cfg.EmbeddedEtcdDir, ClientURLs: cfg.EmbeddedEtcdClientURLs, PeerURL: cfg.EmbeddedEtcdPeerURL,
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		log.Info("embedded etcd started", "dir", cfg.EmbeddedEtcdDir, "endpoints", strings.Join(endpoints, ","))
	}
	m := newMetrics()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: cfg.EtcdRequestTimeout, Logger: nil,
		// With keepalive on, gRPC also sets TCP_USER_TIMEOUT to its
		// timeout: a connection whose packets go unacknowledged that long
		// (a cut cable, a partition) is dropped and dialled again. Without
		// it, requests keep going to the dead connection, and once the
		// link is back the kernel's retransmission backoff (seconds, then
		// tens of seconds) holds this machine off etcd long after. 10s is
		// gRPC's smallest ping interval, and above etcd's default
		// --grpc-keepalive-min-time.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(m.etcdInterceptor()),
			// gRPC's default reconnect backoff grows to two minutes: after
			// a long etcd outage this machine would come back long after
			// its lease (TTL seconds) ran out, and its units would move.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: cfg.EtcdRequestTimeout,
			}),
		}})
	if err != nil {
		return fmt.Errorf("etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	defer cli.Close()
	reg := registry.New(cli, registry.WithPrefix(cfg.EtcdKeyPrefix), registry.WithRequestTimeout(cfg.EtcdRequestTimeout))

	me, err := describeMachine(cfg, version)
	if err != nil {
		return err
	}
	log = log.With("machine", me.ID)

	sd, err := systemd.Connect(ctx, systemd.Config{UnitsDir: cfg.UnitsDirectory})
	if err != nil {
		return fmt.Errorf("connect to systemd (is systemd PID 1 here, and fleetd root?): %w", err)
	}
	defer sd.Close()

	listeners := o.listeners
	if listeners == nil {
		if listeners, err = apiListeners(cfg); err != nil {
			return err
		}
	}
	for _, l := range listeners {
		if k, ok := l.(keptListener); ok {
			if err := k.serve(); err != nil {
				return fmt.Errorf("API listener %s: %w", l.Addr(), err)
			}
		}
	}
	var e *engine.Engine
	if !cfg.DisableEngine {
		e = engine.New(engine.Config{Registry: reg, ID: me.ID, Version: version, LeaderTTL: cfg.EngineLeaderTTL,
			ReconcileInterval: cfg.EngineReconcileInterval, Log: log, OnPlan: m.observePlan,
			AtMostOnceDefault: cfg.AgentAtMostOnceDefault, AtMostOnceMargin: cfg.EngineAtMostOnceMargin})
		m.watchCluster(reg, e)
	} else {
		m.watchCluster(reg, nil)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	mux.Handle("/", m.instrument(api.NewServer(api.NewRegistryClient(reg),
		api.WithVersion(version), api.WithLocalMachine(me.ID, api.SystemdInspector{}), api.WithLogger(log))))
	server := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("serving API", "addr", l.Addr().String())
			if err := server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve API on %s: %w", l.Addr(), err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := runAgent(ctx, reg, sd, me, cfg, log); err != nil {
			errc <- err
		}
	}()
	if e != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(ctx)
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = server.Shutdown(sctx)
	scancel()
	wg.Wait()
	return runErr
}

// runAgent keeps this machine registered and its agent running. A lost
// lease (etcd unreachable for longer than the TTL) sends it back to
// registering; the units keep running meanwhile.
func runAgent(ctx context.Context, reg *registry.Registry, sd *systemd.Manager, me machine.Machine, cfg Config, log *slog.Logger) error {
	ttl := cfg.AgentTTL
	retry := 200 * time.Millisecond
	for ctx.Err() == nil {
		// Register with the machine's dynamic metadata (PATCH /machines)
		// applied, and keep the record current as it changes: the engine
		// schedules on what the record says.
		eff, rev, err := reg.EffectiveMachine(ctx, me)
		if err == nil {
			var p *registry.Presence
			p, err = reg.Register(ctx, eff, ttl)
			if err == nil {
				runPresence(ctx, reg, sd, p, me, rev, cfg.AgentAtMostOnceDefault, log)
				retry = 200 * time.Millisecond
				continue
			}
		}
		if errors.Is(err, registry.ErrMachineIDInUse) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		// Jitter: when etcd comes back, thousands of machines must not
		// all register in the same instant.
		wait := time.Duration(float64(retry) * (0.75 + rand.Float64()/2))
		log.Warn("register machine; retrying", "err", err, "in", wait)
		sleep(ctx, wait)
		// Retry well within the TTL: once etcd is back, the lease this
		// machine held lives one TTL more, and only a registration within
		// it adopts the lease instead of letting the units move.
		retry = min(retry*2, max(ttl/4, 200*time.Millisecond))
	}
	return nil
}

// runPresence runs the agent and the metadata keeper of one registration
// until it is lost or ctx ends.
func runPresence(ctx context.Context, reg *registry.Registry, sd *systemd.Manager, p *registry.Presence, me machine.Machine, rev int64, atMostOnceDefault bool, log *slog.Logger) {
	log.Info("machine registered", "adopted_lease", p.Adopted(), "ip", me.PublicIP)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.KeepMetadata(ctx, me, rev); err != nil {
			log.Warn("dynamic metadata not kept", "err", err)
		}
	}()
	a := agent.New(agent.Config{Registry: reg, Presence: p, Systemd: sd, Log: log, AtMostOnceDefault: atMostOnceDefault})
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		log.Warn("agent stopped", "err", err)
	}
	// Close, not Revoke: a fleetd restarted within the TTL adopts the
	// lease and nothing moves. Closing also ends KeepMetadata.
	p.Close()
	wg.Wait()
	if ctx.Err() == nil {
		log.Warn("machine presence lost; registering again")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func describeMachine(cfg Config, version string) (machine.Machine, error) {
	id := cfg.MachineID
	if id == "" {
		var err error
		if id, err = machine.ReadID(cfg.MachineIDFile); err != nil {
			return machine.Machine{}, fmt.Errorf("%w (set machine_id or machine_id_file)", err)
		}
	}
	ip := cfg.PublicIP
	if ip == "" {
		detected, err := machine.DefaultRouteIP("/proc/net/route")
		if err == nil {
			ip = detected
		}
	}
	md, err := machine.ParseMetadata(cfg.Metadata)
	if err != nil {
		return machine.Machine{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	host, _ := os.Hostname()
	m := machine.Machine{ID: id, PublicIP: ip, Metadata: md, Hostname: host, Version: version}
	if cfg.APIListen != "" {
		h, port, err := net.SplitHostPort(cfg.APIListen)
		if err != nil {
			return machine.Machine{}, fmt.Errorf("%w: api_listen %q: %w", ErrUsage, cfg.APIListen, err)
		}
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = ip
		}
		if h != "" {
			m.APIURL = "http://" + net.JoinHostPort(h, port)
		}
	}
	return m, nil
}

// apiListeners returns the socket-activated listeners (fleet.socket) if any,
// else the configured unix socket; plus the optional TCP listener.
func apiListeners(cfg Config) ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []net.Listener
	for _, l := range ls {
		if l != nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 && cfg.APISocket != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.APISocket), 0o755); err != nil {
			return nil, fmt.Errorf("API socket %s: %w", cfg.APISocket, err)
		}
		// A socket file left by a killed fleetd would make Listen fail.
		if c, err := net.Dial("unix", cfg.APISocket); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s is in use: is another fleetd running?", cfg.APISocket)
		}
		_ = os.Remove(cfg.APISocket)
		l, err := net.Listen("unix", cfg.APISocket)
		if err != nil {
			return nil, fmt.Errorf("listen on API socket: %w", err)
		}
		out = append(out, l)
	}
	if cfg.APIListen != "" {
		l, err := net.Listen("tcp", cfg.APIListen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.APIListen, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no API listener: set api_socket or api_listen, or start fleetd from fleet.socket", ErrUsage)
	}
	return out, nil
}
