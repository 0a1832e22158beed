package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/workers"
)

// newTaskServer is the whole API (registry and engine) on its own database.
func newTaskServer(t *testing.T) templateServer {
	t.Helper()
	dsn := testdb.New(t)
	var logOut io.Writer = io.Discard
	if os.Getenv("TASKER_TEST_LOG") != "" {
		logOut = os.Stderr // to see why a request failed
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))
	st, err := store.New(store.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	kinds, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := notifier.New(notifier.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Kinds: kinds, Notifier: notes, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Store: st, Templates: reg, Kinds: kinds, Notifier: notes, Logger: logger,
		PollInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := workers.New(workers.Config{Store: st, Steps: eng, Templates: reg, Notifier: notes, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, start := range []func(context.Context) error{reg.Start, eng.Start, remote.Start, notes.Start} {
		if err := start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = remote.Stop(stopCtx)
		_ = eng.Stop(stopCtx)
		_ = reg.Stop(stopCtx)
		_ = notes.Stop(stopCtx)
	})
	checker, err := health.New(health.Config{Store: st, RequiredVersion: migrate.LatestVersion(), StatusCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Health: checker, Registry: reg, Engine: eng, Store: st, Workers: remote, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return templateServer{url: srv.URL + api.BasePath, dsn: dsn, handler: h}
}

func (s templateServer) register(t *testing.T, yaml string) {
	t.Helper()
	code, _, body := s.call(t, "POST", "/templates?replace=true", "application/yaml", yaml)
	if code != 201 && code != 200 {
		t.Fatalf("register: %d %v", code, body)
	}
}

// waitStatus polls a task until it has status.
func (s templateServer) waitStatus(t *testing.T, id, status string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, body := s.call(t, "GET", "/tasks/"+id+"?include=transitions", "", "")
		if code == 200 && body["status"] == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: want %s, have %d %v", id, status, code, body["status"])
		}
		time.Sleep(25 * time.Millisecond)
	}
}

const noopDiamondYAML = `namespace_name: shop
name: diamond
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on_step: a}
  - {name: c, handler: noop, depends_on_step: a}
  - {name: d, handler: noop, depends_on_steps: [b, c]}
`

func stepsByName(body map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	steps, _ := body["workflow_steps"].([]any)
	for _, s := range steps {
		m := s.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func TestCreateTaskRunsToCompletion(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, noopDiamondYAML)
	code, hdr, body := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"shop","name":"diamond","context":{"order":7},"tags":["vip"]}`)
	// The response is read after the commit, so the engine may already
	// have started the task.
	if st := body["status"]; code != 201 || (st != "pending" && st != "in_progress" && st != "complete") || len(body["workflow_steps"].([]any)) != 4 {
		t.Fatalf("create: %d %v", code, body)
	}
	id := body["task_id"].(string)
	if hdr.Get("Location") != "/tasker/tasks/"+id || hdr.Get("X-Correlation-ID") == "" {
		t.Errorf("headers: %v", hdr)
	}
	body = s.waitStatus(t, id, "complete")
	for name, st := range stepsByName(body) {
		if st["status"] != "complete" || st["attempts"] != float64(1) {
			t.Errorf("%s: %v", name, st)
		}
	}
	if d := stepsByName(body)["d"]; fmt.Sprint(d["depends_on_steps"]) != "[b c]" {
		t.Errorf("d depends on %v", d["depends_on_steps"])
	}
	transitions, _ := body["transitions"].([]any)
	// task: →pending, →in_progress, →complete; each step: →pending, →in_progress, →complete
	if len(transitions) != 3+4*3 {
		t.Errorf("%d transitions, want 15", len(transitions))
	}
	if body["correlation_id"] != hdr.Get("X-Correlation-ID") || body["context"].(map[string]any)["order"] != float64(7) {
		t.Errorf("task fields: %v", body)
	}

	code, _, list := s.call(t, "GET", "/tasks/"+id+"/workflow_steps", "", "")
	if code != 200 || list["total"] != float64(4) {
		t.Fatalf("steps: %d %v", code, list)
	}
	stepID := stepsByName(body)["b"]["step_id"].(string)
	code, _, step := s.call(t, "GET", "/tasks/"+id+"/workflow_steps/"+stepID, "", "")
	if code != 200 || step["name"] != "b" || len(step["transitions"].([]any)) != 3 {
		t.Fatalf("step: %d %v", code, step)
	}
}

func TestRetriesThroughHTTP(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, `namespace_name: shop
name: flaky
version: 1.0.0
step_templates:
  - {name: pay, handler: fail, handler_config: {failures: 2}, backoff: {base: 200ms, max: 10s}}
`)
	_, _, body := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"shop","name":"flaky"}`)
	body = s.waitStatus(t, body["task_id"].(string), "complete")
	if pay := stepsByName(body)["pay"]; pay["attempts"] != float64(3) {
		t.Fatalf("pay: %v", pay)
	}
	var failedAt, claimedAt []time.Time
	for _, raw := range body["transitions"].([]any) {
		tr := raw.(map[string]any)
		if tr["step_id"] == nil {
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, tr["created_at"].(string))
		switch tr["to_state"] {
		case "error":
			failedAt = append(failedAt, at)
		case "in_progress":
			claimedAt = append(claimedAt, at)
		}
	}
	if len(failedAt) != 2 || len(claimedAt) != 3 {
		t.Fatalf("%d failures, %d claims", len(failedAt), len(claimedAt))
	}
	first, second := claimedAt[1].Sub(failedAt[0]), claimedAt[2].Sub(failedAt[1])
	if first < 180*time.Millisecond || second < 360*time.Millisecond || second <= first {
		t.Errorf("retry delays %s then %s: want ≥200ms then ≥400ms, growing", first, second)
	}
}

func TestTaskRequestErrors(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, `namespace_name: shop
name: typed
version: 1.0.0
schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
step_templates:
  - {name: a, handler: noop}
`)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		detail                   string
	}{
		{"malformed json", "POST", "/tasks", `{"name":`, 400, ""},
		{"unknown field", "POST", "/tasks", `{"name":"typed","namespace":"shop","colour":"red"}`, 422, "colour"},
		{"wrong type", "POST", "/tasks", `{"name":"typed","namespace":"shop","priority":"high"}`, 422, "priority"},
		{"missing name", "POST", "/tasks", `{"namespace":"shop"}`, 422, "/name"},
		{"unknown template", "POST", "/tasks", `{"namespace":"shop","name":"nope"}`, 422, "no registered template"},
		{"context against schema", "POST", "/tasks", `{"namespace":"shop","name":"typed","context":{"order_id":5}}`, 422, "/context/order_id"},
		{"context not an object", "POST", "/tasks", `{"namespace":"shop","name":"typed","context":[1]}`, 422, "/context"},
		{"bad task id", "GET", "/tasks/not-a-uuid", "", 400, "not a UUID"},
		{"unknown task", "GET", "/tasks/0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b", "", 404, ""},
		{"cancel unknown task", "DELETE", "/tasks/0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b", "", 404, ""},
		{"bad step id", "GET", "/tasks/0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b/workflow_steps/x", "", 400, "step_id"},
	} {
		code, hdr, body := s.call(t, tc.method, tc.path, "application/json", tc.body)
		raw, _ := json.Marshal(body)
		if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(raw), tc.detail) {
			t.Errorf("%s: %d %s %s; want %d with %q", tc.name, code, hdr.Get("Content-Type"), raw, tc.status, tc.detail)
		}
	}
	// Nothing half-written: no task exists after all those refusals.
	code, _, _ := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"shop","name":"typed","context":{"order_id":"A1"},"idempotency_key":"k"}`)
	if code != 201 {
		t.Fatalf("valid create: %d", code)
	}
	code, _, _ = s.call(t, "POST", "/tasks", "application/json", `{"namespace":"shop","name":"typed","context":{"order_id":"A1"},"idempotency_key":"k"}`)
	if code != 200 {
		t.Errorf("same key, same body: %d, want 200", code)
	}
	code, _, body := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"shop","name":"typed","context":{"order_id":"B2"},"idempotency_key":"k"}`)
	if code != 409 || !strings.Contains(fmt.Sprint(body["detail"]), "idempotency key") {
		t.Errorf("same key, other body: %d %v", code, body)
	}
}

