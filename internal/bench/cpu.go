package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/taskerd/taskerd/internal/procfs"
)

// cpuMeter reads how much CPU this process and the PostgreSQL server have
// used, so that a workload can say what a step costs in CPU on each side.
// Steps per second move with how much of a shared machine a run gets; CPU
// per step moves much less, and tells one replica from three by the work
// done rather than by the minute it ran in. The server's share is readable
// only when it runs on this machine (Linux /proc: the postmaster and its
// children, exited ones included through the postmaster's children's
// times); otherwise only this process's is.
type cpuMeter struct {
	postmaster int // 0: the server's CPU is not readable
}

// cpuSample is CPU used so far.
type cpuSample struct {
	self, server time.Duration
	machineBusy  time.Duration // all cores' busy time (/proc/stat)
	at           time.Time
}

// newCPUMeter finds the server's postmaster through a backend's parent.
func newCPUMeter(ctx context.Context, conn *pgx.Conn) cpuMeter {
	var pid int
	if conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid) != nil {
		return cpuMeter{}
	}
	f, err := procfs.Stat(pid)
	if err != nil {
		return cpuMeter{}
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return cpuMeter{}
	}
	return cpuMeter{postmaster: ppid}
}

func (m cpuMeter) sample() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.machineBusy = machineBusy()
	if m.postmaster == 0 {
		return s
	}
	parent := strconv.Itoa(m.postmaster)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := procfs.Stat(pid)
		if err != nil {
			continue
		}
		switch {
		case pid == m.postmaster:
			// Its own time, and its exited children's (fields 14–17).
			s.server += ticks(f[11]) + ticks(f[12]) + ticks(f[13]) + ticks(f[14])
		case f[1] == parent:
			s.server += ticks(f[11]) + ticks(f[12])
		}
	}
	return s
}

// ticks converts clock ticks to a duration. /proc counts in USER_HZ, which
// Linux fixes at 100 for user space on every architecture it builds for.
func ticks(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * 10 * time.Millisecond
}

// machineBusy is the busy time of all cores since boot (/proc/stat's cpu
// line: user, nice, system, irq and softirq; not idle, iowait, or the
// hypervisor's steal and its guests, which user already holds).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy time.Duration
	for _, i := range []int{1, 2, 3, 6, 7} {
		busy += ticks(f[i])
	}
	return busy
}

// cpuUse is what a window between two samples used.
type cpuUse struct {
	self, server time.Duration
	busy         float64 // share of the machine's cores that were busy
	serverKnown  bool
}

func (m cpuMeter) since(a cpuSample) cpuUse {
	b := m.sample()
	u := cpuUse{self: b.self - a.self, server: b.server - a.server, serverKnown: m.postmaster != 0}
	if wall := b.at.Sub(a.at); wall > 0 && b.machineBusy > 0 {
		// /proc/stat counts in 10 ms ticks: over a short window the share
		// can come out above 1 (a quick run's window is ~100 ms).
		u.busy = min(1, float64(b.machineBusy-a.machineBusy)/float64(wall)/float64(runtime.NumCPU()))
	}
	return u
}
