package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// UnitSummary is a unit as fleetctl list-unit-files shows it: a Unit
// without its options, with what the options say worked out by the server
// (an extension beside fleet's API). Hash is the SHA1 of the unit file
// as FileFromOptions(Options).Hash() gives it; Global and Description are
// what IsGlobal and the file's Description() say of the options;
// CurrentState and MachineID are empty for a global unit, as in a Unit.
type UnitSummary struct {
	Name           string `json:"name"`
	Hash           string `json:"hash"`
	DesiredState   string `json:"desiredState,omitempty"`
	CurrentState   string `json:"currentState,omitempty"`
	MachineID      string `json:"machineID,omitempty"`
	Global         bool   `json:"global,omitempty"`
	Description    string `json:"description,omitempty"`
	UnplacedReason string `json:"unplacedReason,omitempty"`
}

// UnitSummarizer lists units as summaries: GET /fleet/v1/units?view=summary
// over HTTP. A fleet v1 unit carries its whole file as options, which a
// listing of 100,000 units spends most of its time reading, encoding,
// decoding and parsing again to print a hash and a description; a summary
// is a few short strings. Both clients have it; fleetctl list-unit-files
// uses it.
type UnitSummarizer interface {
	// UnitSummaries lists the submitted units, sorted by name, read at one
	// revision. Against a server without summaries (older, or fleet's
	// own) the HTTP client lists the units and summarizes them itself.
	UnitSummaries(ctx context.Context) ([]*UnitSummary, error)
}

var (
	_ UnitSummarizer = (*registryClient)(nil)
	_ UnitSummarizer = (*httpClient)(nil)
)

// viewSummary is the value of ?view= that asks GET /fleet/v1/units for
// summaries; the answer says "view":"summary" beside its units. A server
// that does not know it ignores it and answers units with options.
const viewSummary = "summary"

// SummaryOf summarizes a unit from its options, as a server does from its
// stored file.
func SummaryOf(u *Unit) *UnitSummary {
	f := FileFromOptions(u.Options)
	return &UnitSummary{
		Name:           u.Name,
		Hash:           f.Hash().String(),
		DesiredState:   u.DesiredState,
		CurrentState:   u.CurrentState,
		MachineID:      u.MachineID,
		Global:         IsGlobal(u),
		Description:    f.Description(),
		UnplacedReason: u.UnplacedReason,
	}
}

// SummariesOf runs SummaryOf over us on every core: parsing and hashing
// the options of 100,000 units is most of what a client does with them.
func SummariesOf(us []*Unit) []*UnitSummary {
	out := make([]*UnitSummary, len(us))
	workers := min(runtime.GOMAXPROCS(0), len(us)/1000+1)
	chunk := (len(us) + workers - 1) / workers
	var wg sync.WaitGroup
	for start := 0; start < len(us); start += chunk {
		wg.Go(func() {
			for i := start; i < min(start+chunk, len(us)); i++ {
				out[i] = SummaryOf(us[i])
			}
		})
	}
	wg.Wait()
	return out
}

// fileFacts is what a summary needs of a stored unit file, kept by the
// file's hash: a body never changes under its hash, so an entry is never
// stale, and a listing reads only the bodies it has no entry for.
type fileFacts struct {
	hash string // f.Hash(), as a client computes it from the options
	desc string
	// fleet is the parsed file if it has an [X-Fleet] section, else nil:
	// whether a unit is global depends on the options there and on the
	// unit's name (its type, and what %i and friends expand to).
	fleet *unit.File
	// global is whether a unit of type typ is global, when that does not
	// depend on the rest of its name (no % in the [X-Fleet] values).
	typ       string
	global    bool
	nameBound bool
}

func newFileFacts(f *unit.File, name string) *fileFacts {
	ff := &fileFacts{hash: f.Hash().String(), desc: f.Description()}
	for _, o := range f.Options {
		if o.Section == "X-Fleet" {
			ff.fleet = f
			if strings.Contains(o.Value, "%") {
				ff.nameBound = true
			}
		}
	}
	if ff.fleet != nil {
		ff.typ = unitType(name)
		fo, _, err := f.FleetOptions(name)
		ff.global = err == nil && fo.Global
	}
	return ff
}

