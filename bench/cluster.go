package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/agent"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// reqCounter counts the unary etcd requests made through one client, by
// gRPC method.
type reqCounter struct {
	mu sync.Mutex
	n  map[string]uint64
}

func newReqCounter() *reqCounter { return &reqCounter{n: map[string]uint64{}} }

func (c *reqCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.n[method[strings.LastIndexByte(method, '/')+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *reqCounter) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func total(m map[string]uint64) uint64 {
	t := uint64(0)
	for _, v := range m {
		t += v
	}
	return t
}

func diff(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range a {
		if d := v - b[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// newClient returns an etcd client whose unary requests c counts.
func newClient(endpoints []string, c *reqCounter) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(c.intercept)},
	})
}

// simMachine is one simulated machine: the real agent on a MemorySystemd,
// registered the way fleetd registers (and registering again, as fleetd
// does, if its presence is lost).
type simMachine struct {
	m   machine.Machine
	sd  *MemorySystemd
	reg *registry.Registry
	ttl time.Duration
	log *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	agent      *agent.Agent
	presence   *registry.Presence
	prior      agent.Stats // of agents this machine ran before the current one
	registered chan struct{}
	lost       atomic.Int64 // presences lost and registered again
}

// start registers the machine and runs its agent until kill. It returns
// once the machine is registered (or ctx ends).
func (s *simMachine) start(ctx context.Context) error {
	life, cancel := context.WithCancel(context.Background())
	s.cancel, s.done, s.registered = cancel, make(chan struct{}), make(chan struct{})
	go labelled(life, "agents", s.run)
	select {
	case <-s.registered:
		return nil
	case <-s.done:
		return fmt.Errorf("machine %s stopped before it registered", s.m.Hostname)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is fleetd's runAgent loop, for one simulated machine.
func (s *simMachine) run(ctx context.Context) {
	defer close(s.done)
	first := true
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		p, err := s.reg.Register(ctx, s.m, s.ttl)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("register machine; retrying", "machine", s.m.Hostname, "err", err)
				sleepCtx(ctx, backoff)
				backoff = min(backoff*2, 10*time.Second)
			}
			continue
		}
		a := agent.New(agent.Config{Registry: s.reg, Presence: p, Systemd: s.sd})
		s.mu.Lock()
		s.agent, s.presence = a, p
		s.mu.Unlock()
		if first {
			close(s.registered)
			first = false
		}
		err = a.Run(ctx)
		p.Close()
		s.mu.Lock()
		st := a.Stats()
		s.prior.Wakeups += st.Wakeups
		s.prior.Reconciled += st.Reconciled
		s.agent = nil
		s.mu.Unlock()
		if ctx.Err() == nil {
			s.lost.Add(1)
			s.log.Warn("machine presence lost; registering again", "machine", s.m.Hostname, "err", err)
		}
	}
}

// kill ends the machine as a power loss would: the agent stops and the
// lease is no longer kept alive, but not revoked, so etcd expires it after
// the TTL.
func (s *simMachine) kill() {
	s.cancel()
	<-s.done
}

