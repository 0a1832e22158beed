package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/taskerd/taskerd/internal/procfs"
)

// ErrAlreadyRunning reports that a PostgreSQL server is already running on
// the cluster's data folder, typically another `taskerd dev`. It is wrapped
// in an error that names the pid.
var ErrAlreadyRunning = errors.New("PostgreSQL is already running on this data folder")

// clearStalePidFile removes dataDir/postmaster.pid when the process it names
// is not a postgres serving dataDir. PostgreSQL only checks that the pid is
// alive, so after a crash and a reboot (or pid reuse) an unrelated process
// holding that pid keeps it from ever starting again.
func (c *Cluster) clearStalePidFile(ctx context.Context) error {
	path := filepath.Join(c.dataDir, "postmaster.pid")
	content, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}

	firstLine, _, _ := strings.Cut(string(content), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(firstLine))
	switch {
	case err != nil || pid <= 0:
		// A torn write from a crash mid-startup; nobody can own it.
		c.logger.WarnContext(ctx, "removing unreadable postmaster.pid", slog.String(logKeyPath, path))
	case !processAlive(pid):
		c.logger.InfoContext(ctx, "removing stale postmaster.pid of a dead process",
			slog.String(logKeyPath, path), slog.Int(logKeyPID, pid))
	case !isPostgresProcess(pid):
		c.logger.InfoContext(ctx, "removing stale postmaster.pid whose pid now belongs to another program",
			slog.String(logKeyPath, path), slog.Int(logKeyPID, pid))
	case !servesDataDir(pid, c.dataDir):
		c.logger.InfoContext(ctx, "removing stale postmaster.pid whose pid is a postgres for another data folder",
			slog.String(logKeyPath, path), slog.Int(logKeyPID, pid))
	default:
		return fmt.Errorf("%w: pid %d serves %s (see %s); stop it first", ErrAlreadyRunning, pid, c.dataDir, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// processAlive reports whether pid runs. Zombies count as dead: an orphaned
// postgres that exited may linger as a zombie when PID 1 does not reap.
func processAlive(pid int) bool {
	f, err := procfs.Stat(pid)
	if errors.Is(err, procfs.ErrMalformed) {
		return true // it exists; assume it runs
	}
	if err != nil {
		return false
	}
	return f[0] != "Z" && f[0] != "X"
}

// isPostgresProcess reports whether pid runs a PostgreSQL server binary.
// The postmaster keeps its original argv; its children rewrite theirs to
// "postgres: checkpointer" and the like.
func isPostgresProcess(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(cmdline) == 0 {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if bytes.HasPrefix(argv0, []byte("postgres:")) {
		return true
	}
	base := filepath.Base(string(argv0))
	return base == "postgres" || base == "postmaster"
}

// servesDataDir reports whether the postgres with this pid runs on dataDir.
// The postmaster changes into its data folder, so its cwd tells. When the
// cwd cannot be read (another user's process) we assume it does: refusing
// with a clear error beats deleting a live server's lock file.
func servesDataDir(pid int, dataDir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	return sameFolder(cwd, dataDir)
}
