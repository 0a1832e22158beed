package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/examples/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// TestPipeline runs the README's scenario: the users extract fails twice
// and recovers; the customer metrics wait for it, the product metrics do
// not, and the insights wait for both.
func TestPipeline(t *testing.T) {
	t.Parallel()
	env := e2e.Start(t)
	env.RegisterFile("templates/customer_analytics.yaml")
	env.SetMode("extract_users", `{"mode": "flaky", "failures": 2}`)

	id := env.CreateTask("data_pipeline", "customer_analytics", map[string]any{"date": "2025-06-01"})
	task := env.WaitTask(id, "complete", 30*time.Second)
	if s := e2e.Step(task, "extract_users"); s["attempts"] != float64(3) {
		t.Errorf("extract_users attempts %v, want 3", s["attempts"])
	}
	insights, _ := e2e.Step(task, "generate_insights")["results"].(map[string]any)
	if insights["top_customer"] != "u2" || insights["top_product"] != "gadget" || insights["revenue_cents"] != float64(20195) {
		t.Errorf("insights %v", insights)
	}
	note, _ := e2e.Step(task, "send_notifications")["results"].(map[string]any)
	if text, _ := note["text"].(string); !strings.Contains(text, "revenue 20195 cents, top customer u2, top product gadget") {
		t.Errorf("notification %v", note)
	}

	// When each call happened, from the mocks' log.
	last := func(endpoint string, wantStatus int) time.Time {
		calls := env.Calls(endpoint)
		if len(calls) == 0 || calls[len(calls)-1].Status != wantStatus {
			t.Fatalf("%s calls %+v, want the last answered %d", endpoint, calls, wantStatus)
		}
		return calls[len(calls)-1].At
	}
	if calls := env.Calls("extract_users"); len(calls) != 3 || calls[0].Status != 500 || calls[1].Status != 500 {
		t.Errorf("extract_users calls %+v, want 500, 500, 200", calls)
	}
	users, orders, products := last("extract_users", 200), last("extract_orders", 200), last("extract_products", 200)
	customers, productMetrics := last("customer_metrics", 200), last("product_metrics", 200)
	if !customers.After(users) || !customers.After(orders) {
		t.Errorf("customer metrics at %v ran before its extracts (users %v, orders %v)", customers, users, orders)
	}
	// The product metrics need no users: they ran while users were failing.
	if !productMetrics.After(products) || !productMetrics.Before(users) {
		t.Errorf("product metrics at %v: want after the products extract (%v), before the users one (%v)", productMetrics, products, users)
	}
	if in := last("insights", 200); !in.After(customers) || !in.After(productMetrics) {
		t.Errorf("insights at %v before the transforms (%v, %v)", in, customers, productMetrics)
	}
	env.Taskerd.Stop(t)
	env.Mocks.Stop(t)
}
