package fleetctl

import (
	"errors"
	"fmt"

	"github.com/seed-a1ce88ea/fleet/api"
)

// Exit codes ExitCode returns; `fleetctl help` lists them.
const (
	ExitOK          = 0
	ExitFailed      = 1 // the operation failed
	ExitUsage       = 2 // bad usage or an argument fleet refuses
	ExitUnitFailed  = 3 // a unit failed: systemd reports it failed
	ExitUnplaceable = 4 // no machine can run a unit
	ExitTimeout     = 5 // gave up waiting (--block-attempts)
	ExitUnavailable = 6 // fleetd, etcd or a unit's machine unreachable
	ExitNotFound    = 7 // a unit or machine does not exist
	ExitAuth        = 8 // fleetd refused the credentials, or is not trusted
)

// ExitCode returns the process exit code for an error of a fleetctl command
// (see the constants). When err joins several errors, bad usage wins, then
// the first error carrying a code of its own, then missing and unreachable
// things.
func ExitCode(err error) int {
	var ue usageError
	var ce *codeError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue), errors.Is(err, api.ErrInvalid):
		return ExitUsage
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, api.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, api.ErrUnavailable):
		return ExitUnavailable
	}
	return ExitFailed
}

// IsUsage reports whether err is bad usage (worth pointing at the help).
func IsUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// usageError marks bad usage or a bad argument (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// codeError gives an error its exit code.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &codeError{code: code, err: err} }

func codeErrorf(code int, format string, args ...any) error {
	return withCode(code, fmt.Errorf(format, args...))
}

// notFoundf is an error that a unit or machine does not exist.
func notFoundf(format string, args ...any) error {
	return codeErrorf(ExitNotFound, format, args...)
}
