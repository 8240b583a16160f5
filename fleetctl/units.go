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
	"time"

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
			_, _, err := a.ensureUnits(ctx, c, args, replace, "")
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
		start := time.Now()
		names, known, err := a.ensureUnits(ctx, c, args, replace, g.target())
		if err != nil {
			return err
		}
		a.debugSince(start, "%d units submitted", len(names))
		start = time.Now()
		err = a.transition(ctx, c, names, known, g, block)
		a.debugSince(start, "%d units %s", len(names), g.verb())
		return err
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
			known, err := refuseUnloaded(ctx, c, names, "stop", "start it first")
			if err != nil {
				return err
			}
			return a.transition(ctx, c, names, known, goalStopped, block)
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
			return a.transition(ctx, c, names, nil, goalInactive, block)
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
			start := time.Now()
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			defer a.debugSince(start, "%d units destroyed", len(names))
			// Every unit is tried: one that cannot be destroyed does not
			// keep the others. A client that takes batches destroys them
			// all in one request.
			var errs []error
			if b, ok := c.(api.UnitBatcher); ok && len(names) > 1 {
				if errs = b.DestroyUnits(ctx, names); errors.Is(errs[0], api.ErrNoBatch) {
					errs = nil
				}
			}
			return inOrder(ctx, len(names), true, func(ctx context.Context, i int) error {
				if errs != nil {
					return errs[i]
				}
				return c.DestroyUnit(ctx, names[i])
			}, func(i int) {
				fmt.Fprintf(a.stdout, "Destroyed %s\n", names[i])
			})
		}),
	}
}

