package fleetd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// Secret is a configuration value that must not reach logs or error texts:
// it formats and logs as "[redacted]". string(s) is the value.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// etcdTLSKeys is how errors name the client TLS keys.
const etcdTLSKeys = "etcd_cafile/etcd_certfile/etcd_keyfile"

// validateEtcd checks the etcd keys without reading any file: the
// combinations, and that TLS is configured where the endpoints need it.
func (c Config) validateEtcd() error {
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return fmt.Errorf("etcd_certfile and etcd_keyfile go together: set both or neither")
	}
	if c.EtcdPassword != "" && c.EtcdPasswordFile != "" {
		return fmt.Errorf("set etcd_password or etcd_password_file, not both")
	}
	hasPassword := c.EtcdPassword != "" || c.EtcdPasswordFile != ""
	if (c.EtcdUsername != "") != hasPassword {
		return fmt.Errorf("etcd_username and etcd_password (or etcd_password_file) go together: set both or neither")
	}
	if len(c.EtcdServers) == 0 {
		if err := c.validateEmbeddedEtcd(); err != nil {
			return err
		}
	}
	return c.checkEndpoints(c.etcdEndpoints())
}

// etcdEndpoints are the URLs fleetd's client dials: etcd_servers, else the
// embedded etcd's client URLs.
func (c Config) etcdEndpoints() []string {
	if len(c.EtcdServers) > 0 {
		return c.EtcdServers
	}
	return c.EmbeddedEtcdClientURLs
}

// checkEndpoints refuses mixed configurations rather than guessing: TLS
// files with an http:// endpoint (one connection would go in plain text
// while the operator believes all are encrypted), http:// next to https://,
// and a password that would cross the network in clear text.
func (c Config) checkEndpoints(endpoints []string) error {
	tlsFiles := c.EtcdCAFile != "" || c.EtcdCertFile != ""
	schemes := map[string]string{}
	for _, e := range endpoints {
		if !strings.Contains(e, "://") {
			// clientv3 also takes host:port, with TLS exactly when TLS
			// keys are set.
			scheme := "http://"
			if tlsFiles {
				scheme = "https://"
			}
			e = scheme + e
		}
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("etcd endpoint %q: %w", e, err)
		}
		switch u.Scheme {
		case "http", "unix":
			if tlsFiles {
				return fmt.Errorf("etcd endpoint %s is %s:// but %s are set: use https:// endpoints, or drop the TLS keys", e, u.Scheme, etcdTLSKeys)
			}
			if u.Scheme == "http" && c.EtcdUsername != "" && !etcdserver.IsLoopbackURL(e) {
				return fmt.Errorf("etcd endpoint %s is http://: the etcd password would cross the network in clear text; use https://", e)
			}
			schemes["plain"] = e
		case "https", "unixs":
			schemes["tls"] = e
		default:
			return fmt.Errorf("etcd endpoint %s: scheme must be http or https", e)
		}
	}
	if len(schemes) > 1 {
		return fmt.Errorf("etcd endpoints mix plain (%s) and TLS (%s): use https:// for all", schemes["plain"], schemes["tls"])
	}
	return nil
}

// validateEmbeddedEtcd checks what the embedded etcd will accept, in terms
// of fleet.conf's keys, and that fleetd's own client can talk to it.
func (c Config) validateEmbeddedEtcd() error {
	err := etcdserver.Check(c.embeddedEtcdConfig())
	if errors.Is(err, etcdserver.ErrInsecure) {
		return fmt.Errorf("%w: set embedded_etcd_cert_file, embedded_etcd_key_file and embedded_etcd_client_ca_file and use https:// in embedded_etcd_client_urls and embedded_etcd_peer_url, or keep the embedded etcd on loopback (embedded_etcd_client_urls=http://127.0.0.1:2379, embedded_etcd_peer_url=http://127.0.0.1:2380)", err)
	}
	if err != nil {
		return fmt.Errorf("embedded_etcd_* keys: %w", err)
	}
	// fleetd dials its embedded etcd like any other client, with the same
	// keys: a second, plain loopback URL just for fleetd would let every
	// local user write units, which run as root.
	if c.EmbeddedEtcdCertFile != "" && c.EtcdCAFile == "" {
		return fmt.Errorf("the embedded etcd serves https: set etcd_cafile to the CA that signed embedded_etcd_cert_file, so fleetd can verify it")
	}
	if c.EmbeddedEtcdClientCA != "" && c.EtcdCertFile == "" {
		return fmt.Errorf("the embedded etcd requires client certificates, fleetd's own client too: set etcd_certfile and etcd_keyfile to a client certificate signed by embedded_etcd_client_ca_file")
	}
	return nil
}

