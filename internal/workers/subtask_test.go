package workers_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
)

// captureKind records the parent results each step saw.
type captureKind struct {
	mu   sync.Mutex
	seen map[uuid.UUID]map[string]json.RawMessage
}

func (*captureKind) Name() string                         { return "capture" }
func (*captureKind) ValidateConfig(json.RawMessage) error { return nil }
func (k *captureKind) Handle(_ context.Context, s handler.Step) (json.RawMessage, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen[s.TaskID] = s.Parents
	return json.RawMessage(`{"captured": true}`), nil
}

func (k *captureKind) parents(task uuid.UUID) map[string]json.RawMessage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seen[task]
}

// Tasker's team-scaling refund: customer_success calls payments.
const paymentsRefundYAML = `namespace_name: payments
name: process_refund
version: 1.0.0
schema:
  type: object
  required: [payment_id, amount_cents]
  properties:
    payment_id: {type: string}
    amount_cents: {type: integer}
step_templates:
  - {name: validate_payment_eligibility, handler: echo, inputs: {eligible: true}}
  - name: process_gateway_refund
    handler: fail
    handler_config: {failures: FAILURES, permanent: true}
    depends_on_step: validate_payment_eligibility
  - {name: update_payment_records, handler: echo, inputs: {refund_id: re_123}, depends_on_step: process_gateway_refund}
`

const customerSuccessYAML = `namespace_name: customer_success
name: process_refund
version: 1.0.0
step_templates:
  - {name: validate_refund_request, handler: echo, inputs: {payment_id: pay_9, amount_cents: 1250}}
  - name: execute_refund_workflow
    handler: subtask
    depends_on_step: validate_refund_request
    default_retry_limit: 3
    backoff: {base: 50ms}
    timeout: TIMEOUT
    handler_config:
      namespace_name: payments
      name: process_refund
      context:
        payment_id: "{{ .steps.validate_refund_request.results.payment_id }}"
        amount_cents: "{{ .steps.validate_refund_request.results.amount_cents }}"
        requested_by: "{{ .context.agent }}"
  - {name: notify_customer, handler: capture, depends_on_step: execute_refund_workflow}
`

func refundTemplates(r *replica, failures, timeout string) {
	r.register(strings.ReplaceAll(paymentsRefundYAML, "FAILURES", failures))
	r.register(strings.ReplaceAll(customerSuccessYAML, "TIMEOUT", timeout))
}

