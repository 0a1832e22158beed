package checkout_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/examples/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// TestCheckout runs the README's scenarios: a flaky payment gateway retried
// with growing backoff; an out-of-stock item failing the task for good
// before the confirmation is sent; and a retry after the restock.
func TestCheckout(t *testing.T) {
	t.Parallel()
	env := e2e.Start(t)
	env.RegisterFile("templates/order_processing.yaml")

	// The gateway fails the first three attempts of each payment with 500.
	env.SetMode("payments", `{"mode": "flaky", "failures": 3}`)
	id := env.CreateTask("ecommerce", "order_processing", map[string]any{
		"order_id": "A-1001", "customer_email": "ada@example.com",
		"items": []any{map[string]any{"sku": "widget", "quantity": 2}, map[string]any{"sku": "gadget", "quantity": 1}},
	})
	task := env.WaitTask(id, "complete", 30*time.Second)
	payment := e2e.Step(task, "process_payment")
	if payment["attempts"] != float64(4) {
		t.Errorf("process_payment attempts %v, want 4", payment["attempts"])
	}
	if r, _ := payment["results"].(map[string]any); r["amount_cents"] != float64(2*1250+4999) || r["status"] != "captured" {
		t.Errorf("process_payment results %v", payment["results"])
	}
	calls := env.Calls("payments")
	if len(calls) != 4 {
		t.Fatalf("payment calls %+v, want 4", calls)
	}
	// Growing backoff: the template's base is 200ms, doubling.
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		if calls[i].IdempotencyKey != calls[0].IdempotencyKey {
			t.Errorf("attempt %d has Idempotency-Key %q, want %q", i+1, calls[i].IdempotencyKey, calls[0].IdempotencyKey)
		}
		gaps = append(gaps, calls[i].At.Sub(calls[i-1].At))
	}
	// Each gap is at least its scheduled delay, 200ms doubling, less the
	// 10 % jitter. Only lower bounds: on a loaded machine a retry can start
	// late, never early, so comparing gaps with each other would flake.
	for i, gap := range gaps {
		if want := time.Duration(0.9 * float64(200*time.Millisecond<<i)); gap < want {
			t.Errorf("gaps between payment attempts %v: attempt %d came after %v, want at least %v (200ms doubling)", gaps, i+2, gap, want)
		}
	}
	if emails := env.Calls("emails"); len(emails) != 1 || emails[0].Status != 202 {
		t.Errorf("confirmation emails %+v, want one", emails)
	}

	// Gizmos are sold out: the inventory answers 409 and the task fails for
	// good, without retrying and without sending a confirmation.
	env.SetMode("payments", `{"mode": "ok"}`)
	id = env.CreateTask("ecommerce", "order_processing", map[string]any{
		"order_id": "A-1002", "customer_email": "grace@example.com",
		"items": []any{map[string]any{"sku": "gizmo", "quantity": 2}},
	})
	task = env.WaitTask(id, "error", 30*time.Second)
	inventory := e2e.Step(task, "update_inventory")
	if inventory["status"] != "error" || inventory["attempts"] != float64(1) || !strings.Contains(fmt.Sprint(inventory["last_error"]), "out of stock") {
		t.Errorf("update_inventory %v", inventory)
	}
	for _, name := range []string{"create_order", "send_confirmation"} {
		if s := e2e.Step(task, name); s["status"] != "pending" {
			t.Errorf("%s is %v, want pending (never run)", name, s["status"])
		}
	}
	if n := len(env.Calls("emails")); n != 1 {
		t.Errorf("%d confirmation emails after the failed order, want still 1", n)
	}

	// Restock, retry the task: it completes, charging the card once.
	if code, out := env.Call("PUT", env.MocksURL+"/shop/stock/gizmo", `{"quantity": 5}`); code != 200 {
		t.Fatalf("restock: %d %v", code, out)
	}
	if code, out := env.Object("POST", "/tasker/tasks/"+id+"/retry", "{}"); code != 200 {
		t.Fatalf("retry: %d %v", code, out)
	}
	task = env.WaitTask(id, "complete", 30*time.Second)
	if s := e2e.Step(task, "send_confirmation"); s["status"] != "complete" {
		t.Errorf("send_confirmation %v", s)
	}
	charged := 0
	for _, c := range env.Calls("payments") {
		if c.IdempotencyKey == e2e.Step(task, "process_payment")["step_id"] {
			charged++
		}
	}
	if charged != 1 {
		t.Errorf("the retried order reached the gateway %d times, want 1", charged)
	}
	if emails := env.Calls("emails"); len(emails) != 2 {
		t.Errorf("confirmation emails %+v, want two", emails)
	}
	env.Taskerd.Stop(t)
	env.Mocks.Stop(t)
}
