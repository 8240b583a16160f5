package fleetd

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/reboot"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// DefaultConfigFile is where fleetd looks for its configuration.
const DefaultConfigFile = "/etc/fleet/fleet.conf"

// Config is fleetd's configuration. Keys are fleet's: the config file uses
// them as written, the environment as FLEET_<KEY> (upper case), flags as
// -<key>. Flags win over the environment, which wins over the file.
type Config struct {
	EtcdServers             []string      // etcd_servers: empty = run an embedded single-member etcd
	EtcdKeyPrefix           string        // etcd_key_prefix
	EtcdRequestTimeout      time.Duration // etcd_request_timeout (seconds or a Go duration)
	EtcdCAFile              string        // etcd_cafile: CA of etcd's server certificates ("" = system roots)
	EtcdCertFile            string        // etcd_certfile: client certificate fleetd presents to etcd
	EtcdKeyFile             string        // etcd_keyfile: its key
	EtcdUsername            string        // etcd_username: etcd user (etcd's own authentication)
	EtcdPassword            Secret        // etcd_password: never on the command line
	EtcdPasswordFile        string        // etcd_password_file: file holding etcd_password, read at start
	EmbeddedEtcdDir         string        // embedded_etcd_dir: data of the embedded etcd
	EmbeddedEtcdClientURLs  []string      // embedded_etcd_client_urls: where the embedded etcd listens (loopback by default)
	EmbeddedEtcdPeerURL     string        // embedded_etcd_peer_url
	EmbeddedEtcdCertFile    string        // embedded_etcd_cert_file: server (and https peer) certificate
	EmbeddedEtcdKeyFile     string        // embedded_etcd_key_file
	EmbeddedEtcdClientCA    string        // embedded_etcd_client_ca_file: clients must present a certificate it signed
	EmbeddedEtcdQuotaBytes  int64         // embedded_etcd_quota_bytes: backend size cap
	EmbeddedEtcdRetention   time.Duration // embedded_etcd_auto_compaction_retention: history kept (0 = never compact)
	MachineID               string        // machine_id: overrides machine_id_file
	MachineIDFile           string        // machine_id_file
	PublicIP                string        // public_ip: empty = address of the default-route interface
	Metadata                string        // metadata: k=v,k=v
	AgentTTL                time.Duration // agent_ttl
	AgentAtMostOnceDefault  bool          // agent_at_most_once_default: units without AtMostOnce= are at-most-once
	EngineAtMostOnceMargin  time.Duration // engine_at_most_once_margin: wait after a machine left before moving its at-most-once units
	EngineReconcileInterval time.Duration // engine_reconcile_interval
	EngineLeaderTTL         time.Duration // engine_leader_ttl
	MachineGCAfter          time.Duration // machine_gc_after: placements kept for an absent machine are dropped after this
	EngineGCInterval        time.Duration // engine_gc_interval: period of the engine leader's etcd hygiene
	EngineBodyGrace         time.Duration // engine_body_grace: how long a unit body stays unreferenced before it is collected
	DisableEngine           bool          // disable_engine
	EngineStandby           bool          // engine_standby: keep the engine's model warm while another leads (default off)
	UnitsDirectory          string        // units_directory
	APISocket               string        // api_socket: unix socket path ("" = none unless socket-activated)
	APIListen               string        // api_listen: optional TCP address host:port
	APICertFile             string        // api_cert_file: TLS certificate of every TCP API listener, and this fleetd's towards others
	APIKeyFile              string        // api_key_file: key of api_cert_file
	APIClientCAFile         string        // api_client_ca_file: CA whose client (and peer) certificates the API accepts
	APITokensFile           string        // api_tokens_file: bearer tokens, "NAME ROLE SECRET" per line; re-read on SIGHUP
	APIInsecure             bool          // api_insecure: allow a TCP listener reachable from other machines without TLS and authentication
	Verbosity               int           // verbosity: 0 info, 1+ debug
	Placement               engine.Policy // placement: spread (default) or binpack
	ReservedCPU             int64         // reserved_cpu: millicores kept from units (given as cores, 0.5)
	ReservedMemory          int64         // reserved_memory: bytes kept from units (512M, 1G)
	RebootSentinel          string        // reboot_sentinel: a file whose existence asks for a coordinated reboot ("" = requests only)
	RebootMaxConcurrent     int           // reboot_max_concurrent: machines rebooting at once, cluster-wide
	RebootWindow            string        // reboot_window: when reboots may start, "Mon..Fri 02:00-04:00" ("" = any time)
	RebootCommand           string        // reboot_command: run with /bin/sh -c
	RebootTimeout           time.Duration // reboot_timeout: a machine not back by then loses its slot
	RebootDrainDeadline     time.Duration // reboot_drain_deadline: reboot then even if the drain is not done
}

