package unit

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	sdunit "github.com/coreos/go-systemd/v22/unit"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    []Option
		wantErr string
	}{
		{
			name:  "sections in file order",
			input: "[Unit]\nDescription=Web\nAfter=docker.service\n\n[Service]\nExecStart=/usr/bin/web\n\n[X-Fleet]\nGlobal=true\n",
			want: []Option{
				{"Unit", "Description", "Web"},
				{"Unit", "After", "docker.service"},
				{"Service", "ExecStart", "/usr/bin/web"},
				{"X-Fleet", "Global", "true"},
			},
		},
		{
			name:  "repeated keys kept in order",
			input: "[Service]\nExecStartPre=/bin/a\nExecStartPre=/bin/b\nExecStartPre=\n",
			want: []Option{
				{"Service", "ExecStartPre", "/bin/a"},
				{"Service", "ExecStartPre", "/bin/b"},
				{"Service", "ExecStartPre", ""},
			},
		},
		{
			name:  "repeated section keeps file order",
			input: "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
			want:  []Option{{"Unit", "A", "1"}, {"Service", "B", "2"}, {"Unit", "C", "3"}},
		},
		{
			name:  "comments and blank lines skipped",
			input: "# top\n; also top\n[Unit]\n  # indented\n\nDescription=x # not a comment\n;Foo=bar\n",
			want:  []Option{{"Unit", "Description", "x # not a comment"}},
		},
		{
			name:  "continuation lines kept as go-systemd returns them",
			input: "[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\nUser=core\n",
			want: []Option{
				{"Service", "ExecStart", "/bin/sh -c \\\n  'echo hi'"},
				{"Service", "User", "core"},
			},
		},
		{
			name:  "continuation ended by a blank line",
			input: "[Service]\nExecStart=/bin/true \\\n\nUser=core\n",
			want:  []Option{{"Service", "ExecStart", "/bin/true \\\n"}, {"Service", "User", "core"}},
		},
		{
			name:  "continuation before end of input",
			input: "[Service]\nExecStart=/bin/true \\\n",
			want:  []Option{{"Service", "ExecStart", "/bin/true \\\n"}},
		},
		{
			name:  "CRLF line ends, continuation included",
			input: "[Service]\r\nExecStart=/bin/sh \\\r\n  -c x\r\nUser=core\r\n",
			want:  []Option{{"Service", "ExecStart", "/bin/sh \\\n  -c x"}, {"Service", "User", "core"}},
		},
		{
			name:  "whitespace around names and values trimmed",
			input: "[Unit]\n   Description  =   spaced out   \n",
			want:  []Option{{"Unit", "Description", "spaced out"}},
		},
		{
			name:  "value may hold '=' and quotes",
			input: "[Service]\nEnvironment=\"A=1\" \"B=2\"\n",
			want:  []Option{{"Service", "Environment", `"A=1" "B=2"`}},
		},
		{
			name:  "text before the first section ignored, as systemd does",
			input: "Description=stray\n[Unit]\nDescription=kept\n",
			want:  []Option{{"Unit", "Description", "kept"}},
		},
		{
			name:  "no final newline",
			input: "[Unit]\nDescription=x",
			want:  []Option{{"Unit", "Description", "x"}},
		},
		{
			name:    "empty",
			input:   "",
			wantErr: "parse unit file: unit file is empty",
		},
		{
			name:    "only whitespace",
			input:   " \n\t\r\n",
			wantErr: "parse unit file: unit file is empty",
		},
		{
			name:    "only comments and headers",
			input:   "# nothing\n[Unit]\n[Service]\n",
			wantErr: "parse unit file: unit file has no options",
		},
		{
			name:    "garbage with no section",
			input:   "hello world",
			wantErr: "parse unit file: unit file has no options",
		},
		{
			name:    "option without '='",
			input:   "[Unit]\nDescription=x\nnonsense\nAfter=y\n",
			wantErr: `parse unit file: line 3: "nonsense" has no '='`,
		},
		{
			name:    "option without '=' at end of input",
			input:   "[Unit]\nDescription=x\n\nnonsense",
			wantErr: `parse unit file: line 4: "nonsense" has no '='`,
		},
		{
			name:    "section header never closed",
			input:   "[Unit]\nDescription=x\n[Service\nExecStart=/bin/true\n",
			wantErr: `parse unit file: line 3: section header "[Service" has no closing ']'`,
		},
		{
			name:    "section header never closed, '[' in a value before it",
			input:   "[Unit]\nDescription=[x\n# [y\n  [Service\n",
			wantErr: `parse unit file: line 4: section header "[Service" has no closing ']'`,
		},
		{
			name:    "text after section header",
			input:   "[Unit]\nA=1\n[Service] junk\nB=2\n",
			wantErr: `parse unit file: line 3: unexpected text after section header in "[Service] junk"`,
		},
		{
			name:    "section header spanning lines",
			input:   "[Unit\n]\nA=1\n",
			wantErr: `parse unit file: section header "[Unit" is not closed on its own line`,
		},
		{
			name:    "option with no name",
			input:   "[Unit]\n=value\n",
			wantErr: `parse unit file: [Unit]: option "=value" has no name`,
		},
		{
			name:    "backslash at end of input",
			input:   "[Service]\nExecStart=/bin/true \\",
			wantErr: `parse unit file: [Service] ExecStart: value ends in a backslash that continues onto nothing`,
		},
		{
			name:    "backslash followed by whitespace",
			input:   "[Service]\nExecStart=/bin/true \\ \nUser=core\n",
			wantErr: `parse unit file: [Service] ExecStart: value ends in a backslash`,
		},
		{
			name:    "invalid UTF-8",
			input:   "[Unit]\nDescription=ok\nAfter=caf\xe9.service\n",
			wantErr: "parse unit file: line 3: not valid UTF-8",
		},
		{
			// Found by FuzzParse: go-systemd widened each bad byte of the name
			// to U+FFFD, so the canonical line broke the length limit.
			name:    "invalid UTF-8 in a name",
			input:   "[S]\n" + strings.Repeat("\xff", 700) + "=1\n",
			wantErr: "parse unit file: line 2: not valid UTF-8",
		},
		{
			name:  "UTF-8 kept as is",
			input: "[Unit]\nDescription=café ☕\nRäume=ja\n",
			want:  []Option{{"Unit", "Description", "café ☕"}, {"Unit", "Räume", "ja"}},
		},
		{
			name:    "line too long",
			input:   "[Unit]\nA=1\nDescription=" + strings.Repeat("x", 2048) + "\n",
			wantErr: "parse unit file: line 3: line too long (max 2048 bytes)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString(tt.input)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, f)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, f.Options)
		})
	}
}

