package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// quitGrace is how long an immediate shutdown (SIGQUIT) may take once
	// the caller's deadline for a fast shutdown has passed.
	quitGrace = 5 * time.Second
	// killGrace bounds the wait for the kernel to reap after SIGKILL.
	killGrace = 5 * time.Second
	// logTailLines is how much of postgres.log an error quotes.
	logTailLines = 20
	// logTailBytes caps how much of the log is read to find those lines.
	logTailBytes = 16 << 10
)

// server is one running postgres child process.
type server struct {
	cmd    *exec.Cmd
	pid    int
	logger *slog.Logger
	// exited is closed once the child has been reaped; waitErr is valid then.
	exited  chan struct{}
	waitErr error
	// ready is set once the server accepted connections and stopping
	// before we signal it: an exit in between is a crash worth reporting.
	ready, stopping atomic.Bool
}

// startServer starts cmd from a goroutine locked to its OS thread.
//
// Pdeathsig is delivered when the *thread* that forked the child exits, not
// the process (golang/go#27505). An ordinary goroutine may hop threads and
// the runtime may retire the forking thread at any time, which would stop
// postgres under our feet. Locking the goroutine to its thread and keeping
// it blocked in Wait for the child's whole life ties the signal to our
// process: the thread only dies when the process does, even by SIGKILL.
func startServer(cmd *exec.Cmd, logger *slog.Logger) (*server, error) {
	s := &server{cmd: cmd, logger: logger, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		// Only now may the thread go back to the pool: the child it
		// guarded is gone.
		runtime.UnlockOSThread()
		if s.ready.Load() && !s.stopping.Load() {
			logger.Error("PostgreSQL exited unexpectedly", slog.Int(logKeyPID, cmd.Process.Pid), slog.Any(logKeyError, s.waitErr))
		}
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	s.pid = cmd.Process.Pid
	return s, nil
}

// stop asks for a fast shutdown (SIGINT: roll back sessions, checkpoint,
// exit) and waits until ctx is done; then an immediate shutdown (SIGQUIT);
// then SIGKILL to the whole process group so no backend survives.
func (s *server) stop(ctx context.Context) error {
	s.stopping.Store(true)
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postgres (pid %d) to stop: %w", s.pid, err)
	}
	select {
	case <-s.exited:
		return nil
	case <-ctx.Done():
	}

	s.logger.WarnContext(ctx, "PostgreSQL did not finish a fast shutdown in time, sending SIGQUIT",
		slog.Int(logKeyPID, s.pid), slog.Any(logKeyError, ctx.Err()))
	_ = s.cmd.Process.Signal(syscall.SIGQUIT) // ErrProcessDone only: it exited meanwhile
	quit := time.NewTimer(quitGrace)
	defer quit.Stop()
	select {
	case <-s.exited:
		return nil
	case <-quit.C:
	}

	s.logger.WarnContext(ctx, "PostgreSQL ignored SIGQUIT, killing its process group", slog.Int(logKeyPID, s.pid))
	// Negative pid: the group made by Setpgid, i.e. postmaster and backends.
	if err := syscall.Kill(-s.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postgres process group %d: %w", s.pid, err)
	}
	kill := time.NewTimer(killGrace)
	defer kill.Stop()
	select {
	case <-s.exited:
		return nil
	case <-kill.C:
		return fmt.Errorf("postgres (pid %d) still running %s after SIGKILL", s.pid, killGrace)
	}
}

// kill ends a child that failed to come up; no shutdown courtesy needed.
func (s *server) kill() {
	s.stopping.Store(true)
	_ = syscall.Kill(-s.pid, syscall.SIGKILL) // ESRCH only: already gone
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
	}
}

// logTail returns the last lines written to path at or after offset, so an
// error shows this start's messages and not an older run's.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(offset, fi.Size()-logTailBytes)
	if start > fi.Size() { // the log was rotated or truncated meanwhile
		start = max(0, fi.Size()-logTailBytes)
	}
	b, err := io.ReadAll(io.NewSectionReader(f, start, fi.Size()-start))
	if err != nil {
		return ""
	}
	return lastLines(b, logTailLines)
}

// lastLines returns the last n lines of b, trimmed.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(b, nil)), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
