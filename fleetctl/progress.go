package fleetctl

import (
	"fmt"
	"io"
)

// progress prints the lines of a blocking command and, on a terminal, keeps
// a live count below them on a line of its own, rewritten in place. Off a
// terminal it prints the lines only, so logs and pipes get plain text.
type progress struct {
	w     io.Writer
	live  bool
	total int
	goal  string
	shown bool // the count line is on screen
}

func newProgress(w io.Writer, live bool, total int, goal string) *progress {
	return &progress{w: w, live: live, total: total, goal: goal}
}

// clearLine moves to the start of the count line and erases it.
const clearLine = "\r\x1b[K"

// println prints one line above the count.
func (p *progress) println(format string, args ...any) {
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// status redraws the count: done of the units are through, gaveUp of them
// because they failed or cannot be placed.
func (p *progress) status(done, gaveUp int) {
	pending := p.total - done
	if !p.live || pending <= 0 {
		return
	}
	msg := fmt.Sprintf("%s%d/%d units %s", clearLine, done-gaveUp, p.total, p.goal)
	if gaveUp > 0 {
		msg += fmt.Sprintf(", %d failed", gaveUp)
	}
	fmt.Fprintf(p.w, "%s, waiting for %d...", msg, pending)
	p.shown = true
}

// finish erases the count.
func (p *progress) finish() { p.clear() }

func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, clearLine)
		p.shown = false
	}
}
