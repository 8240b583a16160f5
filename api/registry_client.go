package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// forwardTimeout bounds one forwarded machine-local request.
const forwardTimeout = 15 * time.Second

// registryClient is the Client over etcd. Every call reads the registry
// afresh, but for what summaries need of unit files, kept by their
// immutable hash (see UnitSummaries), and listings, which come from
// memory while they keep coming (see registry.ListCache).
type registryClient struct {
	reg *registry.Registry
	// peerTLS, when set, is how this fleetd forwards to others: over https
	// only, presenting its own certificate.
	peerTLS *tls.Config
	// policy and atMostOnceDefault are the cluster's, for explanations
	// (see WithPlacement).
	policy            engine.Policy
	atMostOnceDefault bool
	// facts is what summaries need of each unit file, by hash.
	facts *factsCache
	// lists serves listings from memory while they keep coming.
	lists *registry.ListCache
}

// listCacheIdle is how long after the last listing the client follows
// the registry for the next (see registry.ListCache): listings repeated
// within it (a dashboard, watch fleetctl list-units, a script) cost a
// copy, not a read of every key.
const listCacheIdle = time.Minute

// RegistryOption configures NewRegistryClient.
type RegistryOption func(*registryClient)

// WithPeerTLS makes the client forward status and journal requests to other
// machines' fleetd over TLS with cfg: it verifies their server certificates
// and presents this fleetd's own (a peer certificate), which they
// authenticate like any caller's. It then refuses to forward to a machine
// whose API is plain http.
func WithPeerTLS(cfg *tls.Config) RegistryOption {
	return func(c *registryClient) { c.peerTLS = cfg }
}

// NewRegistryClient returns the Client that reads and writes fleet's state in
// etcd through reg. It validates what it writes with fleet's rules (package
// unit) and answers UnitStatus and UnitJournal by forwarding to the fleetd of
// the unit's machine at its registered API URL.
func NewRegistryClient(reg *registry.Registry, opts ...RegistryOption) Client {
	c := &registryClient{reg: reg, facts: &factsCache{}, lists: registry.NewListCache(reg, listCacheIdle)}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *registryClient) Machines(ctx context.Context) ([]Machine, error) {
	ms, _, err := c.reg.Machines(ctx)
	if err != nil {
		return nil, err
	}
	// A machine's fleetd republishes its record with its dynamic metadata
	// (Presence.KeepMetadata); applying it here too shows a PATCH at once,
	// not after that round trip. Applying it twice changes nothing.
	overrides, err := c.reg.MetadataOverrides(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Machine, len(ms))
	for i, m := range ms {
		if o, ok := overrides[m.ID]; ok {
			m.Metadata = o.Apply(m.Metadata)
		}
		out[i] = wireMachine(m)
	}
	if err := c.machineStates(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

func wireMachine(m machine.Machine) Machine {
	md := make(map[string]string, len(m.Metadata))
	for k, v := range m.Metadata {
		md[k] = v
	}
	return Machine{ID: m.ID, PrimaryIP: m.PublicIP, Metadata: md, Capacity: m.Capacity}
}

func (c *registryClient) SetMachineMetadata(ctx context.Context, ops []MachineMetadataOp) error {
	rops, err := parseMetadataOps(ops)
	if err != nil {
		return err
	}
	return c.reg.PatchMetadata(ctx, rops)
}

// unplacedReason reads why the engine leader placed unit name nowhere: ""
// for none.
func (c *registryClient) unplacedReason(ctx context.Context, name string) string {
	why, err := c.reg.UnplacedReason(ctx, name)
	if err != nil {
		return ""
	}
	return why
}

func (c *registryClient) Units(ctx context.Context) ([]*Unit, error) {
	// One read at one revision: units, bodies, placements, reasons and
	// which states are published agree with each other.
	l, err := c.reg.ListUnits(ctx)
	if err != nil {
		return nil, err
	}
	// Units sharing a body (templates' instances, replicas) share its
	// parse; each gets its own options.
	files := make(map[string]*unit.File, len(l.Bodies))
	out := make([]*Unit, 0, len(l.Units))
	for _, rec := range l.Units {
		body, ok := l.Bodies[rec.Hash]
		if !ok {
			// Only a unit whose body is missing from the store (collected
			// or never written) gets here: Unit says what is wrong.
			u, err := c.Unit(ctx, rec.Name)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, u)
			continue
		}
		f := files[rec.Hash]
		if f == nil {
			if f, err = unit.ParseString(body); err != nil {
				return nil, fmt.Errorf("unit %s: stored body %s: %w", rec.Name, rec.Hash, err)
			}
			files[rec.Hash] = f
		}
		u := wireUnitFile(rec, f, l.Placements[rec.Name], l.Unplaced[rec.Name], func(m string) bool { return l.IsReported(m, rec.Name) })
		out = append(out, u)
	}
	return out, nil
}

func (c *registryClient) Unit(ctx context.Context, name string) (*Unit, error) {
	rec, err := c.reg.Unit(ctx, name)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, errorf(ErrNotFound, "unit %s not found", name)
	}
	if err != nil {
		return nil, err
	}
	body, err := c.reg.Body(ctx, rec.Hash)
	if err != nil {
		return nil, fmt.Errorf("unit %s: %w", name, err)
	}
	placed, err := c.reg.PlacementsOf(ctx, name)
	if err != nil {
		return nil, err
	}
	var reported []string // machines that published a state of the unit
	if p, ok := pickPlacement(placed, rec.Hash); ok {
		ss, err := c.reg.StatesOf(ctx, []string{name}, []string{p.Machine})
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			reported = append(reported, s.Machine)
		}
	}
	return wireUnit(rec, body, placed, c.unplacedReason(ctx, name), func(m string) bool { return slices.Contains(reported, m) })
}

