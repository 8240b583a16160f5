package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// bootTimeout bounds one host's boot, from starting nspawn to a running systemd. A boot takes
	// about 0.3 s alone and 30 s for 100 hosts booting at once on 2 cores.
	bootTimeout = 2 * time.Minute
	// exitTimeout bounds the wait for a killed host's processes to be gone.
	exitTimeout = 15 * time.Second
)

// hostEnv is the environment of commands run inside a host, whatever the caller's.
var hostEnv = []string{machinePath, "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_COLORS=0"}

// Host is one simulated machine: a systemd-nspawn container running systemd as PID 1 in its own PID,
// mount, UTS, IPC and network namespaces. Its methods are safe for concurrent use.
//
// Names: host "h1" is container (nspawn machine name) and network namespace "fleet-h1", its hostname
// inside is "h1", and the bridge end of its network link is "vfleet-h1".
type Host struct {
	// Name is the host's name in the Cluster and its hostname inside: "h1", "h2"...
	Name string
	// IP is the host's address on the bridge, Subnet.(10+i) for host hi; it is the source of the
	// host's default route.
	IP string
	// MachineID is the host's /etc/machine-id: the hex MD5 of "fleet-"+Name, the same on every boot
	// and every run.
	MachineID string

	cfg          Config
	dockerSocket string // machine-side socket to bind at /run/docker.sock, or ""
	log          *slog.Logger

	op sync.Mutex // serializes boot, Stop and Restart

	mu           sync.Mutex
	proc         *os.Process   // nspawn of the current boot; nil when the host is down
	leader       int           // PID of the host's systemd, 0 until booted and once down
	done         chan struct{} // closed once the current boot's nspawn exited and its host was cleaned up
	disconnected bool          // Disconnect was called: keep the link down across boots
	boots        int           // boots that reached a running systemd, reboots from inside included
	halted       bool          // Stop or Kill was called since the last boot: a reboot from inside does not boot it
}

func (h *Host) container() string { return namePrefix + h.Name }
func (h *Host) veth() string      { return "v" + namePrefix + h.Name }
func (h *Host) stateDir() string  { return filepath.Join(h.cfg.stateDir(), h.Name) }

// diskDir is the host's disk: a tmpfs on the machine, mounted by us rather than by nspawn so that it
// outlives a reboot from inside, holding the upper (and work) directory of the host's root overlay.
func (h *Host) diskDir() string { return filepath.Join(h.stateDir(), "disk") }

// rootDir is where the host's root file system is mounted on the machine: the shared root file
// system, read-only, below the host's disk.
func (h *Host) rootDir() string { return filepath.Join(h.stateDir(), "root") }

// nspawnRebooted is systemd-nspawn's exit status when the container's systemd rebooted.
const nspawnRebooted = 133

// Boots returns how many times the host has booted (to a running systemd) since it was added to the
// cluster: Restart and a reboot from inside each count one.
func (h *Host) Boots() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boots
}

// propagateDir is where nspawn keeps a directory for propagating mounts into a container. nspawn leaves
// it behind on the machine when /run is not a tmpfs that disappears at reboot.
func propagateDir(container string) string {
	return filepath.Join("/run/systemd/nspawn/propagate", container)
}

// Leader returns the PID, on the machine, of the host's systemd (PID 1 inside), or 0 when the host is
// not running.
func (h *Host) Leader() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leader
}

// Path returns the machine-side path of path p inside the host: /proc/<leader>/root + p. It is only
// meaningful while the host runs.
func (h *Host) Path(p string) string {
	return "/proc/" + strconv.Itoa(h.Leader()) + "/root" + p
}

// BusAddress returns a D-Bus address of the host's system bus usable from the machine side (dial it,
// authenticate EXTERNAL as uid 0, Hello). systemd's private socket refuses clients from outside the
// host's PID namespace, so the machine reaches systemd through the bus.
func (h *Host) BusAddress() string {
	return "unix:path=" + h.Path("/run/dbus/system_bus_socket")
}

