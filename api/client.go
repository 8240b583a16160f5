package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/seed-a1ce88ea/fleet/unit"
)

// Client is what fleetctl and the HTTP server need of fleet. Both
// implementations (NewRegistryClient over etcd, NewHTTPClient over fleetd's
// API) return errors that wrap the sentinel errors below; check them with
// errors.Is. Every method blocks until its requests are answered and ends
// early, with ctx's error, when ctx does.
type Client interface {
	// Machines lists the present machines, sorted by ID, with their
	// effective metadata (configured, then dynamic).
	Machines(ctx context.Context) ([]Machine, error)
	// SetMachineMetadata applies dynamic metadata operations in order, all
	// or none (fleet's PATCH /machines). Machines need not be present; the
	// metadata is kept across a machine leaving and rejoining. Invalid
	// operations fail with ErrInvalid before any is applied.
	SetMachineMetadata(ctx context.Context, ops []MachineMetadataOp) error

	// Units lists the submitted units, sorted by name.
	Units(ctx context.Context) ([]*Unit, error)
	// Unit returns one unit, or an error wrapping ErrNotFound.
	Unit(ctx context.Context, name string) (*Unit, error)
	// UnitStates lists the unit states published by machines' agents that
	// match f, sorted by unit name, then machine ID. Filtering by unit reads
	// only those units' states, not the whole collection.
	UnitStates(ctx context.Context, f StateFilter) ([]*UnitState, error)

	// CreateUnit submits a new unit in u.DesiredState (default inactive). An
	// instance ("app@1.service") with no options takes the options of its
	// submitted template. It fails with ErrExists if the unit exists, with
	// ErrConflict if it has no options (and no template to take them from)
	// and with ErrInvalid if the name, options or state break fleet's rules.
	// The warnings (unknown [X-Fleet] options, for instance) did not prevent
	// it.
	CreateUnit(ctx context.Context, u *Unit) (warnings []string, err error)
	// ReplaceUnit is CreateUnit that overwrites an existing unit's file. An
	// empty u.DesiredState keeps the existing unit's desired state.
	ReplaceUnit(ctx context.Context, u *Unit) (warnings []string, err error)
	// SetUnitTargetState sets a unit's desired state: inactive, loaded or
	// launched. A template unit can only be inactive (ErrInvalid).
	SetUnitTargetState(ctx context.Context, name, state string) error
	// DestroyUnit removes a unit; the engine then unschedules it.
	DestroyUnit(ctx context.Context, name string) error

	// UnitStatus returns the output of `systemctl status` for the unit on
	// the machine it is scheduled to (ErrConflict if it is on none,
	// ErrUnavailable if that machine cannot be reached).
	UnitStatus(ctx context.Context, name string) (string, error)
	// UnitJournal streams the unit's journal on the machine it is scheduled
	// to, with the same errors as UnitStatus. The caller closes the stream;
	// with opts.Follow it stays open until then, ctx ends or the machine's
	// fleetd goes away.
	UnitJournal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error)

	// Events calls fn with every change in the cluster from now on, in
	// order, until ctx ends (it then returns ctx's error), fn returns an
	// error (returned) or the stream breaks (ErrUnavailable). The first
	// event, EventStreamStarted, marks the start: every later change is
	// reported.
	Events(ctx context.Context, fn func(Event) error) error
}

// Inspector reads machine-local data about a unit from this machine's
// systemd.
type Inspector interface {
	// Status returns the text of `systemctl status` for the unit. It blocks
	// until the command it runs ends or ctx does.
	Status(ctx context.Context, name string) (string, error)
	// Journal streams the unit's journal. It returns once the stream has
	// started; the caller closes the stream, which stops it. Cancelling ctx
	// stops it too.
	Journal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error)
}

// Sentinel errors; every error of a Client wraps at most one of them.
var (
	// ErrInvalid: the request breaks fleet's rules (name, options, state).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: the unit does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a unit by that name exists already.
	ErrExists = errors.New("already exists")
	// ErrConflict: the request conflicts with the unit's current state (a
	// different unit file under the same name, or not scheduled anywhere).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the fleetd or machine that must answer cannot.
	ErrUnavailable = errors.New("unavailable")
)

// kindError is an error whose message is a whole sentence and which wraps a
// sentinel without repeating its text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Error is an error answer of a fleetd, as the HTTP client returns it: the
// HTTP status code and the server's message. It wraps the sentinel error
// matching the code.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel error for e.Code (nil for codes without one).
func (e *Error) Unwrap() error {
	switch e.Code {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge:
		return ErrInvalid
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusPreconditionFailed:
		return ErrExists
	case http.StatusConflict:
		return ErrConflict
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return ErrUnavailable
	}
	return nil
}

// statusCode maps an error to the HTTP status code the server answers with.
func statusCode(err error) int {
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Code >= 400:
		// A forwarded answer keeps its code.
		return apiErr.Code
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// FileFromOptions returns the unit file that opts describe.
func FileFromOptions(opts []*UnitOption) *unit.File {
	uo := make([]unit.Option, 0, len(opts))
	for _, o := range opts {
		if o != nil {
			uo = append(uo, unit.Option{Section: o.Section, Name: o.Name, Value: o.Value})
		}
	}
	return unit.NewFile(uo)
}

// OptionsFromFile returns f's options in wire form.
func OptionsFromFile(f *unit.File) []*UnitOption {
	out := make([]*UnitOption, len(f.Options))
	for i, o := range f.Options {
		out[i] = &UnitOption{Section: o.Section, Name: o.Name, Value: o.Value}
	}
	return out
}
