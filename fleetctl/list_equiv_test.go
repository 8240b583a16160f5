package fleetctl_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// referenceTable renders rows the way list-units and list-unit-files did
// before they were made fast: encoding/json, every cell through fmt,
// options parsed for every column.
func referenceTable(header []string, rows [][]string, legend bool) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 1, '\t', 0)
	if legend {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	return b.String()
}

func referenceLegend(id string, ms map[string]api.Machine, full bool) string {
	if id == "" {
		return ""
	}
	l := id
	if !full {
		l = machine.ShortID(id) + "..."
	}
	if m, ok := ms[id]; ok && m.PrimaryIP != "" {
		l += "/" + m.PrimaryIP
	}
	return l
}

func referenceGlobal(u *api.Unit) bool {
	fo, _, err := api.FileFromOptions(u.Options).FleetOptions(u.Name)
	return err == nil && fo.Global
}

func referenceHash(h string, full bool) string {
	if full || len(h) <= 7 {
		return h
	}
	return h[:7]
}

// TestListOutputUnchanged compares list-units and list-unit-files on a few
// thousand generated rows (global units, units on gone machines, empty
// cells, [X-Fleet] sections that are not Global) with the reference
// rendering, byte for byte, in every column and flag combination: against
// a server with summaries and one without.
func TestListOutputUnchanged(t *testing.T) {
	rc := recordCluster(t, 3000)
	old := rc
	old.summaries = nil
	for _, c := range []struct {
		name string
		rc   recordedCluster
	}{{"summaries", rc}, {"old-server", old}} {
		t.Run(c.name, func(t *testing.T) { testListOutput(t, c.rc) })
	}
}

func testListOutput(t *testing.T, rc recordedCluster) {
	url := rc.serve(t)
	var mp api.MachinePage
	require.NoError(t, json.Unmarshal(rc.machines, &mp))
	ms := map[string]api.Machine{}
	for _, m := range mp.Machines {
		ms[m.ID] = m
	}
	var sp api.UnitStatePage
	require.NoError(t, json.Unmarshal(rc.states, &sp))
	slices.SortFunc(sp.States, func(x, y *api.UnitState) int {
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.MachineID, y.MachineID))
	})
	var up api.UnitPage
	require.NoError(t, json.Unmarshal(rc.units, &up))
	slices.SortFunc(up.Units, func(x, y *api.Unit) int { return cmp.Compare(x.Name, y.Name) })

	stateCell := func(s *api.UnitState, c string, full bool) string {
		return map[string]string{
			"unit": s.Name, "machine": referenceLegend(s.MachineID, ms, full), "load": s.SystemdLoadState,
			"active": s.SystemdActiveState, "sub": s.SystemdSubState, "hash": referenceHash(s.Hash, full), "reason": s.Reason,
		}[c]
	}
	unitCell := func(u *api.Unit, c string, full bool) string {
		g := referenceGlobal(u)
		switch c {
		case "unit":
			return u.Name
		case "global":
			return strconv.FormatBool(g)
		case "dstate":
			return u.DesiredState
		case "state":
			if g {
				return ""
			}
			return u.CurrentState
		case "target":
			if g {
				return "global"
			}
			return referenceLegend(u.MachineID, ms, full)
		case "hash":
			return referenceHash(api.FileFromOptions(u.Options).Hash().String(), full)
		case "desc":
			return api.FileFromOptions(u.Options).Description()
		case "reason":
			return u.UnplacedReason
		}
		panic(c)
	}
	render := func(cmd string, fields []string, full, legend bool) string {
		header := make([]string, len(fields))
		for i, f := range fields {
			header[i] = strings.ToUpper(f)
		}
		var rows [][]string
		if cmd == "list-units" {
			for _, s := range sp.States {
				r := make([]string, len(fields))
				for i, f := range fields {
					r[i] = stateCell(s, f, full)
				}
				rows = append(rows, r)
			}
		} else {
			for _, u := range up.Units {
				r := make([]string, len(fields))
				for i, f := range fields {
					r[i] = unitCell(u, f, full)
				}
				rows = append(rows, r)
			}
		}
		return referenceTable(header, rows, legend)
	}
	run := func(args ...string) string {
		res := runFleetctl(context.Background(), nil, append([]string{"--endpoint", url}, args...)...)
		require.NoError(t, res.err, res.stderr)
		return res.stdout
	}
	for _, c := range []struct {
		cmd      string
		defaults string
		all      string
	}{
		{"list-units", "unit,machine,active,sub", "unit,machine,load,active,sub,hash,reason"},
		{"list-unit-files", "unit,hash,dstate,state,target", "unit,global,dstate,state,target,hash,desc,reason"},
	} {
		for _, full := range []bool{false, true} {
			for _, legend := range []bool{true, false} {
				for _, fields := range []string{c.defaults, c.all} {
					args := []string{c.cmd, "--fields", fields}
					if full {
						args = append(args, "--full")
					}
					if !legend {
						args = append(args, "--no-legend")
					}
					t.Run(strings.Join(args, " "), func(t *testing.T) {
						got := run(args...)
						want := render(c.cmd, strings.Split(fields, ","), full, legend)
						require.Equal(t, strings.Count(want, "\n"), strings.Count(got, "\n"))
						require.True(t, want == got, "output differs from the reference rendering")
					})
				}
			}
		}
	}
	// -o json stays the wire objects, sorted.
	want, err := json.MarshalIndent(up.Units, "", "  ")
	require.NoError(t, err)
	require.Equal(t, string(want)+"\n", run("list-unit-files", "-o", "json"))
	want, err = json.MarshalIndent(sp.States, "", "  ")
	require.NoError(t, err)
	require.Equal(t, string(want)+"\n", run("list-units", "-o", "json"))
}
