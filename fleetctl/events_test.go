package fleetctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// startEvents runs `fleetctl events args...` until the test calls the
// returned stop, which returns what it printed and its error.
func (h *harness) startEvents(args ...string) (out *syncBuffer, stop func() error) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	var stdout, stderr syncBuffer
	cmd := fleetctl.NewCommand(&stdout, &stderr, func(string) string { return "" })
	cmd.SetArgs(append(append(h.global(), "events"), args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	h.t.Cleanup(cancel)
	return &stdout, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			h.t.Fatal("fleetctl events did not end when interrupted")
			return nil
		}
	}
}

func TestEventsCommand(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			out, stop := h.startEvents("-o", "json")
			// The first line says the stream is on.
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "stream.started") }, 5*time.Second, 10*time.Millisecond)

			h.addMachine(m1, "10.0.0.3", map[string]string{"role": "web"})
			dir := t.TempDir()
			require.NoError(t, h.run("start", "--no-block", writeUnit(t, dir, "hello.service", helloUnit)).err)
			h.place(m1, "hello.service", registry.StateLaunched)
			h.publish(m1, "hello.service", "loaded", "active", "running")
			h.setUnplaced("ssd.service", "no machine has metadata disk=ssd")

			// start submits a new unit in state launched: one event.
			want := []string{api.EventStreamStarted, api.EventMachineJoined, api.EventUnitSubmitted,
				api.EventLeaderChanged, api.EventUnitPlaced, api.EventUnitState, api.EventUnitUnplaceable}
			if driver == "api" {
				// Through fleetd, each change is also an audited call.
				want = []string{api.EventStreamStarted, api.EventMachineJoined, api.EventUnitSubmitted, api.EventAPICall,
					api.EventLeaderChanged, api.EventUnitPlaced, api.EventUnitState, api.EventUnitUnplaceable}
			}
			var events []api.Event
			require.Eventually(t, func() bool {
				events = nil
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					var e api.Event
					require.NoError(t, json.Unmarshal([]byte(line), &e), line)
					events = append(events, e)
				}
				return len(events) >= len(want)
			}, 5*time.Second, 10*time.Millisecond)
			var types []string
			for _, e := range events {
				types = append(types, e.Type)
			}
			require.Equal(t, want, types)
			var calls []string
			for _, e := range events {
				switch e.Type {
				case api.EventUnitSubmitted:
					require.Equal(t, api.Event{Type: api.EventUnitSubmitted, Time: e.Time, Revision: e.Revision,
						Unit: "hello.service", To: "launched"}, e)
				case api.EventUnitState:
					require.Equal(t, api.Event{Type: api.EventUnitState, Time: e.Time, Revision: e.Revision,
						Unit: "hello.service", MachineID: m1, To: "active/running"}, e)
				case api.EventAPICall:
					calls = append(calls, e.Action+" "+e.Unit+" "+e.To+": "+e.Result)
				}
			}
			if driver == "api" {
				require.Equal(t, []string{"unit.create hello.service launched: 201 Created"}, calls)
			}
			require.NoError(t, stop(), "interrupting the stream is how it ends")
		})
	}
}

func TestEventsText(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	out, stop := h.startEvents("--unit", "a*", "--type", "unit.state,unit.placed")
	// Text mode prints no start line: wait for the stream with a first
	// event that passes the filters.
	dir := t.TempDir()
	require.NoError(t, h.run("submit", writeUnit(t, dir, "a.service", helloUnit), writeUnit(t, dir, "b.service", helloUnit)).err)
	// The stream reports changes only: alternate the sub-state so that a
	// stream that connects late still sees one.
	subs := [2]string{"start-pre", "start"}
	i := 0
	require.Eventually(t, func() bool {
		i++
		h.publish(m1, "a.service", "loaded", "activating", subs[i%2])
		return strings.Contains(out.String(), "unit.state")
	}, 20*time.Second, 50*time.Millisecond)
	h.publish(m1, "a.service", "loaded", "activating", "start")
	h.place(m1, "b.service", registry.StateLaunched) // filtered out
	h.place(m1, "a.service", registry.StateLaunched)
	h.publish(m1, "a.service", "loaded", "active", "running")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "activating/start -> active/running") }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	last := lines[len(lines)-2:]
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d unit.placed\s+a.service on 113f16a7... \(launched\)$`, last[0])
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d unit.state\s+a.service on 113f16a7...: activating/start -> active/running$`, last[1])
	require.NotContains(t, out.String(), "b.service")

	r := h.run("events", "--unit", "[")
	require.Equal(t, fleetctl.ExitUsage, r.code)
}

func TestCompletion(t *testing.T) {
	h := setupListCluster(t, "api")
	ctx := h.ctx
	for shell, want := range map[string]string{"bash": "__start_fleetctl", "zsh": "#compdef fleetctl", "fish": "complete -c fleetctl"} {
		r := runFleetctl(ctx, nil, "completion", shell)
		require.NoError(t, r.err, shell)
		require.Contains(t, r.stdout, want, shell)
	}
	r := runFleetctl(ctx, nil, "completion", "tcsh")
	require.Equal(t, fleetctl.ExitUsage, r.code)

	// What the scripts ask: __complete with the words typed so far. The
	// cluster is found through FLEETCTL_ENDPOINT, as in any command.
	complete := func(args ...string) []string {
		r := runFleetctl(ctx, map[string]string{"FLEETCTL_ENDPOINT": h.socket}, append([]string{"__complete"}, args...)...)
		require.NoError(t, r.err)
		return strings.Split(strings.TrimSpace(r.stdout), "\n")
	}
	require.Equal(t, []string{"hello.service\tlaunched: Hello World", ":4"}, complete("status", "he"))
	require.Equal(t, []string{"db.service\tloaded", "everywhere.service\tlaunched", "idle.service\tinactive", ":4"},
		complete("stop", "hello.service", ""), "units given already are left out")
	got := complete("ssh", "")
	require.Contains(t, got, m1+"\t10.0.0.3")
	require.Contains(t, got, "hello.service\tlaunched: Hello World")
	require.Equal(t, []string{"table", "json", ":4"}, complete("list-units", "-o", ""))
	require.Equal(t, ":0", complete("start", "x")[len(complete("start", "x"))-1], "start also completes local files")
	// An unreachable cluster completes nothing, quickly.
	r = runFleetctl(ctx, map[string]string{"FLEETCTL_ENDPOINT": "unix:///nonexistent.sock"}, "__complete", "status", "")
	require.NoError(t, r.err)
	require.Equal(t, ":4", strings.TrimSpace(strings.Split(r.stdout, "\n")[0]))
}

func TestEventsTextAPICall(t *testing.T) {
	h := newHarness(t, "api")
	out, stop := h.startEvents("--type", "api.call")
	dir := t.TempDir()
	unit := writeUnit(t, dir, "hello.service", helloUnit)
	// A stream that connects late misses a call: repeat the submission
	// (answered 409 once the unit exists, and audited too) until one shows.
	require.Eventually(t, func() bool {
		h.run("submit", unit)
		return strings.Contains(out.String(), "api.call")
	}, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, h.run("destroy", "hello.service").err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "unit.destroy") }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d api.call\s+unknown unit.destroy hello.service( via \S+)?: 204 No Content$`, lines[len(lines)-1])
}
