package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// orphanHelperEnv, when set to a folder, turns the test binary into a
// process that starts a cluster there, prints "READY <port> <pid>" and
// waits for stdin to close, so a test can SIGKILL it mid-life.
const orphanHelperEnv = "PGCLUSTER_ORPHAN_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(orphanHelperEnv); dir != "" {
		os.Exit(runOrphanHelper(dir))
	}
	os.Exit(m.Run())
}

func runOrphanHelper(dir string) int {
	c, err := New(Config{Dir: dir, Settings: map[string]string{"fsync": "off"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("READY %d %d\n", c.Port(), c.pid())
	_, _ = io.Copy(io.Discard, os.Stdin) // returns when the parent closes it or dies
	if err := c.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestNoOrphanAfterSIGKILL kills the process owning a cluster with SIGKILL,
// which runs no Go code at all, and checks Pdeathsig took postgres down.
func TestNoOrphanAfterSIGKILL(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(newTestDir(t), "pg")

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), orphanHelperEnv+"="+dir)
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatalf("stdin pipe: %v", err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	var stderr bytes.Buffer
	helper.Stderr = &stderr
	if err := helper.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = helper.Process.Kill()
		_ = helper.Wait()
	})

	type ready struct {
		port, pid int
		err       error
	}
	readyc := make(chan ready, 1)
	go func() {
		var r ready
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil {
			_, err = fmt.Sscanf(line, "READY %d %d", &r.port, &r.pid)
		}
		r.err = err
		readyc <- r
	}()
	var r ready
	select {
	case r = <-readyc:
	case <-time.After(testTimeout):
		t.Fatalf("helper did not report READY in %s; stderr:\n%s", testTimeout, &stderr)
	}
	if r.err != nil {
		_ = helper.Wait()
		t.Fatalf("read READY line: %v; stderr:\n%s", r.err, &stderr)
	}
	// If the test fails below, do not leave the server behind.
	t.Cleanup(func() {
		if processAlive(r.pid) {
			_ = syscall.Kill(-r.pid, syscall.SIGKILL)
		}
	})

	if !processAlive(r.pid) || !isPostgresProcess(r.pid) {
		t.Fatalf("pid %d reported by the helper is not a running postgres", r.pid)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL helper: %v", err)
	}
	_ = helper.Wait() // "signal: killed" is the expected outcome

	waitGone(t, r.pid, 15*time.Second)
	// No backend or auxiliary process outlived the postmaster either.
	dataDir := filepath.Join(dir, "data")
	for _, pid := range processesIn(t, dataDir) {
		t.Errorf("process %d still runs in %s", pid, dataDir)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(loopback, strconv.Itoa(r.port)), time.Second)
	if err == nil {
		_ = conn.Close()
		t.Fatalf("port %d still accepts connections", r.port)
	}
}

// processesIn lists live processes whose working folder is dir; every
// postgres process changes into its data folder.
func processesIn(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("read /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && sameFolder(cwd, dir) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
