package machine

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DetectCapacity returns this machine's CPU (the cores the Go runtime may
// use) and memory (MemTotal in meminfoFile, normally /proc/meminfo) less
// the amounts reserved for what fleet does not schedule. A reservation larger
// than the machine leaves zero, not a negative amount.
func DetectCapacity(meminfoFile string, reservedCPU, reservedMemory int64) (Capacity, error) {
	f, err := os.Open(meminfoFile)
	if err != nil {
		return Capacity{}, fmt.Errorf("detect memory: %w", err)
	}
	defer f.Close()
	mem, err := memTotal(f)
	if err != nil {
		return Capacity{}, fmt.Errorf("detect memory from %s: %w", meminfoFile, err)
	}
	return Capacity{
		CPU:    max(int64(runtime.NumCPU())*1000-reservedCPU, 0),
		Memory: max(mem-reservedMemory, 0),
	}, nil
}

// memTotal reads MemTotal (in kB) from /proc/meminfo's format, in bytes.
func memTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", fields[1], err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no MemTotal line")
}
