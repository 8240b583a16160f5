package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// Defaults of the global flags.
const (
	DefaultDriver         = driverAPI
	DefaultEtcdEndpoint   = "http://127.0.0.1:2379"
	DefaultRequestTimeout = 3 * time.Second

	driverAPI  = "api"
	driverEtcd = "etcd"
)

// Exit codes ExitCode returns.
const (
	ExitOK     = 0
	ExitFailed = 1 // the operation failed
	ExitUsage  = 2 // bad usage or a bad argument
)

// Option configures NewCommand.
type Option func(*app)

// WithVersion sets the version `fleetctl version` prints (default "dev").
func WithVersion(v string) Option {
	return func(a *app) {
		if v != "" {
			a.version = v
		}
	}
}

// app is one fleetctl invocation: its I/O, environment and global flags.
type app struct {
	stdout, stderr io.Writer
	env            func(string) string
	version        string

	endpoint string
	driver   choice
	timeout  seconds
	prefix   string
	// pollInterval is how often blocking commands poll fleet.
	pollInterval time.Duration
}

// NewCommand returns the fleetctl root command. Output goes to stdout,
// warnings and help to stderr; env looks up environment variables (os.Getenv
// in main). Run it with ExecuteContext: cancelling the context ends any
// blocking wait. Errors are returned, not printed; see ExitCode.
func NewCommand(stdout, stderr io.Writer, env func(string) string, opts ...Option) *cobra.Command {
	a := &app{
		stdout:       stdout,
		stderr:       stderr,
		env:          env,
		version:      "dev",
		driver:       choice{value: DefaultDriver, allowed: []string{driverAPI, driverEtcd}},
		timeout:      seconds(DefaultRequestTimeout),
		prefix:       registry.DefaultPrefix,
		pollInterval: 100 * time.Millisecond,
	}
	for _, o := range opts {
		o(a)
	}
	root := &cobra.Command{
		Use:   "fleetctl",
		Short: "fleetctl is a command-line interface to fleet, the cluster-wide systemd unit scheduler",
		// Extra arguments are an unknown command: reported as bad usage
		// rather than by cobra's untyped error.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q; run 'fleetctl help' for the list of commands", args[0])
			}
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.applyEnv(cmd.Flags()) },
		SilenceErrors:     true,
		SilenceUsage:      true,
		Version:           a.version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("fleetctl version {{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	pf := root.PersistentFlags()
	pf.StringVar(&a.endpoint, "endpoint", "", fmt.Sprintf("fleetd API endpoint, unix:///path or http://host:port (default %s); with --driver=etcd, comma-separated etcd URLs (default %s) [$FLEETCTL_ENDPOINT]", api.DefaultEndpoint, DefaultEtcdEndpoint))
	pf.Var(&a.driver, "driver", "how to reach fleet: api (fleetd's HTTP API) or etcd (etcd directly) [$FLEETCTL_DRIVER]")
	pf.Var(&a.timeout, "request-timeout", "time allowed for a single request, as a duration (5s) or seconds (1.5) [$FLEETCTL_REQUEST_TIMEOUT]")
	pf.StringVar(&a.prefix, "etcd-key-prefix", registry.DefaultPrefix, "etcd key prefix of fleet's data, with --driver=etcd [$FLEETCTL_ETCD_KEY_PREFIX]")

	root.AddCommand(
		a.submitCommand(),
		a.loadCommand(),
		a.startCommand(),
		a.stopCommand(),
		a.unloadCommand(),
		a.destroyCommand(),
		a.catCommand(),
		a.statusCommand(),
		a.journalCommand(),
		a.listMachinesCommand(),
		a.listUnitsCommand(),
		a.listUnitFilesCommand(),
		a.versionCommand(),
	)
	return root
}

// applyEnv sets global flags not given on the command line from the
// environment.
func (a *app) applyEnv(fs *pflag.FlagSet) error {
	envFlags := [...]struct{ flag, env string }{
		{"endpoint", "FLEETCTL_ENDPOINT"},
		{"driver", "FLEETCTL_DRIVER"},
		{"request-timeout", "FLEETCTL_REQUEST_TIMEOUT"},
		{"etcd-key-prefix", "FLEETCTL_ETCD_KEY_PREFIX"},
	}
	for _, ef := range envFlags {
		f := fs.Lookup(ef.flag)
		if f == nil || f.Changed {
			continue
		}
		v := a.env(ef.env)
		if v == "" {
			continue
		}
		if err := f.Value.Set(v); err != nil {
			return usageErrorf("%s=%q: %v", ef.env, v, err)
		}
	}
	return nil
}

// client connects to fleet as the global flags say. The returned func
// releases the connection.
func (a *app) client() (api.Client, func(), error) {
	timeout := time.Duration(a.timeout)
	switch a.driver.value {
	case driverEtcd:
		eps := a.etcdEndpoints()
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   eps,
			DialTimeout: timeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, nil, usageErrorf("etcd endpoints %s: %v", strings.Join(eps, ","), err)
		}
		reg := registry.New(cli, registry.WithPrefix(a.prefix), registry.WithRequestTimeout(timeout))
		return api.NewRegistryClient(reg), func() { _ = cli.Close() }, nil
	default:
		ep := a.endpoint
		if ep == "" {
			ep = api.DefaultEndpoint
		}
		c, err := api.NewHTTPClient(ep, timeout)
		if err != nil {
			return nil, nil, usageError{err}
		}
		return c, func() {}, nil
	}
}

func (a *app) etcdEndpoints() []string {
	if a.endpoint == "" {
		return []string{DefaultEtcdEndpoint}
	}
	var eps []string
	for _, e := range strings.Split(a.endpoint, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// run adapts a command body that needs a client to cobra's RunE.
func (a *app) run(fn func(ctx context.Context, c api.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, release, err := a.client()
		if err != nil {
			return err
		}
		defer release()
		return a.explain(fn(cmd.Context(), c, args))
	}
}

// explain adds what to check to errors whose cause is not obvious: with the
// etcd driver an unreachable etcd shows up only as a deadline.
func (a *app) explain(err error) error {
	if err == nil || a.driver.value != driverEtcd || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("cannot reach etcd at %s within %s: %w (is etcd running? set --endpoint or FLEETCTL_ENDPOINT)",
		strings.Join(a.etcdEndpoints(), ","), time.Duration(a.timeout), err)
}

// usageError marks bad usage or a bad argument (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// usageArgs wraps a cobra argument check so that its failures are usage
// errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErrorf("%s: %v; see 'fleetctl help %s'", cmd.Name(), err, cmd.Name())
		}
		return nil
	}
}

// ExitCode returns the process exit code for an error of a fleetctl command:
// 0 for nil, 2 for bad usage or an argument fleet refuses (api.ErrInvalid),
// 1 for any other failure.
func ExitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue), errors.Is(err, api.ErrInvalid):
		return ExitUsage
	}
	return ExitFailed
}

// IsUsage reports whether err is bad usage (worth pointing at the help).
func IsUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// choice is a string flag limited to a set of values.
type choice struct {
	value   string
	allowed []string
}

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return "string" }
func (c *choice) Set(v string) error {
	for _, a := range c.allowed {
		if v == a {
			c.value = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(c.allowed, ", "))
}

// seconds is a duration flag that also takes fleet's plain seconds ("1.5").
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }
func (s *seconds) Type() string   { return "duration" }
func (s *seconds) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return fmt.Errorf("%q is neither a duration (3s) nor a number of seconds", v)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return fmt.Errorf("%q is not positive", v)
	}
	*s = seconds(d)
	return nil
}
