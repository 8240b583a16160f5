// Package engine decides where units run. One engine in the cluster leads
// (etcd election, see registry.Campaign); the leader keeps a model of units,
// machines and the schedule from etcd watches, and on every change runs the
// pure Schedule function and writes the resulting plan through the
// registry, fenced by its leadership.
//
// Schedule is a pipeline in the style of Nomad's scheduler:
//
//	snapshot -> drop placements that cannot stand (unit gone, machine gone,
//	            constraint broken)
//	         -> global units: every feasible machine
//	         -> normal units: keep where placed; else feasibility checkers
//	            (MachineID, MachineMetadata, MachineOf, Conflicts), then rank
//	            by load (unit count), ties by machine ID
//	         -> plan (schedule writes and deletes) + why each unplaced unit
//	            fits nowhere
//
// The engine leaves running units to the agents; it only writes schedules.
package engine
