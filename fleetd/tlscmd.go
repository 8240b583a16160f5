package fleetd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

const tlsUsage = `Usage:
  fleetd tls ca create [--dir D] [--name N] [--days 3650] [--force]
      writes D/ca.pem and D/ca-key.pem (key mode 0600)
  fleetd tls cert create --server|--client|--peer [--hosts h1,10.0.0.5] [--name CN]
      [--role admin|read] [--ca D/ca.pem --ca-key D/ca-key.pem] [--days 825] [--dir D] [--force]
      writes D/<name>.pem and D/<name>-key.pem (key mode 0600)

--server: serves fleetd's API (for hosts given with --hosts, plus localhost).
--client: fleetctl's or another API client's identity <name> with --role admin or read.
--peer:   a fleetd's own identity: serves its API and calls other fleetds.
`

// usageError is a bad command line: fleetd exits 2 on it (errors.Is
// ErrUsage) without ErrUsage's "bad configuration" in the message.
type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// TLSCommand runs `fleetd tls ...` with args after "tls": it makes the CA
// and the certificates of a fleet cluster, like `nomad tls`, and writes the
// paths it created, or its help, to stdout. A bad command line is an error
// that errors.Is ErrUsage.
func TLSCommand(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("tls: give a command: ca create or cert create (see fleetd tls -h)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		_, err := io.WriteString(stdout, tlsUsage)
		return err
	}
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		return usagef("tls: unknown command %q: want ca create or cert create (see fleetd tls -h)", strings.Join(args[:min(2, len(args))], " "))
	}
	if args[0] == "ca" {
		return createCA(args[2:], stdout)
	}
	return createCert(args[2:], stdout)
}

// newTLSFlags is a flag set whose errors TLSCommand reports itself, in one
// line, instead of the flag package's usage dump.
func newTLSFlags(name string) *flag.FlagSet {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	return flags
}

func parseTLSFlags(flags *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, werr := io.WriteString(stdout, tlsUsage)
			return true, werr
		}
		return false, usagef("%s: %v (see fleetd tls -h)", flags.Name(), err)
	}
	if flags.NArg() > 0 {
		return false, usagef("%s: unexpected argument %q (see fleetd tls -h)", flags.Name(), flags.Arg(0))
	}
	return false, nil
}

func createCA(args []string, stdout io.Writer) error {
	flags := newTLSFlags("tls ca create")
	dir := flags.String("dir", ".", "directory to write ca.pem and ca-key.pem to")
	name := flags.String("name", "fleet CA", "common name of the CA")
	days := flags.Int("days", 3650, "days the CA is valid")
	force := flags.Bool("force", false, "overwrite existing files")
	if help, err := parseTLSFlags(flags, args, stdout); help || err != nil {
		return err
	}
	if *days <= 0 {
		return usagef("%s: --days %d: must be positive", flags.Name(), *days)
	}
	certFile, keyFile := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem")
	if err := checkFree(*force, certFile, keyFile); err != nil {
		return err
	}
	certPEM, keyPEM, err := pki.CreateCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return usagef("%s: %v", flags.Name(), err)
	}
	if err := writePair(*dir, *force, certFile, certPEM, keyFile, keyPEM); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "CA certificate: %s\nCA key:         %s (keep it secret: it signs every certificate of the cluster)\n", certFile, keyFile)
	return err
}

