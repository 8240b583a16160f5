package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// UnitListing is everything a listing of units shows, read at one revision:
// the unit records, their bodies, the schedule, the unplaced reasons and
// which (machine, unit) pairs have a published state.
type UnitListing struct {
	Units      []Unit                 // sorted by name
	Bodies     map[string]string      // by hash
	Placements map[string][]Placement // by unit name
	Unplaced   map[string]string      // by unit name
	Reported   map[[2]string]bool     // (machine, unit) pairs with a published state
	Rev        int64
	// reported answers IsReported instead of Reported (a ListCache's).
	reported func(machine, name string) bool
}

// IsReported says whether machine published a state of unit name.
func (l UnitListing) IsReported(machine, name string) bool {
	if l.reported != nil {
		return l.reported(machine, name)
	}
	return l.Reported[[2]string{machine, name}]
}

// ListUnits reads a UnitListing in one read-only transaction, so the units,
// bodies and placements agree with each other. Published states are read
// keys only: a listing of units needs to know that one is there, not what
// it says.
func (r *Registry) ListUnits(ctx context.Context) (UnitListing, error) {
	return r.listUnits(ctx, true)
}

// ListUnitsWithoutBodies is ListUnits without the bodies (Bodies is
// empty): a caller that keeps what it needs of each body by its hash reads
// only the bodies it lacks, with BodiesAt at the listing's Rev. Bodies are
// most of a listing's bytes.
func (r *Registry) ListUnitsWithoutBodies(ctx context.Context) (UnitListing, error) {
	return r.listUnits(ctx, false)
}

func (r *Registry) listUnits(ctx context.Context, withBodies bool) (UnitListing, error) {
	l, err := r.listUnitsAt(ctx, withBodies)
	if errors.Is(err, rpctypes.ErrCompacted) {
		// Compacted between the first read and the others: read again.
		l, err = r.listUnitsAt(ctx, withBodies)
	}
	if err != nil {
		return UnitListing{}, fmt.Errorf("list units: %w", err)
	}
	return l, nil
}