// A subtask in another namespace runs as a child task; the parent step waits
// holding no slot (the engine has ONE here, which the child needs) and no
// lease, completes with the child's results in the very transaction that
// finalises the child, and its dependents see those results. The tasks show
// their links.
func TestSubtaskAcrossNamespaces(t *testing.T) {
	t.Parallel()
	capture := &captureKind{seen: map[uuid.UUID]map[string]json.RawMessage{}}
	r := setup(t, func(o *options) { o.kinds = append(o.kinds, capture); o.maxConcurrent = 1 })
	refundTemplates(r, "0", "30s")
	id := r.create("customer_success", "process_refund", `{"agent": "ana"}`)
	r.waitTask(id, "complete", 20*time.Second)

	links, err := r.eng.TaskLinks(context.Background(), id)
	must(t, err)
	if links.Parent != nil || len(links.Children) != 1 {
		t.Fatalf("links %+v", links)
	}
	child := links.Children[0]
	parentStep := r.step(id, "execute_refund_workflow")
	if child.Namespace != "payments" || child.Name != "process_refund" || child.Status != "complete" ||
		child.StepID != parentStep.StepID || child.StepName != "execute_refund_workflow" {
		t.Errorf("child link %+v", child)
	}
	childView, err := r.eng.GetTask(context.Background(), child.TaskID, false)
	must(t, err)
	var childCtx map[string]any
	must(t, json.Unmarshal(childView.Task.Context, &childCtx))
	if childCtx["payment_id"] != "pay_9" || childCtx["amount_cents"] != float64(1250) || childCtx["requested_by"] != "ana" {
		t.Errorf("child context %v", childCtx)
	}
	back, err := r.eng.TaskLinks(context.Background(), child.TaskID)
	must(t, err)
	if back.Parent == nil || back.Parent.TaskID != id || back.Parent.StepName != "execute_refund_workflow" {
		t.Errorf("child's parent link %+v", back.Parent)
	}

	var results struct {
		TaskID uuid.UUID                  `json:"task_id"`
		Steps  map[string]json.RawMessage `json:"steps"`
	}
	must(t, json.Unmarshal(parentStep.Results, &results))
	if results.TaskID != child.TaskID || string(results.Steps["update_payment_records"]) != `{"refund_id": "re_123"}` {
		t.Errorf("parent step results %s", parentStep.Results)
	}
	if got := capture.parents(id)["execute_refund_workflow"]; string(got) != string(parentStep.Results) {
		t.Errorf("the dependent saw %s, want %s", got, parentStep.Results)
	}
	// One transaction: the child's completion and the parent step's share
	// the transaction's clock.
	var childDone, stepDone time.Time
	must(t, r.pool.QueryRow(context.Background(), `SELECT completed_at FROM tasks WHERE task_id = $1`, child.TaskID).Scan(&childDone))
	must(t, r.pool.QueryRow(context.Background(), `SELECT processed_at FROM workflow_steps WHERE workflow_step_id = $1`, parentStep.StepID).Scan(&stepDone))
	if !childDone.Equal(stepDone) {
		t.Errorf("child completed at %s, parent step at %s: not one transaction", childDone, stepDone)
	}
	if parentStep.Attempts != 1 || parentStep.LeaseOwner != "" {
		t.Errorf("parent step %+v", parentStep)
	}
}

// A failed child fails its parent step, whose retry retries the same child
// (never a second one) until it succeeds.
func TestSubtaskRetryReusesTheChild(t *testing.T) {
	t.Parallel()
	capture := &captureKind{seen: map[uuid.UUID]map[string]json.RawMessage{}}
	r := setup(t, func(o *options) { o.kinds = append(o.kinds, capture) })
	refundTemplates(r, "1", "30s") // the child's gateway step fails once, for good
	id := r.create("customer_success", "process_refund", `{"agent": "bo"}`)
	r.waitTask(id, "complete", 20*time.Second)
	parentStep := r.step(id, "execute_refund_workflow")
	var children int
	var childID uuid.UUID
	must(t, r.pool.QueryRow(context.Background(), `SELECT count(*), min(task_id::text)::uuid FROM tasks WHERE parent_step_id = $1`, parentStep.StepID).Scan(&children, &childID))
	if children != 1 || parentStep.Attempts != 2 {
		t.Fatalf("%d children, parent step attempts %d; want one child, two attempts", children, parentStep.Attempts)
	}
	var total int
	must(t, r.pool.QueryRow(context.Background(), `SELECT count(*) FROM tasks WHERE namespace_name = 'payments'`).Scan(&total))
	if total != 1 {
		t.Errorf("%d payments tasks, want 1", total)
	}
	// The child went error → pending (retried by the parent's second attempt) → complete.
	v, err := r.eng.GetTask(context.Background(), childID, true)
	must(t, err)
	var path []string
	for _, tr := range v.Transitions {
		if tr.StepID == nil {
			path = append(path, tr.To)
		}
	}
	if strings.Join(path, ",") != "pending,in_progress,error,pending,in_progress,complete" {
		t.Errorf("child task transitions %v", path)
	}
	if capture.parents(id) == nil {
		t.Error("the dependent did not run")
	}
}

