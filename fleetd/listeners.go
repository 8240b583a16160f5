package fleetd

import (
	"errors"
	"net"
	"time"
)

// RunOption configures Run.
type RunOption func(*runOptions)

type runOptions struct {
	listeners []net.Listener
}

// WithListeners makes Run serve the API on listeners opened by Listen,
// instead of opening its own, and leave them open when it returns: the next
// Run of the process (after a reload) serves on them again, so no request
// is refused in between.
func WithListeners(ls []net.Listener) RunOption {
	return func(o *runOptions) { o.listeners = ls }
}

// Listen opens the API listeners cfg names, once for the whole process: the
// socket-activated ones (fleet.socket) if any, else api_socket, plus
// api_listen. Requests that arrive while no Run serves them (during a
// reload) wait in the sockets' backlogs. Close them with CloseListeners.
func Listen(cfg Config) ([]net.Listener, error) {
	ls, err := apiListeners(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]net.Listener, len(ls))
	for i, l := range ls {
		out[i] = keptListener{l}
	}
	return out, nil
}

// CloseListeners closes listeners opened by Listen.
func CloseListeners(ls []net.Listener) error {
	var errs []error
	for _, l := range ls {
		if k, ok := l.(keptListener); ok {
			l = k.Listener
		}
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// keptListener is a listener that outlives the http.Server serving it:
// Close, which Server.Shutdown calls, only makes a blocked Accept return (a
// deadline in the past); serve clears it for the next server.
type keptListener struct{ net.Listener }

type deadliner interface{ SetDeadline(time.Time) error }

func (k keptListener) Close() error {
	if d, ok := k.Listener.(deadliner); ok {
		return d.SetDeadline(time.Unix(1, 0))
	}
	return nil
}

// serve readies a listener of Listen for a new server.
func (k keptListener) serve() error {
	if d, ok := k.Listener.(deadliner); ok {
		return d.SetDeadline(time.Time{})
	}
	return nil
}
