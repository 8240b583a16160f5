// Package engine decides where units run. One engine in the cluster leads
// (etcd election, see registry.Campaign), and only an engine whose version is
// not older than the newest that ever led may lead. The leader keeps a
// Scheduler fed by etcd watches and writes its decisions through the
// registry: schedule entries and, for units that fit nowhere, why, in
// batched transactions fenced by its leadership.
//
// The Scheduler is the pure decision function of Schedule(Snapshot) kept
// alive between events, so that one new unit or one lost machine costs
// microseconds at 100,000 units instead of a full pass. A plan runs in
// stages, each until it has no work, in the style of Nomad's scheduler:
//
//	events -> placements to check: may each stay (machine present, MachineID,
//	          metadata, MachineOf peers there, resources, MaxPerMachine, no
//	          conflict, not replaced)?
//	       -> global units: every feasible machine (Nomad's system stack)
//	       -> machines with new room: offered to global units, then to units
//	          that fit nowhere before
//	       -> normal units, MachineOf followers after their peers: feasibility
//	          checkers, then the first machine by Policy (spread: the
//	          least-loaded by its fullest resource, then unit count, globals
//	          included; binpack: the fullest), ties by machine ID; SpreadBy
//	          units go to the value of their key holding fewest of their
//	          group; a machine where the unit would displace a unit it
//	          Replaces ranks last
//	       -> plan: schedule writes and deletes, unplaced reasons set and cleared
//
// Placed units stay where they are while their machine still takes them (no
// churn); a machine joining or leaving moves only the units that must move.
// Units that can run nowhere else (global units, units whose MachineID is
// the machine) keep their placements on a machine that left, counted
// nowhere, so that a host cut off for a while finds its schedule unchanged.
// The engine leaves running units to the agents: an agent runs what its
// machine's schedule lists and stops the rest, which is how a machine that
// comes back after its units moved stops its stale copies.
//
// Drains and moves (StepDrains, drain.go) take units off a machine before
// each plan: a draining machine takes no new unit, and each unit leaves it
// make-before-break (started elsewhere and reported active first) or, when
// two copies must never run together, break-before-make; PreviewDrain and
// CheckMove answer the API's checks before a drain or move is recorded.
// Explain answers, for one unit, what every checker says of every machine
// (fleetctl explain).
package engine