// listUnitsAt reads the parts of a listing at one revision, the current
// one when it starts, each with its own request, all at once: etcd serves
// them side by side and each is decoded as it arrives, where one
// transaction read them one after another and was decoded after the last.
func (r *Registry) listUnitsAt(ctx context.Context, withBodies bool) (UnitListing, error) {
	rev, err := r.Revision(ctx)
	if err != nil {
		return UnitListing{}, err
	}
	l := UnitListing{Rev: rev}
	at := clientv3.WithRev(l.Rev)
	parts := []struct {
		key    string
		opts   []clientv3.OpOption
		decode func([]*mvccpb.KeyValue) error
	}{
		{r.keys.units(), []clientv3.OpOption{clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}, func(kvs []*mvccpb.KeyValue) error {
			l.Units = make([]Unit, 0, len(kvs))
			for _, kv := range kvs {
				name := strings.TrimPrefix(string(kv.Key), r.keys.units())
				u, err := readUnit(name, kv.Value, kv.ModRevision)
				if err != nil {
					return err
				}
				l.Units = append(l.Units, u)
			}
			return nil
		}},
		{r.keys.bodies(), nil, func(kvs []*mvccpb.KeyValue) error {
			l.Bodies = make(map[string]string, len(kvs))
			for _, kv := range kvs {
				l.Bodies[strings.TrimPrefix(string(kv.Key), r.keys.bodies())] = string(kv.Value)
			}
			return nil
		}},
		{r.keys.schedules(), nil, func(kvs []*mvccpb.KeyValue) error {
			l.Placements = make(map[string][]Placement, len(kvs))
			for _, kv := range kvs {
				p, err := r.readPlacement(kv.Key, kv.Value)
				if err != nil {
					return err
				}
				l.Placements[p.Name] = append(l.Placements[p.Name], p)
			}
			return nil
		}},
		{r.keys.unplaced(), nil, func(kvs []*mvccpb.KeyValue) error {
			l.Unplaced = make(map[string]string, len(kvs))
			for _, kv := range kvs {
				l.Unplaced[strings.TrimPrefix(string(kv.Key), r.keys.unplaced())] = string(kv.Value)
			}
			return nil
		}},
		{r.keys.states(), []clientv3.OpOption{clientv3.WithKeysOnly()}, func(kvs []*mvccpb.KeyValue) error {
			l.Reported = make(map[[2]string]bool, len(kvs))
			for _, kv := range kvs {
				if m, name, ok := splitMachineKey(strings.TrimPrefix(string(kv.Key), r.keys.states())); ok {
					l.Reported[[2]string{m, name}] = true
				}
			}
			return nil
		}},
	}
	if !withBodies {
		l.Bodies = map[string]string{}
		parts = slices.Delete(parts, 1, 2)
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() {
			resp, err := r.get(ctx, p.key, append(p.opts, clientv3.WithPrefix(), at)...)
			if err == nil {
				err = p.decode(resp.Kvs)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return l, errors.Join(errs...)
}

// bodiesAtOnce is how many bodies BodiesAt reads with single gets; for more
// it reads them all in one range, which costs less than as many gets.
const bodiesAtOnce = 512

// BodiesAt reads the bodies of hashes as they were at revision rev (a
// listing's), by hash; a hash whose body is not stored is left out. Bodies
// never change under their hash, so a compacted rev is read at the
// current revision instead.
func (r *Registry) BodiesAt(ctx context.Context, rev int64, hashes []string) (map[string]string, error) {
	out := make(map[string]string, len(hashes))
	if len(hashes) == 0 {
		return out, nil
	}
	read := func(rev int64) error {
		at := []clientv3.OpOption{}
		if rev > 0 {
			at = append(at, clientv3.WithRev(rev))
		}
		if len(hashes) > bodiesAtOnce {
			resp, err := r.get(ctx, r.keys.bodies(), append(at, clientv3.WithPrefix())...)
			if err != nil {
				return err
			}
			want := make(map[string]bool, len(hashes))
			for _, h := range hashes {
				want[h] = true
			}
			for _, kv := range resp.Kvs {
				if h := strings.TrimPrefix(string(kv.Key), r.keys.bodies()); want[h] {
					out[h] = string(kv.Value)
				}
			}
			return nil
		}
		// etcd takes up to 128 ops per transaction by default.
		for start := 0; start < len(hashes); start += 128 {
			part := hashes[start:min(len(hashes), start+128)]
			ops := make([]clientv3.Op, len(part))
			for i, h := range part {
				ops[i] = clientv3.OpGet(r.keys.body(h), at...)
			}
			resp, err := r.txn(ctx, nil, ops)
			if err != nil {
				return err
			}
			for i, rr := range resp.Responses {
				if kvs := rr.GetResponseRange().GetKvs(); len(kvs) > 0 {
					out[part[i]] = string(kvs[0].Value)
				}
			}
		}
		return nil
	}
	err := read(rev)
	if errors.Is(err, rpctypes.ErrCompacted) {
		clear(out)
		err = read(0)
	}
	if err != nil {
		return nil, fmt.Errorf("read unit bodies at revision %d: %w", rev, err)
	}
	return out, nil
}

// The fast decoders below read the records a listing reads 100,000 of at a
// time as what they nearly always are, a flat JSON object of plain strings
// with the field names as written, several times faster than
// encoding/json; anything else (escapes, other values, other names, even
// in case only) is left to encoding/json, so the result is the same
// (listing_test.go checks it).

// readUnit decodes a unit record, with fastUnit when it can.
func readUnit(name string, v []byte, rev int64) (Unit, error) {
	if u, ok := fastUnit(name, v, rev); ok {
		return u, nil
	}
	return decodeUnit(name, v, rev)
}

// readPlacement decodes a placement under its key, with fastPlacement
// when it can.
func (r *Registry) readPlacement(key, v []byte) (Placement, error) {
	if p, ok := r.fastPlacement(key, v); ok {
		return p, nil
	}
	return r.decodePlacement(string(key), v)
}

// fastUnit decodes a unit record {"hash":...,"desiredState":...}.
func fastUnit(name string, v []byte, rev int64) (Unit, bool) {
	u := Unit{Name: name, ModRev: rev}
	ok := flatStrings(v, func(k, val []byte) bool {
		switch string(k) {
		case "hash":
			u.Hash = string(val)
		case "desiredState":
			u.DesiredState = State(val)
		default:
			return false
		}
		return true
	})
	return u, ok
}

// ListStates reads every published unit state, sorted by machine, then
// unit: States(ctx, "").
func (r *Registry) ListStates(ctx context.Context) ([]UnitState, error) {
	return r.states(ctx, r.keys.states())
}

// fastState decodes a published state.
func fastState(machine, name string, v []byte) (UnitState, bool) {
	s := UnitState{Machine: machine, Name: name}
	ok := flatStrings(v, func(k, val []byte) bool {
		switch string(k) {
		case "hash":
			s.Hash = string(val)
		case "loadState":
			s.LoadState = string(val)
		case "activeState":
			s.ActiveState = string(val)
		case "subState":
			s.SubState = string(val)
		case "reason":
			s.Reason = string(val)
		case "health":
			s.Health = string(val)
		default:
			return false
		}
		return true
	})
	return s, ok
}

// fastPlacement decodes a placement {"hash":...,"desiredState":...} under
// its key.
func (r *Registry) fastPlacement(key, v []byte) (Placement, bool) {
	if v == nil || !bytes.HasPrefix(key, []byte(r.keys.schedules())) {
		return Placement{}, false
	}
	m, name, ok := splitMachineKey(string(key[len(r.keys.schedules()):]))
	if !ok {
		return Placement{}, false
	}
	p := Placement{Machine: m, Name: name}
	ok = flatStrings(v, func(k, val []byte) bool {
		switch string(k) {
		case "hash":
			p.Hash = string(val)
		case "desiredState":
			p.DesiredState = State(val)
		default:
			return false
		}
		return true
	})
	return p, ok
}

// flatStrings calls field for each name and value of v if v is a JSON
// object of string values, without whitespace or escapes, and reports
// whether it was, and every field call returned true.
func flatStrings(v []byte, field func(k, val []byte) bool) bool {
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return false
	}
	i := 1
	if v[i] == '}' {
		return i == len(v)-1
	}
	str := func() ([]byte, bool) {
		if i >= len(v) || v[i] != '"' {
			return nil, false
		}
		start := i + 1
		for j := start; j < len(v); j++ {
			switch c := v[j]; {
			case c == '"':
				i = j + 1
				return v[start:j], true
			case c == '\\' || c < 0x20 || c >= 0x80:
				// Escapes, and bytes encoding/json may replace.
				return nil, false
			}
		}
		return nil, false
	}
	for {
		k, ok := str()
		if !ok || i >= len(v) || v[i] != ':' {
			return false
		}
		i++
		val, ok := str()
		if !ok || !field(k, val) || i >= len(v) {
			return false
		}
		switch v[i] {
		case ',':
			i++
		case '}':
			return i == len(v)-1
		default:
			return false
		}
	}
}
