package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Sentinel errors; check them with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrConflict       = errors.New("changed concurrently")
	ErrNotLeader      = errors.New("not the engine leader")
	ErrMachineIDInUse = errors.New("machine ID already in use")
)

// maxTxnOps is etcd's default --max-txn-ops (128) less one slot for the
// leadership compare.
const maxTxnOps = 127

// Registry reads and writes fleet's state in etcd.
type Registry struct {
	cli     *clientv3.Client
	keys    keys
	timeout time.Duration
	audit   *auditLease
}

// Option configures a Registry.
type Option func(*Registry)

// WithPrefix sets the key prefix (default DefaultPrefix).
func WithPrefix(p string) Option { return func(r *Registry) { r.keys = newKeys(p) } }

// WithRequestTimeout bounds every single etcd request (default 5s). Watches
// are not bounded.
func WithRequestTimeout(d time.Duration) Option {
	return func(r *Registry) {
		if d > 0 {
			r.timeout = d
		}
	}
}

// New returns a Registry on an existing etcd client. The caller owns cli.
func New(cli *clientv3.Client, opts ...Option) *Registry {
	r := &Registry{cli: cli, keys: newKeys(""), timeout: 5 * time.Second, audit: &auditLease{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Client returns the underlying etcd client.
func (r *Registry) Client() *clientv3.Client { return r.cli }

// Prefix returns the key prefix in use.
func (r *Registry) Prefix() string { return r.keys.prefix }

func (r *Registry) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *Registry) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := r.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("etcd get %s: %w", key, err)
	}
	return resp, nil
}

func (r *Registry) txn(ctx context.Context, cmps []clientv3.Cmp, then []clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := r.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd txn: %w", err)
	}
	return resp, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and maps are marshalled here.
		panic(fmt.Sprintf("registry: marshal %T: %v", v, err))
	}
	return string(b)
}
