package teamscaling_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/examples/internal/e2e"
	"github.com/taskerd/taskerd/internal/auth/authtest"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]string{"worker": "github.com/taskerd/taskerd/examples/workers/go"})
}

// secret is the HS256 key of the test's tokens (at least 32 bytes).
const secret = "example-04-team-scaling-secret-0123456789"

// TestTeamScaling runs the README's scenario with authentication on: each
// team registers its own process_refund, both show in discovery, the
// customer-success refund runs the payments refund as a subtask through a
// flaky gateway, and each team's token reaches its own namespace only.
func TestTeamScaling(t *testing.T) {
	t.Parallel()
	policy, err := filepath.Abs("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := e2e.Start(t, "TASKER_AUTH_MODE=jwt", "TASKER_JWT_SECRET="+secret, "TASKER_JWT_ISSUER="+authtest.Issuer,
		"TASKER_JWT_AUDIENCE="+authtest.Audience, "TASKER_AUTH_POLICY="+policy)
	token := func(sub, role string) string {
		return authtest.SignHS256(t, []byte(secret), authtest.Valid(sub, role))
	}
	admin := env.As(token("ops@example.com", "admin"))
	payments := env.As(readmeToken(t, "pat@payments.example.com", "payments_team"))
	support := env.As(token("casey@support.example.com", "customer_success_team"))

	if code, _ := env.Call("GET", "/tasker/tasks", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /tasker/tasks without a token: %d, want 401", code)
	}
	// Each team registers its own template, and only its own.
	payments.RegisterFile("templates/payments_process_refund.yaml")
	support.RegisterFile("templates/customer_success_process_refund.yaml")
	if code, _ := support.Call("POST", "/tasker/templates", readFile(t, "templates/payments_process_refund.yaml")); code != http.StatusForbidden {
		t.Errorf("customer success registering a payments template: %d, want 403", code)
	}

	// Discovery: one name, two namespaces, two versions.
	if code, body := admin.Object("GET", "/tasker/handlers", ""); code != http.StatusOK || namespaces(body) != "customer_success,payments" {
		t.Errorf("admin's discovery: %d %v", code, body)
	}
	for ns, version := range map[string]string{"payments": "2.1.0", "customer_success": "1.3.0"} {
		code, body := admin.Object("GET", "/tasker/handlers/"+ns, "")
		hs, _ := body["handlers"].([]any)
		if h, _ := first(hs).(map[string]any); code != http.StatusOK || len(hs) != 1 || h["name"] != "process_refund" || h["latest_version"] != version {
			t.Errorf("GET /tasker/handlers/%s: %d %v, want process_refund %s", ns, code, body, version)
		}
	}
	if code, body := payments.Object("GET", "/tasker/handlers", ""); code != http.StatusOK || namespaces(body) != "payments" {
		t.Errorf("payments' discovery: %d %v, want payments only", code, body)
	}
	if code, _ := payments.Call("GET", "/tasker/handlers/customer_success", ""); code != http.StatusNotFound {
		t.Errorf("payments reading customer_success's handlers: %d, want 404", code)
	}

	// The refund policy worker claims its queue with its own token.
	worker := e2e.Run(t, "worker", []string{"TASKER_URL=" + env.Base, "WORKER_ID=example-04",
		"TASKER_TOKEN=" + token("refund-policy-worker", "refund_policy_worker")}, e2e.Bin("worker"))

	// The gateway fails each refund's first two attempts: the payments
	// step (two attempts allowed) fails, so does the child task, and the
	// customer-success step's second attempt retries the child's failed
	// step, which goes through.
	env.SetMode("gateway_refunds", `{"mode": "flaky", "failures": 2}`)
	id := support.CreateTask("customer_success", "process_refund", map[string]any{"ticket_id": "T100", "amount_cents": 4200, "customer_tier": "gold"})
	task := support.WaitTask(id, "complete", 30*time.Second)

	children, _ := task["child_tasks"].([]any)
	child, _ := first(children).(map[string]any)
	if len(children) != 1 || child["full_name"] != "payments.process_refund@2.1.0" || child["status"] != "complete" {
		t.Fatalf("child tasks %v, want one payments.process_refund@2.1.0, complete", task["child_tasks"])
	}
	childID := child["task_id"].(string)
	if sub := e2e.Step(task, "execute_refund_workflow"); sub["attempts"] != float64(2) {
		t.Errorf("execute_refund_workflow: %v, want 2 attempts", sub)
	}
	if policy, _ := e2e.Step(task, "check_refund_policy")["results"].(map[string]any); policy["payment_id"] != "pay_T100" || policy["approved_amount_cents"] != float64(4200) {
		t.Errorf("check_refund_policy results %v", policy)
	}
	gateway := env.Calls("gateway_refunds")
	if len(gateway) != 3 || gateway[0].Status != 500 || gateway[1].Status != 500 || gateway[2].Status != 201 ||
		gateway[0].IdempotencyKey != gateway[2].IdempotencyKey {
		t.Errorf("gateway calls %+v, want 500, 500, 201 with one Idempotency-Key", gateway)
	}
	_, out := env.Call("GET", env.MocksURL+"/support/tickets/T100/notes", "")
	if notes, _ := out.([]any); len(notes) != 1 || !strings.HasPrefix(fmt.Sprint(notes[0]), "refunded re_") {
		t.Errorf("ticket T100's notes %v, want one naming the refund", out)
	}
	// The payments team sees the child, created by the other team's
	// workflow, as one of its own tasks; its answer names the parent.
	code, childTask := payments.Object("GET", "/tasker/tasks/"+childID, "")
	if parent, _ := childTask["parent_task"].(map[string]any); code != http.StatusOK || parent["task_id"] != id {
		t.Errorf("payments reading the child: %d %v", code, childTask)
	}
	if len(env.Calls("ledger")) != 1 || len(env.Calls("refund_emails")) != 1 {
		t.Errorf("ledger and notification calls: %+v", env.Calls(""))
	}

	env.SetMode("gateway_refunds", `{"mode": "ok"}`)
	// A refund above what the payment captured: the payments workflow's
	// eligibility check refuses it for good (422), in both attempts of the
	// customer-success step, and the task ends in error.
	failed := support.WaitTask(support.CreateTask("customer_success", "process_refund",
		map[string]any{"ticket_id": "T101", "amount_cents": 60000, "customer_tier": "standard"}), "error", 30*time.Second)
	if sub := e2e.Step(failed, "execute_refund_workflow"); sub["status"] != "error" || sub["attempts"] != float64(2) {
		t.Errorf("execute_refund_workflow of a refund too large: %v", sub)
	}
	if c := env.Calls("refund_eligibility"); len(c) != 3 || c[2].Status != 422 {
		t.Errorf("eligibility calls %+v, want T100's 200 and T101's 422 twice", c)
	}

	// A payments token cannot touch customer success's tasks: every id
	// answers 404, as one that does not exist.
	for _, call := range [][2]string{{"GET", "/tasker/tasks/" + id}, {"GET", "/tasker/tasks/" + id + "/workflow_steps"},
		{"POST", "/tasker/tasks/" + id + "/retry"}, {"DELETE", "/tasker/tasks/" + id}} {
		if code, body := payments.Object(call[0], call[1], ""); code != http.StatusNotFound {
			t.Errorf("payments: %s %s: %d %v, want 404", call[0], call[1], code, body)
		}
	}
	if code, _ := support.Call("GET", "/tasker/tasks/"+childID, ""); code != http.StatusNotFound {
		t.Errorf("customer success reading payments' child task: %d, want 404", code)
	}
	body, _ := json.Marshal(map[string]any{"namespace": "customer_success", "name": "process_refund",
		"context": map[string]any{"ticket_id": "T102", "amount_cents": 100, "customer_tier": "gold"}})
	if code, _ := payments.Call("POST", "/tasker/tasks", string(body)); code != http.StatusForbidden {
		t.Errorf("payments creating a customer_success task: %d, want 403", code)
	}
	// … and does its own work: creates, shows and lists payments tasks.
	own := payments.CreateTask("payments", "process_refund", map[string]any{"payment_id": "pay_T200", "amount_cents": 1500})
	payments.WaitTask(own, "complete", 30*time.Second)
	code, list := payments.Object("GET", "/tasker/tasks?limit=100", "")
	if listed := taskIDs(list); code != http.StatusOK || !listed[own] || !listed[childID] || listed[id] || !onlyNamespace(list, "payments") {
		t.Errorf("payments' task list: %d %v, want its own tasks only", code, list)
	}
	code, list = admin.Object("GET", "/tasker/tasks?limit=100", "")
	if listed := taskIDs(list); code != http.StatusOK || !listed[own] || !listed[childID] || !listed[id] {
		t.Errorf("admin's task list: %d %v, want every task", code, list)
	}
	worker.Stop(t)
	env.Taskerd.Stop(t)
	env.Mocks.Stop(t)
}

