package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// templateServer is the API with a registry, on its own database.
type templateServer struct {
	url string
	dsn string
	// handler is the API itself, for tests that walk its routes.
	handler http.Handler
}

func newTemplateServer(t *testing.T) templateServer {
	t.Helper()
	dsn := testdb.New(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(store.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	kinds, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Kinds: kinds, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	checker, err := health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion(), StatusCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Health: checker, Registry: reg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return templateServer{url: srv.URL + api.BasePath, dsn: dsn}
}

// call sends a request and decodes the JSON answer into a map.
func (s templateServer) call(t *testing.T, method, path, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, resp.Header, out
}

const diamondYAML = `
namespace_name: shapes
name: diamond
version: 1.0.0
description: a → b, a → c, {b, c} → d
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: echo, depends_on_step: a, inputs: {side: left}}
  - {name: c, handler: echo, depends_on_steps: [a], inputs: {side: right}}
  - {name: d, handler: sleep, handler_config: {duration: 10ms}, depends_on_steps: [b, c]}
`

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The "done when": POST a diamond of built-in steps, see it with
// levels [[a],[b,c],[d]] and a Mermaid graph; a cycle is refused with 422
// naming it.
func TestDiamondThroughHTTP(t *testing.T) {
	t.Parallel()
	s := newTemplateServer(t)

	code, hdr, body := s.call(t, "POST", "/templates", "application/yaml", diamondYAML)
	if code != 201 || body["result"] != "created" || body["full_name"] != "shapes.diamond@1.0.0" {
		t.Fatalf("register: %d %v", code, body)
	}
	if loc := hdr.Get("Location"); loc != "/tasker/handlers/shapes/diamond?version=1.0.0" {
		t.Errorf("Location %q", loc)
	}

	code, _, body = s.call(t, "GET", "/handlers/shapes/diamond", "", "")
	if code != 200 {
		t.Fatalf("show: %d %v", code, body)
	}
	h := body["handler"].(map[string]any)
	if h["name"] != "diamond" || h["namespace"] != "shapes" || h["version"] != "1.0.0" || h["full_name"] != "shapes.diamond@1.0.0" {
		t.Errorf("handler: %v", h)
	}
	g := h["dependency_graph"].(map[string]any)
	if got := asJSON(g["levels"]); got != `[["a"],["b","c"],["d"]]` {
		t.Errorf("levels %s", got)
	}
	if got := asJSON(g["edges"]); got != `[{"from":"a","to":"b","type":"dependency"},{"from":"a","to":"c","type":"dependency"},{"from":"b","to":"d","type":"dependency"},{"from":"c","to":"d","type":"dependency"}]` {
		t.Errorf("edges %s", got)
	}
	if asJSON(g["root_steps"]) != `["a"]` || asJSON(g["leaf_steps"]) != `["d"]` || len(g["nodes"].([]any)) != 4 {
		t.Errorf("graph %v", g)
	}
	if m, _ := g["mermaid"].(string); !strings.HasPrefix(m, "graph TD\n") || !strings.Contains(m, "a --> b") || !strings.Contains(m, "c --> d") {
		t.Errorf("mermaid %q", m)
	}
	steps := h["step_templates"].([]any)
	d := steps[3].(map[string]any)
	if d["handler"] != "sleep" || asJSON(d["depends_on_steps"]) != `["b","c"]` || d["default_retry_limit"] != float64(3) ||
		d["timeout"] != "30s" || asJSON(d["backoff"]) != `{"base":"1s","max":"5m0s"}` || d["default_retryable"] != true {
		t.Errorf("effective step d: %v", d)
	}

	cycle := `{"namespace_name": "shapes", "name": "loop", "step_templates": [
		{"name": "a", "handler": "noop", "depends_on_step": "c"},
		{"name": "b", "handler": "noop", "depends_on_step": "a"},
		{"name": "c", "handler": "noop", "depends_on_step": "b"}]}`
	code, hdr, body = s.call(t, "POST", "/templates", "application/json", cycle)
	if code != 422 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("cycle: %d %s %v", code, hdr.Get("Content-Type"), body)
	}
	errs := body["errors"].([]any)
	if len(errs) != 1 || asJSON(errs[0]) != `{"detail":"dependency cycle: a → b → c → a","pointer":"/step_templates/0/depends_on_step"}` {
		t.Errorf("cycle errors: %s", asJSON(errs))
	}
}

func TestRegisterOutcomesThroughHTTP(t *testing.T) {
	t.Parallel()
	s := newTemplateServer(t)
	if code, _, body := s.call(t, "POST", "/templates", "application/yaml", diamondYAML); code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	// The same template again, even as JSON: 200 unchanged.
	asJSONDoc := `{"namespace_name":"shapes","name":"diamond","version":"1.0.0","description":"a → b, a → c, {b, c} → d","step_templates":[
		{"name":"a","handler":"noop"},{"name":"b","handler":"echo","depends_on_steps":["a"],"inputs":{"side":"left"}},
		{"name":"c","handler":"echo","depends_on_step":"a","inputs":{"side":"right"}},
		{"name":"d","handler":"sleep","handler_config":{"duration":"10ms"},"depends_on_steps":["b","c"]}]}`
	if code, _, body := s.call(t, "POST", "/templates", "application/json", asJSONDoc); code != 200 || body["result"] != "unchanged" {
		t.Fatalf("unchanged: %d %v", code, body)
	}
	changed := strings.Replace(diamondYAML, "10ms", "20ms", 1)
	code, hdr, body := s.call(t, "POST", "/templates", "application/yaml", changed)
	if code != 409 || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(body["detail"].(string), "replace=true") {
		t.Fatalf("conflict: %d %v", code, body)
	}
	if code, _, body := s.call(t, "POST", "/templates?replace=true", "application/yaml", changed); code != 200 || body["result"] != "replaced" {
		t.Fatalf("replace: %d %v", code, body)
	}
	if code, _, body := s.call(t, "POST", "/templates?replace=maybe", "application/yaml", changed); code != 400 {
		t.Fatalf("bad replace: %d %v", code, body)
	}
	if code, _, body := s.call(t, "POST", "/templates", "application/x-www-form-urlencoded", "a=b"); code != 415 {
		t.Fatalf("form body: %d %v", code, body)
	}
	// No Content-Type: read as YAML, which also takes JSON.
	if code, _, body := s.call(t, "POST", "/templates", "", strings.Replace(asJSONDoc, "1.0.0", "1.1.0", 1)); code != 201 {
		t.Fatalf("no content type: %d %v", code, body)
	}

	code, _, body = s.call(t, "POST", "/templates", "application/yaml", "name: Bad\nnmae: x\nstep_templates: [{name: a, handler: http}]\n")
	if code != 422 {
		t.Fatalf("invalid: %d %v", code, body)
	}
	want := `[{"detail":"must match [a-z0-9_]+ (lower-case letters, digits and underscores), got \"Bad\"","pointer":"/name"},` +
		`{"detail":"unknown field \"nmae\"","pointer":"/nmae"},` +
		`{"detail":"unknown handler kind \"http\"; known kinds: echo, fail, noop, sleep","pointer":"/step_templates/0/handler"}]`
	if got := asJSON(body["errors"]); got != want {
		t.Errorf("errors:\n got %s\nwant %s", got, want)
	}
}

func TestDiscoveryThroughHTTP(t *testing.T) {
	t.Parallel()
	s := newTemplateServer(t)
	if code, _, body := s.call(t, "GET", "/handlers", "", ""); code != 200 || asJSON(body) != `{"namespaces":[],"total_namespaces":0}` {
		t.Fatalf("empty: %d %v", code, body)
	}
	for _, v := range []string{"1.0.0", "1.10.0", "1.9.0"} {
		if code, _, body := s.call(t, "POST", "/templates", "application/yaml", strings.Replace(diamondYAML, "1.0.0", v, 1)); code != 201 {
			t.Fatalf("register %s: %d %v", v, code, body)
		}
	}
	doc := strings.Replace(strings.Replace(diamondYAML, "shapes", "other", 1), "diamond", "kite", 1)
	if code, _, body := s.call(t, "POST", "/templates", "application/yaml", doc); code != 201 {
		t.Fatalf("register other: %d %v", code, body)
	}

	_, _, body := s.call(t, "GET", "/handlers", "", "")
	if got := asJSON(body); got != `{"namespaces":[{"handler_count":1,"name":"other","paused":false},{"handler_count":1,"name":"shapes","paused":false}],"total_namespaces":2}` {
		t.Errorf("namespaces: %s", got)
	}
	_, _, body = s.call(t, "GET", "/handlers/shapes", "", "")
	if got := asJSON(body); got != `{"handlers":[{"latest_version":"1.10.0","name":"diamond","namespace":"shapes","paused":false,"versions":["1.0.0","1.9.0","1.10.0"]}],"namespace":"shapes","paused":false,"total_handlers":1}` {
		t.Errorf("namespace: %s", got)
	}
	for path, version := range map[string]string{
		"/handlers/shapes/diamond":                "1.10.0",
		"/handlers/shapes/diamond?version=latest": "1.10.0",
		"/handlers/shapes/diamond?version=1.9.0":  "1.9.0",
	} {
		code, _, body := s.call(t, "GET", path, "", "")
		if code != 200 || body["handler"].(map[string]any)["version"] != version {
			t.Errorf("%s: %d %v", path, code, body)
		}
	}
	for _, path := range []string{"/handlers/nope", "/handlers/shapes/nope", "/handlers/shapes/diamond?version=3.0.0"} {
		if code, hdr, body := s.call(t, "GET", path, "", ""); code != 404 || hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %v", path, code, body)
		}
	}
}

