package unit

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	sdunit "github.com/coreos/go-systemd/v22/unit"
)

// Option is one line of a unit file, as in fleet v1's API.
type Option struct {
	Section string
	Name    string
	Value   string
}

// File is a parsed unit file: its options in file order.
type File struct {
	Options []Option
}

// maxFileSize bounds what Parse reads. fleet keeps bodies in etcd, whose
// default request limit is 1.5 MiB, and real unit files are a few KiB.
const maxFileSize = 1 << 20

// Parse reads unit file text from r and lexes it with go-systemd. Errors say
// what is wrong and, for syntax errors, on which line. Empty input, input with
// no Name=Value options at all, and input over 1 MiB are errors.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("parse unit file: read: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("parse unit file: larger than %d bytes", maxFileSize)
	}
	opts, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse unit file: %w", err)
	}
	return &File{Options: opts}, nil
}

// ParseString is Parse for text already in memory.
func ParseString(s string) (*File, error) {
	return Parse(strings.NewReader(s))
}

// NewFile returns a File holding a copy of opts. The options are not checked:
// when they come from outside (fleet v1's API takes options, not text), run
// ParseString(f.String()) to apply Parse's rules.
func NewFile(opts []Option) *File {
	return &File{Options: append([]Option(nil), opts...)}
}

// String returns the canonical text of f: go-systemd's Serialize of its
// options, which groups them by section in order of first appearance. This is
// the text fleet stores and hashes.
func (f *File) String() string {
	opts := make([]*sdunit.UnitOption, len(f.Options))
	for i, o := range f.Options {
		opts[i] = sdunit.NewUnitOption(o.Section, o.Name, o.Value)
	}
	var b strings.Builder
	// Serialize returns an in-memory buffer; copying from it cannot fail.
	_, _ = io.Copy(&b, sdunit.Serialize(opts))
	return b.String()
}

// Hash returns the SHA1 of f's canonical text.
func (f *File) Hash() Hash {
	return Hash(sha1.Sum([]byte(f.String())))
}

// Description returns the value of Description= in the [Unit] section, or ""
// if there is none. As in systemd, the last assignment wins.
func (f *File) Description() string {
	var d string
	for _, o := range f.Options {
		if o.Section == "Unit" && o.Name == "Description" {
			d = o.Value
		}
	}
	return joinContinuations(d)
}

// joinContinuations joins a value's continuation lines as systemd does.
// go-systemd keeps the backslash-newline pairs in the values it returns.
func joinContinuations(v string) string {
	return strings.TrimSpace(strings.ReplaceAll(v, "\\\n", " "))
}

