package unit

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

// Hash is the SHA1 of a unit file's canonical text. fleet stores bodies under
// it and compares units by it.
type Hash [sha1.Size]byte

// String returns h as 40 lowercase hex characters.
func (h Hash) String() string {
	return hex.EncodeToString(h[:])
}

// Short returns the first 7 hex characters of h, as fleetctl printed them.
func (h Hash) Short() string {
	return h.String()[:7]
}

// ParseHash parses the 40 hex characters of a Hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("invalid unit hash %q: want %d hex characters, got %d", clip(s), hex.EncodedLen(len(h)), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("invalid unit hash %q: %w", s, err)
	}
	return h, nil
}

// MarshalText encodes h as its hex string, so JSON carries the same form
// fleet's API and key layout use.
func (h Hash) MarshalText() ([]byte, error) {
	return []byte(h.String()), nil
}

// UnmarshalText is ParseHash for encoding packages.
func (h *Hash) UnmarshalText(text []byte) error {
	parsed, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = parsed
	return nil
}
