package bench

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/seed-a1ce88ea/fleet/machine"
)

// Workload is one cluster-scale scenario: how many simulated machines, how
// many units, and what to measure on top of the bulk submission.
type Workload struct {
	Name     string
	Machines int
	Units    int
	// Probes is how many single units are placed one at a time, once the
	// cluster is steady, to count agent wake-ups and etcd requests per
	// placement.
	Probes int
	// ListRuns is how many times each fleetctl list command is timed.
	ListRuns int
	// FailoverPercent of the machines is killed at once.
	FailoverPercent float64
	// AgentTTL is each machine's presence TTL (fleetd's agent_ttl).
	AgentTTL time.Duration
	// LeaderTTL is the engines' leadership TTL (engine_leader_ttl).
	LeaderTTL time.Duration
	// IdleWindow is how long the presence load of the idle machines is
	// measured; default 5 s.
	IdleWindow time.Duration
	// OwnClients is how many of the simulated machines (the first ones)
	// each have an etcd client of their own, one connection per machine
	// as with real fleetds, instead of the one client the others share
	// (one gRPC connection carrying every watch and lease keepalive).
	OwnClients int
	// ProfileDir, when set, receives CPU profiles of the bulk of etcd, each
	// engine and the benchmark process (<process>-bulk.pprof; in the
	// benchmark's, label part= tells agents, submitter and observer apart).
	ProfileDir string
	// Deadline bounds each phase's wait: a phase that does not finish in
	// time is reported as such, with how far it got.
	Deadline time.Duration
}

// benchMachine describes simulated machine i: a 32-hex-digit ID as
// /etc/machine-id has, and metadata role (web, db, worker or edge) and
// region (r0..r4) for the units' constraints.
func benchMachine(i int) machine.Machine {
	h := fnv.New64a()
	fmt.Fprintf(h, "machine-%d", i)
	id := fmt.Sprintf("%016x%016x", h.Sum64(), uint64(i))
	return machine.Machine{
		ID:       id,
		Hostname: fmt.Sprintf("sim%05d", i),
		PublicIP: fmt.Sprintf("10.%d.%d.%d", 100+i/65536, (i/256)%256, i%256),
		Metadata: map[string]string{
			"role":   [...]string{"web", "db", "worker", "edge"}[i%4],
			"region": fmt.Sprintf("r%d", (i/4)%5),
		},
	}
}

// benchUnit is one unit to submit: its name and, unless it is an instance
// of a template submitted before, its unit file.
type benchUnit struct {
	Name string
	Body string // "" for a template instance: it takes the template's file
	// Launched units are counted; templates are submitted inactive.
	Launched bool
	Global   bool
}

// Templates of the mix. Instances are submitted without a file of their
// own, so each shares its template's body (one hash for thousands of units).
var templates = []benchUnit{
	{Name: "web@.service", Body: "[Unit]\nDescription=web server %i\n\n[Service]\nExecStart=/usr/bin/web --port 80%i\nRestart=always\n\n[X-Fleet]\nMachineMetadata=role=web\n"},
	{Name: "worker@.service", Body: "[Unit]\nDescription=queue worker %i\n\n[Service]\nExecStart=/usr/bin/worker --shard %i\n"},
	{Name: "db@.service", Body: "[Unit]\nDescription=database replica %i\n\n[Service]\nExecStart=/usr/bin/db --replica %i\n\n[X-Fleet]\nConflicts=db@*.service\n"},
}

// mix returns the units of a workload of n units on m machines, in
// submission order, templates first. The mix is:
//
//   - 2 global units: one on every machine, one on the role=edge quarter;
//   - 15% instances of web@ (MachineMetadata=role=web, so on a quarter of the
//     machines), 10% of worker@ (anywhere);
//   - db@ instances, one per 10 machines, with Conflicts=db@*.service (no two
//     on one machine);
//   - 10% units pinned to a region (MachineMetadata=region=rN);
//   - 5% sidecars that follow a unit (MachineOf=app-N.service);
//   - the rest plain units, each with a body of its own.
//
// The numbers are counted as units; a global unit makes one placement per
// matching machine, so placements = n - 2 + m + m/4.
func mix(n, m int) []benchUnit {
	out := append([]benchUnit(nil), templates...)
	add := func(u benchUnit) { u.Launched = true; out = append(out, u) }
	add(benchUnit{Name: "node-exporter.service", Global: true,
		Body: "[Unit]\nDescription=metrics on every machine\n\n[Service]\nExecStart=/usr/bin/node-exporter\n\n[X-Fleet]\nGlobal=true\n"})
	add(benchUnit{Name: "edge-proxy.service", Global: true,
		Body: "[Unit]\nDescription=proxy on every edge machine\n\n[Service]\nExecStart=/usr/bin/proxy\n\n[X-Fleet]\nGlobal=true\nMachineMetadata=role=edge\n"})
	rest := n - 2
	web, worker, db := rest*15/100, rest*10/100, m/10
	region, sidecar := rest*10/100, rest*5/100
	apps := rest - web - worker - db - region - sidecar
	for i := range apps {
		add(benchUnit{Name: fmt.Sprintf("app-%d.service", i),
			Body: fmt.Sprintf("[Unit]\nDescription=app %d\n\n[Service]\nExecStart=/usr/bin/app --id %d\n", i, i)})
	}
	for i := range web {
		add(benchUnit{Name: fmt.Sprintf("web@%d.service", i)})
	}
	for i := range worker {
		add(benchUnit{Name: fmt.Sprintf("worker@%d.service", i)})
	}
	for i := range db {
		add(benchUnit{Name: fmt.Sprintf("db@%d.service", i)})
	}
	for i := range region {
		add(benchUnit{Name: fmt.Sprintf("svc-%d.service", i),
			Body: fmt.Sprintf("[Unit]\nDescription=regional service %d\n\n[Service]\nExecStart=/usr/bin/svc %d\n\n[X-Fleet]\nMachineMetadata=region=r%d\n", i, i, i%5)})
	}
	for i := range sidecar {
		add(benchUnit{Name: fmt.Sprintf("log-%d.service", i),
			Body: fmt.Sprintf("[Unit]\nDescription=log shipper for app %d\n\n[Service]\nExecStart=/usr/bin/ship app-%d\n\n[X-Fleet]\nMachineOf=app-%d.service\n", i, i, i%apps)})
	}
	return out
}

// expectedPlacements is how many (machine, unit) pairs a mix of n units on
// m machines launches.
func expectedPlacements(n, m int) int {
	edge := 0
	for i := range m {
		if i%4 == 3 {
			edge++
		}
	}
	return n - 2 + m + edge
}
