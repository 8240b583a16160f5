package fleetctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// Defaults of the global flags.
const (
	DefaultDriver         = driverAPI
	DefaultEtcdEndpoint   = "http://127.0.0.1:2379"
	DefaultRequestTimeout = 3 * time.Second
	DefaultSSHTimeout     = 10 * time.Second
	DefaultSSHUsername    = "core"
	// DefaultKnownHostsFile is relative to $HOME.
	DefaultKnownHostsFile = ".fleetctl/known_hosts"

	driverAPI  = "api"
	driverEtcd = "etcd"

	// envPrefix names the environment variable of every global flag:
	// --ssh-username is FLEETCTL_SSH_USERNAME.
	envPrefix = "FLEETCTL_"
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

// WithStdin sets the input of interactive commands (ssh, host key
// confirmation); default none.
func WithStdin(r io.Reader) Option {
	return func(a *app) { a.stdin = r }
}

// WithTerminal says whether stdout is a terminal, overriding detection:
// blocking commands then show a live progress line.
func WithTerminal(on bool) Option {
	return func(a *app) { a.terminal = &on }
}

// WithPollInterval sets how often blocking commands poll fleet (default
// 100ms).
func WithPollInterval(d time.Duration) Option {
	return func(a *app) {
		if d > 0 {
			a.pollInterval = d
		}
	}
}

// WithUnplacedGrace sets how long the engine must keep saying a unit fits
// on no machine before a blocking command gives up on it (default 3s): a
// unit started together with its MachineOf peer is briefly unplaceable.
func WithUnplacedGrace(d time.Duration) Option {
	return func(a *app) {
		if d > 0 {
			a.unplacedGrace = d
		}
	}
}

// app is one fleetctl invocation: its I/O, environment and global flags.
type app struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	env            func(string) string
	version        string
	terminal       *bool

	endpoint       string
	driver         choice
	timeout        seconds
	prefix         string
	debug          bool
	caFile         string
	certFile       string
	keyFile        string
	token          string
	tokenFile      string
	tunnel         string
	sshUsername    string
	sshTimeout     seconds
	strictHostKeys bool
	knownHostsFile string

	pollInterval  time.Duration
	unplacedGrace time.Duration
}

// exitCodesHelp documents ExitCode's codes in `fleetctl help`.
const exitCodesHelp = `Exit codes:
  0  success
  1  the operation failed
  2  bad usage or an argument fleet refuses
  3  a unit failed: systemd reports it failed on its machine
  4  no machine can run a unit: the engine says which constraint no machine meets
  5  gave up waiting for a unit (--block-attempts)
  6  fleetd, etcd or a unit's machine could not be reached
  7  a unit or machine does not exist
  8  fleetd refused the credentials (no or a wrong token or client certificate,
     or a role that may not do it), or its certificate is not trusted`

