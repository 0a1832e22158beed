package procfs_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/taskerd/taskerd/internal/procfs"
)

func TestStatOfThisProcess(t *testing.T) {
	t.Parallel()
	f, err := procfs.Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "R" && f[0] != "S" {
		t.Errorf("state %q, want R or S", f[0])
	}
	if f[1] != strconv.Itoa(os.Getppid()) {
		t.Errorf("parent %s, want %d", f[1], os.Getppid())
	}
	if _, err := strconv.ParseInt(f[11], 10, 64); err != nil {
		t.Errorf("utime %q: %v", f[11], err)
	}
}

// A command name with spaces and parentheses does not shift the fields.
func TestStatOfAnOddlyNamedProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	odd := dir + "/a) b (c"
	if err := os.Symlink("/bin/sleep", odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	f, err := procfs.Stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if f[1] != strconv.Itoa(os.Getpid()) {
		t.Errorf("parent %s, want this test's %d (fields %v)", f[1], os.Getpid(), f[:3])
	}
}

func TestStatOfNoProcess(t *testing.T) {
	t.Parallel()
	if _, err := procfs.Stat(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a pid that does not exist: %v", err)
	}
}
