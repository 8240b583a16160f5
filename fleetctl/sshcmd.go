package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"

	"github.com/seed-a1ce88ea/fleet/api"
)

func (a *app) sshCommand() *cobra.Command {
	var (
		machineArg, unitArg string
		forwardAgent        bool
		port                int
	)
	cmd := &cobra.Command{
		Use:   "ssh [-A|--forward-agent] [--machine=ID|--unit=UNIT] [MACHINE|UNIT] [COMMAND...]",
		Short: "Open an interactive shell on a machine in the cluster, or run a command there",
		Long: `Open an interactive shell on a machine of the cluster, or on the machine a
unit is scheduled to; with a command, run it there instead and exit with its
status.

A machine is named by a unique prefix of its ID. fleetctl tells machines and
units apart by itself; --machine and --unit remove the doubt.

Host keys are checked against --known-hosts-file; an unknown host is added
once you confirm its fingerprint. Keys come from ssh-agent (SSH_AUTH_SOCK)
or ~/.ssh.

Open a shell on a machine:
	fleetctl ssh 2444264c

Run a command on the machine running a unit, through a bastion:
	fleetctl --tunnel 10.10.10.10 ssh foo.service systemctl status foo

Forward the authentication agent:
	fleetctl ssh -A 2444264c

This command does not work with global units.`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: a.completeMachinesAndUnits,
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			var target api.Machine
			var err error
			switch {
			case machineArg != "" && unitArg != "":
				return usageErrorf("ssh: give --machine or --unit, not both")
			case machineArg != "":
				target, err = findMachine(ctx, c, machineArg)
			case unitArg != "":
				target, err = machineOfUnit(ctx, c, unitArg)
			case len(args) == 0:
				return usageErrorf("ssh: name a machine or a unit; see 'fleetctl help ssh'")
			default:
				target, err = lookupMachineOrUnit(ctx, c, args[0])
				args = args[1:]
			}
			if err != nil {
				return err
			}
			if target.PrimaryIP == "" {
				return fmt.Errorf("machine %s has no public IP to SSH to", target.ID)
			}
			var via *sshConn
			if a.tunnel != "" {
				if via, err = a.dialTunnel(ctx); err != nil {
					return err
				}
			}
			conn, err := a.dialSSH(ctx, withPort(target.PrimaryIP, port), via)
			if err != nil {
				if via != nil {
					_ = via.Close()
				}
				return err
			}
			defer conn.Close()
			return a.runSSH(ctx, conn, strings.Join(args, " "), forwardAgent)
		}),
	}
	// Everything after the machine or unit is the remote command, flags
	// included.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&machineArg, "machine", "", "Open the connection to this machine (a unique ID prefix)")
	cmd.Flags().StringVar(&unitArg, "unit", "", "Open the connection to the machine running this unit")
	cmd.Flags().BoolVarP(&forwardAgent, "forward-agent", "A", false, "Forward the local ssh-agent to the machine")
	cmd.Flags().IntVar(&port, "ssh-port", 22, "SSH port of the machine")
	_ = cmd.RegisterFlagCompletionFunc("machine", a.completeMachines)
	_ = cmd.RegisterFlagCompletionFunc("unit", a.completeUnits(false))
	return cmd
}

// runSSH runs command on conn ("" for an interactive shell), wired to
// fleetctl's standard streams.
func (a *app) runSSH(ctx context.Context, conn *sshConn, command string, forwardAgent bool) error {
	sess, err := conn.client.NewSession()
	if err != nil {
		return fmt.Errorf("open SSH session: %w", err)
	}
	defer sess.Close()
	if forwardAgent {
		if conn.agent == nil {
			return usageErrorf("ssh -A: no ssh-agent to forward; set SSH_AUTH_SOCK")
		}
		if err := agent.ForwardToAgent(conn.client, conn.agent); err != nil {
			return fmt.Errorf("forward ssh-agent: %w", err)
		}
		if err := agent.RequestAgentForwarding(sess); err != nil {
			return fmt.Errorf("forward ssh-agent: %w", err)
		}
	}
	sess.Stdin, sess.Stdout, sess.Stderr = a.stdin, a.stdout, a.stderr
	if command == "" {
		if f, ok := a.stdin.(*os.File); ok && a.isTerminal(f) {
			restore, err := requestPTY(sess, int(f.Fd()), a.env("TERM"))
			if err != nil {
				return err
			}
			defer restore()
		}
		if err := sess.Shell(); err != nil {
			return fmt.Errorf("open a shell over SSH: %w", err)
		}
	} else if err := sess.Start(command); err != nil {
		return fmt.Errorf("run %q over SSH: %w", command, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM) // best effort; closing the session ends it
		return ctx.Err()
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		return codeErrorf(exit.ExitStatus(), "remote command exited with status %d", exit.ExitStatus())
	}
	return err
}