// wireUnit builds the wire form of a unit: its options from its body, its
// current state and machine from its placements, and unplacedReason, the
// engine's word on why it runs nowhere, if it should run and does not.
// reported says whether a machine's agent published a state of the unit.
//
// As fleet's server did, a unit is loaded or launched only once the agent
// of its machine reported it (inactive until then): fleet v1.0's fleetctl
// start reads GET /state/{name} as soon as the unit says launched, and
// dies on a 404.
func wireUnit(rec registry.Unit, body string, placed []registry.Placement, unplacedReason string, reported func(machine string) bool) (*Unit, error) {
	f, err := unit.ParseString(body)
	if err != nil {
		return nil, fmt.Errorf("unit %s: stored body %s: %w", rec.Name, rec.Hash, err)
	}
	return wireUnitFile(rec, f, placed, unplacedReason, reported), nil
}

// wireUnitFile is wireUnit with the body already parsed.
func wireUnitFile(rec registry.Unit, f *unit.File, placed []registry.Placement, unplacedReason string, reported func(machine string) bool) *Unit {
	u := &Unit{Name: rec.Name, Options: OptionsFromFile(f), DesiredState: string(rec.DesiredState)}
	if fo, _, err := f.FleetOptions(rec.Name); err == nil && fo.Global {
		// A global unit is scheduled on many machines: like fleet, report
		// neither a current state nor a machine.
		return u
	}
	u.CurrentState, u.MachineID, u.UnplacedReason = placedState(rec, placed, unplacedReason, reported)
	return u
}

// placedState is what a unit that is not global says of its placement
// (Unit, UnitSummary): its current state (inactive until its machine
// reports it), its machine, and unplacedReason if it should run and is
// placed nowhere.
func placedState(rec registry.Unit, placed []registry.Placement, unplacedReason string, reported func(machine string) bool) (current, machineID, reason string) {
	current = string(registry.StateInactive)
	if p, ok := pickPlacement(placed, rec.Hash); ok {
		if reported(p.Machine) {
			current = string(p.DesiredState)
		}
		return current, p.Machine, ""
	}
	if rec.DesiredState != registry.StateInactive {
		reason = unplacedReason
	}
	return current, "", reason
}

