package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// SystemdInspector is the Inspector of the local machine: it runs systemctl
// and journalctl. The zero value uses them from $PATH.
type SystemdInspector struct {
	// Systemctl and Journalctl are the commands to run (default "systemctl"
	// and "journalctl").
	Systemctl, Journalctl string
}

// systemctl status exit codes (LSB): 3 means "not running", which is a state
// to show, not a failure; 4 means systemd does not know the unit.
const (
	statusNotRunning = 3
	statusNoSuchUnit = 4
)

// Status runs `systemctl status --no-pager --full <name>` and returns its
// output, also for inactive or failed units. It blocks until systemctl ends;
// cancelling ctx kills it.
func (i SystemdInspector) Status(ctx context.Context, name string) (string, error) {
	cmd := orDefault(i.Systemctl, "systemctl")
	out, stderr, code, err := run(ctx, cmd, "status", "--no-pager", "--full", "--", name)
	switch {
	case err == nil:
		return out, nil
	case code == statusNotRunning, code > 0 && code != statusNoSuchUnit && out != "":
		return out, nil
	case code == statusNoSuchUnit:
		return "", errorf(ErrConflict, "systemd on this machine does not know unit %s (yet): %s", name, stderr)
	}
	return "", fmt.Errorf("%s status %s: %w%s", cmd, name, err, detail(stderr))
}

// Journal runs `journalctl --no-pager --unit=<name> --lines=<N>` (with
// --output and --follow as opts say) and streams its output. Without
// Follow it returns once journalctl has ended, so its failure is an error
// here; with Follow it returns at once, journalctl running until the stream
// is closed or ctx ends.
func (i SystemdInspector) Journal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error) {
	if err := checkJournalOptions(opts); err != nil {
		return nil, err
	}
	cmd := orDefault(i.Journalctl, "journalctl")
	args := []string{"--no-pager", "--unit=" + name, "--lines=" + strconv.Itoa(opts.Lines)}
	if opts.Output != "" {
		args = append(args, "--output="+opts.Output)
	}
	if !opts.Follow {
		out, stderr, _, err := run(ctx, cmd, args...)
		if err != nil {
			return nil, fmt.Errorf("%s for unit %s: %w%s", cmd, name, err, detail(stderr))
		}
		return io.NopCloser(strings.NewReader(out)), nil
	}
	return startStream(ctx, fmt.Sprintf("%s for unit %s", cmd, name), cmd, append(args, "--follow")...)
}

// journalOutputs are journalctl's output modes.
var journalOutputs = []string{
	"short", "short-full", "short-iso", "short-iso-precise", "short-precise", "short-monotonic",
	"short-delta", "short-unix", "verbose", "export", "json", "json-pretty", "json-sse", "json-seq",
	"cat", "with-unit",
}

// checkJournalOptions refuses what journalctl would refuse, before a
// request is forwarded anywhere.
func checkJournalOptions(o JournalOptions) error {
	if o.Lines < 0 || o.Lines > maxJournalLines {
		return errorf(ErrInvalid, "lines must be a number from 0 to %d, not %d", maxJournalLines, o.Lines)
	}
	if o.Output != "" && !slices.Contains(journalOutputs, o.Output) {
		return errorf(ErrInvalid, "invalid journal output mode %q; want one of %s", o.Output, strings.Join(journalOutputs, ", "))
	}
	return nil
}

// procStream is the standard output of a running command. Reading it to the
// end reports the command's failure; closing it kills the command.
type procStream struct {
	what   string
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *limitedBuffer
	once   sync.Once
	err    error
}

func startStream(ctx context.Context, what, name string, args ...string) (*procStream, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p := &procStream{what: what, cmd: cmd, out: out, stderr: &limitedBuffer{max: 4096}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

func (p *procStream) Read(b []byte) (int, error) {
	n, err := p.out.Read(b)
	if errors.Is(err, io.EOF) {
		if werr := p.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// Close kills the command (if it still runs) and waits for it.
func (p *procStream) Close() error {
	_ = p.cmd.Process.Kill() // it may have ended already
	_ = p.wait()             // killed: its status says nothing
	return nil
}

func (p *procStream) wait() error {
	p.once.Do(func() {
		if err := p.cmd.Wait(); err != nil {
			p.err = fmt.Errorf("%s: %w%s", p.what, err, detail(clipText(strings.TrimSpace(p.stderr.String()), 500)))
		}
	})
	return p.err
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func detail(stderr string) string {
	if stderr == "" {
		return ""
	}
	return ": " + stderr
}

// run runs name with args and returns its stdout, its trimmed stderr and its
// exit code (-1 if it did not exit by itself).
func run(ctx context.Context, name string, args ...string) (stdout, stderr string, code int, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	code = -1
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	}
	return out.String(), clipText(strings.TrimSpace(errOut.String()), 500), code, err
}
