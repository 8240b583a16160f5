package fleetd

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ConfigKey documents one configuration key: what fleet.conf(5) and
// fleetd(8) list for it.
type ConfigKey struct {
	Key  string // as in fleet.conf; the flag is -Key, the variable FLEET_<KEY>
	Help string
	// Default is the value in DefaultConfig as it would be written in
	// fleet.conf ("5s", "24h", "false"); "" when the default is empty
	// (or the key is a secret).
	Default string
}

// TLSUsage is the help of `fleetd tls`, for fleetd(8).
const TLSUsage = tlsUsage

// ConfigKeys lists every configuration key fleetd accepts, in the order of
// its configuration, with its help and default. Man pages are generated
// from it, so a key added to the configuration is documented with it.
func ConfigKeys() []ConfigKey {
	def := reflect.ValueOf(DefaultConfig())
	var out []ConfigKey
	for _, f := range fields() {
		k := ConfigKey{Key: f.key, Help: f.help}
		if i, ok := boundField(f); ok && def.Type().Field(i).Type != reflect.TypeOf(Secret("")) {
			k.Default = formatDefault(def.Field(i))
		}
		out = append(out, k)
	}
	return out
}

// boundField finds which field of Config f sets, by setting it and seeing
// what changes: fields() binds keys with closures, which say nothing of
// their target otherwise, and another table naming them would drift. A key
// that takes none of the probes (a fixed set of words) is found by name:
// the field named like the key (placement: Placement).
func boundField(f field) (int, bool) {
	if i, ok := probeField(f); ok {
		return i, true
	}
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		if strings.EqualFold(t.Field(i).Name, strings.ReplaceAll(f.key, "_", "")) {
			return i, true
		}
	}
	return 0, false
}

func probeField(f field) (int, bool) {
	// One of these parses for every kind of key (number, duration,
	// boolean, text, list) and differs from its default.
	probes := []string{"7", "0", "true", "false", "probe", "probe,probe2"}
	dv := reflect.ValueOf(DefaultConfig())
	for _, v := range probes {
		c := DefaultConfig()
		if f.set(&c, v) != nil {
			continue
		}
		cv := reflect.ValueOf(c)
		changed := -1
		for i := range cv.NumField() {
			if !reflect.DeepEqual(cv.Field(i).Interface(), dv.Field(i).Interface()) {
				if changed >= 0 {
					return 0, false // sets two fields: no one default to show
				}
				changed = i
			}
		}
		if changed >= 0 {
			return changed, true
		}
	}
	return 0, false
}

func formatDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return formatDuration(x)
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		if err != nil {
			return ""
		}
		return string(b)
	case fmt.Stringer:
		return x.String()
	}
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = v.Index(i).String()
		}
		return strings.Join(parts, ",")
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.String:
		return v.String()
	}
	return ""
}

// formatDuration writes d as an operator would ("24h", "5m", "1h30m",
// "0"), not as time.Duration.String ("24h0m0s").
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
