package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// Tokens are the bearer tokens fleetd accepts, each with a name and a role.
// Only their SHA-256 digests are kept.
type Tokens struct {
	entries []token
}

type token struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

const digestPrefix = "sha256:"

// LoadTokens reads a tokens file (see ParseTokens). Errors name the file
// and the line, never a secret.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads one token per line, "NAME ROLE SECRET" separated by
// blanks, where SECRET is the token itself or "sha256:" and the 64 hex
// digits of its SHA-256 digest (so the file need not hold the token).
// Blank lines and lines starting with '#' are ignored. Names must be
// unique. Errors give the line number and never repeat a secret.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want NAME ROLE SECRET, found %d fields", n, len(f))
		}
		name, secret := f[0], f[2]
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: token %s: %w", n, name, err)
		}
		if prev, ok := seen[name]; ok {
			return nil, fmt.Errorf("line %d: token name %s is already used on line %d; names must be unique", n, name, prev)
		}
		seen[name] = n
		tok := token{name: name, role: role}
		if hexDigest, ok := strings.CutPrefix(secret, digestPrefix); ok {
			b, err := hex.DecodeString(hexDigest)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("line %d: token %s: a sha256: secret must be followed by the 64 hex digits of the token's SHA-256 digest", n, name)
			}
			copy(tok.digest[:], b)
		} else {
			tok.digest = sha256.Sum256([]byte(secret))
		}
		t.entries = append(t.entries, tok)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Lookup returns the identity of secret, if it is one of the tokens. It
// compares digests in constant time and looks at every token, so the time
// it takes tells nothing about how close a guess was.
func (t *Tokens) Lookup(secret string) (Identity, bool) {
	if t == nil {
		return Identity{}, false
	}
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, false
	}
	e := t.entries[found]
	return Identity{Name: e.name, Role: e.role, Via: ViaToken}, true
}
