package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/store"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeStore answers the health checker without a database: these tests
// are about headers, not health.
type fakeStore struct{}

func (fakeStore) SchemaVersion(context.Context) (int64, error) { return 1, nil }
func (fakeStore) HealthCounts(context.Context) (store.HealthCounts, error) {
	return store.HealthCounts{}, nil
}
func (fakeStore) PoolStats() store.PoolStats                    { return store.PoolStats{} }
func (fakeStore) Pauses(context.Context) ([]store.Pause, error) { return nil, nil }

// newCORSServer is the API (health routes only) with the given origins.
func newCORSServer(t *testing.T, origins []string) http.Handler {
	t.Helper()
	checker, err := health.New(health.Config{Store: fakeStore{}, RequiredVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Health: checker, CORSOrigins: origins, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, method, path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestCORSOffByDefault(t *testing.T) {
	t.Parallel()
	h := newCORSServer(t, nil)
	rec := serve(h, "GET", "/tasker/health/live", map[string]string{"Origin": "https://evil.example"})
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("simple request: %d %v", rec.Code, rec.Header())
	}
	rec = serve(h, "OPTIONS", "/tasker/health/live", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
	if rec.Code != 405 || rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Allow") != "GET" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
}

func TestCORSAllowedOrigins(t *testing.T) {
	t.Parallel()
	h := newCORSServer(t, []string{"https://ops.example.com", "http://localhost:3000"})
	ok := map[string]string{"Origin": "https://ops.example.com"}
	rec := serve(h, "GET", "/tasker/health/live", ok)
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "X-Request-ID") ||
		!strings.Contains(rec.Header().Get("Vary"), "Origin") {
		t.Errorf("allowed simple request: %d %v", rec.Code, rec.Header())
	}
	rec = serve(h, "OPTIONS", "/tasker/tasks", map[string]string{"Origin": "http://localhost:3000",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, idempotency-key"})
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Idempotency-Key") ||
		rec.Header().Get("Access-Control-Max-Age") == "" {
		t.Errorf("allowed preflight: %d %v", rec.Code, rec.Header())
	}
	rec = serve(h, "OPTIONS", "/tasker/tasks", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
	if rec.Code != 403 || rec.Header().Get("Content-Type") != api.ContentTypeProblem || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight: %d %v", rec.Code, rec.Header())
	}
	rec = serve(h, "GET", "/tasker/health/live", map[string]string{"Origin": "https://evil.example"})
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin's simple request: %d %v", rec.Code, rec.Header())
	}

	all := newCORSServer(t, []string{"*"})
	rec = serve(all, "GET", "/tasker/health/live", map[string]string{"Origin": "https://anyone.example"})
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("*: %v", rec.Header())
	}
}

func TestCORSOriginsValidated(t *testing.T) {
	t.Parallel()
	for _, bad := range [][]string{{"ops.example.com"}, {"https://ops.example.com/path"}, {"*", "https://a.example"}, {"ftp://x"}} {
		if _, err := api.ParseCORSOrigins(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	got, err := api.ParseCORSOrigins([]string{" https://OPS.example.com ", "", "http://localhost:3000"})
	if err != nil || strings.Join(got, ",") != "https://ops.example.com,http://localhost:3000" {
		t.Errorf("%v %v", got, err)
	}
}
