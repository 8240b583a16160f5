package hosts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// rootfsVersion names the build recipe of ensureRootfs below. A root file system built by another
// version is rebuilt: bump it whenever the recipe changes.
const rootfsVersion = "1"

// rootfsMarker, inside the root file system, records the recipe version it was built with. It is
// written last, so a root file system without it is incomplete.
const rootfsMarker = "etc/fleet-hosts-rootfs"

// debootstrapInclude are the packages of the hosts' root file system on top of Debian's minbase.
const debootstrapInclude = "systemd,systemd-sysv,dbus,iproute2,procps,ca-certificates"

// maskedUnits are masked in the root file system: gettys have no terminal to serve, and timers would
// only add noise (and load, times the number of hosts) to tests.
var maskedUnits = []string{
	"console-getty.service", "getty@.service", "serial-getty@.service", "getty.target",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
	"e2scrub_reap.service", "fstrim.timer", "systemd-pstore.service",
}

// machinePackages returns the Debian packages the machine needs to run cfg's hosts.
func machinePackages(cfg Config) []string {
	pkgs := []string{"systemd-container", "debootstrap", "iproute2", "util-linux"}
	if cfg.Docker {
		pkgs = append(pkgs, "docker.io")
	}
	if cfg.Etcd > 0 {
		pkgs = append(pkgs, "etcd-server")
	}
	return pkgs
}

// EnsureRootfs makes the hosts' root file system ready in WorkDir/rootfs: it installs the Debian
// packages the machine lacks (systemd-container, debootstrap, iproute2, docker.io when cfg.Docker,
// etcd-server when cfg.Etcd), then, unless a complete root file system of the current recipe is there,
// builds one with debootstrap (Debian 12 minbase with systemd, from the mirror this machine's apt uses;
// about 35 s and 260 MB). With cfg.DockerInHost it also makes WorkDir/rootfs-docker: a copy of it with
// Debian's docker.io installed (about 30 s and 200 MB more, once).
//
// The build happens in a temporary directory renamed into place at the end, so a build killed half-way
// is never used; its leftovers are removed by the next call. The root file system is prepared for
// many hosts: an empty /etc/machine-id (each host gets its own from nspawn --uuid), no /etc/hostname
// (each keeps the one nspawn gives it), and gettys and timers masked.
//
// EnsureRootfs takes the machine-wide lock (LockPath) and so waits, until ctx ends, for a running
// cluster to close.
// Start calls it itself.
func EnsureRootfs(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("ensure rootfs: %w", err)
	}
	lock, err := lockMachine(ctx, cfg.Log)
	if err != nil {
		return err
	}
	defer lock.Close()
	return ensureRootfs(ctx, cfg)
}

// ensureRootfs is EnsureRootfs for a caller holding the machine-wide lock.
func ensureRootfs(ctx context.Context, cfg Config) error {
	if err := ensurePackages(ctx, cfg.Log, machinePackages(cfg)); err != nil {
		return err
	}
	if err := ensureBaseRootfs(ctx, cfg); err != nil {
		return err
	}
	if cfg.DockerInHost {
		return ensureDockerRootfs(ctx, cfg)
	}
	return nil
}

