package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// readyPoll is the pause between connection attempts during startup.
	readyPoll = 50 * time.Millisecond
	// connectTimeout bounds one connection attempt, so a half-open port
	// cannot eat the caller's whole deadline.
	connectTimeout = 2 * time.Second
	// maxLogSize is when postgres.log is rotated to postgres.log.1 at start.
	maxLogSize = 16 << 20
)

// binaries picks the installation to run, installing one when allowed.
// A data folder only works with the major version that created it, so
// that version wins over the newest one installed.
func (c *Cluster) binaries(ctx context.Context) (Binaries, error) {
	all, err := findAllBinaries(c.cfg.BinDir)
	// An explicit BinDir names a folder apt-get would not fill.
	if errors.Is(err, ErrBinariesNotFound) && c.cfg.InstallMissing && c.cfg.BinDir == "" {
		if !canInstall() {
			return Binaries{}, fmt.Errorf("%w (InstallMissing needs root and apt-get)", err)
		}
		if ierr := c.installPostgres(ctx); ierr != nil {
			return Binaries{}, fmt.Errorf("%w (automatic install failed: %w)", err, ierr)
		}
		all, err = findAllBinaries("")
	}
	if err != nil {
		return Binaries{}, err
	}

	dataVersion, err := c.dataVersion()
	if err != nil || dataVersion == 0 {
		return all[0], err
	}
	var found []string
	for _, b := range all {
		if b.Version == dataVersion {
			return b, nil
		}
		found = append(found, fmt.Sprintf("%d (%s)", b.Version, b.Dir))
	}
	return Binaries{}, fmt.Errorf("%s was created by PostgreSQL %d but only PostgreSQL %s is installed: "+
		"install PostgreSQL %d (or point BinDir at it), or delete %s to start afresh, losing its data",
		c.dataDir, dataVersion, strings.Join(found, ", "), dataVersion, c.dataDir)
}

// dataVersion reads the major version from Dir/data/PG_VERSION; 0 when the
// data folder is not initialised yet.
func (c *Cluster) dataVersion() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read data folder version: %w", err)
	}
	// "15", or "9.6" before PostgreSQL 10.
	major, _, _ := strings.Cut(strings.TrimSpace(string(b)), ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("read data folder version: unexpected PG_VERSION %q", b)
	}
	return n, nil
}

// initdb creates Dir/data on first run. It initialises a sibling folder and
// renames it into place, so an interrupted initdb never leaves a half-made
// data folder that later starts would trip over.
func (c *Cluster) initdb(ctx context.Context, bins Binaries, owner *serverUser) error {
	version, err := c.dataVersion()
	if err != nil || version != 0 {
		return err
	}
	if entries, err := os.ReadDir(c.dataDir); err == nil {
		if len(entries) > 0 {
			return fmt.Errorf("%s exists but is not a PostgreSQL data folder (no PG_VERSION); move it away or delete it", c.dataDir)
		}
		if err := os.Remove(c.dataDir); err != nil {
			return fmt.Errorf("remove empty %s: %w", c.dataDir, err)
		}
	}

	tmp := c.dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil { // left by an interrupted run
		return fmt.Errorf("remove leftover %s: %w", tmp, err)
	}
	c.logger.InfoContext(ctx, "initialising PostgreSQL data folder",
		slog.String(logKeyPath, c.dataDir), slog.Int(logKeyVersion, bins.Version))
	cmd := exec.CommandContext(ctx, bins.Initdb(),
		"-D", tmp,
		"--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C",
		"-N", // no fsync: a lost dev cluster is re-created on the next run
	)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	// Pdeathsig so initdb does not keep writing after we died.
	cmd.SysProcAttr = sysProcAttr(owner, syscall.SIGKILL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp) // best effort; the next run removes it too
		return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, lastLines(out, logTailLines))
	}
	if err := os.Rename(tmp, c.dataDir); err != nil {
		return fmt.Errorf("move initialised data folder into place: %w", err)
	}
	return nil
}

