package fleetctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

// recordedCluster is a fleetd's answers to the list commands, encoded once:
// FLEET_BENCH_UNITS units (default 100,000) on 10,000 machines, every fifth
// unit global (on 6 machines), so 100,000 units make ~123,000 state rows as
// the 10,000 x 100,000 scale run had.
type recordedCluster struct {
	machines, states, units []byte
	// summaries is the answer to GET /fleet/v1/units?view=summary of a
	// server that has summaries; nil plays one that has not.
	summaries           []byte
	stateRows, unitRows int
}

func recordCluster(tb testing.TB, n int) recordedCluster {
	tb.Helper()
	const machines = 10000
	ms := make([]api.Machine, machines)
	for i := range ms {
		ms[i] = api.Machine{ID: fmt.Sprintf("%032x", i+1), PrimaryIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Metadata: map[string]string{"rack": strconv.Itoa(i % 40)}}
	}
	var ss []*api.UnitState
	us := make([]*api.Unit, 0, n)
	// Shuffled the way a prefix read of per-machine state keys returns them:
	// by machine, not by unit name.
	for i := range n {
		name := fmt.Sprintf("svc-%06d.service", (i*7919)%n)
		opts := []*api.UnitOption{
			{Section: "Unit", Name: "Description", Value: "unit " + name},
			{Section: "Service", Name: "ExecStart", Value: "/bin/sleep " + strconv.Itoa(i)},
		}
		m := ms[i%machines].ID
		switch {
		case i%7 == 1: // an [X-Fleet] section that does not make the unit global
			opts = append(opts, &api.UnitOption{Section: "X-Fleet", Name: "MachineMetadata", Value: "rack=1"})
		case i%11 == 2:
			opts = append(opts, &api.UnitOption{Section: "X-Fleet", Name: "Global", Value: "false"})
		case i%13 == 3: // on a machine that has gone: no legend IP
			m = fmt.Sprintf("%032x", machines+i)
		}
		u := &api.Unit{Name: name, Options: opts, DesiredState: "launched", CurrentState: "launched", MachineID: m}
		if i%17 == 4 { // not scheduled: empty cells print as "-"
			u = &api.Unit{Name: name, Options: opts[1:], DesiredState: "inactive", CurrentState: "inactive"}
		}
		if i%5 == 0 {
			opts = append(opts, &api.UnitOption{Section: "X-Fleet", Name: "Global", Value: "true"})
			u = &api.Unit{Name: name, Options: opts, DesiredState: "launched"}
		}
		us = append(us, u)
		hash := api.FileFromOptions(opts).Hash().String()
		places := 1
		if i%5 == 0 {
			places = 2 // every fifth global unit on 2 machines: ~123k rows at 100k units
		}
		for p := range places {
			s := &api.UnitState{Name: name, Hash: hash, MachineID: ms[(i+p*3)%machines].ID, SystemdLoadState: "loaded", SystemdActiveState: "active", SystemdSubState: "running"}
			if i%19 == 5 {
				s.SystemdSubState, s.Reason = "", "refused"
			}
			ss = append(ss, s)
		}
	}
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		require.NoError(tb, err)
		return b
	}
	sums := enc(api.SummariesOf(us))
	return recordedCluster{
		machines:  enc(api.MachinePage{Machines: ms}),
		states:    enc(api.UnitStatePage{States: ss}),
		units:     enc(api.UnitPage{Units: us}),
		summaries: append(append([]byte(`{"view":"summary","units":`), sums...), '}'),
		stateRows: len(ss),
		unitRows:  len(us),
	}
}

// serve answers fleetctl's list requests from the recording, one page each.
// A recording without summaries answers ?view=summary with units, as a
// server that does not know it.
func (rc recordedCluster) serve(tb testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/fleet/v1/machines":
			_, _ = w.Write(rc.machines)
		case "/fleet/v1/state":
			_, _ = w.Write(rc.states)
		case "/fleet/v1/units":
			if rc.summaries != nil && r.URL.Query().Get("view") == "summary" {
				_, _ = w.Write(rc.summaries)
				return
			}
			_, _ = w.Write(rc.units)
		default:
			http.Error(w, `{"error":{"code":404,"message":"not recorded"}}`, http.StatusNotFound)
		}
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkListCommands runs the real list-units and list-unit-files into
// io.Discard against a recorded answer of FLEET_BENCH_UNITS units (default
// 100,000: 120,000 state rows), so what it times is fleetctl's own work:
// decoding, sorting, formatting.
//
//	go test ./fleetctl/ -run '^$' -bench BenchmarkListCommands -benchtime 5x -cpuprofile /tmp/list.prof
func BenchmarkListCommands(b *testing.B) {
	n := 100000
	if v := os.Getenv("FLEET_BENCH_UNITS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FLEET_BENCH_UNITS=%q: %v", v, err)
		}
	}
	rc := recordCluster(b, n)
	url := rc.serve(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	old := rc
	old.summaries = nil
	oldURL := old.serve(b)
	for _, c := range []struct {
		name, cmd, url string
		rows           int
	}{
		{"list-units", "list-units", url, rc.stateRows},
		{"list-unit-files", "list-unit-files", url, rc.unitRows},
		// A server without summaries: fleetctl summarizes the units' options.
		{"list-unit-files-old-server", "list-unit-files", oldURL, rc.unitRows},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cmd := fleetctl.NewCommand(io.Discard, io.Discard, func(string) string { return "" })
				cmd.SetArgs([]string{"--endpoint", c.url, c.cmd})
				require.NoError(b, cmd.ExecuteContext(ctx))
			}
			b.ReportMetric(float64(c.rows), "rows")
		})
	}
}
