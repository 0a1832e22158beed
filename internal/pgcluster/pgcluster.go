// Package pgcluster runs a private PostgreSQL server for `taskerd dev`, the
// test harness and benchmarks: it finds the installed binaries, initialises
// a data folder on first use and runs postgres as a child process that dies
// with us, listening on 127.0.0.1 only.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Log keys, shared by every line the package writes.
const (
	logKeyComponent = "component"
	logKeyPath      = "path"
	logKeyPID       = "pid"
	logKeyPort      = "port"
	logKeyVersion   = "version"
	logKeyError     = "error"
	logKeyAttempt   = "attempt"

	componentName = "pgcluster"
)

// loopback is the only address the server listens on: a dev database has
// no business being reachable from the network.
const loopback = "127.0.0.1"

// bindAttempts is how often Start picks a new port when the one it chose
// was taken between checking and postgres binding it.
const bindAttempts = 3

// Config describes a private cluster.
type Config struct {
	// Dir is the root folder, e.g. "./.taskerd/pg"; data lives in Dir/data,
	// the server log in Dir/postgres.log. Created if missing.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 reuses the port recorded in Dir
	// by the previous run if it is free, else picks a free one; either way
	// the port is recorded for the next run.
	Port int
	// Settings are extra server settings passed as -c name=value, e.g.
	// "fsync": "off" for tests. "port" and "data_directory" are rejected:
	// use Port and Dir.
	Settings map[string]string
	// InstallMissing, when the binaries are missing, BinDir is empty, we run
	// as root and apt-get exists, runs apt-get update and
	// apt-get install -y postgresql before giving up.
	InstallMissing bool
	// Logger receives the package's logs; nil means slog.Default().
	Logger *slog.Logger
	// BinDir is the folder holding postgres and initdb; "" searches the
	// usual locations (see FindBinaries).
	BinDir string
}

// Cluster is a private PostgreSQL server. Start and Stop may be called any
// number of times, in any order; the other methods are safe concurrently.
type Cluster struct {
	cfg      Config
	logger   *slog.Logger
	dir      string // absolute: the child runs in another working folder
	dataDir  string
	logPath  string
	portFile string
	args     []string // -c options in a stable order

	// lifecycle serialises Start and Stop; srv is only touched under it.
	lifecycle sync.Mutex
	srv       *server

	// mu guards what the getters read, so they never wait on a slow Start.
	mu      sync.Mutex
	port    int
	version int
}

// New validates cfg and returns a stopped Cluster. It touches no files.
func New(cfg Config) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pgcluster: Config.Dir is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("pgcluster: Config.Port %d out of range 0-65535", cfg.Port)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: resolve Config.Dir %q: %w", cfg.Dir, err)
	}

	args := []string{
		"-c", "listen_addresses=" + loopback,
		// No Unix socket: its folder would need permissions for the
		// postgres user and a path shorter than 108 bytes.
		"-c", "unix_socket_directories=",
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Settings)) {
		if name == "" || strings.ContainsAny(name, "= \t\n") {
			return nil, fmt.Errorf("pgcluster: invalid setting name %q", name)
		}
		switch strings.ToLower(name) {
		case "port", "data_directory":
			return nil, fmt.Errorf("pgcluster: setting %q is managed by pgcluster; use Config.Port or Config.Dir", name)
		}
		args = append(args, "-c", name+"="+cfg.Settings[name])
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Cluster{
		cfg:      cfg,
		logger:   logger.With(slog.String(logKeyComponent, componentName)),
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		logPath:  filepath.Join(dir, "postgres.log"),
		portFile: filepath.Join(dir, "port"),
		args:     args,
		port:     cfg.Port,
	}, nil
}

// Start finds the binaries, initialises the data folder on first run,
// clears a stale postmaster.pid, starts postgres and returns once it
// accepts connections, or ctx ends. Calling it while running does nothing.
func (c *Cluster) Start(ctx context.Context) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	if c.srv != nil {
		select {
		case <-c.srv.exited: // crashed since; start afresh
			c.srv = nil
		default:
			return nil
		}
	}

	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: create %s: %w", c.dir, err)
	}
	bins, err := c.binaries(ctx)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}

	// PostgreSQL refuses to run as root, so as root both initdb and the
	// server run as the postgres OS user, which must own Dir.
	var owner *serverUser
	if os.Geteuid() == 0 {
		if owner, err = lookupServerUser(); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if err := owner.checkTraversable(c.dir); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if err := owner.chownTree(c.dir); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
	}

	if err := c.clearStalePidFile(ctx); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.initdb(ctx, bins, owner); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	srv, port, err := c.launch(ctx, bins, owner)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.recordPort(port); err != nil {
		// The server works; only the next run's URL may change.
		c.logger.WarnContext(ctx, "could not record port", slog.String(logKeyPath, c.portFile), slog.Any(logKeyError, err))
	}

	c.srv = srv
	c.mu.Lock()
	c.port, c.version = port, bins.Version
	c.mu.Unlock()
	c.logger.InfoContext(ctx, "PostgreSQL ready",
		slog.Int(logKeyPort, port), slog.Int(logKeyVersion, bins.Version),
		slog.Int(logKeyPID, srv.pid), slog.String(logKeyPath, c.dir))
	return nil
}

// Stop shuts the server down: a fast shutdown, escalating to SIGQUIT and
// then SIGKILL once ctx is done. It does nothing when not running.
func (c *Cluster) Stop(ctx context.Context) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	if c.srv == nil {
		return nil
	}
	if err := c.srv.stop(ctx); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.logger.InfoContext(ctx, "PostgreSQL stopped", slog.Int(logKeyPID, c.srv.pid))
	c.srv = nil
	return nil
}

// Port returns the TCP port on 127.0.0.1: Config.Port, or once started the
// port chosen. 0 before the first Start when Config.Port is 0.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// URL returns a connection URL for database as the postgres superuser,
// e.g. postgres://postgres@127.0.0.1:5433/taskerd?sslmode=disable.
func (c *Cluster) URL(database string) string {
	return (&url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort(loopback, strconv.Itoa(c.Port())),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}).String()
}

// Version returns the PostgreSQL major version in use, e.g. 15; 0 before
// the first Start.
func (c *Cluster) Version() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// pid returns the postmaster's pid, 0 when not running. For tests.
func (c *Cluster) pid() int {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	if c.srv == nil {
		return 0
	}
	return c.srv.pid
}

// childEnv is our environment without what could steer the server
// elsewhere (PGDATA, PGPORT, …) and with the C locale, so log messages are
// in English and Start can recognise them.
func childEnv() []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") || strings.HasPrefix(name, "LC_") || name == "LANG" || name == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// sysProcAttr runs a child as owner (when we are root) in its own process
// group, so a Ctrl-C on our terminal reaches us and not postgres directly:
// we decide how it shuts down.
func sysProcAttr(owner *serverUser, pdeathsig syscall.Signal) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: pdeathsig}
	if owner != nil {
		attr.Credential = owner.credential()
	}
	return attr
}
