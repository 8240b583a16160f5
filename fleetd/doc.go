// Package fleetd wires one fleet daemon together: configuration, etcd
// (an external cluster, or an embedded single member when none is given),
// this machine's presence, the agent, the engine and the HTTP API.
package fleetd
