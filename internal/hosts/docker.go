package hosts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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

// dockerCLI is Debian's docker.io client, bind-mounted into every host. Not whatever "docker" comes
// first in PATH: a newer static CLI in /usr/local/bin may shadow it, and it must match the daemon.
const dockerCLI = "/usr/bin/docker"

// dockerd is the one Docker daemon shared by all hosts. It runs with its own data and exec roots
// under state/docker, its own containerd namespace, no networking (no bridge, iptables or
// forwarding: containers use --network none or the host's), and puts containers' cgroups under
// fleet-hosts/docker so a later Cleanup finds them even if the daemon is gone.
type dockerd struct {
	dir    string
	socket string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the daemon has exited and been reaped
	http   *http.Client
}

// startDockerd starts the daemon without waiting for it; see ready.
func startDockerd(dir string) (*dockerd, error) {
	d := &dockerd{dir: dir, socket: filepath.Join(dir, "docker.sock"), done: make(chan struct{})}
	d.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.socket)
		},
	}}
	if len(d.socket) > 100 { // sun_path is 108 bytes, with a NUL; containerd's sockets are longer still
		return nil, fmt.Errorf("start dockerd: socket path %s too long: shorten WorkDir", d.socket)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	// An empty configuration: the machine's /etc/docker/daemon.json must not change our daemon.
	config := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	defer logf.Close()
	cmd, err := commandInCgroups(cgroupDirs("dockerd"), nil, "dockerd",
		"--config-file", config,
		"--data-root", filepath.Join(dir, "root"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "exec", "dockerd.pid"),
		"-H", "unix://"+d.socket,
		"--containerd-namespace", cgroupName,
		"--containerd-plugins-namespace", cgroupName+"-plugins",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", "/"+cgroupName+"/docker",
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--userland-proxy=false",
	)
	if err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d.cmd = cmd
	go func() {
		_ = cmd.Wait() // the exit status of a daemon we stop ourselves says nothing
		close(d.done)
	}()
	if err := writePIDRecord(filepath.Join(dir, "dockerd.pid"), cmd.Process.Pid); err != nil {
		return d, fmt.Errorf("start dockerd: %w", err)
	}
	return d, nil
}

// ready waits until the daemon answers on its socket, or ctx ends, or it dies.
func (d *dockerd) ready(ctx context.Context) error {
	for {
		if err := d.api(ctx, http.MethodGet, "/_ping", nil); err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited at start-up: %s", tail(filepath.Join(d.dir, "dockerd.log"), 2000))
		case <-ctx.Done():
			return fmt.Errorf("wait for dockerd: %w; end of its log:\n%s", ctx.Err(), tail(filepath.Join(d.dir, "dockerd.log"), 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// api calls the Docker Engine API and decodes a JSON answer into out unless out is nil.
func (d *dockerd) api(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("docker %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// stop removes all containers and stops the daemon, killing it if it lingers past ctx. What survives
// is killed through the cgroups by teardown.
func (d *dockerd) stop(ctx context.Context) error {
	select {
	case <-d.done:
		return nil // died at start-up, which was reported then
	default:
	}
	var list []struct{ ID string }
	err := d.api(ctx, http.MethodGet, "/containers/json?all=1", &list)
	for _, c := range list {
		if e := d.api(ctx, http.MethodDelete, "/containers/"+url.PathEscape(c.ID)+"?force=1&v=1", nil); e != nil && err == nil {
			err = e
		}
	}
	d.http.CloseIdleConnections()
	_ = d.cmd.Process.Signal(syscall.SIGTERM) // exited already is fine
	select {
	case <-d.done:
	case <-ctx.Done():
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if err != nil {
		return fmt.Errorf("stop dockerd: remove containers: %w", err)
	}
	return nil
}

// image is a Docker image built with BuildImage: its tag and a copy of its build context.
type image struct {
	tag, dir string
}

// BuildImage builds the Docker image tag from the build context dir (the classic builder: no BuildKit,
// no registry needed for a FROM scratch image). With Config.Docker it builds it once, in the shared
// dockerd. With Config.DockerInHost it builds it in the dockerd of every running host, and of every
// host AddHost boots later (from a copy of dir it keeps). It returns ErrNoDocker for a cluster
// without Docker.
func (c *Cluster) BuildImage(ctx context.Context, tag, dir string) error {
	switch {
	case c.docker != nil:
		cmd := exec.CommandContext(ctx, dockerCLI, "-H", "unix://"+c.docker.socket, "build", "-q", "-t", tag, dir)
		cmd.Env = []string{machinePath, "DOCKER_BUILDKIT=0", "HOME=" + c.docker.dir}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build image %s from %s: %w: %s", tag, dir, err, out)
		}
		return nil
	case c.cfg.DockerInHost:
		c.imagesMu.Lock()
		keep := filepath.Join(c.cfg.stateDir(), "images", strconv.Itoa(len(c.images)))
		c.images = append(c.images, image{tag: tag, dir: keep})
		c.imagesMu.Unlock()
		if err := os.MkdirAll(keep, 0o755); err != nil {
			return fmt.Errorf("build image %s: %w", tag, err)
		}
		if _, err := run(ctx, "cp", "-a", dir+"/.", keep+"/"); err != nil {
			return fmt.Errorf("build image %s: %w", tag, err)
		}
		var wg sync.WaitGroup
		hosts := c.Hosts()
		errs := make([]error, len(hosts))
		for i, h := range hosts {
			if h.Leader() != 0 {
				wg.Go(func() { errs[i] = h.buildImage(ctx, tag, keep) })
			}
		}
		wg.Wait()
		return errors.Join(errs...)
	default:
		return ErrNoDocker
	}
}

// buildImagesOn builds every image built so far into h's own dockerd (Config.DockerInHost).
func (c *Cluster) buildImagesOn(ctx context.Context, h *Host) error {
	c.imagesMu.Lock()
	images := slices.Clone(c.images)
	c.imagesMu.Unlock()
	for _, im := range images {
		if err := h.buildImage(ctx, im.tag, im.dir); err != nil {
			return err
		}
	}
	return nil
}

// buildImage copies build context dir into the host and builds image tag there with the host's
// dockerd.
func (h *Host) buildImage(ctx context.Context, tag, dir string) error {
	inside := "/var/tmp/fleet-hosts-image-" + strings.NewReplacer("/", "-", ":", "-").Replace(tag)
	if err := os.MkdirAll(h.Path(inside), 0o755); err != nil {
		return fmt.Errorf("build image %s on %s: %w", tag, h.Name, err)
	}
	if _, err := run(ctx, "cp", "-a", dir+"/.", h.Path(inside)+"/"); err != nil {
		return fmt.Errorf("build image %s on %s: %w", tag, h.Name, err)
	}
	if _, err := h.Exec(ctx, "env", "DOCKER_BUILDKIT=0", dockerCLI, "build", "-q", "-t", tag, inside); err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	return nil
}
