// Command fleetctl is fleet's command-line client. It only wires the process
// to package fleetctl: standard streams, the environment, the version set at
// build time (-ldflags "-X main.version=..."), and SIGINT/SIGTERM, which end
// a blocking wait or a stream (journal -f, events). Errors become exit codes
// (see fleetctl.ExitCode and `fleetctl help`): 1 when an operation failed, 2
// for bad usage or a bad argument, and distinct codes for a failed unit, an
// unplaceable unit, a timeout, an unreachable fleetd and a missing unit.
package main
