package unit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Resource demand: what a unit needs of a machine, for placement. It comes
// from the unit's own systemd limits where it sets them, so that what is
// scheduled is what systemd enforces, else from [X-Fleet] CPU= and Memory=,
// which the agent then writes into the unit it loads (EnforceLimits).

// resourceSections are the sections where systemd reads CPUQuota= and
// MemoryMax= (its resource-control settings), by unit type.
var resourceSections = map[string]string{
	"service": "Service", "socket": "Socket", "mount": "Mount", "swap": "Swap", "slice": "Slice", "scope": "Scope",
}

// ParseCPU reads a CPU amount as cores ("0.5", "2") or as a percentage of
// one core ("150%", systemd's CPUQuota=) and returns millicores.
func ParseCPU(s string) (int64, error) {
	s = strings.TrimSpace(s)
	scale := 1000.0
	if strings.HasSuffix(s, "%") {
		s, scale = strings.TrimSuffix(s, "%"), 10
	}
	f, err := strconv.ParseFloat(s, 64)
	// Bounded as ParseMemory is: past int64 the conversion below wraps to a
	// negative demand.
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*scale > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a CPU amount: want cores (0.5, 2) or a percentage of one core (150%%)", clip(s))
	}
	return int64(math.Ceil(f * scale)), nil
}

// ParseMemory reads a memory size the way systemd does: bytes, or a number
// with a K, M, G or T suffix (base 1024; "512M", "1.5G"; a trailing "iB" or
// "B" is accepted too).
func ParseMemory(s string) (int64, error) {
	s = strings.TrimSpace(s)
	t := strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a memory size: want bytes or a number with K, M, G or T (512M, 1.5G)", clip(s))
	}
	return int64(math.Ceil(f * mult)), nil
}

// FormatMemory renders bytes for people: "512 MiB", "1.5 GiB".
func FormatMemory(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(b), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	// Rounded down: a free amount never reads as more than there is.
	return strings.TrimSuffix(strconv.FormatFloat(math.Floor(f*10)/10, 'f', 1, 64), ".0") + " " + units[i]
}

// FormatCPU renders millicores as cores: "0.5", "2".
func FormatCPU(m int64) string {
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64)
}

// systemdLimits reads the unit's own CPUQuota= and memory settings from the
// section systemd reads them in for its type. The last assignment wins, as
// in systemd; "infinity" and an empty value clear a limit. A percentage
// memory limit depends on the host, so it is no demand (warned).
func (f *File) systemdLimits(typ string) (cpu, mem int64, warnings []string) {
	section, ok := resourceSections[typ]
	if !ok {
		return 0, 0, nil
	}
	var cpuV, maxV, lowV string
	for _, o := range f.Options {
		if o.Section != section {
			continue
		}
		switch o.Name {
		case "CPUQuota":
			cpuV = joinContinuations(o.Value)
		case "MemoryMax", "MemoryLimit":
			maxV = joinContinuations(o.Value)
		case "MemoryLow":
			lowV = joinContinuations(o.Value)
		}
	}
	if cpuV != "" {
		if n, err := ParseCPU(cpuV); err == nil {
			cpu = n
		} else {
			warnings = append(warnings, fmt.Sprintf("[%s] CPUQuota=%s: %v; no CPU demand for placement", section, cpuV, err))
		}
	}
	// The hard limit is what the unit may take; MemoryLow= is what it is
	// guaranteed, the demand when no limit is set.
	for _, v := range []string{maxV, lowV} {
		if v == "" || v == "infinity" {
			continue
		}
		if strings.HasSuffix(v, "%") {
			warnings = append(warnings, fmt.Sprintf("[%s] memory %s is relative to the host; no memory demand for placement", section, v))
			break
		}
		n, err := ParseMemory(v)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("[%s] memory %s: %v; no memory demand for placement", section, v, err))
			continue
		}
		mem = n
		break
	}
	return cpu, mem, warnings
}

// IsResourceOption reports whether o is one of the systemd settings a
// unit's resource demand is read from (CPUQuota=, MemoryMax=, MemoryLimit=,
// MemoryLow=): a reader that keeps only what scheduling needs of a unit
// file keeps these with the [X-Fleet] section.
func IsResourceOption(o Option) bool {
	switch o.Name {
	case "CPUQuota", "MemoryMax", "MemoryLimit", "MemoryLow":
		return o.Section != fleetSection
	}
	return false
}

// EnforceLimits returns the text of the unit called name with the CPU and
// memory its [X-Fleet] CPU= and Memory= declare written into its own section
// as CPUQuota= and MemoryMax=, so that systemd enforces what the scheduler
// counted. A unit whose own settings already give the demand, or that
// declares none, comes back unchanged; so does text that does not parse
// (systemd says what is wrong when it loads it).
func EnforceLimits(name, text string) string {
	n, err := ParseName(name)
	if err != nil {
		return text
	}
	section, ok := resourceSections[n.Type]
	if !ok || !strings.Contains(text, "CPU=") && !strings.Contains(text, "Memory=") {
		return text // the common case, without parsing
	}
	f, err := ParseString(text)
	if err != nil {
		return text
	}
	var xcpu, xmem string
	for _, o := range f.Options {
		if o.Section == fleetSection {
			switch o.Name {
			case "CPU":
				xcpu = joinContinuations(o.Value)
			case "Memory":
				xmem = joinContinuations(o.Value)
			}
		}
	}
	if xcpu == "" && xmem == "" {
		return text
	}
	cpu, mem, _ := f.systemdLimits(n.Type)
	var add []Option
	if c, err := ParseCPU(strings.Trim(xcpu, `"`)); xcpu != "" && err == nil && cpu == 0 && c > 0 {
		add = append(add, Option{Section: section, Name: "CPUQuota", Value: strconv.FormatInt((c+9)/10, 10) + "%"})
	}
	if m, err := ParseMemory(strings.Trim(xmem, `"`)); xmem != "" && err == nil && mem == 0 && m > 0 {
		add = append(add, Option{Section: section, Name: "MemoryMax", Value: strconv.FormatInt(m, 10)})
	}
	if len(add) == 0 {
		return text
	}
	// Appended after the section's other lines: go-systemd's Serialize
	// groups options by section, so they land in the unit's own section.
	return NewFile(append(f.Options, add...)).String()
}
