package unit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMachineMetadataOperators(t *testing.T) {
	tests := []struct {
		name    string
		unit    string
		lines   string
		wantEq  map[string][]string
		want    []Constraint
		wantErr string
	}{
		{name: "fleet's k=v unchanged", lines: "MachineMetadata=region=us region=eu role=web",
			wantEq: map[string][]string{"region": {"us", "eu"}, "role": {"web"}}},
		{name: "not equal", lines: "MachineMetadata=role!=db",
			want: []Constraint{{Key: "role", Op: OpNotEqual, Values: []string{"db"}}}},
		{name: "in and not in, spaces inside the list", lines: "MachineMetadata=zone in (a, b) tier not in (x,y)",
			want: []Constraint{{Key: "zone", Op: OpIn, Values: []string{"a", "b"}}, {Key: "tier", Op: OpNotIn, Values: []string{"x", "y"}}}},
		{name: "exists and !exists", lines: "MachineMetadata=gpu exists spot !exists",
			want: []Constraint{{Key: "gpu", Op: OpExists}, {Key: "spot", Op: OpNotExists}}},
		{name: "numeric", lines: "MachineMetadata=cores>=8 disk<100 mem>2.5 gen<=3",
			want: []Constraint{{Key: "cores", Op: OpGE, Values: []string{"8"}}, {Key: "disk", Op: OpLT, Values: []string{"100"}},
				{Key: "mem", Op: OpGT, Values: []string{"2.5"}}, {Key: "gen", Op: OpLE, Values: []string{"3"}}}},
		{name: "regexp", lines: "MachineMetadata=host~=^web-[0-9]+$",
			want: []Constraint{{Key: "host", Op: OpRegexp, Values: []string{"^web-[0-9]+$"}}}},
		{name: "mixed with k=v over lines", lines: "MachineMetadata=region=us\nMachineMetadata=zone!=c",
			wantEq: map[string][]string{"region": {"us"}}, want: []Constraint{{Key: "zone", Op: OpNotEqual, Values: []string{"c"}}}},
		{name: "specifier in an operator", unit: "app@b.service", lines: "MachineMetadata=zone!=%i",
			want: []Constraint{{Key: "zone", Op: OpNotEqual, Values: []string{"b"}}}},
		{name: "missing operator", lines: "MachineMetadata=region=us zone", wantErr: `column 11: "zone" is not key=value`},
		{name: "unknown operator word", lines: "MachineMetadata=zone is (a)", wantErr: `column 1: "zone" is not key=value`},
		{name: "unclosed list", lines: "MachineMetadata=zone in (a,b", wantErr: `column 9: list "(a,b" has no closing ')'`},
		{name: "list expected", lines: "MachineMetadata=zone in a", wantErr: `column 6: after "in", expected a list like (a,b)`},
		{name: "not without in", lines: "MachineMetadata=zone not (a)", wantErr: `column 6: after "not", expected "in"`},
		{name: "empty list value", lines: "MachineMetadata=zone in (a,,b)", wantErr: `column 9: list "(a,,b)" has an empty or malformed value`},
		{name: "not a number", lines: "MachineMetadata=role=web cores>=eight", wantErr: `column 10: cores>=: "eight" is not a number`},
		{name: "bad regexp", lines: "MachineMetadata=host~=web[", wantErr: "column 1: host~=: error parsing regexp"},
		{name: "empty key", lines: "MachineMetadata=!=x", wantErr: `column 1: "!=x" is not key=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.unit
			if name == "" {
				name = "web.service"
			}
			f, err := ParseString("[Service]\nExecStart=/bin/true\n[X-Fleet]\n" + tt.lines + "\n")
			require.NoError(t, err)
			x, _, err := f.FleetOptions(name)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantEq, x.MachineMetadata)
			require.Equal(t, tt.want, x.Constraints)
		})
	}
}

func TestConstraintMatcher(t *testing.T) {
	md := map[string]string{"zone": "a", "cores": "16", "host": "web-12", "word": "x"}
	tests := []struct {
		c    Constraint
		want bool
	}{
		{Constraint{Key: "zone", Op: OpNotEqual, Values: []string{"b"}}, true},
		{Constraint{Key: "zone", Op: OpNotEqual, Values: []string{"a"}}, false},
		{Constraint{Key: "absent", Op: OpNotEqual, Values: []string{"a"}}, true},
		{Constraint{Key: "zone", Op: OpIn, Values: []string{"a", "b"}}, true},
		{Constraint{Key: "absent", Op: OpIn, Values: []string{"a"}}, false},
		{Constraint{Key: "zone", Op: OpNotIn, Values: []string{"a", "b"}}, false},
		{Constraint{Key: "absent", Op: OpNotIn, Values: []string{"a"}}, true},
		{Constraint{Key: "zone", Op: OpExists}, true},
		{Constraint{Key: "absent", Op: OpExists}, false},
		{Constraint{Key: "absent", Op: OpNotExists}, true},
		{Constraint{Key: "cores", Op: OpGE, Values: []string{"16"}}, true},
		{Constraint{Key: "cores", Op: OpGT, Values: []string{"16"}}, false},
		{Constraint{Key: "cores", Op: OpLT, Values: []string{"100"}}, true},
		{Constraint{Key: "cores", Op: OpLE, Values: []string{"8"}}, false},
		{Constraint{Key: "word", Op: OpGE, Values: []string{"0"}}, false},
		{Constraint{Key: "absent", Op: OpLT, Values: []string{"1"}}, false},
		{Constraint{Key: "host", Op: OpRegexp, Values: []string{"^web-[0-9]+$"}}, true},
		{Constraint{Key: "host", Op: OpRegexp, Values: []string{"^db"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.c.String(), func(t *testing.T) {
			require.Equal(t, tt.want, tt.c.Matcher()(md))
		})
	}
}

func TestResources(t *testing.T) {
	tests := []struct {
		name, unit, text string
		cpu, mem         int64
		max              int
		group, spread    string
		wantErr          string
		enforced         []string // lines EnforceLimits adds
	}{
		{name: "own systemd limits", text: "[Service]\nCPUQuota=150%\nMemoryMax=512M\n", cpu: 1500, mem: 512 << 20},
		{name: "MemoryLimit", text: "[Service]\nMemoryLimit=1G\n", mem: 1 << 30},
		{name: "MemoryLow without a limit", text: "[Service]\nMemoryLow=256M\n", mem: 256 << 20},
		{name: "infinity is none", text: "[Service]\nMemoryMax=infinity\n"},
		{name: "X-Fleet", text: "[Service]\nExecStart=/bin/true\n[X-Fleet]\nCPU=0.5\nMemory=1.5G\n", cpu: 500, mem: 3 << 29,
			enforced: []string{"CPUQuota=50%", "MemoryMax=1610612736"}},
		{name: "own setting wins", text: "[Service]\nMemoryMax=1G\n[X-Fleet]\nMemory=2G\nCPU=2\n", cpu: 2000, mem: 1 << 30,
			enforced: []string{"CPUQuota=200%"}},
		{name: "bad memory", text: "[X-Fleet]\nMemory=lots\n", wantErr: `[X-Fleet] Memory=lots: "lots" is not a memory size`},
		{name: "bad cpu", text: "[X-Fleet]\nCPU=-1\n", wantErr: `[X-Fleet] CPU=-1: "-1" is not a CPU amount`},
		{name: "template group", unit: "web@1.service", text: "[X-Fleet]\nSpreadBy=zone\nMaxPerMachine=2\n", group: "web@.service", spread: "zone", max: 2},
		{name: "explicit group", text: "[X-Fleet]\nGroup=db\nMaxPerMachine=1\n", group: "db", max: 1},
		{name: "bad max", text: "[X-Fleet]\nGroup=db\nMaxPerMachine=0\n", wantErr: "MaxPerMachine=0: want a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.unit
			if name == "" {
				name = "web.service"
			}
			f, err := ParseString(tt.text)
			require.NoError(t, err)
			x, _, err := f.FleetOptions(name)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.cpu, x.CPU, "cpu")
			require.Equal(t, tt.mem, x.Memory, "memory")
			require.Equal(t, tt.group, x.Group)
			require.Equal(t, tt.spread, x.SpreadBy)
			require.Equal(t, tt.max, x.MaxPerMachine)
			out := EnforceLimits(name, tt.text)
			if len(tt.enforced) == 0 {
				require.Equal(t, tt.text, out)
				return
			}
			for _, l := range tt.enforced {
				require.Contains(t, out, "\n"+l+"\n")
			}
			// What the agent writes counts the same demand.
			g, err := ParseString(out)
			require.NoError(t, err)
			y, _, err := g.FleetOptions(name)
			require.NoError(t, err)
			require.Equal(t, [2]int64{x.CPU, x.Memory}, [2]int64{y.CPU, y.Memory})
		})
	}
}

func TestValidateGroups(t *testing.T) {
	require.ErrorContains(t, Fleet{SpreadBy: "zone"}.Validate("a.service"), "SpreadBy and MaxPerMachine apply to a group")
	require.ErrorContains(t, Fleet{Global: true, Group: "g", MaxPerMachine: 1}.Validate("a.service"), "Global cannot be combined with SpreadBy")
	require.NoError(t, Fleet{Group: "g", SpreadBy: "zone"}.Validate("a.service"))
}

func TestFormatMemory(t *testing.T) {
	require.Equal(t, "1.5 GiB", FormatMemory(3<<29))
	require.Equal(t, "2 GiB", FormatMemory(2<<30))
	require.Equal(t, "512 MiB", FormatMemory(512<<20))
	require.Equal(t, "100 B", FormatMemory(100))
}
