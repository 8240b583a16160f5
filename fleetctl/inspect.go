package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
)

func (a *app) catCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cat UNIT",
		Short: "Output the contents of a submitted unit",
		Long: `Output the unit file of a unit submitted to the cluster, in the canonical
form fleet stores and hashes.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			name, err := a.oneUnitArg(ctx, c, "cat", args[0])
			if err != nil {
				return err
			}
			u, err := c.Unit(ctx, name)
			if err != nil {
				return err
			}
			_, err = io.WriteString(a.stdout, api.FileFromOptions(u.Options).String())
			return err
		}),
	}
}

// oneUnitArg is the unit a command that takes exactly one names with arg: a
// pattern must match a single submitted unit.
func (a *app) oneUnitArg(ctx context.Context, c api.Client, command, arg string) (string, error) {
	names, err := a.unitArgs(ctx, c, []string{arg})
	if err != nil {
		return "", err
	}
	if len(names) > 1 {
		return "", usageErrorf("%s: %q matches %d units (%s); name one", command, arg, len(names), strings.Join(names, ", "))
	}
	return names[0], nil
}

// unitStatus is one unit in `fleetctl status -o json`. Its field names are
// a stable contract for scripts.
type unitStatus struct {
	Name         string `json:"name"`
	DesiredState string `json:"desiredState"`
	// CurrentState is empty for global units.
	CurrentState   string           `json:"currentState,omitempty"`
	MachineID      string           `json:"machineID,omitempty"`
	PrimaryIP      string           `json:"primaryIP,omitempty"`
	Global         bool             `json:"global"`
	Hash           string           `json:"hash"`
	UnplacedReason string           `json:"unplacedReason,omitempty"`
	States         []*api.UnitState `json:"states"`
	// Status is the text of systemctl status on the unit's machine; Error
	// says why it could not be read.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (a *app) statusCommand() *cobra.Command {
	output := choice{value: "text", allowed: []string{"text", outputJSON}}
	cmd := &cobra.Command{
		Use:   "status [-o json] UNIT...",
		Short: "Output the status of one or more units in the cluster",
		Long: `Output the 'systemctl status' of one or more units, as the systemd of the
machine each unit is scheduled to sees it. fleetd reads it on that machine:
no SSH access is needed.

With -o json, print one object per unit with stable field names: name,
desiredState, currentState, machineID, primaryIP, global, hash,
unplacedReason, states (what each machine's systemd reports), status (the
systemctl text) and error (why the status could not be read).

Patterns select submitted units: fleetctl status 'web@*'`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			if output.value == outputJSON {
				return a.statusJSON(ctx, c, names)
			}
			var errs []error
			printed := false
			for _, name := range names {
				text, err := c.UnitStatus(ctx, name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if printed {
					fmt.Fprintln(a.stdout)
				}
				a.printText(text)
				printed = true
			}
			return errors.Join(errs...)
		}),
	}
	cmd.Flags().VarP(&output, "output", "o", "Output format: text (systemctl's), or json")
	addIgnoredSSHFlags(cmd, false)
	return cmd
}

func (a *app) statusJSON(ctx context.Context, c api.Client, names []string) error {
	ms, err := c.Machines(ctx)
	if err != nil {
		return err
	}
	machines := machineMap(ms)
	states, err := c.UnitStates(ctx, api.StateFilter{UnitNames: names})
	if err != nil {
		return err
	}
	out := make([]unitStatus, 0, len(names))
	for _, name := range names {
		u, err := c.Unit(ctx, name)
		if err != nil {
			return err
		}
		st := unitStatus{
			Name:           u.Name,
			DesiredState:   u.DesiredState,
			CurrentState:   u.CurrentState,
			MachineID:      u.MachineID,
			PrimaryIP:      machines[u.MachineID].PrimaryIP,
			Global:         api.IsGlobal(u),
			Hash:           api.FileFromOptions(u.Options).Hash().String(),
			UnplacedReason: u.UnplacedReason,
			States:         []*api.UnitState{},
		}
		for _, s := range states {
			if s.Name == name {
				st.States = append(st.States, s)
			}
		}
		// A unit that is not scheduled, or whose machine does not answer, is
		// still reported: the error says why there is no status text.
		if st.Status, err = c.UnitStatus(ctx, name); err != nil {
			st.Error = err.Error()
		}
		out = append(out, st)
	}
	return printJSON(a.stdout, out)
}

func (a *app) journalCommand() *cobra.Command {
	var (
		lines  int
		follow bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "journal [--lines=N] [-f|--follow] [--output=MODE] UNIT",
		Short: "Print the journal of a unit in the cluster",
		Long: `Print the last lines of a unit's journal on the machine it is scheduled to.
fleetd reads the journal on that machine: no SSH access is needed.

Read the last 10 lines:
	fleetctl journal foo.service

Read the last 100 lines, then follow the journal until interrupted:
	fleetctl journal --lines 100 -f foo.service

--output takes journalctl's output modes (short, short-iso, cat, json,
json-pretty, verbose, ...).`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			if lines < 0 {
				return usageErrorf("journal: --lines must be at least 0, not %d", lines)
			}
			name, err := a.oneUnitArg(ctx, c, "journal", args[0])
			if err != nil {
				return err
			}
			rc, err := c.UnitJournal(ctx, name, api.JournalOptions{Lines: lines, Follow: follow, Output: output})
			if err != nil {
				return err
			}
			defer rc.Close()
			w := &lastByteWriter{w: a.stdout}
			_, err = io.Copy(w, rc)
			if w.last != 0 && w.last != '\n' && !follow {
				fmt.Fprintln(a.stdout)
			}
			switch {
			case follow && ctx.Err() != nil:
				return nil // interrupted: how a followed journal ends
			case err != nil:
				return fmt.Errorf("read the journal of %s: %w", name, err)
			case follow:
				return withCode(ExitUnavailable, fmt.Errorf("the journal stream of %s ended: its machine's fleetd stopped or the unit moved; run the command again", name))
			}
			return nil
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "Number of recent journal entries to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "Keep printing entries as they are appended to the journal, until interrupted")
	cmd.Flags().StringVarP(&output, "output", "o", "short", "journalctl output mode: short, short-iso, cat, json, json-pretty, verbose, ...")
	addIgnoredSSHFlags(cmd, true)
	return cmd
}

// addIgnoredSSHFlags accepts fleet's flags for reaching a unit's machine
// over SSH (--ssh-port, and --sudo for journal), hidden: fleetd reads status
// and journal on that machine itself, as root.
func addIgnoredSSHFlags(cmd *cobra.Command, sudo bool) {
	var port int
	var useSudo bool
	cmd.Flags().IntVar(&port, "ssh-port", 22, "ignored: fleetd reads it on the unit's machine")
	_ = cmd.Flags().MarkHidden("ssh-port") // defined just above
	if sudo {
		cmd.Flags().BoolVar(&useSudo, "sudo", false, "ignored: fleetd reads the journal as root")
		_ = cmd.Flags().MarkHidden("sudo")
	}
}

// lastByteWriter remembers the last byte written through it.
type lastByteWriter struct {
	w    io.Writer
	last byte
}

func (l *lastByteWriter) Write(b []byte) (int, error) {
	if len(b) > 0 {
		l.last = b[len(b)-1]
	}
	return l.w.Write(b)
}

// printText prints text ending in a newline.
func (a *app) printText(text string) {
	fmt.Fprint(a.stdout, text)
	if text != "" && !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(a.stdout)
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and exit",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(a.stdout, "fleetctl version %s\n", a.version)
			return err
		},
	}
}
