// Package procfs reads what taskerd needs of a process from Linux's /proc:
// the private cluster checks whether a pid file's process still runs, and
// the benchmark's CPU meter adds up PostgreSQL's processes.
package procfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrMalformed is returned for a stat file that cannot be split into its
// fields.
var ErrMalformed = errors.New("procfs: malformed stat")

// Stat returns the fields of /proc/pid/stat that follow the command name:
// f[0] is the state (field 3 in proc(5)), f[1] the parent's pid (4), f[11]
// and f[12] the user and system time in clock ticks (14, 15), f[13] and
// f[14] those of its children it waited for (16, 17). The name is
// skipped up to its last ')', since it may itself hold spaces and ") ".
// A process that does not exist gives an error wrapping fs.ErrNotExist.
func Stat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil, fmt.Errorf("%w: pid %d", ErrMalformed, pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 15 {
		return nil, fmt.Errorf("%w: pid %d has %d fields after its name", ErrMalformed, pid, len(f))
	}
	return f, nil
}