func TestManualActionsThroughHTTP(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, `namespace_name: ops
name: broken
version: 1.0.0
step_templates:
  - {name: a, handler: fail, handler_config: {failures: 1, permanent: true}}
  - {name: b, handler: echo, depends_on_step: a}
`)
	_, _, body := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"ops","name":"broken"}`)
	id := body["task_id"].(string)
	body = s.waitStatus(t, id, "error")
	a := stepsByName(body)["a"]
	if a["status"] != "error" || a["attempts"] != float64(1) || stepsByName(body)["b"]["status"] != "pending" {
		t.Fatalf("after the permanent failure: %v", body)
	}
	stepPath := "/tasks/" + id + "/workflow_steps/" + a["step_id"].(string)
	// A complete step cannot be cancelled; an errored one can be resolved with results.
	code, _, step := s.call(t, "POST", stepPath+"/resolve", "application/json", `{"results":{"refund":"manual"}}`)
	if code != 200 || step["status"] != "resolved_manually" {
		t.Fatalf("resolve: %d %v", code, step)
	}
	body = s.waitStatus(t, id, "complete")
	if b := stepsByName(body)["b"]; b["status"] != "complete" {
		t.Errorf("b after resolve: %v", b)
	}
	code, _, problem := s.call(t, "POST", stepPath+"/cancel", "", "")
	if code != 409 || !strings.Contains(fmt.Sprint(problem["detail"]), "resolved_manually") {
		t.Errorf("cancel a resolved step: %d %v", code, problem)
	}
	code, _, _ = s.call(t, "POST", "/tasks/"+id+"/retry", "", "")
	if code != 409 {
		t.Errorf("retry a complete task: %d", code)
	}
	code, _, body = s.call(t, "DELETE", "/tasks/"+id, "", "")
	if code != 200 || body["status"] != "cancelled" {
		t.Errorf("cancel a complete task (admin override): %d %v", code, body["status"])
	}
	code, _, _ = s.call(t, "DELETE", "/tasks/"+id, "", "")
	if code != 409 {
		t.Errorf("cancel twice: %d", code)
	}
}

// Replacing a template changes new tasks only: a task created before keeps
// the template it was created with.
func TestReplacedTemplateLeavesExistingTasks(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	v1 := `namespace_name: ops
name: evolving
version: 1.0.0
step_templates:
  - {name: a, handler: fail, handler_config: {failures: %d}, backoff: {base: 50ms}}
`
	s.register(t, fmt.Sprintf(v1, 1))
	runAt := time.Now().Add(700 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	_, _, body := s.call(t, "POST", "/tasks", "application/json", `{"namespace":"ops","name":"evolving","run_at":"`+runAt+`"}`)
	old := body["task_id"].(string)
	s.register(t, fmt.Sprintf(v1, 0)) // replace=true: same version, new content
	_, _, body = s.call(t, "POST", "/tasks", "application/json", `{"namespace":"ops","name":"evolving"}`)
	fresh := body["task_id"].(string)
	if a := stepsByName(s.waitStatus(t, old, "complete"))["a"]; a["attempts"] != float64(2) {
		t.Errorf("task created before the replacement: %v attempts, want 2 (one failure)", a["attempts"])
	}
	if a := stepsByName(s.waitStatus(t, fresh, "complete"))["a"]; a["attempts"] != float64(1) {
		t.Errorf("task created after the replacement: %v attempts, want 1", a["attempts"])
	}
}