// DefaultConfig returns the defaults documented in fleet.conf(5).
func DefaultConfig() Config {
	return Config{
		EtcdKeyPrefix:           "/_coreos.com/fleet/",
		EtcdRequestTimeout:      3 * time.Second,
		EmbeddedEtcdDir:         "/var/lib/fleet/etcd",
		EmbeddedEtcdClientURLs:  []string{"http://127.0.0.1:2379"},
		EmbeddedEtcdPeerURL:     "http://127.0.0.1:2380",
		EmbeddedEtcdQuotaBytes:  etcdserver.DefaultQuotaBytes,
		EmbeddedEtcdRetention:   etcdserver.DefaultAutoCompactionRetention,
		MachineIDFile:           "/etc/machine-id",
		AgentTTL:                5 * time.Second,
		EngineAtMostOnceMargin:  2 * time.Second,
		EngineReconcileInterval: 10 * time.Second,
		EngineLeaderTTL:         2 * time.Second,
		MachineGCAfter:          24 * time.Hour,
		EngineGCInterval:        5 * time.Minute,
		EngineBodyGrace:         time.Minute,
		UnitsDirectory:          "/run/fleet/units",
		APISocket:               "/var/run/fleet.sock",
		RebootSentinel:          reboot.DefaultSentinel,
		RebootMaxConcurrent:     1,
		RebootCommand:           reboot.DefaultCommand,
		RebootTimeout:           reboot.DefaultTimeout,
		RebootDrainDeadline:     reboot.DefaultDrainDeadline,
	}
}

// field binds one configuration key to its value in Config.
type field struct {
	key, help string
	set       func(c *Config, v string) error
}

