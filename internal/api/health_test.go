package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

type bundle struct {
	server  *httptest.Server
	checker *health.Checker
}

func setup(t *testing.T, dsn string) bundle {
	t.Helper()
	st, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	checker, err := health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion(), Version: "test", StatusCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Health: checker})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return bundle{server: srv, checker: checker}
}

func get(t *testing.T, url string, into any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if into != nil {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: decode: %v", url, err)
		}
	}
	return resp
}

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.New(t))

	var live map[string]any
	resp := get(t, b.server.URL+"/tasker/health/live", &live)
	if resp.StatusCode != 200 || live["alive"] != true || live["service"] != "tasker" || live["timestamp"] == nil {
		t.Errorf("live: %d %v", resp.StatusCode, live)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("live content type %q", ct)
	}

	var ready health.ReadyReport
	resp = get(t, b.server.URL+"/tasker/health/ready", &ready)
	if resp.StatusCode != 200 || !ready.Ready || len(ready.FailedChecks) != 0 {
		t.Fatalf("ready: %d %+v", resp.StatusCode, ready)
	}
	if ready.Checks["database"].Status != "healthy" || ready.Checks["migrations"].Status != "healthy" {
		t.Errorf("ready checks: %+v", ready.Checks)
	}
	if v := ready.Checks["migrations"].CurrentVersion; v == nil || *v != migrate.LatestVersion() {
		t.Errorf("migrations check version %v", v)
	}

	var status health.StatusReport
	resp = get(t, b.server.URL+"/tasker/health/status", &status)
	if resp.StatusCode != 200 || !status.Healthy || status.Status != "healthy" || status.Version != "test" ||
		status.MigrationVersion != migrate.LatestVersion() || status.Database.MaxConnections <= 0 || status.Database.Pool.MaxConns <= 0 {
		t.Errorf("status: %d %+v", resp.StatusCode, status)
	}

	// Shutdown: readiness fails at once, liveness still answers.
	b.checker.SetShuttingDown()
	resp = get(t, b.server.URL+"/tasker/health/ready", &ready)
	if resp.StatusCode != 503 || ready.Ready || !contains(ready.FailedChecks, "shutdown") {
		t.Errorf("ready while shutting down: %d %+v", resp.StatusCode, ready)
	}
	if resp := get(t, b.server.URL+"/tasker/health/live", nil); resp.StatusCode != 200 {
		t.Errorf("live while shutting down: %d", resp.StatusCode)
	}
}

func TestReadyWithoutSchema(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.NewEmpty(t))
	var ready health.ReadyReport
	resp := get(t, b.server.URL+"/tasker/health/ready", &ready)
	if resp.StatusCode != 503 || ready.Ready || !contains(ready.FailedChecks, "migrations") || contains(ready.FailedChecks, "database") {
		t.Fatalf("ready on an unmigrated database: %d %+v", resp.StatusCode, ready)
	}
	if !strings.Contains(ready.Message, "taskerd migrate up") {
		t.Errorf("message should tell what to do: %q", ready.Message)
	}
	var p api.Problem
	resp = get(t, b.server.URL+"/tasker/health/status", &p)
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(p.Detail, "migrate up") {
		t.Errorf("status on an unmigrated database: %d %+v", resp.StatusCode, p)
	}
}

// A newer schema (a rolling deploy migrated ahead of this replica) keeps it ready.
func TestReadyWithNewerSchema(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	st, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checker, _ := health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion() - 1})
	if r := checker.Ready(context.Background()); !r.Ready {
		t.Fatalf("older binary on a newer schema: %+v", r)
	}
	checker, _ = health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion() + 1})
	if r := checker.Ready(context.Background()); r.Ready || !contains(r.FailedChecks, "migrations") {
		t.Fatalf("newer binary on an older schema must be unready: %+v", r)
	}
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if resp := get(t, b.server.URL+"/tasker/health/live", nil); resp.StatusCode != 200 {
		t.Errorf("live: %d", resp.StatusCode)
	}
	var ready health.ReadyReport
	resp := get(t, b.server.URL+"/tasker/health/ready", &ready)
	if resp.StatusCode != 503 || !contains(ready.FailedChecks, "database") || !strings.Contains(ready.Checks["database"].Message, "unreachable") {
		t.Errorf("ready: %d %+v", resp.StatusCode, ready)
	}
	var p api.Problem
	resp = get(t, b.server.URL+"/tasker/health/status", &p)
	if resp.StatusCode != 503 || p.Status != 503 {
		t.Errorf("status: %d %+v", resp.StatusCode, p)
	}
}

func TestUnknownRouteIsProblem(t *testing.T) {
	t.Parallel()
	b := setup(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable")
	var p api.Problem
	resp := get(t, b.server.URL+"/tasker/nope", &p)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" || p.Status != 404 || p.Instance != "/tasker/nope" {
		t.Errorf("404: %d %s %+v", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
	req, _ := http.NewRequest(http.MethodDelete, b.server.URL+"/tasker/health/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("405: %d %s allow=%q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
