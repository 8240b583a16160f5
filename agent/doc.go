// Package agent makes one machine's systemd match that machine's schedule,
// and publishes the states of the units it runs.
//
// It is a controller in the shape of Kubernetes' sample-controller: events
// only name a unit, and one worker reconciles names, reading everything
// afresh each time.
//
//	etcd P/schedule/<machine>/ ──watch──┐
//	systemd PropertiesChanged ──signal──┼──> queue (set of names) ──> worker: reconcile(batch)
//	unit files and states at start ─────┘       ▲                         │
//	                                            └──── retry (backoff) ────┘
//
// What it does, per unit name:
//   - Scheduled (registry.Placement: hash and desired state loaded or
//     launched): write the body (fetched by hash, cached: bodies are
//     immutable) to the unit directory, link changed files into systemd and
//     reload systemd once per batch; then start a launched unit, restart it
//     if its file changed while it ran, and stop a loaded one that runs.
//   - Not scheduled: unload it (stop, unlink, reset-failed, remove the file,
//     delete its published state).
//   - Then read its state from systemd and publish it through the machine's
//     Presence when it differs from what etcd holds (remembered per unit,
//     seeded from etcd at start, so a restarted fleetd republishes nothing).
//
// Jobs are taken only when the schedule entry differs from the one last
// applied: a unit that stops or fails by itself is reported, not restarted
// (that is its Restart= setting's job, as in fleet), and a fleetd that
// restarts adopts running units (StartUnit of an active unit does nothing)
// instead of restarting them.
//
// Failures are requeued per unit with exponential backoff (100 ms to 10 s);
// a unit whose body is missing from etcd is logged and looked at again only
// after 30 s. While etcd is unreachable the agent keeps the schedule it last
// read: nothing is stopped or restarted, states wait to be published, and
// the schedule is read again once the watch comes back.
//
// What it leaves to others: deciding where units run (engine), the machine's
// registration and lease (registry.Presence, made by fleetd, which also
// starts a new Agent when Run reports ErrPresenceLost), unit file syntax
// (package unit), and talking D-Bus (agent/systemd).
package agent