// Exec runs a command inside the host, in all its namespaces (nsenter -a), with a clean environment,
// and returns its combined output. The error, if any, includes that output. A command still running
// when ctx ends is killed. The command stays in the caller's cgroup: start long-lived processes as
// units, with systemd-run. It fails with ErrNotRunning when the host is down.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	leader := h.Leader()
	if leader == 0 {
		return nil, fmt.Errorf("exec %q on %s: %w", strings.Join(args, " "), h.Name, ErrNotRunning)
	}
	out, err := nsenter(ctx, leader, args...)
	if err != nil {
		return out, fmt.Errorf("exec %q on %s: %w: %s", strings.Join(args, " "), h.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// nsenter runs args in all namespaces of process leader.
func nsenter(ctx context.Context, leader int, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(leader), "-a", "--"}, args...)...)
	cmd.Env = hostEnv
	// nsenter forks to enter the PID namespace: kill its whole process group on cancellation, and do
	// not wait for output from a background process the command left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// JournalDir returns the machine-side directory holding the host's persistent journal (its
// /var/log/journal): every boot's, and still there once the host is killed, until the cluster's state
// is removed (Close keeps only *.log files). Read it with journalctl -D.
func (h *Host) JournalDir() string { return filepath.Join(h.stateDir(), "journal") }

// Journal returns the host's journal of the current boot (journalctl -b), for test failure logs. When
// it cannot be read, it returns why instead.
func (h *Host) Journal(ctx context.Context) string {
	out, err := h.Exec(ctx, "journalctl", "-b", "--no-pager", "-q")
	if err != nil {
		return fmt.Sprintf("(no journal of %s: %v)", h.Name, err)
	}
	return string(out)
}

// Kill cuts the host off the network and then SIGKILLs its nspawn and systemd: a machine losing power.
// Peers get no FIN or RST from it; they stop hearing from it. It waits until every process of the host
// is gone. Killing a host that is down does nothing. Containers it started in the shared dockerd keep
// running.
func (h *Host) Kill() error {
	h.mu.Lock()
	proc, leader, done := h.proc, h.leader, h.done
	h.halted = true
	h.mu.Unlock()
	if proc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	err := setLink(ctx, h.veth(), false)
	if leader > 0 {
		// SIGKILL to PID 1 of a PID namespace, from outside it, kills every process inside. nspawn
		// then reaps it and exits: killing nspawn first would orphan the dead systemd to the machine's
		// PID 1, which is not always an init that reaps orphans (it is not on the CI machines).
		_ = syscall.Kill(leader, syscall.SIGKILL) // dead already is fine
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	}
	_ = proc.Kill() // exited already is fine
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("kill %s: processes survive: %w", h.Name, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("kill %s: %w", h.Name, err)
	}
	h.log.Info("host killed")
	return nil
}

// Stop powers the host off cleanly (nspawn turns SIGTERM into a poweroff of the host's systemd) and
// waits until it is down. If ctx ends first, the host is killed and ctx's error returned. Stopping a
// host that is down does nothing.
func (h *Host) Stop(ctx context.Context) error {
	h.op.Lock()
	defer h.op.Unlock()
	return h.stop(ctx)
}

func (h *Host) stop(ctx context.Context) error {
	h.mu.Lock()
	proc, done := h.proc, h.done
	h.halted = true
	h.mu.Unlock()
	if proc == nil {
		return nil
	}
	_ = proc.Signal(syscall.SIGTERM) // exited already is fine: done is closed then
	select {
	case <-done:
		h.log.Info("host stopped")
		return nil
	case <-ctx.Done():
		if err := h.Kill(); err != nil {
			return fmt.Errorf("stop %s: %w (then %v)", h.Name, ctx.Err(), err)
		}
		return fmt.Errorf("stop %s: %w (killed)", h.Name, ctx.Err())
	}
}

