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
		return hosts.Cleanup(ctx, cfg)
	case "up":
		return up(ctx, cfg, *n, bin, *unitFile, *dist)
	}
	return fmt.Errorf("unknown command %q: want up or down", cmd)
}

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
	c, err := platform.Start(ctx, platform.Options{Hosts: cfg, N: n, DistDir: dist})
	if err != nil {
		return err
	}
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
	fmt.Printf(`
The cluster stays up. Run fleetctl inside a host, e.g.:
  nsenter -t $(cut -d' ' -f1 %[1]s/state/h1/leader.pid) -a fleetctl list-units
Tear it down with: make demo-down
`, hosts.DefaultWorkDir)
	step("demo done")
	return nil
}
