package functional

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// TestCluster runs the scenarios in which no host fails, on three hosts, a
// three-member etcd cluster and one dockerd for all hosts: fleetctl's
// commands, the machines API, and fleet's scheduling rules.
func TestCluster(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared, conf: map[string]string{"agent_ttl": "5"}})
	ctx := e.ctx
	h1, h2, h3 := e.Host("h1"), e.Host("h2"), e.Host("h3")
	all := []*hosts.Host{h1, h2, h3}

	t.Run("fleetctl version, help and -h", func(t *testing.T) {
		version := strings.TrimSpace(e.fleetctl(t, h1, "version"))
		require.Regexp(t, `^fleetctl version \S+$`, version)
		require.Equal(t, version, strings.TrimSpace(e.fleetctl(t, h1, "--version")))
		help := e.fleetctl(t, h1, "help")
		for _, cmd := range []string{"list-units", "list-machines", "start", "destroy", "journal"} {
			require.Contains(t, help, cmd)
		}
		for _, args := range [][]string{{}, {"-h"}, {"--help"}} {
			require.Equal(t, help, e.fleetctl(t, h1, args...), "fleetctl %v prints the same help", args)
		}
		t.Run("help shows the version", func(t *testing.T) {
			needs(t, featHelpVersion)
			require.Contains(t, help, strings.TrimPrefix(version, "fleetctl version "))
		})
		out, err := e.Fleetctl(ctx, h1, "no-such-command")
		require.Error(t, err)
		require.Contains(t, out, "no-such-command")
	})

	t.Run("FLEETCTL_ENDPOINT selects the API", func(t *testing.T) {
		remote := "https://" + h2.IP + ":" + platform.APIPort
		// The cluster is secured: a remote endpoint needs the CA and a token.
		creds := []string{"FLEETCTL_CA_FILE=" + platform.HostCAFile, "FLEETCTL_TOKEN=" + e.Security.AdminToken}
		out, err := h1.Exec(ctx, append(append([]string{"env"}, creds...), "FLEETCTL_ENDPOINT="+remote, "fleetctl", "list-machines", "--no-legend", "--full")...)
		require.NoError(t, err, "%s", out)
		require.Equal(t, 3, strings.Count(strings.TrimSpace(string(out)), "\n")+1, "%s", out)
		out, err = h1.Exec(ctx, "env", "FLEETCTL_ENDPOINT=http://127.0.0.1:1", "FLEETCTL_REQUEST_TIMEOUT=1s", "fleetctl", "list-machines")
		require.Error(t, err)
		require.Contains(t, string(out), "127.0.0.1:1", "the error names the endpoint it tried")
		out, err = h1.Exec(ctx, append(append([]string{"env"}, creds...), "FLEETCTL_ENDPOINT=http://127.0.0.1:1", "fleetctl", "--endpoint", remote, "list-machines")...)
		require.NoError(t, err, "--endpoint wins over FLEETCTL_ENDPOINT: %s", out)
	})

	t.Run("list-machines shows every host", func(t *testing.T) {
		out := e.fleetctl(t, h1, "list-machines", "--full")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Equal(t, []string{"MACHINE", "IP", "METADATA"}, strings.Fields(lines[0]))
		require.Len(t, lines, 4)
		for _, h := range all {
			require.Regexp(t, regexp.MustCompile(h.MachineID+`\s+`+regexp.QuoteMeta(h.IP)+`\s+hostname=`+h.Name), out)
		}
	})

	t.Run("machines API lists every machine", func(t *testing.T) {
		a := e.API(h2)
		code, body, err := a.Do(ctx, http.MethodGet, "/machines", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var page struct {
			Machines []platform.Machine `json:"machines"`
		}
		require.NoError(t, json.Unmarshal(body, &page))
		require.Len(t, page.Machines, 3)
		for _, h := range all {
			require.Contains(t, page.Machines, platform.Machine{ID: h.MachineID, PrimaryIP: h.IP, Metadata: map[string]string{"hostname": h.Name}, State: "active"})
		}
		code, body, err = a.Do(ctx, http.MethodGet, "/machines?nextPageToken=EwBMLg==", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, code, "a bad page token is refused: %s", body)
		require.True(t, json.Valid(body), "errors are JSON: %s", body)
	})

	t.Run("start, status, journal, cat, stop, destroy", func(t *testing.T) {
		e.scenario(t)
		start := time.Now()
		out := e.fleetctl(t, h1, "start", unit("hello.service"))
		figure(t, "fleetctl start -> active", time.Since(start), "one unit, incl. fleetctl's own start")
		require.Regexp(t, `Unit hello.service launched on [0-9a-f]{8}\.\.\./10\.`, out)
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 1)
		require.NoError(t, err)
		h := e.byID(t, p.On("hello.service"))
		require.Equal(t, "active", e.sh(t, h, "systemctl", "is-active", "hello.service"))

		out = e.fleetctl(t, h1, "list-units", "--no-legend")
		require.Regexp(t, `hello\.service\s+[0-9a-f]{8}\.\.\./`+regexp.QuoteMeta(h.IP)+`\s+active\s+running`, out)
		out = e.fleetctl(t, h1, "list-unit-files", "--no-legend")
		require.Regexp(t, `hello\.service\s+[0-9a-f]{7}\s+launched\s+launched\s+[0-9a-f]{8}\.\.\./`, out)

		out = e.fleetctl(t, h1, "cat", "hello")
		require.Contains(t, out, `ExecStart=/bin/sh -c "while true; do echo Hello, World!; sleep 1; done"`)
		require.Contains(t, out, "Description=Says hello every second")

		// status and journal are machine-local: asked on every host, the
		// ones not running the unit forward to the one that does.
		for _, from := range all {
			out = e.fleetctl(t, from, "status", "hello.service")
			require.Contains(t, out, "Active: active (running)", "status asked on %s", from.Name)
			require.Contains(t, out, "hello.service")
		}
		var journal string
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			journal, _ = e.Fleetctl(ctx, h3, "journal", "hello.service")
			return strings.Count(journal, "Hello, World!") >= 2
		}), "journal: %s", journal)
		out = e.fleetctl(t, h2, "journal", "--lines", "1", "hello.service")
		require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "--lines 1: %q", out)

		out = e.fleetctl(t, h1, "stop", "hello.service")
		state, _ := h.Exec(ctx, "systemctl", "is-active", "hello.service")
		require.Equal(t, "inactive", strings.TrimSpace(string(state)), "stop returns once the unit is stopped: %s", out)
		out = e.fleetctl(t, h1, "list-unit-files", "--no-legend")
		require.Regexp(t, `hello\.service\s+[0-9a-f]{7}\s+loaded\s+loaded\s+`, out)

		e.fleetctl(t, h1, "destroy", "hello.service")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			_, err := h.Exec(ctx, "test", "-e", "/run/fleet/units/hello.service")
			return err != nil
		}), "the unit file must be removed from the host")
		require.NotContains(t, e.fleetctl(t, h1, "list-unit-files", "--no-legend"), "hello.service")
	})

	t.Run("list-unit-files lists units in name order", func(t *testing.T) {
		e.scenario(t)
		var names []string
		for _, i := range []int{7, 3, 11, 1, 9, 20, 2, 15} {
			names = append(names, fmt.Sprintf("single@%02d.service", i))
		}
		e.fleetctl(t, h1, append([]string{"submit"}, units(names...)...)...)
		e.fleetctl(t, h1, "submit", unit("hello.service"), unit("goodbye.service"))
		var got []string
		for _, row := range e.listUnitFiles(t, h2) {
			got = append(got, row[0])
		}
		want := append(slices.Clone(names), "hello.service", "goodbye.service")
		sort.Strings(want)
		require.Equal(t, want, got)
	})

	t.Run("bad input gets a clear error and a non-zero exit", func(t *testing.T) {
		e.scenario(t)
		out, err := e.Fleetctl(ctx, h1, "start", "no-such-unit.service")
		require.Error(t, err)
		require.Contains(t, out, "no-such-unit.service")
		writeUnit(t, h1, "broken.service", "[Service\nExecStart=/bin/true\n")
		out, err = e.Fleetctl(ctx, h1, "submit", unit("broken.service"))
		require.Error(t, err)
		require.Contains(t, strings.ToLower(out), "broken.service")
		out, err = e.Fleetctl(ctx, h1, "start", unit("single@.service"))
		require.Error(t, err)
		require.Contains(t, out, "template")
		out, err = e.Fleetctl(ctx, h1, "--endpoint", "http://127.0.0.1:1", "--request-timeout", "1s", "list-units")
		require.Error(t, err)
		require.Contains(t, out, "127.0.0.1:1")
	})

	t.Run("submit, load and start with --replace", func(t *testing.T) {
		e.scenario(t)
		body := func(v int) string {
			return fmt.Sprintf("[Unit]\nDescription=version %d\n[Service]\nExecStart=/bin/sh -c \"while true; do echo version-%d; sleep 1; done\"\n", v, v)
		}
		for _, h := range all {
			writeUnit(t, h, "sub.service", body(1))
			writeUnit(t, h, "lod.service", body(1))
			writeUnit(t, h, "sta.service", body(1))
		}
		e.fleetctl(t, h1, "submit", unit("sub.service"))
		e.fleetctl(t, h1, "load", unit("lod.service"))
		e.fleetctl(t, h1, "start", unit("sta.service"))
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 1)
		require.NoError(t, err)
		staHost := e.byID(t, p.On("sta.service"))
		pid := mainPID(t, ctx, staHost, "sta.service")
		for _, h := range all {
			for _, n := range []string{"sub.service", "lod.service", "sta.service"} {
				writeUnit(t, h, n, body(2))
			}
		}

		// Without --replace the cluster keeps its version, and says so.
		out, err := e.Fleetctl(ctx, h1, "submit", unit("sub.service"))
		require.NoError(t, err, out)
		require.Contains(t, out, "differs")
		require.Contains(t, e.fleetctl(t, h2, "cat", "sub.service"), "version-1")

		e.fleetctl(t, h1, "submit", "--replace", unit("sub.service"))
		require.Contains(t, e.fleetctl(t, h2, "cat", "sub.service"), "version-2")

		e.fleetctl(t, h1, "load", "--replace", unit("lod.service"))
		require.Contains(t, e.fleetctl(t, h2, "cat", "lod.service"), "version-2")
		lod := e.unitOn(t, "lod.service")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			out, _ := lod.Exec(ctx, "systemctl", "cat", "lod.service")
			return strings.Contains(string(out), "version-2")
		}), "the loaded unit's file on %s is replaced", lod.Name)
		state, _ := lod.Exec(ctx, "systemctl", "is-active", "lod.service")
		require.Equal(t, "inactive", strings.TrimSpace(string(state)), "a replaced loaded unit stays loaded")

		e.fleetctl(t, h1, "start", "--replace", unit("sta.service"))
		require.Contains(t, e.fleetctl(t, h2, "cat", "sta.service"), "version-2")
		sta := e.unitOn(t, "sta.service")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			out, err := sta.Exec(ctx, "systemctl", "show", "-p", "ExecStart", "--value", "sta.service")
			return err == nil && strings.Contains(string(out), "version-2") && mainPID(t, ctx, sta, "sta.service") != pid
		}), "the running unit runs its new version")
		out = e.fleetctl(t, h1, "list-units", "--no-legend", "--fields", "unit,active")
		require.Regexp(t, `sta\.service\s+active`, out)
	})

	t.Run("restart", func(t *testing.T) {
		needs(t, featRestart)
		e.scenario(t)
		e.fleetctl(t, h1, "start", unit("hello.service"))
		h := e.unitOn(t, "hello.service")
		pid := mainPID(t, ctx, h, "hello.service")
		e.fleetctl(t, h2, "restart", "hello.service")
		_, err := e.API(h1).WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool {
			return p.On("hello.service") == h.MachineID && mainPID(t, ctx, h, "hello.service") != pid
		})
		require.NoError(t, err, "restart restarts the unit where it runs")
		require.Contains(t, e.fleetctl(t, h1, "list-unit-files", "--no-legend"), "launched")
	})

	t.Run("[Install] WantedBy units start with their peer", func(t *testing.T) {
		needs(t, featWantedBy)
		e.scenario(t)
		e.fleetctl(t, h1, "load", unit("hello.service"), unit("discovery.service"))
		h := e.unitOn(t, "discovery.service")
		require.Equal(t, h, e.unitOn(t, "hello.service"), "MachineOf puts discovery with hello")
		activeState := func() string {
			out, _ := h.Exec(ctx, "systemctl", "show", "-p", "ActiveState", "--value", "discovery.service")
			return strings.TrimSpace(string(out))
		}
		require.Equal(t, "inactive", activeState(), "loaded, not started")
		e.fleetctl(t, h1, "start", "hello.service")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool { return activeState() == "active" }),
			"systemd starts discovery.service with hello.service (WantedBy=hello.service)")
		e.fleetctl(t, h1, "stop", "hello.service")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool { return activeState() == "inactive" }),
			"and stops it with hello.service (BindsTo=hello.service)")
	})

	t.Run("template units follow %i into machine metadata", func(t *testing.T) {
		e.scenario(t)
		t.Run("the template itself can be submitted", func(t *testing.T) {
			needs(t, featTemplateSpecifiers)
			e.fleetctl(t, h1, "submit", unit("metadata@.service"))
		})
		// Instances come from the template file beside them.
		for i := len(all) - 1; i >= 0; i-- { // backwards: placement must not depend on order
			e.fleetctl(t, h1, "start", unit("metadata@"+all[i].Name+".service"))
		}
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		for _, h := range all {
			require.Equal(t, h.MachineID, p.On("metadata@"+h.Name+".service"))
		}
		out, err := e.Fleetctl(ctx, h1, "start", "--block-attempts=20", unit("metadata@invalid.service"))
		require.Error(t, err, "no machine has hostname=invalid: %s", out)
		time.Sleep(settle)
		p, err = e.API(h1).WaitCount(ctx, time.Second, 3)
		require.NoError(t, err, "metadata@invalid.service runs nowhere")
	})

	t.Run("conflicts: five units on three machines", func(t *testing.T) {
		e.scenario(t)
		for i := range 5 {
			e.fleetctl(t, h1, "start", "--no-block", unit(fmt.Sprintf("conflict.%d.service", i)))
		}
		require.Len(t, e.listUnitFiles(t, h1), 5)
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		time.Sleep(settle)
		p2, err := e.API(h2).WaitCount(ctx, time.Second, 3)
		require.NoError(t, err, "two of the five stay unplaced")
		require.Equal(t, p, p2, "and nothing moves")
		requireDistinctMachines(t, p)
	})

	t.Run("conflicts: multiple values", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, append([]string{"start", "--no-block"}, units("multi.0.service", "multi.1.service", "multi.2.service", "multi.3.service")...)...)
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		time.Sleep(settle)
		_, err = e.API(h1).WaitCount(ctx, time.Second, 3)
		require.NoError(t, err, "the four units conflict pairwise: one stays unplaced")
		requireDistinctMachines(t, p)
	})

	t.Run("conflicts: one way", func(t *testing.T) {
		e.scenario(t)
		// Both may only run on h1: the one that conflicts runs, the other,
		// which declares no conflict, is kept off h1 all the same.
		onH1 := "\n[X-Fleet]\nMachineMetadata=hostname=h1\n"
		writeUnit(t, h1, "cwh.service", sleeperUnit+onH1+"Conflicts=one-way.service\n")
		writeUnit(t, h1, "one-way.service", sleeperUnit+onH1)
		e.fleetctl(t, h1, "start", unit("cwh.service"))
		e.fleetctl(t, h1, "start", "--no-block", unit("one-way.service"))
		time.Sleep(settle)
		p, err := e.API(h1).WaitCount(ctx, time.Second, 1)
		require.NoError(t, err)
		require.Equal(t, h1.MachineID, p.On("cwh.service"))
		require.Len(t, e.listUnitFiles(t, h1), 2)
		e.fleetctl(t, h1, "destroy", "cwh.service")
		p, err = e.API(h1).WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool {
			return p.Count() == 1 && p.On("one-way.service") == h1.MachineID
		})
		require.NoError(t, err, "destroying the conflicting unit lets the other start")
	})

	t.Run("MachineID pins a unit", func(t *testing.T) {
		e.scenario(t)
		for _, h := range all {
			e.fleetctl(t, h1, "start", unit("pinned@"+h.MachineID+".service"))
		}
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		for _, h := range all {
			require.Equal(t, h.MachineID, p.On("pinned@"+h.MachineID+".service"))
		}
	})

	t.Run("MachineOf places pairs together", func(t *testing.T) {
		e.scenario(t)
		for i := range 3 {
			e.fleetctl(t, h1, "start", "--no-block", unit(fmt.Sprintf("ping.%d.service", i)), unit(fmt.Sprintf("pong.%d.service", i)))
		}
		require.Len(t, e.listUnitFiles(t, h1), 6)
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 6)
		require.NoError(t, err)
		for i := range 3 {
			ping := p.On(fmt.Sprintf("ping.%d.service", i))
			require.NotEmpty(t, ping)
			require.Equal(t, ping, p.On(fmt.Sprintf("pong.%d.service", i)), "pair %d", i)
		}
	})

	t.Run("Replaces displaces a unit to another machine", func(t *testing.T) {
		needs(t, featReplaces)
		e.scenario(t)
		e.fleetctl(t, h1, "start", unit("replace.0.service"))
		first := e.unitOn(t, "replace.0.service")
		// replace.1 may only run where replace.0 runs now, and replaces it.
		for _, h := range all {
			writeUnit(t, h, "replace.1.service", sleeperUnit+"\n[X-Fleet]\nReplaces=replace.0.service\nMachineMetadata=hostname="+first.Name+"\n")
		}
		start := time.Now()
		e.fleetctl(t, h1, "start", "--no-block", unit("replace.1.service"))
		require.Len(t, e.listUnitFiles(t, h1), 2)
		p, err := e.API(h1).WaitActive(ctx, 15*time.Second, func(p platform.Placement) bool {
			r0 := p.On("replace.0.service")
			return p.Count() == 2 && p.On("replace.1.service") == first.MachineID && r0 != "" && r0 != first.MachineID
		})
		require.NoError(t, err, "replace.1 runs on %s, replace.0 moved elsewhere", first.Name)
		figure(t, "replace: both active", time.Since(start), "")
		_ = p
	})

	t.Run("circular Replaces run one unit", func(t *testing.T) {
		needs(t, featReplaces)
		e.scenario(t)
		for _, h := range all {
			writeUnit(t, h, "replace.0.service", sleeperUnit+"\n[X-Fleet]\nReplaces=replace.1.service\n")
		}
		e.fleetctl(t, h1, "start", unit("replace.0.service"))
		e.fleetctl(t, h1, "start", "--no-block", unit("replace.1.service"))
		require.Len(t, e.listUnitFiles(t, h1), 2)
		time.Sleep(settle)
		p, err := e.API(h1).WaitCount(ctx, time.Second, 1)
		require.NoError(t, err, "units that replace each other: only one runs")
		require.NotEmpty(t, p.On("replace.0.service"), "the one already running")
	})

	t.Run("global units run everywhere, with status", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, "start", "--no-block", unit("hello.service"), unit("goodbye.service"))
		_, err := e.API(h1).WaitCount(ctx, 10*time.Second, 2)
		require.NoError(t, err)
		start := time.Now()
		e.fleetctl(t, h1, "start", "--no-block", unit("global.service"))
		p, err := e.API(h1).WaitCount(ctx, 10*time.Second, 5)
		require.NoError(t, err)
		figure(t, "global unit active on 3 hosts", time.Since(start), "")
		require.Len(t, p["global.service"], 3)
		for _, h := range all {
			require.Contains(t, p["global.service"], h.MachineID)
			out := e.fleetctl(t, h, "status", "global.service")
			require.Contains(t, out, "Active: active (running)", "status of a global unit, asked on %s", h.Name)
		}
		out := e.fleetctl(t, h1, "list-units", "--no-legend", "--full", "--fields", "unit,machine,active")
		require.Equal(t, 3, strings.Count(out, "global.service"), "%s", out)

		t.Run("restart", func(t *testing.T) {
			needs(t, featRestart)
			before := e.pids(t, platform.Placement{"global.service": p["global.service"]})
			e.fleetctl(t, h1, "restart", "global.service")
			require.NoError(t, platform.Wait(ctx, 15*time.Second, func() bool {
				q, err := e.API(h1).States(ctx)
				if err != nil || len(platform.Active(q)["global.service"]) != 3 {
					return false
				}
				for k, v := range e.pids(t, platform.Placement{"global.service": p["global.service"]}) {
					if before[k] == v {
						return false
					}
				}
				return true
			}), "every instance restarted")
		})
	})

	t.Run("conflicting global units", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, "start", "--no-block", unit("conflict-global.0.service"))
		_, err := e.API(h1).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		e.fleetctl(t, h1, "start", "--no-block", unit("conflict-global.1.service"))
		time.Sleep(settle)
		p, err := e.API(h1).WaitCount(ctx, time.Second, 3)
		require.NoError(t, err, "the second global conflicts with the first on every machine: it runs nowhere")
		require.Len(t, p["conflict-global.0.service"], 3)
		e.fleetctl(t, h1, "destroy", "conflict-global.0.service")
		p, err = e.API(h1).WaitActive(ctx, 15*time.Second, func(p platform.Placement) bool {
			return p.Count() == 3 && len(p["conflict-global.1.service"]) == 3
		})
		require.NoError(t, err, "once the first is gone the second runs everywhere")
	})

	t.Run("PATCH machine metadata", func(t *testing.T) {
		needs(t, featPatchMachines)
		e.scenario(t)
		a := e.API(h1)
		writeUnit(t, h1, "needs-foo.service", sleeperUnit+"\n[X-Fleet]\nMachineMetadata=foo=bar\n")
		e.fleetctl(t, h1, "start", "--no-block", unit("needs-foo.service"))
		patch := fmt.Sprintf(`[{"op":"add","path":"/%s/metadata/foo","value":"bar"},{"op":"replace","path":"/%s/metadata/ping","value":"splat"}]`,
			h1.MachineID, h2.MachineID)
		code, body, err := a.Do(ctx, http.MethodPatch, "/machines", patch)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, "%s", body)
		ms, err := a.Machines(ctx)
		require.NoError(t, err)
		require.Contains(t, ms, platform.Machine{ID: h1.MachineID, PrimaryIP: h1.IP, Metadata: map[string]string{"hostname": "h1", "foo": "bar"}, State: "active"})
		require.Contains(t, ms, platform.Machine{ID: h2.MachineID, PrimaryIP: h2.IP, Metadata: map[string]string{"hostname": "h2", "ping": "splat"}, State: "active"})
		require.Contains(t, e.fleetctl(t, h3, "list-machines", "--full"), "foo=bar")
		_, err = a.WaitActive(ctx, 10*time.Second, func(p platform.Placement) bool { return p.On("needs-foo.service") == h1.MachineID })
		require.NoError(t, err, "the engine schedules on the new metadata")

		patch = fmt.Sprintf(`[{"op":"remove","path":"/%s/metadata/foo"},{"op":"remove","path":"/%s/metadata/ping"}]`, h1.MachineID, h2.MachineID)
		code, body, err = a.Do(ctx, http.MethodPatch, "/machines", patch)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, "%s", body)
		ms, err = a.Machines(ctx)
		require.NoError(t, err)
		require.Contains(t, ms, platform.Machine{ID: h1.MachineID, PrimaryIP: h1.IP, Metadata: map[string]string{"hostname": "h1"}, State: "active"})
		require.Contains(t, ms, platform.Machine{ID: h2.MachineID, PrimaryIP: h2.IP, Metadata: map[string]string{"hostname": "h2"}, State: "active"})
		_, err = a.WaitCount(ctx, 10*time.Second, 0)
		require.NoError(t, err, "a unit whose machine lost the metadata it needs is unscheduled")
	})

	t.Run("bad PATCH refused", func(t *testing.T) {
		needs(t, featPatchMachines)
		a := e.API(h1)
		for _, bad := range []string{
			fmt.Sprintf(`[{"op":"noop","path":"/%s/metadata/foo","value":"bar"}]`, h1.MachineID),
			fmt.Sprintf(`[{"op":"add","path":"/%s/foo","value":"bar"}]`, h1.MachineID),
			fmt.Sprintf(`[{"op":"add","path":"/%s/metadata/foo","value":""}]`, h1.MachineID),
			`not json`,
		} {
			code, body, err := a.Do(ctx, http.MethodPatch, "/machines", bad)
			require.NoError(t, err)
			require.Equal(t, http.StatusBadRequest, code, "PATCH %s: %s", bad, body)
			require.True(t, json.Valid(body), "errors are JSON: %s", body)
		}
		ms, err := a.Machines(ctx)
		require.NoError(t, err)
		for _, m := range ms {
			require.NotContains(t, m.Metadata, "foo", "a refused PATCH changes nothing")
		}
	})

	t.Run("a Docker-wrapped unit runs its container", func(t *testing.T) {
		e.scenario(t)
		writeUnit(t, h1, "docker-hello.service", helloUnit)
		start := time.Now()
		e.fleetctl(t, h1, "start", unit("docker-hello.service"))
		h := e.unitOn(t, "docker-hello.service")
		require.NoError(t, platform.Wait(ctx, 20*time.Second, func() bool { return containerRuns(ctx, h, "hello-"+h.MachineID) }),
			"container hello-%s must run", h.MachineID)
		figure(t, "docker unit: start -> container runs", time.Since(start), "shared dockerd")
		e.fleetctl(t, h1, "destroy", "docker-hello.service")
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool { return !containerRuns(ctx, h, "hello-"+h.MachineID) }),
			"destroying the unit stops its container")
	})

	t.Run("start-to-active latency", func(t *testing.T) {
		e.scenario(t)
		var lat []time.Duration
		for i := range 10 {
			name := fmt.Sprintf("lat%d.service", i)
			writeUnit(t, h1, name, sleeperUnit)
			start := time.Now()
			e.fleetctl(t, h1, "start", unit(name))
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		figure(t, "fleetctl start -> active p50", lat[4], "10 runs, incl. nsenter and fleetctl's start")
		figure(t, "fleetctl start -> active max", lat[9], "")
	})

	t.Run("fleetd restarted gracefully or after a crash does not restart its units", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, "start", unit("hello.service"))
		h := e.unitOn(t, "hello.service")
		pid := mainPID(t, ctx, h, "hello.service")
		since := time.Now()
		for _, how := range []struct {
			name string
			do   func() error
		}{
			{"graceful restart", func() error { return e.RestartFleet(ctx, h) }},
			{"crash", func() error { return e.KillFleet(ctx, h) }},
		} {
			start := time.Now()
			require.NoError(t, how.do(), how.name)
			require.NoError(t, e.WaitMachines(ctx, 3, 10*time.Second))
			figure(t, "fleetd back after "+how.name, time.Since(start), "until listed with the others")
			time.Sleep(2 * time.Second) // let the new agent reconcile
			require.Equal(t, pid, mainPID(t, ctx, h, "hello.service"), "after a %s of fleetd the unit must not be restarted", how.name)
			require.Equal(t, h, e.unitOn(t, "hello.service"), "after a %s of fleetd the unit must not move", how.name)
		}
		e.requireNoStops(t, since, all, "hello.service")
	})

	t.Run("a second fleetd with the same machine ID is refused", func(t *testing.T) {
		out, err := h2.Exec(ctx, "/usr/bin/fleetd", "-machine_id", h1.MachineID, "-etcd_servers", e.EtcdServers,
			"-api_socket", "/run/fleet-dup.sock", "-api_listen=", "-disable_engine", "true")
		require.Error(t, err)
		require.Contains(t, string(out), "machine ID already in use")
		require.Contains(t, string(out), "h1 (10.77.0.11)", "the error names the machine holding the ID")
		out2 := e.fleetctl(t, h1, "list-machines", "--no-legend", "--full")
		require.Regexp(t, h1.MachineID+`\s+`+regexp.QuoteMeta(h1.IP), out2, "the first machine keeps its record")
	})

	t.Run("fleetd reloads its configuration on SIGHUP without dropping the API", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, "start", unit("pinned@"+h3.MachineID+".service"))
		pid := mainPID(t, ctx, h3, "pinned@"+h3.MachineID+".service")
		fleetd, err := platform.FleetdPID(ctx, h3)
		require.NoError(t, err)

		// Both of h3's API endpoints are polled throughout the reload.
		var failures atomic.Int64
		var calls atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			a := e.API(h3)
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, err := a.Machines(ctx); err != nil {
					failures.Add(1)
					t.Logf("API over TCP during reload: %v", err)
				}
				if out, err := e.Fleetctl(ctx, h3, "list-units", "--no-legend"); err != nil {
					failures.Add(1)
					t.Logf("API over fleet.sock during reload: %v: %s", err, out)
				}
			}
		})
		conf := e.FleetConf(h3)
		for k, v := range e.conf {
			conf[k] = v
		}
		conf["metadata"] = "hostname=h3,reloaded=yes"
		require.NoError(t, e.WriteFleetConf(h3, conf))
		start := time.Now()
		require.NoError(t, e.ReloadFleet(ctx, h3))
		err = platform.Wait(ctx, 15*time.Second, func() bool {
			out, err := e.Fleetctl(ctx, h1, "list-machines", "--no-legend", "--full")
			return err == nil && regexp.MustCompile(h3.MachineID+`\s+\S+\s+.*reloaded=yes`).MatchString(out)
		})
		figure(t, "SIGHUP -> new metadata listed", time.Since(start), "")
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()
		require.NoError(t, err, "the reloaded metadata is published")
		require.Zero(t, failures.Load(), "no API request failed during the reload (%d made)", calls.Load())
		after, err := platform.FleetdPID(ctx, h3)
		require.NoError(t, err)
		require.Equal(t, fleetd, after, "fleetd reloads in place")
		require.Equal(t, pid, mainPID(t, ctx, h3, "pinned@"+h3.MachineID+".service"), "its units keep running")
		conf["metadata"] = "hostname=h3"
		require.NoError(t, e.WriteFleetConf(h3, conf))
		require.NoError(t, e.ReloadFleet(ctx, h3))
	})
}
