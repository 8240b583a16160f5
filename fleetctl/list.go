package fleetctl

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Output formats of the list commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// listFlags are the flags every list command has.
type listFlags struct {
	full     bool
	noLegend bool
	fields   string
	output   choice
}

func (f *listFlags) register(cmd *cobra.Command, defaults string, fields []string) {
	f.output = choice{value: outputTable, allowed: []string{outputTable, outputJSON}}
	cmd.Flags().BoolVarP(&f.full, "full", "l", false, "Do not ellipsize fields on output")
	cmd.Flags().BoolVar(&f.noLegend, "no-legend", false, "Do not print a legend (column headers)")
	cmd.Flags().StringVar(&f.fields, "fields", defaults, fmt.Sprintf("Columns to print, comma-separated; valid fields are %q", strings.Join(fields, ",")))
	cmd.Flags().VarP(&f.output, "output", "o", "Output format: table, or json (the wire objects, a stable contract for scripts)")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords(outputTable, outputJSON))
	_ = cmd.RegisterFlagCompletionFunc("fields", completeWords(fields...))
}

// view is what column renderers see: the machines by ID, for legends, and
// whether to print full IDs and hashes.
type view struct {
	full     bool
	machines map[string]api.Machine
	// legends keeps each machine's legend once made: 100,000 rows name
	// a few thousand machines.
	legends map[string]string
}

// columns maps a column name to the function rendering it for an item.
type columns[T any] map[string]func(T, view) string

