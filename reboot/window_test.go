package reboot

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseWindow(t *testing.T) {
	at := func(day time.Weekday, hh, mm int) time.Time {
		// 2026-11-29 is a Sunday.
		return time.Date(2026, 11, 29+int(day), hh, mm, 0, 0, time.UTC)
	}
	for _, tc := range []struct {
		name, in string
		open     []time.Time
		closed   []time.Time
		err      string
	}{
		{name: "none", in: "", open: []time.Time{at(time.Sunday, 12, 0)}},
		{name: "weekdays", in: "Mon..Fri 02:00-04:00",
			open:   []time.Time{at(time.Monday, 2, 0), at(time.Friday, 3, 59)},
			closed: []time.Time{at(time.Monday, 4, 0), at(time.Saturday, 2, 30), at(time.Tuesday, 1, 59)}},
		{name: "every day", in: "02:00-04:00", open: []time.Time{at(time.Sunday, 3, 0)}, closed: []time.Time{at(time.Sunday, 5, 0)}},
		{name: "past midnight", in: "sat,SUN 22:00-02:00",
			open:   []time.Time{at(time.Saturday, 23, 0), at(time.Sunday, 1, 0), at(time.Monday, 1, 59)},
			closed: []time.Time{at(time.Saturday, 1, 0), at(time.Monday, 22, 0), at(time.Monday, 2, 0)}},
		{name: "wrapping day range", in: "Fri..Mon 00:00-24:00", open: []time.Time{at(time.Sunday, 12, 0)}, closed: []time.Time{at(time.Tuesday, 12, 0)}},
		{name: "bad day", in: "Mon..Fry 02:00-04:00", err: `unknown day "fry"`},
		{name: "bad time", in: "Mon 2-4", err: `time "2": want HH:MM`},
		{name: "no range", in: "Mon 02:00", err: "want HH:MM-HH:MM"},
		{name: "empty range", in: "02:00-02:00", err: "is empty"},
		{name: "too many fields", in: "Mon 02:00 -04:00", err: "want [DAYS] HH:MM-HH:MM"},
		{name: "hour 25", in: "01:00-25:00", err: `time "25:00"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseWindow(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for _, o := range tc.open {
				require.True(t, w.Open(o), "open at %s", o.Format(time.RFC1123))
			}
			for _, c := range tc.closed {
				require.False(t, w.Open(c), "closed at %s", c.Format(time.RFC1123))
			}
		})
	}
}