// Cancelling the parent task cancels the waiting child and its running
// steps; cancelling a child by hand fails its parent step for good.
func TestSubtaskCancellation(t *testing.T) {
	t.Parallel()
	capture := &captureKind{seen: map[uuid.UUID]map[string]json.RawMessage{}}
	r := setup(t, func(o *options) { o.kinds = append(o.kinds, capture) })
	r.register(`namespace_name: payments
name: slow
version: 1.0.0
step_templates:
  - {name: wait, handler: sleep, handler_config: {duration: 1m}, timeout: 2m}
`)
	r.register(`namespace_name: customer_success
name: slow_refund
version: 1.0.0
step_templates:
  - {name: call, handler: subtask, timeout: 5m, default_retry_limit: 3, handler_config: {namespace_name: payments, name: slow}}
  - {name: after, handler: capture, depends_on_step: call}
`)
	ctx := context.Background()
	childOf := func(parent uuid.UUID) uuid.UUID {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			links, err := r.eng.TaskLinks(ctx, parent)
			must(t, err)
			if len(links.Children) == 1 {
				return links.Children[0].TaskID
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no child task")
		return uuid.Nil
	}

	// Parent cancelled → child cancelled, its sleeping step stopped.
	id := r.create("customer_success", "slow_refund", `{}`)
	child := childOf(id)
	r.waitStep(child, "wait", "in_progress", 10*time.Second)
	if st := r.step(id, "call"); st.Status != "in_progress" || st.LeaseOwner != "subtask:"+child.String() {
		t.Fatalf("waiting parent step %+v", st)
	}
	must(t, r.eng.CancelTask(ctx, id, "tester"))
	r.waitTask(child, "cancelled", 5*time.Second)
	if st := r.step(child, "wait"); st.Status != "cancelled" {
		t.Errorf("child step %+v", st)
	}

	// Parent step cancelled → its child cancelled.
	id2 := r.create("customer_success", "slow_refund", `{}`)
	child2 := childOf(id2)
	must(t, r.eng.CancelStep(ctx, id2, r.step(id2, "call").StepID, "tester"))
	r.waitTask(child2, "cancelled", 5*time.Second)
	r.waitTask(id2, "error", 5*time.Second)

	// Child cancelled by hand → the parent step fails for good.
	id3 := r.create("customer_success", "slow_refund", `{}`)
	child3 := childOf(id3)
	r.waitStep(id3, "call", "in_progress", 5*time.Second)
	must(t, r.eng.CancelTask(ctx, child3, "tester"))
	r.waitTask(id3, "error", 5*time.Second)
	st := r.step(id3, "call")
	if st.Status != "error" || !strings.Contains(string(st.LastError), "cancelled") || st.Attempts != 1 {
		t.Errorf("parent step after its child was cancelled: %+v %s", st, st.LastError)
	}
	if capture.parents(id3) != nil || capture.parents(id) != nil {
		t.Error("a dependent ran after a cancellation")
	}
}

// The subtask step's timeout bounds the wait for its child; an unknown
// child template fails it for good.
func TestSubtaskTimeoutAndUnknownTemplate(t *testing.T) {
	t.Parallel()
	r := setup(t, func(o *options) {
		o.kinds = append(o.kinds, &captureKind{seen: map[uuid.UUID]map[string]json.RawMessage{}})
	})
	r.register(`namespace_name: payments
name: slow
version: 1.0.0
step_templates:
  - {name: wait, handler: sleep, handler_config: {duration: 1m}, timeout: 2m}
`)
	r.register(`namespace_name: customer_success
name: impatient
version: 1.0.0
step_templates:
  - {name: call, handler: subtask, timeout: 500ms, default_retry_limit: 1, handler_config: {namespace_name: payments, name: slow}}
  - {name: missing, handler: subtask, handler_config: {namespace_name: payments, name: nowhere}}
`)
	id := r.create("customer_success", "impatient", `{}`)
	r.waitTask(id, "error", 15*time.Second)
	call, missing := r.step(id, "call"), r.step(id, "missing")
	if call.Status != "error" || !strings.Contains(string(call.LastError), "lease expired") {
		t.Errorf("timed-out subtask step: %+v %s", call, call.LastError)
	}
	if missing.Status != "error" || missing.Attempts != 1 || !strings.Contains(string(missing.LastError), "no registered template payments.nowhere") {
		t.Errorf("unknown template: %+v %s", missing, missing.LastError)
	}
	links, err := r.eng.TaskLinks(context.Background(), id)
	must(t, err)
	for _, c := range links.Children {
		must(t, r.eng.CancelTask(context.Background(), c.TaskID, "cleanup"))
	}
}

// chain registers a.top_X → b.middle_X → c.leaf_X, the leaf holding for hold.
func chain(r *replica, suffix, hold string) {
	r.register(strings.NewReplacer("X", suffix, "HOLD", hold).Replace(`namespace_name: c
name: leaf_X
version: 1.0.0
step_templates:
  - {name: work, handler: echo, inputs: {depth: 2}}
  - {name: hold, handler: sleep, handler_config: {duration: HOLD}, timeout: 2m, depends_on_step: work}
`))
	r.register(strings.ReplaceAll(`namespace_name: b
name: middle_X
version: 1.0.0
step_templates:
  - {name: call_leaf, handler: subtask, timeout: 5m, handler_config: {namespace_name: c, name: leaf_X}}
`, "X", suffix))
	r.register(strings.ReplaceAll(`namespace_name: a
name: top_X
version: 1.0.0
step_templates:
  - {name: call_middle, handler: subtask, timeout: 5m, handler_config: {namespace_name: b, name: middle_X}}
  - {name: after, handler: noop, depends_on_step: call_middle}
`, "X", suffix))
}

// Subtasks nest: the grandchild's finalisation completes the child's step,
// which completes the child, which completes the parent's step, in one
// transaction; cancelling the parent reaches the grandchild.
func TestNestedSubtasks(t *testing.T) {
	t.Parallel()
	r := setup(t)
	ctx := context.Background()
	chain(r, "fast", "0s")
	chain(r, "slow", "1m")

	id := r.create("a", "top_fast", `{}`)
	r.waitTask(id, "complete", 20*time.Second)
	var results struct {
		Steps map[string]struct {
			Steps map[string]json.RawMessage `json:"steps"`
		} `json:"steps"`
	}
	must(t, json.Unmarshal(r.step(id, "call_middle").Results, &results))
	if got := string(results.Steps["call_leaf"].Steps["work"]); got != `{"depth": 2}` {
		t.Errorf("the grandchild's results did not reach the top: %s", r.step(id, "call_middle").Results)
	}
	var distinct int
	must(t, r.pool.QueryRow(ctx, `SELECT count(DISTINCT completed_at) FROM tasks`).Scan(&distinct))
	if distinct != 2 {
		// The top task completes later, when its "after" step runs; the
		// middle and the leaf complete together.
		t.Errorf("%d distinct completion times for 3 tasks, want 2", distinct)
	}

	slow := r.create("a", "top_slow", `{}`)
	var leaf uuid.UUID
	deadline := time.Now().Add(10 * time.Second)
	for leaf == uuid.Nil && time.Now().Before(deadline) {
		_ = r.pool.QueryRow(ctx, `SELECT task_id FROM tasks WHERE task_name = 'leaf_slow'`).Scan(&leaf)
		time.Sleep(20 * time.Millisecond)
	}
	r.waitStep(leaf, "hold", "in_progress", 10*time.Second)
	must(t, r.eng.CancelTask(ctx, slow, "tester"))
	r.waitTask(leaf, "cancelled", 5*time.Second)
	var statuses []string
	rows, err := r.pool.Query(ctx, `SELECT task_name || ':' || status FROM tasks WHERE task_name LIKE '%_slow' ORDER BY task_name`)
	must(t, err)
	for rows.Next() {
		var s string
		must(t, rows.Scan(&s))
		statuses = append(statuses, s)
	}
	if strings.Join(statuses, ",") != "leaf_slow:cancelled,middle_slow:cancelled,top_slow:cancelled" {
		t.Errorf("after cancelling the top: %v", statuses)
	}
}
