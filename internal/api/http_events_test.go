package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/telemetry"
)

// chargeService answers /charge with the events its caller asked for in
// the query, and records each request's traceparent by Idempotency-Key
// (the step id).
type chargeService struct {
	*httptest.Server
	mu          sync.Mutex
	traceparent map[string]string
}

func newChargeService(t *testing.T) *chargeService {
	s := &chargeService{traceparent: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.traceparent[r.Header.Get("Idempotency-Key")] = r.Header.Get("Traceparent")
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		event := r.URL.Query().Get("event")
		fmt.Fprintf(w, `{"charged": true, "meta": {"events": [{"name": %q, "payload": {"value": 12.5, "currency": "EUR"}}]}}`, event)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *chargeService) traceparentOf(stepID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traceparent[stepID]
}

const httpEventsYAML = `namespace_name: shop
name: pay
version: 1.0.0
step_templates:
  - name: charge
    handler: http
    handler_config:
      method: POST
      url: "SERVICE/charge?event={{ .context.event }}"
      body: {}
      events_field: /meta/events
      result: /charged
    custom_events:
      - {name: order.charged, description: "value is the amount charged"}
  - {name: audit, handler: "remote:audit", depends_on_step: charge}
`

func stepIDOf(t *testing.T, task map[string]any, name string) (string, map[string]any) {
	t.Helper()
	for _, s := range task["workflow_steps"].([]any) {
		if s := s.(map[string]any); s["name"] == name {
			return s["step_id"].(string), s
		}
	}
	t.Fatalf("no step %s in %v", name, task["workflow_steps"])
	return "", nil
}

// An http step emits the custom events its response lists in events_field;
// its request, and a remote worker's claim of the next step, carry the
// attempts' spans in the task's trace (W3C traceparent).
func TestHTTPStepEventsAndTraceContext(t *testing.T) {
	t.Parallel()
	a := startAPI(t, nil, nil)
	svc := newChargeService(t)
	a.registerYAML(strings.ReplaceAll(httpEventsYAML, "SERVICE", svc.URL))

	for _, c := range []struct{ name, traceparent string }{
		{"under the caller's trace", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"a trace of its own", ""},
	} {
		var header []string
		if c.traceparent != "" {
			header = []string{"traceparent", c.traceparent}
		}
		id := a.createTask("shop", "pay", map[string]any{"event": "order.charged"}, header...)
		code, _, body := a.do("POST", "/workers/claim", `{"worker_id": "auditor", "handlers": ["remote:audit"], "wait_seconds": 15}`)
		steps, _ := body["steps"].([]any)
		if code != 200 || len(steps) != 1 {
			t.Fatalf("%s: claim: %d %v", c.name, code, body)
		}
		claimed := steps[0].(map[string]any)
		_, _, task := a.do("GET", "/tasks/"+id, nil)
		chargeID, charge := stepIDOf(t, task, "charge")
		if charge["status"] != "complete" || charge["results"] != true {
			t.Fatalf("%s: charge %v", c.name, charge)
		}

		tt := telemetry.TraceOfTask(uuid.MustParse(id), c.traceparent)
		wantTrace := strings.ReplaceAll(id, "-", "")
		if c.traceparent != "" {
			wantTrace = strings.Split(c.traceparent, "-")[1]
		}
		if tt.Task.TraceID().String() != wantTrace {
			t.Fatalf("%s: the task's trace is %s, want %s", c.name, tt.Task.TraceID(), wantTrace)
		}
		// The service sees the charge attempt's span as its caller.
		want := telemetry.Traceparent(tt.StepSpan(uuid.MustParse(chargeID), 1))
		if got := svc.traceparentOf(chargeID); got != want {
			t.Errorf("%s: outbound traceparent %q, want the attempt's span %q", c.name, got, want)
		}
		// The worker gets the audit attempt's span to continue.
		want = telemetry.Traceparent(tt.StepSpan(uuid.MustParse(claimed["step_id"].(string)), 1))
		if claimed["traceparent"] != want {
			t.Errorf("%s: claimed traceparent %v, want the attempt's span %s", c.name, claimed["traceparent"], want)
		}
		if code, _, body := a.do("POST", "/steps/"+claimed["step_id"].(string)+"/complete", `{"attempt": 1}`); code != 200 {
			t.Fatalf("%s: complete: %d %v", c.name, code, body)
		}
		a.waitTask(id, "complete", 10*time.Second)
	}

	var m string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m = a.scrape(); strings.Contains(m, `tasker_custom_events_total{event="order.charged",namespace="shop",task="pay"} 2`) {
			break
		}
	}
	for _, want := range []string{
		`tasker_custom_events_total{event="order.charged",namespace="shop",task="pay"} 2`,
		`tasker_custom_event_value_sum{event="order.charged",namespace="shop",task="pay"} 25`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// An event the template does not declare fails the step for good.
	id := a.createTask("shop", "pay", map[string]any{"event": "order.refunded"})
	task := a.waitTask(id, "error", 10*time.Second)
	_, charge := stepIDOf(t, task, "charge")
	msg := fmt.Sprint(charge["last_error"])
	if charge["attempts"] != float64(1) || !strings.Contains(msg, `events_field /meta/events: event 0: custom event not declared`) ||
		!strings.Contains(msg, `"order.refunded"`) {
		t.Errorf("an undeclared event: attempts %v, error %s", charge["attempts"], msg)
	}
}
