package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// DefaultEndpoint is where fleetd serves the API on its own machine.
const DefaultEndpoint = "unix:///var/run/fleet.sock"

const (
	// forwardedHeader marks a request one fleetd forwarded to another, which
	// must then answer from its own systemd and never forward again.
	forwardedHeader = "Fleet-Forwarded"
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
)

// httpClient is the Client over a fleetd's HTTP API.
type httpClient struct {
	endpoint string   // as configured, for messages
	base     *url.URL // scheme and host (a placeholder for unix sockets) and path prefix
	hc       *http.Client
	// streams reads answers that last (a followed journal, events): its
	// transport bounds the wait for the answer's header, nothing bounds the
	// body but the request's ctx.
	streams *http.Client
	timeout time.Duration
	opts    httpOptions
}

type httpOptions struct {
	// hint ends the message of a connection failure: what to check.
	hint string
	// forwarded marks requests as forwarded by a fleetd. Such a client is
	// used once, so it keeps no idle connections either.
	forwarded bool
	tls       *tls.Config
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	debug     io.Writer
	token     string
}

// HTTPOption configures NewHTTPClient.
type HTTPOption func(*httpOptions)

// WithTLSConfig sets the TLS configuration of https endpoints (CA, client
// certificate).
func WithTLSConfig(c *tls.Config) HTTPOption {
	return func(o *httpOptions) { o.tls = c }
}

// WithBearerToken sends token as "Authorization: Bearer <token>" with every
// request. The debug log never shows it.
func WithBearerToken(token string) HTTPOption {
	return func(o *httpOptions) { o.token = token }
}

// WithDialer makes the client reach fleetd through dial, for example over an
// SSH tunnel, instead of dialing itself. dial is called with ("unix", socket
// path) for a unix socket endpoint and ("tcp", "host:port") otherwise.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) HTTPOption {
	return func(o *httpOptions) { o.dial = dial }
}

// WithDebugLog writes a line per request to w: method, URL, answer status
// and time taken.
func WithDebugLog(w io.Writer) HTTPOption {
	return func(o *httpOptions) { o.debug = w }
}

// NewHTTPClient returns the Client of the fleetd at endpoint:
// "unix:///path/to/socket" (or just "/path/to/socket") or "http://host:port"
// ("https://" and a bare "host:port" work too). Each request, including
// reading its answer, is bounded by timeout (0: only by its ctx); streamed
// answers (a followed journal, events) are bounded only in the wait for
// their start.
func NewHTTPClient(endpoint string, timeout time.Duration, opts ...HTTPOption) (Client, error) {
	o := httpOptions{hint: "is fleetd running? set --endpoint or FLEETCTL_ENDPOINT"}
	for _, opt := range opts {
		opt(&o)
	}
	return newHTTPClient(endpoint, timeout, o)
}

func forwardOptions(m machine.Machine) httpOptions {
	return httpOptions{
		hint:      fmt.Sprintf("is fleetd running on machine %s (%s), and its API port open to this machine?", m.ID, m.PublicIP),
		forwarded: true,
	}
}

func newHTTPClient(endpoint string, timeout time.Duration, opts httpOptions) (*httpClient, error) {
	base, socket, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		// fleetctl's bulk commands keep up to 32 requests in flight: as
		// many connections stay open, rather than each request past the
		// fourth dialing anew.
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		DisableKeepAlives:     opts.forwarded,
		ResponseHeaderTimeout: timeout,
		TLSClientConfig:       opts.tls,
	}
	d := &net.Dialer{Timeout: timeout}
	dial := d.DialContext
	if opts.dial != nil {
		dial = opts.dial
		tr.Proxy = nil
	}
	if socket != "" {
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, "unix", socket)
		}
	} else {
		tr.DialContext = dial
	}
	var rt http.RoundTripper = tr
	if opts.debug != nil {
		rt = debugTransport{next: tr, w: opts.debug}
	}
	return &httpClient{
		endpoint: endpoint,
		base:     base,
		hc:       &http.Client{Transport: rt, Timeout: timeout},
		streams:  &http.Client{Transport: rt},
		timeout:  timeout,
		opts:     opts,
	}, nil
}

// DebugClock is how debug lines give the wall-clock time a request (or a
// step of fleetctl's) started: with the machine's clock, a trace lines up
// with what other processes did meanwhile.
const DebugClock = "15:04:05.000000"

// debugTransport logs every request, its answer's status, how long it took
// and when it started.
type debugTransport struct {
	next http.RoundTripper
	w    io.Writer
}