// isGlobal says whether the unit name with this file is global, as IsGlobal
// says of its options.
func (ff *fileFacts) isGlobal(name string) bool {
	switch {
	case ff.fleet == nil:
		return false
	case !ff.nameBound && unitType(name) == ff.typ:
		return ff.global
	}
	fo, _, err := ff.fleet.FleetOptions(name)
	return err == nil && fo.Global
}

func unitType(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }

// maxFileFacts bounds the files whose facts a server keeps: enough for a
// cluster of 100,000 units each with a file of its own. An entry is ~200
// bytes (a few hundred more for a file with an [X-Fleet] section, which is
// kept parsed), so the bound is ~50-100 MB at most, reached only by a
// cluster that has that many distinct files.
const maxFileFacts = 1 << 18

// factsCache keeps fileFacts by hash, up to maxFileFacts; past that, a
// quarter of the entries, whichever the map gives first, are dropped.
type factsCache struct {
	mu      sync.Mutex
	entries map[string]*fileFacts
}

// lookup returns the facts of each unit's file, in order (nil for a file
// it has none of), and the hashes it has none of, once each.
func (c *factsCache) lookup(units []registry.Unit) (facts []*fileFacts, missing []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	facts = make([]*fileFacts, len(units))
	var asked map[string]bool
	for i, u := range units {
		if facts[i] = c.entries[u.Hash]; facts[i] == nil && !asked[u.Hash] {
			if asked == nil {
				asked = map[string]bool{}
			}
			asked[u.Hash] = true
			missing = append(missing, u.Hash)
		}
	}
	return facts, missing
}

func (c *factsCache) add(add map[string]*fileFacts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]*fileFacts, len(add))
	}
	if len(c.entries)+len(add) > maxFileFacts {
		drop := len(c.entries) + len(add) - maxFileFacts*3/4
		for h := range c.entries {
			if drop <= 0 {
				break
			}
			delete(c.entries, h)
			drop--
		}
	}
	for h, ff := range add {
		if len(c.entries) >= maxFileFacts {
			return
		}
		c.entries[h] = ff
	}
}

func (c *registryClient) UnitSummaries(ctx context.Context) ([]*UnitSummary, error) {
	// One read at one revision (or the followed state at one revision),
	// without the bodies: what a summary needs of a body is kept by its
	// hash, and only the bodies of files not seen before are read, at the
	// same revision.
	var out []*UnitSummary
	err := c.lists.Units(ctx, func(l registry.UnitListing) error {
		var err error
		out, err = c.summarize(ctx, l)
		return err
	})
	return out, err
}

// summarize builds the summaries of listing l.
func (c *registryClient) summarize(ctx context.Context, l registry.UnitListing) ([]*UnitSummary, error) {
	facts, missing := c.facts.lookup(l.Units)
	if len(missing) > 0 {
		news, err := c.readFacts(ctx, l, missing)
		if err != nil {
			return nil, err
		}
		c.facts.add(news)
		for i, rec := range l.Units {
			if facts[i] == nil {
				facts[i] = news[rec.Hash]
			}
		}
	}
	out := make([]*UnitSummary, 0, len(l.Units))
	for i, rec := range l.Units {
		ff := facts[i]
		if ff == nil {
			// Only a unit whose body is missing from the store (collected
			// or never written) gets here: Unit says what is wrong.
			u, err := c.Unit(ctx, rec.Name)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, SummaryOf(u))
			continue
		}
		s := &UnitSummary{Name: rec.Name, Hash: ff.hash, DesiredState: string(rec.DesiredState), Description: ff.desc}
		if ff.isGlobal(rec.Name) {
			// As wireUnitFile: neither a current state nor a machine.
			s.Global = true
			out = append(out, s)
			continue
		}
		s.CurrentState, s.MachineID, s.UnplacedReason = placedState(rec, l.Placements[rec.Name], l.Unplaced[rec.Name],
			func(m string) bool { return l.IsReported(m, rec.Name) })
		out = append(out, s)
	}
	return out, nil
}

