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
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/agent/systemd"
	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/ui"
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

	// The API's security is read first, and anew by every Run: a SIGHUP
	// picks up a changed tokens file or renewed certificates, and a
	// listener open to the network without them stops fleetd before it
	// does anything.
	sec, err := loadAPISecurity(cfg)
	if err != nil {
		return err
	}
	listeners := o.listeners
	if listeners == nil {
		if listeners, err = apiListeners(cfg); err != nil {
			return err
		}
		// Shutdown closes them once served; this covers failing before.
		defer func() {
			for _, l := range listeners {
				_ = l.Close()
			}
		}()
	}
	if err := sec.checkListeners(cfg, listeners, log); err != nil {
		return err
	}
	if sec.peerCertMissing {
		log.Warn("api_cert_file is a server-only certificate: this fleetd forwards status and journal requests to other machines without a certificate of its own, which they refuse unless open; issue it with fleetd tls cert create --peer", "file", cfg.APICertFile)
	}

	m := newMetrics()
	cli, closeEtcd, err := openEtcd(ctx, cfg, m.etcdInterceptor(), log)
	if err != nil {
		return err
	}
	defer closeEtcd()
	reg := registry.New(cli, registry.WithPrefix(cfg.EtcdKeyPrefix), registry.WithRequestTimeout(cfg.EtcdRequestTimeout))

	me, err := describeMachine(cfg, version)
	if err != nil {
		return err
	}
	log = log.With("machine", me.ID)

	sd, err := systemd.Connect(ctx, systemd.Config{UnitsDir: cfg.UnitsDirectory, Log: log})
	if err != nil {
		return fmt.Errorf("connect to systemd (is systemd PID 1 here, and fleetd root?): %w", err)
	}
	defer sd.Close()

	rc, err := newRebootCoordinator(reg, me.ID, cfg, log)
	if err != nil {
		return err
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
			GCInterval: cfg.EngineGCInterval, MachineGCAfter: cfg.MachineGCAfter, BodyGrace: cfg.EngineBodyGrace,
			AtMostOnceDefault: cfg.AgentAtMostOnceDefault, AtMostOnceMargin: cfg.EngineAtMostOnceMargin,
			Placement: cfg.Placement, Standby: cfg.EngineStandby})
		m.watchCluster(reg, e, me.ID)
	} else {
		m.watchCluster(reg, nil, me.ID)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	// The dashboard: its files are open (api.RequiredRole), its page calls
	// the API below with the caller's credentials.
	mux.Handle(ui.Prefix, ui.Handler())
	client := api.NewRegistryClient(reg, append(sec.registryOptions(), api.WithPlacement(cfg.Placement, cfg.AgentAtMostOnceDefault))...)
	mux.Handle("/", m.instrument(api.NewServer(client,
		api.WithVersion(version), api.WithLocalMachine(me.ID, api.RefusingInspector(api.SystemdInspector{}, client, me.ID)), api.WithLogger(log))))
	server := newAPIServer(mux, sec, log)

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, l := range sec.wrap(listeners) {
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
	wg.Go(func() { _ = rc.Run(ctx) })

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
	capacity, err := machine.DetectCapacity("/proc/meminfo", cfg.ReservedCPU, cfg.ReservedMemory)
	if err != nil {
		return machine.Machine{}, fmt.Errorf("machine capacity: %w", err)
	}
	m.Capacity = &capacity
	if cfg.APIListen != "" {
		h, port, err := net.SplitHostPort(cfg.APIListen)
		if err != nil {
			return machine.Machine{}, fmt.Errorf("%w: api_listen %q: %w", ErrUsage, cfg.APIListen, err)
		}
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = ip
		}
		if h != "" {
			scheme := "http://"
			if cfg.APICertFile != "" {
				scheme = "https://"
			}
			m.APIURL = scheme + net.JoinHostPort(h, port)
		}
	}
	return m, nil
}

// socketGroup may use fleetd's unix socket besides root, where it exists.
const socketGroup = "fleet"

// restrictSocket lets only root and the fleet group (if there is one)
// connect to the API socket: whoever can is an admin of the cluster.
func restrictSocket(path string) error {
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("API socket %s: %w", path, err)
	}
	g, err := user.LookupGroup(socketGroup)
	if err != nil {
		return nil // no fleet group: root only
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("group %s has a non-numeric ID %q", socketGroup, g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("API socket %s: give it to group %s: %w", path, socketGroup, err)
	}
	return nil
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
		if err := restrictSocket(cfg.APISocket); err != nil {
			l.Close()
			return nil, err
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
