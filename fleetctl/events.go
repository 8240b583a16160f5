package fleetctl

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
)

func (a *app) eventsCommand() *cobra.Command {
	var (
		output   = choice{value: "text", allowed: []string{"text", outputJSON}}
		units    string
		machines string
		types    string
		full     bool
	)
	cmd := &cobra.Command{
		Use:   "events [-o json] [--unit=PATTERN] [--machine=ID] [--type=PREFIX,...]",
		Short: "Print a live stream of cluster events until interrupted",
		Long: `Print the cluster's events as they happen, until interrupted: units
submitted, replaced, destroyed, given a new desired state (unit.target),
placed on a machine, moved, unplaced, found to fit no machine
(unit.unplaceable, with the reason), and reported in a new state by systemd
(unit.state); machines joining, leaving and changing (machine.*);
engine leadership changing hands (leader.changed); rolling updates starting,
each copy's step and the rollout's phase (rollout.*); and every API call that
may change the cluster, with who made it (api.call).

With -o json every event is one JSON object per line, with stable field
names: type, time, revision, unit, machineID, primaryIP, metadata, from, to,
identity, action, result, rollout.
The first is "stream.started": every change after its revision follows.

Follow one template's instances:
	fleetctl events --unit 'web@*'

Only machine events, as JSON:
	fleetctl events --type machine -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: a.run(func(ctx context.Context, c api.Client, _ []string) error {
			if units != "" {
				if _, err := path.Match(units, ""); err != nil {
					return usageErrorf("events: bad --unit pattern %q: %v", units, err)
				}
			}
			var prefixes []string
			for _, t := range strings.Split(types, ",") {
				if t = strings.TrimSpace(t); t != "" {
					prefixes = append(prefixes, t)
				}
			}
			legend := func(id string) string {
				if id == "" || full {
					return id
				}
				return machine.ShortID(id) + "..."
			}
			err := c.Events(ctx, func(e api.Event) error {
				if !keepEvent(e, units, machines, prefixes, output.value == outputJSON) {
					return nil
				}
				if output.value == outputJSON {
					b, err := json.Marshal(e)
					if err != nil {
						return fmt.Errorf("encode event: %w", err)
					}
					_, err = fmt.Fprintf(a.stdout, "%s\n", b)
					return err
				}
				_, err := fmt.Fprintln(a.stdout, formatEvent(e, legend))
				return err
			})
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil // interrupted: how a stream ends
			}
			return err
		}),
	}
	cmd.Flags().VarP(&output, "output", "o", "Output format: text, or json (one object per line)")
	cmd.Flags().StringVar(&units, "unit", "", "Only events of units matching this pattern (with or without .service)")
	cmd.Flags().StringVar(&machines, "machine", "", "Only events on machines whose ID starts with this")
	cmd.Flags().StringVar(&types, "type", "", "Only events whose type starts with one of these, comma-separated (unit, unit.state, machine, leader, reboot)")
	cmd.Flags().BoolVarP(&full, "full", "l", false, "Print full machine IDs")
	return cmd
}

// keepEvent applies the events command's filters. The stream's first event
// is kept in JSON, where it tells scripts the starting revision.
func keepEvent(e api.Event, units, machines string, types []string, json bool) bool {
	if e.Type == api.EventStreamStarted {
		return json
	}
	if units != "" {
		ok, _ := path.Match(units, e.Unit)
		if !ok {
			ok, _ = path.Match(units+".service", e.Unit)
		}
		if !ok {
			return false
		}
	}
	if machines != "" && !strings.HasPrefix(e.MachineID, machines) && !strings.HasPrefix(e.From, machines) {
		return false
	}
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if strings.HasPrefix(e.Type, t) {
			return true
		}
	}
	return false
}

// formatEvent renders an event as one line for people.
func formatEvent(e api.Event, legend func(string) string) string {
	ts := e.Time.Local().Format(time.DateTime)
	on := legend(e.MachineID)
	if e.PrimaryIP != "" {
		on += "/" + e.PrimaryIP
	}
	var what string
	switch e.Type {
	case api.EventUnitSubmitted:
		what = fmt.Sprintf("%s (desired state %s)", e.Unit, e.To)
	case api.EventUnitTarget:
		what = fmt.Sprintf("%s %s -> %s", e.Unit, e.From, e.To)
	case api.EventUnitPlaced:
		what = fmt.Sprintf("%s on %s (%s)", e.Unit, on, e.To)
	case api.EventUnitMoved:
		what = fmt.Sprintf("%s from %s to %s", e.Unit, legend(e.From), legend(e.To))
	case api.EventUnitUnplaced:
		what = fmt.Sprintf("%s from %s", e.Unit, on)
	case api.EventUnitUnplaceable:
		what = fmt.Sprintf("%s: %s", e.Unit, e.To)
	case api.EventUnitState:
		from := e.From
		if from == "" {
			from = "-"
		}
		what = fmt.Sprintf("%s on %s: %s -> %s", e.Unit, on, from, e.To)
	case api.EventMachineJoined, api.EventMachineUpdated:
		what = on
		if len(e.Metadata) > 0 {
			what += " " + machine.FormatMetadata(e.Metadata)
		}
	case api.EventMachineLeft:
		what = on
	case api.EventAPICall:
		what = strings.Join(strings.Fields(e.Identity+" "+e.Action+" "+e.Unit+" "+e.To), " ")
		if e.MachineID != "" {
			what += " via " + legend(e.MachineID)
		}
		what += ": " + e.Result
	case api.EventRebootStep:
		what = on + " " + e.To
		if e.Result != "" {
			what += ": " + e.Result
		}
	case api.EventLeaderChanged:
		from, to := legend(e.From), legend(e.To)
		if from == "" {
			from = "none"
		}
		if to == "" {
			to = "none"
		}
		what = from + " -> " + to
	case api.EventRolloutStarted:
		what = fmt.Sprintf("%s to %.12s", e.Rollout, e.To)
	case api.EventRolloutStep:
		what = e.Unit
		if e.MachineID != "" {
			what += " on " + on
		}
		what += fmt.Sprintf(": %s -> %s", cmp.Or(e.From, "-"), e.To)
		if e.Result != "" {
			what += " (" + e.Result + ")"
		}
	case api.EventRolloutPhase:
		what = fmt.Sprintf("%s: %s -> %s", e.Rollout, e.From, e.To)
		if e.Result != "" {
			what += " (" + e.Result + ")"
		}
	default:
		what = strings.TrimSpace(e.Unit + " " + on)
	}
	return fmt.Sprintf("%s %-16s %s", ts, e.Type, what)
}