// stats returns the agent counters summed over the machine's agents.
func (s *simMachine) stats() agent.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.prior
	if s.agent != nil {
		cur := s.agent.Stats()
		st.Wakeups += cur.Wakeups
		st.Reconciled += cur.Reconciled
	}
	return st
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// cluster is everything the scale benchmark runs: etcd and the engines in
// processes of their own, the simulated machines in this one.
type cluster struct {
	dir        string
	profileDir string // CPU profiles of the bulk go there (see startProfiles); "" for none
	log        *slog.Logger
	etcd       *child
	endpoints  []string
	metricsURL string

	agentReqs  *reqCounter
	agentCli   *clientv3.Client   // one client shared by every simulated machine
	ownClis    []*clientv3.Client // those of machines with a client of their own (Workload.OwnClients)
	driverReqs *reqCounter
	driverCli  *clientv3.Client // the benchmark's own: submissions, observation
	reg        *registry.Registry

	machines []*simMachine
	engines  []*child
	engineID []string
	// deadEngineCPU keeps what /proc said of a killed engine just before.
	deadEngineCPU map[*child]procStat
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startCluster starts etcd (in dir) and the benchmark's clients.
func startCluster(ctx context.Context, dir, profileDir string, noFsync bool, log *slog.Logger) (*cluster, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	role := etcdRole{
		Dir:        filepath.Join(dir, "etcd"),
		ClientURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		NoFsync:    noFsync,
	}
	e, err := startProfiledChild(ctx, "etcd", "etcd", role, filepath.Join(dir, "etcd.log"), profilePath(profileDir, "etcd"))
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, profileDir: profileDir, log: log, etcd: e, endpoints: []string{role.ClientURL}, metricsURL: role.MetricsURL,
		agentReqs: newReqCounter(), driverReqs: newReqCounter()}
	// The clients' own goroutines (gRPC's transport) carry the label of
	// whoever uses them, in a profile.
	labelled(ctx, "agents", func(context.Context) { c.agentCli, err = newClient(c.endpoints, c.agentReqs) })
	if err != nil {
		c.close()
		return nil, err
	}
	labelled(ctx, "driver-client", func(context.Context) { c.driverCli, err = newClient(c.endpoints, c.driverReqs) })
	if err != nil {
		c.close()
		return nil, err
	}
	// The request timeout fleetd uses by default is 5 s; with thousands of
	// machines registering at once on 2 cores a request may wait longer.
	c.reg = registry.New(c.driverCli, registry.WithRequestTimeout(30*time.Second))
	return c, nil
}

// addMachines registers n more simulated machines, 64 at a time, and
// starts their agents.
// The first own of them get an etcd client each; the rest share one.
func (c *cluster) addMachines(ctx context.Context, n, own int, ttl time.Duration) error {
	shared := registry.New(c.agentCli)
	first := len(c.machines)
	for i := range n {
		reg := shared
		if i < own {
			var cli *clientv3.Client
			var err error
			labelled(ctx, "agents", func(context.Context) { cli, err = newClient(c.endpoints, c.agentReqs) })
			if err != nil {
				return fmt.Errorf("etcd client of machine %d: %w", first+i, err)
			}
			c.ownClis = append(c.ownClis, cli)
			reg = registry.New(cli)
		}
		c.machines = append(c.machines, &simMachine{m: benchMachine(first + i), sd: NewMemorySystemd(), reg: reg, ttl: ttl, log: c.log})
	}
	work := make(chan *simMachine)
	errc := make(chan error, 64)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for s := range work {
				if err := s.start(ctx); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for _, s := range c.machines[first:] {
		select {
		case work <- s:
		case err = <-errc:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// startEngine starts one more engine process.
func (c *cluster) startEngine(ctx context.Context, id string, leaderTTL time.Duration) error {
	e, err := startProfiledChild(ctx, "engine "+id, "engine", engineRole{Endpoints: c.endpoints, ID: id, LeaderTTL: leaderTTL},
		filepath.Join(c.dir, "engine-"+id+".log"), profilePath(c.profileDir, "engine-"+id))
	if err != nil {
		return err
	}
	c.engines = append(c.engines, e)
	c.engineID = append(c.engineID, id)
	return nil
}

// waitLeader waits until etcd names a leader other than not, and returns it.
func (c *cluster) waitLeader(ctx context.Context, not string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		id, err := c.reg.Leader(ctx)
		if err == nil && id != "" && id != not {
			return id, nil
		}
		sleepCtx(ctx, 5*time.Millisecond)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", errors.New("no engine leader elected")
}

// engineByID returns the process of engine id.
func (c *cluster) engineByID(id string) *child {
	for i, e := range c.engines {
		if c.engineID[i] == id {
			return e
		}
	}
	return nil
}

// wakeups returns each machine's agent wake-ups so far.
func (c *cluster) wakeups() []uint64 {
	out := make([]uint64, len(c.machines))
	for i, s := range c.machines {
		out[i] = s.stats().Wakeups
	}
	return out
}

// close stops everything, machines first.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, s := range c.machines {
		if s.cancel != nil {
			wg.Go(s.kill)
		}
	}
	wg.Wait()
	for _, e := range c.engines {
		if e.alive() {
			e.stop()
		}
	}
	if c.agentCli != nil {
		_ = c.agentCli.Close()
	}
	for _, cli := range c.ownClis {
		_ = cli.Close()
	}
	if c.driverCli != nil {
		_ = c.driverCli.Close()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
}
