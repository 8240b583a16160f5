// Package registry is the only package that talks to etcd and knows fleet's
// key layout. Everything else sees typed values: units and their desired
// state, content-addressed unit bodies, machines (present while their lease
// lives), per-machine schedules and published unit states.
//
// Key layout under the configurable prefix P (default "/_coreos.com/fleet/"):
//
//	P/units/<name>                 {"hash","desiredState"}       desired state, no body
//	P/bodies/<sha1>                canonical unit file text      immutable, shared by hash
//	P/machines/<id>                machine.Machine JSON          bound to the machine's lease
//	P/schedule/<machine>/<name>    {"hash","desiredState"}       written only by the engine leader
//	P/placed/<name>/<machine>      same value as the schedule's  unit->placement index, same txn (placed.go)
//	P/placed-version               "1"                           the index is complete (else readers scan)
//	P/states/<machine>/<name>      {"hash","loadState",...}      bound to the machine's lease
//	P/unplaced/<name>              reason string                 why a unit fits nowhere (leader)
//	P/metadata/<machine>           dynamic metadata JSON         no lease: kept across rejoin
//	P/engine/leader/<lease>        concurrency.Election keys
//	P/engine/version               highest engine version that led
//	P/absent/<machine>             {"since"}                     machine with placements seen absent (leader)
//
// Why this shape: an agent watches only P/schedule/<its id>/, so a change for
// one machine wakes one agent; a desired-state change rewrites a few bytes,
// not the body; a machine that dies takes its presence and its states with
// its lease, and the engine sees the lease expire as a delete event.
//
// Every engine write is a transaction that also compares the create revision
// of the engine's election key (see Leadership), so a deposed leader's writes
// fail with ErrNotLeader instead of racing the new leader.
package registry
