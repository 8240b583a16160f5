// Package unit holds fleet's view of a systemd unit: the unit file, its name,
// and the [X-Fleet] scheduling options inside it. It is pure: text comes in
// through an io.Reader and plain values go out; nothing here touches disk,
// etcd or systemd.
//
// The package:
//   - parses unit file text into a [File] of [Option] values in file order,
//     lexing with go-systemd's unit package rather than a parser of its own,
//     and names the line of a syntax error where it can;
//   - renders a file's canonical text ([File.String], go-systemd's Serialize),
//     which is what fleet stores and hashes, and its SHA1 [Hash];
//   - parses and validates unit names ([ParseName], [Name]) with fleet's
//     rules, and completes bare names as fleetctl did ([Normalize]);
//   - extracts the [X-Fleet] options ([File.FleetOptions]) with fleet's
//     legacy option names and the %n %N %p %i specifiers, checks fleet's rules
//     for combining them ([Fleet.Validate]), and answers the two questions the
//     scheduler asks of them: does a machine's metadata satisfy the unit
//     ([Fleet.MatchesMetadata], with the [Constraint] operators beyond
//     fleet's key=value) and does the unit conflict with another
//     ([Fleet.ConflictsWith]);
//   - reads a unit's resource demand ([Fleet.CPU], [Fleet.Memory]) from its
//     own CPUQuota= and memory settings or from [X-Fleet] CPU= and Memory=,
//     and writes the latter into the text the agent loads ([EnforceLimits]).
//
// Parse accepts only text whose canonical form parses back to itself, so a
// body stored by its hash can be read and hashed again anywhere with the same
// result. That is why it refuses a few inputs go-systemd alone would take:
// text that is not UTF-8, a value ending in a backslash that continues onto
// nothing, a section header spanning lines, an option with no name, and a
// file with no options.
// Like systemd, it ignores text before the first section header.
//
// Scheduling itself (which machine a unit goes to) belongs to package engine;
// this package only describes what a unit asks for.
package unit