// refuseUnloaded fails, before anything changes, if a unit among names is
// scheduled on no machine: verb (stop, restart) needs a loaded unit, and
// advice says what to do instead. A global unit has no single machine and
// is never refused. It returns the units it read, in the order of names.
func refuseUnloaded(ctx context.Context, c api.Client, names []string, verb, advice string) ([]*api.Unit, error) {
	units := make([]*api.Unit, len(names))
	err := inOrder(ctx, len(names), false, func(ctx context.Context, i int) error {
		u, err := c.Unit(ctx, names[i])
		if err != nil {
			return err
		}
		if !api.IsGlobal(u) && u.MachineID == "" && u.CurrentState == string(registry.StateInactive) {
			return fmt.Errorf("cannot %s unit %s: it is not loaded on any machine (state inactive); %s", verb, names[i], advice)
		}
		units[i] = u
		return nil
	}, func(int) {})
	if err != nil {
		return nil, err
	}
	return units, nil
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
			var err error
			if all, err = submittedNames(ctx, c); err != nil {
				return nil, err
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

// submittedNames lists the names of the submitted units, from summaries
// where the client has them: a pattern needs names, not every unit's file.
func submittedNames(ctx context.Context, c api.Client) ([]string, error) {
	var names []string
	if sc, ok := c.(api.UnitSummarizer); ok {
		ss, err := sc.UnitSummaries(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			names = append(names, s.Name)
		}
		return names, nil
	}
	us, err := c.Units(ctx)
	if err != nil {
		return nil, err
	}
	for _, u := range us {
		names = append(names, u.Name)
	}
	return names, nil
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

// ensureItem is one unit a command makes sure of: its name, the argument
// naming it and its local unit file (nil if none).
type ensureItem struct {
	name          string
	arg           string
	n             unit.Name
	local         *unit.File
	localTemplate bool // local is the template beside arg, not arg itself
	exists        bool // a batch create found it in the cluster already
}

// ensureUnits makes sure a unit exists in the cluster for every argument,
// trying in order: the unit already in the cluster (replaced by the local
// file if it differs and replace is set); a local file named by the
// argument; for an instance, a local template file beside it or else the
// template in the cluster. Patterns stand for the local files or submitted
// units they match. A unit it submits is submitted in state (inactive if
// ""), so starting a new unit is one request. It returns the unit names,
// without repeats, and what it knows of each unit (nil if nothing).
//
// Every local file is read before anything is sent, so a bad file changes
// nothing in the cluster; then the units go to fleet bulkWorkers at a time.
func (a *app) ensureUnits(ctx context.Context, c api.Client, args []string, replace bool, state registry.State) ([]string, []*api.Unit, error) {
	start := time.Now()
	args, err := a.localArgs(ctx, c, args)
	if err != nil {
		return nil, nil, err
	}
	names, err := unitNames(args)
	if err != nil {
		return nil, nil, err
	}
	var items []ensureItem
	var out []string
	for i, arg := range args {
		name := names[i]
		if slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
		it := ensureItem{name: name, arg: arg}
		it.n, _ = unit.ParseName(name) // checked by unitNames
		if it.local, err = readUnitFile(arg); err != nil {
			return nil, nil, err
		}
		if it.local == nil && it.n.IsInstance() {
			// An instance: a template file beside the argument, else the
			// template already in the cluster (the API fills it in).
			if it.local, err = readUnitFile(filepath.Join(filepath.Dir(arg), it.n.TemplateName())); err != nil {
				return nil, nil, err
			}
			it.localTemplate = it.local != nil
		}
		items = append(items, it)
	}
	a.debugSince(start, "read %d unit files", len(items))
	known := make([]*api.Unit, len(items))
	warnings := make([][]string, len(items))
	created := a.createBatch(ctx, c, items, state)
	err = inOrder(ctx, len(items), false, func(ctx context.Context, i int) error {
		if r, ok := created[i]; ok {
			switch {
			case r.Err == nil:
				known[i], warnings[i] = newUnit(items[i], state), warnLines(items[i].name, r.Warnings)
				return nil
			case errors.Is(r.Err, api.ErrExists):
				items[i].exists = true
			default:
				return r.Err
			}
		}
		var err error
		known[i], warnings[i], err = a.ensureUnit(ctx, c, items[i], replace, state)
		return err
	}, func(i int) {
		for _, w := range warnings[i] {
			fmt.Fprintln(a.stderr, w)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return out, known, nil
}

// ensureUnit is ensureUnits for one unit. It returns the unit as it knows
// it (nil if it does not) and the warnings to print, whole lines.
func (a *app) ensureUnit(ctx context.Context, c api.Client, it ensureItem, replace bool, state registry.State) (*api.Unit, []string, error) {
	name := it.name
	if (it.local != nil || it.n.IsInstance()) && !it.exists {
		// Most units of a bulk command are new: submitting first costs one
		// request for those, and two only for the units already there.
		w, err := c.CreateUnit(ctx, submission(it, state))
		switch {
		case err == nil:
			return newUnit(it, state), warnLines(name, w), nil
		case !errors.Is(err, api.ErrExists):
			return nil, nil, err
		}
	}
	existing, err := c.Unit(ctx, name)
	switch {
	case errors.Is(err, api.ErrNotFound) && it.local == nil && !it.n.IsInstance():
		return nil, nil, notFoundf("unit %s not found: it is not in the cluster and there is no file %s; check the name with 'fleetctl list-unit-files'", name, it.arg)
	case err != nil:
		return nil, nil, err
	}
	if it.local == nil || api.FileFromOptions(existing.Options).Hash() == it.local.Hash() {
		return existing, nil, nil
	}
	if !replace {
		from := it.arg
		if it.localTemplate {
			from = "template " + filepath.Join(filepath.Dir(it.arg), it.n.TemplateName())
		}
		return existing, []string{fmt.Sprintf("WARNING: unit %s in the cluster differs from local unit file %s; use --replace to replace it", name, from)}, nil
	}
	if ok, lines, err := a.replaceByRollout(ctx, c, existing, it.local); ok {
		return existing, lines, err
	}
	w, err := c.ReplaceUnit(ctx, &api.Unit{Name: name, Options: api.OptionsFromFile(it.local)})
	if err != nil {
		return nil, nil, err
	}
	existing.Options = api.OptionsFromFile(it.local)
	return existing, warnLines(name, w), nil
}

// submission is the unit ensureUnit submits first for it.
func submission(it ensureItem, state registry.State) *api.Unit {
	u := &api.Unit{Name: it.name, DesiredState: string(state)}
	if it.n.Template {
		// A template is only ever inactive: submitted as such, it is the
		// state change that is refused, as for a template submitted
		// earlier.
		u.DesiredState = ""
	}
	if it.local != nil {
		u.Options = api.OptionsFromFile(it.local)
	}
	return u
}

// newUnit is what ensureUnit knows of a unit it has just created: nil when
// its options came from its template in the cluster.
func newUnit(it ensureItem, state registry.State) *api.Unit {
	if it.local == nil {
		return nil
	}
	u := submission(it, state)
	if u.DesiredState == "" {
		u.DesiredState = string(registry.StateInactive)
	}
	return u
}

// createBatch submits, in one batch, the units ensureUnit would submit
// first, when the client can (api.UnitBatcher: one request to fleetd, whose
// registry client writes 63 units to an etcd transaction). It returns the
// result by item; items it did not try are absent.
func (a *app) createBatch(ctx context.Context, c api.Client, items []ensureItem, state registry.State) map[int]api.CreateResult {
	bc, ok := c.(api.UnitBatcher)
	if !ok || len(items) < 2 {
		return nil
	}
	var us []*api.Unit
	var at []int
	for i, it := range items {
		if it.local != nil || it.n.IsInstance() {
			us = append(us, submission(it, state))
			at = append(at, i)
		}
	}
	if len(us) < 2 {
		return nil
	}
	out := make(map[int]api.CreateResult, len(us))
	for j, r := range bc.CreateUnits(ctx, us) {
		if errors.Is(r.Err, api.ErrNoBatch) {
			return nil // one request per unit, as to fleet
		}
		out[at[j]] = r
	}
	return out
}

// debugSince prints, with --debug, a step of the command that ran from
// start until now, in the form of the requests' debug lines: a bulk
// command's time is mostly its own steps, few requests.
func (a *app) debugSince(start time.Time, format string, args ...any) {
	if a.debug {
		fmt.Fprintf(a.stderr, "DEBUG: %s (%s, from %s)\n", fmt.Sprintf(format, args...), time.Since(start).Round(time.Microsecond), start.Format(api.DebugClock))
	}
}

// warnLines words the warnings fleet gave about a unit.
func warnLines(name string, warnings []string) []string {
	out := make([]string, len(warnings))
	for i, w := range warnings {
		out[i] = fmt.Sprintf("WARNING: unit %s: %s", name, w)
	}
	return out
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
