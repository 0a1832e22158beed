package observability_test

import (
	"bufio"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/taskerd/taskerd/examples/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// TestObservability runs the README's scenario: two orders, the first
// sent with a correlation id and a traceparent, through a warehouse that
// fails each order's first attempt. It checks what an operator would look
// at: the custom events (catalog and webhook), the metrics they feed, the
// trace tree exported over OTLP, and the correlation id in the logs.
func TestObservability(t *testing.T) {
	t.Parallel()
	collector := newCollector(t)
	hook := newWebhookReceiver(t)
	env := e2e.Start(t,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=taskerd-example", "OTEL_BSP_SCHEDULE_DELAY=100",
		"TASKER_LOG_FORMAT=json", "TASKER_LOG_LEVEL=debug")
	env.RegisterFile("templates/order_fulfillment.yaml")
	code, webhook := env.Object("POST", "/tasker/webhooks", `{"url": "`+hook.URL+`", "events": ["order.*", "task.completed"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create webhook: %d %v", code, webhook)
	}
	hook.secret = fmt.Sprint(webhook["secret"])
	env.SetMode("warehouse", `{"mode": "flaky", "failures": 1}`)

	// Order A comes from a caller that traces: its trace continues in
	// taskerd. Order B starts its own trace, named after the task.
	const traceA, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	orders := []struct {
		correlation string
		header      http.Header
		items       []any
		revenue     float64
		id          string
	}{
		{"order-A-1001", http.Header{"X-Correlation-Id": {"order-A-1001"}, "Traceparent": {"00-" + traceA + "-" + callerSpan + "-01"}},
			[]any{item("widget", 2), item("gadget", 1)}, 74.99, ""},
		{"order-B-1002", http.Header{"X-Correlation-Id": {"order-B-1002"}}, []any{item("gizmo", 3)}, 26.97, ""},
	}
	for i, o := range orders {
		orders[i].id = env.With(o.header).CreateTask("fulfillment", "order_fulfillment",
			map[string]any{"order_id": o.correlation, "customer_email": "ada@example.com", "items": o.items})
	}
	for _, o := range orders {
		task := env.WaitTask(o.id, "complete", 30*time.Second)
		if task["correlation_id"] != o.correlation {
			t.Errorf("task %s: correlation_id %v, want %s", o.id, task["correlation_id"], o.correlation)
		}
		if pick := e2e.Step(task, "pick_and_pack"); pick["attempts"] != float64(2) {
			t.Errorf("pick_and_pack of %s: %v, want 2 attempts", o.correlation, pick)
		}
	}
	// The services saw the correlation id on every call.
	for _, c := range env.Calls("order_payments") {
		if c.CorrelationID != "order-A-1001" && c.CorrelationID != "order-B-1002" {
			t.Errorf("payment call without the order's correlation id: %+v", c)
		}
	}

	t.Run("catalog", func(t *testing.T) {
		code, catalog := env.Object("GET", "/tasker/events", "")
		declared := map[string]string{}
		customs, _ := catalog["custom_events"].([]any)
		for _, c := range customs {
			c, _ := c.(map[string]any)
			if c["namespace"] == "fulfillment" && c["task_name"] == "order_fulfillment" {
				declared[fmt.Sprint(c["name"])] = fmt.Sprint(c["step_name"])
			}
		}
		if code != http.StatusOK || declared["order.revenue"] != "charge_payment" || declared["order.shipped"] != "ship_order" {
			t.Errorf("GET /tasker/events: %d, custom events of the template %v", code, declared)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		got := hook.wait(t, func(ds []delivery) bool {
			return count(ds, "order.revenue") == 2 && count(ds, "order.shipped") == 2 && count(ds, "task.completed") == 2
		})
		for _, o := range orders {
			var revenue []delivery
			for _, d := range got {
				if d.Event == "order.revenue" && d.CorrelationID == o.correlation {
					revenue = append(revenue, d)
				}
			}
			if len(revenue) != 1 {
				t.Errorf("order.revenue deliveries of %s: %+v", o.correlation, revenue)
				continue
			}
			d := revenue[0]
			if d.Data.TaskID != o.id || d.Data.Namespace != "fulfillment" || d.Data.StepName != "charge_payment" ||
				d.Data.Payload.Value != o.revenue || d.Data.Payload.Currency != "EUR" || d.header != o.correlation {
				t.Errorf("order.revenue of %s: %+v (X-Correlation-ID %q)", o.correlation, d, d.header)
			}
		}
		for _, d := range got {
			if !d.signed {
				t.Errorf("delivery %s %s: bad signature", d.Event, d.ID)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		revenue := map[string]string{"namespace": "fulfillment", "task": "order_fulfillment", "event": "order.revenue"}
		shipped := map[string]string{"namespace": "fulfillment", "task": "order_fulfillment", "event": "order.shipped"}
		var m metrics
		deadline := time.Now().Add(10 * time.Second)
		for {
			m = scrape(t, env.Base+"/tasker/metrics")
			if m.value("tasker_custom_events_total", shipped) == 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"tasker_custom_events_total", revenue, 2},
			{"tasker_custom_event_value_count", revenue, 2},
			{"tasker_custom_event_value_sum", revenue, 74.99 + 26.97},
			{"tasker_custom_event_value_bucket", map[string]string{"event": "order.revenue", "le": "+Inf"}, 2},
			{"tasker_custom_events_total", shipped, 2},
			{"tasker_custom_event_value_sum", shipped, 2}, // one parcel each
			{"tasker_step_retries_total", map[string]string{"namespace": "fulfillment", "task": "order_fulfillment", "step": "pick_and_pack"}, 2},
			{"tasker_steps_total", map[string]string{"task": "order_fulfillment", "step": "pick_and_pack", "status": "error"}, 2},
			{"tasker_tasks_total", map[string]string{"namespace": "fulfillment", "name": "order_fulfillment", "status": "complete"}, 2},
		} {
			if got := m.value(c.name, c.labels); math.Abs(got-c.want) > 1e-9 {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})

	t.Run("traces", func(t *testing.T) {
		traceB := strings.ReplaceAll(orders[1].id, "-", "") // a task without a caller's trace: its id
		spans := collector.wait(t, func(s []span) bool {
			return countSpans(s, traceA, "task fulfillment.order_fulfillment") == 1 && countSpans(s, traceB, "task fulfillment.order_fulfillment") == 1
		})
		for _, tr := range []string{traceA, traceB} {
			var task span
			steps := map[string][]span{}
			for _, s := range spans {
				switch {
				case s.trace != tr:
				case s.name == "task fulfillment.order_fulfillment":
					task = s
				case strings.HasPrefix(s.name, "step "):
					steps[strings.TrimPrefix(s.name, "step ")] = append(steps[strings.TrimPrefix(s.name, "step ")], s)
				}
			}
			if tr == traceA && task.parent != callerSpan {
				t.Errorf("order A's task span has parent %q, want the caller's %s", task.parent, callerSpan)
			}
			if tr == traceB && task.parent != "" {
				t.Errorf("order B's task span has parent %q, want none", task.parent)
			}
			for _, name := range []string{"validate_order", "charge_payment", "pick_and_pack", "ship_order", "send_confirmation"} {
				want := 1
				if name == "pick_and_pack" {
					want = 2 // the failed attempt and the retry
				}
				if len(steps[name]) != want {
					t.Errorf("trace %s: %d spans of step %s, want %d", tr, len(steps[name]), name, want)
				}
				for _, s := range steps[name] {
					if s.parent != task.id {
						t.Errorf("trace %s: step %s's span has parent %s, want the task span %s", tr, name, s.parent, task.id)
					}
				}
			}
			failedPicks := 0
			for _, s := range steps["pick_and_pack"] {
				if s.failed && s.events["retry scheduled"] {
					failedPicks++
				}
			}
			if failedPicks != 1 {
				t.Errorf("trace %s: pick_and_pack spans %+v, want one failed attempt with a retry scheduled", tr, steps["pick_and_pack"])
			}
			if c := steps["charge_payment"]; len(c) != 1 || !c[0].events["order.revenue"] {
				t.Errorf("trace %s: charge_payment span %+v, want the order.revenue span event", tr, c)
			}
		}
		if countSpans(spans, traceA, "POST /tasker/tasks") != 1 {
			t.Errorf("order A's create request has no server span in the caller's trace")
		}
	})

	t.Run("logs", func(t *testing.T) {
		for _, o := range orders {
			msgs := map[string]bool{}
			sc := bufio.NewScanner(strings.NewReader(env.Taskerd.Output()))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var line map[string]any
				if json.Unmarshal(sc.Bytes(), &line) != nil {
					continue
				}
				if line["task_id"] == o.id {
					if line["correlation_id"] != o.correlation {
						t.Errorf("a line of task %s has correlation_id %v, want %s: %s", o.id, line["correlation_id"], o.correlation, sc.Text())
					}
					msgs[fmt.Sprint(line["msg"])] = true
				}
				if line["correlation_id"] == o.correlation && line["route"] == "/tasker/tasks" {
					msgs["request"] = true
				}
			}
			for _, want := range []string{"request", "step.failed", "step.completed", "task.completed"} {
				if !msgs[want] {
					t.Errorf("no %s line with correlation_id %s (lines of the task: %v)", want, o.correlation, msgs)
				}
			}
		}
	})

	env.Taskerd.Stop(t)
	env.Mocks.Stop(t)
}

func item(sku string, quantity int) any { return map[string]any{"sku": sku, "quantity": quantity} }

// span is what the test reads of an exported span; ids in hex.
type span struct {
	name, trace, id, parent string
	failed                  bool
	events                  map[string]bool
}

// collector is an OTLP/HTTP trace receiver, as Jaeger's on :4318.
type collector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					c.spans = append(c.spans, newSpan(s))
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func newSpan(s *tracepb.Span) span {
	out := span{name: s.Name, trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
		parent: hex.EncodeToString(s.ParentSpanId), failed: s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR, events: map[string]bool{}}
	for _, e := range s.Events {
		out.events[e.Name] = true
	}
	return out
}

func (c *collector) wait(t *testing.T, done func([]span) bool) []span {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.mu.Lock()
		spans := append([]span{}, c.spans...)
		c.mu.Unlock()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not receive the expected spans; it has %+v", spans)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countSpans(spans []span, trace, name string) int {
	n := 0
	for _, s := range spans {
		if s.trace == trace && s.name == name {
			n++
		}
	}
	return n
}

// delivery is a webhook delivery: the envelope, its X-Correlation-ID and
// whether its signature verified.
type delivery struct {
	ID            string `json:"id"`
	Event         string `json:"event"`
	CorrelationID string `json:"correlation_id"`
	Data          struct {
		TaskID    string `json:"task_id"`
		Namespace string `json:"namespace"`
		StepName  string `json:"step_name"`
		Payload   struct {
			Value    float64 `json:"value"`
			Currency string  `json:"currency"`
		} `json:"payload"`
	} `json:"data"`
	header string
	signed bool
}

type webhookReceiver struct {
	*httptest.Server
	secret string
	mu     sync.Mutex
	got    []delivery
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	h := &webhookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var d delivery
		if err := json.Unmarshal(raw, &d); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.header = r.Header.Get("X-Correlation-ID")
		h.mu.Lock()
		defer h.mu.Unlock()
		d.signed = verify(h.secret, r.Header.Get("X-Tasker-Signature"), raw)
		for _, prev := range h.got {
			if prev.ID == d.ID {
				return // at least once: deduplicate by id
			}
		}
		h.got = append(h.got, d)
	}))
	t.Cleanup(h.Close)
	return h
}

// verify checks X-Tasker-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
func verify(secret, header string, body []byte) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(part, "t="); ok {
			ts = v
		} else if v, ok := strings.CutPrefix(part, "v1="); ok {
			sig = v
		}
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	return ts != "" && hmac.Equal([]byte(sig), []byte(want))
}

func (h *webhookReceiver) wait(t *testing.T, done func([]delivery) bool) []delivery {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h.mu.Lock()
		got := append([]delivery{}, h.got...)
		h.mu.Unlock()
		if done(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not receive the expected events; it has %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(ds []delivery, event string) int {
	n := 0
	for _, d := range ds {
		if d.Event == event {
			n++
		}
	}
	return n
}

// metrics is a scrape: each series (name{labels}) with its value.
type metrics map[string]float64

func scrape(t *testing.T, url string) metrics {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// value sums the series of a metric having every given label.
func (m metrics) value(name string, labels map[string]string) float64 {
	total := 0.0
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		match := true
		for k, want := range labels {
			match = match && strings.Contains(series, k+`="`+want+`"`)
		}
		if match {
			total += v
		}
	}
	return total
}
