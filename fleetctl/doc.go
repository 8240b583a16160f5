// Package fleetctl is fleet's command-line client: fleet's commands, flags
// and output (submit, load, start, restart, stop, unload, destroy, cat,
// status, journal, list-machines, list-units, list-unit-files, ssh,
// fd-forward, version) and more (events, completion, drain, undrain, mv)
// as cobra commands built by NewCommand. A command may be called by any
// unique prefix of its name.
//
// Commands talk to fleet through api.Client: over fleetd's HTTP API
// (--driver=api, the default; --endpoint unix:///var/run/fleet.sock or
// http(s)://host:port) or straight to etcd (--driver=etcd; --endpoint is then
// a comma-separated list of etcd URLs, and an endpoint on port 2379 or 4001
// picks this driver by itself). --tunnel sends every request through an SSH
// connection to a cluster machine (running `fleetctl fd-forward` there for a
// unix socket endpoint). Every global flag can be set from the environment
// as FLEETCTL_<FLAG> (FLEETCTL_SSH_USERNAME for --ssh-username); a flag on
// the command line wins.
//
// An https endpoint is verified against --ca-file and may be given a client
// certificate (--cert-file, --key-file); --token, FLEETCTL_TOKEN or
// --token-file adds a bearer token, which is never sent over plain http to
// another machine. TLS and authentication failures are reported as one line
// naming the file or flag to fix, with their own exit code.
//
// Unit arguments follow fleetctl: a name without a type suffix means
// ".service", an argument naming an existing file submits that file under
// its base name, an instance ("app@3") is made from a local template beside
// it or the submitted template, and a glob pattern stands for the local
// files or the submitted units it matches. load, start, stop, unload and
// restart block until fleet reports the units' new state, printing fleet's
// lines ("Unit hello.service launched on 113f16a7.../10.0.0.3") and, on a
// terminal, a live count; a unit the engine can place nowhere is given up on
// with the engine's reason. journal and status are read by the unit's
// machine's fleetd and need no SSH access.
//
// List commands, status and events print tables or text, or JSON with
// --output=json (a stable contract for scripts).
//
// The package writes only to the writers it is given and never exits:
// NewCommand's caller (cmd/fleetctl) turns the returned error into an exit
// code with ExitCode; `fleetctl help` documents the codes. Scheduling,
// validation and storage are left to fleetd, the engine and package api.
package fleetctl