// pickPlacement chooses the placement that describes a unit: one with the
// unit's current hash if any (while a replaced unit moves there may briefly
// be two), else the first.
func pickPlacement(ps []registry.Placement, hash string) (registry.Placement, bool) {
	if len(ps) == 0 {
		return registry.Placement{}, false
	}
	for _, p := range ps {
		if p.Hash == hash {
			return p, true
		}
	}
	return ps[0], true
}

func (c *registryClient) UnitStates(ctx context.Context, f StateFilter) ([]*UnitState, error) {
	var ss []registry.UnitState
	machines, names := dedupe(f.MachineIDs), dedupe(f.UnitNames)
	switch {
	case len(names) > 0:
		var err error
		if ss, err = c.reg.StatesOf(ctx, names, machines); err != nil {
			return nil, err
		}
	case len(machines) > 0:
		for _, m := range machines {
			ms, err := c.reg.States(ctx, m)
			if err != nil {
				return nil, err
			}
			ss = append(ss, ms...)
		}
	default:
		var err error
		if ss, err = c.lists.States(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]*UnitState, len(ss))
	for i, s := range ss {
		out[i] = &UnitState{
			Name:               s.Name,
			Hash:               s.Hash,
			MachineID:          s.Machine,
			SystemdLoadState:   s.LoadState,
			SystemdActiveState: s.ActiveState,
			SystemdSubState:    s.SubState,
			Reason:             s.Reason,
		}
	}
	sortStates(out)
	return out, nil
}

// dedupe returns s without repeated or empty values, in order.
func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func sortStates(ss []*UnitState) {
	slices.SortFunc(ss, func(a, b *UnitState) int {
		// Not cmp.Or: it would compare the machine IDs of every pair.
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.MachineID, b.MachineID)
	})
}

func (c *registryClient) CreateUnit(ctx context.Context, u *Unit) ([]string, error) {
	return c.create(ctx, u, false)
}

func (c *registryClient) ReplaceUnit(ctx context.Context, u *Unit) ([]string, error) {
	return c.create(ctx, u, true)
}

func (c *registryClient) create(ctx context.Context, u *Unit, replace bool) ([]string, error) {
	rec, body, warnings, err := c.prepare(ctx, u, replace, nil)
	if err != nil {
		return nil, err
	}
	err = c.reg.CreateUnit(ctx, rec, body, replace)
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(ErrExists, "unit %s already exists", rec.Name)
	}
	if errors.Is(err, registry.ErrRolloutActive) {
		return nil, errorf(ErrConflict, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	return warnings, nil
}

// prepare checks a submitted unit and returns the record and body to store.
// templates, when not nil, keeps the templates' texts read for instances
// submitted without options, for the rest of a batch.
func (c *registryClient) prepare(ctx context.Context, u *Unit, replace bool, templates map[string]string) (registry.Unit, string, []string, error) {
	if u == nil {
		return registry.Unit{}, "", nil, errorf(ErrInvalid, "no unit given")
	}
	name := u.Name
	n, err := unit.ParseName(name)
	if err != nil {
		return registry.Unit{}, "", nil, errorf(ErrInvalid, "%v", err)
	}
	state := registry.StateInactive
	if u.DesiredState != "" {
		if state, err = registry.ParseState(u.DesiredState); err != nil {
			return registry.Unit{}, "", nil, errorf(ErrInvalid, "unit %s: %v", name, err)
		}
	}
	if err := checkTemplateState(n, state); err != nil {
		return registry.Unit{}, "", nil, err
	}
	f, warnings, err := c.unitFile(ctx, n, u.Options, templates)
	if err != nil {
		return registry.Unit{}, "", nil, err
	}
	if replace && u.DesiredState == "" {
		// Keep the desired state of the unit being replaced, so replacing a
		// running unit's file does not stop it.
		switch old, err := c.reg.Unit(ctx, name); {
		case err == nil:
			state = old.DesiredState
		case !errors.Is(err, registry.ErrNotFound):
			return registry.Unit{}, "", nil, err
		}
	}
	return registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: state}, f.String(), warnings, nil
}

