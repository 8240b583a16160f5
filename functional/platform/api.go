package platform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// The wire objects of fleet's v1 API, as a client outside fleet sees them.
// They are declared here, not imported from api/, so that the tests check
// the wire contract itself.

// Unit is an item of GET /fleet/v1/units.
type Unit struct {
	Name         string       `json:"name"`
	Options      []UnitOption `json:"options"`
	DesiredState string       `json:"desiredState"`
	CurrentState string       `json:"currentState"`
	MachineID    string       `json:"machineID"`
}

// UnitOption is one line of a unit file.
type UnitOption struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// UnitState is an item of GET /fleet/v1/state.
type UnitState struct {
	Name               string `json:"name"`
	Hash               string `json:"hash"`
	MachineID          string `json:"machineID"`
	SystemdLoadState   string `json:"systemdLoadState"`
	SystemdActiveState string `json:"systemdActiveState"`
	SystemdSubState    string `json:"systemdSubState"`
}

// Machine is an item of GET /fleet/v1/machines.
type Machine struct {
	ID        string            `json:"id"`
	PrimaryIP string            `json:"primaryIP"`
	Metadata  map[string]string `json:"metadata"`
	// State is active, draining, drained or rebooting.
	State string `json:"state,omitempty"`
}

// API is fleet's HTTP API of one host, reached from the machine (the test
// process) at the host's api_listen address.
type API struct {
	// Base is the API's root URL: http://<host IP>:APIPort/fleet/v1.
	Base  string
	hc    *http.Client
	token string // bearer token sent with every request, if any
}

// API returns the API of host h; on a secured cluster over TLS with the
// admin token.
func (c *Cluster) API(h *hosts.Host) *API {
	if c.Security == nil {
		return c.APIWith(h, nil, "")
	}
	tlsCfg, err := pki.ClientConfig(c.Security.CAFile, "", "")
	if err != nil { // the CA was written by Start: unreadable is a broken machine
		panic(fmt.Sprintf("platform: %v", err))
	}
	return c.APIWith(h, tlsCfg, c.Security.AdminToken)
}

// APIWith returns the API of host h reached with tlsCfg (https; nil: plain
// http) and the bearer token (none if empty).
func (c *Cluster) APIWith(h *hosts.Host, tlsCfg *tls.Config, token string) *API {
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	return &API{
		Base: scheme + net.JoinHostPort(h.IP, APIPort) + "/fleet/v1",
		// No keep-alive: a host may be killed or cut off under a pooled
		// connection, and every request must say what it finds now.
		hc:    &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsCfg}},
		token: token,
	}
}

// Do sends a request with an optional JSON body to path (below Base) and
// returns the status code and the body.
func (a *API) Do(ctx context.Context, method, path, body string) (int, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// get GETs path and decodes the JSON answer into out.
func (a *API) get(ctx context.Context, path string, out any) error {
	code, b, err := a.Do(ctx, http.MethodGet, path, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d: %s", path, code, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// pages GETs every page of a list at path; page decodes one and returns its
// nextPageToken.
func (a *API) pages(ctx context.Context, path string, page func([]byte) (string, error)) error {
	token := ""
	for {
		p := path
		if token != "" {
			p += "?nextPageToken=" + url.QueryEscape(token)
		}
		var raw json.RawMessage
		if err := a.get(ctx, p, &raw); err != nil {
			return err
		}
		next, err := page(raw)
		if err != nil {
			return fmt.Errorf("GET %s: %w", p, err)
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

// Machines lists the present machines.
func (a *API) Machines(ctx context.Context) ([]Machine, error) {
	var out []Machine
	err := a.pages(ctx, "/machines", func(b []byte) (string, error) {
		var p struct {
			Machines      []Machine `json:"machines"`
			NextPageToken string    `json:"nextPageToken"`
		}
		err := json.Unmarshal(b, &p)
		out = append(out, p.Machines...)
		return p.NextPageToken, err
	})
	return out, err
}

// Units lists the submitted units.
func (a *API) Units(ctx context.Context) ([]Unit, error) {
	var out []Unit
	err := a.pages(ctx, "/units", func(b []byte) (string, error) {
		var p struct {
			Units         []Unit `json:"units"`
			NextPageToken string `json:"nextPageToken"`
		}
		err := json.Unmarshal(b, &p)
		out = append(out, p.Units...)
		return p.NextPageToken, err
	})
	return out, err
}

// States lists what every machine's agent last saw of its units.
func (a *API) States(ctx context.Context) ([]UnitState, error) {
	var out []UnitState
	err := a.pages(ctx, "/state", func(b []byte) (string, error) {
		var p struct {
			States        []UnitState `json:"states"`
			NextPageToken string      `json:"nextPageToken"`
		}
		err := json.Unmarshal(b, &p)
		out = append(out, p.States...)
		return p.NextPageToken, err
	})
	return out, err
}

// Placement maps each unit name to the sorted IDs of the machines where it
// is active.
type Placement map[string][]string

// Active returns where each unit is active (systemd's ActiveState), from
// states.
func Active(states []UnitState) Placement {
	p := Placement{}
	for _, s := range states {
		if s.SystemdActiveState == "active" {
			p[s.Name] = append(p[s.Name], s.MachineID)
		}
	}
	for _, ids := range p {
		slices.Sort(ids)
	}
	return p
}

// Count returns the number of active unit instances.
func (p Placement) Count() int {
	n := 0
	for _, ids := range p {
		n += len(ids)
	}
	return n
}

// On returns the one machine unit name is active on, or "" when it is
// active nowhere or on several machines.
func (p Placement) On(name string) string {
	if ids := p[name]; len(ids) == 1 {
		return ids[0]
	}
	return ""
}

// WaitActive polls a's states until cond holds for where units are active,
// and returns that placement. On timeout the error shows the last one seen.
func (a *API) WaitActive(ctx context.Context, timeout time.Duration, cond func(Placement) bool) (Placement, error) {
	var last Placement
	var lastErr error
	err := Wait(ctx, timeout, func() bool {
		states, err := a.States(ctx)
		if err != nil {
			lastErr = err
			return false
		}
		last, lastErr = Active(states), nil
		return cond(last)
	})
	if err != nil {
		return last, fmt.Errorf("active units (last seen %v, last error %v): %w", last, lastErr, err)
	}
	return last, nil
}

// WaitCount waits until exactly n unit instances are active.
func (a *API) WaitCount(ctx context.Context, timeout time.Duration, n int) (Placement, error) {
	return a.WaitActive(ctx, timeout, func(p Placement) bool { return p.Count() == n })
}