func fields() []field {
	str := func(p func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = v; return nil }
	}
	list := func(p func(*Config) *[]string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = splitList(v); return nil }
	}
	dur := func(p func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := parseDuration(v)
			*p(c) = d
			return err
		}
	}
	return []field{
		{"etcd_servers", "comma-separated etcd client URLs; empty runs an embedded etcd", list(func(c *Config) *[]string { return &c.EtcdServers })},
		{"etcd_key_prefix", "etcd key prefix of fleet's data", str(func(c *Config) *string { return &c.EtcdKeyPrefix })},
		{"etcd_request_timeout", "timeout of one etcd request (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EtcdRequestTimeout })},
		{"etcd_cafile", "CA file of etcd's server certificates (default: the system's roots)", str(func(c *Config) *string { return &c.EtcdCAFile })},
		{"etcd_certfile", "client certificate file fleetd presents to etcd", str(func(c *Config) *string { return &c.EtcdCertFile })},
		{"etcd_keyfile", "key file of etcd_certfile", str(func(c *Config) *string { return &c.EtcdKeyFile })},
		{"etcd_username", "etcd user name (with etcd_password or etcd_password_file)", str(func(c *Config) *string { return &c.EtcdUsername })},
		{"etcd_password", "etcd password (file or environment only: a flag is readable by every local user)", func(c *Config, v string) error {
			c.EtcdPassword = Secret(v)
			return nil
		}},
		{"etcd_password_file", "file whose content is the etcd password", str(func(c *Config) *string { return &c.EtcdPasswordFile })},
		{"embedded_etcd_dir", "data directory of the embedded etcd", str(func(c *Config) *string { return &c.EmbeddedEtcdDir })},
		{"embedded_etcd_client_urls", "client URLs of the embedded etcd", list(func(c *Config) *[]string { return &c.EmbeddedEtcdClientURLs })},
		{"embedded_etcd_peer_url", "peer URL of the embedded etcd", str(func(c *Config) *string { return &c.EmbeddedEtcdPeerURL })},
		{"embedded_etcd_cert_file", "server certificate of the embedded etcd (also its peer certificate on an https peer URL)", str(func(c *Config) *string { return &c.EmbeddedEtcdCertFile })},
		{"embedded_etcd_key_file", "key of embedded_etcd_cert_file", str(func(c *Config) *string { return &c.EmbeddedEtcdKeyFile })},
		{"embedded_etcd_client_ca_file", "CA whose client certificates the embedded etcd requires", str(func(c *Config) *string { return &c.EmbeddedEtcdClientCA })},
		{"embedded_etcd_quota_bytes", "backend size cap of the embedded etcd in bytes; beyond it etcd is read-only", func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil && n <= 0 {
				err = fmt.Errorf("must be a positive number of bytes")
			}
			c.EmbeddedEtcdQuotaBytes = n
			return err
		}},
		{"embedded_etcd_auto_compaction_retention", "history the embedded etcd keeps before compacting it (seconds or duration; 0 never compacts)", dur(func(c *Config) *time.Duration { return &c.EmbeddedEtcdRetention })},
		{"machine_id", "machine ID (overrides machine_id_file)", str(func(c *Config) *string { return &c.MachineID })},
		{"machine_id_file", "file holding the machine ID", str(func(c *Config) *string { return &c.MachineIDFile })},
		{"public_ip", "IP address other machines reach this one at", str(func(c *Config) *string { return &c.PublicIP })},
		{"metadata", "machine metadata, k=v,k=v", str(func(c *Config) *string { return &c.Metadata })},
		{"agent_ttl", "machine presence TTL (seconds or duration, at least 2s)", dur(func(c *Config) *time.Duration { return &c.AgentTTL })},
		{"agent_at_most_once_default", "units that do not set [X-Fleet] AtMostOnce= never run on two machines at once (stopped when cut off from etcd)", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			c.AgentAtMostOnceDefault = b
			return err
		}},
		{"engine_at_most_once_margin", "how long after a machine left its at-most-once units are placed elsewhere; its agent began stopping them agent_ttl/2 before, so their stop must end within agent_ttl/2 plus this (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EngineAtMostOnceMargin })},
		{"engine_reconcile_interval", "period of the engine's full reconcile (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EngineReconcileInterval })},
		{"engine_leader_ttl", "engine leadership TTL (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EngineLeaderTTL })},
		{"machine_gc_after", "drop the placements kept for a machine absent this long (global and MachineID-pinned units; seconds or duration)", dur(func(c *Config) *time.Duration { return &c.MachineGCAfter })},
		{"engine_gc_interval", "period of the engine leader's etcd hygiene: unused unit bodies, long-absent machines, compaction (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EngineGCInterval })},
		{"engine_body_grace", "how long a unit body must stay unreferenced (by any unit or placement) before the engine leader deletes it (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.EngineBodyGrace })},
		{"disable_engine", "never run the engine on this machine", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			c.DisableEngine = b
			return err
		}},
		{"engine_standby", "while another engine leads, follow the cluster and keep this engine's model current, so that it takes over without re-reading and re-planning everything (costs the model's memory and a watch of every unit, machine and placement change: turn it on for the few machines that run engines, not on every machine of a large cluster)", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			c.EngineStandby = b
			return err
		}},
		{"units_directory", "where unit files are written for systemd", str(func(c *Config) *string { return &c.UnitsDirectory })},
		{"api_socket", "unix socket of the HTTP API", str(func(c *Config) *string { return &c.APISocket })},
		{"api_listen", "optional TCP address of the HTTP API (host:port)", str(func(c *Config) *string { return &c.APIListen })},
		{"api_cert_file", "TLS certificate of the API's TCP listeners (a peer certificate also identifies this fleetd to others)", str(func(c *Config) *string { return &c.APICertFile })},
		{"api_key_file", "key of api_cert_file", str(func(c *Config) *string { return &c.APIKeyFile })},
		{"api_client_ca_file", "CA certificate that signs the client and peer certificates the API accepts", str(func(c *Config) *string { return &c.APIClientCAFile })},
		{"api_tokens_file", "file of API bearer tokens, one NAME ROLE SECRET per line (re-read on SIGHUP)", str(func(c *Config) *string { return &c.APITokensFile })},
		{"api_insecure", "allow a TCP API listener reachable from other machines without TLS and authentication: anyone who reaches it controls every machine", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			c.APIInsecure = b
			return err
		}},
		{"verbosity", "log verbosity (0 info, 1 debug)", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			c.Verbosity = n
			return err
		}},
		{"placement", "which machine a unit goes to among those it fits on: spread (least loaded by its fullest resource, then by unit count) or binpack (fullest first)", func(c *Config, v string) error {
			p, err := engine.ParsePolicy(v)
			c.Placement = p
			return err
		}},
		{"reserved_cpu", "CPU cores of this machine kept from fleet's units (0.5, 2), for the system and fleetd itself", func(c *Config, v string) error {
			n, err := unit.ParseCPU(v)
			c.ReservedCPU = n
			return err
		}},
		{"reserved_memory", "memory of this machine kept from fleet's units (512M, 2G)", func(c *Config, v string) error {
			n, err := unit.ParseMemory(v)
			c.ReservedMemory = n
			return err
		}},
		{"reboot_sentinel", "file whose existence asks for a coordinated reboot of this machine (empty: only fleetctl reboot)", str(func(c *Config) *string { return &c.RebootSentinel })},
		{"reboot_max_concurrent", "how many machines of the cluster may reboot at once (set it the same everywhere)", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err == nil && n < 1 {
				err = fmt.Errorf("must be at least 1")
			}
			c.RebootMaxConcurrent = n
			return err
		}},
		{"reboot_window", "when coordinated reboots may start, local time, e.g. \"Mon..Fri 02:00-04:00\" (empty: any time)", func(c *Config, v string) error {
			_, err := reboot.ParseWindow(v)
			c.RebootWindow = v
			return err
		}},
		{"reboot_command", "command that reboots this machine (run with /bin/sh -c)", str(func(c *Config) *string { return &c.RebootCommand })},
		{"reboot_timeout", "a rebooting machine not back within this loses its slot, and it is reported (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.RebootTimeout })},
		{"reboot_drain_deadline", "how long a machine about to reboot waits for its units to move off before rebooting anyway (seconds or duration)", dur(func(c *Config) *time.Duration { return &c.RebootDrainDeadline })},
	}
}

