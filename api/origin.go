package api

import (
	"net/http"
)

// RefuseCrossOrigin refuses, with 403 in fleet's error shape, a request
// that may change the cluster (any method but GET, HEAD and OPTIONS) when a
// browser says it comes from another site (Sec-Fetch-Site, else Origin
// against Host), and passes everything else to next.
//
// Why: the dashboard has operators open the API in a browser, and a browser
// presents its client certificate to the API whichever page makes the
// request, so another site's page could otherwise POST to the API with the
// operator's certificate (a cross-site request forgery). A bearer token is
// not at risk (no page but the dashboard holds it), and fleetctl and other
// programs send neither header, so they pass.
func RefuseCrossOrigin(next http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, r.Method+" "+r.URL.Path+" refused: a browser sent it from another site "+
			"(cross-site request forgery protection); use the dashboard at /ui/ of this address, or fleetctl")
	}))
	return c.Handler(next)
}