func (c Config) embeddedEtcdConfig() etcdserver.Config {
	retention := c.EmbeddedEtcdRetention
	if retention == 0 {
		retention = -1 // fleet.conf's 0 means never; etcdserver's means default
	}
	return etcdserver.Config{
		DataDir: c.EmbeddedEtcdDir, ClientURLs: c.EmbeddedEtcdClientURLs, PeerURL: c.EmbeddedEtcdPeerURL,
		CertFile: c.EmbeddedEtcdCertFile, KeyFile: c.EmbeddedEtcdKeyFile, ClientCAFile: c.EmbeddedEtcdClientCA,
		QuotaBytes: c.EmbeddedEtcdQuotaBytes, AutoCompactionRetention: retention,
	}
}

// etcdCredentials loads what fleetd's etcd clients present: the TLS
// configuration (nil for plain endpoints) and the user's password, read
// from etcd_password_file at every start. Errors name the key and file,
// never the password.
func (c Config) etcdCredentials(endpoints []string) (*tls.Config, string, error) {
	var tlsCfg *tls.Config
	needTLS := c.EtcdCAFile != "" || c.EtcdCertFile != ""
	for _, e := range endpoints {
		needTLS = needTLS || strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs://")
	}
	if needTLS {
		var err error
		if tlsCfg, err = pki.ClientConfig(c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile); err != nil {
			return nil, "", fmt.Errorf("%w: etcd client TLS (%s): %w", ErrUsage, etcdTLSKeys, err)
		}
	}
	password := string(c.EtcdPassword)
	if c.EtcdPasswordFile != "" {
		b, err := os.ReadFile(c.EtcdPasswordFile)
		if err != nil {
			return nil, "", fmt.Errorf("%w: etcd_password_file: %w", ErrUsage, err)
		}
		if password = strings.TrimRight(string(b), "\r\n"); password == "" {
			return nil, "", fmt.Errorf("%w: etcd_password_file %s is empty", ErrUsage, c.EtcdPasswordFile)
		}
	}
	return tlsCfg, password, nil
}

// openEtcd starts the embedded etcd when no etcd_servers are configured and
// returns fleetd's client, with every TLS and password key applied, and a
// function that closes both.
func openEtcd(ctx context.Context, cfg Config, interceptor grpc.UnaryClientInterceptor, log *slog.Logger) (*clientv3.Client, func(), error) {
	var srv *etcdserver.Server
	closeAll := func(cli *clientv3.Client) {
		if cli != nil {
			_ = cli.Close()
		}
		if srv != nil {
			srv.Close()
		}
	}
	endpoints := cfg.EtcdServers
	if len(endpoints) == 0 {
		if err := os.MkdirAll(cfg.EmbeddedEtcdDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("embedded etcd: %w", err)
		}
		var err error
		srv, err = etcdserver.Start(ctx, cfg.embeddedEtcdConfig())
		if errors.Is(err, etcdserver.ErrInsecure) {
			return nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if err != nil {
			return nil, nil, err
		}
		// fleetd dials its own member on loopback, over TLS with its
		// client certificate when the member requires one.
		endpoints = srv.Endpoints()
		log.Info("embedded etcd started", "dir", cfg.EmbeddedEtcdDir, "endpoints", strings.Join(endpoints, ","),
			"tls", cfg.EmbeddedEtcdCertFile != "", "client_cert_auth", cfg.EmbeddedEtcdClientCA != "")
	}
	etcdTLS, etcdPassword, err := cfg.etcdCredentials(endpoints)
	if err != nil {
		closeAll(nil)
		return nil, nil, err
	}
	log.Info("etcd client", "endpoints", strings.Join(endpoints, ","), "tls", etcdTLS != nil,
		"client_cert", cfg.EtcdCertFile != "", "user", cfg.EtcdUsername)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: cfg.EtcdRequestTimeout, Logger: nil,
		TLS: etcdTLS, Username: cfg.EtcdUsername, Password: etcdPassword,
		// With keepalive on, gRPC also sets TCP_USER_TIMEOUT to its
		// timeout: a connection whose packets go unacknowledged that long
		// (a cut cable, a partition) is dropped and dialled again. Without
		// it, requests keep going to the dead connection, and once the
		// link is back the kernel's retransmission backoff (seconds, then
		// tens of seconds) holds this machine off etcd long after. 10s is
		// gRPC's smallest ping interval, and above etcd's default
		// --grpc-keepalive-min-time.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(interceptor),
			// gRPC's default reconnect backoff grows to two minutes: after
			// a long etcd outage this machine would come back long after
			// its lease (TTL seconds) ran out, and its units would move.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: cfg.EtcdRequestTimeout,
			}),
		}})
	if err != nil {
		closeAll(nil)
		return nil, nil, fmt.Errorf("etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, func() { closeAll(cli) }, nil
}
