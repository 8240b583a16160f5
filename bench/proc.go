package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The benchmark runs etcd and each engine in a process of its own (the
// benchmark's own binary, started again in a role), so that their CPU time
// and memory are measured apart from the simulated machines, and so that an
// engine can be killed with SIGKILL like a crashed host.
const (
	roleEnv     = "FLEET_BENCH_ROLE"
	roleArgsEnv = "FLEET_BENCH_ROLE_ARGS"
	readyLine   = "fleet-bench: ready"
)

// RunRole runs the role this process was started in, if any, until it ends
// or SIGTERM arrives, and reports whether there was one. The benchmark's main
// (and TestMain) call it first, and exit when it reports true.
func RunRole() (bool, error) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return false, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	args := []byte(os.Getenv(roleArgsEnv))
	if p := os.Getenv(profileEnv); p != "" {
		profileOnSignal(ctx, p)
	}
	switch role {
	case "etcd":
		var cfg etcdRole
		if err := json.Unmarshal(args, &cfg); err != nil {
			return true, fmt.Errorf("etcd role: %w", err)
		}
		return true, cfg.run(ctx)
	case "api":
		var cfg apiRole
		if err := json.Unmarshal(args, &cfg); err != nil {
			return true, fmt.Errorf("api role: %w", err)
		}
		return true, cfg.run(ctx)
	case "engine":
		var cfg engineRole
		if err := json.Unmarshal(args, &cfg); err != nil {
			return true, fmt.Errorf("engine role: %w", err)
		}
		return true, cfg.run(ctx)
	}
	return true, fmt.Errorf("unknown %s %q", roleEnv, role)
}

// child is a process started in a role.
type child struct {
	name    string
	profile string // where it writes a CPU profile on SIGUSR1; "" for none
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// startChild starts this binary in role with args, and waits until it says
// it is ready. Its standard error goes to logPath.
func startChild(ctx context.Context, name, role string, args any, logPath string) (*child, error) {
	return startProfiledChild(ctx, name, role, args, logPath, "")
}

// startProfiledChild is startChild for a child that writes a CPU profile to
// profilePath on SIGUSR1 (see profileOnSignal); "" for none.
func startProfiledChild(ctx context.Context, name, role string, args any, logPath, profilePath string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, roleArgsEnv+"="+string(b), profileEnv+"="+profilePath)
	cmd.Stderr = logf
	// A benchmark that dies must not leave etcd or an engine running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), profile: profilePath}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if !said && sc.Text() == readyLine {
				said = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	select {
	case <-ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited before it was ready: %v (log %s)", name, c.err, logPath)
	case <-ctx.Done():
		c.kill()
		return nil, fmt.Errorf("%s: %w", name, ctx.Err())
	case <-time.After(2 * time.Minute):
		c.kill()
		return nil, fmt.Errorf("%s not ready after 2m (log %s)", name, logPath)
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// kill ends the process at once (SIGKILL), as a crashed host would.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop asks the process to end (SIGTERM) and kills it after 10 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

// alive reports whether the process still runs.
func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// sayReady tells the parent the role is up.
func sayReady() { fmt.Println(readyLine) }

// procStat is what /proc tells of a process.
type procStat struct {
	CPU     time.Duration // user + system
	RSS     int64         // bytes, now
	PeakRSS int64         // bytes, high-water mark
}

// clockTick is USER_HZ, which Linux fixes at 100 for /proc.
const clockTick = 100

// statFields reads the fields of dir/stat after the command name (which is
// in parentheses): f[11] and f[12] are utime and stime, f[13] and f[14]
// cutime and cstime, in clock ticks.
func statFields(dir string) ([]string, error) {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, errors.New("malformed stat")
	}
	return f, nil
}

// ticks sums stat fields f[i]... (clock ticks) into a duration.
func ticks(f []string, i ...int) time.Duration {
	var n int64
	for _, j := range i {
		v, _ := strconv.ParseInt(f[j], 10, 64)
		n += v
	}
	return time.Duration(n) * time.Second / clockTick
}

// readProc reads pid's CPU time and memory from /proc (pid 0: this process).
func readProc(pid int) (procStat, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var st procStat
	f, err := statFields(dir)
	if err != nil {
		return st, err
	}
	st.CPU = ticks(f, 11, 12)
	s, err := os.ReadFile(dir + "/status")
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(s), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			st.RSS = kb << 10
		case "VmHWM":
			st.PeakRSS = kb << 10
		}
	}
	return st, nil
}