// NewCommand returns the fleetctl root command. Output goes to stdout,
// warnings and help to stderr; env looks up environment variables (os.Getenv
// in main). Run it with ExecuteContext: cancelling the context ends any
// blocking wait or stream. Errors are returned, not printed; see ExitCode.
func NewCommand(stdout, stderr io.Writer, env func(string) string, opts ...Option) *cobra.Command {
	a := &app{
		stdout:         stdout,
		stderr:         stderr,
		stdin:          strings.NewReader(""),
		env:            env,
		version:        "dev",
		driver:         choice{value: DefaultDriver, allowed: []string{driverAPI, driverEtcd}},
		timeout:        seconds(DefaultRequestTimeout),
		prefix:         registry.DefaultPrefix,
		sshUsername:    DefaultSSHUsername,
		sshTimeout:     seconds(DefaultSSHTimeout),
		strictHostKeys: true,
		pollInterval:   100 * time.Millisecond,
		unplacedGrace:  3 * time.Second,
	}
	for _, o := range opts {
		o(a)
	}
	root := &cobra.Command{
		Use:   "fleetctl",
		Short: "fleetctl is a command-line interface to fleet, the cluster-wide systemd unit scheduler",
		Long: `fleetctl is a command-line interface to fleet, the cluster-wide systemd unit
scheduler. Commands may be abbreviated to any unique prefix: "fleetctl list-m"
runs list-machines.

Every global flag can also be set in the environment as FLEETCTL_<FLAG>, in
upper case with dashes as underscores (--ssh-username: FLEETCTL_SSH_USERNAME);
a flag on the command line wins.

Version:
  ` + a.version + `

` + exitCodesHelp,
		// Extra arguments are an unknown command: reported as bad usage
		// rather than by cobra's untyped error.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.applyEnv(cmd) },
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
	pf.StringVar(&a.endpoint, "endpoint", "", fmt.Sprintf("fleetd API endpoint, unix:///path or http(s)://host:port (default %s); with --driver=etcd, comma-separated etcd URLs (default %s). An endpoint on port 2379 or 4001 selects --driver=etcd", api.DefaultEndpoint, DefaultEtcdEndpoint))
	pf.Var(&a.driver, "driver", "how to reach fleet: api (fleetd's HTTP API) or etcd (etcd directly)")
	pf.Var(&a.timeout, "request-timeout", "time allowed for a single request, as a duration (5s) or seconds (1.5)")
	pf.StringVar(&a.prefix, "etcd-key-prefix", registry.DefaultPrefix, "etcd key prefix of fleet's data, with --driver=etcd")
	pf.BoolVar(&a.debug, "debug", false, "print every request fleetctl makes to stderr")
	pf.StringVar(&a.caFile, "ca-file", "", "CA certificate file to verify an https fleetd or TLS etcd endpoint")
	pf.StringVar(&a.certFile, "cert-file", "", "client certificate file for an https fleetd or TLS etcd endpoint")
	pf.StringVar(&a.keyFile, "key-file", "", "key file of --cert-file")
	pf.StringVar(&a.token, "token", "", "API token, sent as an Authorization: Bearer header (prefer FLEETCTL_TOKEN or --token-file: a command line is visible to every user of the machine)")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the API token")
	pf.StringVar(&a.tunnel, "tunnel", "", "send every request through an SSH tunnel to this host[:port] (a cluster machine)")
	pf.StringVar(&a.sshUsername, "ssh-username", DefaultSSHUsername, "user name for SSH connections (--tunnel, ssh)")
	pf.Var(&a.sshTimeout, "ssh-timeout", "time allowed to set up an SSH connection, as a duration or seconds")
	pf.BoolVar(&a.strictHostKeys, "strict-host-key-checking", true, "verify SSH host keys against --known-hosts-file")
	pf.StringVar(&a.knownHostsFile, "known-hosts-file", "$HOME/"+DefaultKnownHostsFile, "file of known SSH host keys; unknown hosts are added after confirmation")

	// fleet's deprecated spellings, accepted so old scripts keep working.
	var experimentalAPI bool
	pf.BoolVar(&experimentalAPI, "experimental-api", true, "ignored (fleet's deprecated flag)")
	pf.StringVar(&a.keyFile, "etcd-keyfile", "", "deprecated spelling of --key-file")
	pf.StringVar(&a.certFile, "etcd-certfile", "", "deprecated spelling of --cert-file")
	pf.StringVar(&a.caFile, "etcd-cafile", "", "deprecated spelling of --ca-file")
	for _, name := range []string{"experimental-api", "etcd-keyfile", "etcd-certfile", "etcd-cafile"} {
		_ = pf.MarkHidden(name) // the names exist: this cannot fail
	}
	_ = root.RegisterFlagCompletionFunc("driver", completeWords(driverAPI, driverEtcd))

	root.AddCommand(
		a.explainCommand(),
		a.submitCommand(),
		a.loadCommand(),
		a.startCommand(),
		a.restartCommand(),
		a.stopCommand(),
		a.unloadCommand(),
		a.destroyCommand(),
		a.catCommand(),
		a.statusCommand(),
		a.journalCommand(),
		a.listMachinesCommand(),
		a.listUnitsCommand(),
		a.listUnitFilesCommand(),
		a.eventsCommand(),
		a.sshCommand(),
		a.fdForwardCommand(),
		a.completionCommand(),
		a.versionCommand(),
		a.resetEngineVersionCommand(),
		a.drainCommand(),
		a.undrainCommand(),
		a.mvCommand(),
		a.updateCommand(),
		a.rolloutCommand(),
		a.rebootCommand(),
		a.rebootStatusCommand(),
	)
	addPrefixAliases(root)
	return root
}

// addPrefixAliases lets every command be called by any prefix of its name
// that no other command shares. The aliases stay out of the help.
func addPrefixAliases(root *cobra.Command) {
	cmds := root.Commands()
	for _, c := range cmds {
		name := c.Name()
		for n := 1; n < len(name); n++ {
			p := name[:n]
			unique := true
			for _, o := range cmds {
				if o != c && strings.HasPrefix(o.Name(), p) {
					unique = false
					break
				}
			}
			if unique {
				c.Aliases = append(c.Aliases, p)
			}
		}
	}
	tmpl := strings.Replace(root.UsageTemplate(), `{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}`, "", 1)
	root.SetUsageTemplate(tmpl)
}

// unknownCommand reports a command that is not one, listing the commands it
// is a prefix of when there are several.
func unknownCommand(root *cobra.Command, name string) error {
	var matches []string
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && strings.HasPrefix(c.Name(), name) {
			matches = append(matches, c.Name())
		}
	}
	if len(matches) > 1 {
		return usageErrorf("ambiguous command %q: it could be %s", name, strings.Join(matches, ", "))
	}
	return usageErrorf("unknown command %q; run 'fleetctl help' for the list of commands", name)
}

