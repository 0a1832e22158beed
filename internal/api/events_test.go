package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/registry"
)

func TestEventCatalogRoute(t *testing.T) {
	t.Parallel()
	s := newObservabilityAPI(t)
	if _, err := s.reg.Register(context.Background(), []byte(`namespace_name: shop
name: checkout
version: 1.0.0
step_templates:
  - name: charge
    handler: noop
    custom_events: [{name: order.charged, description: "value is the amount"}]
custom_events: [{name: order.audited}]
`), registry.FormatYAML, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, body := s.call("GET", "/events", "")
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	evs := body["events"].([]any)
	names := map[string]map[string]any{}
	for _, e := range evs {
		m := e.(map[string]any)
		names[m["name"].(string)] = m
	}
	failed := names["step.failed"]
	if len(evs) < 27 || failed == nil || failed["category"] != "step" || failed["transactional"] != true {
		t.Fatalf("catalog: %d events, step.failed %v", len(evs), failed)
	}
	props := failed["payload_schema"].(map[string]any)["properties"].(map[string]any)
	if _, ok := props["retry_at"]; !ok {
		t.Errorf("step.failed's schema: %v", props)
	}
	custom := body["custom_events"].([]any)
	if len(custom) != 2 {
		t.Fatalf("custom events: %v", custom)
	}
	charged := custom[0].(map[string]any)
	if charged["name"] != "order.audited" || custom[1].(map[string]any)["step_name"] != "charge" {
		t.Errorf("custom events: %v", custom)
	}
	code, _, tasks := s.call("GET", "/events?category=task", "")
	if list := tasks["events"].([]any); code != 200 || len(list) != 7 {
		t.Errorf("task events: %d", len(list))
	}

	code, header, _ := s.call("GET", "/metrics", "")
	if code != 200 || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") {
		t.Errorf("metrics: %d %s", code, header.Get("Content-Type"))
	}
	// Two requests later, the HTTP metrics count them by route pattern.
	_, _, _ = s.call("GET", "/webhooks/"+"0190a0b0-0000-7000-8000-000000000000", "")
	req, _ := http.NewRequest("GET", s.url+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `tasker_http_requests_total{code="404",method="GET",route="/tasker/webhooks/{webhook_id}"} 1`) {
		t.Errorf("HTTP metrics by route pattern:\n%s", grep(string(raw), "tasker_http_requests_total"))
	}
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