// launch starts postgres and waits until it accepts connections. When the
// port was picked by us and turns out taken (another process bound it after
// we checked), it retries on a fresh port.
func (c *Cluster) launch(ctx context.Context, bins Binaries, owner *serverUser) (*server, int, error) {
	failedPorts := map[int]bool{}
	for attempt := 1; ; attempt++ {
		port, err := c.choosePort(ctx, failedPorts)
		if err != nil {
			return nil, 0, err
		}
		srv, err := c.launchOnce(ctx, bins, owner, port)
		if err == nil {
			return srv, port, nil
		}
		var bindErr *portInUseError
		if !errors.As(err, &bindErr) || c.cfg.Port != 0 || attempt == bindAttempts {
			return nil, 0, err
		}
		c.logger.WarnContext(ctx, "port taken before postgres could bind it, trying another",
			slog.Int(logKeyPort, port), slog.Int(logKeyAttempt, attempt))
		failedPorts[port] = true
	}
}

// portInUseError marks a start that failed only because the port was taken.
type portInUseError struct{ err error }

func (e *portInUseError) Error() string { return e.err.Error() }
func (e *portInUseError) Unwrap() error { return e.err }

// launchOnce runs postgres on port directly as our child. pg_ctl start would
// daemonise it, and a daemon outlives a killed `taskerd dev`.
func (c *Cluster) launchOnce(ctx context.Context, bins Binaries, owner *serverUser, port int) (*server, error) {
	logFile, logOffset, err := c.openLog()
	if err != nil {
		return nil, err
	}
	// The child holds its own copy of the descriptor.
	defer logFile.Close()

	args := append([]string{"-D", c.dataDir, "-p", strconv.Itoa(port)}, c.args...)
	cmd := exec.Command(bins.Postgres(), args...)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// SIGINT is a fast shutdown: postgres rolls back, checkpoints and exits
	// when our process dies, however it dies.
	cmd.SysProcAttr = sysProcAttr(owner, syscall.SIGINT)

	srv, err := startServer(cmd, c.logger)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bins.Postgres(), err)
	}
	if err := c.waitReady(ctx, srv, port, logOffset); err != nil {
		srv.kill()
		return nil, err
	}
	srv.ready.Store(true)
	return srv, nil
}

// openLog opens Dir/postgres.log for appending, rotating it first when it
// grew large, and returns where this run's output starts.
func (c *Cluster) openLog() (*os.File, int64, error) {
	if fi, err := os.Stat(c.logPath); err == nil && fi.Size() > maxLogSize {
		if err := os.Rename(c.logPath, c.logPath+".1"); err != nil {
			return nil, 0, fmt.Errorf("rotate %s: %w", c.logPath, err)
		}
	}
	f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("open server log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open server log: %w", err)
	}
	return f, fi.Size(), nil
}

// waitReady polls with real connections until the server answers, the
// child exits, or ctx ends. A connection is only counted when the server
// reports our data folder: another server may sit on the port we chose.
func (c *Cluster) waitReady(ctx context.Context, srv *server, port int, logOffset int64) error {
	connString := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", loopback, port)
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-srv.exited:
			tail := logTail(c.logPath, logOffset)
			err := fmt.Errorf("postgres exited during startup (%v); last lines of %s:\n%s", srv.waitErr, c.logPath, tail)
			if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
				return &portInUseError{err: err}
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres on port %d to accept connections: %w; last lines of %s:\n%s",
				port, ctx.Err(), c.logPath, logTail(c.logPath, logOffset))
		case <-poll.C:
		}
		if c.ours(ctx, srv, connString) {
			return nil
		}
		poll.Reset(readyPoll)
	}
}

// ours reports whether the server at connString answers and serves our
// data folder. The attempt is abandoned as soon as srv exits: a foreign
// listener on the port may accept and then never answer.
func (c *Cluster) ours(ctx context.Context, srv *server, connString string) bool {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	go func() {
		select {
		case <-srv.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return false // not up yet, or still in recovery
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		return false
	}
	var dataDir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return false
	}
	return sameFolder(dataDir, c.dataDir)
}

// sameFolder compares paths as written and, failing that, with symlinks
// resolved, since postgres reports the path it was given.
func sameFolder(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}