func (d debugTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := d.next.RoundTrip(r)
	took := time.Since(start).Round(time.Microsecond)
	if err != nil {
		fmt.Fprintf(d.w, "DEBUG: %s %s: %v (%s, from %s)\n", r.Method, r.URL, err, took, start.Format(DebugClock))
		return nil, err
	}
	server := ""
	if st := resp.Header.Get("Server-Timing"); st != "" {
		server = "; server: " + st
	}
	fmt.Fprintf(d.w, "DEBUG: %s %s: %s (%s, from %s%s)\n", r.Method, r.URL, resp.Status, took, start.Format(DebugClock), server)
	return resp, nil
}

// parseEndpoint returns the base URL requests are built on and, for a unix
// socket, its path.
func parseEndpoint(endpoint string) (base *url.URL, socket string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid fleetd endpoint %q: %s; want unix:///path/to/socket or http://host:port", endpoint, why)
	}
	if strings.HasPrefix(endpoint, "/") {
		endpoint = "unix://" + endpoint
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, "", bad(err.Error())
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if u.Host != "" {
			// unix://relative/path.sock
			p = u.Host + u.Path
		}
		if p == "" {
			return nil, "", bad("no socket path")
		}
		// The host is never resolved: the transport dials the socket.
		return &url.URL{Scheme: "http", Host: "fleetd"}, p, nil
	case "http", "https":
		if u.Host == "" {
			return nil, "", bad("no host")
		}
		return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}, "", nil
	}
	return nil, "", bad(fmt.Sprintf("unknown scheme %q", u.Scheme))
}

// request describes one API call.
type request struct {
	method string
	path   string // below /fleet/v1, unescaped
	query  url.Values
	body   any
	header http.Header
}

// do sends req and returns the response of a 2xx answer (the caller closes
// its body). Other answers become *Error; transport failures name the
// endpoint and what to check.
func (c *httpClient) do(ctx context.Context, req request) (*http.Response, error) {
	return c.send(ctx, c.hc, req)
}

// stream is do for answers that last: only the wait for the answer's header
// is bounded by the timeout.
func (c *httpClient) stream(ctx context.Context, req request) (io.ReadCloser, error) {
	resp, err := c.send(ctx, c.streams, req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *httpClient) send(ctx context.Context, hc *http.Client, req request) (*http.Response, error) {
	u := *c.base
	u.Path += "/fleet/v1" + req.path
	u.RawQuery = req.query.Encode()
	var body io.Reader
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range req.header {
		hr.Header[k] = vs
	}
	if req.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json")
	if c.opts.forwarded {
		hr.Header.Set(forwardedHeader, "true")
	}
	if c.opts.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.opts.token)
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.answerError(resp)
}

func (c *httpClient) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("request to fleetd at %s: %w", c.endpoint, ctx.Err())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return errorf(ErrUnavailable, "cannot reach fleetd at %s: no connection within %s (%s)", c.endpoint, c.timeout, c.opts.hint)
		}
		return errorf(ErrUnavailable, "fleetd at %s did not answer within %s (is it overloaded? raise --request-timeout)", c.endpoint, c.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return errorf(ErrUnavailable, "cannot reach fleetd at %s: %v (%s)", c.endpoint, err, c.opts.hint)
}

// answerError decodes an error answer: {"error":{"code":N,"message":"..."}}
// if the body holds one, else the status line and the body's start.
func (c *httpClient) answerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err == nil && eb.Error.Message != "" {
		return &Error{Code: resp.StatusCode, Message: eb.Error.Message}
	}
	msg := fmt.Sprintf("fleetd at %s answered %s", c.endpoint, resp.Status)
	if text := strings.TrimSpace(string(b)); text != "" {
		msg += ": " + clipText(text, 200)
	}
	return &Error{Code: resp.StatusCode, Message: msg}
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// getJSON GETs path and decodes the JSON answer into out.
func (c *httpClient) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of fleetd at %s to GET %s: %w", c.endpoint, path, err)
	}
	return nil
}

// getText GETs path and returns the answer's body as text.
func (c *httpClient) getText(ctx context.Context, path string, query url.Values) (string, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read answer of fleetd at %s to GET %s: %w", c.endpoint, path, err)
	}
	return string(b), nil
}

func unitPath(name string) string { return "/units/" + name }

// getPages GETs every page of a collection: page decodes one page and
// returns its next page token.
func (c *httpClient) getPages(ctx context.Context, path string, q url.Values, page func() (any, func() string)) error {
	if q == nil {
		q = url.Values{}
	}
	// The largest pages: the server reads the whole collection per page.
	q.Set("pageSize", strconv.Itoa(maxPageSize))
	for {
		p, next := page()
		if err := c.getPage(ctx, path, q, p); err != nil {
			return err
		}
		tok := next()
		if tok == "" {
			return nil
		}
		q.Set("nextPageToken", tok)
	}
}

