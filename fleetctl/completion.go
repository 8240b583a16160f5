package fleetctl

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
)

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a script that makes the shell complete fleetctl's commands and flags,
and unit names and machine IDs from the cluster (read with the same
--endpoint, --driver and FLEETCTL_* settings as any command).

bash (needs the bash-completion package):
	source <(fleetctl completion bash)
	fleetctl completion bash > /etc/bash_completion.d/fleetctl

zsh:
	fleetctl completion zsh > "${fpath[1]}/_fleetctl"

fish:
	fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      usageArgs(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.stdout)
			default:
				return root.GenFishCompletion(a.stdout, true)
			}
		},
	}
}

// completionTimeout bounds the cluster reads of one completion: a shell
// waiting on an unreachable fleetd must not hang.
const completionTimeout = 2 * time.Second

// completeFromCluster reads completions from the cluster with the client
// the global flags (and FLEETCTL_*) describe. Failures complete nothing.
func (a *app) completeFromCluster(cmd *cobra.Command, read func(ctx context.Context, c api.Client) []string) []string {
	if err := a.applyEnv(cmd); err != nil {
		return nil
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	c, release, err := a.client(ctx)
	if err != nil {
		return nil
	}
	defer release()
	return read(ctx, c)
}

// completeUnits completes submitted unit names not given yet, with their
// description. With files, local files complete too (commands that take
// unit files).
func (a *app) completeUnits(files bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		directive := cobra.ShellCompDirectiveNoFileComp
		if files {
			directive = cobra.ShellCompDirectiveDefault
		}
		out := a.completeFromCluster(cmd, func(ctx context.Context, c api.Client) []string {
			us, err := c.Units(ctx)
			if err != nil {
				return nil
			}
			var out []string
			for _, u := range us {
				if strings.HasPrefix(u.Name, toComplete) && !slices.Contains(args, u.Name) {
					out = append(out, u.Name+"\t"+unitHint(u))
				}
			}
			return out
		})
		return out, directive
	}
}

// unitHint describes a unit in a completion list.
func unitHint(u *api.Unit) string {
	hint := u.DesiredState
	if d := api.FileFromOptions(u.Options).Description(); d != "" {
		hint += ": " + d
	}
	return hint
}

// completeMachines completes machine IDs with their IP.
func (a *app) completeMachines(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	out := a.completeFromCluster(cmd, func(ctx context.Context, c api.Client) []string {
		ms, err := c.Machines(ctx)
		if err != nil {
			return nil
		}
		var out []string
		for _, m := range ms {
			if strings.HasPrefix(m.ID, toComplete) {
				out = append(out, m.ID+"\t"+m.PrimaryIP)
			}
		}
		return out
	})
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeMachinesAndUnits completes the first argument of ssh: a machine
// ID or a unit name.
func (a *app) completeMachinesAndUnits(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	ms, _ := a.completeMachines(cmd, args, toComplete)
	us, _ := a.completeUnits(false)(cmd, args, toComplete)
	return append(ms, us...), cobra.ShellCompDirectiveNoFileComp
}

// completeWords completes a flag from a fixed list.
func completeWords(words ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	}
}