func parse(data []byte) ([]Option, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("unit file is empty")
	}
	// systemd reads CRLF line ends, but go-systemd strips the CR only at the
	// end of the input, so a line ending in "\\\r\n" would not continue.
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	// go-systemd turns each invalid byte in an option name into the 3-byte
	// U+FFFD, which can push a canonical line past the length limit; systemd
	// ignores assignments that are not UTF-8 anyway.
	if i := firstInvalidUTF8(data); i < len(data) {
		n, _ := lineAt(data, i)
		return nil, fmt.Errorf("line %d: not valid UTF-8", n)
	}
	if err := checkLineLength(data); err != nil {
		return nil, err
	}
	raw, consumed, err := deserialize(data)
	if err != nil {
		return nil, lexError(data, consumed, err)
	}
	if len(raw) == 0 {
		return nil, errors.New("unit file has no options: expected a [Section] header followed by Name=Value lines")
	}
	opts := make([]Option, len(raw))
	for i, o := range raw {
		opts[i] = Option{Section: o.Section, Name: o.Name, Value: o.Value}
		if err := checkOption(opts[i]); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// checkLineLength enforces go-systemd's line limit itself. go-systemd checks
// only the bytes it happens to have buffered, so the same long line could pass
// in one file and fail once reformatted into the canonical text.
func checkLineLength(data []byte) error {
	line, run := 1, 0
	for _, b := range data {
		switch b {
		case '\n':
			line++
			run = 0
			continue
		case '\r':
			run = 0
			continue
		}
		run++
		if run >= sdunit.SYSTEMD_LINE_MAX {
			return fmt.Errorf("line %d: %w", line, sdunit.ErrLineTooLong)
		}
	}
	return nil
}

// checkOption refuses what go-systemd lexes but cannot give back: each case
// would make the canonical text parse to something else.
func checkOption(o Option) error {
	switch {
	case strings.Contains(o.Section, "\n"):
		first, _, _ := strings.Cut(o.Section, "\n")
		return fmt.Errorf("section header %q is not closed on its own line", "["+first)
	case o.Name == "":
		return fmt.Errorf("[%s]: option %q has no name", o.Section, "="+clip(o.Value))
	case strings.HasSuffix(o.Value, `\`):
		// Serialize would put a newline after the backslash, turning it into a
		// continuation that swallows the next line.
		return fmt.Errorf("[%s] %s: value ends in a backslash that continues onto nothing "+
			"(remove it, or the whitespace after it)", o.Section, o.Name)
	}
	return nil
}

// deserialize runs go-systemd's lexer over data and reports how many bytes it
// read before it stopped.
func deserialize(data []byte) (opts []*sdunit.UnitOption, consumed int, err error) {
	// A panic in go-systemd must not take the daemon down with a bad unit
	// file. Its lexer runs on a goroutine of its own, where a panic cannot be
	// recovered, so this guards only the part running on ours; FuzzParse has
	// found no panic in either.
	defer func() {
		if p := recover(); p != nil {
			opts, err = nil, fmt.Errorf("go-systemd unit lexer panicked: %v", p)
		}
	}()
	r := &byteReader{data: data}
	opts, err = sdunit.DeserializeOptions(r)
	return opts, r.off, err
}

// byteReader hands out one byte per Read. go-systemd's errors carry no
// position, but its bufio.Reader then holds nothing beyond what the lexer has
// taken (bar the rest of a rune), so the bytes handed out locate the error.
// With so little buffered, go-systemd's own line-length check never fires;
// checkLineLength has applied the limit already.
type byteReader struct {
	data []byte
	off  int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[r.off]
	r.off++
	return 1, nil
}

// lexError rewrites a go-systemd lexing error to name the line and say what is
// wrong. go-systemd v22.7.0 has no typed errors for these, so they are told
// apart by message; anything unrecognised is passed through with its line.
func lexError(data []byte, consumed int, err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unable to find end of section"):
		n, text := lineAt(data, openBracket(data))
		return fmt.Errorf("line %d: section header %q has no closing ']'", n, text)
	case errors.Is(err, io.EOF), strings.HasPrefix(msg, "unexpected newline"):
		// io.EOF: the input ended inside an option name.
		n, text := lineAt(data, consumed-1)
		return fmt.Errorf("line %d: %q has no '=' (expected Name=Value, a [Section] header or a comment)", n, text)
	case strings.HasPrefix(msg, "found garbage after section name"):
		n, text := lineAt(data, consumed-1)
		return fmt.Errorf("line %d: unexpected text after section header in %q", n, text)
	default:
		n, _ := lineAt(data, consumed-1)
		return fmt.Errorf("line %d: %w", n, err)
	}
}

// openBracket returns the offset of the '[' whose section header never
// closed. The lexer read from it to the end of the input looking for ']', so
// rather than re-lex by hand, close the header and ask go-systemd for the
// last section's name: the '[' sits just before it.
func openBracket(data []byte) int {
	closed := append(data[:len(data):len(data)], ']')
	secs, err := sdunit.DeserializeSections(&byteReader{data: closed})
	if err != nil || len(secs) == 0 {
		return len(data) - 1
	}
	return len(data) - len(secs[len(secs)-1].Section) - 1
}

// lineAt returns the 1-based number and the trimmed, clipped text of the line
// holding data[i].
func lineAt(data []byte, i int) (int, string) {
	i = max(0, min(i, len(data)-1))
	start := bytes.LastIndexByte(data[:i], '\n') + 1
	end := len(data)
	if j := bytes.IndexByte(data[i:], '\n'); j >= 0 {
		end = i + j
	}
	return 1 + bytes.Count(data[:i], []byte("\n")), clip(strings.TrimSpace(string(data[start:end])))
}

// clip shortens s for quoting in an error message.
func clip(s string) string {
	const maxLen = 60
	for i := range s {
		if i >= maxLen {
			return s[:i] + "..."
		}
	}
	return s
}
