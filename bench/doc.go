// Package bench is fleet's scale benchmark: the code behind cmd/fleet-bench
// (`make bench`, `make bench-quick`) and the Go benchmarks of this package.
//
// What it does:
//   - RunScale starts a real etcd and two real engines, each in a process of
//     its own (this binary started again in a role, see RunRole), and N
//     simulated machines in this process. A simulated machine is the real
//     agent (package agent), registered and kept alive through the registry
//     as fleetd does, on a MemorySystemd: an in-memory stand-in for systemd,
//     named so because it is not one. All simulated machines share one etcd
//     client (their schedule watches share its gRPC stream). It then submits
//     a realistic mix of units (metadata constraints, conflicts, global
//     units, template instances, MachineOf) through the API's client code
//     and measures placements per second and submit-to-all-launched; agent
//     wake-ups and etcd requests per placement; engine and etcd CPU and
//     memory; etcd's database size; fleetctl list latency; failover after
//     killing machines; and leader takeover after killing the leading
//     engine.
//   - RunReal boots three real systemd hosts (functional/platform) and
//     measures fleetd there: the cost of starting 1,000 units on one host,
//     its idle CPU and memory with them running, and the start-to-active
//     latency of single units.
//   - ScaleMarkdown, RealMarkdown and WriteSection write the figures, with
//     the machine they ran on, into their own sections of BENCHMARKS.md,
//     leaving the other sections alone.
//
// What it leaves to others: the scheduler's own benchmarks (engine/), and
// proving that units work (the agent and functional tests run real systemd;
// nothing measured on MemorySystemd is evidence of that).
package bench