func TestParseLineTooLongIsErrLineTooLong(t *testing.T) {
	_, err := ParseString("[Unit]\nDescription=" + strings.Repeat("x", 5000))
	require.ErrorIs(t, err, sdunit.ErrLineTooLong)
}

// go-systemd's own length check depends on what it has buffered; ours must
// give the same answer wherever the long line sits in the input.
func TestParseLineLimitIndependentOfPosition(t *testing.T) {
	long := "Description=" + strings.Repeat("x", 2100) + "\n"
	for _, pad := range []int{0, 1000, 2000, 3000, 4000, 4096, 5000} {
		input := "[Unit]\n" + strings.Repeat("A=1\n", pad/4) + long
		_, err := ParseString(input)
		require.ErrorIs(t, err, sdunit.ErrLineTooLong, "pad %d", pad)
	}
	_, err := ParseString("[Unit]\nDescription=" + strings.Repeat("x", 2047-len("Description=")) + "\n")
	require.NoError(t, err, "a 2047-byte line fits")
}

func TestParseSizeLimit(t *testing.T) {
	header := "[Unit]\n"
	line := "Description=" + strings.Repeat("x", 1000) + "\n"
	body := header + strings.Repeat(line, (maxFileSize-len(header))/len(line))
	body += "A=" + strings.Repeat("y", maxFileSize-len(body)-len("A=\n")) + "\n"
	require.Len(t, body, maxFileSize)
	_, err := ParseString(body)
	require.NoError(t, err)

	_, err = ParseString(body + "\n")
	require.EqualError(t, err, "parse unit file: larger than 1048576 bytes")
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Parse(iotest.ErrReader(boom))
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "parse unit file: read: boom")
}

func TestParseByteAtATimeReader(t *testing.T) {
	f, err := Parse(iotest.OneByteReader(strings.NewReader("[Unit]\nDescription=x\n")))
	require.NoError(t, err)
	require.Equal(t, []Option{{"Unit", "Description", "x"}}, f.Options)
}

func TestString(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name:  "normalised spacing and comments dropped",
			input: "# c\n[Unit]\n  Description =  Web  \n\n\n[Service]\nExecStart=/bin/web\n",
			want:  "[Unit]\nDescription=Web\n\n[Service]\nExecStart=/bin/web\n",
		},
		{
			name:  "options grouped by section",
			input: "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
			want:  "[Unit]\nA=1\nC=3\n\n[Service]\nB=2\n",
		},
		{
			name:  "continuation kept",
			input: "[Service]\nExecStart=/bin/sh \\\n  -c x\n",
			want:  "[Service]\nExecStart=/bin/sh \\\n  -c x\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString(tt.input)
			require.NoError(t, err)
			require.Equal(t, tt.want, f.String())
		})
	}
}

