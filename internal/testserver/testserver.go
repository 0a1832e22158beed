// Package testserver runs a whole taskerd replica (server.New, as `taskerd
// serve` builds it) on a fresh database, for tests that drive the HTTP API.
// Packages using it call testdb.Main from their TestMain.
package testserver

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/server"
	"github.com/taskerd/taskerd/internal/testdb"
)

// Replica is a started server.
type Replica struct {
	// URL is the server's base, e.g. http://127.0.0.1:43123 (no /tasker).
	URL string
	// DSN is its database.
	DSN    string
	Server *server.Server
}

// Start runs a replica on a fresh migrated database with settings from env
// (TASKER_* variables; the database and address are filled in), stopped
// when the test ends. logs receives the replica's log lines (nil: none).
func Start(t testing.TB, env map[string]string, logs io.Writer) *Replica {
	t.Helper()
	dsn := testdb.New(t)
	// Tests that do not test authentication run without it, and say so as
	// `taskerd serve` requires; a test passing TASKER_AUTH_MODE=jwt gets it.
	vars := map[string]string{"TASKER_DATABASE_URL": dsn, "TASKER_POLL_INTERVAL": "500ms", "TASKER_INSECURE_NO_AUTH": "true"}
	for k, v := range env {
		vars[k] = v
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	settings, err := config.NewParser(fs, config.Server).Parse(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if err := settings.CheckServeAuth(); err != nil {
		t.Fatal(err)
	}
	if logs == nil {
		logs = io.Discard
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Settings: settings, Listener: ln,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	select {
	case <-srv.Notifier().Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("testserver: the notifier did not start listening")
	}
	// The registry loads in the background: until it has, discovery
	// answers 404 and creates 422, as on a real replica that is not ready
	// yet. Tests start on a replica that is.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := srv.Registry().Check(context.Background())
		if !errors.Is(err, registry.ErrNotLoaded) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("testserver: the template registry did not load: %v", err)
		}
	}
	return &Replica{URL: "http://" + srv.Addr(), DSN: dsn, Server: srv}
}
