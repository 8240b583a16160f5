package registry

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leadership is won engine leadership. Its fence is placed in every engine
// write: "the election key still has the create revision I won with".
type Leadership struct {
	session  *concurrency.Session
	election *concurrency.Election
	key      string
	rev      int64
}

// Campaign blocks until this candidate (id is its machine ID) leads the
// engine election or ctx ends. The session's TTL bounds how long a dead
// leader keeps the lead.
func (r *Registry) Campaign(ctx context.Context, id string, ttl time.Duration) (*Leadership, error) {
	s, err := concurrency.NewSession(r.cli, concurrency.WithTTL(int(max(ttl/time.Second, 1))), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("engine election: new session: %w", err)
	}
	e := concurrency.NewElection(s, r.keys.election())
	if err := e.Campaign(ctx, id); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("engine election: campaign: %w", err)
	}
	return &Leadership{session: s, election: e, key: e.Key(), rev: e.Rev()}, nil
}

// Leader returns the ID of the current engine leader ("" when none).
func (r *Registry) Leader(ctx context.Context) (string, error) {
	resp, err := r.get(ctx, r.keys.election(), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("engine leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

func (l *Leadership) fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// Done is closed when the leadership's session ends (lease lost or Resign).
func (l *Leadership) Done() <-chan struct{} { return l.session.Done() }

// Resign gives up the lead and ends the session, so another engine can take
// over at once instead of after the TTL.
func (l *Leadership) Resign(ctx context.Context) error {
	err := l.election.Resign(ctx)
	if cerr := l.session.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("engine election: resign: %w", err)
	}
	return nil
}
