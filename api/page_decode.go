package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// getPage GETs one page of a listing and decodes it into out. A page of
// 100,000 rows took encoding/json ~200 ms to scan twice and decode; the v2
// decoder, with encoding/json's semantics (case-insensitive names,
// duplicate names and invalid UTF-8 accepted), takes a fraction of it, and
// the pages fleetd sends of states and summaries (flat objects of plain
// strings) are read by fastPage in a fraction of that.
func (c *httpClient) getPage(ctx context.Context, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(min(resp.ContentLength, 1<<30)) + 1)
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("read answer of fleetd at %s to GET %s: %w", c.endpoint, path, err)
	}
	if fastPage(buf.Bytes(), out) {
		return nil
	}
	if err := jsonv2.Unmarshal(buf.Bytes(), out, jsonv1.DefaultOptionsV1()); err != nil {
		return fmt.Errorf("decode answer of fleetd at %s to GET %s: %w", c.endpoint, path, err)
	}
	return nil
}

// fastPage decodes data into out, a *UnitStatePage or *summaryPage, if it
// is what fleetd sends: no whitespace, names as written, plain strings
// (no escapes, valid UTF-8), and reports whether it did. Anything else is
// left to the general decoder, which then decodes it afresh: the result is
// the same (TestFastPageMatchesDecoder).
func fastPage(data []byte, out any) bool {
	// The rows' strings are cut from one copy of the page: one allocation
	// instead of one per field, and the page is all rows anyway.
	d := flatDecoder{data: string(data)}
	switch p := out.(type) {
	case *UnitStatePage:
		var np UnitStatePage
		ok := d.page(func(key string) bool {
			switch key {
			case "states":
				np.States = []*UnitState{} // as the general decoder: the last one wins
				return d.array(func() bool {
					s := &UnitState{}
					np.States = append(np.States, s)
					return d.object(func(k, v string) bool {
						switch k {
						case "name":
							s.Name = v
						case "hash":
							s.Hash = v
						case "machineID":
							s.MachineID = v
						case "systemdLoadState":
							s.SystemdLoadState = v
						case "systemdActiveState":
							s.SystemdActiveState = v
						case "systemdSubState":
							s.SystemdSubState = v
						case "reason":
							s.Reason = v
						default:
							return false
						}
						return true
					}, nil)
				})
			case "nextPageToken":
				return d.strTo(&np.NextPageToken)
			}
			return false
		})
		if ok {
			*p = np
		}
		return ok
	case *summaryPage:
		var np summaryPage
		ok := d.page(func(key string) bool {
			switch key {
			case "units":
				np.Units = []*summaryOrUnit{}
				return d.array(func() bool {
					s := &summaryOrUnit{}
					np.Units = append(np.Units, s)
					return d.object(func(k, v string) bool {
						switch k {
						case "name":
							s.Name = v
						case "hash":
							s.Hash = v
						case "desiredState":
							s.DesiredState = v
						case "currentState":
							s.CurrentState = v
						case "machineID":
							s.MachineID = v
						case "description":
							s.Description = v
						case "unplacedReason":
							s.UnplacedReason = v
						default:
							return false
						}
						return true
					}, func(k string, b bool) bool {
						if k != "global" {
							return false
						}
						s.Global = b
						return true
					})
				})
			case "view":
				return d.strTo(&np.View)
			case "nextPageToken":
				return d.strTo(&np.NextPageToken)
			}
			return false
		})
		if ok {
			*p = np
		}
		return ok
	}
	return false
}

// flatDecoder reads the subset of JSON fastPage takes.
type flatDecoder struct {
	data string
	i    int
}

func (d *flatDecoder) eat(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// page reads {"key":value,...} to the end of the data (a trailing newline
// allowed), value read by field.
func (d *flatDecoder) page(field func(key string) bool) bool {
	if !d.eat('{') {
		return false
	}
	if !d.eat('}') {
		for {
			k, ok := d.str()
			if !ok || !d.eat(':') || !field(k) {
				return false
			}
			if d.eat('}') {
				break
			}
			if !d.eat(',') {
				return false
			}
		}
	}
	d.eat('\n')
	return d.i == len(d.data)
}

// array reads [elem,...].
func (d *flatDecoder) array(elem func() bool) bool {
	if !d.eat('[') {
		return false
	}
	if d.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.eat(']') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// object reads {"k":"v"|true|false,...}; a nil boolean takes none.
func (d *flatDecoder) object(str func(k, v string) bool, boolean func(k string, b bool) bool) bool {
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return true
	}
	for {
		k, ok := d.str()
		if !ok || !d.eat(':') {
			return false
		}
		switch {
		case d.i < len(d.data) && d.data[d.i] == '"':
			v, ok := d.str()
			if !ok || !str(k, v) {
				return false
			}
		case boolean != nil && strings.HasPrefix(d.data[d.i:], "true"):
			d.i += 4
			if !boolean(k, true) {
				return false
			}
		case boolean != nil && strings.HasPrefix(d.data[d.i:], "false"):
			d.i += 5
			if !boolean(k, false) {
				return false
			}
		default:
			return false
		}
		if d.eat('}') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// strTo reads a string (str) into *v.
func (d *flatDecoder) strTo(v *string) bool {
	s, ok := d.str()
	*v = s
	return ok
}

// str reads a string without escapes or control characters, in valid
// UTF-8.
func (d *flatDecoder) str() (string, bool) {
	if !d.eat('"') {
		return "", false
	}
	start, ascii := d.i, true
	for ; d.i < len(d.data); d.i++ {
		switch c := d.data[d.i]; {
		case c == '"':
			v := d.data[start:d.i]
			d.i++
			return v, ascii || utf8.ValidString(v)
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}