// Restart powers the host off cleanly if it runs (as Stop) and boots it again with the same name, IP
// and machine-id, waiting until its systemd is running. Like a reimaged machine, it boots from the
// pristine root file system: whatever the previous boot wrote is gone. A Disconnect stays in force.
//
// A reboot from inside the host (systemctl reboot) is not a Restart: the host boots again by itself
// and keeps its disk (whatever it wrote: installed software, enabled units), as a real machine does;
// its systemd has a new boot ID. Boots counts both.
func (h *Host) Restart(ctx context.Context) error {
	h.op.Lock()
	defer h.op.Unlock()
	if err := h.stop(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return h.boot(ctx)
}

// rebootFromInside boots the host again after its systemd rebooted, keeping its disk, unless Stop,
// Kill or Restart came first.
func (h *Host) rebootFromInside() {
	h.op.Lock()
	defer h.op.Unlock()
	h.mu.Lock()
	skip := h.halted || h.proc != nil
	h.mu.Unlock()
	if skip {
		return
	}
	h.log.Info("host rebooted from inside; booting it again with its disk")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+exitTimeout)
	defer cancel()
	if err := h.bootWith(ctx, true); err != nil {
		h.log.Error("boot after a reboot from inside", "err", err)
	}
}

// Disconnect cuts the host off the network: its link to the bridge goes down, so packets from and to
// it are lost (no RST, no ICMP) while it keeps running. It stays cut across Restart until Reconnect.
func (h *Host) Disconnect(ctx context.Context) error {
	return h.setConnected(ctx, false)
}

// Reconnect undoes Disconnect.
func (h *Host) Reconnect(ctx context.Context) error {
	return h.setConnected(ctx, true)
}

func (h *Host) setConnected(ctx context.Context, up bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.disconnected = !up
	if h.proc == nil {
		return nil // the link is down while the host is, and boot honours the flag
	}
	if err := setLink(ctx, h.veth(), up); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	h.log.Info("host network", "connected", up)
	return nil
}

// boot starts nspawn from the pristine root file system and waits until the host's systemd is running.
// On error the host is down again. The caller holds h.op or owns h alone; the host is down and its
// network namespace exists.
func (h *Host) boot(ctx context.Context) error { return h.bootWith(ctx, false) }

