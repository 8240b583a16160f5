package manpage

import (
	"fmt"
	"io"
	"strings"

	"github.com/seed-a1ce88ea/fleet/fleetd"
)

// roff builds a man(7) page. Text given to it is plain: it escapes what
// roff would read as requests or escapes.
type roff struct{ strings.Builder }

// esc escapes text for roff: backslashes, minus signs (a "-" is a hyphen to
// roff; options and paths need the minus sign) and a leading dot or quote,
// which would start a request.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func (r *roff) header(title, section string, o Options) {
	fmt.Fprintf(r, ".TH %q %q %q %q %q\n", title, section, o.Date.Format("Jan 2006"), source(o), manual)
	r.WriteString(".nh\n.ad l\n") // no hyphenation, ragged right: paths and keys stay whole
}

func (r *roff) section(name string) { fmt.Fprintf(r, ".SH %s\n", name) }

// para writes a paragraph of plain text.
func (r *roff) para(text string) { fmt.Fprintf(r, ".PP\n%s\n", esc(text)) }

// item writes a tagged paragraph: tag in bold, then text.
func (r *roff) item(tag, text string) { fmt.Fprintf(r, ".TP\n.B %s\n%s\n", esc(tag), esc(text)) }

// verbatim writes lines as they are, indented.
func (r *roff) verbatim(text string) {
	fmt.Fprintf(r, ".PP\n.RS 4\n.nf\n%s\n.fi\n.RE\n", esc(strings.TrimRight(text, "\n")))
}

// keyText is a key's help followed by its default.
func keyText(k fleetd.ConfigKey) string {
	if k.Default == "" {
		if strings.Contains(k.Help, "default") { // the help says what empty means
			return k.Help + "."
		}
		return k.Help + ". Default: empty."
	}
	return k.Help + ". Default: " + k.Default + "."
}

func writeFleetd(w io.Writer, o Options) error {
	var r roff
	r.header("FLEETD", "8", o)
	r.section("NAME")
	r.WriteString(`fleetd \- fleet's daemon: the agent, engine and HTTP API of one machine` + "\n")
	r.section("SYNOPSIS")
	r.verbatim("fleetd [-config FILE] [-KEY VALUE]...\nfleetd -version\nfleetd tls ca create|cert create [FLAG]...")
	r.section("DESCRIPTION")
	r.para("fleetd runs on every machine of a fleet cluster, usually as the systemd service fleet.service with fleet.socket. " +
		"Its agent makes this machine's systemd run the units the cluster scheduled onto it (over D-Bus, linking unit files from units_directory into /run/systemd/system); " +
		"its engine, leader-elected among all fleetds, places submitted units onto machines; " +
		"its HTTP API (fleet v1) serves fleetctl(1) on a unix socket and, optionally, on TCP. etcd v3 is fleet's only datastore: " +
		"an external cluster (etcd_servers) or, when none is configured, an embedded single-member etcd on loopback, which makes one machine a working cluster.")
	r.para("Stopping fleetd leaves the units it started running: another fleetd, or this one started again, takes them over. " +
		"A machine whose fleetd stays away longer than agent_ttl leaves the cluster, and the engine places its units elsewhere.")
	r.section("OPTIONS")
	r.item("-config FILE", "Read the configuration from FILE, which must exist. Default: "+fleetd.DefaultConfigFile+" when it exists, else built-in defaults.")
	r.item("-version", "Print the version and exit.")
	r.para("Every key of fleet.conf(5) is also a flag, -KEY VALUE, which wins over the file and the environment (except etcd_password, which a command line would show to every local user):")
	for _, k := range fleetd.ConfigKeys() {
		r.item("-"+k.Key+" VALUE", keyText(k))
	}
	r.section("TLS")
	r.para("fleetd tls makes the CA and the certificates of a cluster, without reading any configuration. A certificate's role is its Organization, its identity its CommonName.")
	r.verbatim(fleetd.TLSUsage)
	r.section("ENVIRONMENT")
	r.item("FLEET_<KEY>", "Every key of fleet.conf(5), in upper case (FLEET_ETCD_SERVERS): wins over the file, loses to a flag.")
	r.item("LISTEN_FDS, LISTEN_PID", "Sockets passed by systemd (fleet.socket): fleetd serves its API on them instead of opening api_socket.")
	r.section("SIGNALS")
	r.item("SIGTERM, SIGINT", "Stop fleetd. The units it started keep running.")
	r.item("SIGHUP", "Read the configuration again (with the API's tokens file and certificates) and restart the agent, engine and API with it, in place: "+
		"the API's sockets stay open and no unit stops. A configuration that does not load is logged and the running one kept. "+
		"api_socket, api_listen and fleet.socket change only when the process restarts. systemctl reload fleet sends it.")
	r.section("EXIT STATUS")
	r.item("0", "Stopped by a signal, or -version.")
	r.item("1", "fleetd failed or refused to serve (its log says why), for example an API listener other machines reach without TLS and authentication.")
	r.item("2", "Bad usage, or a configuration that does not load: an unknown key, a bad value, an etcd set-up that would expose etcd or send secrets in clear.")
	r.section("FILES")
	r.item(fleetd.DefaultConfigFile, "The configuration, fleet.conf(5).")
	r.item("/var/run/fleet.sock", "The API's unix socket (mode 0660, group fleet): whoever can connect is an administrator of the cluster.")
	r.item("/var/lib/fleet/etcd", "The embedded etcd's data (embedded_etcd_dir).")
	r.item("/run/fleet/units", "Unit files fleetd writes for systemd (units_directory).")
	r.item("/lib/systemd/system/fleet.service, /lib/systemd/system/fleet.socket", "The units that run fleetd (the Debian package installs them; enable them with systemctl enable --now fleet.socket fleet.service).")
	r.section("SEE ALSO")
	r.WriteString("fleet.conf(5), fleetctl(1), systemd.unit(5), etcd(1)\n")
	_, err := io.WriteString(w, r.String())
	return err
}

