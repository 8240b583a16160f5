// Package systemd is fleet's thin wrapper of go-systemd's D-Bus client
// (github.com/coreos/go-systemd/v22/dbus). It speaks systemd's own names
// (StartUnit, LinkUnitFiles, Reload, ResetFailedUnit) and adds only what the
// agent needs on top:
//
//   - Connect dials systemd: its private socket (/run/systemd/private) in the
//     normal case, or any D-Bus address (a container's system bus, seen from
//     outside, in tests).
//   - Unit files live in one directory (Config.UnitsDir, default
//     /run/fleet/units), outside systemd's search path. WriteUnitFile replaces
//     a file atomically and only when its content differs; LinkUnitFiles
//     links it into /run/systemd/system; DisableUnitFiles unlinks it.
//   - StartUnit, StopUnit and RestartUnit wait for their job and return its
//     result ("done", "failed", "canceled", ...) as systemd reports it.
//   - UnitStates reads the load, active and sub state of many units in one
//     ListUnitsByNames call.
//   - Subscribe turns systemd's PropertiesChanged signals into unit names: "re-read
//     this unit". It never carries a state and never polls.
//   - HostUnit tells whether a name is already a unit of the host's own (a
//     file outside UnitsDir, a masked unit): fleet must not shadow those.
//   - A Manager survives systemd restarting itself (daemon-reexec, which a
//     systemd package upgrade runs, and daemon-reload storms): it notices a
//     lost connection (closed, or on a bus systemd's name changing owner),
//     dials systemd again with backoff (20 ms doubling to 1 s), and calls
//     made meanwhile wait for it. A job queued before the loss is found
//     again by its ID and waited for on the new connection. Subscriptions
//     end with the lost connection, so their owner subscribes again and
//     re-reads what it watches.
//
// What it leaves to others: deciding what should run (the agent), unit file
// contents and names (package unit), and re-reading units after a
// subscription ended.
//
// # Signals
//
// Subscribe reads signals itself (on a bus with a connection of its own and
// Manager.Subscribe on it; on the private socket from the Manager's
// connection, which gets every signal unasked), rather than through
// go-systemd's SetPropertiesSubscriber, because go-systemd's dispatcher drops updates when
// the subscriber's channel is full (it only reports "update channel is full"
// on an error channel), keeps one subscriber per connection, and does not
// match UnitRemoved at all. Names are coalesced in a set while the reader is
// busy, so nothing is dropped and no goroutine piles up.
//
// Only PropertiesChanged of the org.freedesktop.systemd1.Unit interface
// becomes a name. UnitNew and UnitRemoved are not: systemd emits that pair
// whenever a client merely reads a unit that is not in memory (an inactive
// unit systemd has garbage-collected, or an unknown name), so a reader that
// re-reads a unit on UnitNew/UnitRemoved wakes itself forever (go-systemd's
// SetSubStateSubscriber ignores units for 30 ms after reading them to dodge
// this). Every change of a unit's LoadState, ActiveState or SubState comes
// with a PropertiesChanged, including the last one before the unit is
// collected, so nothing the agent publishes is missed.
//
// Every connection reads systemd through a skimmer (skim.go): systemd's
// private socket sends every signal to every connection, and godbus would
// decode each in full (reflection, a map per PropertiesChanged) before
// anyone looks at it. The skimmer reads only each signal's header and
// first argument; the subscription takes the unit name from there, and
// godbus gets only replies, JobRemoved (go-systemd's job results) and the
// bus daemon's own signals. On the private socket one connection serves
// go-systemd's calls, its job signals and the subscriptions: systemd builds
// every signal once per connection, so each connection fleetd holds costs
// systemd too.
package systemd