// bootWith is boot; keepDisk boots with what the previous boot wrote.
func (h *Host) bootWith(ctx context.Context, keepDisk bool) error {
	start := time.Now()
	dir := h.stateDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	if err := h.mountRoot(keepDisk); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	if err := os.RemoveAll(propagateDir(h.container())); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	cgroups := cgroupDirs(h.Name)
	if err := killCgroups(cgroups, exitTimeout); err != nil { // leftovers of the previous boot
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	if err := os.MkdirAll(h.JournalDir(), 0o755); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	consolePath := filepath.Join(dir, "console.log")
	console, err := os.OpenFile(consolePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	defer console.Close() // the child has its own descriptor
	fmt.Fprintf(console, "=== fleet-hosts: booting %s at %s\n", h.Name, start.Format(time.RFC3339Nano))

	var env []string
	if h.cfg.DockerInHost {
		// nspawn mounts the v1 controllers read-only, which runc cannot use: give the host a pure
		// cgroup v2 view (no controllers, but runc can create cgroups there).
		env = append(env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
		for _, d := range []string{"docker", "containerd"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o711); err != nil {
				return fmt.Errorf("boot %s: %w", h.Name, err)
			}
		}
	}
	cmd, err := commandInCgroups(cgroups, env, "systemd-nspawn", h.nspawnArgs()...)
	if err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	cmd.Stdout, cmd.Stderr = console, console // stdin stays /dev/null: --console=pipe reads nothing

	h.mu.Lock()
	connected := !h.disconnected
	h.mu.Unlock()
	if err := setLink(ctx, h.veth(), connected); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return errors.Join(fmt.Errorf("boot %s: %w", h.Name, err), setLink(ctx, h.veth(), false))
	}
	done := make(chan struct{})
	h.mu.Lock()
	h.proc, h.leader, h.done, h.halted = cmd.Process, 0, done, false
	h.mu.Unlock()
	go h.wait(cmd, done)

	// Recorded at once, for a Cleanup after we are killed mid-boot.
	err = writePIDRecord(filepath.Join(dir, "nspawn.pid"), cmd.Process.Pid)
	var leader int
	var state string
	if err == nil {
		leader, state, err = h.waitRunning(ctx, cmd.Process.Pid, done, consolePath)
	}
	if err == nil {
		err = writePIDRecord(filepath.Join(dir, "leader.pid"), leader)
	}
	if err == nil {
		err = h.checkMachineID(leader)
	}
	if err == nil {
		h.mu.Lock()
		if h.proc == cmd.Process { // not exited meanwhile
			h.leader = leader
			h.boots++
		} else {
			err = errors.New("nspawn exited right after boot")
		}
		h.mu.Unlock()
	}
	if err != nil {
		_ = h.Kill() // the error at hand says more than a failure to kill
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	h.log.Info("host booted", "leader", leader, "state", state, "took", time.Since(start).Round(time.Millisecond))
	if state == "degraded" {
		out, _ := nsenter(ctx, leader, "systemctl", "--failed", "--plain", "--no-legend")
		h.log.Warn("host degraded", "failed", strings.TrimSpace(string(out)))
	}
	return nil
}

func (h *Host) nspawnArgs() []string {
	args := []string{
		"--quiet",
		// The shared root file system below the host's own disk (mountRoot): hosts never write to it.
		"--directory=" + h.rootDir(),
		"--boot",
		"--machine=" + h.container(),
		"--hostname=" + h.Name,
		"--uuid=" + h.MachineID,
		// No systemd (or machined) on the machine to register with: keep the cgroup we start in.
		"--register=no", "--keep-unit",
		"--console=pipe",
		"--link-journal=no",
		// The persistent journal lives on the machine, so it survives the host being killed.
		"--bind=" + h.JournalDir() + ":/var/log/journal",
		"--network-namespace-path=" + filepath.Join(netnsDir, h.container()),
	}
	if h.cfg.BinDir != "" {
		args = append(args, "--bind-ro="+h.cfg.BinDir+":"+BinMount)
	}
	if h.dockerSocket != "" {
		args = append(args, "--bind="+h.dockerSocket+":/run/docker.sock", "--bind-ro="+dockerCLI)
	}
	if h.cfg.DockerInHost {
		// Docker's data must not live on the overlay root (overlay2 on overlayfs fails), and it
		// outlives a reboot as on a real disk; runc needs the keyring and bpf system calls nspawn
		// filters out, and capabilities nspawn drops.
		args = append(args,
			"--bind="+filepath.Join(h.stateDir(), "docker")+":/var/lib/docker",
			"--bind="+filepath.Join(h.stateDir(), "containerd")+":/var/lib/containerd",
			"--system-call-filter=add_key keyctl request_key bpf",
			"--capability=all")
	}
	return args
}

// waitRunning finds the host's systemd and waits until `systemctl is-system-running` says running or
// degraded (the boot transaction is over). It returns the leader and that state.
func (h *Host) waitRunning(ctx context.Context, nspawn int, done <-chan struct{}, consolePath string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	leader, state := 0, ""
	for {
		// nspawn's first child is a short-lived helper in our PID namespace, and a helper can even sit
		// in the new PID namespace for a moment: look for systemd in a PID namespace of its own, and
		// look again whenever the process found has gone.
		if leader == 0 || !running(leader) {
			leader = findLeader(nspawn)
		}
		if leader != 0 {
			out, _ := nsenter(ctx, leader, "systemctl", "is-system-running") // exits non-zero until running
			switch state = strings.TrimSpace(string(out)); state {
			case "running", "degraded":
				return leader, state, nil
			}
		}
		select {
		case <-done:
			return 0, "", fmt.Errorf("nspawn exited during boot; end of %s:\n%s", consolePath, tail(consolePath, 3000))
		case <-ctx.Done():
			return 0, "", fmt.Errorf("wait for systemd (leader %d, state %q): %w; end of %s:\n%s",
				leader, state, ctx.Err(), consolePath, tail(consolePath, 3000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findLeader returns the child of nspawn that runs systemd in a PID namespace other than ours, or 0.
func findLeader(nspawn int) int {
	for _, c := range children(nspawn) {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(c) + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "systemd" &&
			!sameNS("/proc/"+strconv.Itoa(c)+"/ns/pid", "/proc/self/ns/pid") {
			return c
		}
	}
	return 0
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	f, err := procStat(pid)
	return err == nil && f[0] != "Z"
}

// checkMachineID guards against the root file system handing every host the same machine-id.
func (h *Host) checkMachineID(leader int) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(leader) + "/root/etc/machine-id")
	if err != nil {
		return fmt.Errorf("read machine-id: %w", err)
	}
	if got := strings.TrimSpace(string(b)); got != h.MachineID {
		return fmt.Errorf("machine-id is %q, want %q", got, h.MachineID)
	}
	return nil
}

// wait reaps nspawn, then makes sure the whole host is gone: no process left in its cgroups, its link
// down (nothing answers for its address), no records. It closes done when finished.
func (h *Host) wait(cmd *exec.Cmd, done chan struct{}) {
	defer close(done)
	err := cmd.Wait()
	h.mu.Lock()
	h.proc, h.leader = nil, 0
	rebooted := !h.halted && cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == nspawnRebooted
	h.mu.Unlock()
	h.log.Debug("nspawn exited", "err", err, "rebooted", rebooted)
	if rebooted {
		// Once this boot is cleaned up (done closed), not to race its clean-up.
		go func() {
			<-done
			h.rebootFromInside()
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	var errs []error
	errs = append(errs, setLink(ctx, h.veth(), false), killCgroups(cgroupDirs(h.Name), exitTimeout))
	errs = append(errs, os.RemoveAll(propagateDir(h.container())))
	for _, f := range []string{"nspawn.pid", "leader.pid"} {
		if err := os.Remove(filepath.Join(h.stateDir(), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Nobody to return it to: the host went down on its own or through Kill/Stop, which wait for
		// done. Teardown retries all of this.
		h.log.Warn("clean up after host exit", "err", err)
	}
}

// mountRoot mounts the host's root file system at rootDir: an overlay of the shared root file system
// below the host's disk. The disk is a tmpfs of our own, so it survives nspawn exiting at a reboot
// from inside; unless keepDisk, it is emptied first, as a reimaged machine's.
func (h *Host) mountRoot(keepDisk bool) error {
	if err := unmountUnder(h.rootDir()); err != nil {
		return err
	}
	disk := h.diskDir()
	if !keepDisk {
		if err := unmountUnder(disk); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(disk, 0o755); err != nil {
		return fmt.Errorf("host disk: %w", err)
	}
	mounted, err := mountsUnder(disk)
	if err != nil {
		return err
	}
	if !slices.Contains(mounted, disk) {
		if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("host disk: mount tmpfs on %s: %w", disk, err)
		}
	}
	upper, work := filepath.Join(disk, "upper"), filepath.Join(disk, "work")
	for _, d := range []string{upper, work, h.rootDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("host disk: %w", err)
		}
	}
	opts := "lowerdir=" + h.cfg.hostRootfsDir() + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", h.rootDir(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("host root: mount overlay on %s (%s): %w", h.rootDir(), opts, err)
	}
	return nil
}