// readmeToken mints a token with the README's shell function, so that the
// README's commands cannot rot; without bash or openssl it signs the token
// in Go.
func readmeToken(t *testing.T, sub, role string) string {
	t.Helper()
	_, errBash := exec.LookPath("bash")
	_, errSSL := exec.LookPath("openssl")
	if errBash != nil || errSSL != nil {
		t.Log("no bash or openssl: the README's jwt function is not checked")
		return authtest.SignHS256(t, []byte(secret), authtest.Valid(sub, role))
	}
	readme := readFile(t, "README.md")
	start := strings.Index(readme, "b64url() {")
	end := -1
	if start >= 0 {
		end = strings.Index(readme[start:], "\n}\n")
	}
	if end < 0 {
		t.Fatal("README.md has no jwt function")
	}
	cmd := exec.Command("bash", "-c", readme[start:start+end+2]+"\njwt \"$1\" \"$2\"", "jwt", sub, role)
	cmd.Env = append(os.Environ(), "TASKER_JWT_SECRET="+secret, "TASKER_JWT_ISSUER="+authtest.Issuer, "TASKER_JWT_AUDIENCE="+authtest.Audience)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the README's jwt function: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func first(xs []any) any {
	if len(xs) == 0 {
		return nil
	}
	return xs[0]
}

// namespaces lists the names of GET /tasker/handlers' namespaces, joined.
func namespaces(body map[string]any) string {
	var names []string
	ns, _ := body["namespaces"].([]any)
	for _, n := range ns {
		n, _ := n.(map[string]any)
		names = append(names, fmt.Sprint(n["name"]))
	}
	return strings.Join(names, ",")
}

func taskIDs(list map[string]any) map[string]bool {
	ids := map[string]bool{}
	tasks, _ := list["tasks"].([]any)
	for _, task := range tasks {
		task, _ := task.(map[string]any)
		ids[fmt.Sprint(task["task_id"])] = true
	}
	return ids
}

func onlyNamespace(list map[string]any, ns string) bool {
	tasks, _ := list["tasks"].([]any)
	for _, task := range tasks {
		if task, _ := task.(map[string]any); task["namespace"] != ns {
			return false
		}
	}
	return len(tasks) > 0
}
