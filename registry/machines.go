package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// MinTTL is etcd's smallest useful lease TTL for machine presence.
const MinTTL = 2 * time.Second

// Presence is a machine's registration: its record in P/machines bound to a
// lease kept alive in the background. Unit states published through it die
// with it.
type Presence struct {
	r       *Registry
	m       machine.Machine
	lease   clientv3.LeaseID
	adopted bool
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once

	// ka is the keepalive stream renewals go on; only the goroutine that
	// renews (keepAlive, then keepRenewing) touches it.
	ka *keepaliveStream

	mu      sync.Mutex
	ttl     time.Duration // the lease's TTL: the smaller of the one asked for and etcd's
	renewed time.Time     // when the last acknowledged keepalive was sent (monotonic)
}

// Register publishes m under a lease of the given TTL and keeps the lease
// alive until ctx ends, Close is called or the lease is lost.
//
// A record already present for m.ID is either this same host restarted (same
// hostname and public IP): its lease is adopted, so the machine never
// disappears and its units are not moved; or another host with a duplicate
// machine ID: refused with ErrMachineIDInUse.
func (r *Registry) Register(ctx context.Context, m machine.Machine, ttl time.Duration) (*Presence, error) {
	if ttl < MinTTL {
		return nil, fmt.Errorf("register machine %s: TTL %s is below etcd's minimum of %s", m.ID, ttl, MinTTL)
	}
	key := r.keys.machine(m.ID)
	for {
		resp, err := r.get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("register machine %s: %w", m.ID, err)
		}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			var old machine.Machine
			if err := json.Unmarshal(kv.Value, &old); err != nil {
				return nil, fmt.Errorf("register machine %s: decode existing record: %w", m.ID, err)
			}
			if old.Hostname != m.Hostname || old.PublicIP != m.PublicIP {
				return nil, fmt.Errorf("register machine %s: %w: host %s (%s) holds it; every machine needs a unique /etc/machine-id (or set machine_id)",
					m.ID, ErrMachineIDInUse, old.Hostname, old.PublicIP)
			}
			lease := clientv3.LeaseID(kv.Lease)
			tr, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)},
				[]clientv3.Op{clientv3.OpPut(key, mustJSON(m), clientv3.WithLease(lease))})
			if err != nil {
				return nil, fmt.Errorf("register machine %s: adopt lease: %w", m.ID, err)
			}
			if !tr.Succeeded {
				continue // expired or rewritten meanwhile: look again
			}
			p, err := r.keepAlive(ctx, m, lease, ttl, true)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				continue // expired since: look again
			}
			return p, err
		}
		lctx, cancel := r.reqCtx(ctx)
		g, err := r.cli.Grant(lctx, int64((ttl+time.Second-1)/time.Second))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("register machine %s: grant lease: %w", m.ID, err)
		}
		tr, err := r.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			// A machine back forgets its absence: if it leaves again, its
			// schedule is kept for machine_gc_after from then.
			[]clientv3.Op{clientv3.OpPut(key, mustJSON(m), clientv3.WithLease(g.ID)), clientv3.OpDelete(r.keys.absentMachine(m.ID))})
		if err != nil {
			return nil, fmt.Errorf("register machine %s: %w", m.ID, err)
		}
		if tr.Succeeded {
			return r.keepAlive(ctx, m, g.ID, ttl, false)
		}
		r.revoke(g.ID)
	}
}

