package fleetd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadConfig feeds arbitrary fleet.conf files to LoadConfig: it must
// not panic, and either refuse the file with a usage error or return a
// configuration that validates. The seed corpus is in
// testdata/fuzz/FuzzReadConfig; `go test` runs it, `go test -fuzz
// FuzzReadConfig ./fleetd/` explores further.
func FuzzReadConfig(f *testing.F) {
	f.Add([]byte("etcd_servers=http://10.0.0.1:2379\nagent_ttl=5\n"))
	sample, err := os.ReadFile("../dist/fleet.conf.sample")
	if err != nil {
		f.Fatalf("the sample config seeds the corpus: %v", err)
	}
	f.Add(sample)
	dir := f.TempDir()
	none := func(string) string { return "" }
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(dir, "fleet.conf")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig([]string{"-config", path}, none)
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("a bad file is a usage error, got %v", err)
			}
			if pw := passwordIn(body); len(pw) >= 4 && strings.Contains(err.Error(), pw) {
				t.Fatalf("the error shows the password: %v", err)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("LoadConfig returned a configuration that does not validate: %v", err)
		}
	})
}

// passwordIn returns the value of the last etcd_password line of body.
func passwordIn(body []byte) string {
	pw := ""
	for _, line := range strings.Split(string(body), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "etcd_password" {
			pw = strings.TrimSpace(v)
		}
	}
	return pw
}