func TestHashStable(t *testing.T) {
	canonical := "[Unit]\nDescription=Web\n\n[Service]\nExecStart=/bin/web\n"
	tests := []struct {
		name  string
		input string
	}{
		{name: "canonical", input: canonical},
		{name: "extra blank lines", input: "\n\n[Unit]\n\nDescription=Web\n\n\n\n[Service]\n\nExecStart=/bin/web\n\n"},
		{name: "spaces around '='", input: "[Unit]\nDescription = Web\n[Service]\nExecStart =   /bin/web   \n"},
		{name: "indented options", input: "[Unit]\n\tDescription=Web\n[Service]\n    ExecStart=/bin/web\n"},
		{name: "comments", input: "# web\n[Unit]\n; about\nDescription=Web\n[Service]\n# run\nExecStart=/bin/web\n"},
		{name: "CRLF", input: "[Unit]\r\nDescription=Web\r\n[Service]\r\nExecStart=/bin/web\r\n"},
		{name: "no final newline", input: "[Unit]\nDescription=Web\n[Service]\nExecStart=/bin/web"},
		{name: "empty sections dropped", input: "[Install]\n[Unit]\nDescription=Web\n[Timer]\n[Service]\nExecStart=/bin/web\n"},
	}
	want, err := ParseString(canonical)
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString(tt.input)
			require.NoError(t, err)
			require.Equal(t, want.Hash(), f.Hash())
		})
	}
}

func TestHashDiffers(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{name: "value", a: "[Unit]\nDescription=a\n", b: "[Unit]\nDescription=b\n"},
		{name: "section", a: "[Unit]\nDescription=a\n", b: "[Service]\nDescription=a\n"},
		{name: "option order within a section", a: "[Unit]\nA=1\nB=2\n", b: "[Unit]\nB=2\nA=1\n"},
		{name: "section order", a: "[A]\nx=1\n[B]\ny=2\n", b: "[B]\ny=2\n[A]\nx=1\n"},
		{name: "inner whitespace", a: "[Unit]\nDescription=a b\n", b: "[Unit]\nDescription=a  b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseString(tt.a)
			require.NoError(t, err)
			b, err := ParseString(tt.b)
			require.NoError(t, err)
			require.NotEqual(t, a.Hash(), b.Hash())
		})
	}
}

func TestHash(t *testing.T) {
	f, err := ParseString("[Unit]\nDescription=x\n")
	require.NoError(t, err)
	h := f.Hash()
	// sha1("[Unit]\nDescription=x\n"), computed with sha1sum.
	const want = "9fcce57bebda098e6fb9d87b2543194856511ef2"
	require.Equal(t, want, h.String())
	require.Equal(t, want[:7], h.Short())

	parsed, err := ParseHash(want)
	require.NoError(t, err)
	require.Equal(t, h, parsed)
	upper, err := ParseHash(strings.ToUpper(want))
	require.NoError(t, err)
	require.Equal(t, h, upper)

	text, err := h.MarshalText()
	require.NoError(t, err)
	require.Equal(t, want, string(text))
	var back Hash
	require.NoError(t, back.UnmarshalText(text))
	require.Equal(t, h, back)
}

func TestParseHashErrors(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{name: "empty", input: "", wantErr: `invalid unit hash "": want 40 hex characters, got 0`},
		{name: "short", input: "9fcce57", wantErr: "want 40 hex characters, got 7"},
		{name: "long", input: strings.Repeat("a", 41), wantErr: "got 41"},
		{name: "not hex", input: strings.Repeat("g", 40), wantErr: "invalid byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHash(tt.input)
			require.ErrorContains(t, err, tt.wantErr)
			var h Hash
			require.Error(t, h.UnmarshalText([]byte(tt.input)))
		})
	}
}

func TestDescription(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{name: "present", input: "[Unit]\nDescription=Web server\n", want: "Web server"},
		{name: "last wins", input: "[Unit]\nDescription=first\nDescription=second\n", want: "second"},
		{name: "only in [Unit]", input: "[Service]\nDescription=no\n[Unit]\nAfter=x\n", want: ""},
		{name: "continuation joined", input: "[Unit]\nDescription=long \\\n  text\n", want: "long    text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseString(tt.input)
			require.NoError(t, err)
			require.Equal(t, tt.want, f.Description())
		})
	}
}

func TestNewFile(t *testing.T) {
	opts := []Option{{"Unit", "Description", "x"}, {"Service", "ExecStart", "/bin/true"}}
	f := NewFile(opts)
	opts[0].Value = "changed"
	require.Equal(t, "x", f.Description(), "NewFile copies its input")

	parsed, err := ParseString(f.String())
	require.NoError(t, err)
	require.Equal(t, f.Options, parsed.Options)
	require.Equal(t, f.Hash(), parsed.Hash())
}