// ensureBaseRootfs builds WorkDir/rootfs unless it is complete and of the current recipe.
func ensureBaseRootfs(ctx context.Context, cfg Config) error {
	dir := cfg.rootfsDir()
	if b, err := os.ReadFile(filepath.Join(dir, rootfsMarker)); err == nil && strings.HasPrefix(string(b), "version "+rootfsVersion+"\n") {
		return nil
	}
	// Leftovers of killed builds: a debootstrap that may still run, and /proc and /sys mounted inside.
	tmp, err := startBuild(cfg, dir, cgroupDirs("debootstrap"))
	if err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	mirror := debianMirror()
	logPath := filepath.Join(cfg.WorkDir, "debootstrap.log")
	cfg.Log.Info("building host root file system with debootstrap", "dir", dir, "mirror", mirror, "log", logPath)
	start := time.Now()
	if err := debootstrap(ctx, tmp, mirror, logPath); err != nil {
		_ = removeTree(tmp) // best effort; the next call retries
		return err
	}
	if err := prepareRootfs(tmp, mirror); err != nil {
		_ = removeTree(tmp)
		return fmt.Errorf("build rootfs: %w", err)
	}
	if err := replaceTree(tmp, dir); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	cfg.Log.Info("host root file system ready", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// startBuild prepares the build of root file system dir: it kills what a
// killed earlier build left running in cgroups, removes that build's
// temporary trees, and returns a new temporary directory beside dir.
func startBuild(cfg Config, dir string, cgroups []string) (string, error) {
	if err := killCgroups(cgroups, exitTimeout); err != nil {
		return "", err
	}
	for _, old := range sortedGlob(dir + ".tmp*") {
		if err := removeTree(old); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(cfg.WorkDir, filepath.Base(dir)+".tmp")
	if err != nil {
		return "", err
	}
	// MkdirTemp makes it 0700, and this becomes the hosts' "/".
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", errors.Join(err, removeTree(tmp))
	}
	return tmp, nil
}

// replaceTree puts the finished build tmp in place of dir. An older recipe's
// tree at dir is unused: the caller holds the machine-wide lock.
func replaceTree(tmp, dir string) error {
	if err := removeTree(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func debootstrap(ctx context.Context, dir, mirror, logPath string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	defer logf.Close()
	// In a cgroup of its own: debootstrap is a shell script running wget, dpkg and chroot, and all of
	// them must be stopped on cancellation, or by the next call if we were killed, before the
	// directory they write to is removed.
	cgroups := cgroupDirs("debootstrap")
	cmd, err := commandInCgroups(cgroups, []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"},
		"debootstrap", "--variant=minbase", "--include="+debootstrapInclude, "bookworm", dir, mirror)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-ctx.Done():
		err = errors.Join(ctx.Err(), killCgroups(cgroups, exitTimeout))
		<-exited
	}
	if err != nil {
		return fmt.Errorf("debootstrap bookworm from %s: %w; end of %s:\n%s", mirror, err, logPath, tail(logPath, 2000))
	}
	return killCgroups(cgroups, exitTimeout) // nothing left: removes the cgroups
}

// prepareRootfs fixes a fresh debootstrap for use by many hosts at once.
func prepareRootfs(root, mirror string) error {
	// Empty: systemd then takes the machine-id from $container_uuid, i.e. nspawn's --uuid.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	// dbus created /var/lib/dbus/machine-id during debootstrap, and systemd prefers it over
	// $container_uuid: without this symlink every host boots with the same machine-id.
	dbusID := filepath.Join(root, "var/lib/dbus/machine-id")
	if err := os.MkdirAll(filepath.Dir(dbusID), 0o755); err != nil {
		return err
	}
	if err := os.Remove(dbusID); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink("/etc/machine-id", dbusID); err != nil {
		return err
	}
	// A /etc/hostname would override the hostname nspawn gives each host.
	if err := os.Remove(filepath.Join(root, "etc/hostname")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, u := range maskedUnits {
		p := filepath.Join(root, "etc/systemd/system", u)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Symlink("/dev/null", p); err != nil {
			return err
		}
	}
	// Written last: its presence says the build completed.
	marker := fmt.Sprintf("version %s\nmirror %s\nbuilt %s\n", rootfsVersion, mirror, time.Now().UTC().Format(time.RFC3339))
	return os.WriteFile(filepath.Join(root, rootfsMarker), []byte(marker), 0o644)
}

// debianMirror returns the Debian mirror this machine's apt uses for bookworm, falling back to
// deb.debian.org.
func debianMirror() string {
	if b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		if m := mirrorFromDeb822(b, "bookworm"); m != "" {
			return m
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		if m := mirrorFromList(b, "bookworm"); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorFromDeb822 returns the first URI of a "Types: deb" stanza of a deb822 .sources file whose
// Suites include suite.
func mirrorFromDeb822(b []byte, suite string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		uris := strings.Fields(fields["uris"])
		if len(uris) == 0 || !slices.Contains(strings.Fields(fields["types"]), "deb") ||
			!slices.Contains(strings.Fields(fields["suites"]), suite) || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		return uris[0]
	}
	return ""
}

// mirrorFromList returns the URI of the first "deb" line of a one-line-style sources.list for suite.
func mirrorFromList(b []byte, suite string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
}

// policyRCD is Debian's hook asking packages' maintainer scripts not to start services: exit status
// 101 means "action forbidden", so installing etcd or docker.io starts no daemon.
const policyRCD = "/usr/sbin/policy-rc.d"

// ensurePackages installs whichever of pkgs dpkg does not list as installed.
func ensurePackages(ctx context.Context, log *slog.Logger, pkgs []string) error {
	var missing []string
	for _, p := range pkgs {
		out, _ := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", p).Output()
		if string(out) != "install ok installed" {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	log.Info("installing Debian packages", "packages", missing)
	if _, err := os.Lstat(policyRCD); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(policyRCD, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("install %v: %w", missing, err)
		}
		defer os.Remove(policyRCD)
	}
	env := []string{machinePath, "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	for _, args := range [][]string{
		{"update", "-qq"},
		append([]string{"install", "-y", "-qq"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("install %v: apt-get %s: %w: %s", missing, args[0], err, bytes.TrimSpace(out))
		}
	}
	return nil
}
