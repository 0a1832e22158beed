package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/testserver"
)

// apiUnderTest is a replica under test, called over HTTP.
type apiUnderTest struct {
	t    *testing.T
	base string
	dsn  string
}

func startAPI(t *testing.T, env map[string]string, logs io.Writer) *apiUnderTest {
	t.Helper()
	r := testserver.Start(t, env, logs)
	return &apiUnderTest{t: t, base: r.URL + "/tasker", dsn: r.DSN}
}

// do sends a JSON body (a string, or a value to encode) and decodes the answer.
func (a *apiUnderTest) do(method, path string, body any, header ...string) (int, http.Header, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		a.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

func (a *apiUnderTest) registerYAML(yaml string) {
	a.t.Helper()
	req, _ := http.NewRequest("POST", a.base+"/templates", strings.NewReader(yaml))
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		a.t.Fatalf("register: %d %s", resp.StatusCode, raw)
	}
}

func (a *apiUnderTest) createTask(ns, name string, ctx any, header ...string) string {
	a.t.Helper()
	code, _, body := a.do("POST", "/tasks", map[string]any{"namespace": ns, "name": name, "context": ctx}, header...)
	if code != 201 {
		a.t.Fatalf("create task: %d %v", code, body)
	}
	return body["task_id"].(string)
}

