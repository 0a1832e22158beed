package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/telemetry"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/webhooks"
)

// observabilityAPI is the API with webhooks, the event catalog (with a
// registry) and metrics, on its own database.
type observabilityAPI struct {
	t   *testing.T
	url string
	reg *registry.Registry
}

func newObservabilityAPI(t *testing.T) *observabilityAPI {
	t.Helper()
	st, err := store.New(store.Config{DatabaseURL: testdb.New(t), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	kinds, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Kinds: kinds, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := webhooks.New(webhooks.Config{Store: st, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.New(context.Background(), telemetry.Config{SpanExporter: discardSpans{}, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	checker, err := health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion(), StatusCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Health: checker, Registry: reg, Webhooks: hooks, Telemetry: tel, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &observabilityAPI{t: t, url: srv.URL + api.BasePath, reg: reg}
}

func (s *observabilityAPI) call(method, path, body string) (int, http.Header, map[string]any) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func TestWebhookRoutes(t *testing.T) {
	t.Parallel()
	s := newObservabilityAPI(t)

	code, _, body := s.call("POST", "/webhooks", `{"url":"ftp://nowhere","events":["task.*","not a pattern"],"secret":"short"}`)
	if code != 422 {
		t.Fatalf("invalid webhook: %d %v", code, body)
	}
	var pointers []string
	for _, e := range body["errors"].([]any) {
		pointers = append(pointers, e.(map[string]any)["pointer"].(string))
	}
	if strings.Join(pointers, " ") != "/url /events/1 /secret" {
		t.Errorf("errors at %v", pointers)
	}
	if code, _, _ := s.call("POST", "/webhooks", `{"url":"http://x","events":["*"],"colour":"red"}`); code != 422 {
		t.Errorf("an unknown field: %d", code)
	}

	code, header, created := s.call("POST", "/webhooks", `{"url":"https://hooks.example.com/tasker","events":["task.*","step.failed"],"description":"ops"}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	id, _ := created["webhook_id"].(string)
	secret, _ := created["secret"].(string)
	if header.Get("Location") != api.BasePath+"/webhooks/"+id || !strings.HasPrefix(secret, "whsec_") {
		t.Errorf("created: %v, location %s", created, header.Get("Location"))
	}

	code, _, one := s.call("GET", "/webhooks/"+id, "")
	if code != 200 || one["url"] != "https://hooks.example.com/tasker" || one["description"] != "ops" {
		t.Errorf("show: %d %v", code, one)
	}
	if _, ok := one["secret"]; ok {
		t.Error("the secret is shown only at creation")
	}
	code, _, list := s.call("GET", "/webhooks", "")
	if hooks, _ := list["webhooks"].([]any); code != 200 || len(hooks) != 1 {
		t.Errorf("list: %d %v", code, list)
	}
	code, _, log := s.call("GET", "/webhooks/"+id+"/deliveries", "")
	if deliveries, ok := log["deliveries"].([]any); code != 200 || !ok || len(deliveries) != 0 {
		t.Errorf("deliveries: %d %v", code, log)
	}
	for _, bad := range []string{"?status=lost", "?limit=0", "?limit=x", "?before=nope"} {
		if code, _, _ := s.call("GET", "/webhooks/"+id+"/deliveries"+bad, ""); code != 400 {
			t.Errorf("deliveries%s: %d", bad, code)
		}
	}
	if code, _, _ := s.call("GET", "/webhooks/not-a-uuid", ""); code != 400 {
		t.Errorf("a malformed id: %d", code)
	}

	if code, _, _ := s.call("DELETE", "/webhooks/"+id, ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	for _, path := range []string{"/webhooks/" + id, "/webhooks/" + id + "/deliveries"} {
		if code, _, p := s.call("GET", path, ""); code != 404 || p["type"] != "urn:taskerd:problem:not-found" {
			t.Errorf("GET %s after delete: %d %v", path, code, p)
		}
	}
	if code, _, _ := s.call("DELETE", "/webhooks/"+id, ""); code != 404 {
		t.Errorf("delete twice: %d", code)
	}
}

// discardSpans is a span exporter that drops everything.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }
