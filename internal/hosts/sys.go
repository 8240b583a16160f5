package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machinePath is the PATH of every command this package starts: the caller's environment (GOFLAGS,
// SYSTEMD_NSPAWN_*, DOCKER_HOST, a PATH with /usr/local/bin/docker first...) must not leak into the
// hosts or change how nspawn and dockerd behave.
const machinePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// run runs a short machine-side command and returns its combined output; the error includes it.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{machinePath, "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// --- processes

// pidRecord identifies a process across PID reuse: its PID and its start time in clock ticks since
// boot (field 22 of /proc/<pid>/stat). A record whose start time no longer matches names a process
// that is gone, and must not be signalled.
type pidRecord struct {
	PID   int
	Start uint64
}

// writePIDRecord records process pid in file path.
func writePIDRecord(path string, pid int) error {
	start, err := procStart(pid)
	if err != nil {
		return fmt.Errorf("record pid %d: %w", pid, err)
	}
	if err := os.WriteFile(path, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		return fmt.Errorf("record pid %d: %w", pid, err)
	}
	return nil
}

// readPIDRecord reads a record written by writePIDRecord; ok is false when there is none.
func readPIDRecord(path string) (r pidRecord, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return r, false
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &r.PID, &r.Start); err != nil || r.PID <= 1 {
		return r, false
	}
	return r, true
}

// alive reports whether the recorded process still runs.
func (r pidRecord) alive() bool {
	start, err := procStart(r.PID)
	return err == nil && start == r.Start
}

// procStat returns the fields of /proc/<pid>/stat after the command name: fields[0] is the state
// (field 3 of proc(5)), fields[1] the parent PID, fields[19] the start time.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name is in parentheses and may itself contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

func procStart(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// children returns the PIDs of the live children of pid.
func children(pid int) []int {
	var out []int
	// Cheap where the kernel has CONFIG_PROC_CHILDREN; else scan every process.
	if tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children"); err == nil && len(tasks) > 0 {
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if p, err := strconv.Atoi(f); err == nil && running(p) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	ents, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pid)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := procStat(p); err == nil && f[1] == want && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// sameNS reports whether two /proc namespace links point at the same namespace.
func sameNS(a, b string) bool {
	x, err1 := os.Readlink(a)
	y, err2 := os.Readlink(b)
	return err1 == nil && err2 == nil && x == y
}

// killRecord sends SIGKILL to the recorded process if it is still the one recorded.
func killRecord(path string) {
	if r, ok := readPIDRecord(path); ok && r.alive() {
		_ = syscall.Kill(r.PID, syscall.SIGKILL) // gone already is fine
	}
}

// waitGone waits up to d for pid to exit (or be reaped).
func waitGone(r pidRecord, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for r.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// --- cgroups
//
// Every nspawn and the dockerd run in a cgroup of their own under "fleet-hosts": nspawn --keep-unit
// creates its payload/ and supervisor/ cgroups below the cgroup it was started in, so two hosts
// started from the same cgroup collide. It also gives a way to find every process of a host, or of a
// killed run, without trusting PID files.

const cgroupName = "fleet-hosts"

const cgroup2Magic = 0x63677270 // CGROUP2_SUPER_MAGIC

// cgroupRoots returns the hierarchies in which the package creates cgroups: /sys/fs/cgroup on a pure
// cgroup v2 machine; on a v1 or hybrid one, the name=systemd hierarchy nspawn uses and the unified one.
func cgroupRoots() []string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == cgroup2Magic {
		return []string{"/sys/fs/cgroup"}
	}
	var roots []string
	for _, r := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			roots = append(roots, r)
		}
	}
	return roots
}

// cgroupDirs returns the cgroup directories of member name ("h1", "dockerd") in every root.
func cgroupDirs(name string) []string {
	var dirs []string
	for _, r := range cgroupRoots() {
		dirs = append(dirs, filepath.Join(r, cgroupName, name))
	}
	return dirs
}

// allCgroupTrees returns every existing "fleet-hosts" cgroup tree, in any hierarchy, including those
// runc created for Docker containers (dockerd runs with --cgroup-parent under it).
func allCgroupTrees() []string {
	trees, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", cgroupName))
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", cgroupName)); err == nil {
		trees = append(trees, filepath.Join("/sys/fs/cgroup", cgroupName))
	}
	return trees
}

// joinCgroupScript runs as "sh -c" in front of a long-lived process: it moves itself into the cgroups
// listed in $FLEET_HOSTS_CGROUPS and then execs its arguments, so the process starts inside them and
// every child it forks is born there.
const joinCgroupScript = `for f in $FLEET_HOSTS_CGROUPS; do echo $$ >"$f" || exit 125; done
unset FLEET_HOSTS_CGROUPS
exec "$@"`

// commandInCgroups returns a command that runs name with args inside cgroup dirs (created here) in a
// session of its own, with a clean environment plus env.
func commandInCgroups(dirs []string, env []string, name string, args ...string) (*exec.Cmd, error) {
	var procs []string
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		procs = append(procs, filepath.Join(d, "cgroup.procs"))
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", joinCgroupScript, "fleet-hosts-join", name}, args...)...)
	cmd.Env = append([]string{machinePath, "FLEET_HOSTS_CGROUPS=" + strings.Join(procs, " ")}, env...)
	// A session of its own: a Ctrl-C or job-control signal to the test's process group must not reach
	// nspawn (which turns SIGINT into a container reboot) or dockerd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, nil
}

// cgroupProcs returns the processes in the cgroup trees rooted at dirs.
func cgroupProcs(dirs []string) []int {
	var pids []int
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil // a cgroup removed under us
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
					pids = append(pids, p)
				}
			}
			return nil
		})
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// killCgroups SIGKILLs every process in the cgroup trees rooted at dirs until they are empty, then
// removes the trees. It gives up after timeout. Missing trees are fine.
func killCgroups(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := cgroupProcs(dirs)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroups %v: processes %v survive SIGKILL", dirs, pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL) // exited since listed is fine
		}
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, path)
			}
			return nil
		})
		// Children first. A cgroup can stay busy for a moment after its last process died.
		for i := len(sub) - 1; i >= 0; i-- {
			for try := 0; ; try++ {
				err := syscall.Rmdir(sub[i])
				if err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", sub[i], err))
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return errors.Join(errs...)
}

// --- mounts

// mountsUnder returns the mount points at or below dir in this mount namespace, most recent first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeTree unmounts everything below dir (what a killed debootstrap or dockerd left mounted) and then
// removes dir. It refuses to remove anything while a mount remains: RemoveAll would descend into it.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// unmountUnder detaches every mount at or below dir, or says which remain.
func unmountUnder(dir string) error {
	for try := 0; ; try++ {
		mps, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			break
		}
		if try == 3 {
			return fmt.Errorf("unmount under %s: still mounted: %v", dir, mps)
		}
		for _, mp := range mps {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH) // unmounted with its parent already is fine
		}
	}
	return nil
}

// --- lock

// LockPath is the machine-wide lock serializing every user of this package: the names it creates
// (network namespaces, cgroups, nspawn machines) are machine-wide too, whatever the WorkDir.
const LockPath = "/run/fleet-hosts.lock"

// lockMachine takes LockPath, waiting for another holder (another test package's cluster, say) until
// ctx ends. An flock dies with the process holding it, so a killed run never blocks the next one. The
// descriptor is close-on-exec: nspawn and dockerd must not inherit it.
func lockMachine(ctx context.Context, log *slog.Logger) (*os.File, error) {
	path := LockPath
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for logged := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !logged {
			log.Info("waiting for another cluster on this machine to close", "lock", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s (held by another cluster?): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// --- misc

// tail returns the last n bytes of file path, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimSpace(string(b))
}

// raiseSysctl raises a numeric /proc/sys setting to at least min.
func raiseSysctl(name string, min int) error {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if cur, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cur >= min {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(min)), 0o644); err != nil {
		return fmt.Errorf("raise %s to %d: %w", name, min, err)
	}
	return nil
}

// sortedGlob is filepath.Glob, sorted, ignoring the only possible error (a bad pattern).
func sortedGlob(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	sort.Strings(m)
	return m
}
