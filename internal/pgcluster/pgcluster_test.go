package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testTimeout bounds each start or stop in tests; generous for a loaded CI
// machine, far below the go test default.
const testTimeout = 30 * time.Second

// newTestDir returns a fresh folder the postgres OS user can reach when the
// tests run as root: os.MkdirTemp makes it 0700, t.TempDir's parent too.
func newTestDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatalf("create test folder: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod test folder: %v", err)
	}
	return dir
}

// testLogger sends the package's logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestCluster builds a cluster under dir with test-friendly settings and
// stops it when the test ends.
func newTestCluster(t *testing.T, dir string, cfg Config) *Cluster {
	t.Helper()
	cfg.Dir = dir
	if cfg.Settings == nil {
		cfg.Settings = map[string]string{"fsync": "off"}
	}
	cfg.Logger = testLogger(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	return c
}

func start(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func stop(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func connect(t *testing.T, c *Cluster) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to %s: %v", c.URL("postgres"), err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func exec1(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitGone polls until pid is no longer a live process.
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s", pid, within)
		}
		<-tick.C
	}
}

func TestStartRestartKeepsDataAndPort(t *testing.T) {
	t.Parallel()
	dir := newTestDir(t)

	// Leftover of an initdb interrupted by a previous run: must not matter.
	leftover := filepath.Join(dir, "data.initdb")
	if err := os.MkdirAll(filepath.Join(leftover, "base"), 0o755); err != nil {
		t.Fatalf("create leftover: %v", err)
	}

	first := newTestCluster(t, dir, Config{})
	start(t, first)
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("interrupted initdb folder still there: %v", err)
	}
	port := first.Port()
	if port == 0 {
		t.Fatal("Port() is 0 after Start")
	}
	wantURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app?sslmode=disable", port)
	if got := first.URL("app"); got != wantURL {
		t.Fatalf("URL = %q, want %q", got, wantURL)
	}
	bins, err := FindBinaries("")
	if err != nil {
		t.Fatalf("FindBinaries: %v", err)
	}
	if first.Version() != bins.Version {
		t.Fatalf("Version() = %d, want %d", first.Version(), bins.Version)
	}

	conn := connect(t, first)
	if got := queryString(t, conn, "SELECT 1::text"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	if got := queryString(t, conn, "SHOW fsync"); got != "off" {
		t.Fatalf("Settings not applied: fsync = %q, want off", got)
	}
	if got := queryString(t, conn, "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Fatalf("listen_addresses = %q", got)
	}
	exec1(t, conn, "CREATE TABLE survives_restart (id int); INSERT INTO survives_restart VALUES (42)")
	_ = conn.Close(t.Context())
	stop(t, first)

	recorded, err := os.ReadFile(filepath.Join(dir, "port"))
	if err != nil || strings.TrimSpace(string(recorded)) != strconv.Itoa(port) {
		t.Fatalf("Dir/port = %q (%v), want %d", recorded, err, port)
	}

	// A second run, as a new `taskerd dev` would do it.
	second := newTestCluster(t, dir, Config{})
	start(t, second)
	if second.Port() != port {
		t.Fatalf("second run port = %d, want the recorded %d", second.Port(), port)
	}
	conn = connect(t, second)
	if got := queryString(t, conn, "SELECT id::text FROM survives_restart"); got != "42" {
		t.Fatalf("data after restart = %q, want 42", got)
	}
	_ = conn.Close(t.Context())
	stop(t, second)
}

func TestStartStopAreIdempotent(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, filepath.Join(newTestDir(t), "pg"), Config{})

	stop(t, c) // before Start
	start(t, c)
	pid := c.pid()
	if !isPostgresProcess(pid) {
		t.Fatalf("pid %d is not a postgres process", pid)
	}
	start(t, c) // while running: no second server
	if c.pid() != pid {
		t.Fatalf("second Start replaced the server: pid %d, want %d", c.pid(), pid)
	}

	stop(t, c)
	if processAlive(pid) {
		t.Fatalf("postgres %d still alive after Stop returned", pid)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid left after a clean stop: %v", err)
	}
	stop(t, c) // twice

	// Start after Stop brings it back on the same port.
	port := c.Port()
	start(t, c)
	if c.Port() != port {
		t.Fatalf("restart port = %d, want %d", c.Port(), port)
	}
	connect(t, c)

	// A caller whose deadline already passed still gets the server down,
	// through the SIGQUIT escalation.
	pid = c.pid()
	expired, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Stop(expired); err != nil {
		t.Fatalf("Stop with an expired context: %v", err)
	}
	if processAlive(pid) {
		t.Fatalf("postgres %d still alive after Stop with an expired context", pid)
	}
}