// unitFile turns submitted options into the unit file to store, checked with
// fleet's rules. An instance submitted without options gets its template's.
func (c *registryClient) unitFile(ctx context.Context, n unit.Name, opts []*UnitOption, templates map[string]string) (*unit.File, []string, error) {
	name := n.String()
	var text string
	switch {
	case len(opts) > 0:
		text = FileFromOptions(opts).String()
	case n.IsInstance():
		var err error
		if text, err = c.templateText(ctx, n, templates); err != nil {
			return nil, nil, err
		}
	default:
		// fleet answered 409 here: the unit does not exist and its options
		// are empty.
		return nil, nil, errorf(ErrConflict, "unit %s does not exist and has no options: a unit file needs at least one [Section] and Name=Value line", name)
	}
	// Parsing the canonical text applies the parser's rules to options that
	// came as a list, and proves the stored body will parse back.
	f, err := unit.ParseString(text)
	if err != nil {
		return nil, nil, errorf(ErrInvalid, "unit %s: %s", name, oneLine(err))
	}
	fo, warnings, err := f.FleetOptions(name)
	if err != nil {
		return nil, nil, errorf(ErrInvalid, "unit %s: %s", name, oneLine(err))
	}
	if err := fo.Validate(name); err != nil {
		return nil, nil, errorf(ErrInvalid, "unit %s: %s", name, oneLine(err))
	}
	if _, err := f.UpdatePolicy(name); err != nil {
		return nil, nil, errorf(ErrInvalid, "unit %s: %s", name, oneLine(err))
	}
	return f, warnings, nil
}

// templateText reads the file of instance n's submitted template, or takes
// it from templates (which it fills) when the batch read it already.
func (c *registryClient) templateText(ctx context.Context, n unit.Name, templates map[string]string) (string, error) {
	name, tn := n.String(), n.TemplateName()
	if text, ok := templates[tn]; ok {
		return text, nil
	}
	tmpl, err := c.reg.Unit(ctx, tn)
	if errors.Is(err, registry.ErrNotFound) {
		return "", errorf(ErrConflict, "unit %s has no options, and its template %s has not been submitted: submit the template or give the unit a file", name, tn)
	}
	if err != nil {
		return "", err
	}
	text, err := c.reg.Body(ctx, tmpl.Hash)
	if err != nil {
		return "", fmt.Errorf("template %s of unit %s: %w", tn, name, err)
	}
	if templates != nil {
		templates[tn] = text
	}
	return text, nil
}

// oneLine joins the lines of a multi-error into one sentence.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// checkTemplateState refuses to schedule a template: systemd can only run
// its instances.
func checkTemplateState(n unit.Name, s registry.State) error {
	if !n.Template || s == registry.StateInactive {
		return nil
	}
	verb := "start"
	if s == registry.StateLoaded {
		verb = "load"
	}
	return errorf(ErrInvalid, "unit %s is a template; %s an instance such as %s@1.%s", n.String(), verb, n.Prefix, n.Type)
}

func (c *registryClient) SetUnitTargetState(ctx context.Context, name, state string) error {
	s, err := registry.ParseState(state)
	if err != nil {
		return errorf(ErrInvalid, "unit %s: %v", name, err)
	}
	n, err := unit.ParseName(name)
	if err != nil {
		return errorf(ErrInvalid, "%v", err)
	}
	if err := checkTemplateState(n, s); err != nil {
		return err
	}
	err = c.reg.SetDesiredState(ctx, name, s)
	if errors.Is(err, registry.ErrNotFound) {
		return errorf(ErrNotFound, "unit %s not found", name)
	}
	return err
}

func (c *registryClient) DestroyUnit(ctx context.Context, name string) error {
	err := c.reg.DestroyUnit(ctx, name)
	if errors.Is(err, registry.ErrNotFound) {
		return errorf(ErrNotFound, "unit %s not found", name)
	}
	return err
}

func (c *registryClient) UnitStatus(ctx context.Context, name string) (string, error) {
	hc, m, err := c.forwardTo(ctx, name)
	if err != nil {
		return "", err
	}
	text, err := hc.UnitStatus(ctx, name)
	return text, peerRefusal(m, err)
}

