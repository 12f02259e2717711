//go:build unix

package outputsvc_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) this process has used:
// the benchmarks report it per operation beside the wall time, which
// other work on a shared machine distorts far more.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