// LoadConfig builds the configuration from defaults, the config file (the
// -config flag, else DefaultConfigFile if it exists), FLEET_* environment
// variables, then flags.
func LoadConfig(args []string, getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("fleetd", flag.ContinueOnError)
	configFile := fs.String("config", "", "config file (default "+DefaultConfigFile+" when present)")
	version := fs.Bool("version", false, "print the version and exit")
	flagVals := map[string]*string{}
	for _, f := range fields() {
		flagVals[f.key] = fs.String(f.key, "", f.help)
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if *version {
		return c, ErrVersion
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	path, mustExist := *configFile, true
	if path == "" {
		path, mustExist = DefaultConfigFile, false
	}
	fileVals, err := readConfigFile(path)
	if err != nil && (mustExist || !os.IsNotExist(err)) {
		return c, fmt.Errorf("%w: read config %s: %w", ErrUsage, path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["etcd_password"] {
		return c, fmt.Errorf("%w: -etcd_password would show the password to every local user (ps, /proc): use etcd_password_file or FLEET_ETCD_PASSWORD", ErrUsage)
	}
	for _, f := range fields() {
		v, ok := fileVals[f.key]
		src := "config file " + path
		if e := getenv("FLEET_" + strings.ToUpper(f.key)); e != "" {
			v, ok, src = e, true, "FLEET_"+strings.ToUpper(f.key)
		}
		if set[f.key] {
			v, ok, src = *flagVals[f.key], true, "flag -"+f.key
		}
		if !ok {
			continue
		}
		if err := f.set(&c, v); err != nil {
			return c, fmt.Errorf("%w: %s (from %s): %w", ErrUsage, f.key, src, err)
		}
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.AgentTTL < 2*time.Second {
		return fmt.Errorf("%w: agent_ttl %s is below etcd's minimum lease of 2s", ErrUsage, c.AgentTTL)
	}
	if c.MachineGCAfter <= 0 || c.EngineGCInterval <= 0 || c.EngineBodyGrace <= 0 {
		return fmt.Errorf("%w: machine_gc_after, engine_gc_interval and engine_body_grace must be positive", ErrUsage)
	}
	if c.EngineAtMostOnceMargin <= 0 {
		return fmt.Errorf("%w: engine_at_most_once_margin must be positive", ErrUsage)
	}
	if c.RebootTimeout <= 0 || c.RebootDrainDeadline <= 0 || strings.TrimSpace(c.RebootCommand) == "" {
		return fmt.Errorf("%w: reboot_timeout and reboot_drain_deadline must be positive, reboot_command not empty", ErrUsage)
	}
	if c.EtcdRequestTimeout <= 0 {
		return fmt.Errorf("%w: etcd_request_timeout must be positive", ErrUsage)
	}
	if err := c.validateEtcd(); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if err := checkUnitsDirectory(c.UnitsDirectory); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return nil
}

// readConfigFile parses fleet.conf: "key=value" lines, '#' or ';' comments,
// optional quotes around values.
func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	known := map[string]bool{}
	for _, fl := range fields() {
		known[fl.key] = true
	}
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			// Not quoted back: the line may be "etcd_password: secret".
			return nil, fmt.Errorf("line %d: not key=value", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !known[k] {
			return nil, fmt.Errorf("line %d: unknown key %q", n, k)
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	return out, sc.Err()
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseDuration accepts fleet's plain seconds ("5", "0.5") and Go durations,
// neither negative nor beyond time.Duration's range.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if f, ferr := strconv.ParseFloat(v, 64); ferr == nil {
		// NaN and out-of-range floats convert to arbitrary durations.
		if math.IsNaN(f) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q seconds is out of range", v)
		}
		d, err = time.Duration(f*float64(time.Second)), nil
	}
	if err == nil && d < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	return d, err
}
