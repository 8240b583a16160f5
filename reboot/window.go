package reboot

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is when reboots may start: some days of the week and a time of
// day range, in the machine's local time zone. The zero Window is always
// open.
type Window struct {
	text       string
	days       [7]bool // by time.Weekday
	start, end int     // minutes since midnight; end < start crosses midnight
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindow parses a reboot window: "Mon..Fri 02:00-04:00", "Sat,Sun
// 22:00-02:00" (a range past midnight belongs to the day it starts on),
// or "02:00-04:00" (every day). Days are the first three letters of their
// English names, in any case; "" is no window (always open).
func ParseWindow(s string) (Window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Window{}, nil
	}
	w := Window{text: s}
	fields := strings.Fields(s)
	var daySpec, timeSpec string
	switch len(fields) {
	case 1:
		daySpec, timeSpec = "mon..sun", fields[0]
	case 2:
		daySpec, timeSpec = fields[0], fields[1]
	default:
		return w, fmt.Errorf("reboot window %q: want [DAYS] HH:MM-HH:MM, as in \"Mon..Fri 02:00-04:00\"", s)
	}
	for _, part := range strings.Split(daySpec, ",") {
		from, to, isRange := strings.Cut(part, "..")
		a, err := parseDay(from)
		if err != nil {
			return w, fmt.Errorf("reboot window %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseDay(to); err != nil {
				return w, fmt.Errorf("reboot window %q: %w", s, err)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			w.days[d] = true
			if d == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(timeSpec, "-")
	if !ok {
		return w, fmt.Errorf("reboot window %q: time range %q: want HH:MM-HH:MM", s, timeSpec)
	}
	var err error
	if w.start, err = parseClock(from); err != nil {
		return w, fmt.Errorf("reboot window %q: %w", s, err)
	}
	if w.end, err = parseClock(to); err != nil {
		return w, fmt.Errorf("reboot window %q: %w", s, err)
	}
	if w.start == w.end {
		return w, fmt.Errorf("reboot window %q: the range %s is empty; leave reboot_window unset to allow reboots at any time", s, timeSpec)
	}
	return w, nil
}

func parseDay(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range dayNames {
		if s == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown day %q: use Mon, Tue, Wed, Thu, Fri, Sat or Sun", s)
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("time %q: want HH:MM, 00:00 to 24:00", s)
	}
	return hh*60 + mm, nil
}

// Open reports whether a reboot may start at t (in t's location).
func (w Window) Open(t time.Time) bool {
	if w.text == "" {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	today, yesterday := int(t.Weekday()), (int(t.Weekday())+6)%7
	if w.start < w.end {
		return w.days[today] && m >= w.start && m < w.end
	}
	return (w.days[today] && m >= w.start) || (w.days[yesterday] && m < w.end)
}

// String returns the window as written, or "" for none.
func (w Window) String() string { return w.text }
