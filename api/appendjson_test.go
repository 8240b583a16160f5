package api

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var trickyStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\b\f\n\r\t\x00\x01\x1f\x7f",
	"é ü 日本 🚀", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xe2\x80", "\xed\xa0\x80 surrogate",
}

// TestAppendJSONMatchesMarshal checks the hand-written encodings of the
// listing rows against encoding/json, byte for byte.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		if rng.IntN(3) == 0 {
			return trickyStrings[rng.IntN(len(trickyStrings))]
		}
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	check := func(v jsonAppender) {
		want, err := json.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(want), string(v.appendJSON(nil)))
	}
	for _, s := range trickyStrings {
		check(&UnitState{Name: s, Hash: s, MachineID: s, SystemdLoadState: s, SystemdActiveState: s, SystemdSubState: s, Reason: s})
		check(&UnitSummary{Name: s, Hash: s, DesiredState: s, CurrentState: s, MachineID: s, Global: s != "", Description: s, UnplacedReason: s})
	}
	for range 5000 {
		check(&UnitState{Name: str(), Hash: str(), MachineID: str(), SystemdLoadState: str(), SystemdActiveState: str(), SystemdSubState: str(), Reason: str()})
		check(&UnitSummary{Name: str(), Hash: str(), DesiredState: str(), CurrentState: str(), MachineID: str(), Global: rng.IntN(2) == 0, Description: str(), UnplacedReason: str()})
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, encoding/json %s (valid UTF-8: %v)", s, got, want, utf8.ValidString(s))
		}
	})
}