// applyEnv sets global flags not given on the command line from their
// FLEETCTL_* variables, then picks the etcd driver for an etcd-looking
// endpoint, as fleetctl did.
func (a *app) applyEnv(cmd *cobra.Command) error {
	fs := cmd.Flags()
	// The token and its file are one setting: either given on the command
	// line wins over both variables.
	tokenGiven := fs.Changed("token") || fs.Changed("token-file")
	var err error
	cmd.Root().PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if err != nil || fs.Changed(f.Name) {
			return
		}
		if tokenGiven && (f.Name == "token" || f.Name == "token-file") {
			return
		}
		key := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := a.env(key)
		if v == "" {
			return
		}
		target := fs.Lookup(f.Name)
		if serr := target.Value.Set(v); serr != nil {
			err = usageErrorf("%s=%q: %v", key, v, serr)
			return
		}
		target.Changed = true // set from the environment, as if given
	})
	if err != nil {
		return err
	}
	if fs.Changed("endpoint") && !fs.Changed("driver") && looksLikeEtcd(a.endpoint) {
		a.driver.value = driverEtcd
	}
	return nil
}

// looksLikeEtcd reports whether the first endpoint is on one of etcd's
// client ports.
func looksLikeEtcd(endpoints string) bool {
	first, _, _ := strings.Cut(endpoints, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return false
	}
	port := u.Port()
	return port == "2379" || port == "4001"
}

// client connects to fleet as the global flags say. The returned func
// releases the connection.
func (a *app) client(ctx context.Context) (api.Client, func(), error) {
	timeout := time.Duration(a.timeout)
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	token, err := a.bearerToken()
	if err != nil {
		return nil, nil, err
	}
	var tun *sshConn
	release := func() {}
	if a.tunnel != "" {
		if tun, err = a.dialTunnel(ctx); err != nil {
			return nil, nil, err
		}
		release = func() { _ = tun.Close() }
	}
	switch a.driver.value {
	case driverEtcd:
		if token != "" {
			fmt.Fprintln(a.stderr, "WARNING: the API token is not used with --driver=etcd")
		}
		reg, closeEtcd, err := a.dialEtcd(tlsCfg, tun)
		if err != nil {
			release()
			return nil, nil, err
		}
		return api.NewRegistryClient(reg), func() { closeEtcd(); release() }, nil
	default:
		ep := a.endpoint
		if ep == "" {
			ep = api.DefaultEndpoint
		}
		if first, rest, _ := strings.Cut(ep, ","); rest != "" {
			fmt.Fprintf(a.stderr, "WARNING: several endpoints given; only the first (%s) is used\n", first)
			ep = first
		}
		var opts []api.HTTPOption
		if token != "" {
			if err := checkTokenTransport(ep); err != nil {
				release()
				return nil, nil, err
			}
			opts = append(opts, api.WithBearerToken(token))
		}
		if tlsCfg != nil {
			opts = append(opts, api.WithTLSConfig(tlsCfg))
		}
		if a.debug {
			opts = append(opts, api.WithDebugLog(a.stderr))
		}
		if tun != nil {
			opts = append(opts, api.WithDialer(tun.dialFleet))
		}
		c, err := api.NewHTTPClient(ep, timeout, opts...)
		if err != nil {
			release()
			return nil, nil, usageError{err}
		}
		return c, release, nil
	}
}

