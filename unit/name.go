package unit

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// maxNameLen is systemd's UNIT_NAME_MAX, which fleet enforced too.
	maxNameLen = 256

	knownTypes = "service socket device mount automount swap target path timer snapshot slice scope"
)

// Name is a parsed unit name. "app@1.service" is an instance (Prefix "app",
// Instance "1", Type "service") of the template "app@.service" (Template
// true); "web.service" is neither (Prefix "web").
type Name struct {
	Prefix   string
	Instance string
	Type     string
	Template bool
}

// ParseName parses and validates a unit name with fleet's rules: non-empty,
// at most 256 characters, only A-Z a-z 0-9 : _ . @ -, a known unit type
// suffix, at most one '@' and a non-empty prefix. The error names the rule
// broken.
func ParseName(s string) (Name, error) {
	n, err := parseName(s)
	if err != nil {
		return Name{}, fmt.Errorf("invalid unit name %q: %w", clip(s), err)
	}
	return n, nil
}

func parseName(s string) (Name, error) {
	if s == "" {
		return Name{}, errors.New("empty")
	}
	if len(s) > maxNameLen {
		return Name{}, fmt.Errorf("longer than %d characters (%d)", maxNameLen, len(s))
	}
	for _, r := range s {
		if !nameChar(r) {
			return Name{}, fmt.Errorf("character %q not allowed (allowed: A-Z a-z 0-9 : _ . @ -)", r)
		}
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return Name{}, fmt.Errorf("no unit type suffix (one of: %s)", knownTypes)
	}
	base, typ := s[:dot], s[dot+1:]
	if !knownType(typ) {
		return Name{}, fmt.Errorf("unknown unit type %q (known: %s)", typ, knownTypes)
	}
	if strings.Count(base, "@") > 1 {
		return Name{}, errors.New("more than one '@'")
	}
	prefix, instance, at := strings.Cut(base, "@")
	if prefix == "" {
		if at {
			return Name{}, errors.New("empty prefix before '@'")
		}
		return Name{}, fmt.Errorf("empty prefix before %q", "."+typ)
	}
	return Name{Prefix: prefix, Instance: instance, Type: typ, Template: at && instance == ""}, nil
}

// String returns the unit name n was parsed from.
func (n Name) String() string {
	if n.Template || n.Instance != "" {
		return n.Prefix + "@" + n.Instance + "." + n.Type
	}
	return n.Prefix + "." + n.Type
}

// IsInstance reports whether n names an instance of a template unit.
func (n Name) IsInstance() bool {
	return n.Instance != ""
}

// TemplateName returns the name of the template n is an instance of
// ("app@1.service" -> "app@.service"), or "" when n is not an instance.
func (n Name) TemplateName() string {
	if !n.IsInstance() {
		return ""
	}
	return n.Prefix + "@." + n.Type
}

// Normalize appends ".service" to s unless it already ends in a known unit
// type suffix, as fleetctl did with its arguments: "web" -> "web.service",
// "web.socket" unchanged. The empty string is returned as is, so that
// ParseName reports it as empty rather than as ".service".
func Normalize(s string) string {
	if s == "" {
		return s
	}
	if dot := strings.LastIndexByte(s, '.'); dot >= 0 && knownType(s[dot+1:]) {
		return s
	}
	return s + ".service"
}

func nameChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune(":_.@-", r)
}

func knownType(t string) bool {
	switch t {
	case "service", "socket", "device", "mount", "automount", "swap",
		"target", "path", "timer", "snapshot", "slice", "scope":
		return true
	}
	return false
}
