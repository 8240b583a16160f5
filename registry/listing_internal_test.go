package registry

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

var flatRecords = []string{
	`{"hash":"0123456789abcdef0123456789abcdef01234567","desiredState":"launched"}`,
	`{"desiredState":"inactive","hash":"ab"}`,
	`{"hash":"ab","desiredState":"loaded","hash":"cd"}`, // the last wins
	`{}`,
	`{"hash":""}`,
	`{"hash":"a\"b","desiredState":"launched"}`,
	`{"hash":"a\\b"}`,
	`{"hash":"a\u0041"}`,
	`{"Hash":"ab"}`, // encoding/json matches names in any case
	`{"hash":"ab","rollout":{"from":"x"}}`,
	`{"hash":"ab","desiredState":null}`,
	`{"hash":"ab" ,"desiredState":"x"}`,
	`{ "hash":"ab"}`,
	`{"hash":"ab",}`,
	`{"hash":"ab"}x`,
	`{"hash":"ab`,
	`{"hash":1}`,
	"{\"hash\":\"caf\xc3\xa9\"}",
	"{\"hash\":\"bad\xff\"}",
	`{"hash":"ab","desiredState":"launched","other":"x"}`,
	`[]`,
	``,
	`{"hash":"ab","loadState":"loaded","activeState":"active","subState":"running","reason":"","health":"pass"}`,
	`{"hash":"ab","loadState":"loaded","activeState":"failed","subState":"failed","reason":"refused"}`,
}

// TestFastDecodersMatchJSON checks that what the fast decoders accept they
// decode as encoding/json does.
func TestFastDecodersMatchJSON(t *testing.T) {
	r := New(nil)
	accepted, states := 0, 0
	for _, v := range flatRecords {
		u, ok := fastUnit("a.service", []byte(v), 7)
		if ok {
			accepted++
			want := Unit{Name: "a.service", ModRev: 7}
			require.NoError(t, json.Unmarshal([]byte(v), &want), v)
			require.Equal(t, want, u, v)
		}
		if s, ok := fastState("m1", "a.service", []byte(v)); ok {
			states++
			want := UnitState{Machine: "m1", Name: "a.service"}
			require.NoError(t, json.Unmarshal([]byte(v), &want), v)
			require.Equal(t, want, s, v)
		}
		key := r.keys.schedules() + "m1/a.service"
		p, ok := r.fastPlacement([]byte(key), []byte(v))
		if ok {
			want, err := r.decodePlacement(key, []byte(v))
			require.NoError(t, err, v)
			require.Equal(t, want, p, v)
		}
	}
	require.Equal(t, 5, accepted, "the plain records take the fast path")
	require.Equal(t, 4, states, "the plain states take the fast path")
}

func FuzzFastUnit(f *testing.F) {
	for _, v := range flatRecords {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		u, ok := fastUnit("a.service", v, 1)
		if !ok {
			return
		}
		want := Unit{Name: "a.service", ModRev: 1}
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", v, err)
		}
		if want != u {
			t.Fatalf("%q: fast %+v, encoding/json %+v", v, u, want)
		}
	})
}
