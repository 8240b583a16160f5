package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

func (a *app) submitCommand() *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "submit [--replace] UNIT...",
		Short: "Upload one or more units to the cluster without starting them",
		Long: `Upload one or more units to the cluster without starting them. Useful for
validating units before they are started.

A unit already in the cluster is left as it is (with a warning if the local
file differs) unless --replace is given.

Submit a single unit:
	fleetctl submit foo.service

Submit a directory of units with glob matching:
	fleetctl submit myservice/*

A quoted pattern matching no local file stands for the submitted units it
matches.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(true),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			_, err := a.ensureUnits(ctx, c, args, replace)
			return err
		}),
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "Replace units already in the cluster with the local versions")
	return cmd
}

func (a *app) loadCommand() *cobra.Command {
	return a.ensureAndTransitionCommand(&cobra.Command{
		Use:   "load [--no-block|--block-attempts=N] [--replace] UNIT...",
		Short: "Schedule one or more units in the cluster, first submitting them if necessary",
		Long: `Schedule one or more units onto machines of the cluster without starting
them, submitting them first if they are not in the cluster yet.

fleetctl waits until each unit is loaded on a machine, unless --no-block.`,
	}, goalLoaded, "loaded")
}

func (a *app) startCommand() *cobra.Command {
	return a.ensureAndTransitionCommand(&cobra.Command{
		Use:   "start [--no-block|--block-attempts=N] [--replace] UNIT...",
		Short: "Start one or more units in the cluster, first submitting and loading them if necessary",
		Long: `Start one or more units on the cluster, submitting them first if they are
not in the cluster yet.

fleetctl waits until each unit's systemd reports it active on its machine
(or failed, which is an error), unless --no-block. Start operations on global
units never wait.

Start a single unit:
	fleetctl start foo.service

