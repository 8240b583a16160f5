package fleetctl

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// rebooter returns c's reboot calls; both of fleetctl's drivers have them.
func rebooter(c api.Client) (api.Rebooter, error) {
	rb, ok := c.(api.Rebooter)
	if !ok {
		return nil, fmt.Errorf("this client cannot ask for reboots")
	}
	return rb, nil
}

func (a *app) rebootCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "reboot MACHINE...|--all",
		Short: "Ask machines to reboot, one slot at a time (coordinated reboots)",
		Long: `Ask machines to reboot, as their reboot_sentinel file would: each one's
fleetd waits for a cluster-wide slot (reboot_max_concurrent, within
reboot_window), drains the machine, runs reboot_command, and once the
machine is back with a new boot undrains it and frees the slot.

MACHINE is a machine ID or a unique start of one. Every machine is looked
up before any request is made: an unknown machine changes nothing.
fleetctl reboot-status shows the progress, fleetctl events --type reboot
each step.`,
		Args: usageArgs(func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return fmt.Errorf("give machine IDs or --all, not both or neither")
			}
			return nil
		}),
		ValidArgsFunction: a.completeMachines,
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			rb, err := rebooter(c)
			if err != nil {
				return err
			}
			var ids []string
			if all {
				ms, err := c.Machines(ctx)
				if err != nil {
					return err
				}
				for _, m := range ms {
					ids = append(ids, m.ID)
				}
			}
			if len(args) > 0 {
				if ids, err = resolveMachines(ctx, c, args); err != nil {
					return err
				}
			}
			for _, id := range ids {
				if err := rb.RequestReboot(ctx, id); err != nil {
					return fmt.Errorf("reboot of %s: %w", id, err)
				}
				fmt.Fprintf(a.stdout, "Reboot of %s requested\n", id)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "reboot every machine of the cluster, reboot_max_concurrent at a time")
	return cmd
}

func (a *app) rebootStatusCommand() *cobra.Command {
	output := choice{value: "text", allowed: []string{"text", outputJSON}}
	var full bool
	cmd := &cobra.Command{
		Use:   "reboot-status",
		Short: "Show the coordinated reboots: slots held, queue, window, last reboot per machine",
		Args:  usageArgs(cobra.NoArgs),
		RunE: a.run(func(ctx context.Context, c api.Client, _ []string) error {
			rb, err := rebooter(c)
			if err != nil {
				return err
			}
			st, err := rb.RebootStatus(ctx)
			if err != nil {
				return err
			}
			if output.value == outputJSON {
				return printJSON(a.stdout, st)
			}
			policy, t := rebootTable(st, full, time.Now())
			if _, err := fmt.Fprintln(a.stdout, policy); err != nil {
				return err
			}
			if len(t.rows) == 0 {
				_, err := fmt.Fprintln(a.stdout, "No machine has rebooted or asked to.")
				return err
			}
			return printTable(a.stdout, t, true)
		}),
	}
	cmd.Flags().VarP(&output, "output", "o", "Output format: text, or json (the wire object, a stable contract for scripts)")
	cmd.Flags().BoolVarP(&full, "full", "l", false, "Print full machine IDs")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords("text", outputJSON))
	return cmd
}

// rebootTable renders the status: a policy line, and a table of one row
// per machine that holds a slot, waits, was asked, or rebooted before.
func rebootTable(st *api.RebootStatus, full bool, now time.Time) (string, table) {
	id := func(s string) string {
		if full {
			return s
		}
		return machine.ShortID(s) + "..."
	}
	ago := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	t := table{header: []string{"MACHINE", "STATE", "SINCE", "STEP", "LAST REBOOT", "DETAIL"}}
	rows := map[string][]string{}
	row := func(m string) []string {
		if r, ok := rows[m]; ok {
			return r
		}
		r := []string{id(m), "", "", "", "", ""}
		rows[m] = r
		return r
	}
	for _, m := range st.Machines {
		r := row(m.MachineID)
		r[3], r[5] = m.Step, m.Detail
		if m.LastOutcome != "" {
			r[4] = m.LastOutcome + " " + ago(m.LastEnded)
		}
	}
	for _, q := range st.Requests {
		r := row(q.MachineID)
		r[1], r[2] = "requested", ago(q.Since)
	}
	for _, q := range st.Queue {
		r := row(q.MachineID)
		r[1], r[2] = "queued", ago(q.Since)
	}
	for _, h := range st.Holders {
		r := row(h.MachineID)
		r[1], r[2] = "rebooting", ago(h.Since)
	}
	var ids []string
	for m := range rows {
		ids = append(ids, m)
	}
	slices.Sort(ids)
	policy := "Reboot policy: unknown (no fleetd has started its reboot coordinator yet)"
	if p := st.Policy; p != nil {
		w := p.Window
		if w == "" {
			w = "any time"
		}
		policy = fmt.Sprintf("Reboot policy: max %d at once, window %s, timeout %s; %d of %d slots held", p.MaxConcurrent, w, p.Timeout, len(st.Holders), p.MaxConcurrent)
	}
	for _, m := range ids {
		r := rows[m]
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		t.rows = append(t.rows, r)
	}
	return policy, t
}