func TestDeleteThroughHTTP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newTemplateServer(t)
	code, _, body := s.call(t, "POST", "/templates", "application/yaml", diamondYAML)
	if code != 201 {
		t.Fatalf("register: %d %v", code, body)
	}
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO tasker.tasks (task_id, named_task_id, namespace_name, task_name, task_version, status)
		VALUES ($1, $2, 'shapes', 'diamond', '1.0.0', 'in_progress')`, uuid.New(), int64(body["id"].(float64))); err != nil {
		t.Fatal(err)
	}

	code, _, body = s.call(t, "DELETE", "/templates/shapes/diamond/1.0.0", "", "")
	if code != 409 || !strings.Contains(body["detail"].(string), "1 unfinished tasks use shapes.diamond@1.0.0") {
		t.Fatalf("delete in use: %d %v", code, body)
	}
	if code, _, body := s.call(t, "DELETE", "/templates/shapes/diamond/1.0.0?force=true", "", ""); code != 204 || body != nil {
		t.Fatalf("forced delete: %d %v", code, body)
	}
	if code, _, _ := s.call(t, "GET", "/handlers/shapes/diamond", "", ""); code != 404 {
		t.Fatalf("deleted template still shown: %d", code)
	}
	if code, _, _ := s.call(t, "DELETE", "/templates/shapes/diamond/1.0.0", "", ""); code != 404 {
		t.Fatalf("delete again: %d", code)
	}
}

// Without a registry the template routes do not exist.
func TestTemplateRoutesNeedARegistry(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.New(t))
	resp, err := http.Get(b.server.URL + "/tasker/handlers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /handlers without a registry: %d", resp.StatusCode)
	}
	if !reflect.DeepEqual(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
}
