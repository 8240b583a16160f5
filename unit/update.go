package unit

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The [X-Fleet] options of a rolling update (fleetctl update). They say how
// the engine leader replaces the unit's body, not where the unit runs, so
// FleetOptions skips them.
const (
	updateMaxUnavailable = "UpdateMaxUnavailable"
	updateMinHealthy     = "UpdateMinHealthy"
	updateAutoRevert     = "UpdateAutoRevert"
	healthCheck          = "HealthCheck"
)

func isUpdateKey(key string) bool {
	switch key {
	case updateMaxUnavailable, updateMinHealthy, updateAutoRevert, healthCheck:
		return true
	}
	return false
}

// Defaults of UpdatePolicy.
const (
	DefaultMaxUnavailable = 1
	DefaultMinHealthy     = 10 * time.Second
)

// UpdatePolicy is how a rolling update replaces a unit's copies.
type UpdatePolicy struct {
	// MaxUnavailable bounds the copies being replaced at once
	// (UpdateMaxUnavailable=, default 1).
	MaxUnavailable int
	// MinHealthy is how long a new copy must stay active, its health check
	// passing, before the next one is replaced (UpdateMinHealthy=, a
	// systemd time span such as 10s or 1min; default 10s).
	MinHealthy time.Duration
	// HealthCheck, when set, is run on the copy's machine: an http:// or
	// https:// URL must answer 2xx, anything else is a command line
	// (run by /bin/sh -c) that must exit 0. Specifiers are expanded.
	HealthCheck string
	// AutoRevert puts the old body back on every replaced copy when a new
	// copy fails (UpdateAutoRevert=).
	AutoRevert bool
}

// HealthCheckIsURL reports whether the check is an HTTP URL rather than a
// command.
func (p UpdatePolicy) HealthCheckIsURL() bool {
	return strings.HasPrefix(p.HealthCheck, "http://") || strings.HasPrefix(p.HealthCheck, "https://")
}

// UpdatePolicy reads the update options of f for the unit called name
// (specifiers in HealthCheck= are expanded as FleetOptions does). The last
// line of an option wins. A value that does not parse is an error naming
// the option, so a bad policy is refused when the unit is submitted.
func (f *File) UpdatePolicy(name string) (UpdatePolicy, error) {
	p := UpdatePolicy{MaxUnavailable: DefaultMaxUnavailable, MinHealthy: DefaultMinHealthy}
	n, err := ParseName(name)
	if err != nil {
		return p, fmt.Errorf("[%s] update options: %w", fleetSection, err)
	}
	instance := n.Instance
	if n.Template {
		instance = "%i"
	}
	expand := strings.NewReplacer("%n", name, "%N", strings.TrimSuffix(name, "."+n.Type), "%p", n.Prefix, "%i", instance)
	for _, o := range f.Options {
		if o.Section != fleetSection || !isUpdateKey(o.Name) {
			continue
		}
		v := strings.TrimSpace(joinContinuations(o.Value))
		switch o.Name {
		case updateMaxUnavailable:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return p, fmt.Errorf("[%s] %s=%q: want a whole number of copies, 1 or more", fleetSection, o.Name, v)
			}
			p.MaxUnavailable = n
		case updateMinHealthy:
			d, err := ParseTimeSpan(v)
			if err != nil {
				return p, fmt.Errorf("[%s] %s=%q: %w", fleetSection, o.Name, v, err)
			}
			p.MinHealthy = d
		case updateAutoRevert:
			b, ok := parseBool(v)
			if !ok {
				return p, fmt.Errorf("[%s] %s=%q: want true or false", fleetSection, o.Name, v)
			}
			p.AutoRevert = b
		case healthCheck:
			p.HealthCheck = expand.Replace(v)
			if p.HealthCheckIsURL() {
				// The value is not repeated: its user info may hold a
				// password, and this error reaches logs and terminals.
				if u, err := url.Parse(p.HealthCheck); err != nil || u.Host == "" {
					return p, fmt.Errorf("[%s] %s=: not a usable URL: want http(s)://HOST[:PORT]/PATH", fleetSection, o.Name)
				}
			}
		}
	}
	return p, nil
}

// ParseTimeSpan reads a systemd time span ("10s", "1min 30s", "500ms", or a
// bare number of seconds). Negative spans are refused, and so are
// "inf", "nan" and spans beyond time.Duration: strconv.ParseFloat accepts
// them, and converting such a float to a Duration gives a negative one.
func ParseTimeSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty time span")
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative time span")
		}
		return spanOf(s, n*float64(time.Second))
	}
	units := []struct {
		suffix string
		d      time.Duration
	}{
		// Longer suffixes first, so "ms" is not read as "s".
		{"usec", time.Microsecond}, {"msec", time.Millisecond}, {"seconds", time.Second}, {"second", time.Second},
		{"minutes", time.Minute}, {"minute", time.Minute}, {"hours", time.Hour}, {"hour", time.Hour},
		{"sec", time.Second}, {"min", time.Minute}, {"us", time.Microsecond}, {"ms", time.Millisecond},
		{"hr", time.Hour}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour},
	}
	var total float64 // nanoseconds
	for _, part := range strings.Fields(s) {
		matched := false
		for _, u := range units {
			num, ok := strings.CutSuffix(part, u.suffix)
			if !ok {
				continue
			}
			n, err := strconv.ParseFloat(num, 64)
			if err != nil || n < 0 {
				continue
			}
			total += n * float64(u.d)
			matched = true
			break
		}
		if !matched {
			return 0, fmt.Errorf("%q is not a time span (say 10s, 1min or 500ms)", part)
		}
	}
	return spanOf(s, total)
}

// spanOf converts ns nanoseconds, read from s, to a Duration if it fits.
func spanOf(s string, ns float64) (time.Duration, error) {
	if math.IsNaN(ns) || ns >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a usable time span (at most about 290 years)", s)
	}
	return time.Duration(ns), nil
}
