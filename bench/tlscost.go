package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// TLSCostConfig says how the cost of security is measured.
type TLSCostConfig struct {
	// LatencyRuns is how many units fleetctl starts one after another.
	LatencyRuns int
	// Units is how many units run while list-units is timed.
	Units int
	// ListRuns is how many times list-units is timed.
	ListRuns int
	// ModuleRoot is the fleet module's root, where fleetd is built from.
	ModuleRoot string
}

// TLSFigures are what a user of one cluster sees through fleetctl on the
// machine (an operator's workstation) against a fleetd's TCP API.
type TLSFigures struct {
	Secure             bool
	StartP50, StartP90 time.Duration // fleetctl start UNIT (blocks until active)
	ListP50, ListP90   time.Duration // fleetctl list-units with Units running
	Units              int
}

// RunTLSCost boots the same 3 real hosts with a 3-member etcd twice, one
// after the other: plain (HTTP API with api_insecure, etcd without TLS) and
// secured (TLS API with a token, etcd over TLS with client certificates),
// and measures start-to-active and list-units with fleetctl in both.
func RunTLSCost(ctx context.Context, cfg TLSCostConfig, log *slog.Logger) ([]TLSFigures, error) {
	binDir, err := hostBinaries(ctx, cfg.ModuleRoot, "TLS cost", log)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	var out []TLSFigures
	for _, secure := range []bool{false, true} {
		f, err := tlsCostOnce(ctx, cfg, binDir, secure, log)
		if err != nil {
			return out, fmt.Errorf("secure=%v: %w", secure, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func tlsCostOnce(ctx context.Context, cfg TLSCostConfig, binDir string, secure bool, log *slog.Logger) (TLSFigures, error) {
	f := TLSFigures{Secure: secure, Units: cfg.Units}
	log.Info("booting 3 hosts and a 3-member etcd", "secure", secure)
	c, closeHosts, err := bootHosts(ctx, platform.Options{Hosts: hosts.Config{BinDir: binDir, Etcd: 3, Log: log}, N: 3, Insecure: !secure}, log)
	defer closeHosts()
	if err != nil {
		return f, err
	}
	h1 := c.Hosts()[0]
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + binDir, "FLEETCTL_ENDPOINT=http://" + h1.IP + ":" + platform.APIPort}
	if secure {
		env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + binDir, "FLEETCTL_ENDPOINT=https://" + h1.IP + ":" + platform.APIPort,
			"FLEETCTL_CA_FILE=" + c.Security.CAFile, "FLEETCTL_TOKEN=" + c.Security.AdminToken}
	}
	fleetctl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "fleetctl"), args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("fleetctl %v: %w: %s", args, err, out)
		}
		return nil
	}
	dir, err := os.MkdirTemp("", "fleet-bench-units")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)

	var starts []time.Duration
	for i := range cfg.LatencyRuns {
		path := filepath.Join(dir, fmt.Sprintf("lat-%d.service", i))
		if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep infinity\n"), 0o644); err != nil {
			return f, err
		}
		t := time.Now()
		if err := fleetctl("start", path); err != nil {
			return f, err
		}
		starts = append(starts, time.Since(t))
	}
	f.StartP50, f.StartP90 = pct(starts, 50), pct(starts, 90)

	a := c.API(h1)
	names := make([]string, cfg.Units)
	for i := range names {
		names[i] = fmt.Sprintf("bulk-%d.service", i)
	}
	log.Info("starting units for list-units", "units", cfg.Units)
	body := `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep infinity"}]}`
	if err := forEach(names, 16, func(n string) error {
		code, b, err := a.Do(ctx, http.MethodPut, "/units/"+n, body)
		if err != nil {
			return err
		}
		if code != http.StatusCreated {
			return fmt.Errorf("PUT %s: %d %s", n, code, b)
		}
		return nil
	}); err != nil {
		return f, err
	}
	want := cfg.Units + cfg.LatencyRuns
	if err := platform.Wait(ctx, 5*time.Minute, func() bool {
		ss, err := a.States(ctx)
		if err != nil {
			return false
		}
		active := 0
		for _, s := range ss {
			if s.SystemdActiveState == "active" {
				active++
			}
		}
		return active >= want
	}); err != nil {
		return f, fmt.Errorf("wait for %d active units: %w", want, err)
	}
	var lists []time.Duration
	for range cfg.ListRuns {
		t := time.Now()
		if err := fleetctl("list-units", "--no-legend"); err != nil {
			return f, err
		}
		lists = append(lists, time.Since(t))
	}
	f.ListP50, f.ListP90 = pct(lists, 50), pct(lists, 90)
	return f, nil
}

// TLSSection marks the TLS cost figures in BENCHMARKS.md.
const TLSSection = "tls-cost"

// TLSMarkdown renders the figures of RunTLSCost side by side.
func TLSMarkdown(env Env, fs []TLSFigures) string {
	var b bytes.Buffer
	b.WriteString("## Cost of security (TLS and authentication)\n\n")
	b.WriteString("The same 3 real hosts and 3-member etcd, booted twice one after the other: plain (HTTP API with\n" +
		"`api_insecure=true`, etcd without TLS) and secured (TLS API with a bearer token, etcd over TLS with client\n" +
		"certificates, fleetd to fleetd over TLS). fleetctl runs on the machine against h1's TCP API, as from an\n" +
		"operator's workstation; every run is a new process, so every run pays a TLS handshake.\n\n")
	env.markdown(&b)
	b.WriteString("| | plain | secured |\n|---|---|---|\n")
	if len(fs) == 2 {
		p, s := fs[0], fs[1]
		fmt.Fprintf(&b, "| `fleetctl start UNIT` to active: p50 / p90 | %s / %s | %s / %s |\n", ms(p.StartP50), ms(p.StartP90), ms(s.StartP50), ms(s.StartP90))
		fmt.Fprintf(&b, "| `fleetctl list-units`, %d units running: p50 / p90 | %s / %s | %s / %s |\n", p.Units, ms(p.ListP50), ms(p.ListP90), ms(s.ListP50), ms(s.ListP90))
	}
	return b.String()
}
