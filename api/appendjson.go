package api

import (
	"unicode/utf8"
)

// jsonAppender is a listing row that encodes itself: at 100,000 rows
// encoding/json's reflection and its allocation per row were a large part
// of a listing's time on the server. Each appendJSON gives exactly what
// json.Marshal gives (list_encode_test.go checks it).
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

var (
	_ jsonAppender = (*UnitState)(nil)
	_ jsonAppender = (*UnitSummary)(nil)
)

func (s *UnitState) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, s.Name)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, s.Hash)
	b = append(b, `,"machineID":`...)
	b = appendJSONString(b, s.MachineID)
	b = append(b, `,"systemdLoadState":`...)
	b = appendJSONString(b, s.SystemdLoadState)
	b = append(b, `,"systemdActiveState":`...)
	b = appendJSONString(b, s.SystemdActiveState)
	b = append(b, `,"systemdSubState":`...)
	b = appendJSONString(b, s.SystemdSubState)
	b = appendOptional(b, `,"reason":`, s.Reason)
	return append(b, '}')
}

func (s *UnitSummary) appendJSON(b []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, s.Name)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, s.Hash)
	b = appendOptional(b, `,"desiredState":`, s.DesiredState)
	b = appendOptional(b, `,"currentState":`, s.CurrentState)
	b = appendOptional(b, `,"machineID":`, s.MachineID)
	if s.Global {
		b = append(b, `,"global":true`...)
	}
	b = appendOptional(b, `,"description":`, s.Description)
	b = appendOptional(b, `,"unplacedReason":`, s.UnplacedReason)
	return append(b, '}')
}

// appendOptional appends a field tagged omitempty.
func appendOptional(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
