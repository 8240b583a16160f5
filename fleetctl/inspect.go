package fleetctl

import (
	"context"
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
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := unitNames(args)
			if err != nil {
				return err
			}
			u, err := c.Unit(ctx, names[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(a.stdout, api.FileFromOptions(u.Options).String())
			return err
		}),
	}
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status UNIT...",
		Short: "Output the status of one or more units in the cluster",
		Long: `Output the 'systemctl status' of one or more units, as the systemd of the
machine each unit is scheduled to sees it.`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := unitNames(args)
			if err != nil {
				return err
			}
			for i, name := range names {
				text, err := c.UnitStatus(ctx, name)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				a.printText(text)
			}
			return nil
		}),
	}
}

func (a *app) journalCommand() *cobra.Command {
	var lines int
	cmd := &cobra.Command{
		Use:   "journal [--lines=N] UNIT",
		Short: "Print the journal of a unit in the cluster",
		Long:  `Print the last lines of a unit's journal on the machine it is scheduled to.`,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			if lines < 1 {
				return usageErrorf("journal: --lines must be at least 1, not %d", lines)
			}
			names, err := unitNames(args)
			if err != nil {
				return err
			}
			text, err := c.UnitJournal(ctx, names[0], lines)
			if err != nil {
				return err
			}
			a.printText(text)
			return nil
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "Number of recent journal entries to print")
	return cmd
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
