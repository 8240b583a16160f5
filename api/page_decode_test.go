package api

import (
	"fmt"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/stretchr/testify/require"
)

// decodeBoth decodes data with fastPage and with the general decoder into
// fresh values made by mk, and checks that fastPage either declines or
// agrees. It reports whether fastPage took it.
func decodeBoth(t testing.TB, data []byte, mk func() any) bool {
	fast, slow := mk(), mk()
	took := fastPage(data, fast)
	err := jsonv2.Unmarshal(data, slow, jsonv1.DefaultOptionsV1())
	if took {
		require.NoError(t, err, "fastPage took what the decoder refuses: %s", data)
		require.Equal(t, slow, fast, "%s", data)
	}
	return took
}

// TestFastPageMatchesDecoder checks fastPage against the general decoder on
// the pages the server sends (rows with every tricky string) and on pages
// it must leave alone.
func TestFastPageMatchesDecoder(t *testing.T) {
	states := func() any { return &UnitStatePage{} }
	sums := func() any { return &summaryPage{} }
	var ss []*UnitState
	var us []*UnitSummary
	for i, s := range trickyStrings {
		ss = append(ss, &UnitState{Name: fmt.Sprintf("u%d.service", i), Hash: "h", MachineID: "m", SystemdLoadState: s, SystemdActiveState: "active", SystemdSubState: s, Reason: s})
		us = append(us, &UnitSummary{Name: fmt.Sprintf("u%d.service", i), Hash: "h", DesiredState: "launched", CurrentState: s, MachineID: "m", Global: i%2 == 0, Description: s, UnplacedReason: s})
	}
	// As sendPage writes them, row by row.
	page := func(head, field string, rows []jsonAppender, next string) []byte {
		b := []byte("{" + head + `"` + field + `":[`)
		for i, r := range rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.appendJSON(b)
		}
		b = append(b, ']')
		if next != "" {
			b = append(b, `,"nextPageToken":`...)
			b = appendJSONString(b, next)
		}
		return append(b, "}\n"...)
	}
	took := 0
	for i := range ss {
		// One row at a time: a row with an escape sends its page to the
		// general decoder, the others take the fast path.
		if decodeBoth(t, page("", "states", []jsonAppender{ss[i]}, "tok"), states) {
			took++
		}
		if decodeBoth(t, page(`"view":"summary",`, "units", []jsonAppender{us[i]}, ""), sums) {
			took++
		}
	}
	require.Equal(t, 6, took, "plain rows, UTF-8 included, take the fast path")
	plain := page("", "states", []jsonAppender{ss[0], ss[1], ss[5]}, "")
	require.True(t, decodeBoth(t, plain, states))

	for _, data := range []string{
		`{"states":[]}`, `{"states":[]}` + "\n", `{}`, `{"states":[{}]}`,
		`{"states":[],"states":[{"name":"a"}]}`,
		`{"units":[{"name":"a","options":[]}]}`, // a server without summaries
		`{"units":[{"name":"a","global":true}],"view":"summary"}`,
		`{"units":[{"name":"a","global":null}]}`,
		`{"States":[]}`, `{ "states":[]}`, `{"states":[]} `, `{"states":[{"name":"a"}]`,
		`{"states":[{"name":"a","Name":"b"}]}`, `{"states":[{"name":1}]}`, `[]`, ``,
		`{"units":[{"name":"a","global":truex}]}`,
	} {
		decodeBoth(t, []byte(data), states)
		decodeBoth(t, []byte(data), sums)
	}
}

func FuzzFastPage(f *testing.F) {
	f.Add([]byte(`{"view":"summary","units":[{"name":"a","hash":"h","global":true,"description":"d"}],"nextPageToken":"x"}`))
	f.Add([]byte(`{"states":[{"name":"a","hash":"h","machineID":"m","systemdLoadState":"l","systemdActiveState":"a","systemdSubState":"s"}]}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBoth(t, data, func() any { return &UnitStatePage{} })
		decodeBoth(t, data, func() any { return &summaryPage{} })
	})
}
