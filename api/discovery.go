package api

import _ "embed"

// discoveryJSON is the API's discovery document (Google API discovery
// format, as fleet served it), answered at GET /fleet/v1/discovery.
//
//go:embed discovery.json
var discoveryJSON string
