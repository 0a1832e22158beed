package workers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
)

// The done-when: a template mixing the three kinds — an http step,
// a remote worker step, a subtask in another namespace — runs to complete
// through the API with the example workers, built and run as their users
// would run them.

var bin string // folder of the built binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-examples-")
	if err != nil {
		panic(err)
	}
	bin = dir
	for target, pkg := range map[string]string{"taskerd": "github.com/taskerd/taskerd/cmd/taskerd", "go-worker": "./go"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, target), pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	testdb.Shutdown()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output.
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

// process is a started program, killed at cleanup if still running.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func run(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := &process{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and wants a clean exit.
func (p *process) stop(t *testing.T, name string) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v", name, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", name)
	}
}

// services fakes the support system and the payment gateway.
type services struct {
	*httptest.Server
	mu      sync.Mutex
	notes   map[string]string // ticket → refund id noted
	refunds map[string]string // Idempotency-Key → payment id
	badAuth int
}

const supportToken = "support-tok-81c2"

func newServices(t *testing.T) *services {
	s := &services{notes: map[string]string{}, refunds: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /support/tickets/{ticket}/validate", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			http.Error(w, `{"error": "unauthorized"}`, http.StatusUnauthorized)
			return
		}
		var body struct {
			AmountCents int64 `json:"amount_cents"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		writeJSON(w, map[string]any{"ticket_id": r.PathValue("ticket"), "payment_id": "pay_" + r.PathValue("ticket"), "amount_cents": body.AmountCents})
	})
	mux.HandleFunc("POST /support/tickets/{ticket}/notes", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			http.Error(w, `{"error": "unauthorized"}`, http.StatusUnauthorized)
			return
		}
		var body struct {
			RefundID string `json:"refund_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		s.notes[r.PathValue("ticket")] = body.RefundID
		s.mu.Unlock()
		writeJSON(w, map[string]any{"noted": true})
	})
	mux.HandleFunc("POST /gateway/refunds", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PaymentID   string `json:"payment_id"`
			AmountCents int64  `json:"amount_cents"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.AmountCents <= 0 {
			http.Error(w, `{"error": "bad refund"}`, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.refunds[r.Header.Get("Idempotency-Key")] = body.PaymentID
		s.mu.Unlock()
		writeJSON(w, map[string]any{"refund_id": "re_" + body.PaymentID, "amount_cents": body.AmountCents, "status": "succeeded"})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *services) authorized(r *http.Request) bool {
	ok := r.Header.Get("Authorization") == "Bearer "+supportToken
	if !ok {
		s.mu.Lock()
		s.badAuth++
		s.mu.Unlock()
	}
	return ok
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

const paymentsYAML = `namespace_name: payments
name: process_refund
version: 1.0.0
schema:
  type: object
  required: [payment_id, amount_cents]
  properties:
    payment_id: {type: string}
    amount_cents: {type: integer, minimum: 1}
step_templates:
  - {name: validate_payment_eligibility, handler: echo, inputs: {eligible: true}}
  - name: process_gateway_refund
    handler: http
    depends_on_step: validate_payment_eligibility
    handler_config:
      method: POST
      url: "SERVICES/gateway/refunds"
      body: {payment_id: "{{ .context.payment_id }}", amount_cents: "{{ .context.amount_cents }}"}
  - {name: update_payment_records, handler: noop, depends_on_step: process_gateway_refund}
`

const customerSuccessYAML = `namespace_name: customer_success
name: process_refund
version: 1.0.0
step_templates:
  - name: validate_refund_request
    handler: http
    handler_config:
      method: POST
      url: "SERVICES/support/tickets/{{ .context.ticket_id }}/validate"
      headers: {Authorization: 'Bearer {{ secret "SUPPORT_TOKEN" }}'}
      body: {amount_cents: "{{ .context.amount_cents }}"}
  - name: check_refund_policy
    handler: "remote:refund_policy"
    depends_on_step: validate_refund_request
    custom_events:
      - {name: refund.approved, description: "A refund passed the policy; value is the amount"}
  - name: execute_refund_workflow
    handler: subtask
    depends_on_step: check_refund_policy
    timeout: 2m
    handler_config:
      namespace_name: payments
      name: process_refund
      context:
        payment_id: "{{ .steps.check_refund_policy.results.payment_id }}"
        amount_cents: "{{ .steps.check_refund_policy.results.approved_amount_cents }}"
  - name: update_ticket_status
    handler: http
    depends_on_step: execute_refund_workflow
    handler_config:
      method: POST
      url: "SERVICES/support/tickets/{{ .context.ticket_id }}/notes"
      headers: {Authorization: 'Bearer {{ secret "SUPPORT_TOKEN" }}'}
      body: {refund_id: "{{ .steps.execute_refund_workflow.results.steps.process_gateway_refund.refund_id }}"}
`

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// api calls taskerd.
type api struct {
	t    *testing.T
	base string
}

func (a api) call(method, path, contentType, body string) (int, map[string]any) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (a api) waitTask(id, status string, within time.Duration) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := a.call("GET", "/tasker/tasks/"+id, "", "")
		if code == 200 && body["status"] == status {
			return body
		}
		if final := body["status"] == "complete" || body["status"] == "error" || body["status"] == "cancelled"; final || time.Now().After(deadline) {
			a.t.Fatalf("task %s: %d %v, want %s", id, code, body["status"], status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stepResults(task map[string]any, name string) map[string]any {
	for _, s := range task["workflow_steps"].([]any) {
		if s := s.(map[string]any); s["name"] == name {
			r, _ := s["results"].(map[string]any)
			return r
		}
	}
	return nil
}

// refundScenario runs taskerd and the given worker, registers the two
// templates and runs a refund through them.
func refundScenario(t *testing.T, worker string, workerCmd ...string) {
	svc := newServices(t)
	addr := freeAddr(t)
	taskerd := run(t, "taskerd", []string{
		"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_HTTP_ADDR=" + addr, "TASKER_LOG_FORMAT=text",
		"TASKER_POLL_INTERVAL=500ms", "TASKER_SECRET_CUSTOMER__SUCCESS_SUPPORT_TOKEN=" + supportToken,
		"TASKER_INSECURE_NO_AUTH=true", // the example runs on loopback; docs/auth.md shows workers with tokens
	}, filepath.Join(bin, "taskerd"), "serve")
	a := api{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := a.call("GET", "/tasker/health/ready", "", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("taskerd did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, doc := range []string{paymentsYAML, customerSuccessYAML} {
		if code, body := a.call("POST", "/tasker/templates", "application/yaml", strings.ReplaceAll(doc, "SERVICES", svc.URL)); code != 201 {
			t.Fatalf("register: %d %v", code, body)
		}
	}
	workerProc := run(t, worker, []string{"TASKER_URL=" + a.base, "WORKER_ID=example-" + worker}, workerCmd...)

	code, body := a.call("POST", "/tasker/tasks", "application/json",
		`{"namespace": "customer_success", "name": "process_refund", "context": {"ticket_id": "T100", "amount_cents": 4200, "customer_tier": "gold"}}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	id := body["task_id"].(string)
	task := a.waitTask(id, "complete", 60*time.Second)

	policy := stepResults(task, "check_refund_policy")
	if policy["worker"] != worker || policy["approved_amount_cents"] != float64(4200) || policy["payment_id"] != "pay_T100" || policy["policy"] != "standard-gold" {
		t.Errorf("check_refund_policy results %v", policy)
	}
	if worker == "go" {
		// The Go worker emits refund.approved with the amount as its value.
		const want = `tasker_custom_event_value_sum{event="refund.approved",namespace="customer_success",task="process_refund"} 42`
		var metrics string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !strings.Contains(metrics, want); time.Sleep(50 * time.Millisecond) {
			if resp, err := http.Get(a.base + "/tasker/metrics"); err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				metrics = string(raw)
			}
		}
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	children, _ := task["child_tasks"].([]any)
	if len(children) != 1 || children[0].(map[string]any)["full_name"] != "payments.process_refund@1.0.0" {
		t.Errorf("child tasks %v", task["child_tasks"])
	}
	svc.mu.Lock()
	noted, refunds, badAuth := svc.notes["T100"], len(svc.refunds), svc.badAuth
	svc.mu.Unlock()
	if noted != "re_pay_T100" || refunds != 1 || badAuth != 0 {
		t.Errorf("support noted %q, gateway refunds %d, unauthorized calls %d", noted, refunds, badAuth)
	}

	// A refund above the worker's limit fails for good at the worker's step.
	_, body = a.call("POST", "/tasker/tasks", "application/json",
		`{"namespace": "customer_success", "name": "process_refund", "context": {"ticket_id": "T101", "amount_cents": 250000, "customer_tier": "gold"}}`)
	big := a.waitTask(body["task_id"].(string), "error", 60*time.Second)
	for _, s := range big["workflow_steps"].([]any) {
		s := s.(map[string]any)
		if s["name"] == "check_refund_policy" && (s["status"] != "error" || !strings.Contains(fmt.Sprint(s["last_error"]), "needs a person's approval")) {
			t.Errorf("over the limit: %v", s)
		}
	}

	_, listed := a.call("GET", "/tasker/workers", "", "")
	if ws, _ := listed["workers"].([]any); len(ws) != 1 || ws[0].(map[string]any)["worker_id"] != "example-"+worker {
		t.Errorf("workers: %v", listed)
	}
	workerProc.stop(t, worker)
	taskerd.stop(t, "taskerd")
}

func TestGoWorkerExample(t *testing.T) {
	t.Parallel()
	refundScenario(t, "go", filepath.Join(bin, "go-worker"))
}

func TestPythonWorkerExample(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed; the Python example cannot run")
	}
	refundScenario(t, "python", python, "-u", filepath.Join("python", "worker.py"))
}
