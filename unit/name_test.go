package unit

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		want     Name
		template string
		wantErr  string
	}{
		{name: "plain", input: "web.service", want: Name{Prefix: "web", Type: "service"}},
		{name: "instance", input: "app@1.service", want: Name{Prefix: "app", Instance: "1", Type: "service"}, template: "app@.service"},
		{name: "template", input: "app@.service", want: Name{Prefix: "app", Type: "service", Template: true}},
		{name: "dots in prefix", input: "my.app.socket", want: Name{Prefix: "my.app", Type: "socket"}},
		{name: "dots in instance", input: "vm@10.0.0.1.timer", want: Name{Prefix: "vm", Instance: "10.0.0.1", Type: "timer"}, template: "vm@.timer"},
		{name: "all allowed characters", input: "Az09:_.-x@i:_.-.mount", want: Name{Prefix: "Az09:_.-x", Instance: "i:_.-", Type: "mount"}, template: "Az09:_.-x@.mount"},
		{name: "at the length limit", input: strings.Repeat("a", 256-len(".scope")) + ".scope", want: Name{Prefix: strings.Repeat("a", 250), Type: "scope"}},
		{name: "empty", input: "", wantErr: `invalid unit name "": empty`},
		{name: "too long", input: strings.Repeat("a", 257-len(".service")) + ".service", wantErr: "longer than 256 characters (257)"},
		{name: "space", input: "a b.service", wantErr: `invalid unit name "a b.service": character ' ' not allowed (allowed: A-Z a-z 0-9 : _ . @ -)`},
		{name: "slash", input: "a/b.service", wantErr: "character '/' not allowed"},
		{name: "backslash", input: `a\x2db.service`, wantErr: `character '\\' not allowed`},
		{name: "percent", input: "a%i.service", wantErr: "character '%' not allowed"},
		{name: "non-ASCII", input: "café.service", wantErr: "character 'é' not allowed"},
		{name: "no type suffix", input: "web", wantErr: `invalid unit name "web": no unit type suffix (one of: service socket`},
		{name: "unknown type", input: "web.conf", wantErr: `unknown unit type "conf" (known: service socket`},
		{name: "busname no longer known", input: "a.busname", wantErr: `unknown unit type "busname"`},
		{name: "empty type", input: "web.", wantErr: `unknown unit type ""`},
		{name: "two '@'", input: "a@b@c.service", wantErr: "more than one '@'"},
		{name: "empty prefix before '@'", input: "@1.service", wantErr: "empty prefix before '@'"},
		{name: "empty prefix before suffix", input: ".service", wantErr: `empty prefix before ".service"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseName(tt.input)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Equal(t, Name{}, n)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, n)
			require.Equal(t, tt.input, n.String())
			require.Equal(t, tt.template, n.TemplateName())
			require.Equal(t, tt.template != "", n.IsInstance())
		})
	}
}

func TestKnownTypesListed(t *testing.T) {
	for _, typ := range strings.Fields(knownTypes) {
		require.True(t, knownType(typ), typ)
		_, err := ParseName("a." + typ)
		require.NoError(t, err)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{name: "bare", input: "web", want: "web.service"},
		{name: "service kept", input: "web.service", want: "web.service"},
		{name: "socket kept", input: "web.socket", want: "web.socket"},
		{name: "timer kept", input: "backup.timer", want: "backup.timer"},
		{name: "instance", input: "app@1", want: "app@1.service"},
		{name: "template", input: "app@", want: "app@.service"},
		{name: "unknown suffix is part of the name", input: "db.primary", want: "db.primary.service"},
		{name: "dotted instance", input: "vm@10.0.0.1", want: "vm@10.0.0.1.service"},
		{name: "empty left for ParseName to refuse", input: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Normalize(tt.input))
		})
	}
}