// requestPTY puts the local terminal in raw mode and asks for a remote one
// of the same size. restore puts the local terminal back.
func requestPTY(sess *ssh.Session, fd int, term string) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("read terminal mode: %w", err)
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("set terminal to raw mode: %w", err)
	}
	restore = func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) } // nothing left to do if it fails
	rows, cols := 24, 80
	if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
		rows, cols = int(ws.Row), int(ws.Col)
	}
	if term == "" {
		term = "xterm"
	}
	if err := sess.RequestPty(term, rows, cols, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		restore()
		return nil, fmt.Errorf("request a terminal over SSH: %w", err)
	}
	return restore, nil
}

// findMachine returns the machine whose ID starts with prefix; several
// matches are an error listing them.
func findMachine(ctx context.Context, c api.Client, prefix string) (api.Machine, error) {
	ms, err := c.Machines(ctx)
	if err != nil {
		return api.Machine{}, err
	}
	var found []api.Machine
	for _, m := range ms {
		if m.ID == prefix {
			return m, nil
		}
		if strings.HasPrefix(m.ID, prefix) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return api.Machine{}, notFoundf("no machine's ID starts with %q; see 'fleetctl list-machines'", prefix)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, m := range found {
		ids[i] = m.ID
	}
	return api.Machine{}, usageErrorf("%q is the start of several machine IDs (%s); give more of it", prefix, strings.Join(ids, ", "))
}

// machineOfUnit returns the machine a unit is scheduled to.
func machineOfUnit(ctx context.Context, c api.Client, arg string) (api.Machine, error) {
	names, err := unitNames([]string{arg})
	if err != nil {
		return api.Machine{}, err
	}
	u, err := c.Unit(ctx, names[0])
	if err != nil {
		return api.Machine{}, err
	}
	switch {
	case api.IsGlobal(u):
		return api.Machine{}, usageErrorf("unit %s is global: it runs on many machines; name the machine instead", u.Name)
	case u.MachineID == "":
		return api.Machine{}, fmt.Errorf("unit %s is not scheduled to any machine", u.Name)
	}
	return findMachine(ctx, c, u.MachineID)
}

// lookupMachineOrUnit resolves an argument that may name a machine or a
// unit, refusing one that names both.
func lookupMachineOrUnit(ctx context.Context, c api.Client, arg string) (api.Machine, error) {
	m, mErr := findMachine(ctx, c, arg)
	um, uErr := machineOfUnit(ctx, c, arg)
	switch {
	case mErr == nil && uErr == nil:
		return api.Machine{}, usageErrorf("%q names both machine %s and a unit; use --machine or --unit", arg, m.ID)
	case mErr == nil:
		return m, nil
	case uErr == nil:
		return um, nil
	case errors.Is(uErr, api.ErrNotFound) || IsUsage(uErr):
		return api.Machine{}, mErr
	}
	return api.Machine{}, uErr
}

func (a *app) fdForwardCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "fd-forward SOCKET",
		Short: "Proxy standard input and output to a unix socket (used by --tunnel)",
		Long: `Connect standard input and output to a unix domain socket. fleetctl runs
'fleetctl fd-forward /var/run/fleet.sock' on the --tunnel host to reach its
fleetd when --endpoint is a unix socket; it is not meant to be run by hand.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			conn, err := net.Dial("unix", args[0])
			if err != nil {
				return withCode(ExitUnavailable, fmt.Errorf("fd-forward: %w", err))
			}
			defer conn.Close()
			go func() {
				_, _ = io.Copy(conn, a.stdin) // stdin ends: tell the other side
				if uc, ok := conn.(*net.UnixConn); ok {
					_ = uc.CloseWrite()
				}
			}()
			// The socket's answers are what the caller waits for: done when
			// the other side closes.
			if _, err := io.Copy(a.stdout, conn); err != nil {
				return fmt.Errorf("fd-forward: %w", err)
			}
			return nil
		},
	}
}