func (a *apiUnderTest) waitTask(id, status string, within time.Duration) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, _, body := a.do("GET", "/tasks/"+id, nil)
		if code == 200 && body["status"] == status {
			return body
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("task %s: %d status %v, want %s", id, code, body["status"], status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const remoteYAML = `namespace_name: shop
name: ship
version: 1.0.0
step_templates:
  - {name: pack, handler: echo, inputs: {box: small}}
  - {name: ship, handler: "remote:shipping", handler_config: {carrier: ups}, depends_on_step: pack, backoff: {base: 100ms}}
`

func TestWorkerEndpoints(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	a.registerYAML(remoteYAML)
	id := a.createTask("shop", "ship", map[string]any{"order": 7}, "X-Correlation-ID", "corr-77",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	code, _, body := a.do("POST", "/workers/claim", `{"worker_id": "w-1", "handlers": ["remote:shipping"], "wait_seconds": 10}`)
	steps, _ := body["steps"].([]any)
	if code != 200 || len(steps) != 1 {
		t.Fatalf("claim: %d %v", code, body)
	}
	s := steps[0].(map[string]any)
	stepID := s["step_id"].(string)
	if s["task_id"] != id || s["attempt"] != float64(1) || s["handler"] != "remote:shipping" || s["step_name"] != "ship" ||
		s["correlation_id"] != "corr-77" || !strings.HasPrefix(fmt.Sprint(s["traceparent"]), "00-4bf92f3577b34da6a3ce929d0e0e4736") ||
		s["lease_expires_at"] == nil || s["timeout_seconds"] != float64(30) {
		t.Errorf("claimed step %v", s)
	}
	if cfg := s["handler_config"].(map[string]any); cfg["carrier"] != "ups" {
		t.Errorf("handler_config %v", cfg)
	}
	if ctx := s["context"].(map[string]any); ctx["order"] != float64(7) {
		t.Errorf("context %v", ctx)
	}
	if parents := s["parent_results"].(map[string]any); fmt.Sprint(parents["pack"]) != "map[box:small]" {
		t.Errorf("parent_results %v", parents)
	}

	code, _, body = a.do("POST", "/steps/"+stepID+"/heartbeat", `{"attempt": 1, "lease_seconds": 60}`)
	if code != 200 || body["lease_expires_at"] == nil || body["cancelled"] != false {
		t.Errorf("heartbeat: %d %v", code, body)
	}
	code, hdr, body := a.do("POST", "/steps/"+stepID+"/heartbeat", `{"attempt": 2}`)
	if code != 409 || hdr.Get("Content-Type") != "application/problem+json" || body["cancelled"] != false ||
		body["step_status"] != "in_progress" || body["current_attempt"] != float64(1) {
		t.Errorf("stale heartbeat: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/steps/"+stepID+"/heartbeat", `{}`); code != 422 {
		t.Errorf("heartbeat without attempt: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/steps/"+stepID+"/complete", `{"attempt": 2, "results": {"x": 1}}`); code != 409 {
		t.Errorf("stale completion: %d %v", code, body)
	}
	code, _, body = a.do("POST", "/steps/"+stepID+"/complete", `{"attempt": 1, "results": {"tracking": "1Z999"}}`)
	if code != 200 || body["status"] != "complete" || body["task_id"] != id || body["task_status"] != "complete" {
		t.Errorf("complete: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/steps/"+stepID+"/complete", `{"attempt": 1, "results": {}}`); code != 409 || body["step_status"] != "complete" {
		t.Errorf("second completion: %d %v", code, body)
	}
	task := a.waitTask(id, "complete", 10*time.Second)
	for _, st := range task["workflow_steps"].([]any) {
		st := st.(map[string]any)
		if st["name"] == "ship" && fmt.Sprint(st["results"]) != "map[tracking:1Z999]" {
			t.Errorf("ship results %v", st["results"])
		}
	}

	if code, _, _ = a.do("POST", "/steps/0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b/heartbeat", `{"attempt": 1}`); code != 404 {
		t.Errorf("unknown step: %d", code)
	}
	if code, _, _ = a.do("POST", "/steps/nope/complete", `{"attempt": 1}`); code != 400 {
		t.Errorf("malformed step id: %d", code)
	}
	code, _, body = a.do("POST", "/workers/claim", `{"handlers": ["shipping"], "lease_seconds": 0.1}`)
	if code != 422 || len(body["errors"].([]any)) != 3 {
		t.Errorf("invalid claim: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/workers/claim", `{"worker_id": "w", "handlers": ["remote:x"], "extra": 1}`); code != 422 {
		t.Errorf("unknown field: %d %v", code, body)
	}

	code, _, body = a.do("GET", "/workers", nil)
	list, _ := body["workers"].([]any)
	if code != 200 || len(list) != 1 || list[0].(map[string]any)["worker_id"] != "w-1" || body["total"] != float64(1) {
		t.Errorf("workers: %d %v", code, body)
	}
	if code, _, _ = a.do("GET", "/workers?seen_within=soon", nil); code != 400 {
		t.Errorf("bad seen_within: %d", code)
	}
}

func TestWorkerFailAndCancel(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	a.registerYAML(remoteYAML)
	id := a.createTask("shop", "ship", map[string]any{})
	claim := func() map[string]any {
		t.Helper()
		code, _, body := a.do("POST", "/workers/claim", `{"worker_id": "w-2", "handlers": ["remote:shipping"], "wait_seconds": 10, "max": 5}`)
		steps, _ := body["steps"].([]any)
		if code != 200 || len(steps) != 1 {
			t.Fatalf("claim: %d %v", code, body)
		}
		return steps[0].(map[string]any)
	}
	s := claim()
	stepID := s["step_id"].(string)
	code, _, body := a.do("POST", "/steps/"+stepID+"/fail", `{"attempt": 1, "error": {"message": "carrier down", "code": 503}, "retry_after_seconds": 0.2}`)
	if code != 200 || body["status"] != "pending" || body["retry_at"] == nil {
		t.Fatalf("fail: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/steps/"+stepID+"/fail", `{"attempt": 2, "error": 42}`); code != 422 {
		t.Errorf("malformed error: %d %v", code, body)
	}
	s = claim()
	if s["attempt"] != float64(2) {
		t.Fatalf("retry claimed at attempt %v", s["attempt"])
	}
	if code, _, body = a.do("DELETE", "/tasks/"+id, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, body)
	}
	code, _, body = a.do("POST", "/steps/"+stepID+"/heartbeat", `{"attempt": 2}`)
	if code != 409 || body["cancelled"] != true || body["step_status"] != "cancelled" {
		t.Errorf("heartbeat after cancel: %d %v", code, body)
	}
	if code, _, body = a.do("POST", "/steps/"+stepID+"/fail", `{"attempt": 2, "error": "too late"}`); code != 409 || body["cancelled"] != true {
		t.Errorf("fail after cancel: %d %v", code, body)
	}
}

// GET /tasks/{id} shows a subtask's parent and a parent's children.
func TestTaskShowsSubtaskLinks(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	a.registerYAML(`namespace_name: payments
name: refund
version: 1.2.0
step_templates:
  - {name: issue, handler: echo, inputs: {refund_id: re_1}}
`)
	a.registerYAML(`namespace_name: customer_success
name: refund
version: 1.0.0
step_templates:
  - {name: call_payments, handler: subtask, handler_config: {namespace_name: payments, name: refund, context: {ticket: "{{ .context.ticket }}"}}}
`)
	id := a.createTask("customer_success", "refund", map[string]any{"ticket": "T-1"})
	parent := a.waitTask(id, "complete", 15*time.Second)
	children, _ := parent["child_tasks"].([]any)
	if len(children) != 1 {
		t.Fatalf("child_tasks: %v", parent["child_tasks"])
	}
	c := children[0].(map[string]any)
	if c["full_name"] != "payments.refund@1.2.0" || c["status"] != "complete" || c["step_name"] != "call_payments" {
		t.Errorf("child link %v", c)
	}
	code, _, child := a.do("GET", "/tasks/"+c["task_id"].(string), nil)
	p, _ := child["parent_task"].(map[string]any)
	if code != 200 || p == nil || p["task_id"] != id || p["full_name"] != "customer_success.refund@1.0.0" ||
		fmt.Sprint(child["context"]) != "map[ticket:T-1]" || child["idempotency_key"] != "subtask:"+c["step_id"].(string) {
		t.Errorf("child: %d %v", code, child)
	}
	if parent["parent_task"] != nil {
		t.Errorf("a top task has no parent: %v", parent["parent_task"])
	}
}

// Bad http and subtask configs are refused at registration, with pointers.
func TestDeclarativeKindsValidatedAtRegistration(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	req, _ := http.NewRequest("POST", a.base+"/templates", strings.NewReader(`namespace_name: x
name: bad
step_templates:
  - {name: a, handler: http, handler_config: {method: FETCH, url: "https://api.example.com/"}}
  - {name: b, handler: http, handler_config: {url: "https://api.example.com/{{ .context.id "}}
  - {name: c, handler: subtask, handler_config: {name: y}}
  - {name: d, handler: "remote:ok"}
`))
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Errors []struct{ Pointer, Detail string } `json:"errors"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 422 || len(body.Errors) != 3 {
		t.Fatalf("register: %d %+v", resp.StatusCode, body)
	}
	for i, want := range []string{"/step_templates/0/handler_config", "/step_templates/1/handler_config", "/step_templates/2/handler_config"} {
		if body.Errors[i].Pointer != want {
			t.Errorf("error %d at %s (%s), want %s", i, body.Errors[i].Pointer, body.Errors[i].Detail, want)
		}
	}
}

// syncBuffer collects log lines from the replica's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// An http step's secret reaches the called service and nothing else: not
// the step's results or errors, not transitions, not any stored row, not a
// log line, though the service echoes it back in every answer.
func TestHTTPStepSecretsNeverStored(t *testing.T) {
	t.Parallel()
	const secret = "tok-5e3c1a9b-never-store-me"
	// A variable name no other test uses: the replica reads the process
	// environment, and parallel tests cannot t.Setenv.
	variable := "TASKER_SECRET_VAULTED__PAY_GATEWAY_TOKEN"
	if err := os.Setenv(variable, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Unsetenv(variable) })
	var calls atomic.Int64
	var seen atomic.Value
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
		fmt.Fprintf(w, `{"echo": %q, "url": %q}`, r.Header.Get("Authorization"), r.URL.String())
	}))
	t.Cleanup(svc.Close)
	logs := &syncBuffer{}
	a := startAPI(t, nil, logs)
	a.registerYAML(fmt.Sprintf(`namespace_name: vaulted_pay
name: charge
version: 1.0.0
step_templates:
  - name: charge
    handler: http
    backoff: {base: 100ms}
    handler_config:
      method: POST
      url: '%s/charges?key={{ secret "GATEWAY_TOKEN" }}'
      headers: {Authorization: 'Bearer {{ secret "GATEWAY_TOKEN" }}'}
      body: {token_hint: '{{ secret "GATEWAY_TOKEN" }}', amount: "{{ .context.amount }}"}
`, svc.URL))
	id := a.createTask("vaulted_pay", "charge", map[string]any{"amount": 10})
	body := a.waitTask(id, "complete", 20*time.Second)
	if seen.Load() != "Bearer "+secret || calls.Load() != 2 {
		t.Fatalf("the service saw %v in %d calls", seen.Load(), calls.Load())
	}
	raw, _ := json.Marshal(body)
	if !strings.Contains(string(raw), "Bearer [REDACTED]") {
		t.Errorf("results should show the redacted echo: %s", raw)
	}

	// Every row of every table of the schema, as text.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'tasker' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 8 {
		t.Fatalf("tables %v %v", tables, err)
	}
	for _, table := range tables {
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM tasker.%s t WHERE t::text LIKE '%%' || $1 || '%%'`, pgx.Identifier{table}.Sanitize())
		if err := conn.QueryRow(ctx, q, "5e3c1a9b").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Errorf("table %s holds the secret in %d rows", table, n)
		}
	}
	if strings.Contains(logs.String(), "5e3c1a9b") {
		t.Errorf("a log line holds the secret")
	}
	if !strings.Contains(logs.String(), "/tasker/tasks") {
		t.Errorf("the replica logged nothing; the log check proves nothing")
	}
}