func (cs columns[T]) names() []string {
	names := make([]string, 0, len(cs))
	for n := range cs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// parse checks a --fields value against the known columns.
func (cs columns[T]) parse(cmd, fields string) ([]string, error) {
	if fields == "" {
		return nil, usageErrorf("%s: --fields must name at least one column; valid fields are %s", cmd, strings.Join(cs.names(), ","))
	}
	cols := strings.Split(fields, ",")
	for _, c := range cols {
		if _, ok := cs[c]; !ok {
			return nil, usageErrorf("%s: invalid field %q in --fields; valid fields are %s", cmd, c, strings.Join(cs.names(), ","))
		}
	}
	return cols, nil
}

// table is a rendered list: a header and rows of cells.
type table struct {
	header []string
	rows   [][]string
}

// buildTable renders items into the named columns. Empty cells become "-".
func buildTable[T any](items []T, cs columns[T], cols []string, v view) table {
	t := table{header: make([]string, len(cols))}
	for i, c := range cols {
		t.header[i] = strings.ToUpper(c)
	}
	for _, it := range items {
		row := make([]string, len(cols))
		for i, c := range cols {
			if row[i] = cs[c](it, v); row[i] == "" {
				row[i] = "-"
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// printTable writes t tab-aligned, as fleetctl did. Cells go to the
// tabwriter one by one through a buffer: joining each row first and going
// through fmt cost as much as the alignment at 100,000 rows.
func printTable(w io.Writer, t table, legend bool) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	tw := tabwriter.NewWriter(bw, 0, 8, 1, '\t', 0)
	var line []byte
	writeRow := func(r []string) error {
		line = line[:0]
		for i, c := range r {
			if i > 0 {
				line = append(line, '\t')
			}
			line = append(line, c...)
		}
		line = append(line, '\n')
		_, err := tw.Write(line)
		return err
	}
	if legend {
		if err := writeRow(t.header); err != nil {
			return err
		}
	}
	for _, r := range t.rows {
		if err := writeRow(r); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// list runs a list command: fetch the items, then print them as a table or
// JSON.
func list[T any](a *app, name string, f *listFlags, cs columns[T], fetch func(context.Context, api.Client) ([]T, view, error)) func(*cobra.Command, []string) error {
	return a.run(func(ctx context.Context, c api.Client, _ []string) error {
		cols, err := cs.parse(name, f.fields)
		if err != nil {
			return err
		}
		items, v, err := fetch(ctx, c)
		if err != nil {
			return err
		}
		if f.output.value == outputJSON {
			if items == nil {
				items = []T{}
			}
			return printJSON(a.stdout, items)
		}
		v.full = f.full
		v.legends = map[string]string{}
		return printTable(a.stdout, buildTable(items, cs, cols, v), !f.noLegend)
	})
}

func machineColumns() columns[api.Machine] {
	return columns[api.Machine]{
		"machine": func(m api.Machine, v view) string {
			if v.full {
				return m.ID
			}
			return machine.ShortID(m.ID) + "..."
		},
		"ip":       func(m api.Machine, _ view) string { return m.PrimaryIP },
		"metadata": func(m api.Machine, _ view) string { return machine.FormatMetadata(m.Metadata) },
		"state":    func(m api.Machine, _ view) string { return m.State },
		"capacity": func(m api.Machine, _ view) string {
			if m.Capacity == nil {
				return "-"
			}
			return unit.FormatCPU(m.Capacity.CPU) + " CPU, " + unit.FormatMemory(m.Capacity.Memory)
		},
	}
}

func (a *app) listMachinesCommand() *cobra.Command {
	var f listFlags
	cs := machineColumns()
	cmd := &cobra.Command{
		Use:   "list-machines [-l|--full] [--no-legend] [--fields=...]",
		Short: "Enumerate the current hosts in the cluster",
		Long: `Lists all active machines within the cluster. Previously active machines will
not appear in this list.

For easily parsable output, you can remove the column headers:
	fleetctl list-machines --no-legend

Output the list without truncation:
	fleetctl list-machines --full`,
		Args: usageArgs(cobra.NoArgs),
		RunE: list(a, "list-machines", &f, cs, func(ctx context.Context, c api.Client) ([]api.Machine, view, error) {
			ms, err := c.Machines(ctx)
			slices.SortFunc(ms, func(x, y api.Machine) int { return cmp.Compare(x.ID, y.ID) })
			return ms, view{}, err
		}),
	}
	f.register(cmd, "machine,ip,metadata", cs.names())
	return cmd
}

func unitStateColumns() columns[*api.UnitState] {
	return columns[*api.UnitState]{
		"unit":    func(s *api.UnitState, _ view) string { return s.Name },
		"machine": func(s *api.UnitState, v view) string { return machineLegendOrEmpty(s.MachineID, v) },
		"load":    func(s *api.UnitState, _ view) string { return s.SystemdLoadState },
		"active":  func(s *api.UnitState, _ view) string { return s.SystemdActiveState },
		"sub":     func(s *api.UnitState, _ view) string { return s.SystemdSubState },
		"hash":    func(s *api.UnitState, v view) string { return shortHash(s.Hash, v.full) },
		"reason":  func(s *api.UnitState, _ view) string { return s.Reason },
	}
}

func (a *app) listUnitsCommand() *cobra.Command {
	var f listFlags
	cs := unitStateColumns()
	cmd := &cobra.Command{
		Use:   "list-units [-l|--full] [--no-legend] [--fields=...]",
		Short: "List the current state of units in the cluster",
		Long: `Lists the state of all units in the cluster loaded onto a machine, as their
machines' systemd reports it.

For easily parsable output, you can remove the column headers:
	fleetctl list-units --no-legend

Output the list without ellipses:
	fleetctl list-units --full

Or, choose the columns to display:
	fleetctl list-units --fields=unit,machine`,
		Args: usageArgs(cobra.NoArgs),
		RunE: list(a, "list-units", &f, cs, func(ctx context.Context, c api.Client) ([]*api.UnitState, view, error) {
			machines := fetchMachines(ctx, c)
			ss, err := c.UnitStates(ctx, api.StateFilter{})
			if err != nil {
				return nil, view{}, err
			}
			byNameMachine := func(x, y *api.UnitState) int {
				// Not cmp.Or: it would compare the machine IDs of every pair.
				if c := strings.Compare(x.Name, y.Name); c != 0 {
					return c
				}
				return strings.Compare(x.MachineID, y.MachineID)
			}
			// fleetd sends them sorted; fleet's own server may not.
			if !slices.IsSortedFunc(ss, byNameMachine) {
				slices.SortFunc(ss, byNameMachine)
			}
			ms, err := machines()
			return ss, view{machines: ms}, err
		}),
	}
	f.register(cmd, "unit,machine,active,sub", cs.names())
	return cmd
}

// unitFile is a row of list-unit-files: the unit's summary, which the
// server works out from its file (api.UnitSummarizer), and for --output
// json the wire object, which carries the whole file as options.
type unitFile struct {
	*api.UnitSummary
	wire *api.Unit
}

// MarshalJSON keeps --output=json the wire object.
func (u *unitFile) MarshalJSON() ([]byte, error) { return json.Marshal(u.wire) }

// fetchUnitFiles lists the rows of list-unit-files: summaries for a table,
// wire objects for JSON. A client without summaries has them worked out
// here from the units' options.
func fetchUnitFiles(ctx context.Context, c api.Client, wire bool) ([]*unitFile, error) {
	var sums []*api.UnitSummary
	var us []*api.Unit
	var err error
	switch sc, ok := c.(api.UnitSummarizer); {
	case wire || !ok:
		if us, err = c.Units(ctx); err != nil {
			return nil, err
		}
		slices.SortFunc(us, func(x, y *api.Unit) int { return cmp.Compare(x.Name, y.Name) })
		if wire {
			out := make([]*unitFile, len(us))
			for i, u := range us {
				out[i] = &unitFile{wire: u}
			}
			return out, nil
		}
		sums = api.SummariesOf(us)
	default:
		if sums, err = sc.UnitSummaries(ctx); err != nil {
			return nil, err
		}
		// The server sends them sorted; an old one's units may not be.
		if !slices.IsSortedFunc(sums, func(x, y *api.UnitSummary) int { return strings.Compare(x.Name, y.Name) }) {
			slices.SortFunc(sums, func(x, y *api.UnitSummary) int { return strings.Compare(x.Name, y.Name) })
		}
	}
	out := make([]*unitFile, len(sums))
	for i, s := range sums {
		out[i] = &unitFile{UnitSummary: s}
	}
	return out, nil
}

func unitFileColumns() columns[*unitFile] {
	return columns[*unitFile]{
		"unit":   func(u *unitFile, _ view) string { return u.Name },
		"global": func(u *unitFile, _ view) string { return strconv.FormatBool(u.Global) },
		"dstate": func(u *unitFile, _ view) string { return u.DesiredState },
		"state": func(u *unitFile, _ view) string {
			if u.Global {
				return ""
			}
			return u.CurrentState
		},
		"target": func(u *unitFile, v view) string {
			if u.Global {
				return "global"
			}
			return machineLegendOrEmpty(u.MachineID, v)
		},
		"hash":   func(u *unitFile, v view) string { return shortHash(u.Hash, v.full) },
		"desc":   func(u *unitFile, _ view) string { return u.Description },
		"reason": func(u *unitFile, _ view) string { return u.UnplacedReason },
	}
}

func (a *app) listUnitFilesCommand() *cobra.Command {
	var f listFlags
	cs := unitFileColumns()
	cmd := &cobra.Command{
		Use:   "list-unit-files [-l|--full] [--no-legend] [--fields=...]",
		Short: "List the units that exist in the cluster",
		Long: `Lists all unit files that exist in the cluster, whether or not they are
loaded onto a machine: their hash, desired state (DSTATE), current state
(STATE) and the machine they are scheduled to (TARGET). The REASON column
(--fields=unit,reason) says why the engine could place a unit on no machine.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: list(a, "list-unit-files", &f, cs, func(ctx context.Context, c api.Client) ([]*unitFile, view, error) {
			wire := f.output.value == outputJSON
			var machines func() (map[string]api.Machine, error)
			if !wire {
				machines = fetchMachines(ctx, c)
			}
			ufs, err := fetchUnitFiles(ctx, c, wire)
			if err != nil || wire {
				return ufs, view{}, err
			}
			ms, err := machines()
			return ufs, view{machines: ms}, err
		}),
	}
	f.register(cmd, "unit,hash,dstate,state,target", cs.names())
	return cmd
}

// fetchMachines lists the machines while the caller lists the units: at
// 10,000 machines their read and decoding is worth overlapping with the
// larger listing's. The returned function waits for them.
func fetchMachines(ctx context.Context, c api.Client) func() (map[string]api.Machine, error) {
	type answer struct {
		ms  []api.Machine
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		ms, err := c.Machines(ctx)
		ch <- answer{ms, err}
	}()
	return func() (map[string]api.Machine, error) {
		a := <-ch
		return machineMap(a.ms), a.err
	}
}

func machineLegendOrEmpty(id string, v view) string {
	if id == "" {
		return ""
	}
	if l, ok := v.legends[id]; ok {
		return l
	}
	l := machineLegend(id, v.machines, v.full)
	if v.legends != nil {
		v.legends[id] = l
	}
	return l
}

// shortHash returns the 7-character prefix of hash fleetctl prints, or all
// of it with full.
func shortHash(hash string, full bool) string {
	if full || len(hash) <= 7 {
		return hash
	}
	return hash[:7]
}
