// Package manpage writes fleet's man pages from the code they document, so
// that they cannot fall behind it: fleetctl(1) and one page per command from
// fleetctl's cobra command tree (each command's help, usage and flags), and
// fleetd(8) and fleet.conf(5) from fleetd's configuration keys
// (fleetd.ConfigKeys: each key's help and default). `make deb` runs it at
// build time; nothing generated is checked in.
//
// The pages are written as roff here rather than with cobra/doc: that
// reads help texts as Markdown, and ours are plain text (it drops
// "FLEETCTL_<FLAG>" as an HTML tag and runs the exit-code table into one
// line).
//
// What it leaves to others: compressing and installing the pages (the
// package builder, internal/debpkg) and shell completion (fleetctl
// completion).
package manpage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

// Options say what the pages' headers show.
type Options struct {
	// Version is fleet's version, shown as the pages' source ("fleet 0.2.0").
	Version string
	// Date is the pages' date (month and year shown); a reproducible build
	// passes its last commit's time.
	Date time.Time
}

// manual is the title of the manual every page belongs to.
const manual = "fleet Manual"

// Write writes every page into dir (created if missing), as NAME.SECTION
// files: fleetctl.1, fleetctl-<command>.1, fleetd.8, fleet.conf.5. It
// returns their file names.
func Write(dir string, o Options) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("man pages: %w", err)
	}
	pages := map[string]func(io.Writer) error{
		"fleetd.8":     func(w io.Writer) error { return writeFleetd(w, o) },
		"fleet.conf.5": func(w io.Writer) error { return writeFleetConf(w, o) },
	}
	for _, c := range Commands(FleetctlCommand(o.Version)) {
		pages[PageName(c)] = func(w io.Writer) error { return writeCommand(w, c, o) }
	}
	for name, write := range pages {
		if err := writeFile(filepath.Join(dir, name), write); err != nil {
			return nil, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("man pages: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// FleetctlCommand is the command tree the fleetctl pages describe: the
// binary's, read with an empty environment.
func FleetctlCommand(version string) *cobra.Command {
	return fleetctl.NewCommand(io.Discard, io.Discard, func(string) string { return "" }, fleetctl.WithVersion(version))
}

// Commands returns root and every command under it that has a page: those
// `fleetctl help` lists (not hidden, deprecated or cobra's help).
func Commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand() {
			out = append(out, Commands(c)...)
		}
	}
	return out
}

// PageName is the file name of c's page: fleetctl.1, fleetctl-list-units.1.
func PageName(c *cobra.Command) string { return pageTitle(c) + ".1" }

func pageTitle(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "-") }

func source(o Options) string {
	if o.Version == "" {
		return "fleet"
	}
	return "fleet " + o.Version
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("man page: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("man page %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("man page: %w", err)
	}
	return nil
}