Start an entire directory of units with glob matching:
	fleetctl start myservice/*`,
	}, goalLaunched, "started")
}

// ensureAndTransitionCommand completes load and start, which differ only in
// their goal: submit what is not in the cluster yet, then move the units to
// g, waiting (unless --no-block) until they are blockWhat.
func (a *app) ensureAndTransitionCommand(cmd *cobra.Command, g goal, blockWhat string) *cobra.Command {
	var (
		replace bool
		block   blockFlags
	)
	cmd.Args = usageArgs(cobra.MinimumNArgs(1))
	cmd.ValidArgsFunction = a.completeUnits(true)
	cmd.RunE = a.run(func(ctx context.Context, c api.Client, args []string) error {
		names, err := a.ensureUnits(ctx, c, args, replace)
		if err != nil {
			return err
		}
		return a.transition(ctx, c, names, g, block)
	})
	cmd.Flags().BoolVar(&replace, "replace", false, "Replace units already in the cluster with the local versions")
	block.register(cmd, blockWhat)
	return cmd
}

func (a *app) stopCommand() *cobra.Command {
	var block blockFlags
	cmd := &cobra.Command{
		Use:   "stop [--no-block|--block-attempts=N] UNIT...",
		Short: "Stop one or more units in the cluster, leaving them loaded",
		Long: `Stop one or more units running in the cluster, but allow them to be started
again in the future. systemd on the unit's machine stops it, honouring any
ExecStop= of the unit.

fleetctl waits until each unit is no longer active, unless --no-block.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			if err := refuseUnloaded(ctx, c, names, "stop", "start it first"); err != nil {
				return err
			}
			return a.transition(ctx, c, names, goalStopped, block)
		}),
	}
	block.register(cmd, "stopped")
	return cmd
}

func (a *app) unloadCommand() *cobra.Command {
	var block blockFlags
	cmd := &cobra.Command{
		Use:   "unload [--no-block|--block-attempts=N] UNIT...",
		Short: "Unschedule one or more units in the cluster",
		Long: `Unschedule one or more units: they stop and are removed from their
machines, but stay submitted.

fleetctl waits until each unit is inactive, unless --no-block.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			return a.transition(ctx, c, names, goalInactive, block)
		}),
	}
	block.register(cmd, "inactive")
	return cmd
}

func (a *app) destroyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "destroy UNIT...",
		Short: "Destroy one or more units in the cluster",
		Long: `Completely remove one or more running or submitted units from the cluster:
they are stopped, unscheduled and forgotten.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range names {
				if err := c.DestroyUnit(ctx, name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(a.stdout, "Destroyed %s\n", name)
			}
			return errors.Join(errs...)
		}),
	}
}

// refuseUnloaded fails, before anything changes, if a unit among names is
// scheduled on no machine: verb (stop, restart) needs a loaded unit, and
// advice says what to do instead. A global unit has no single machine and
// is never refused.
func refuseUnloaded(ctx context.Context, c api.Client, names []string, verb, advice string) error {
	for _, name := range names {
		u, err := c.Unit(ctx, name)
		if err != nil {
			return err
		}
		if !api.IsGlobal(u) && u.CurrentState == string(registry.StateInactive) {
			return fmt.Errorf("cannot %s unit %s: it is not loaded on any machine (state inactive); %s", verb, name, advice)
		}
	}
	return nil
}

// unitNames turns arguments into unit names: the base name, with
// ".service" if it has no unit type suffix. An invalid name is a usage error.
func unitNames(args []string) ([]string, error) {
	names := make([]string, len(args))
	for i, arg := range args {
		name := unit.Normalize(filepath.Base(arg))
		if _, err := unit.ParseName(name); err != nil {
			return nil, usageErrorf("%v", err)
		}
		names[i] = name
	}
	return names, nil
}

// isGlob reports whether arg is a pattern rather than a name: unit names
// never hold * ? or [.
func isGlob(arg string) bool { return strings.ContainsAny(arg, "*?[") }

// unitArgs turns arguments naming units in the cluster into unit names, in
// order and without repeats. A name gets ".service" if it has no type
// suffix; a glob pattern ("web@*", 'app-?') stands for the submitted units it
// matches, with or without their ".service", and must match at least one.
func (a *app) unitArgs(ctx context.Context, c api.Client, args []string) ([]string, error) {
	var out []string
	var all []string // submitted unit names, read on the first pattern
	for _, arg := range args {
		if !isGlob(arg) {
			names, err := unitNames([]string{arg})
			if err != nil {
				return nil, err
			}
			out = appendNew(out, names...)
			continue
		}
		if all == nil {
			us, err := c.Units(ctx)
			if err != nil {
				return nil, err
			}
			all = make([]string, 0, len(us))
			for _, u := range us {
				all = append(all, u.Name)
			}
		}
		matched, err := matchUnits(arg, all)
		if err != nil {
			return nil, err
		}
		out = appendNew(out, matched...)
	}
	return out, nil
}

// matchUnits returns the names pattern matches, sorted; none is an error.
func matchUnits(pattern string, names []string) ([]string, error) {
	p := filepath.Base(pattern)
	if _, err := path.Match(p, ""); err != nil {
		return nil, usageErrorf("bad pattern %q: %v", pattern, err)
	}
	withType := unit.Normalize(p)
	var out []string
	for _, n := range names {
		ok, _ := path.Match(p, n) // the pattern is valid
		if !ok && withType != p {
			ok, _ = path.Match(withType, n)
		}
		if ok {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, notFoundf("no unit in the cluster matches %q; see 'fleetctl list-unit-files'", pattern)
	}
	slices.Sort(out)
	return out, nil
}

// appendNew appends the values of vs not in s yet.
func appendNew(s []string, vs ...string) []string {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

// localArgs expands patterns among arguments naming unit files or units:
// a pattern matching local files stands for them, one matching none stands
// for the submitted units it matches.
func (a *app) localArgs(ctx context.Context, c api.Client, args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		if !isGlob(arg) {
			out = appendNew(out, arg)
			continue
		}
		files, err := filepath.Glob(arg)
		if err != nil {
			return nil, usageErrorf("bad pattern %q: %v", arg, err)
		}
		files = slices.DeleteFunc(files, func(f string) bool {
			st, err := os.Stat(f)
			return err != nil || st.IsDir()
		})
		if len(files) > 0 {
			out = appendNew(out, files...)
			continue
		}
		names, err := a.unitArgs(ctx, c, []string{arg})
		if err != nil {
			return nil, err
		}
		out = appendNew(out, names...)
	}
	return out, nil
}

// ensureUnits makes sure a unit exists in the cluster for every argument,
// trying in order: the unit already in the cluster (replaced by the local
// file if it differs and replace is set); a local file named by the
// argument; for an instance, a local template file beside it or else the
// template in the cluster. Patterns stand for the local files or submitted
// units they match. It returns the unit names, without repeats.
func (a *app) ensureUnits(ctx context.Context, c api.Client, args []string, replace bool) ([]string, error) {
	args, err := a.localArgs(ctx, c, args)
	if err != nil {
		return nil, err
	}
	names, err := unitNames(args)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, arg := range args {
		name := names[i]
		if slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
		n, _ := unit.ParseName(name) // checked by unitNames
		local, err := readUnitFile(arg)
		if err != nil {
			return nil, err
		}
		localTemplate := false
		if local == nil && n.IsInstance() {
			// An instance: a template file beside the argument, else the
			// template already in the cluster (the API fills it in).
			if local, err = readUnitFile(filepath.Join(filepath.Dir(arg), n.TemplateName())); err != nil {
				return nil, err
			}
			localTemplate = local != nil
		}
		existing, err := c.Unit(ctx, name)
		switch {
		case err == nil:
			if local == nil || api.FileFromOptions(existing.Options).Hash() == local.Hash() {
				continue
			}
			if !replace {
				from := arg
				if localTemplate {
					from = "template " + filepath.Join(filepath.Dir(arg), n.TemplateName())
				}
				fmt.Fprintf(a.stderr, "WARNING: unit %s in the cluster differs from local unit file %s; use --replace to replace it\n", name, from)
				continue
			}
			warnings, err := c.ReplaceUnit(ctx, &api.Unit{Name: name, Options: api.OptionsFromFile(local)})
			if err != nil {
				return nil, err
			}
			a.warn(name, warnings)
			continue
		case !errors.Is(err, api.ErrNotFound):
			return nil, err
		}

		u := &api.Unit{Name: name}
		if local == nil && !n.IsInstance() {
			return nil, notFoundf("unit %s not found: it is not in the cluster and there is no file %s; check the name with 'fleetctl list-unit-files'", name, arg)
		}
		if local != nil {
			u.Options = api.OptionsFromFile(local)
		}
		warnings, err := c.CreateUnit(ctx, u)
		if errors.Is(err, api.ErrExists) {
			continue // created meanwhile by someone else
		}
		if err != nil {
			return nil, err
		}
		a.warn(name, warnings)
	}
	return out, nil
}

func (a *app) warn(name string, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "WARNING: unit %s: %s\n", name, w)
	}
}

// readUnitFile parses the unit file at path; nil if there is none. A file
// that cannot be read or parsed is a bad argument.
func readUnitFile(path string) (*unit.File, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, usageErrorf("read unit file %s: %v", path, err)
	}
	if st.IsDir() {
		return nil, usageErrorf("read unit file %s: it is a directory", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("read unit file %s: %v", path, err)
	}
	defer f.Close()
	uf, err := unit.Parse(f)
	if err != nil {
		return nil, usageErrorf("%s: %v", path, err)
	}
	return uf, nil
}