func writeFleetConf(w io.Writer, o Options) error {
	var r roff
	r.header("FLEET.CONF", "5", o)
	r.section("NAME")
	r.WriteString(`fleet.conf \- configuration of fleetd, fleet's daemon` + "\n")
	r.section("SYNOPSIS")
	r.WriteString(esc(fleetd.DefaultConfigFile) + "\n")
	r.section("DESCRIPTION")
	r.para("fleetd(8) reads this file when it starts and again on SIGHUP (systemctl reload fleet). " +
		"Each line is KEY=VALUE; a line starting with # or ; is a comment, one starting with [ is ignored; " +
		"a value may be double-quoted. A line that is not KEY=VALUE, or an unknown key, is refused with its line number, and fleetd does not start.")
	r.para("Every key can also be set in fleetd's environment as FLEET_<KEY> (upper case) and on its command line as -KEY: " +
		"a flag wins over the environment, which wins over the file. Durations are seconds (5, 0.5) or Go durations (1m30s).")
	r.para("Without any key fleetd runs an embedded single-member etcd on loopback and serves its API only on the unix socket /var/run/fleet.sock (mode 0660, group fleet): " +
		"a working one-machine cluster that nobody but root and the fleet group can reach.")
	r.section("KEYS")
	for _, k := range fleetd.ConfigKeys() {
		r.item(k.Key, keyText(k))
	}
	r.section("SECURITY")
	r.para("Whoever can write to fleet's etcd or call its API as admin runs commands as root on every machine. " +
		"fleetd refuses to start with an API listener other machines can reach unless it serves TLS (api_cert_file, api_key_file) and authenticates callers (api_tokens_file or api_client_ca_file), " +
		"unless api_insecure=true says so on purpose. An embedded etcd listening beyond loopback must serve https and require client certificates. " +
		"Mixed etcd set-ups are refused: TLS keys with an http:// endpoint, http:// next to https://, a password over plain http:// beyond loopback. " +
		"etcd_password is never accepted as a flag.")
	r.section("EXAMPLE")
	r.para("One machine of a cluster with a TLS etcd, serving its API over TLS with tokens and client certificates:")
	r.verbatim(`etcd_servers=https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379
etcd_cafile=/etc/fleet/tls/ca.pem
etcd_certfile=/etc/fleet/tls/node1.pem
etcd_keyfile=/etc/fleet/tls/node1-key.pem
public_ip=10.0.0.5
api_listen=10.0.0.5:49153
api_cert_file=/etc/fleet/tls/node1.pem
api_key_file=/etc/fleet/tls/node1-key.pem
api_client_ca_file=/etc/fleet/tls/ca.pem
api_tokens_file=/etc/fleet/tokens
metadata=region=eu,role=web`)
	r.section("SEE ALSO")
	r.WriteString("fleetd(8), fleetctl(1)\n")
	_, err := io.WriteString(w, r.String())
	return err
}
