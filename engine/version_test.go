package engine

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"0.2.0", true},
		{"v1.2.3", true},
		{"1.2.3-rc.1", true},
		{"0.2.0-dev+v0.1.0-5-g3146401-dirty", true}, // make's build off a tag
		{"0.2.0-dev+3146401", true},                 // make's build in a clone without tags
		{"v1.2.3-4-gabcdef0", true},                 // git describe, older Makefiles
		{"v1.2.3-4-gabcdef0-dirty", true},
		{"1.2.3+build.7", true},
		{"3146401", false}, // git describe --always without tags: a commit, not 3146401.0.0
		{"31464010", false},
		{"1.2", false},
		{"1", false},
		{"", false},
		{"dev", false},
		{"abcdef0", false},
		{"1.2.3.4", false},
		{"01.2.3", false},
		{"1.2.3-", false},
		{"1.2.3-01", false},
		{"1.2.3-rc..1", false},
		{"1.2.3+", false},
		{"1.2.3+a_b", false},
		{"1.2.x", false},
		{"-1.2.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, ok := parseVersion(tt.in)
			require.Equal(t, tt.ok, ok)
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
		ok   bool
	}{
		{"1.2.3", "v1.2.3", 0, true},
		{"1.2.3", "1.2.4", -1, true},
		{"1.10.0", "1.9.9", 1, true},
		{"2.0.0", "1.99.99", 1, true},
		{"1.2.3-rc.1", "1.2.3", -1, true},
		{"1.2.3-rc.2", "1.2.3-rc.10", -1, true},
		{"1.2.3-1", "1.2.3-alpha", -1, true},
		{"1.2.3-alpha", "1.2.3-alpha.1", -1, true},
		{"0.2.0-dev+aaa", "0.2.0-dev+bbb", 0, true}, // build metadata orders nothing
		{"0.2.0-dev+v0.1.0-5-g3146401", "0.2.0", -1, true},
		{"0.2.0-dev+v0.1.0-5-g3146401", "0.1.9", 1, true},
		{"v1.2.3-4-gabcdef0", "v1.2.3", 1, true},
		{"v1.2.3-4-gabcdef0", "v1.2.3-10-g0000000", -1, true},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.4", -1, true},
		{"3146401", "0.2.0", 0, false},
		{"0.2.0", "3146401", 0, false},
		{"dev", "dev", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			c, ok := compareVersions(tt.a, tt.b)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, c)
			if ok {
				back, _ := compareVersions(tt.b, tt.a)
				require.Equal(t, -tt.want, back, "antisymmetric")
			}
		})
	}
}

// TestVersionFile: the repository's VERSION file, which make builds carry,
// is a release version.
func TestVersionFile(t *testing.T) {
	b, err := os.ReadFile("../VERSION")
	require.NoError(t, err)
	v, ok := parseVersion(string(b))
	require.True(t, ok, "VERSION %q must be a semantic version", b)
	require.Empty(t, v.pre, "VERSION holds the next release, without a pre-release")
	_, ok = parseVersion(strings.TrimSpace(string(b)) + "-dev+v0.1.0-5-g3146401-dirty")
	require.True(t, ok, "make's development version parses")
}
