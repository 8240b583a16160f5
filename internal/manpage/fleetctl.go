package manpage

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// writeCommand writes the page of one fleetctl command: its help, usage and
// own flags; the global flags are on fleetctl(1) only.
func writeCommand(w io.Writer, c *cobra.Command, o Options) error {
	var r roff
	r.header(strings.ToUpper(pageTitle(c)), "1", o)
	r.section("NAME")
	fmt.Fprintf(&r, "%s \\- %s\n", esc(pageTitle(c)), esc(c.Short))
	r.section("SYNOPSIS")
	fmt.Fprintf(&r, ".B %s\n", esc(synopsis(c)))
	r.section("DESCRIPTION")
	long := c.Long
	if long == "" {
		long = c.Short
	}
	r.text(long)
	if flags := c.NonInheritedFlags(); flags.HasAvailableFlags() {
		if c.HasParent() {
			r.section("OPTIONS")
		} else {
			r.section("GLOBAL OPTIONS")
		}
		flags.VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Deprecated != "" || f.Name == "help" {
				return
			}
			r.item(flagTag(f), flagText(f))
		})
	}
	if c.HasParent() {
		r.para("The global options of fleetctl(1) (--endpoint, --driver, credentials, --request-timeout) apply too.")
	}
	if c.Example != "" {
		r.section("EXAMPLES")
		r.verbatim(c.Example)
	}
	r.section("SEE ALSO")
	var see []string
	if c.HasParent() {
		see = append(see, pageTitle(c.Parent())+"(1)")
	} else {
		see = append(see, "fleetd(8)", "fleet.conf(5)")
	}
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
			see = append(see, pageTitle(sub)+"(1)")
		}
	}
	r.WriteString(esc(strings.Join(see, ", ")) + "\n")
	_, err := io.WriteString(w, r.String())
	return err
}

// synopsis is c's usage line; fleetctl's own says a command follows.
func synopsis(c *cobra.Command) string {
	if !c.HasParent() {
		return c.Name() + " [GLOBAL OPTION]... COMMAND [ARG]..."
	}
	return c.UseLine()
}

// flagTag is how a flag is written: "-n, --lines=N".
func flagTag(f *pflag.Flag) string {
	tag := "--" + f.Name
	if f.Shorthand != "" && f.ShorthandDeprecated == "" {
		tag = "-" + f.Shorthand + ", " + tag
	}
	if name, _ := pflag.UnquoteUsage(f); name != "" && f.NoOptDefVal == "" {
		tag += "=" + strings.ToUpper(name)
	}
	return tag
}

// flagText is a flag's usage with its default, when it has one worth
// saying.
func flagText(f *pflag.Flag) string {
	_, usage := pflag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "false", "0", "[]", "0s":
		return usage
	}
	return usage + " (default " + f.DefValue + ")"
}

// text writes help text as cobra prints it: paragraphs separated by blank
// lines are filled, and a paragraph with an indented line (a table, a
// command to type) is kept line by line.
func (r *roff) text(s string) {
	for _, block := range strings.Split(strings.TrimSpace(s), "\n\n") {
		block = strings.Trim(block, "\n")
		if block == "" {
			continue
		}
		indented := false
		for _, l := range strings.Split(block, "\n") {
			if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
				indented = true
			}
		}
		if indented {
			r.verbatim(strings.ReplaceAll(block, "\t", "    "))
		} else {
			r.para(block)
		}
	}
}
