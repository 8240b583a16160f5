package unit

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFleetOptions(t *testing.T) {
	tests := []struct {
		name         string
		unit         string
		xfleet       string // body of the [X-Fleet] section
		want         Fleet
		wantWarnings []string
		wantErr      string
	}{
		{
			name: "none",
			unit: "web.service",
			want: Fleet{},
		},
		{
			name:   "every option",
			unit:   "web.service",
			xfleet: "MachineOf=db.service\nMachineMetadata=region=us-east\nConflicts=web*.service\nReplaces=old.service\nGlobal=false\n",
			want: Fleet{
				MachineOf:       []string{"db.service"},
				MachineMetadata: map[string][]string{"region": {"us-east"}},
				Conflicts:       []string{"web*.service"},
				Replaces:        []string{"old.service"},
			},
		},
		{
			name:   "specifiers on an instance",
			unit:   "app@h2.service",
			xfleet: "MachineMetadata=hostname=%i\nConflicts=%p@*.service\nMachineOf=%N-sidekick.service\nReplaces=%n.old.service\n",
			want: Fleet{
				MachineMetadata: map[string][]string{"hostname": {"h2"}},
				Conflicts:       []string{"app@*.service"},
				MachineOf:       []string{"app@h2-sidekick.service"},
				Replaces:        []string{"app@h2.service.old.service"},
			},
		},
		{
			name:   "specifiers on a plain name",
			unit:   "web.socket",
			xfleet: "MachineOf=%p.service\nConflicts=%N-%i-x %n\n",
			want: Fleet{
				MachineOf: []string{"web.service"},
				Conflicts: []string{"web--x", "web.socket"},
			},
		},
		{
			name:   "specifiers on a template: %i stays for its instances",
			unit:   "app@.service",
			xfleet: "Conflicts=%p@%i*\nMachineMetadata=hostname=%i\n",
			want:   Fleet{Conflicts: []string{"app@%i*"}, MachineMetadata: map[string][]string{"hostname": {"%i"}}},
		},
		{
			name:   "unknown specifiers and '%%' left alone",
			unit:   "web.service",
			xfleet: "MachineMetadata=load=100%% cpu=%m\n",
			want:   Fleet{MachineMetadata: map[string][]string{"load": {"100%%"}, "cpu": {"%m"}}},
		},
		{
			name:   "several values on a line",
			unit:   "web.service",
			xfleet: "Conflicts=a.service  b.service\tc*.service\nMachineOf=x.service y.service\n",
			want: Fleet{
				Conflicts: []string{"a.service", "b.service", "c*.service"},
				MachineOf: []string{"x.service", "y.service"},
			},
		},
		{
			name:   "quoted values keep their spaces",
			unit:   "web.service",
			xfleet: `MachineMetadata="region=us east" role=web "tier = front end"` + "\n",
			want: Fleet{MachineMetadata: map[string][]string{
				"region": {"us east"},
				"role":   {"web"},
				"tier":   {"front end"},
			}},
		},
		{
			name:   "fleet's all-quoted form",
			unit:   "web.service",
			xfleet: `MachineMetadata="foo=bar" "baz=qux"` + "\n",
			want:   Fleet{MachineMetadata: map[string][]string{"foo": {"bar"}, "baz": {"qux"}}},
		},
		{
			name:   "quotes inside a value and empty quotes",
			unit:   "web.service",
			xfleet: `MachineMetadata=role="web server" ""` + "\n",
			want:   Fleet{MachineMetadata: map[string][]string{"role": {"web server"}}},
		},
		{
			name:   "continuation lines split like spaces",
			unit:   "web.service",
			xfleet: "Conflicts=a.service \\\n  b.service\n",
			want:   Fleet{Conflicts: []string{"a.service", "b.service"}},
		},
		{
			name:   "repeated lines merge",
			unit:   "web.service",
			xfleet: "MachineMetadata=region=us\nMachineMetadata=region=eu role=web\nMachineMetadata=region=us\nConflicts=a\nConflicts=b\nMachineOf=x\nMachineOf=y\nReplaces=r1\nReplaces=r2\n",
			want: Fleet{
				MachineMetadata: map[string][]string{"region": {"us", "eu"}, "role": {"web"}},
				Conflicts:       []string{"a", "b"},
				MachineOf:       []string{"x", "y"},
				Replaces:        []string{"r1", "r2"},
			},
		},
		{
			name:   "repeated values dropped",
			unit:   "web.service",
			xfleet: "Conflicts=a b a\nConflicts=b\nMachineOf=x x\nReplaces=r\nX-Conflicts=a\nMachineMetadata=k=1 k=1\nMachineMetadata=k=2 k=1\n",
			want: Fleet{
				Conflicts:       []string{"a", "b"},
				MachineOf:       []string{"x"},
				Replaces:        []string{"r"},
				MachineMetadata: map[string][]string{"k": {"1", "2"}},
			},
			wantWarnings: []string{`[X-Fleet] option "X-Conflicts" is deprecated; use "Conflicts"`},
		},
		{
			name:   "metadata value may hold '='",
			unit:   "web.service",
			xfleet: "MachineMetadata=opts=a=b\n",
			want:   Fleet{MachineMetadata: map[string][]string{"opts": {"a=b"}}},
		},
		{
			name:   "MachineID keeps its first value",
			unit:   "web.service",
			xfleet: "MachineID=aaa\nMachineID=bbb\n",
			want:   Fleet{MachineID: "aaa"},
			wantWarnings: []string{
				`[X-Fleet] MachineID has 2 values; only the first, "aaa", is used`,
			},
		},
		{
			name:   "MachineID expands specifiers",
			unit:   "pin@abc123.service",
			xfleet: "MachineID=%i\n",
			want:   Fleet{MachineID: "abc123"},
		},
		{
			name:   "empty values ignored",
			unit:   "web.service",
			xfleet: "MachineID=\nConflicts=\nGlobal=\n",
			want:   Fleet{},
		},
		{
			name:   "legacy names",
			unit:   "web.service",
			xfleet: "X-ConditionMachineOf=db.service\nX-ConditionMachineMetadata=disk=ssd\nX-Conflicts=web*\nX-ConditionMachineID=m1\n",
			want: Fleet{
				MachineOf:       []string{"db.service"},
				MachineMetadata: map[string][]string{"disk": {"ssd"}},
				Conflicts:       []string{"web*"},
				MachineID:       "m1",
			},
			wantWarnings: []string{
				`[X-Fleet] option "X-ConditionMachineOf" is deprecated; use "MachineOf"`,
				`[X-Fleet] option "X-ConditionMachineMetadata" is deprecated; use "MachineMetadata"`,
				`[X-Fleet] option "X-Conflicts" is deprecated; use "Conflicts"`,
				`[X-Fleet] option "X-ConditionMachineID" is deprecated; use "MachineID"`,
			},
		},
		{
			name:   "legacy and current names merge",
			unit:   "web.service",
			xfleet: "X-Conflicts=a\nConflicts=b\nX-ConditionMachineMetadata=r=1\nMachineMetadata=r=2\n",
			want: Fleet{
				Conflicts:       []string{"a", "b"},
				MachineMetadata: map[string][]string{"r": {"1", "2"}},
			},
			wantWarnings: []string{
				`[X-Fleet] option "X-Conflicts" is deprecated; use "Conflicts"`,
				`[X-Fleet] option "X-ConditionMachineMetadata" is deprecated; use "MachineMetadata"`,
			},
		},
		{
			name:   "current MachineID wins over legacy, whatever the order",
			unit:   "web.service",
			xfleet: "X-ConditionMachineID=old\nMachineID=new\n",
			want:   Fleet{MachineID: "new"},
			wantWarnings: []string{
				`[X-Fleet] option "X-ConditionMachineID" is deprecated; use "MachineID"`,
				`[X-Fleet] MachineID has 2 values; only the first, "new", is used`,
			},
		},
		{
			name:   "MachineBootID ignored",
			unit:   "web.service",
			xfleet: "X-ConditionMachineBootID=abc\n",
			want:   Fleet{},
			wantWarnings: []string{
				`[X-Fleet] option "X-ConditionMachineBootID" is no longer supported and is ignored; use MachineID`,
			},
		},
		{
			name:   "unknown options warned once each",
			unit:   "web.service",
			xfleet: "Foo=1\nWeight=10\nFoo=2\nmachineid=lowercase\n",
			want:   Fleet{},
			wantWarnings: []string{
				`unknown [X-Fleet] option "Foo" ignored`,
				`unknown [X-Fleet] option "Weight" ignored`,
				`unknown [X-Fleet] option "machineid" ignored`,
			},
		},
		{
			name:   "unknown option values not parsed",
			unit:   "web.service",
			xfleet: "Foo=\"unclosed\nBar=novalue\n",
			want:   Fleet{},
			wantWarnings: []string{
				`unknown [X-Fleet] option "Foo" ignored`,
				`unknown [X-Fleet] option "Bar" ignored`,
			},
		},
		{
			name:    "metadata without '='",
			unit:    "web.service",
			xfleet:  "MachineMetadata=region=us role\n",
			wantErr: `[X-Fleet] MachineMetadata=region=us role: column 11: "role" is not key=value`,
		},
		{
			name:    "metadata with empty key",
			unit:    "web.service",
			xfleet:  "MachineMetadata==us\n",
			wantErr: `"=us" is not key=value`,
		},
		{
			name:    "metadata with empty value",
			unit:    "web.service",
			xfleet:  "X-ConditionMachineMetadata=region=\n",
			wantErr: `[X-Fleet] X-ConditionMachineMetadata=region=: column 1: "region=" is not key=value`,
		},
		{
			name:    "metadata split by an unquoted space",
			unit:    "web.service",
			xfleet:  "MachineMetadata=region=us east\n",
			wantErr: `"east" is not key=value`,
		},
		{
			name:    "unclosed quote",
			unit:    "web.service",
			xfleet:  `Conflicts="a.service b.service` + "\n",
			wantErr: `[X-Fleet] Conflicts: unclosed double quote in "\"a.service b.service"`,
		},
		{
			name:    "invalid unit name",
			unit:    "web",
			wantErr: `[X-Fleet] options: invalid unit name "web": no unit type suffix`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString("[Unit]\nDescription=test\n\n[X-Fleet]\n" + tt.xfleet)
			require.NoError(t, err)
			got, warnings, err := f.FleetOptions(tt.unit)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantWarnings, warnings)
		})
	}
}