// readFacts reads the bodies of hashes at the listing's revision and works
// out their facts, on every core.
func (c *registryClient) readFacts(ctx context.Context, l registry.UnitListing, hashes []string) (map[string]*fileFacts, error) {
	bodies, err := c.reg.BodiesAt(ctx, l.Rev, hashes)
	if err != nil {
		return nil, err
	}
	// A name of a unit with each hash, for the type a global answer holds.
	names := make(map[string]string, len(bodies))
	for _, rec := range l.Units {
		if _, ok := bodies[rec.Hash]; ok && names[rec.Hash] == "" {
			names[rec.Hash] = rec.Name
		}
	}
	type job struct{ hash, body string }
	jobs := make([]job, 0, len(bodies))
	for h, b := range bodies {
		jobs = append(jobs, job{h, b})
	}
	res := make([]*fileFacts, len(jobs))
	errs := make([]error, len(jobs))
	workers := min(runtime.GOMAXPROCS(0), len(jobs)/500+1)
	chunk := (len(jobs) + workers - 1) / workers
	var wg sync.WaitGroup
	for start := 0; start < len(jobs); start += chunk {
		wg.Go(func() {
			for i := start; i < min(start+chunk, len(jobs)); i++ {
				f, err := unit.ParseString(jobs[i].body)
				if err != nil {
					errs[i] = fmt.Errorf("unit %s: stored body %s: %w", names[jobs[i].hash], jobs[i].hash, err)
					continue
				}
				res[i] = newFileFacts(f, names[jobs[i].hash])
			}
		})
	}
	wg.Wait()
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return nil, errs[i]
	}
	out := make(map[string]*fileFacts, len(jobs))
	for i, j := range jobs {
		out[j.hash] = res[i]
	}
	return out, nil
}

// summarizer returns c as a UnitSummarizer if the query asks for summaries
// (?view=summary) and c has them. A client that has none is answered
// units: a client asking for summaries must take those too, as from a
// server that does not know ?view=.
func summarizer(c Client, q url.Values) (UnitSummarizer, bool, error) {
	switch v := q["view"]; {
	case len(v) == 0:
		return nil, false, nil
	case len(v) > 1 || v[0] != viewSummary:
		return nil, false, errorf(ErrInvalid, "invalid view %q: the only view of units is %q", clipText(strings.Join(v, ","), 40), viewSummary)
	}
	sum, ok := c.(UnitSummarizer)
	return sum, ok, nil
}

func (s *server) listSummaries(w http.ResponseWriter, r *http.Request, sum UnitSummarizer, tok pageToken) {
	items, next, err := page(s, "units?view=summary", tok, func() ([]*UnitSummary, error) { return sum.UnitSummaries(r.Context()) })
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	sendPageWith(s, w, `"view":"summary",`, "units", items, next)
}

// summaryPage is one page of GET /fleet/v1/units?view=summary as a client
// reads it: summaries if View says so, else (a server that ignored ?view=)
// fleet v1 units, whose options are then summarized here.
type summaryPage struct {
	View          string           `json:"view"`
	Units         []*summaryOrUnit `json:"units"`
	NextPageToken string           `json:"nextPageToken"`
}

type summaryOrUnit struct {
	UnitSummary
	Options []*UnitOption `json:"options"`
}

func (c *httpClient) UnitSummaries(ctx context.Context) ([]*UnitSummary, error) {
	var sums []*UnitSummary
	var units []*Unit
	err := c.getPages(ctx, "/units", url.Values{"view": {viewSummary}}, func() (any, func() string) {
		var p summaryPage
		return &p, func() string {
			for _, su := range p.Units {
				if p.View == viewSummary {
					sums = append(sums, &su.UnitSummary)
					continue
				}
				units = append(units, &Unit{Name: su.Name, Options: su.Options, DesiredState: su.DesiredState, CurrentState: su.CurrentState, MachineID: su.MachineID, UnplacedReason: su.UnplacedReason})
			}
			return p.NextPageToken
		}
	})
	if err != nil {
		return nil, err
	}
	if len(units) > 0 {
		sums = append(sums, SummariesOf(units)...)
	}
	return sums, nil
}
