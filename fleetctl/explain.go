package fleetctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// explainCommand shows, for one unit, every machine with the checker that
// rejects it or its score (like nomad alloc status -verbose).
func (a *app) explainCommand() *cobra.Command {
	var full bool
	output := choice{value: outputTable, allowed: []string{outputTable, outputJSON}}
	cmd := &cobra.Command{
		Use:   "explain UNIT",
		Short: "Show why a unit runs where it does, or nowhere",
		Long: `Show every machine with the rule that keeps the unit off it (MachineID,
MachineMetadata, MachineOf, Resources, MaxPerMachine, Conflicts, Replaces)
or, where it may run, its score under the cluster's placement policy
(higher is better). VERDICT is placed (it runs there), chosen (the next
plan puts it there), feasible or rejected.`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			x, ok := c.(api.Explainer)
			if !ok {
				return fmt.Errorf("explain: this client cannot explain placements")
			}
			name, err := a.oneUnitArg(ctx, c, "explain", args[0])
			if err != nil {
				return err
			}
			e, err := x.ExplainPlacement(ctx, name)
			if err != nil {
				return err
			}
			if output.value == outputJSON {
				return json.NewEncoder(a.stdout).Encode(e)
			}
			fmt.Fprintf(a.stdout, "Unit %s, placement policy %s\n", e.Unit, e.Policy)
			if e.Unplaced != "" {
				fmt.Fprintf(a.stdout, "Unplaced: %s\n", e.Unplaced)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tVERDICT\tSCORE\tUNITS\tCHECKER\tDETAIL")
			for _, v := range e.Machines {
				id := v.Machine
				if !full {
					id = machine.ShortID(id)
				}
				score := "-"
				if v.Verdict != "rejected" {
					score = strconv.FormatFloat(v.Score, 'f', 3, 64)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", id, v.Verdict, score, v.Units, dash(v.Checker), dash(v.Detail))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVarP(&full, "full", "l", false, "Show full machine IDs")
	cmd.Flags().VarP(&output, "output", "o", "Output format: table, or json (a stable contract for scripts)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
