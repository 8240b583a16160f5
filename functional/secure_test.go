package functional

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/internal/pki"
)

// TestSecureCluster runs the README's secure multi-machine set-up: a
// 3-member etcd serving clients and peers over TLS with client-certificate
// auth, and every fleetd serving its API over TLS with tokens and client
// certificates from one CA. fleetctl runs on the machine, as an operator's
// workstation would, against https endpoints; every refusal is checked.
func TestSecureCluster(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared})
	sec := e.Security
	require.NotNil(t, sec, "clusters are secured by default")
	hs := e.Hosts()
	h1, h2 := hs[0], hs[1]
	endpoint := func(h *hosts.Host) string { return "https://" + h.IP + ":" + platform.APIPort }
	hello := filepath.Join("fixtures", "units", "hello.service")

	// workstation runs this module's fleetctl on the machine with args and
	// the environment env (no FLEETCTL_* of the test process leaks in).
	workstation := func(t *testing.T, env []string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "fleetctl"), args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	admin := func(h *hosts.Host) []string {
		return []string{"FLEETCTL_ENDPOINT=" + endpoint(h), "FLEETCTL_CA_FILE=" + sec.CAFile, "FLEETCTL_TOKEN=" + sec.AdminToken}
	}

	t.Run("an admin token starts, lists and journals across hosts", func(t *testing.T) {
		e.scenario(t)
		out, err := workstation(t, admin(h1), "start", hello)
		require.NoError(t, err, out)
		out, err = workstation(t, admin(h2), "list-units", "--no-legend")
		require.NoError(t, err, out)
		require.Regexp(t, `hello\.service\s+\S+\s+active\s+running`, out)
		where := e.unitOn(t, "hello.service")
		// Ask a fleetd on another machine than the unit's: the journal is
		// forwarded fleetd to fleetd over TLS with the peer certificates.
		var other *hosts.Host
		for _, h := range hs {
			if h != where {
				other = h
				break
			}
		}
		require.NoError(t, platform.Wait(e.ctx, 10*time.Second, func() bool {
			out, err = workstation(t, admin(other), "journal", "-n", "5", "hello.service")
			return err == nil && strings.Contains(out, "Hello, World!")
		}), "journal of hello.service through %s: %v\n%s", other.Name, err, out)
	})

	tlsCA, err := pki.ClientConfig(sec.CAFile, "", "")
	require.NoError(t, err)

	t.Run("no credentials: 401 in fleet's error shape", func(t *testing.T) {
		code, body, err := e.APIWith(h1, tlsCA, "").Do(e.ctx, http.MethodGet, "/units", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, code, "%s", body)
		var fe struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &fe), "%s", body)
		require.Equal(t, http.StatusUnauthorized, fe.Error.Code)
		require.Contains(t, strings.ToLower(fe.Error.Message), "token", "the message says what to send")

		code, body, err = e.APIWith(h1, tlsCA, "not-a-token").Do(e.ctx, http.MethodGet, "/units", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, code, "%s", body)

		out, err := workstation(t, []string{"FLEETCTL_ENDPOINT=" + endpoint(h1), "FLEETCTL_CA_FILE=" + sec.CAFile}, "list-units")
		require.Error(t, err)
		require.Contains(t, out, "token", "fleetctl says what is missing: %s", out)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
	})

	t.Run("a read token lists but cannot start: 403", func(t *testing.T) {
		e.scenario(t)
		env := []string{"FLEETCTL_ENDPOINT=" + endpoint(h1), "FLEETCTL_CA_FILE=" + sec.CAFile, "FLEETCTL_TOKEN=" + sec.ReadToken}
		out, err := workstation(t, env, "list-machines", "--no-legend")
		require.NoError(t, err, out)
		require.Equal(t, 3, strings.Count(strings.TrimSpace(out), "\n")+1, out)
		out, err = workstation(t, env, "start", hello)
		require.Error(t, err, out)
		require.Contains(t, out, "read", "the refusal names the role: %s", out)
		code, body, err := e.APIWith(h1, tlsCA, sec.ReadToken).Do(e.ctx, http.MethodPut, "/units/hello.service", `{"desiredState":"launched"}`)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, code, "%s", body)
		units, err := e.API(h1).Units(e.ctx)
		require.NoError(t, err)
		require.Empty(t, units, "nothing was submitted")
	})

	t.Run("a client certificate of role read lists but cannot start", func(t *testing.T) {
		e.scenario(t)
		cert, key, err := sec.Issue("auditor", pki.CertRequest{Kind: pki.Client, CommonName: "auditor", Role: pki.RoleRead})
		require.NoError(t, err)
		env := []string{"FLEETCTL_ENDPOINT=" + endpoint(h2), "FLEETCTL_CA_FILE=" + sec.CAFile, "FLEETCTL_CERT_FILE=" + cert, "FLEETCTL_KEY_FILE=" + key}
		out, err := workstation(t, env, "list-units")
		require.NoError(t, err, out)
		out, err = workstation(t, env, "start", hello)
		require.Error(t, err, out)
		require.Contains(t, out, "auditor", "the refusal names the identity: %s", out)
	})

	t.Run("plain http to the TLS port fails", func(t *testing.T) {
		code, body, err := e.APIWith(h1, nil, sec.AdminToken).Do(e.ctx, http.MethodGet, "/units", "")
		if err == nil {
			require.Equal(t, http.StatusBadRequest, code, "Go's TLS server answers plain HTTP with 400: %s", body)
		}
		out, err := workstation(t, []string{"FLEETCTL_ENDPOINT=http://" + h1.IP + ":" + platform.APIPort}, "list-units")
		require.Error(t, err, out)
	})

	t.Run("a client certificate from another CA is refused", func(t *testing.T) {
		// Another cluster's credentials: an admin client certificate of a CA this one does not trust.
		rogue, err := platform.NewSecurity(t.TempDir(), nil)
		require.NoError(t, err)
		cert, key := rogue.AdminCertFile, rogue.AdminKeyFile

		pair, err := tls.LoadX509KeyPair(cert, key)
		require.NoError(t, err)
		cfg := tlsCA.Clone()
		cfg.Certificates = []tls.Certificate{pair}
		code, body, err := e.APIWith(h1, cfg, "").Do(e.ctx, http.MethodGet, "/units", "")
		require.True(t, err != nil || code == http.StatusUnauthorized, "a rogue certificate must not authenticate: %d %s", code, body)

		out, err := workstation(t, []string{"FLEETCTL_ENDPOINT=" + endpoint(h1), "FLEETCTL_CA_FILE=" + sec.CAFile,
			"FLEETCTL_CERT_FILE=" + cert, "FLEETCTL_KEY_FILE=" + key}, "start", hello)
		require.Error(t, err, out)
		units, err := e.API(h1).Units(e.ctx)
		require.NoError(t, err)
		require.Empty(t, units, "nothing was submitted")
	})

	t.Run("a fleetd without etcd certificates cannot register", func(t *testing.T) {
		e.scenario(t)
		h, err := e.AddHost(e.ctx)
		require.NoError(t, err)
		conf := e.FleetConf(h)
		// An operator who forgot etcd's client certificate: the CA alone.
		conf["etcd_cafile"] = platform.HostCAFile
		conf["etcd_certfile"], conf["etcd_keyfile"] = "", ""
		require.NoError(t, e.InstallFleet(e.ctx, h, conf))
		// It never joins: etcd refuses the TLS handshake without a
		// client certificate. Kill it before heal counts it as a machine.
		time.Sleep(2 * settle)
		out := e.fleetctl(t, h1, "list-machines", "--no-legend", "--full")
		require.NotContains(t, out, h.MachineID, "a fleetd without an etcd client certificate registered")
		require.NoError(t, h.Kill())
	})

	t.Run("a plain non-loopback listener without api_insecure refuses to start", func(t *testing.T) {
		e.scenario(t)
		require.NoError(t, os.WriteFile(h1.Path("/root/plain.conf"), []byte(""), 0o644))
		ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
		defer cancel()
		out, err := h1.Exec(ctx, "/usr/bin/fleetd", "-config", "/root/plain.conf", "-api_socket", "",
			"-api_listen", h1.IP+":49999", "-etcd_servers", e.EtcdServers, "-machine_id", "0123456789abcdef0123456789abcdef")
		require.Error(t, err, "fleetd must exit non-zero: %s", out)
		require.Contains(t, string(out), "api_insecure", "the message says how to run it anyway: %s", out)
	})
}
