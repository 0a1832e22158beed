package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/api"
)

// repoRoot is the module's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", root)
	}
	return root
}

// spec is the checked-in OpenAPI document.
type spec struct {
	BasePath    string                          `json:"basePath"`
	Host        string                          `json:"host"`
	Paths       map[string]map[string]operation `json:"paths"`
	Definitions map[string]map[string]any       `json:"definitions"`
}

type operation struct {
	Summary    string      `json:"summary"`
	Parameters []parameter `json:"parameters"`
	Responses  map[string]struct {
		Schema map[string]any `json:"schema"`
	} `json:"responses"`
}

type parameter struct {
	Name   string         `json:"name"`
	In     string         `json:"in"`
	Type   string         `json:"type"`
	Format string         `json:"format"`
	Enum   []any          `json:"enum"`
	Items  map[string]any `json:"items"`
	Schema map[string]any `json:"schema"`
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "swagger", "swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// undocumented are routes that are not part of the API they document: the
// documentation itself, and the GraphQL playground's script and style sheet.
var undocumented = []string{"/api-docs", "/api-docs/*", "/graphql/{file}"}

// route is one method on one path, in the spec's spelling: without the
// base path, without a trailing slash.
type route struct{ method, path string }

// routerRoutes lists the API's routes from the router itself.
func routerRoutes(t *testing.T, h http.Handler) []route {
	t.Helper()
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("api.New returned a %T, not a chi router", h)
	}
	var out []route
	err := chi.Walk(routes, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		p := strings.TrimPrefix(pattern, api.BasePath)
		if len(p) > 1 {
			p = strings.TrimSuffix(p, "/")
		}
		out = append(out, route{method, p})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every chi route is in the spec and every route in the spec is a chi
// route, with the same methods.
func TestRoutesMatchSpec(t *testing.T) {
	t.Parallel()
	s := newFullServer(t)
	sp := loadSpec(t)
	if sp.BasePath != api.BasePath || sp.Host != "" {
		t.Errorf("basePath %q, host %q: want %q and no host, so Try it out calls the serving host", sp.BasePath, sp.Host, api.BasePath)
	}
	inRouter := map[route]bool{}
	for _, r := range routerRoutes(t, s.handler) {
		if slices.Contains(undocumented, r.path) {
			continue
		}
		inRouter[r] = true
		if _, ok := sp.Paths[r.path][strings.ToLower(r.method)]; !ok {
			t.Errorf("%s %s is routed but not in docs/swagger: annotate its handler and run `make swagger`", r.method, r.path)
		}
	}
	for path, ops := range sp.Paths {
		for method, op := range ops {
			if !inRouter[route{strings.ToUpper(method), path}] {
				t.Errorf("the spec documents %s %s, which the router does not serve", strings.ToUpper(method), path)
			}
			if op.Summary == "" {
				t.Errorf("%s %s has no summary", strings.ToUpper(method), path)
			}
		}
	}
	if len(inRouter) < 20 {
		t.Errorf("only %d routes walked; the router is not the full API", len(inRouter))
	}
}

// The checked-in spec is what `make swagger` generates from the code now.
func TestSpecIsNotStale(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed; the staleness check runs `make swagger`")
	}
	root := repoRoot(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", root, "swagger", "SWAGGER_OUT="+out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make swagger: %v\n%s", err, msg)
	}
	for _, name := range []string{"swagger.json", "swagger.yaml", "docs.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(root, "docs", "swagger", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(have, want) {
			t.Errorf("docs/swagger/%s is stale: run `make swagger` and commit the result", name)
		}
	}
}

// example builds a value from a schema the way Swagger UI fills "Try it
// out": the example when there is one, else a value composed from the
// properties.
func (sp *spec) example(t *testing.T, schema map[string]any) any {
	t.Helper()
	if ex, ok := schema["example"]; ok {
		return ex
	}
	if ref, ok := schema["$ref"].(string); ok {
		return sp.example(t, sp.Definitions[strings.TrimPrefix(ref, "#/definitions/")])
	}
	if all, ok := schema["allOf"].([]any); ok {
		merged := map[string]any{}
		for _, part := range all {
			if m, ok := sp.example(t, part.(map[string]any)).(map[string]any); ok {
				for k, v := range m {
					merged[k] = v
				}
			}
		}
		return merged
	}
	switch schema["type"] {
	case "object", nil:
		out := map[string]any{}
		props, _ := schema["properties"].(map[string]any)
		for name, p := range props {
			out[name] = sp.example(t, p.(map[string]any))
		}
		return out
	case "array":
		return []any{sp.example(t, schema["items"].(map[string]any))}
	case "string":
		return "string"
	case "integer", "number":
		return 0
	case "boolean":
		return true
	}
	t.Fatalf("no example for %v", schema)
	return nil
}

// bodyParam returns the schema of an operation's body.
func (sp *spec) bodyParam(t *testing.T, path, method string) map[string]any {
	t.Helper()
	for _, p := range sp.Paths[path][method].Parameters {
		if p.In == "body" {
			return p.Schema
		}
	}
	t.Fatalf("%s %s takes no body", method, path)
	return nil
}

// properties lists a definition's property names, following allOf.
func (sp *spec) properties(name string) map[string]bool {
	out := map[string]bool{}
	def := sp.Definitions[name]
	for _, part := range append([]any{def}, anySlice(def["allOf"])...) {
		m, _ := part.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			for k := range sp.properties(strings.TrimPrefix(ref, "#/definitions/")) {
				out[k] = true
			}
		}
		props, _ := m["properties"].(map[string]any)
		for k := range props {
			out[k] = true
		}
	}
	return out
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

