// Package reboot is fleetd's reboot coordinator, locksmith and kured built
// in: on every machine it watches for a reboot to be needed (the sentinel
// file, /run/reboot-required by default, or a request set with fleetctl
// reboot), takes a slot of the cluster-wide semaphore in etcd (at most
// reboot_max_concurrent machines at once, only within reboot_window),
// drains the machine, runs the reboot command, and once the machine
// registers again with a new boot ID it undrains it and gives the slot back.
// A holder not back by its deadline (reboot_timeout) has its slot released
// by another machine's coordinator, which reports it.
//
// It leaves the moving of units to the engine leader (the drain record, see
// registry.DrainRecord) and the key layout to the registry. Every step is a
// registry.RebootStep record, so `fleetctl events` shows it.
package reboot
