package manpage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/fleetd"
)

// TestPagesCoverTheCode is the check that the man pages are current: they
// are generated at build time, so what can go wrong is a command or key
// that the generator misses. Every command fleetctl has gets a page naming
// each of its flags, and fleetd(8) and fleet.conf(5) name every key.
func TestPagesCoverTheCode(t *testing.T) {
	dir := t.TempDir()
	date := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	names, err := Write(dir, Options{Version: "1.2.3", Date: date})
	require.NoError(t, err)
	require.Contains(t, names, "fleetctl.1")
	require.Contains(t, names, "fleetd.8")
	require.Contains(t, names, "fleet.conf.5")

	var walk func(c *cobra.Command)
	commands := 0
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		commands++
		page := read(t, filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"))
		require.Contains(t, page, `.TH "`+strings.ToUpper(pageTitle(c))+`" "1" "Dec 2026" "fleet 1.2.3" "fleet Manual"`)
		require.Contains(t, page, ".B "+esc(synopsis(c))+"\n", "%s: usage", c.CommandPath())
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Name != "help" {
				require.Contains(t, page, `\-\-`+strings.ReplaceAll(f.Name, "-", `\-`), "%s: flag --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(FleetctlCommand("1.2.3"))
	require.GreaterOrEqual(t, commands, 20, "fleetctl's commands")
	require.Len(t, names, commands+2, "a page per command, fleetd.8 and fleet.conf.5, nothing else")

	fleetdPage, confPage := read(t, filepath.Join(dir, "fleetd.8")), read(t, filepath.Join(dir, "fleet.conf.5"))
	for _, k := range fleetd.ConfigKeys() {
		key := esc(k.Key)
		require.Contains(t, confPage, ".B "+key+"\n"+esc(k.Help), "fleet.conf(5): key %s with its help", k.Key)
		require.Contains(t, fleetdPage, `.B \-`+key+" VALUE\n", "fleetd(8): flag -%s", k.Key)
	}
	require.Contains(t, confPage, ".B agent_ttl\n")
	require.Contains(t, confPage, "Default: 5s.")
	require.Contains(t, fleetdPage, "fleetd tls cert create")

	// groff reads every page without a warning (bad requests, unknown
	// escapes, lines it cannot fit).
	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("groff is needed to check the man pages (Debian package groff-base)")
		}
		t.Skip("no groff: pages not rendered")
	}
	for _, n := range names {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, n))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Run(), "groff %s: %s", n, stderr.String())
		require.Empty(t, stderr.String(), "groff warnings in %s", n)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err, "page %s", filepath.Base(path))
	return string(b)
}

func TestEsc(t *testing.T) {
	for in, want := range map[string]string{
		"-config FILE":    `\-config FILE`,
		`a\b`:             `a\eb`,
		".hidden\n'quote": `\&.hidden` + "\n" + `\&'quote`,
		"plain text":      "plain text",
	} {
		require.Equal(t, want, esc(in))
	}
}
