package hosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dockerRootfsVersion names the recipe of ensureDockerRootfs on top of the base root file system's;
// bump it whenever the recipe changes.
const dockerRootfsVersion = "1"

// dockerServiceDropIn makes the hosts' dockerd run without networking of its own: nspawn denies
// nftables, and the hosts need no container network (containers use --network none or host).
const dockerServiceDropIn = `[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none
`

// ensureDockerRootfs builds WorkDir/rootfs-docker, the base root file system plus Debian's docker.io
// with docker.service started at boot, unless a complete one of the current recipes is there. The
// caller holds the machine-wide lock and has ensured the base root file system.
func ensureDockerRootfs(ctx context.Context, cfg Config) error {
	dir := cfg.dockerRootfsDir()
	base, err := os.ReadFile(filepath.Join(cfg.rootfsDir(), rootfsMarker))
	if err != nil {
		return fmt.Errorf("build docker rootfs: %w", err)
	}
	want := "docker " + dockerRootfsVersion + "\n" + string(base)
	if b, err := os.ReadFile(filepath.Join(dir, rootfsMarker)); err == nil && string(b) == want {
		return nil
	}
	cgroups := cgroupDirs("rootfs-docker") // where a killed build's apt-get may still run
	tmp, err := startBuild(cfg, dir, cgroups)
	if err != nil {
		return fmt.Errorf("build docker rootfs: %w", err)
	}
	start := time.Now()
	logPath := filepath.Join(cfg.WorkDir, "rootfs-docker.log")
	cfg.Log.Info("building host root file system with docker.io", "dir", dir, "log", logPath)
	if err := buildDockerRootfs(ctx, cfg, tmp, logPath, cgroups); err != nil {
		return errors.Join(fmt.Errorf("build docker rootfs: %w", err), removeTree(tmp))
	}
	if err := os.WriteFile(filepath.Join(tmp, rootfsMarker), []byte(want), 0o644); err != nil {
		return errors.Join(fmt.Errorf("build docker rootfs: %w", err), removeTree(tmp))
	}
	if err := replaceTree(tmp, dir); err != nil {
		return fmt.Errorf("build docker rootfs: %w", err)
	}
	cfg.Log.Info("docker root file system ready", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// buildDockerRootfs copies the base root file system into tmp and installs docker.io there with
// apt-get in a chroot, as the recipe in shared/harness does.
func buildDockerRootfs(ctx context.Context, cfg Config, tmp, logPath string, cgroups []string) error {
	if _, err := run(ctx, "cp", "-a", "--reflink=auto", cfg.rootfsDir()+"/.", tmp+"/"); err != nil {
		return err
	}
	// apt-get inside needs a resolver (debootstrap copies the machine's, but hosts need none), and
	// the packages' maintainer scripts must start nothing in the chroot (removed again below).
	if _, err := os.Stat(filepath.Join(tmp, "etc/resolv.conf")); err != nil {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			if err := os.WriteFile(filepath.Join(tmp, "etc/resolv.conf"), b, 0o644); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, policyRCD), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("proc", filepath.Join(tmp, "proc"), "proc", 0, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	err := chrootApt(ctx, tmp, logPath, cgroups)
	// Unmounted whatever happened: removeTree refuses a tree with mounts inside.
	if uerr := syscall.Unmount(filepath.Join(tmp, "proc"), syscall.MNT_DETACH); uerr != nil && err == nil {
		err = fmt.Errorf("unmount proc: %w", uerr)
	}
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(tmp, policyRCD)); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(tmp, "var/lib/apt/lists")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tmp, "var/lib/apt/lists/partial"), 0o755); err != nil {
		return err
	}
	dropIn := filepath.Join(tmp, "etc/systemd/system/docker.service.d")
	if err := os.MkdirAll(dropIn, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dropIn, "fleet-hosts.conf"), []byte(dockerServiceDropIn), 0o644); err != nil {
		return err
	}
	// Started at boot, so a host is up once its dockerd is (docker.service is Type=notify), also
	// after Restart, like a real machine's.
	wants := filepath.Join(tmp, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	link := filepath.Join(wants, "docker.service")
	if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
		return os.Symlink("/lib/systemd/system/docker.service", link)
	}
	return nil
}

// chrootApt runs apt-get update and install docker.io inside root, in cgroups of its own so that a
// cancelled or killed build leaves nothing running.
func chrootApt(ctx context.Context, root, logPath string, cgroups []string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	script := "apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io"
	cmd, err := commandInCgroups(cgroups, []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"},
		"chroot", root, "/bin/sh", "-c", script)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
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
		return fmt.Errorf("chroot %s: %w; end of %s:\n%s", strings.TrimSpace(script), err, logPath, tail(logPath, 2000))
	}
	return killCgroups(cgroups, exitTimeout)
}
