package fleetctl_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

const helloUnit = `[Unit]
Description=Hello

[Service]
ExecStart=/bin/sleep 1000
`

func TestUnitLifecycle(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.3", nil)
			h.fakeFleet()
			dir := t.TempDir()
			hello := writeUnit(t, dir, "hello.service", helloUnit)

			steps := []struct {
				args []string
				want string
			}{
				{[]string{"submit", hello}, ""},
				{[]string{"load", "hello"}, "Unit hello.service loaded on 113f16a7.../10.0.0.3\n"},
				{[]string{"start", hello}, "Unit hello.service launched on 113f16a7.../10.0.0.3\n"},
				// Starting a started unit reports it again at once.
				{[]string{"start", "hello.service"}, "Unit hello.service launched on 113f16a7.../10.0.0.3\n"},
				{[]string{"stop", "hello"}, "Unit hello.service loaded on 113f16a7.../10.0.0.3\n"},
				{[]string{"unload", "hello"}, "Unit hello.service inactive\n"},
				{[]string{"cat", "hello"}, helloUnit},
				{[]string{"destroy", "hello"}, "Destroyed hello.service\n"},
			}
			for _, s := range steps {
				r := h.run(s.args...)
				require.NoError(t, r.err, "%v", s.args)
				require.Equal(t, s.want, r.stdout, "%v", s.args)
				require.Empty(t, r.stderr, "%v", s.args)
			}
			r := h.run("list-unit-files", "--no-legend")
			require.NoError(t, r.err)
			require.Empty(t, r.stdout)
		})
	}
}

func TestStartSeveralFromFiles(t *testing.T) {
	h := newHarness(t, "api")
	h.addMachine(m1, "10.0.0.3", nil)
	h.fakeFleet("bad.service")
	dir := t.TempDir()
	a := writeUnit(t, dir, "a.service", "[Service]\nExecStart=/bin/a\n")
	b := writeUnit(t, dir, "b.service", "[Service]\nExecStart=/bin/b\n")
	bad := writeUnit(t, dir, "bad.service", "[Service]\nExecStart=/bin/false\n")

	r := h.run("start", a, b)
	require.NoError(t, r.err)
	// Each unit is reported as it comes up, whichever is first.
	require.ElementsMatch(t, []string{"Unit a.service launched on 113f16a7.../10.0.0.3", "Unit b.service launched on 113f16a7.../10.0.0.3"},
		strings.Split(strings.TrimSpace(r.stdout), "\n"))

	// A unit that fails is reported, and the command fails.
	r = h.run("start", bad)
	require.Equal(t, fleetctl.ExitUnitFailed, r.code)
	require.Equal(t, "Unit bad.service failed on 113f16a7.../10.0.0.3\n", r.stdout)
	require.EqualError(t, r.err, "unit bad.service failed to start; see 'fleetctl status bad.service' and 'fleetctl journal bad.service'")

	r = h.run("list-units", "--no-legend")
	require.NoError(t, r.err)
	require.Equal(t, ""+
		"a.service\t113f16a7.../10.0.0.3\tactive\trunning\n"+
		"b.service\t113f16a7.../10.0.0.3\tactive\trunning\n"+
		"bad.service\t113f16a7.../10.0.0.3\tfailed\tfailed\n", r.stdout)
}

func TestNoBlockAndGlobal(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			dir := t.TempDir()
			hello := writeUnit(t, dir, "hello.service", helloUnit)
			global := writeUnit(t, dir, "global.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n")

			// No engine runs: only --no-block and global units return.
			r := h.run("start", "--no-block", hello)
			require.NoError(t, r.err)
			require.Equal(t, "Triggered unit hello.service start\n", r.stdout)
			r = h.run("start", global)
			require.NoError(t, r.err)
			require.Equal(t, "Triggered global unit global.service start\n", r.stdout)
			r = h.run("stop", "global")
			require.NoError(t, r.err)
			require.Equal(t, "Triggered global unit global.service stop\n", r.stdout)
			r = h.run("unload", "--no-block", "hello", "global")
			require.NoError(t, r.err)
			require.Equal(t, "Triggered unit hello.service unload\nTriggered global unit global.service unload\n", r.stdout)

			// Blocking is bounded by --block-attempts.
			start := time.Now()
			r = h.run("load", "--block-attempts=3", "hello")
			require.Equal(t, fleetctl.ExitTimeout, r.code)
			require.EqualError(t, r.err, "timed out after 3 attempts waiting for unit hello.service to be loaded; check 'fleetctl list-unit-files' and 'fleetctl list-units'")
			require.Less(t, time.Since(start), 2*time.Second)
			u, err := api.NewRegistryClient(h.reg).Unit(h.ctx, "hello.service")
			require.NoError(t, err)
			require.Equal(t, "loaded", u.DesiredState, "the target state is set even if the wait times out")

			r = h.run("stop", "hello")
			require.Equal(t, 1, r.code)
			require.EqualError(t, r.err, "cannot stop unit hello.service: it is not loaded on any machine (state inactive); start it first")
		})
	}
}

