package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/webhooks"
)

const remoteEventsYAML = `namespace_name: shop
name: charge
version: 1.0.0
custom_events:
  - {name: order.audited, description: "Anything in the task may emit it"}
step_templates:
  - name: charge
    handler: "remote:payments"
    custom_events:
      - {name: order.charged, description: "A card was charged; value is the amount"}
`

// scrape reads the replica's metrics in the Prometheus text format.
func (a *apiUnderTest) scrape() string {
	a.t.Helper()
	resp, err := http.Get(a.base + "/metrics")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// A remote worker's complete call carries the custom events its attempt
// emitted: undeclared ones refuse the whole call (nothing written, the step
// still held), declared ones move the business metrics and reach webhooks
// like a Go handler's.
func TestRemoteWorkerCustomEvents(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	var mu sync.Mutex
	var delivered []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify("s3cret-s3cret-s3cret", r.Header.Get(webhooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("delivery signature: %v", err)
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		mu.Lock()
		delivered = append(delivered, m)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	if code, _, body := a.do("POST", "/webhooks", map[string]any{"url": receiver.URL, "events": []string{"order.*"}, "secret": "s3cret-s3cret-s3cret"}); code != 201 {
		t.Fatalf("webhook: %d %v", code, body)
	}
	a.registerYAML(remoteEventsYAML)
	id := a.createTask("shop", "charge", map[string]any{})
	code, _, body := a.do("POST", "/workers/claim", `{"worker_id": "w-1", "handlers": ["remote:payments"], "wait_seconds": 10}`)
	steps, _ := body["steps"].([]any)
	if code != 200 || len(steps) != 1 {
		t.Fatalf("claim: %d %v", code, body)
	}
	stepID := steps[0].(map[string]any)["step_id"].(string)

	for _, c := range []struct {
		name, body, pointer, detail string
	}{
		{"undeclared", `{"attempt": 1, "events": [{"name": "order.charged", "payload": {"value": 1}}, {"name": "order.refunded"}]}`,
			"/events/1/name", `"order.refunded" of step "charge" (template shop.charge@1.0.0)`},
		{"reserved", `{"attempt": 1, "events": [{"name": "task.completed"}]}`, "/events/0/name", "reserved"},
		{"payload too large", `{"attempt": 1, "events": [{"name": "order.charged", "payload": {"filler": "` + strings.Repeat("x", 70<<10) + `"}}]}`,
			"/events/0/payload", "above the limit"},
	} {
		code, header, body := a.do("POST", "/steps/"+stepID+"/complete", c.body)
		errs, _ := body["errors"].([]any)
		if code != 422 || !strings.HasPrefix(header.Get("Content-Type"), "application/problem+json") || len(errs) != 1 {
			t.Errorf("%s: %d %s %v", c.name, code, header.Get("Content-Type"), body)
			continue
		}
		e := errs[0].(map[string]any)
		if e["pointer"] != c.pointer || !strings.Contains(e["detail"].(string), c.detail) {
			t.Errorf("%s: error %v", c.name, e)
		}
	}
	if code, _, task := a.do("GET", "/tasks/"+id, nil); code != 200 || task["status"] != "in_progress" {
		t.Fatalf("a refused completion changes nothing: %d %v", code, task["status"])
	}
	if m := a.scrape(); strings.Contains(m, "tasker_custom_events_total{") {
		t.Fatalf("a refused completion emits nothing:\n%s", m)
	}

	code, _, body = a.do("POST", "/steps/"+stepID+"/complete", `{"attempt": 1, "results": {"ok": true}, "events": [
		{"name": "order.charged", "payload": {"value": 42.5, "currency": "EUR"}},
		{"name": "order.charged", "payload": {"value": 7.5}},
		{"name": "order.audited"}]}`)
	if code != 200 || body["task_status"] != "complete" {
		t.Fatalf("complete: %d %v", code, body)
	}
	// The bus delivers to the metrics asynchronously.
	var m string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m = a.scrape(); strings.Contains(m, `tasker_custom_events_total{event="order.audited"`) {
			break
		}
	}
	for _, want := range []string{
		`tasker_custom_events_total{event="order.charged",namespace="shop",task="charge"} 2`,
		`tasker_custom_events_total{event="order.audited",namespace="shop",task="charge"} 1`,
		`tasker_custom_event_value_sum{event="order.charged",namespace="shop",task="charge"} 50`,
		`tasker_custom_event_value_count{event="order.charged",namespace="shop",task="charge"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(delivered)
		got := append([]map[string]any(nil), delivered...)
		mu.Unlock()
		if n >= 3 {
			names := map[string]int{}
			for _, d := range got {
				names[d["event"].(string)]++
				data, _ := d["data"].(map[string]any)
				if d["category"] != "custom" || data["step_id"] != stepID || data["task_id"] != id ||
					(d["event"] == "order.charged" && data["payload"] == nil) {
					t.Errorf("delivery %v", d)
				}
			}
			if names["order.charged"] != 2 || names["order.audited"] != 1 {
				t.Errorf("deliveries %v", names)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook deliveries: %d of 3: %v", n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