func (c *registryClient) UnitJournal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error) {
	if err := checkJournalOptions(opts); err != nil {
		return nil, err
	}
	hc, m, err := c.forwardTo(ctx, name)
	if err != nil {
		return nil, err
	}
	rc, err := hc.UnitJournal(ctx, name, opts)
	return rc, peerRefusal(m, err)
}

// peerRefusal turns another fleetd's 401 or 403 to a forwarded request into
// a 502 that says whose credentials failed: this fleetd's, not the
// caller's.
func peerRefusal(m machine.Machine, err error) error {
	var apiErr *Error
	if !errors.As(err, &apiErr) || (apiErr.Code != http.StatusUnauthorized && apiErr.Code != http.StatusForbidden) {
		return err
	}
	return &Error{Code: http.StatusBadGateway, Message: fmt.Sprintf(
		"the fleetd of machine %s (%s) refused this fleetd's forwarded request: %s; give this fleetd a peer certificate (api_cert_file, api_key_file) signed by the api_client_ca_file of machine %s",
		m.ID, m.PublicIP, apiErr.Message, m.ID)}
}

func (c *registryClient) Events(ctx context.Context, fn func(Event) error) error {
	return registryEvents(ctx, c.reg, fn)
}

// forwardTo returns an HTTP client of the fleetd on the machine the unit is
// scheduled to, marked so that fleetd answers only from its own systemd,
// and that machine.
func (c *registryClient) forwardTo(ctx context.Context, name string) (Client, machine.Machine, error) {
	m, err := c.unitMachine(ctx, name)
	if err != nil {
		return nil, m, err
	}
	opts := forwardOptions(m)
	if c.peerTLS != nil {
		if u, err := url.Parse(m.APIURL); err != nil || u.Scheme != "https" {
			return nil, m, errorf(ErrUnavailable, "unit %s runs on machine %s (%s), whose fleetd serves its API without TLS (%s); this fleetd forwards only over TLS: set api_cert_file, api_key_file and api_client_ca_file on machine %s",
				name, m.ID, m.PublicIP, m.APIURL, m.ID)
		}
		opts.tls = c.peerTLS
	}
	hc, err := newHTTPClient(m.APIURL, forwardTimeout, opts)
	return hc, m, err
}

// unitMachine returns the machine a unit is scheduled to, if it serves the
// API over TCP.
func (c *registryClient) unitMachine(ctx context.Context, name string) (machine.Machine, error) {
	u, err := c.Unit(ctx, name)
	if err != nil {
		return machine.Machine{}, err
	}
	if u.MachineID == "" {
		if IsGlobal(u) {
			return machine.Machine{}, errorf(ErrConflict, "unit %s is global and runs on every matching machine; ask one machine's fleetd for it (fleetctl --endpoint on that machine)", name)
		}
		return machine.Machine{}, errorf(ErrConflict, "unit %s is not scheduled to any machine (its state is %s); load or start it first", name, u.CurrentState)
	}
	m, err := c.reg.Machine(ctx, u.MachineID)
	if errors.Is(err, registry.ErrNotFound) {
		return machine.Machine{}, errorf(ErrUnavailable, "machine %s of unit %s is not present in the cluster; wait for the engine to reschedule the unit", u.MachineID, name)
	}
	if err != nil {
		return machine.Machine{}, err
	}
	if m.APIURL == "" {
		return m, errorf(ErrUnavailable, "unit %s runs on machine %s (%s), which does not serve the fleet API over TCP; give that fleetd a TCP listen address, or run fleetctl on that machine", name, m.ID, m.PublicIP)
	}
	return m, nil
}

// IsGlobal reports whether u's [X-Fleet] options make it a global unit
// (scheduled on every matching machine). A unit whose options do not parse
// is not global.
func IsGlobal(u *Unit) bool {
	// Only [X-Fleet] Global= makes a unit global: most units have no
	// [X-Fleet] section, and parsing their options for it was most of a
	// list-unit-files row.
	if !slices.ContainsFunc(u.Options, func(o *UnitOption) bool { return o != nil && o.Section == "X-Fleet" }) {
		return false
	}
	fo, _, err := FileFromOptions(u.Options).FleetOptions(u.Name)
	return err == nil && fo.Global
}
