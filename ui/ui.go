package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

// Prefix is where fleetd mounts Handler.
const Prefix = "/ui/"

//go:embed assets
var assets embed.FS

// contentSecurityPolicy allows the page only its own files and its own
// origin's API: no inline script or style, no framing (clickjacking of the
// action buttons), no form posts elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Handler returns the handler of the dashboard's files, for requests whose
// path starts with Prefix. Only GET and HEAD are served. Responses are not
// cached, so a fleetd upgrade serves its own script at the next load.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil { // the directory is embedded above: cannot happen
		panic(err)
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard's files are read-only; use GET", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