// dialEtcd connects to etcd's --endpoint URLs with tlsCfg, through tun when
// it is not nil. The returned func closes the connection.
func (a *app) dialEtcd(tlsCfg *tls.Config, tun *sshConn) (*registry.Registry, func(), error) {
	timeout := time.Duration(a.timeout)
	eps := a.etcdEndpoints()
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: timeout,
		Logger:      zap.NewNop(),
		TLS:         tlsCfg,
	}
	if a.debug {
		cfg.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(a.stderr), zap.DebugLevel))
	}
	if tun != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return tun.dial(ctx, "tcp", addr)
		}))
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, nil, usageErrorf("etcd endpoints %s: %v", strings.Join(eps, ","), err)
	}
	reg := registry.New(cli, registry.WithPrefix(a.prefix), registry.WithRequestTimeout(timeout))
	return reg, func() { _ = cli.Close() }, nil
}

// tlsConfig reads --ca-file, --cert-file and --key-file; nil when none is
// set. An expired certificate or one that does not match its key is
// refused here, naming the file, rather than by the server in a handshake
// error that names neither.
func (a *app) tlsConfig() (*tls.Config, error) {
	if a.caFile == "" && a.certFile == "" && a.keyFile == "" {
		return nil, nil
	}
	if (a.certFile == "") != (a.keyFile == "") {
		return nil, usageErrorf("--cert-file and --key-file go together; give both or neither")
	}
	cfg, err := pki.ClientConfig(a.caFile, a.certFile, a.keyFile)
	if err != nil {
		return nil, usageError{err}
	}
	if len(cfg.Certificates) > 0 {
		// Go sends no certificate whose issuer is not among the CAs the
		// server names, and the server then sees no credentials at all.
		// Sent anyway, it is refused in the handshake, and fleetctl can
		// say that it was this certificate the server refused.
		cert := cfg.Certificates[0]
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg, nil
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

// homePath expands a leading $HOME/ of a path flag.
func (a *app) homePath(p string) string {
	if rest, ok := strings.CutPrefix(p, "$HOME/"); ok {
		home := a.env("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		return filepath.Join(home, rest)
	}
	return p
}

// isTerminal reports whether w is a terminal (WithTerminal overrides).
func (a *app) isTerminal(w io.Writer) bool {
	if a.terminal != nil {
		return *a.terminal
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// run adapts a command body that needs a client to cobra's RunE.
func (a *app) run(fn func(ctx context.Context, c api.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, release, err := a.client(cmd.Context())
		if err != nil {
			return err
		}
		defer release()
		return a.explain(fn(cmd.Context(), c, args))
	}
}

// explain adds what to check to errors whose cause is not obvious: with the
// etcd driver an unreachable etcd shows up only as a deadline; with the API,
// TLS and authentication failures as Go's TLS text or a bare status.
func (a *app) explain(err error) error {
	if err == nil {
		return nil
	}
	if a.driver.value != driverEtcd {
		return a.explainAuth(err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return withCode(ExitUnavailable, fmt.Errorf("cannot reach etcd at %s within %s: %w (is etcd running? set --endpoint or FLEETCTL_ENDPOINT)",
		strings.Join(a.etcdEndpoints(), ","), time.Duration(a.timeout), err))
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

// choice is a string flag limited to a set of values, matched without
// regard to case (fleet's driver was "API").
type choice struct {
	value   string
	allowed []string
}

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return "string" }
func (c *choice) Set(v string) error {
	for _, a := range c.allowed {
		if strings.EqualFold(v, a) {
			c.value = a
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
