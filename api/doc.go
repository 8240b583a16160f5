// Package api is fleet's v1 HTTP API (wire-compatible with CoreOS fleet's
// schema/v1) and the one small interface, Client, that fleetctl and the HTTP
// server are both written against.
//
// The package provides:
//   - the wire types (Unit, UnitOption, UnitState, Machine and their pages,
//     MachineMetadataOp, Event), kept apart from the registry's domain types;
//   - Client, implemented over etcd by NewRegistryClient and over HTTP by
//     NewHTTPClient (a unix socket or TCP endpoint, optionally TLS or through
//     a custom dialer such as an SSH tunnel);
//   - NewServer, an http.Handler serving /fleet/v1/ on top of any Client:
//     fleet's units, state (filtered server-side), machines (with PATCH of
//     dynamic metadata) and discovery document, paginated with fleet's page
//     tokens; plus extensions: a unit's `systemctl status` text, its journal
//     (streamed with ?follow=true) and a stream of cluster events;
//   - Rebooter (both clients): reboot requests and the coordinated reboots'
//     status (PUT /fleet/v1/machines/{id}/reboot, GET /fleet/v1/reboots);
//   - Inspector, the machine-local source of status and journal, and
//     SystemdInspector, which runs systemctl and journalctl;
//     RefusingInspector answers instead for units the machine's agent
//     refuses (a unit of the host's own has the name);
//   - Authorize, the middleware that lets a request through only if its
//     caller's role (package api/auth) allows it (RequiredRole: reads need
//     read, everything else admin), answering 401 or 403 otherwise.
//
// Every call that may change the cluster is audited: logged ("audit") and,
// over the registry client, stored in etcd for an hour, where the event
// stream shows it as an api.call event naming the caller. Bodies are
// bounded (1 MiB), event streams per caller too, and streamed answers are
// exempt from the http.Server's timeouts.
//
// Validation of names, options and target states lives in the Client
// implementations, not in HTTP handlers: the registry client refuses what
// fleet refused, with an error wrapping one of the sentinel errors, and the
// server maps sentinels to status codes (ErrInvalid 400, ErrNotFound 404,
// ErrExists and ErrConflict 409, ErrUnavailable 503). The HTTP client maps
// them back, so errors.Is works the same over either implementation.
//
// Machine-local requests (status, journal) are answered by the fleetd of the
// machine the unit is scheduled to: the server answers from its own Inspector
// when the unit is local and otherwise forwards to that machine's fleetd at
// its registered API URL; with WithPeerTLS only over https, presenting this
// fleetd's peer certificate.
//
// The package leaves scheduling to the engine, unit file parsing and fleet's
// option rules to package unit, and etcd to package registry.
package api