func TestFleetOptionsOnlyReadsXFleet(t *testing.T) {
	f, err := ParseString("[Unit]\nConflicts=other.service\n[Service]\nGlobal=true\n[X-Fleet-Other]\nMachineID=x\n")
	require.NoError(t, err)
	got, warnings, err := f.FleetOptions("web.service")
	require.NoError(t, err)
	require.Equal(t, Fleet{}, got)
	require.Empty(t, warnings)
}

func TestFleetOptionsGlobal(t *testing.T) {
	tests := []struct {
		name        string
		lines       string
		want        bool
		wantWarning string
	}{
		{name: "true", lines: "Global=true", want: true},
		{name: "TRUE", lines: "Global=TRUE", want: true},
		{name: "yes", lines: "Global=yes", want: true},
		{name: "Yes", lines: "Global=Yes", want: true},
		{name: "1", lines: "Global=1", want: true},
		{name: "on", lines: "Global=on", want: true},
		{name: "t", lines: "Global=t", want: true},
		{name: "T", lines: "Global=T", want: true},
		{name: "quoted", lines: `Global="true"`, want: true},
		{name: "false", lines: "Global=false", want: false},
		{name: "no", lines: "Global=no", want: false},
		{name: "0", lines: "Global=0", want: false},
		{name: "off", lines: "Global=off", want: false},
		{name: "f", lines: "Global=f", want: false},
		{name: "last line wins", lines: "Global=true\nGlobal=false", want: false},
		{name: "last line wins the other way", lines: "Global=no\nGlobal=yes", want: true},
		{name: "last value on a line wins", lines: "Global=false true", want: true},
		{name: "empty line changes nothing", lines: "Global=true\nGlobal=", want: true},
		{name: "not a boolean", lines: "Global=sure", want: false, wantWarning: `[X-Fleet] Global="sure" is not a boolean; the unit is not global`},
		{name: "2 is not true", lines: "Global=2", want: false, wantWarning: `[X-Fleet] Global="2" is not a boolean; the unit is not global`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString("[X-Fleet]\n" + tt.lines + "\n")
			require.NoError(t, err)
			got, warnings, err := f.FleetOptions("web.service")
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Global)
			if tt.wantWarning == "" {
				require.Empty(t, warnings)
			} else {
				require.Equal(t, []string{tt.wantWarning}, warnings)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		unit     string
		fleet    Fleet
		wantErrs []string // each must appear; nil means valid
	}{
		{name: "empty", fleet: Fleet{}},
		{name: "MachineID alone", fleet: Fleet{MachineID: "m1", MachineMetadata: map[string][]string{"a": {"b"}}}},
		{name: "Global with Conflicts", fleet: Fleet{Global: true, Conflicts: []string{"x*"}}},
		{name: "MachineOf with Conflicts on others", fleet: Fleet{MachineOf: []string{"db.service"}, Conflicts: []string{"web@*.service"}}},
		{name: "MachineOf with Replaces on others", fleet: Fleet{MachineOf: []string{"db.service"}, Replaces: []string{"old.service"}}},
		{
			name:     "MachineID with MachineOf",
			fleet:    Fleet{MachineID: "m1", MachineOf: []string{"db.service"}},
			wantErrs: []string{"MachineID cannot be combined with MachineOf"},
		},
		{
			name:     "MachineID with Conflicts",
			fleet:    Fleet{MachineID: "m1", Conflicts: []string{"x"}},
			wantErrs: []string{"MachineID cannot be combined with Conflicts"},
		},
		{
			name:     "MachineID with Global",
			fleet:    Fleet{MachineID: "m1", Global: true},
			wantErrs: []string{"MachineID cannot be combined with Global"},
		},
		{
			name:     "MachineID with Replaces",
			fleet:    Fleet{MachineID: "m1", Replaces: []string{"x"}},
			wantErrs: []string{"MachineID cannot be combined with Replaces"},
		},
		{
			name:     "Global with MachineOf",
			fleet:    Fleet{Global: true, MachineOf: []string{"db.service"}},
			wantErrs: []string{"Global cannot be combined with MachineOf"},
		},
		{
			name:     "Global with Replaces",
			fleet:    Fleet{Global: true, Replaces: []string{"x"}},
			wantErrs: []string{"Global cannot be combined with Replaces"},
		},
		{
			name:     "Conflicts with Replaces",
			fleet:    Fleet{Conflicts: []string{"a"}, Replaces: []string{"b"}},
			wantErrs: []string{"Conflicts cannot be combined with Replaces"},
		},
		{
			name:     "MachineOf matching a Conflicts glob",
			fleet:    Fleet{MachineOf: []string{"db@1.service"}, Conflicts: []string{"db@*.service"}},
			wantErrs: []string{`MachineOf unit "db@1.service" matches Conflicts pattern "db@*.service"`},
		},
		{
			name:     "MachineOf matching a Replaces name",
			fleet:    Fleet{MachineOf: []string{"db.service"}, Replaces: []string{"db.service"}},
			wantErrs: []string{`MachineOf unit "db.service" matches Replaces pattern "db.service"`},
		},
		{
			name:     "malformed Conflicts pattern",
			fleet:    Fleet{Conflicts: []string{"web[.service"}},
			wantErrs: []string{`Conflicts pattern "web[.service" is malformed: syntax error in pattern`},
		},
		{
			name:     "malformed Replaces pattern",
			fleet:    Fleet{Replaces: []string{`a\`}},
			wantErrs: []string{`Replaces pattern "a\\" is malformed`},
		},
		{
			name:     "MachineOf itself",
			unit:     "web.service",
			fleet:    Fleet{MachineOf: []string{"db.service", "web.service"}},
			wantErrs: []string{`unit "web.service" cannot name itself in MachineOf`},
		},
		{
			name:     "too many values",
			fleet:    Fleet{MachineOf: numbered("m", 1001), Conflicts: numbered("c", 1001), Replaces: numbered("r", 1000)},
			wantErrs: []string{"MachineOf has 1001 values, more than the 1000 allowed", "Conflicts has 1001 values, more than the 1000 allowed"},
		},
		{
			name:  "at the value limit",
			fleet: Fleet{MachineOf: numbered("m", 1000), Conflicts: numbered("c*", 1000)},
		},
		{
			name:  "every broken rule reported",
			unit:  "web.service",
			fleet: Fleet{MachineID: "m1", Global: true, MachineOf: []string{"web.service"}, Conflicts: []string{"web*"}},
			wantErrs: []string{
				"MachineID cannot be combined with MachineOf",
				"MachineID cannot be combined with Conflicts",
				"MachineID cannot be combined with Global",
				"Global cannot be combined with MachineOf",
				`MachineOf unit "web.service" matches Conflicts pattern "web*"`,
				`unit "web.service" cannot name itself in MachineOf`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unit := tt.unit
			if unit == "" {
				unit = "self.service"
			}
			err := tt.fleet.Validate(unit)
			if tt.wantErrs == nil {
				require.NoError(t, err)
				return
			}
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func numbered(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d.service", prefix, i)
	}
	return s
}

// The usual fleet idiom: one instance per machine, next to its sidekick.
func TestValidateFromUnitFile(t *testing.T) {
	f, err := ParseString("[X-Fleet]\nConflicts=web@*.service\nMachineOf=web-discovery@%i.service\n")
	require.NoError(t, err)
	x, warnings, err := f.FleetOptions("web@1.service")
	require.NoError(t, err)
	require.Empty(t, warnings)
	require.NoError(t, x.Validate("web@1.service"))
	require.True(t, x.ConflictsWith("web@2.service"))
	require.False(t, x.ConflictsWith("web-discovery@1.service"))

	f, err = ParseString("[X-Fleet]\nMachineOf=%n\n")
	require.NoError(t, err)
	x, _, err = f.FleetOptions("web@1.service")
	require.NoError(t, err)
	require.ErrorContains(t, x.Validate("web@1.service"), "cannot name itself in MachineOf")
}

func TestMatchesMetadata(t *testing.T) {
	req := Fleet{MachineMetadata: map[string][]string{
		"region": {"us-east", "us-west"},
		"disk":   {"ssd"},
	}}
	tests := []struct {
		name  string
		fleet Fleet
		md    map[string]string
		want  bool
	}{
		{name: "no requirement, no metadata", fleet: Fleet{}, md: nil, want: true},
		{name: "no requirement", fleet: Fleet{}, md: map[string]string{"region": "eu"}, want: true},
		{name: "all keys, first value", fleet: req, md: map[string]string{"region": "us-east", "disk": "ssd"}, want: true},
		{name: "all keys, second value", fleet: req, md: map[string]string{"region": "us-west", "disk": "ssd"}, want: true},
		{name: "extra machine keys ignored", fleet: req, md: map[string]string{"region": "us-west", "disk": "ssd", "rack": "4"}, want: true},
		{name: "one key's value wrong", fleet: req, md: map[string]string{"region": "eu", "disk": "ssd"}, want: false},
		{name: "one key missing", fleet: req, md: map[string]string{"region": "us-east"}, want: false},
		{name: "no metadata", fleet: req, md: nil, want: false},
		{name: "exact match only", fleet: req, md: map[string]string{"region": "US-EAST", "disk": "ssd"}, want: false},
		{name: "no prefix match", fleet: req, md: map[string]string{"region": "us-east-1", "disk": "ssd"}, want: false},
		{name: "empty value not a wildcard", fleet: req, md: map[string]string{"region": "", "disk": "ssd"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.fleet.MatchesMetadata(tt.md))
		})
	}
}

func TestConflictsWith(t *testing.T) {
	tests := []struct {
		name      string
		conflicts []string
		unit      string
		want      bool
	}{
		{name: "none", conflicts: nil, unit: "web.service", want: false},
		{name: "exact", conflicts: []string{"db.service"}, unit: "db.service", want: true},
		{name: "exact, other unit", conflicts: []string{"db.service"}, unit: "db2.service", want: false},
		{name: "star", conflicts: []string{"web@*.service"}, unit: "web@3.service", want: true},
		{name: "star across dots", conflicts: []string{"web*"}, unit: "web.prod.socket", want: true},
		{name: "star, other prefix", conflicts: []string{"web@*.service"}, unit: "api@3.service", want: false},
		{name: "question mark", conflicts: []string{"web?.service"}, unit: "web1.service", want: true},
		{name: "question mark needs one char", conflicts: []string{"web?.service"}, unit: "web.service", want: false},
		{name: "character class", conflicts: []string{"web[12].service"}, unit: "web2.service", want: true},
		{name: "character class miss", conflicts: []string{"web[12].service"}, unit: "web3.service", want: false},
		{name: "any of several", conflicts: []string{"a.service", "b*"}, unit: "b.socket", want: true},
		{name: "malformed pattern matches nothing", conflicts: []string{"web[", "x"}, unit: "web[", want: false},
		{name: "whole name only", conflicts: []string{"web"}, unit: "web.service", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Fleet{Conflicts: tt.conflicts}.ConflictsWith(tt.unit))
		})
	}
}

func TestFleetOptionsAtMostOnce(t *testing.T) {
	tests := []struct {
		name           string
		lines          string
		clusterDefault bool
		want           bool
		wantWarning    string
	}{
		{name: "unset follows a false default", lines: "Global=false", want: false},
		{name: "unset follows a true default", lines: "Global=false", clusterDefault: true, want: true},
		{name: "true", lines: "AtMostOnce=true", want: true},
		{name: "false overrides the default", lines: "AtMostOnce=false", clusterDefault: true, want: false},
		{name: "last line wins", lines: "AtMostOnce=yes\nAtMostOnce=no", want: false},
		{name: "global never", lines: "AtMostOnce=true\nGlobal=true", want: false},
		{name: "not a boolean", lines: "AtMostOnce=maybe", clusterDefault: true, want: true,
			wantWarning: `[X-Fleet] AtMostOnce="maybe" is not a boolean; the cluster's default applies`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString("[X-Fleet]\n" + tt.lines + "\n")
			require.NoError(t, err)
			got, warnings, err := f.FleetOptions("db.service")
			require.NoError(t, err)
			require.Equal(t, tt.want, got.RunsAtMostOnce(tt.clusterDefault))
			if tt.wantWarning == "" {
				require.Empty(t, warnings)
			} else {
				require.Equal(t, []string{tt.wantWarning}, warnings)
			}
		})
	}
}

func TestMatchMachineID(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		want  string
		match bool
	}{
		{id, true},
		{"01234567", true},
		{"0123456", false},
		{"012345678", false},
		{"fedcba98", false},
		{"", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.match, MatchMachineID(id, tt.want), "MachineID=%q", tt.want)
		require.Equal(t, tt.match, Fleet{MachineID: tt.want}.PinnedTo(id), "MachineID=%q", tt.want)
	}
	require.True(t, MatchMachineID("short", "short"), "an ID of 8 characters or fewer matches only in full")
	require.False(t, MatchMachineID("01234567", "0123"))
}
