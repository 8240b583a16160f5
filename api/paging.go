package api

import (
	"encoding/base64"
	"encoding/binary"
	"net/url"
	"strconv"
)

// pageSize is fleet's page size, the default. A client may ask for pages of
// up to maxPageSize items with ?pageSize= (an extension): every page is cut
// from a fresh read of the whole collection, as in fleet, so fleetctl asks
// for the largest pages to read a big cluster in few requests.
const (
	pageSize    = 100
	maxPageSize = 65535
)

// pageToken is fleet's nextPageToken: URL-safe base64 of two little-endian
// uint16s, the page size and the 1-based page number. It is kept byte for
// byte so tokens from fleet clients work.
type pageToken struct {
	limit, page uint16
}

func firstPage(limit uint16) pageToken { return pageToken{limit: limit, page: 1} }

func (t pageToken) next() pageToken { return pageToken{limit: t.limit, page: t.page + 1} }

func (t pageToken) encode() string {
	var b [4]byte
	binary.LittleEndian.PutUint16(b[0:], t.limit)
	binary.LittleEndian.PutUint16(b[2:], t.page)
	return base64.URLEncoding.EncodeToString(b[:])
}

func parsePageToken(s string) (pageToken, error) {
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil || len(b) != 4 {
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken %q: not a token this API issued", clipText(s, 40))
	}
	t := pageToken{limit: binary.LittleEndian.Uint16(b[0:]), page: binary.LittleEndian.Uint16(b[2:])}
	switch {
	case t.limit == 0:
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken: page size must be greater than zero")
	case t.page == 0:
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken: page must be greater than zero")
	}
	return t, nil
}

// pageOf returns the items of page t and the token of the next page ("" on
// the last).
func pageOf[T any](all []T, t pageToken) ([]T, string) {
	start := int(t.page-1) * int(t.limit)
	end := start + int(t.limit)
	if start >= len(all) {
		return []T{}, ""
	}
	if end >= len(all) {
		return all[start:], ""
	}
	return all[start:end], t.next().encode()
}

// pageFromQuery reads ?pageSize= (default fleet's 100) and ?nextPageToken=,
// whose page size must be the one asked for: a token with another size is
// not one this API issued for that listing.
func pageFromQuery(q url.Values) (pageToken, error) {
	size := uint16(pageSize)
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return pageToken{}, errorf(ErrInvalid, "invalid pageSize %q: want 1 to %d", clipText(v, 20), maxPageSize)
		}
		size = uint16(n)
	}
	values := q["nextPageToken"]
	switch len(values) {
	case 0:
		return firstPage(size), nil
	case 1:
		t, err := parsePageToken(values[0])
		if err == nil && t.limit != size {
			err = errorf(ErrInvalid, "invalid nextPageToken: page size must be %d", size)
		}
		return t, err
	}
	return pageToken{}, errorf(ErrInvalid, "give at most one nextPageToken, not %d", len(values))
}