// TestSurvivesStartingThreadExit guards the locked-thread design: Pdeathsig
// fires when the forking OS thread exits, so postgres must not be forked on
// a caller's thread that goes away while we live (golang/go#27505).
func TestSurvivesStartingThreadExit(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, newTestDir(t), Config{})

	// The runtime never ends the main thread (it parks it instead), so the
	// goroutine calling Start must sit on another one. A goroutine that lands
	// on the main thread keeps it locked, so the next one cannot.
	type result struct {
		tid int
		err error
	}
	done := make(chan result, 1)
	onMain := make(chan struct{}, 1)
	releaseMain := make(chan struct{})
	defer close(releaseMain)
	var r result
	for r.tid == 0 {
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				onMain <- struct{}{}
				<-releaseMain
				runtime.UnlockOSThread()
				return
			}
			// Never unlocked: the runtime ends this thread with the goroutine.
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			done <- result{tid: syscall.Gettid(), err: c.Start(ctx)}
		}()
		select {
		case <-onMain: // try again; the main thread is taken now
		case r = <-done:
		}
	}
	if r.err != nil {
		t.Fatalf("Start: %v", r.err)
	}
	waitThreadExit(t, r.tid)

	if !processAlive(c.pid()) {
		t.Fatalf("postgres %d died with the thread that started it", c.pid())
	}
	if got := queryString(t, connect(t, c), "SELECT 1::text"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
}

// waitThreadExit polls until thread tid of this process is gone.
func waitThreadExit(t *testing.T, tid int) {
	t.Helper()
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d did not exit", tid)
		}
		<-tick.C
	}
}

func TestStartRecoversStalePidFile(t *testing.T) {
	t.Parallel()
	dir := newTestDir(t)
	c := newTestCluster(t, dir, Config{})
	start(t, c) // initialise the data folder
	stop(t, c)

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	// A live process that is not postgres: postgres itself would refuse
	// this lock file, since it only checks that the pid is alive.
	alive := exec.Command("sleep", "300")
	if err := alive.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() { _ = alive.Process.Kill(); _ = alive.Wait() })

	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	for _, tc := range []struct {
		name    string
		content string
	}{
		{"dead pid", fmt.Sprintf("%d\n%s\n", dead.Process.Pid, c.dataDir)},
		{"live non-postgres pid", fmt.Sprintf("%d\n%s\n", alive.Process.Pid, c.dataDir)},
		{"garbage", "not a pid\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(pidFile, []byte(tc.content), 0o600); err != nil {
				t.Fatalf("write fake postmaster.pid: %v", err)
			}
			start(t, c)
			connect(t, c)
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatalf("read postmaster.pid: %v", err)
			}
			if first, _, _ := strings.Cut(string(b), "\n"); first != strconv.Itoa(c.pid()) {
				t.Fatalf("postmaster.pid names %q, want the new server %d", first, c.pid())
			}
			stop(t, c)
		})
	}
}

func TestStartRefusesWhenAlreadyRunning(t *testing.T) {
	t.Parallel()
	dir := newTestDir(t)
	running := newTestCluster(t, dir, Config{})
	start(t, running)

	second := newTestCluster(t, dir, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	err := second.Start(ctx)
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("Start on a busy data folder = %v, want ErrAlreadyRunning", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(running.pid())) {
		t.Fatalf("error %q does not name pid %d", err, running.pid())
	}
	// The running server must be untouched.
	if got := queryString(t, connect(t, running), "SELECT 1::text"); got != "1" {
		t.Fatalf("running server broken: SELECT 1 = %q", got)
	}
}

func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	taken := l.Addr().(*net.TCPAddr).Port

	t.Run("configured port fails with the log tail", func(t *testing.T) {
		t.Parallel()
		c := newTestCluster(t, newTestDir(t), Config{Port: taken})
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		err := c.Start(ctx)
		if err == nil {
			t.Fatal("Start on a taken port succeeded")
		}
		t.Logf("error as the user sees it: %v", err)
		for _, want := range []string{"postgres.log", "could not"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not mention %q", err, want)
			}
		}
	})

	t.Run("recorded port taken picks another and records it", func(t *testing.T) {
		t.Parallel()
		dir := newTestDir(t)
		if err := os.WriteFile(filepath.Join(dir, "port"), []byte(strconv.Itoa(taken)), 0o644); err != nil {
			t.Fatalf("write port file: %v", err)
		}
		c := newTestCluster(t, dir, Config{})
		start(t, c)
		if c.Port() == taken {
			t.Fatalf("started on the taken port %d", taken)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "port"))
		if strings.TrimSpace(string(b)) != strconv.Itoa(c.Port()) {
			t.Fatalf("Dir/port = %q, want %d", b, c.Port())
		}
		connect(t, c)
	})
}

func TestStartRejectsForeignDataFolder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		file    string // created under Dir/data
		content string
		want    string
	}{
		{"other major version", "PG_VERSION", "9.6\n", "created by PostgreSQL 9"},
		{"not a data folder", "notes.txt", "mine\n", "not a PostgreSQL data folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := newTestDir(t)
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatalf("create data folder: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, "data", tc.file), []byte(tc.content), 0o600); err != nil {
				t.Fatalf("write %s: %v", tc.file, err)
			}
			c := newTestCluster(t, dir, Config{})
			err := c.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error saying %q", err, tc.want)
			}
			// Nothing of the user's was touched.
			if b, err := os.ReadFile(filepath.Join(dir, "data", tc.file)); err != nil || string(b) != tc.content {
				t.Fatalf("%s changed: %q, %v", tc.file, b, err)
			}
		})
	}
}

