package api_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
)

// TestPagingReadsOnce: the pages of one listing are cut from one read, so a
// unit submitted between two pages does not shift them (fleet re-read the
// collection per page); a token in fleet v1.0's own format (page size and
// page number only) still pages, reading afresh.
func TestPagingReadsOnce(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	submit := func(name string) {
		a := call(t, srv.URL, "PUT", "/fleet/v1/units/"+name, strings.Replace(helloJSON, "hello.service", name, 1))
		require.Equal(t, http.StatusCreated, a.code, a.body)
	}
	for i := range 250 {
		submit(fmt.Sprintf("u%03d.service", i))
	}
	names := func(p map[string]any) []string {
		var out []string
		for _, u := range p["units"].([]any) {
			out = append(out, u.(map[string]any)["name"].(string))
		}
		return out
	}
	var seen []string
	p := call(t, srv.URL, "GET", "/fleet/v1/units", "").json(t)
	seen = append(seen, names(p)...)
	// Sorted first: it would shift every later page of a fresh read.
	submit("a-late.service")
	for p["nextPageToken"] != nil {
		p = call(t, srv.URL, "GET", "/fleet/v1/units?nextPageToken="+p["nextPageToken"].(string), "").json(t)
		seen = append(seen, names(p)...)
	}
	require.Len(t, seen, 250, "the listing is the one read when it began")
	for i, n := range seen {
		require.Equal(t, fmt.Sprintf("u%03d.service", i), n)
	}

	// fleet v1.0's token for page 3 of 100: a fresh read, 251 units now.
	var b [4]byte
	binary.LittleEndian.PutUint16(b[0:], 100)
	binary.LittleEndian.PutUint16(b[2:], 3)
	p = call(t, srv.URL, "GET", "/fleet/v1/units?nextPageToken="+base64.URLEncoding.EncodeToString(b[:]), "").json(t)
	require.Len(t, names(p), 51)
	require.Nil(t, p["nextPageToken"])

	// The HTTP client pages through all of it.
	hc, err := api.NewHTTPClient(srv.URL, 0)
	require.NoError(t, err)
	us, err := hc.Units(c.ctx)
	require.NoError(t, err)
	require.Len(t, us, 251)
}