func createCert(args []string, stdout io.Writer) error {
	flags := newTLSFlags("tls cert create")
	server := flags.Bool("server", false, "a certificate that serves fleetd's API")
	client := flags.Bool("client", false, "a client certificate with --role")
	peer := flags.Bool("peer", false, "a fleetd's own certificate, to serve and to call other fleetds")
	hosts := flags.String("hosts", "", "comma-separated names and IP addresses the server or peer certificate is valid for")
	name := flags.String("name", "", "common name, the identity's name (default: first of --hosts, else the role or kind)")
	role := flags.String("role", "", "role of a client certificate: admin or read")
	dir := flags.String("dir", ".", "directory to write <name>.pem and <name>-key.pem to")
	caFile := flags.String("ca", "", "CA certificate (default <dir>/ca.pem)")
	caKeyFile := flags.String("ca-key", "", "CA key (default <dir>/ca-key.pem)")
	days := flags.Int("days", 825, "days the certificate is valid")
	force := flags.Bool("force", false, "overwrite existing files")
	if help, err := parseTLSFlags(flags, args, stdout); help || err != nil {
		return err
	}

	var req pki.CertRequest
	var kinds []string
	if *server {
		req.Kind, kinds = pki.Server, append(kinds, "--server")
	}
	if *client {
		req.Kind, kinds = pki.Client, append(kinds, "--client")
	}
	if *peer {
		req.Kind, kinds = pki.Peer, append(kinds, "--peer")
	}
	switch {
	case len(kinds) == 0:
		return usagef("%s: give one of --server, --client or --peer (see fleetd tls -h)", flags.Name())
	case len(kinds) > 1:
		return usagef("%s: give only one of %s", flags.Name(), strings.Join(kinds, ", "))
	}
	req.Role = *role
	switch {
	case req.Kind == pki.Client && *role == "":
		return usagef("%s: --client needs --role %s or --role %s", flags.Name(), pki.RoleAdmin, pki.RoleRead)
	case req.Kind != pki.Client && *role != "":
		return usagef("%s: --role is for --client certificates only", flags.Name())
	case req.Kind == pki.Client && *hosts != "":
		return usagef("%s: --hosts is for --server and --peer certificates only", flags.Name())
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			req.Hosts = append(req.Hosts, h)
		}
	}
	req.CommonName = *name
	if req.CommonName == "" {
		req.CommonName = defaultCertName(req)
	}
	if strings.ContainsAny(req.CommonName, `/\`) || strings.HasPrefix(req.CommonName, ".") {
		return usagef("%s: --name %q: names the files too, so it may not contain a slash or start with a dot", flags.Name(), req.CommonName)
	}
	if *days <= 0 {
		return usagef("%s: --days %d: must be positive", flags.Name(), *days)
	}
	req.Validity = time.Duration(*days) * 24 * time.Hour
	if *caFile == "" {
		*caFile = filepath.Join(*dir, "ca.pem")
	}
	if *caKeyFile == "" {
		*caKeyFile = filepath.Join(*dir, "ca-key.pem")
	}

	certFile := filepath.Join(*dir, req.CommonName+".pem")
	keyFile := filepath.Join(*dir, req.CommonName+"-key.pem")
	if err := checkFree(*force, certFile, keyFile); err != nil {
		return err
	}
	ca, err := pki.LoadCA(*caFile, *caKeyFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (make one with fleetd tls ca create, or give --ca and --ca-key)", err)
		}
		return err
	}
	// Every error of Issue is about the request (hosts, role, a validity
	// past the CA's), so it is the command line that needs fixing.
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return usagef("%s: %v", flags.Name(), err)
	}
	if err := writePair(*dir, *force, certFile, certPEM, keyFile, keyPEM); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s certificate: %s\n%s key:         %s\n", req.Kind, certFile, req.Kind, keyFile)
	return err
}

// defaultCertName names a certificate after what tells it apart: the first
// host of a server or peer, the role of a client.
func defaultCertName(req pki.CertRequest) string {
	if req.Kind != pki.Client && len(req.Hosts) > 0 {
		return req.Hosts[0]
	}
	if req.Kind == pki.Client && req.Role != "" {
		return req.Role
	}
	return req.Kind.String()
}

// checkFree refuses, before anything is made, to replace a certificate or
// key: overwriting a CA key orphans every certificate it signed.
func checkFree(force bool, files ...string) error {
	if force {
		return nil
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s exists; not overwriting it (give --force to replace it)", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes the key (0600) then the certificate (0644) into dir,
// made 0700 if it does not exist.
func writePair(dir string, force bool, certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	if err := writeNew(keyFile, keyPEM, 0o600, force); err != nil {
		return err
	}
	return writeNew(certFile, certPEM, 0o644, force)
}

// writeNew creates file with exactly perm; with force an existing file is
// removed first, so a key never keeps a looser mode it had before.
func writeNew(file string, b []byte, perm os.FileMode, force bool) error {
	if force {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", file, err)
		}
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; not overwriting it (give --force to replace it)", file)
		}
		return fmt.Errorf("write: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
