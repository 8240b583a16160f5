package functional

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The parts of the chaos run that need no hosts.

func TestChaosSchedule(t *testing.T) {
	r := &chaosRunner{cfg: chaosConfig{kinds: faultKinds}, kinds: rand.New(rand.NewPCG(chaosDefaultSeed, 0x5eed))}
	var all []string
	var rounds [][]string
	for range chaosDefaultRounds {
		k := r.draw(chaosFaultsPerRound)
		require.Len(t, k, chaosFaultsPerRound)
		require.Len(t, slices.Compact(slices.Clone(k)), chaosFaultsPerRound, "a round's faults are distinct: %v", k)
		rounds = append(rounds, k)
		all = append(all, k...)
	}
	slices.Sort(all)
	want := slices.Clone(faultKinds)
	slices.Sort(want)
	require.Equal(t, want, all, "the short run injects every kind of fault once")
	// What the default seed is chosen for: a re-executed systemd whose
	// agent must start units at once, the other host being killed.
	require.Equal(t, []string{faultReexec, faultHostKill}, rounds[0])
}

func TestParseSystemctlShow(t *testing.T) {
	out := "ActiveState=active\nMainPID=42\nActiveEnterTimestampMonotonic=123\nId=chaos-a.service\nDescription=chaos v2\n\n" +
		"Id=chaos-b@1.service\nActiveState=inactive\nMainPID=0\nActiveEnterTimestampMonotonic=0\n"
	got := parseShow(out)
	require.Equal(t, map[string]unitRun{
		"chaos-a.service":   {active: "active", pid: "42", since: "123", desc: "chaos v2"},
		"chaos-b@1.service": {active: "inactive", pid: "0", since: "0"},
	}, got)
	require.True(t, got["chaos-a.service"].running())
	require.False(t, got["chaos-b@1.service"].running())
	require.False(t, unitRun{active: "activating"}.running(), "a unit starting has not converged")
	require.True(t, unitRun{active: "activating"}.copy(), "but it is a copy")
	require.True(t, unitRun{active: "deactivating"}.running(), "a unit still stopping is a copy")
	require.False(t, unitRun{active: "failed"}.copy())
	require.Empty(t, parseShow(""))
}

func TestChaosOperations(t *testing.T) {
	r := &chaosRunner{opKinds: rand.New(rand.NewPCG(chaosDefaultSeed, chaosOpsStream))}
	o := &chaosOps{r: r}
	seen := map[string]int{}
	for range chaosDefaultRounds {
		k := o.draw(chaosOpsPerRound)
		require.Len(t, k, chaosOpsPerRound)
		require.False(t, slices.Contains(k, opDrain) && slices.Contains(k, opDrainDeadline), "one drain a round: %v", k)
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(k))), chaosOpsPerRound, "a round's operations are distinct: %v", k)
		for _, x := range k {
			seen[x]++
		}
	}
	for _, k := range opKinds {
		require.NotZero(t, seen[k], "the short run does every operation: %s missing", k)
	}
	require.Equal(t, 1, seen[opReboot], "one reboot in the short run: the longest operations come once")
	require.Equal(t, 1, seen[opUpdate], "one rolling update in the short run")
}

func TestPlacedAnew(t *testing.T) {
	before := map[string]string{"a.service": "m1", "b.service": "m2", "chaos-pinned@m3.service": "", "c.service": "m3"}
	now := map[string]string{"a.service": "m3", "b.service": "m1", "chaos-pinned@m3.service": "m3", "c.service": "m3", "d.service": "m3"}
	moved, bad := placedAnew(before, now, map[string]bool{"m3": true})
	require.Equal(t, []string{"a.service", "b.service", "chaos-pinned@m3.service"}, moved)
	require.Equal(t, []string{"a.service"}, bad, "a moved onto the draining m3; c stays there, pinned units may, d is new to the listing")
	_, bad = placedAnew(before, now, nil)
	require.Empty(t, bad, "nothing was draining")
}
