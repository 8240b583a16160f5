// Package functional tests fleet as an operator uses it: several real hosts
// (systemd-nspawn containers booting systemd, each with its own IP), fleetd
// installed in each as fleet.service, fleetctl run inside a host, units that
// run Docker containers. See platform for the harness.
package functional