func (c *httpClient) Machines(ctx context.Context) ([]Machine, error) {
	all := []Machine{}
	err := c.getPages(ctx, "/machines", nil, func() (any, func() string) {
		var p MachinePage
		return &p, func() string { all = append(all, p.Machines...); return p.NextPageToken }
	})
	return all, err
}

func (c *httpClient) SetMachineMetadata(ctx context.Context, ops []MachineMetadataOp) error {
	if ops == nil {
		ops = []MachineMetadataOp{}
	}
	resp, err := c.do(ctx, request{method: http.MethodPatch, path: "/machines", body: ops})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (c *httpClient) Units(ctx context.Context) ([]*Unit, error) {
	var all []*Unit
	err := c.getPages(ctx, "/units", nil, func() (any, func() string) {
		var p UnitPage
		return &p, func() string { all = append(all, p.Units...); return p.NextPageToken }
	})
	return all, err
}

func (c *httpClient) Unit(ctx context.Context, name string) (*Unit, error) {
	var u Unit
	if err := c.getJSON(ctx, unitPath(name), nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

func (c *httpClient) UnitStates(ctx context.Context, f StateFilter) ([]*UnitState, error) {
	q := url.Values{}
	for _, m := range f.MachineIDs {
		q.Add("machineID", m)
	}
	for _, n := range f.UnitNames {
		q.Add("unitName", n)
	}
	var all []*UnitState
	err := c.getPages(ctx, "/state", q, func() (any, func() string) {
		var p UnitStatePage
		return &p, func() string { all = append(all, p.States...); return p.NextPageToken }
	})
	return all, err
}

func (c *httpClient) CreateUnit(ctx context.Context, u *Unit) ([]string, error) {
	// If-None-Match: * makes the PUT create only, as CreateUnit promises;
	// without it fleet's PUT would set the state of an existing unit.
	return c.put(ctx, u, nil, http.Header{"If-None-Match": {"*"}})
}

func (c *httpClient) ReplaceUnit(ctx context.Context, u *Unit) ([]string, error) {
	return c.put(ctx, u, url.Values{"replace": {"true"}}, nil)
}

func (c *httpClient) put(ctx context.Context, u *Unit, q url.Values, h http.Header) ([]string, error) {
	if u == nil {
		return nil, errorf(ErrInvalid, "no unit given")
	}
	resp, err := c.do(ctx, request{method: http.MethodPut, path: unitPath(u.Name), query: q, body: u, header: h})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseWarnings(resp.Header), nil
}

func (c *httpClient) SetUnitTargetState(ctx context.Context, name, state string) error {
	// If-Match: * keeps the PUT from creating an instance from its template.
	resp, err := c.do(ctx, request{
		method: http.MethodPut,
		path:   unitPath(name),
		body:   &Unit{Name: name, DesiredState: state},
		header: http.Header{"If-Match": {"*"}},
	})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (c *httpClient) DestroyUnit(ctx context.Context, name string) error {
	resp, err := c.do(ctx, request{method: http.MethodDelete, path: unitPath(name)})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (c *httpClient) UnitStatus(ctx context.Context, name string) (string, error) {
	return c.getText(ctx, unitPath(name)+"/status", nil)
}

func (c *httpClient) UnitJournal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error) {
	if err := checkJournalOptions(opts); err != nil {
		return nil, err
	}
	q := url.Values{"lines": {strconv.Itoa(opts.Lines)}}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Output != "" {
		q.Set("output", opts.Output)
	}
	return c.stream(ctx, request{method: http.MethodGet, path: unitPath(name) + "/journal", query: q})
}

func (c *httpClient) Events(ctx context.Context, fn func(Event) error) error {
	body, err := c.stream(ctx, request{method: http.MethodGet, path: "/events"})
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("decode event from fleetd at %s: %w", c.endpoint, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return errorf(ErrUnavailable, "event stream of fleetd at %s broke: %v", c.endpoint, err)
	}
	return errorf(ErrUnavailable, "fleetd at %s ended the event stream (did it stop?)", c.endpoint)
}

// Warnings travel in Warning headers (RFC 9111 section 5.5 syntax, code 299
// as Kubernetes uses it): 299 fleetd "unknown [X-Fleet] option ...".
const warnPrefix = "299 fleetd "

func formatWarning(w string) string { return warnPrefix + strconv.QuoteToASCII(w) }

func parseWarnings(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Warning") {
		text, ok := strings.CutPrefix(v, warnPrefix)
		if !ok {
			continue
		}
		if s, err := strconv.Unquote(text); err == nil {
			out = append(out, s)
		}
	}
	return out
}
