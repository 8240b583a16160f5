package unit

import (
	"strings"
	"testing"
)

// FuzzParse checks that no input panics Parse, FleetOptions or Validate, and
// that whatever Parse accepts has canonical text that parses back to the same
// hash: bodies are stored by hash and read back on other machines.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		// Realistic.
		"[Unit]\nDescription=Web\nAfter=docker.service\n\n[Service]\nExecStart=/usr/bin/docker run --rm nginx\nRestart=always\n\n[X-Fleet]\nConflicts=web@*.service\nMachineMetadata=region=us-east \"role=front end\"\n",
		"[Unit]\nDescription=Sidekick for %i\n\n[Service]\nExecStart=/bin/sh -c \\\n  'while true; do etcdctl set /web/%i up; sleep 45; done'\n\n[X-Fleet]\nMachineOf=web@%i.service\n",
		"[Unit]\r\nDescription=CRLF\r\n[Service]\r\nExecStart=/bin/true \\\r\n  --flag\r\n[X-Fleet]\r\nGlobal=true\r\n",
		"# comment\n; comment \\\n still comment\n[X-Fleet]\nX-ConditionMachineID=abc\nX-ConditionMachineBootID=def\nX-Conflicts=a b\nMachineID=%n\nGlobal=yes no\nFoo=bar\n",
		// Nasty.
		"",
		"[",
		"]",
		"[]\n=\n",
		"[Unit] trailing\n",
		"[Unit\nDescription=x]\nA=b\n",
		"[Unit]\nnoequals",
		"[Unit]\nA=x\\",
		"[Unit]\nA=x\\ \nB=y\n",
		"[Unit]\nA=\\\n\n\\\n",
		"[X-Fleet]\nMachineMetadata=\"unclosed\n",
		"[X-Fleet]\nMachineMetadata=a=b c\n",
		"[X-Fleet]\nConflicts=[\nMachineOf=[\n",
		"pre[amble]\n#[x]\nA=1\n[S]\n\xff\xfe=\xc0\n",
		"[S]\nA=1\r\r\n\rB=2\n",
		"[S]\n" + strings.Repeat("x", 2047) + "=1\n",
		"\ufeff[Unit]\nDescription=bom\n",
	} {
		f.Add(seed)
	}
	names := []string{"web.service", "app@h2.service", "app@.service"}

	f.Fuzz(func(t *testing.T, input string) {
		u, err := ParseString(input)
		if err != nil {
			return
		}
		canonical := u.String()
		again, err := ParseString(canonical)
		if err != nil {
			t.Fatalf("canonical text of an accepted file does not parse: %v\ninput: %q\ncanonical: %q", err, input, canonical)
		}
		if again.Hash() != u.Hash() {
			t.Fatalf("hash changed on re-parse\ninput: %q\ncanonical: %q\nagain: %q", input, canonical, again.String())
		}
		for _, name := range names {
			x, _, err := u.FleetOptions(name)
			if err == nil {
				_ = x.Validate(name)
				_ = x.ConflictsWith(name)
				_ = x.MatchesMetadata(map[string]string{"region": "us"})
			}
		}
	})
}