func TestSubmitReplaceAndWarnings(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			dir := t.TempDir()
			hello := writeUnit(t, dir, "hello.service", helloUnit+"\n[X-Fleet]\nMachineOf=db.service\nColour=blue\n")
			r := h.run("submit", hello)
			require.NoError(t, r.err)
			require.Equal(t, "WARNING: unit hello.service: unknown [X-Fleet] option \"Colour\" ignored\n", r.stderr)

			// Submitting again is a no-op; a changed local file is only warned about.
			r = h.run("submit", hello)
			require.NoError(t, r.err)
			require.Empty(t, r.stderr)
			writeUnit(t, dir, "hello.service", "[Service]\nExecStart=/bin/new\n")
			r = h.run("submit", hello)
			require.NoError(t, r.err)
			require.Equal(t, "WARNING: unit hello.service in the cluster differs from local unit file "+hello+"; use --replace to replace it\n", r.stderr)
			r = h.run("cat", "hello")
			require.NoError(t, r.err)
			require.Contains(t, r.stdout, "MachineOf=db.service")

			r = h.run("submit", "--replace", hello)
			require.NoError(t, r.err)
			require.Empty(t, r.stderr)
			r = h.run("cat", "hello")
			require.NoError(t, r.err)
			require.Equal(t, "[Service]\nExecStart=/bin/new\n", r.stdout)
		})
	}
}

func TestTemplates(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.3", nil)
			h.fakeFleet()
			dir := t.TempDir()
			tmpl := writeUnit(t, dir, "app@.service", "[Service]\nExecStart=/bin/app %i\n")

			r := h.run("start", tmpl)
			require.Equal(t, 2, r.code)
			require.EqualError(t, r.err, "unit app@.service is a template; start an instance such as app@1.service")

			// The template is submitted now: an instance takes its options.
			r = h.run("start", "app@1")
			require.NoError(t, r.err)
			require.Equal(t, "Unit app@1.service launched on 113f16a7.../10.0.0.3\n", r.stdout)
			r = h.run("cat", "app@1")
			require.NoError(t, r.err)
			require.Equal(t, "[Service]\nExecStart=/bin/app %i\n", r.stdout)

			// An instance path whose template file sits beside it.
			writeUnit(t, dir, "web@.service", "[Service]\nExecStart=/bin/web %i\n")
			r = h.run("load", filepath.Join(dir, "web@8080.service"))
			require.NoError(t, r.err)
			require.Equal(t, "Unit web@8080.service loaded on 113f16a7.../10.0.0.3\n", r.stdout)

			r = h.run("start", "db@1")
			require.Equal(t, 1, r.code)
			require.ErrorContains(t, r.err, "unit db@1.service has no options, and its template db@.service has not been submitted")
		})
	}
}

func TestCommandErrors(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			dir := t.TempDir()
			broken := writeUnit(t, dir, "broken.service", "[Service]\nExecStart=/bin/true\nthis line is broken\n")
			conflicting := writeUnit(t, dir, "c.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=abc\nGlobal=true\n")
			empty := writeUnit(t, dir, "empty.service", "# nothing\n")
			tests := []struct {
				name string
				args []string
				code int
				want string
			}{
				{"cat unknown unit", []string{"cat", "nope"}, 7, "unit nope.service not found"},
				{"start unknown unit", []string{"start", "nope"}, 7, "unit nope.service not found: it is not in the cluster and there is no file nope; check the name with 'fleetctl list-unit-files'"},
				{"stop unknown unit", []string{"stop", "nope.service"}, 7, "unit nope.service not found"},
				{"unload unknown unit", []string{"unload", "nope"}, 7, "unit nope.service not found"},
				{"destroy unknown unit", []string{"destroy", "nope"}, 7, "unit nope.service not found"},
				{"status unknown unit", []string{"status", "nope"}, 7, "unit nope.service not found"},
				{"journal unknown unit", []string{"journal", "nope"}, 7, "unit nope.service not found"},
				{"restart unknown unit", []string{"restart", "nope"}, 7, "unit nope.service not found"},
				{"pattern matching nothing", []string{"stop", "web@*"}, 7, `no unit in the cluster matches "web@*"`},
				{"bad pattern", []string{"destroy", "web[*"}, 2, `bad pattern "web[*"`},
				{"invalid name", []string{"start", "bad name"}, 2, `invalid unit name "bad name.service": character ' ' not allowed (allowed: A-Z a-z 0-9 : _ . @ -)`},
				{"two @", []string{"cat", "a@b@c"}, 2, `invalid unit name "a@b@c.service": more than one '@'`},
				{"broken unit file", []string{"submit", broken}, 2, broken + `: parse unit file: line 3: "this line is broken" has no '=' (expected Name=Value, a [Section] header or a comment)`},
				{"empty unit file", []string{"start", empty}, 2, empty + ": parse unit file: unit file has no options"},
				{"fleet rules", []string{"load", conflicting}, 2, "unit c.service: MachineID cannot be combined with Global"},
				{"no units", []string{"start"}, 2, "start: requires at least 1 arg(s), only received 0; see 'fleetctl help start'"},
				{"cat two units", []string{"cat", "a", "b"}, 2, "cat: accepts 1 arg(s), received 2"},
				{"journal lines", []string{"journal", "-n", "-1", "x"}, 2, "journal: --lines must be at least 0, not -1"},
				{"bad flag", []string{"start", "--bogus", "x"}, 2, "unknown flag: --bogus"},
				{"unknown command", []string{"launch", "x"}, 2, `unknown command "launch"; run 'fleetctl help' for the list of commands`},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := h.run(tt.args...)
					require.Equal(t, tt.code, r.code, "err: %v", r.err)
					require.ErrorContains(t, r.err, tt.want)
					require.Empty(t, r.stdout)
				})
			}

			// destroy goes on past a unit it cannot find.
			writeUnit(t, dir, "ok.service", helloUnit)
			require.NoError(t, h.run("submit", filepath.Join(dir, "ok.service")).err)
			r := h.run("destroy", "nope", "ok")
			require.Equal(t, 7, r.code)
			require.Equal(t, "Destroyed ok.service\n", r.stdout)
			require.EqualError(t, r.err, "unit nope.service not found")
		})
	}
}
