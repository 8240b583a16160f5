// Package ui is fleet's web dashboard: a static page, its stylesheet and its
// script, embedded in the binary and served by fleetd at /ui/ on the API's
// listeners.
//
// The page holds no cluster data. Everything it shows and does goes through
// fleet's v1 API from the browser, with the caller's own credentials (a
// bearer token the page asks for and keeps in sessionStorage, or the client
// certificate the browser presents), so the API's authentication, role
// check and audit apply unchanged: read to view, admin to act. That is why
// the shell itself may load without credentials (api.RequiredRole), as
// Nomad's UI does.
//
// What the page does: machines, units (virtualised table, filters by name,
// machine and state), a live feed of GET /fleet/v1/events whose unit events
// make it re-read only the units they name, start/stop/destroy of a unit and
// drain of a machine (each confirmed), and rollouts and reboots where the
// API has those endpoints (probed; hidden when absent).
//
// ui leaves authentication, authorisation and every cluster operation to
// the api package; it serves files only.
package ui
