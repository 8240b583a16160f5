// Command fleetctl is fleet's command-line client. It only wires the process
// to package fleetctl: standard streams, the environment, the version set at
// build time (-ldflags "-X main.version=..."), and SIGINT/SIGTERM, which end
// a blocking wait. Errors become exit codes: 1 when an operation failed, 2
// for bad usage or a bad argument.
package main
