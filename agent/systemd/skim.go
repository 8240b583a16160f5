package systemd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A connection to systemd's private socket receives every signal systemd
// emits, asked for or not, and on a busy host that is several
// PropertiesChanged per unit per change (one per interface, each a map of
// a dozen variants). godbus decodes every message in full, with reflection,
// before anyone can look at it: in a bulk start that was half of fleetd's
// CPU time. So the socket is read through a skimmer, which reads only each
// signal's header fields, hands what fleet needs to a filter, and passes on
// to godbus only the messages the filter keeps. Replies and errors always
// pass.

// signalHeader is what the skimmer reads of a signal: its header fields and,
// when the body starts with a string, that string. The slices point into
// the message and are valid only during the filter call.
type signalHeader struct {
	path, iface, member []byte
	arg0                []byte // nil unless the body's first argument is a string
}

// skimFilter decides whether godbus gets a signal.
type skimFilter func(h *signalHeader) bool

// Header fields, message types and bounds of the D-Bus wire format.
const (
	fieldPath      = 1
	fieldInterface = 2
	fieldMember    = 3
	fieldSignature = 8
	typeSignal     = 4
	// maxMessage is the D-Bus specification's limit of a message's length.
	maxMessage = 1 << 27
)

// busInterface is the bus daemon's own interface: its signals
// (NameAcquired, NameOwnerChanged) keep godbus's and fleet's view of names.
const busInterface = "org.freedesktop.DBus"

// skimmer is a D-Bus stream as godbus reads it: the authentication lines
// unchanged, then only the messages keep lets through.
type skimmer struct {
	io.ReadWriteCloser
	in     *bufio.Reader
	keep   skimFilter
	authed bool   // past the server's OK line: messages follow
	msg    []byte // the message being read, reused
	out    []byte // what godbus reads next
	h      signalHeader
}

func newSkimmer(c io.ReadWriteCloser, keep skimFilter) *skimmer {
	return &skimmer{ReadWriteCloser: c, in: bufio.NewReaderSize(c, 64<<10), keep: keep}
}

// Read gives godbus the next kept bytes. It is called by godbus's one
// reader goroutine only.
func (s *skimmer) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		var err error
		if s.authed {
			s.out, err = s.next()
		} else {
			s.out, err = s.line()
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// line reads one line of the authentication exchange. The server's OK
// ends it: the client answers BEGIN, and from then on the server sends
// messages only.
func (s *skimmer) line() ([]byte, error) {
	l, err := s.in.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return l, nil // an overlong line: godbus says what is wrong with it
	}
	if err != nil && len(l) == 0 {
		return nil, err
	}
	if bytes.HasPrefix(l, []byte("OK ")) {
		s.authed = true
	}
	return l, nil
}

// next reads messages until one is kept, and returns it.
func (s *skimmer) next() ([]byte, error) {
	for {
		if cap(s.msg) < 16 {
			s.msg = make([]byte, 16, 4096)
		}
		m := s.msg[:16]
		if _, err := io.ReadFull(s.in, m); err != nil {
			return nil, err
		}
		var order binary.ByteOrder
		switch m[0] {
		case 'l':
			order = binary.LittleEndian
		case 'B':
			order = binary.BigEndian
		default:
			return nil, fmt.Errorf("read from systemd: message with byte order %q", m[0])
		}
		fieldsLen, bodyLen := int(order.Uint32(m[12:])), int(order.Uint32(m[4:]))
		total := align(16+fieldsLen, 8) + bodyLen
		if fieldsLen > maxMessage || bodyLen > maxMessage || total > maxMessage {
			return nil, fmt.Errorf("read from systemd: message of %d+%d bytes, more than D-Bus allows", fieldsLen, bodyLen)
		}
		if cap(s.msg) < total {
			s.msg = append(s.msg[:16], make([]byte, total-16)...)
		}
		m = s.msg[:total]
		if _, err := io.ReadFull(s.in, m[16:]); err != nil {
			return nil, err
		}
		if m[1] != typeSignal || !s.h.parse(m, order, fieldsLen) || s.keep(&s.h) {
			return m, nil
		}
	}
}

// parse reads the header fields of message m. It reports false for a
// header it cannot walk (a field type it does not know): such a message is
// left to godbus.
func (h *signalHeader) parse(m []byte, order binary.ByteOrder, fieldsLen int) bool {
	*h = signalHeader{}
	end := 16 + fieldsLen
	var sig []byte
	for off := 16; ; {
		off = align(off, 8)
		if off >= end {
			break
		}
		if off+2 > end {
			return false
		}
		code, n := m[off], int(m[off+1])
		off += 2
		if off+n+1 > end {
			return false
		}
		typ := string(m[off : off+n])
		off += n + 1
		var v []byte
		switch typ {
		case "s", "o":
			off = align(off, 4)
			if off+4 > end {
				return false
			}
			l := int(order.Uint32(m[off:]))
			off += 4
			if l < 0 || off+l+1 > end {
				return false
			}
			v, off = m[off:off+l], off+l+1
		case "g":
			if off+1 > end {
				return false
			}
			l := int(m[off])
			off++
			if off+l+1 > end {
				return false
			}
			v, off = m[off:off+l], off+l+1
		case "u":
			off = align(off, 4) + 4
			if off > end {
				return false
			}
		default:
			return false
		}
		switch code {
		case fieldPath:
			h.path = v
		case fieldInterface:
			h.iface = v
		case fieldMember:
			h.member = v
		case fieldSignature:
			sig = v
		}
	}
	if len(sig) > 0 && sig[0] == 's' {
		off := align(end, 8)
		if off+4 > len(m) {
			return false
		}
		l := int(order.Uint32(m[off:]))
		off += 4
		if l < 0 || off+l > len(m) {
			return false
		}
		h.arg0 = m[off : off+l]
	}
	return true
}

func align(off, n int) int { return (off + n - 1) &^ (n - 1) }

// keepJobSignals is the filter of the connections calls go through: godbus
// gets only JobRemoved, which go-systemd turns into job results, and the
// bus daemon's signals.
func keepJobSignals(h *signalHeader) bool {
	return string(h.iface) == busInterface ||
		(string(h.iface) == "org.freedesktop.systemd1.Manager" && string(h.member) == "JobRemoved")
}

// unitChanges returns the filter of a subscription's connection: the unit
// of every PropertiesChanged of the Unit interface goes to changed, and
// godbus gets only the bus daemon's signals.
func unitChanges(changed func(unit string)) skimFilter {
	return func(h *signalHeader) bool {
		if string(h.iface) == busInterface {
			return true
		}
		if string(h.member) != "PropertiesChanged" || string(h.arg0) != unitInterface ||
			!bytes.HasPrefix(h.path, []byte(unitPathPrefix)) {
			return false
		}
		if name, ok := unescapePath(string(h.path[len(unitPathPrefix):])); ok {
			changed(name)
		}
		return false
	}
}
