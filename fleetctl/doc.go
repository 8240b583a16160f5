// Package fleetctl is fleet's command-line client: fleet's commands, flags
// and output (submit, load, start, stop, unload, destroy, cat, status,
// journal, list-machines, list-units, list-unit-files, version) as cobra
// commands built by NewCommand.
//
// Commands talk to fleet through api.Client: over fleetd's HTTP API
// (--driver=api, the default; --endpoint unix:///var/run/fleet.sock or
// http://host:port) or straight to etcd (--driver=etcd; --endpoint is then a
// comma-separated list of etcd URLs). Global flags can be set from the
// environment (FLEETCTL_ENDPOINT, FLEETCTL_DRIVER, FLEETCTL_REQUEST_TIMEOUT,
// FLEETCTL_ETCD_KEY_PREFIX); a flag on the command line wins.
//
// Unit arguments follow fleetctl: a name without a type suffix means
// ".service", and an argument naming an existing file submits that file
// under its base name. load, start, stop and unload block until fleet
// reports the unit's new state, printing fleet's lines ("Unit
// hello.service launched on 113f16a7.../10.0.0.3"), unless --no-block.
//
// List commands build a table (header and rows) from a map of column name to
// render function and print it tab-aligned, or as JSON with --output=json.
//
// The package writes only to the writers it is given and never exits:
// NewCommand's caller (cmd/fleetctl) turns the returned error into an exit
// code with ExitCode. Scheduling, validation and storage are left to fleetd,
// the engine and package api.
package fleetctl
