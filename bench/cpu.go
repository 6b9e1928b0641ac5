package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cpuBusy is a reading of the machine-wide CPU counters of /proc/stat. The
// harness, the emulator and the plugin share the machine (and other jobs
// may run on it): whether it was saturated tells a throughput limit of the
// machine from one of the plugin.
type cpuBusy struct {
	busy, total int64
	ok          bool
}

func readCPUBusy() cpuBusy {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuBusy{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuBusy{}
	}
	var b cpuBusy
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuBusy{}
		}
		if i >= 8 { // guest time is already counted in user time
			break
		}
		b.total += n
		if i != 3 && i != 4 { // idle, iowait
			b.busy += n
		}
	}
	b.ok = true
	return b
}

// until renders the busy share between two readings.
func (b cpuBusy) until(later cpuBusy) string {
	if !b.ok || !later.ok || later.total <= b.total {
		return "unknown"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(later.busy-b.busy)/float64(later.total-b.total))
}

// ratio2 divides two rates; a zero denominator gives 0.
func ratio2(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
