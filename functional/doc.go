// Package functional tests fleet as an operator uses it: several real hosts
// (systemd-nspawn containers booting systemd, each with its own IP), fleetd
// installed in each from dist/ as fleet.service and fleet.socket with
// /etc/fleet/fleet.conf, a real three-member etcd cluster (Debian's
// etcd-server) or fleetd's embedded etcd, Docker (one dockerd for all hosts,
// or one in each host so that a host's death kills its containers), and
// fleetctl run inside a host. See platform for the harness.
//
// The scenarios come in groups that each boot their hosts once: TestCluster
// (commands, API, scheduling rules; no failures), TestHostFailures (hosts
// killed, replaced, cut off; fleetd stopped), TestEtcdFailures (a member
// lost, the whole etcd cluster down), TestHygiene (the engine leader's
// etcd upkeep with short periods; engine versions), TestDockerInHost,
// TestEmbeddedEtcd, and TestChaos (seeded rounds of random faults on five
// hosts with 50 units, every host's systemd sampled against fleet's
// invariants; see chaos_test.go). Scenarios that need a feature fleet lacks, or that a
// known bug breaks, are listed in one place, pending_test.go.
//
// Each scenario prints what it measures (time to active, failover, takeover)
// as "figure:" lines; they are summed up at the end of the run (with go test
// -v), and written to $FLEET_FUNCTIONAL_FIGURES if set. When a group fails,
// the logs of all its hosts, killed ones included, and of the etcd members
// are kept under $FLEET_FUNCTIONAL_LOGS (default
// /var/lib/fleet-hosts/functional-logs).
//
// Run as root on Debian 12: go test -v -count=1 -timeout 20m ./functional/...
package functional
