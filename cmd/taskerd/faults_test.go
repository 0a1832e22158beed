package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/pgcluster"
	"github.com/taskerd/taskerd/internal/testdb"
)

// faultCluster boots a PostgreSQL cluster of the test's own, with a
// migrated database "taskerd", and returns it with that database's URL.
// Tests that stop or restart the database use it: the shared test cluster
// serves every other test of the process and must never go away.
func faultCluster(t *testing.T) (*pgcluster.Cluster, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "taskerd-faultpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The postgres user (when tests run as root) must be able to enter it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := pgcluster.New(pgcluster.Config{
		Dir:            filepath.Join(dir, "pg"),
		InstallMissing: true,
		BinDir:         os.Getenv("TASKER_PG_BINDIR"),
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// A fast shutdown checkpoints, so nothing committed is lost to
		// these settings across the restarts the tests make.
		Settings: map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "100"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	if err := c.EnsureDatabase(ctx, "taskerd"); err != nil {
		t.Fatal(err)
	}
	dsn := c.URL("taskerd")
	m, err := migrate.New(ctx, migrate.Config{DatabaseURL: dsn, Schema: testdb.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	return c, dsn
}

// answer is what one HTTP request got.
type answer struct {
	code        int
	contentType string
	retryAfter  string
	body        []byte
	took        time.Duration
	err         error // transport error: refused, reset, timed out
}

func call(client *http.Client, method, url, contentType, body string) answer {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(t0)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		retryAfter: resp.Header.Get("Retry-After"), body: raw, took: time.Since(t0), err: err}
}

// unavailable reports whether a is the documented "come back later": 503,
// an unavailable problem document, Retry-After.
func (a answer) unavailable() bool {
	if a.err != nil || a.code != http.StatusServiceUnavailable || a.contentType != "application/problem+json" || a.retryAfter == "" {
		return false
	}
	var p struct{ Type string }
	return json.Unmarshal(a.body, &p) == nil && p.Type == "urn:taskerd:problem:unavailable"
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("error after %s: %v", a.took.Round(time.Millisecond), a.err)
	}
	return fmt.Sprintf("%d %s (Retry-After %q) after %s: %s", a.code, a.contentType, a.retryAfter, a.took.Round(time.Millisecond), a.body)
}

// readiness is a replica's /health/ready answer.
func readiness(client *http.Client, base string) (code int, failed []string, err error) {
	a := call(client, http.MethodGet, base+"/tasker/health/ready", "", "")
	if a.err != nil {
		return 0, nil, a.err
	}
	var rep struct {
		FailedChecks []string `json:"failed_checks"`
	}
	_ = json.Unmarshal(a.body, &rep)
	return a.code, rep.FailedChecks, nil
}

// waitReadiness polls base's readiness until it answers want, and returns
// how long that took.
func waitReadiness(t *testing.T, client *http.Client, base string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		code, failed, err := readiness(client, base)
		if err == nil && code == want {
			return time.Since(start)
		}
		last = fmt.Sprintf("%d %v %v", code, failed, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: readiness not %d within %s (last: %s)", base, want, within, last)
	return 0
}
