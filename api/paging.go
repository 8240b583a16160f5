package api

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// pageSize is fleet's page size, the default. A client may ask for pages of
// up to maxPageSize items with ?pageSize= (an extension). A listing of more
// than one page is read once: the server keeps what it read for the pages
// that follow (listCache), whose tokens name it, so paging costs one read
// of the collection, at one revision, not one per page as in fleet.
const (
	pageSize    = 100
	maxPageSize = 65535
)

// pageToken is fleet's nextPageToken: URL-safe base64 of two little-endian
// uint16s, the page size and the 1-based page number, kept byte for byte so
// tokens from fleet clients work; this server's tokens add a third field,
// a little-endian uint64 naming the listing's snapshot in listCache (fleet's
// clients pass tokens back without looking into them).
type pageToken struct {
	limit, page uint16
	snap        uint64 // 0: none, read the collection
}

func firstPage(limit uint16) pageToken { return pageToken{limit: limit, page: 1} }

func (t pageToken) next() pageToken { return pageToken{limit: t.limit, page: t.page + 1, snap: t.snap} }

func (t pageToken) encode() string {
	var b [12]byte
	binary.LittleEndian.PutUint16(b[0:], t.limit)
	binary.LittleEndian.PutUint16(b[2:], t.page)
	if t.snap == 0 {
		return base64.URLEncoding.EncodeToString(b[:4])
	}
	binary.LittleEndian.PutUint64(b[4:], t.snap)
	return base64.URLEncoding.EncodeToString(b[:])
}

func parsePageToken(s string) (pageToken, error) {
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 12) {
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken %q: not a token this API issued", clipText(s, 40))
	}
	t := pageToken{limit: binary.LittleEndian.Uint16(b[0:]), page: binary.LittleEndian.Uint16(b[2:])}
	if len(b) == 12 {
		t.snap = binary.LittleEndian.Uint64(b[4:])
	}
	switch {
	case t.limit == 0:
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken: page size must be greater than zero")
	case t.page == 0:
		return pageToken{}, errorf(ErrInvalid, "invalid nextPageToken: page must be greater than zero")
	}
	return t, nil
}

// pageOf returns the items of page t and whether more follow.
func pageOf[T any](all []T, t pageToken) ([]T, bool) {
	start := int(t.page-1) * int(t.limit)
	end := start + int(t.limit)
	if start >= len(all) {
		return []T{}, false
	}
	if end >= len(all) {
		return all[start:], false
	}
	return all[start:end], true
}

// listCacheTTL is how long a listing's snapshot serves its later pages.
// A client that comes back later gets a fresh read, as from fleet.
const listCacheTTL = time.Minute

// listCacheSize bounds the snapshots kept (each can hold a whole
// collection); the oldest goes first.
const listCacheSize = 4

// listCache keeps the collections read for listings of several pages, so
// the pages that follow the first are cut from the same read.
type listCache struct {
	mu      sync.Mutex
	last    uint64
	entries map[uint64]listSnapshot
}

type listSnapshot struct {
	key   string // the collection and its filter
	items any
	at    time.Time
}

func newListCache() *listCache {
	// Snapshot numbers start from the clock so that a token from before a
	// restart names nothing here.
	return &listCache{last: uint64(time.Now().UnixNano()), entries: map[uint64]listSnapshot{}}
}

func (c *listCache) put(key string, items any, now time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		if now.Sub(e.at) > listCacheTTL {
			delete(c.entries, id)
		}
	}
	for len(c.entries) >= listCacheSize {
		oldest := uint64(0)
		for id := range c.entries {
			if oldest == 0 || id < oldest {
				oldest = id
			}
		}
		delete(c.entries, oldest)
	}
	c.last++
	c.entries[c.last] = listSnapshot{key: key, items: items, at: now}
	return c.last
}

func (c *listCache) get(key string, id uint64, now time.Time) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.key != key || now.Sub(e.at) > listCacheTTL {
		return nil, false
	}
	return e.items, true
}

// page answers one page of a listing: from the snapshot its token names,
// or read afresh (a first page, or a snapshot gone). A listing that does not
// fit one page is kept for the pages that follow.
func page[T any](s *server, key string, t pageToken, read func() ([]T, error)) ([]T, string, error) {
	var all []T
	if t.snap != 0 {
		if v, ok := s.lists.get(key, t.snap, time.Now()); ok {
			all = v.([]T)
		}
	}
	if all == nil {
		var err error
		if all, err = read(); err != nil {
			return nil, "", err
		}
		t.snap = 0
	}
	items, more := pageOf(all, t)
	if !more {
		return items, "", nil
	}
	if t.snap == 0 {
		t.snap = s.lists.put(key, all, time.Now())
	}
	return items, t.next().encode(), nil
}

// sendPage streams a page as {"<field>":[...],"nextPageToken":"..."}, one
// item at a time, instead of building the whole answer in memory first.
func sendPage[T any](s *server, w http.ResponseWriter, field string, items []T, next string) {
	sendPageWith(s, w, "", field, items, next)
}

// sendPageWith is sendPage with head, `"name":value,` pairs, before the
// items.
func sendPageWith[T any](s *server, w http.ResponseWriter, head, field string, items []T, next string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{` + head + `"` + field + `":[`)
	var buf []byte
	for i, it := range items {
		var b []byte
		if a, ok := any(it).(jsonAppender); ok {
			buf = a.appendJSON(buf[:0])
			b = buf
		} else {
			var err error
			if b, err = json.Marshal(it); err != nil {
				// The status is sent: cut the answer short, so the client's
				// decoder fails instead of reading a partial list as whole.
				s.log.Error("encode API answer", "err", err)
				return
			}
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	bw.WriteByte(']')
	if next != "" {
		nb, _ := json.Marshal(next)
		bw.WriteString(`,"nextPageToken":`)
		bw.Write(nb)
	}
	bw.WriteString("}\n")
	_ = bw.Flush() // the client went away; nothing to do
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
