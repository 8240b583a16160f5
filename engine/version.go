package engine

import (
	"regexp"
	"strconv"
	"strings"
)

// version is a parsed engine version: a semantic version (semver.org 2.0.0)
// with an optional "v" prefix, MAJOR.MINOR.PATCH in full. Releases carry
// the repository's VERSION file ("0.2.0"); other builds of make add
// "-dev+<git describe>" ("0.2.0-dev+v0.1.0-5-g3146401"), a pre-release
// older than the release. For builds of older Makefiles, git describe's
// "v1.2.3-4-gabcdef0[-dirty]" (4 commits after v1.2.3) is newer than v1.2.3,
// not a pre-release of it.
type version struct {
	core  [3]uint64
	after uint64   // commits after the tag (git describe)
	pre   []string // pre-release identifiers ("rc", "1"); empty for a release
}

var (
	describeSuffix = regexp.MustCompile(`^([0-9]+)-g[0-9a-f]+$`)
	identifier     = regexp.MustCompile(`^[0-9A-Za-z-]+$`)
)

// parseVersion parses s; ok is false for what is not a semantic version:
// "", "dev", "1.2", a commit hash, even one made only of digits (3146401),
// which must not pass for version 3146401.0.0 and lock out every real
// engine.
func parseVersion(s string) (v version, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	s, build, hasBuild := strings.Cut(s, "+")
	if hasBuild && !validIdentifiers(build) { // build metadata orders nothing
		return version{}, false
	}
	s = strings.TrimSuffix(s, "-dirty")
	core, rest, hasRest := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return version{}, false
	}
	for i, p := range parts {
		n, ok := numeric(p)
		if !ok {
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
	if !validIdentifiers(rest) {
		return version{}, false
	}
	v.pre = strings.Split(rest, ".")
	for _, id := range v.pre {
		if id[0] >= '0' && id[0] <= '9' && strings.Trim(id, "0123456789") == "" {
			if _, ok := numeric(id); !ok {
				return version{}, false
			}
		}
	}
	return v, true
}

// numeric parses a numeric identifier: digits, no leading zero.
func numeric(s string) (uint64, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// validIdentifiers reports whether s is dot-separated non-empty
// identifiers of [0-9A-Za-z-].
func validIdentifiers(s string) bool {
	for id := range strings.SplitSeq(s, ".") {
		if !identifier.MatchString(id) {
			return false
		}
	}
	return true
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
