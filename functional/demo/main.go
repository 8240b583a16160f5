// Command demo brings up a local fleet cluster of real hosts (systemd-nspawn
// containers booting systemd, each with its own IP), runs fleetd in each as
// fleet.service, starts a unit that runs a Docker container, and prints what
// fleetctl shows. `demo down` tears it all down. Run as root; see
// `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of hosts")
	binDir := fs.String("bin", "bin", "directory with static fleetd, fleetctl and hello binaries")
	unitFile := fs.String("unit", "examples/hello.service", "unit to start")
	dist := fs.String("dist", "dist", "directory of fleet.service and fleet.socket to install in the hosts")
	if len(args) == 0 {
		return fmt.Errorf("usage: demo up [-n N] [-bin DIR] [-unit FILE] | demo down")
	}
	cmd := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bin, err := filepath.Abs(*binDir)
	if err != nil {
		return err
	}
	cfg := hosts.Config{BinDir: bin, Docker: true, Log: log}
	switch cmd {
	case "down":
		if err := hosts.Cleanup(ctx, cfg); err != nil {
			return err
		}
		return os.RemoveAll(pkiDir)
	case "up":
		return up(ctx, cfg, *n, bin, *unitFile, *dist)
	}
	return fmt.Errorf("unknown command %q: want up or down", cmd)
}

// pkiDir keeps the demo cluster's CA, certificates and tokens while it runs.
var pkiDir = filepath.Join(hosts.DefaultWorkDir, "demo-pki")

func up(ctx context.Context, cfg hosts.Config, n int, bin, unitFile, dist string) error {
	t0 := time.Now()
	step := func(format string, a ...any) {
		fmt.Printf("[%6.2fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, a...))
	}
	for _, b := range []string{"fleetd", "fleetctl", "hello"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s in %s: run `make build` (and build functional/fixtures/hello)", b, bin)
		}
	}
	body, err := os.ReadFile(unitFile)
	if err != nil {
		return fmt.Errorf("read example unit: %w", err)
	}
	step("booting %d hosts (the first run builds a Debian rootfs with debootstrap, about a minute)", n)
	c, err := platform.Start(ctx, platform.Options{Hosts: cfg, N: n, DistDir: dist, PKIDir: pkiDir})
	if err != nil {
		return err
	}
	step("secured: a fresh CA in %s; every fleetd serves its API over TLS (port %s) with tokens and client certificates; h1's embedded etcd serves TLS and requires client certificates", pkiDir, platform.APIPort)
	for _, h := range c.Hosts() {
		step("%s: %s machine-id %s, fleetd running as fleet.service", h.Name, h.IP, h.MachineID)
	}
	if err := c.BuildHelloImage(ctx, bin); err != nil {
		return err
	}
	step("docker image fleet/hello:latest built locally")
	h1 := c.Hosts()[0]
	name := filepath.Base(unitFile)
	if err := os.WriteFile(h1.Path("/root/"+name), body, 0o644); err != nil {
		return err
	}
	show := func(args ...string) error {
		fmt.Printf("\n$ fleetctl %s\n", strings.Join(args, " "))
		out, err := c.Fleetctl(ctx, h1, args...)
		fmt.Print(out)
		return err
	}
	start := time.Now()
	if err := show("start", "/root/"+name); err != nil {
		return err
	}
	fmt.Printf("(started and active in %.0f ms)\n", float64(time.Since(start).Microseconds())/1000)
	for _, args := range [][]string{{"list-machines"}, {"list-units"}, {"list-unit-files"}} {
		if err := show(args...); err != nil {
			return err
		}
	}
	// systemd reports the unit active once the docker client runs; the
	// container itself appears a moment later.
	var out []byte
	err = platform.Wait(ctx, 20*time.Second, func() bool {
		out, err = h1.Exec(ctx, "docker", "ps", "--format", "{{.Names}}\t{{.Image}}\t{{.Status}}")
		return err == nil && strings.Contains(string(out), "fleet/hello")
	})
	fmt.Printf("\n$ docker ps\n%s", out)
	if err != nil {
		return fmt.Errorf("the container did not appear: %w", err)
	}
	// An operator's workstation: fleetctl on this machine, over TLS with a token.
	remote := "https://" + h1.IP + ":" + platform.APIPort
	ws := exec.CommandContext(ctx, filepath.Join(bin, "fleetctl"), "--endpoint", remote,
		"--ca-file", c.Security.CAFile, "--token-file", c.Security.AdminTokenFile, "list-machines")
	fmt.Printf("\n$ %s\n", strings.Join(ws.Args, " "))
	out, err = ws.CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		return fmt.Errorf("fleetctl over TLS with the admin token: %w", err)
	}
	noCreds := exec.CommandContext(ctx, filepath.Join(bin, "fleetctl"), "--endpoint", remote, "--ca-file", c.Security.CAFile, "list-units")
	fmt.Printf("\n$ %s   # no token\n", strings.Join(noCreds.Args, " "))
	out, err = noCreds.CombinedOutput()
	fmt.Print(string(out))
	if err == nil {
		return fmt.Errorf("fleetctl without credentials was let in")
	}
	fmt.Printf(`
The cluster stays up, secured. From this machine (tokens: admin.token, read.token):
  export FLEETCTL_ENDPOINT=%[2]s FLEETCTL_CA_FILE=%[1]s/ca.pem FLEETCTL_TOKEN_FILE=%[1]s/admin.token
  %[3]s/fleetctl list-units
The dashboard: %[2]s/ui/ (the certificate is signed by %[1]s/ca.pem; sign in with the
  contents of admin.token, or read.token to look only).
Inside a host, as root, fleetctl uses fleetd's unix socket and needs no credentials:
  nsenter -t $(cut -d' ' -f1 %[4]s/state/h1/leader.pid) -a fleetctl list-units
Tear it down with: make demo-down
`, pkiDir, remote, bin, hosts.DefaultWorkDir)
	step("demo done")
	return nil
}
