package bench

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// cpuSnap is the CPU time every process on the machine had used at one
// moment, read from /proc (each thread's schedstat, in nanoseconds: the
// windows it is taken around are a few hundred milliseconds, where clock
// ticks would round every process by 10 ms).
type cpuSnap struct {
	at    time.Time     // reading began
	took  time.Duration // reading took
	procs map[int]procShare
	self  int // this process, where etcd runs embedded
	// children is what this process's reaped children used (fleetctl run
	// through nsenter, the active-unit poller's systemctl), in clock ticks.
	children time.Duration
}

// procShare is one process in a snapshot: its command name, the host whose
// PID namespace it is in ("" for the machine's own) and its CPU time.
type procShare struct {
	comm, host string
	cpu        time.Duration
}

// cpuShare is the CPU time a group of processes used during a window.
type cpuShare struct {
	Who string        // "fleetd h1", "systemd other hosts (9)", "machine: etcd", ...
	CPU time.Duration // summed over the group
}

// snapCPU reads every process's CPU time, placing each in its host by its
// PID namespace.
func snapCPU(hs []*hosts.Host) cpuSnap {
	s := cpuSnap{at: time.Now(), procs: map[int]procShare{}, self: os.Getpid()}
	nsHost := map[string]string{}
	for _, h := range hs {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.Leader())); err == nil {
			nsHost[ns] = h.Name
		}
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue // gone
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		var cpu time.Duration
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			f, _, _ := strings.Cut(string(b), " ")
			ns, _ := strconv.ParseInt(f, 10, 64)
			cpu += time.Duration(ns)
		}
		s.procs[pid] = procShare{comm: strings.TrimSpace(string(comm)), host: nsHost[ns], cpu: cpu}
	}
	if f, err := statFields("/proc/self"); err == nil {
		s.children = ticks(f, 13, 14)
	}
	s.took = time.Since(s.at)
	return s
}

// cpuWindow is what each group of processes used between two snapshots,
// largest first. A process that started in the window counts whole; one
// that ended in it is lost, unless this process reaped it (children).
// own is the CPU of this process's children that is accounted for apart
// (fleetctl's, from its shell's times), and is taken out of children.
// Processes of the host named first (where fleetctl and the fleetd serving
// it run) are grouped apart from the other hosts'.
func cpuWindow(a, b cpuSnap, first string, own time.Duration) []cpuShare {
	type group struct {
		cpu   time.Duration
		hosts map[string]bool
	}
	groups := map[string]*group{}
	add := func(who, host string, d time.Duration) {
		g := groups[who]
		if g == nil {
			g = &group{hosts: map[string]bool{}}
			groups[who] = g
		}
		g.cpu += d
		if host != "" {
			g.hosts[host] = true
		}
	}
	for pid, p := range b.procs {
		// A process in both is the same (a PID is not reused within a
		// second); kernel threads change their names as they work.
		d := p.cpu - a.procs[pid].cpu
		if d <= 0 {
			continue
		}
		switch {
		case pid == b.self:
			add("fleet-bench (embedded etcd, observer, poller)", "", d)
		case p.host == "":
			add("machine: "+p.comm, "", d)
		case p.host == first:
			add(p.comm+" "+first, p.host, d)
		default:
			add(p.comm+" other hosts", p.host, d)
		}
	}
	if d := b.children - a.children - own; d > 0 {
		add("fleet-bench's children (nsenter, the poller's systemctl)", "", d)
	}
	if own > 0 {
		add("fleetctl "+first, first, own)
	}
	var out []cpuShare
	for who, g := range groups {
		if n := len(g.hosts); n > 1 {
			who = fmt.Sprintf("%s (%d)", who, n)
		}
		out = append(out, cpuShare{Who: who, CPU: g.cpu})
	}
	slices.SortFunc(out, func(x, y cpuShare) int { return cmp.Or(cmp.Compare(y.CPU, x.CPU), strings.Compare(x.Who, y.Who)) })
	return out
}

// cpuLine words a window's shares: the total, then the groups of at least
// 1% of the window's CPU capacity.
func cpuLine(shares []cpuShare, wall time.Duration, cores int) string {
	var total time.Duration
	for _, s := range shares {
		total += s.CPU
	}
	parts := []string{fmt.Sprintf("%s of CPU in %s wall on %d cores", ms(total), ms(wall), cores)}
	for _, s := range shares {
		if s.CPU*100 >= wall*time.Duration(cores) {
			parts = append(parts, fmt.Sprintf("%s %s", s.Who, ms(s.CPU)))
		}
	}
	return strings.Join(parts, "; ")
}