// keepAlive renews the lease once, so that LastRenewed is known from the
// start (an adopted lease may be close to expiring), and then keeps
// renewing it in the background.
//
// It renews with one keepalive request at a time on a stream of its own
// instead of clientv3's KeepAlive, because it must know when each
// acknowledged request was sent: etcd restarts the lease's TTL when it
// receives a keepalive, so the lease cannot expire before send time + TTL,
// by this machine's own monotonic clock. The at-most-once guarantee rests
// on that (see LastRenewed).
func (r *Registry) keepAlive(ctx context.Context, m machine.Machine, lease clientv3.LeaseID, ttl time.Duration, adopted bool) (*Presence, error) {
	p := &Presence{r: r, m: m, lease: lease, adopted: adopted, ttl: ttl, done: make(chan struct{})}
	if err := p.renew(ctx); err != nil {
		p.dropKeepalive()
		return nil, fmt.Errorf("register machine %s: keep lease alive: %w", m.ID, err)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go func() {
		defer close(p.done)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		p.keepRenewing(kctx)
	}()
	return p, nil
}

// renewEvery is how many renewals a TTL holds: with six, a machine is in
// doubt about its lease (LastRenewed older than half the TTL, see the agent)
// only after two renewals in a row went unanswered.
const renewEvery = 6

// keepRenewing renews the lease every TTL/renewEvery until ctx ends, the
// lease is gone, or no renewal was acknowledged for a whole TTL: by then
// etcd has expired it, or will have before anything this machine does could
// matter, so the presence ends (a lease etcd kept alive anyway, across a
// leader change, is adopted by the next Register).
func (p *Presence) keepRenewing(ctx context.Context) {
	defer p.dropKeepalive()
	interval := p.TTL() / renewEvery
	for {
		sent := time.Now()
		err := p.renew(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case err != nil && time.Since(p.LastRenewed()) >= p.TTL():
			return
		}
		t := time.NewTimer(time.Until(sent.Add(interval)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// renew sends one keepalive and, when etcd acknowledges it, records when it
// was sent. A request unanswered within a third of the TTL is abandoned for
// the next one, with its stream: a renewal that late would tell little, and
// an answer arriving after it must not be taken for the next one's.
func (p *Presence) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(p.TTL()/3, 200*time.Millisecond))
	defer cancel()
	if p.ka == nil {
		ka, err := openKeepalive(p.r.cli)
		if err != nil {
			return fmt.Errorf("open lease keepalive stream: %w", err)
		}
		p.ka = ka
	}
	sent := time.Now()
	if err := p.ka.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(p.lease)}); err != nil {
		p.dropKeepalive()
		return fmt.Errorf("send lease keepalive: %w", err)
	}
	var resp *pb.LeaseKeepAliveResponse
	select {
	case r := <-p.ka.answers:
		if r.err != nil {
			p.dropKeepalive()
			return fmt.Errorf("lease keepalive: %w", r.err)
		}
		resp = r.resp
	case <-ctx.Done():
		p.dropKeepalive()
		return fmt.Errorf("lease keepalive: %w", ctx.Err())
	}
	if resp.TTL <= 0 {
		return rpctypes.ErrLeaseNotFound
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// etcd's TTL for the lease may differ from the one asked for: etcd
	// may grant more, and an adopted lease may have been granted by a
	// fleetd configured with a shorter agent_ttl. The shorter is the safe
	// one to reason with.
	if granted := time.Duration(resp.TTL) * time.Second; granted < p.ttl {
		p.ttl = granted
	}
	if sent.After(p.renewed) {
		p.renewed = sent
	}
	return nil
}

func (p *Presence) dropKeepalive() {
	if p.ka != nil {
		p.ka.cancel()
		p.ka = nil
	}
}

// keepaliveStream is one LeaseKeepAlive stream kept open across renewals,
// so that a renewal is one message, where clientv3's KeepAliveOnce opens a
// gRPC stream per renewal: with thousands of machines renewing every
// TTL/renewEvery, setting up those streams was most of an idle etcd's work.
// One request is in flight at a time, so each answer is the last request's.
type keepaliveStream struct {
	cancel  context.CancelFunc
	stream  pb.Lease_LeaseKeepAliveClient
	answers chan keepaliveAnswer
}

type keepaliveAnswer struct {
	resp *pb.LeaseKeepAliveResponse
	err  error
}

func openKeepalive(cli *clientv3.Client) (*keepaliveStream, error) {
	ctx, cancel := context.WithCancel(cli.Ctx())
	stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	ka := &keepaliveStream{cancel: cancel, stream: stream, answers: make(chan keepaliveAnswer, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			select {
			case ka.answers <- keepaliveAnswer{resp: resp, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ka, nil
}

// TTL returns the lease's TTL: the one asked for, or the one etcd
// acknowledged if that is shorter.
func (p *Presence) TTL() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ttl
}

// LastRenewed returns when this machine sent the last keepalive etcd
// acknowledged, on this process's monotonic clock. etcd restarts a lease's
// TTL when it receives a keepalive, so the lease does not expire before
// LastRenewed() + TTL(), measured here: an agent that stops what must not
// run twice before then has stopped it before any other machine can be told
// to start it. No clock is compared across machines.
func (p *Presence) LastRenewed() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.renewed
}

func (r *Registry) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	_, _ = r.cli.Revoke(ctx, id) // best effort: an unrevoked lease expires by itself
}

// Machine returns the registered machine.
func (p *Presence) Machine() machine.Machine { return p.m }

// Lease returns the lease that binds the machine's presence.
func (p *Presence) Lease() clientv3.LeaseID { return p.lease }

// Adopted reports whether Register took over the lease of this host's
// previous fleetd.
func (p *Presence) Adopted() bool { return p.adopted }

// Done is closed when the lease can no longer be kept alive (lost, revoked,
// or Close called).
func (p *Presence) Done() <-chan struct{} { return p.done }

// Close stops keeping the lease alive without revoking it: the machine stays
// present until the TTL runs out, so a fleetd restarted within the TTL adopts
// it and nothing moves.
func (p *Presence) Close() {
	p.once.Do(p.cancel)
	<-p.done
}

// Revoke ends the presence now: the machine and its unit states disappear.
func (p *Presence) Revoke(ctx context.Context) error {
	p.Close()
	ctx, cancel := p.r.reqCtx(ctx)
	defer cancel()
	if _, err := p.r.cli.Revoke(ctx, p.lease); err != nil {
		return fmt.Errorf("revoke presence of %s: %w", p.m.ID, err)
	}
	return nil
}

// UpdateMachine rewrites the machine record (for example new metadata) under
// the same lease.
func (p *Presence) UpdateMachine(ctx context.Context, m machine.Machine) error {
	ctx, cancel := p.r.reqCtx(ctx)
	defer cancel()
	if _, err := p.r.cli.Put(ctx, p.r.keys.machine(m.ID), mustJSON(m), clientv3.WithLease(p.lease)); err != nil {
		return fmt.Errorf("update machine %s: %w", m.ID, err)
	}
	p.m = m
	return nil
}

// Machines lists present machines sorted by ID, with the read revision.
func (r *Registry) Machines(ctx context.Context) ([]machine.Machine, int64, error) {
	resp, err := r.get(ctx, r.keys.machines(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("list machines: %w", err)
	}
	out := make([]machine.Machine, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, err := decodeMachine(strings.TrimPrefix(string(kv.Key), r.keys.machines()), kv.Value)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, m)
	}
	return out, resp.Header.Revision, nil
}

// Machine reads one present machine; ErrNotFound if it is not present.
func (r *Registry) Machine(ctx context.Context, id string) (machine.Machine, error) {
	resp, err := r.get(ctx, r.keys.machine(id))
	if err != nil {
		return machine.Machine{}, fmt.Errorf("read machine %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return machine.Machine{}, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	return decodeMachine(id, resp.Kvs[0].Value)
}

func decodeMachine(id string, v []byte) (machine.Machine, error) {
	var m machine.Machine
	if err := json.Unmarshal(v, &m); err != nil {
		return machine.Machine{}, fmt.Errorf("decode machine %s: %w", id, err)
	}
	m.ID = id
	return m, nil
}
