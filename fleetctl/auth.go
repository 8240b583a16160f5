package fleetctl

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/seed-a1ce88ea/fleet/api"
)

// bearerToken returns the API token of --token or the file of --token-file
// ("" for none).
func (a *app) bearerToken() (string, error) {
	if a.token != "" && a.tokenFile != "" {
		return "", usageErrorf("give --token or --token-file, not both")
	}
	token := strings.TrimSpace(a.token)
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", usageErrorf("--token-file: %v", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", usageErrorf("--token-file %s is empty; it should hold the token", a.tokenFile)
		}
	}
	// A token with a space or control character in it would split or
	// break the header; the message must not show the token.
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			src := "--token"
			if a.tokenFile != "" {
				src = "--token-file " + a.tokenFile
			}
			return "", usageErrorf("the token of %s has a space or control character in it", src)
		}
	}
	return token, nil
}

// checkTokenTransport refuses to send a token where anyone on the network
// could read it: over plain http to another machine.
func checkTokenTransport(endpoint string) error {
	if strings.HasPrefix(endpoint, "/") || strings.HasPrefix(endpoint, "unix://") || strings.HasPrefix(endpoint, "https://") {
		return nil
	}
	raw := endpoint
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return nil // api.NewHTTPClient reports a bad endpoint
	}
	if isLoopback(u.Hostname()) {
		return nil
	}
	return usageErrorf("refusing to send the token in clear text to fleetd at %s: use an https:// endpoint or a unix socket", endpoint)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Texts of Go's crypto/tls and net/http errors. api's transport errors
// carry their cause only as text, so that is what is matched.
const (
	tlsUnknownAuthority = "certificate signed by unknown authority"
	tlsWrongHost        = "x509: certificate is valid for "
	tlsNotForHost       = "x509: certificate is not valid for any names"
	tlsExpired          = "x509: certificate has expired or is not yet valid"
	tlsCertRequired     = "remote error: tls: certificate required"
	tlsBadCert          = "remote error: tls: bad certificate"
	tlsUnknownCA        = "remote error: tls: unknown certificate authority"
	tlsExpiredCert      = "remote error: tls: expired certificate"
	tlsHTTPResponse     = "server gave HTTP response to HTTPS client"
	httpToHTTPS         = "Client sent an HTTP request to an HTTPS server"
)

// explainAuth turns the failures of TLS and authentication into one line
// that says what to give or fix, with ExitAuth (ExitUsage for a wrong
// scheme). Other errors are returned as they are.
func (a *app) explainAuth(err error) error {
	ep := a.endpoint
	if ep == "" {
		ep = api.DefaultEndpoint
	}
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.Code == http.StatusUnauthorized:
			return codeErrorf(ExitAuth, "%s; give a token with --token or FLEETCTL_TOKEN, or a client certificate", strings.TrimRight(apiErr.Message, ". "))
		case apiErr.Code == http.StatusForbidden:
			return withCode(ExitAuth, apiErr)
		case apiErr.Code == http.StatusBadRequest && strings.Contains(apiErr.Message, httpToHTTPS):
			return usageErrorf("fleetd at %s serves HTTPS: use %s", ep, httpsEndpoint(ep))
		}
		return err
	}
	if !errors.Is(err, api.ErrUnavailable) {
		return err
	}
	msg := err.Error()
	caSource := "the system's roots (give the cluster's CA with --ca-file)"
	if a.caFile != "" {
		caSource = "the CA in --ca-file " + a.caFile
	}
	switch {
	case strings.Contains(msg, tlsHTTPResponse):
		return usageErrorf("fleetd at %s serves plain HTTP, not HTTPS: use http:// or ask its operator to configure api_cert_file", ep)
	case strings.Contains(msg, tlsUnknownAuthority):
		return codeErrorf(ExitAuth, "fleetd at %s presents a certificate not signed by %s", ep, caSource)
	case strings.Contains(msg, tlsWrongHost), strings.Contains(msg, tlsNotForHost):
		why := msg[strings.Index(msg, "x509: ")+len("x509: "):]
		why, _, _ = strings.Cut(why, " (")
		return codeErrorf(ExitAuth, "fleetd at %s presents a certificate for other hosts (%s): use one of its names in --endpoint, or give it a certificate made with --hosts naming this one", ep, why)
	case strings.Contains(msg, tlsExpired):
		return codeErrorf(ExitAuth, "fleetd at %s presents a certificate that has expired or is not yet valid (check its certificate, and both machines' clocks)", ep)
	case strings.Contains(msg, tlsCertRequired) && a.certFile == "":
		return codeErrorf(ExitAuth, "fleetd at %s requires a client certificate: give --cert-file and --key-file, one signed by its api_client_ca_file", ep)
	case strings.Contains(msg, tlsCertRequired), strings.Contains(msg, tlsBadCert), strings.Contains(msg, tlsUnknownCA), strings.Contains(msg, tlsExpiredCert):
		return codeErrorf(ExitAuth, "fleetd at %s refused the client certificate (--cert-file %s): it needs one signed by its api_client_ca_file", ep, a.certFile)
	}
	return err
}

// httpsEndpoint is endpoint with the https scheme.
func httpsEndpoint(endpoint string) string {
	rest, ok := strings.CutPrefix(endpoint, "http://")
	if !ok && !strings.Contains(endpoint, "://") {
		rest = endpoint
	}
	return "https://" + rest
}
