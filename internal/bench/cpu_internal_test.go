package bench

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The meter counts the "postmaster's" exited children (here: this test's
// own, a shell busy for a while) and this process's own CPU.
func TestCPUMeterCountsChildrenAndSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	m := cpuMeter{postmaster: os.Getpid()}
	before := m.sample()
	if err := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
	// Busy until the kernel has charged this process 200ms more CPU (not
	// for 200ms of wall time: on a loaded machine that can be far less).
	start := processCPU(t)
	for processCPU(t)-start < 200*time.Millisecond {
		_ = strconv.Itoa(int(time.Since(time.Time{})))
	}
	use := m.since(before)
	if !use.serverKnown || use.server < 50*time.Millisecond {
		t.Errorf("children's CPU %v (known %v), want the shell's loop (well over 50ms)", use.server, use.serverKnown)
	}
	if use.self < 150*time.Millisecond { // /proc counts in 10ms ticks
		t.Errorf("own CPU %v, want the busy loop's 200ms", use.self)
	}
	if use.busy <= 0 || use.busy > 1 {
		t.Errorf("machine busy share %v, want (0, 1]", use.busy)
	}
}

// processCPU is the user and system CPU the kernel has charged this
// process, from getrusage (the meter reads /proc: a second source).
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
