package machine

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "pairs with spaces", in: " role=web , region = eu ", want: map[string]string{"role": "web", "region": "eu"}},
		{name: "empty value", in: "flag=", want: map[string]string{"flag": ""}},
		{name: "trailing comma", in: "a=1,", want: map[string]string{"a": "1"}},
		{name: "no equals", in: "role", err: `entry "role" is not key=value`},
		{name: "empty key", in: "=web", err: "is not key=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMetadata(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	require.Equal(t, "a=1,b=2", FormatMetadata(map[string]string{"b": "2", "a": "1"}))
}

func TestReadID(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "id")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	id, err := ReadID(write("abc123\n"))
	require.NoError(t, err)
	require.Equal(t, "abc123", id)
	_, err = ReadID(write("\n"))
	require.ErrorIs(t, err, ErrNoMachineID)
	_, err = ReadID(write("a/b"))
	require.ErrorContains(t, err, "not a valid machine ID")
	_, err = ReadID(filepath.Join(dir, "missing"))
	require.Error(t, err)
	require.Equal(t, "abcdefgh", ShortID("abcdefgh12345"))
	require.Equal(t, "abc", Machine{ID: "abc"}.ShortID())
}

func TestDefaultRouteInterface(t *testing.T) {
	p := filepath.Join(t.TempDir(), "route")
	require.NoError(t, os.WriteFile(p, []byte(
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
			"eth1\t00000000\t0100000A\t0003\t0\t0\t200\t00000000\t0\t0\t0\n"+
			"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"+
			"eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"), 0o644))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	iface, err := defaultRouteInterface(f)
	require.NoError(t, err)
	require.Equal(t, "eth0", iface, "the default route with the lowest metric wins")

	_, err = DefaultRouteIP(filepath.Join(t.TempDir(), "none"))
	require.ErrorContains(t, err, "detect public IP")
}

func TestMemTotal(t *testing.T) {
	n, err := memTotal(strings.NewReader("MemFree:  100 kB\nMemTotal:       16384 kB\n"))
	require.NoError(t, err)
	require.Equal(t, int64(16384<<10), n)
	_, err = memTotal(strings.NewReader("MemFree: 1 kB\n"))
	require.ErrorContains(t, err, "no MemTotal line")
}

func TestDetectCapacityReserves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meminfo")
	require.NoError(t, os.WriteFile(path, []byte("MemTotal: 1048576 kB\n"), 0o644))
	c, err := DetectCapacity(path, 500, 256<<20)
	require.NoError(t, err)
	require.Equal(t, int64(1<<30-256<<20), c.Memory)
	require.Equal(t, int64(runtime.NumCPU())*1000-500, c.CPU)
	c, err = DetectCapacity(path, 0, 4<<30)
	require.NoError(t, err)
	require.Zero(t, c.Memory, "a reservation above the machine leaves nothing")
}
