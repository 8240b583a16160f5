// Package hosts runs simulated hosts for fleet's agent tests, end-to-end tests and `make demo`.
//
// A host is a systemd-nspawn container booting a real systemd (PID 1 of its own PID namespace) from one
// shared, read-only debootstrap'd Debian 12 root file system with the host's own disk overlaid on top (a
// tmpfs: a reboot from inside, systemctl reboot, keeps it and the host boots again by itself; Restart
// empties it, as a reimaged machine). Each host has its own network namespace and IP on a bridge of the machine, its
// own machine-id (stable per host name), hostname, D-Bus system bus and journal (kept on the machine, so
// it outlives a killed host). The binaries under test are bind-mounted read-only at /opt/fleet/bin and
// run inside a host as ordinary systemd units.
//
// What the package does:
//   - EnsureRootfs installs the Debian packages it needs and builds the root file system once.
//   - Start boots a Cluster of hosts h1..hN on a bridge; AddHost boots more. Optionally one dockerd on
//     the machine serves every host through a bind-mounted socket (Config.Docker), or every host runs
//     a dockerd of its own, whose containers die with it (Config.DockerInHost).
//   - Optionally it runs a real etcd cluster on the machine (Config.Etcd: Debian's etcd-server, one
//     bridge address per member) that tests can kill, stop and restart member by member or whole.
//   - Host runs commands inside a host (Exec), reaches its system bus and files from the machine side
//     (BusAddress, Path), and simulates failures: Kill (power loss), Stop (clean poweroff), Restart,
//     Disconnect and Reconnect (network cut).
//   - Close, and Cleanup after a killed run, remove every process, network namespace, link, cgroup and
//     mount the package created. Everything created is recorded under WorkDir/state first, and processes
//     are also found through their cgroups (WorkDir names nothing the package did not create).
//
// What it leaves to others: the programs under test and their units, and any traffic beyond the bridge
// (hosts have a default route via the gateway but there is no forwarding or NAT to the outside world).
//
// Requirements: Debian 12 (or similar), root, cgroup v1 hybrid or v2; PID 1 need not be systemd. The
// Debian packages it needs are installed on first use (EnsureRootfs).
// One cluster per machine at a time: host, network namespace and cgroup names are fixed, so every
// operation takes the machine-wide lock LockPath, whatever its WorkDir, and a Cluster holds it until
// Close. A second Start (from another test package, say) waits for it.
package hosts