// The spec's examples are real requests: the template example registers,
// the task example built from its fields creates a task, and the edits go
// through; and what comes back has no field the spec leaves out.
func TestSpecExamplesAreRealRequests(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	sp := loadSpec(t)

	tmpl, _ := sp.bodyParam(t, "/templates", "post")["example"].(string)
	if code, _, body := s.call(t, "POST", "/templates", "application/yaml", tmpl); code != 201 {
		t.Fatalf("the template example: %d %v\n%s", code, body, tmpl)
	}
	create, _ := json.Marshal(sp.example(t, sp.bodyParam(t, "/tasks", "post")))
	code, _, task := s.call(t, "POST", "/tasks", "application/json", string(create))
	if code != 201 {
		t.Fatalf("the task example %s: %d %v", create, code, task)
	}
	id := task["task_id"].(string)
	documented := sp.properties("api.TaskResponse")
	for k := range task {
		if !documented[k] {
			t.Errorf("a created task carries %q, which api.TaskResponse does not document", k)
		}
	}
	patch, _ := json.Marshal(sp.example(t, sp.bodyParam(t, "/tasks/{task_id}", "patch")))
	if code, _, body := s.call(t, "PATCH", "/tasks/"+id, "application/json", string(patch)); code != 200 {
		t.Errorf("the task patch example %s: %d %v", patch, code, body)
	}
	steps := task["workflow_steps"].([]any)
	stepPath := "/tasks/" + id + "/workflow_steps/" + steps[len(steps)-1].(map[string]any)["step_id"].(string)
	s.waitStatus(t, id, "complete")
	stepPatch, _ := json.Marshal(sp.example(t, sp.bodyParam(t, "/tasks/{task_id}/workflow_steps/{step_id}", "patch")))
	code, _, step := s.call(t, "PATCH", stepPath, "application/json", string(stepPatch))
	if code != 200 {
		t.Errorf("the step patch example %s: %d %v", stepPatch, code, step)
	}
	stepDoc := sp.properties("api.StepDetailResponse")
	for k := range step {
		if !stepDoc[k] {
			t.Errorf("a step carries %q, which api.StepDetailResponse does not document", k)
		}
	}
	for path, def := range map[string]string{
		"/tasks?limit=1":                "api.TaskListResponse",
		"/analytics/performance":        "api.PerformanceResponse",
		"/analytics/bottlenecks":        "api.BottlenecksResponse",
		"/tasks/" + id + "/transitions": "api.TransitionListResponse",
		"/tasks/" + id + "/diagram":     "api.DiagramResponse",
	} {
		var body map[string]any
		s.getJSON(t, path, 200, &body)
		doc := sp.properties(def)
		for k := range body {
			if !doc[k] {
				t.Errorf("GET %s carries %q, which %s does not document", path, k, def)
			}
		}
		for k := range doc {
			if _, ok := body[k]; !ok {
				t.Errorf("GET %s lacks %q, which %s documents", path, k, def)
			}
		}
	}
}

// The UI and the spec are served where the issue says, and the spec is
// the checked-in one.
func TestAPIDocsServed(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	r := s.do(t, "GET", "/api-docs", nil, "")
	if r.code != 301 || r.header.Get("Location") != "/tasker/api-docs/" {
		t.Errorf("/api-docs: %d Location %q", r.code, r.header.Get("Location"))
	}
	r = s.do(t, "GET", "/api-docs/", nil, "")
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), `url: "doc.json"`) {
		t.Errorf("/api-docs/: %d %s %.200s", r.code, r.header.Get("Content-Type"), r.body)
	}
	r = s.do(t, "GET", "/api-docs/doc.json", nil, "")
	want, _ := os.ReadFile(filepath.Join(repoRoot(t), "docs", "swagger", "swagger.json"))
	var served, checkedIn map[string]any
	if err := json.Unmarshal(r.body, &served); err != nil || r.code != 200 {
		t.Fatalf("doc.json: %d %v", r.code, err)
	}
	_ = json.Unmarshal(want, &checkedIn)
	// swag's template writes an empty host and schemes where the file has
	// none; either way Swagger UI calls the host and scheme that served it.
	if served["host"] != "" || len(anySlice(served["schemes"])) != 0 || served["basePath"] != "/tasker" {
		t.Errorf("doc.json: host %v, schemes %v, basePath %v", served["host"], served["schemes"], served["basePath"])
	}
	delete(served, "host")
	delete(served, "schemes")
	if a, b := asJSON(served), asJSON(checkedIn); a != b {
		t.Errorf("the served spec differs from docs/swagger/swagger.json")
	}
	r = s.do(t, "GET", "/api-docs/swagger-ui-bundle.js", http.Header{"Accept-Encoding": {"gzip"}}, "")
	if r.code != 200 || r.header.Get("Content-Encoding") != "gzip" || !strings.Contains(r.header.Get("Content-Type"), "javascript") {
		t.Errorf("the UI bundle: %d %v", r.code, r.header)
	}
	for _, path := range []string{"/api-docs/nope.js", "/api-docs/swagger-initializer.js", "/api-docs/../go.mod", "/api-docs/a/b.css"} {
		r = s.do(t, "GET", path, nil, "")
		if r.code != 404 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s", path, r.code, r.header.Get("Content-Type"))
		}
	}
	r = s.do(t, "POST", "/api-docs/doc.json", nil, "")
	if r.code != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("POST doc.json: %d Allow %q", r.code, r.header.Get("Allow"))
	}
}
