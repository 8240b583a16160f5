package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// The scale benchmark can take CPU profiles of one phase (the bulk) in
// every process at once: etcd's, each engine's and its own, so that the
// cost of a placement can be split by component and, within the benchmark
// process, between the simulated agents, the submitter and the observer
// (pprof labels "part"). Children profile on SIGUSR1: the first starts a
// profile, the next writes it.
const profileEnv = "FLEET_BENCH_PROFILE" // path of the child's profile file

// profileOnSignal toggles a CPU profile into path on each SIGUSR1 until ctx
// ends; a profile running then is written.
func profileOnSignal(ctx context.Context, path string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(sig)
		var f *os.File
		stop := func() {
			if f != nil {
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				if f != nil {
					stop()
					continue
				}
				var err error
				if f, err = os.Create(path); err != nil {
					fmt.Fprintln(os.Stderr, "fleet-bench: cpu profile:", err)
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					fmt.Fprintln(os.Stderr, "fleet-bench: cpu profile:", err)
					f.Close()
					f = nil
				}
			}
		}
	}()
}

// profilePath is where the process named name writes its profile of the
// bulk, or "" when dir is.
func profilePath(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name+"-bulk.pprof")
}

// labelled runs f with pprof label part=part on its goroutine and every
// goroutine it starts, so that a profile of this process tells the parts
// apart (go tool pprof -tagfocus part=agents).
func labelled(ctx context.Context, part string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels("part", part), f)
}

// profiler profiles the bulk of a scale run in every process.
type profiler struct {
	kids []*child
	self *os.File
}

// startProfiles starts CPU profiles in etcd, the live engines and
// this process, written to c.profileDir as <process>-bulk.pprof. Without
// a profile directory it does nothing.
func (c *cluster) startProfiles() (*profiler, error) {
	if c.profileDir == "" {
		return nil, nil
	}
	p := &profiler{}
	for _, k := range append([]*child{c.etcd}, c.engines...) {
		if k.alive() && k.profile != "" {
			if err := k.cmd.Process.Signal(syscall.SIGUSR1); err == nil {
				p.kids = append(p.kids, k)
			}
		}
	}
	f, err := os.Create(profilePath(c.profileDir, "bench"))
	if err != nil {
		return p, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return p, fmt.Errorf("cpu profile: %w", err)
	}
	p.self = f
	return p, nil
}

// stop writes the profiles; later calls do nothing.
func (p *profiler) stop() {
	if p == nil {
		return
	}
	if p.self != nil {
		pprof.StopCPUProfile()
		p.self.Close()
	}
	for _, k := range p.kids {
		_ = k.cmd.Process.Signal(syscall.SIGUSR1)
	}
	p.self, p.kids = nil, nil
}
