package engine

import (
	"regexp"
	"strconv"
	"strings"
)

// version is a parsed engine version: semantic versioning with the
// spellings fleetd's build produces, "v1.2.3", "1.2", and git describe's
// "v1.2.3-4-gabcdef0[-dirty]" (4 commits after v1.2.3: newer than it).
type version struct {
	core  [3]uint64
	after uint64   // commits after the tag (git describe)
	pre   []string // pre-release identifiers ("rc", "1"); empty for a release
}

var describeSuffix = regexp.MustCompile(`^([0-9]+)-g[0-9a-f]+$`)

// parseVersion parses s; ok is false for what is not a version at all
// (empty, "dev", a bare commit hash): such builds can be compared with
// nothing.
func parseVersion(s string) (v version, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	s = strings.TrimSuffix(s, "-dirty")
	s, _, _ = strings.Cut(s, "+") // build metadata orders nothing
	core, rest, hasRest := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) > 3 || core == "" {
		return version{}, false
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return version{}, false
		}
		v.core[i] = n
	}
	if !hasRest {
		return v, true
	}
	if m := describeSuffix.FindStringSubmatch(rest); m != nil {
		v.after, _ = strconv.ParseUint(m[1], 10, 64)
		return v, true
	}
	if rest == "" {
		return version{}, false
	}
	v.pre = strings.Split(rest, ".")
	return v, true
}

// compareVersions compares a and b like semantic versioning (a pre-release
// is older than its release; git describe's commits-after count is newer).
// ok is false when either does not parse.
func compareVersions(a, b string) (cmp int, ok bool) {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		return 0, false
	}
	for i := range va.core {
		if c := compareUint(va.core[i], vb.core[i]); c != 0 {
			return c, true
		}
	}
	switch {
	case len(va.pre) == 0 && len(vb.pre) > 0:
		return 1, true
	case len(va.pre) > 0 && len(vb.pre) == 0:
		return -1, true
	}
	for i := 0; i < len(va.pre) && i < len(vb.pre); i++ {
		if c := comparePre(va.pre[i], vb.pre[i]); c != 0 {
			return c, true
		}
	}
	if c := compareUint(uint64(len(va.pre)), uint64(len(vb.pre))); c != 0 {
		return c, true
	}
	return compareUint(va.after, vb.after), true
}

// comparePre orders pre-release identifiers: numbers numerically and before
// words, words lexically.
func comparePre(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return compareUint(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