func TestStartBinariesMissing(t *testing.T) {
	t.Parallel()
	// An explicit BinDir is never "fixed" by apt-get, so this cannot install.
	c := newTestCluster(t, newTestDir(t), Config{BinDir: newTestDir(t), InstallMissing: true})
	err := c.Start(t.Context())
	if !errors.Is(err, ErrBinariesNotFound) {
		t.Fatalf("Start = %v, want ErrBinariesNotFound", err)
	}
	if c.pid() != 0 {
		t.Fatal("a server runs after a failed Start")
	}
}

func TestStartRootNeedsTraversableParents(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	private := t.TempDir() // its parent folder is 0700
	c := newTestCluster(t, filepath.Join(private, "pg"), Config{})
	err := c.Start(t.Context())
	if err == nil {
		t.Fatal("Start under a folder postgres cannot enter succeeded")
	}
	t.Logf("error as the user sees it: %v", err)
	if !strings.Contains(err.Error(), filepath.Dir(private)) || !strings.Contains(err.Error(), "cannot be entered") {
		t.Fatalf("error %q does not name the blocking folder %s", err, filepath.Dir(private))
	}
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()

	t.Run("search", func(t *testing.T) {
		t.Parallel()
		b, err := FindBinaries("")
		if err != nil {
			t.Fatalf("FindBinaries: %v", err)
		}
		if b.Version < MinVersion {
			t.Fatalf("version %d < %d", b.Version, MinVersion)
		}
		if !isExecutable(b.Postgres()) || !isExecutable(b.Initdb()) {
			t.Fatalf("%s lacks postgres or initdb", b.Dir)
		}
	})

	t.Run("explicit folder", func(t *testing.T) {
		t.Parallel()
		found, err := FindBinaries("")
		if err != nil {
			t.Fatalf("FindBinaries: %v", err)
		}
		b, err := FindBinaries(found.Dir)
		if err != nil {
			t.Fatalf("FindBinaries(%q): %v", found.Dir, err)
		}
		if b != found {
			t.Fatalf("FindBinaries(%q) = %+v, want %+v", found.Dir, b, found)
		}
	})

	t.Run("empty folder says what to install", func(t *testing.T) {
		t.Parallel()
		empty := newTestDir(t)
		_, err := FindBinaries(empty)
		if !errors.Is(err, ErrBinariesNotFound) {
			t.Fatalf("err = %v, want ErrBinariesNotFound", err)
		}
		t.Logf("error as the user sees it: %v", err)
		for _, want := range []string{
			empty,
			"apt-get install postgresql",
			"dnf install postgresql-server",
			"brew install postgresql@17",
			"TASKER_PG_BINDIR",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q lacks %q", err, want)
			}
		}
	})

	t.Run("too old is rejected with the reason", func(t *testing.T) {
		t.Parallel()
		old := newTestDir(t)
		script := "#!/bin/sh\necho 'postgres (PostgreSQL) 12.9'\n"
		for _, name := range []string{"postgres", "initdb"} {
			if err := os.WriteFile(filepath.Join(old, name), []byte(script), 0o755); err != nil {
				t.Fatalf("write fake %s: %v", name, err)
			}
		}
		_, err := FindBinaries(old)
		if !errors.Is(err, ErrBinariesNotFound) {
			t.Fatalf("err = %v, want ErrBinariesNotFound", err)
		}
		if !strings.Contains(err.Error(), "PostgreSQL 12, older than 14") {
			t.Fatalf("error %q does not say the version is too old", err)
		}
	})
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		out     string
		want    int
		wantErr bool
	}{
		{out: "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", want: 15},
		{out: "postgres (PostgreSQL) 17.2\n", want: 17},
		{out: "postgres (PostgreSQL) 18beta1\n", want: 18},
		{out: "postgres (PostgreSQL) 9.6.24\n", want: 9},
		{out: "something else\n", wantErr: true},
	} {
		got, err := parseVersion(tc.out)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseVersion(%q) = %d, %v; want %d, error %t", tc.out, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{}},
		{"negative port", Config{Dir: "x", Port: -1}},
		{"port too large", Config{Dir: "x", Port: 70000}},
		{"port as setting", Config{Dir: "x", Settings: map[string]string{"Port": "5432"}}},
		{"data_directory as setting", Config{Dir: "x", Settings: map[string]string{"data_directory": "/"}}},
		{"bad setting name", Config{Dir: "x", Settings: map[string]string{"a=b": "c"}}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		}
	}
	c, err := New(Config{Dir: "x", Port: 5999})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.Port() != 5999 || !filepath.IsAbs(c.dir) {
		t.Fatalf("Port() = %d, dir = %q; want 5999 and an absolute path", c.Port(), c.dir)
	}
}
