package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/server"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/webhooks"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// replica is one started server with everything it emits captured.
type replica struct {
	t      *testing.T
	url    string // …/tasker
	spans  *tracetest.InMemoryExporter
	logs   *lockedBuffer
	events *eventLog
}

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes the JSON log lines written so far.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := slices.Clone(b.buf.Bytes())
	b.mu.Unlock()
	var out []map[string]any
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

// eventLog is a test subscriber of the replica's bus.
type eventLog struct {
	mu     sync.Mutex
	events []engine.Event
}

func (l *eventLog) handle(_ context.Context, evs []engine.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, evs...)
}

func (l *eventLog) ofTask(id string) []engine.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []engine.Event
	for _, ev := range l.events {
		if ev.TaskID.String() == id {
			out = append(out, ev)
		}
	}
	return out
}

// chargeKind emits the custom event order.charged with the amount of its
// inputs, as a business handler would.
type chargeKind struct{}

func (chargeKind) Name() string                         { return "charge" }
func (chargeKind) ValidateConfig(json.RawMessage) error { return nil }
func (chargeKind) Handle(_ context.Context, s handler.Step) (json.RawMessage, error) {
	if err := s.Publish("order.undeclared", nil); err == nil {
		return nil, fmt.Errorf("an undeclared event was accepted")
	}
	if err := s.Publish("order.charged", map[string]any{"value": 42.5, "currency": "EUR"}); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"charged":true}`), nil
}

// startReplica starts a replica with the chargeKind handler and kinds.
func startReplica(t *testing.T, kinds ...handler.Kind) *replica {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	settings, err := config.NewParser(fs, config.Server).Parse(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	settings.DatabaseURL = testdb.New(t)
	settings.PollInterval = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{t: t, spans: tracetest.NewInMemoryExporter(), logs: &lockedBuffer{}, events: &eventLog{}}
	logger := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.New(server.Config{Settings: settings, Logger: logger, Listener: ln,
		SpanExporter: r.spans, Kinds: append([]handler.Kind{chargeKind{}}, kinds...)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Events().Subscribe("test", r.events.handle, events.SubscribeOptions{})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	r.url = "http://" + srv.Addr() + "/tasker"
	return r
}

// call sends a request; body is JSON, YAML (for templates) or nothing.
func (r *replica) call(method, path, body string, header map[string]string) (int, http.Header, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(path, "/templates") {
			req.Header.Set("Content-Type", "application/yaml")
		}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (r *replica) register(yaml string) {
	r.t.Helper()
	if code, _, body := r.call("POST", "/templates", yaml, nil); code != 201 && code != 200 {
		r.t.Fatalf("register: %d %s", code, body)
	}
}

// createTask starts a task and returns its id.
func (r *replica) createTask(name string, header map[string]string) string {
	r.t.Helper()
	code, _, body := r.call("POST", "/tasks", fmt.Sprintf(`{"namespace":"shop","name":%q}`, name), header)
	if code != 201 {
		r.t.Fatalf("create task: %d %s", code, body)
	}
	var v struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		r.t.Fatal(err)
	}
	return v.TaskID
}

func (r *replica) waitTask(id, status string) {
	r.t.Helper()
	eventually(r.t, 30*time.Second, "task "+id+" "+status, func() bool {
		_, _, body := r.call("GET", "/tasks/"+id, "", nil)
		var v struct {
			Status string `json:"status"`
		}
		return json.Unmarshal(body, &v) == nil && v.Status == status
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics scrapes /metrics and lints it.
func (r *replica) metrics() map[string]*dto.MetricFamily {
	r.t.Helper()
	code, header, body := r.call("GET", "/metrics", "", nil)
	if code != 200 || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") {
		r.t.Fatalf("metrics: %d %s", code, header.Get("Content-Type"))
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range problems {
		r.t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	return families
}

// sample finds a metric's value by labels: a counter's or gauge's value, a
// histogram's count ("_count" suffix) or sum ("_sum").
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	part := ""
	if base, ok := strings.CutSuffix(name, "_count"); ok && families[base] != nil {
		name, part = base, "count"
	} else if base, ok := strings.CutSuffix(name, "_sum"); ok && families[base] != nil {
		name, part = base, "sum"
	}
	f := families[name]
	if f == nil {
		return 0
	}
	total := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil && part == "sum":
			total += m.GetHistogram().GetSampleSum()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// receiver is a webhook endpoint that checks signatures.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	failed map[string]bool // events answered 503 once
}

type delivery struct {
	event, eventID, correlation string
	attempt                     string
	body                        map[string]any
}

func newReceiver(t *testing.T, secret string) *receiver {
	rc := &receiver{t: t, secret: secret, failed: map[string]bool{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify(secret, r.Header.Get(webhooks.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("delivery of %s: %v", r.Header.Get(webhooks.EventHeader), err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("delivery body: %v", err)
		}
		event := r.Header.Get(webhooks.EventHeader)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.got = append(rc.got, delivery{event: event, eventID: r.Header.Get(webhooks.EventIDHeader),
			correlation: r.Header.Get("X-Correlation-ID"), attempt: r.Header.Get(webhooks.AttemptHeader), body: m})
		if event == "task.completed" && !rc.failed[event] {
			// The receiver is briefly down: the delivery is retried.
			rc.failed[event] = true
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

const diamondYAML = `namespace_name: shop
name: diamond
version: 1.0.0
step_templates:
  - {name: validate, handler: noop}
  - name: charge
    handler: charge
    depends_on_step: validate
    custom_events:
      - {name: order.charged, description: "A card was charged; value is the amount"}
  - {name: reserve, handler: noop, depends_on_step: validate}
  - {name: confirm, handler: noop, depends_on_steps: [charge, reserve]}
`

var diamondEdges = [][2]string{{"validate", "charge"}, {"validate", "reserve"}, {"charge", "confirm"}, {"reserve", "confirm"}}

// TestDiamondObservability is issue 9's "done when": a diamond run through
// the API shows its events in a legal order, a signed webhook delivery,
// moved counters in /metrics (promlint clean), a 1 + 4 span tree, and one
// correlation id across its log lines.
func TestDiamondObservability(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	r.register(diamondYAML)
	rc := newReceiver(t, "a-secret-of-sixteen-chars")
	code, _, body := r.call("POST", "/webhooks", fmt.Sprintf(`{"url":%q,"events":["task.*","step.completed","order.*"],"secret":%q}`,
		rc.srv.URL, rc.secret), nil)
	if code != 201 {
		t.Fatalf("create webhook: %d %s", code, body)
	}
	var hook struct {
		WebhookID string `json:"webhook_id"`
		Secret    string `json:"secret"`
	}
	if err := json.Unmarshal(body, &hook); err != nil || hook.Secret != rc.secret {
		t.Fatalf("webhook: %s", body)
	}
	before := r.metrics()

	const traceID, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	const correlation = "order-42-checkout"
	id := r.createTask("diamond", map[string]string{
		"traceparent":      "00-" + traceID + "-" + parentSpan + "-01",
		"X-Correlation-ID": correlation,
	})
	r.waitTask(id, "complete")

	t.Run("events in a legal order", func(t *testing.T) {
		var evs []engine.Event
		eventually(t, 10*time.Second, "the task's last event", func() bool {
			evs = r.events.ofTask(id)
			return len(evs) > 0 && evs[len(evs)-1].Name == engine.EventTaskFinalizationCompleted
		})
		checkLegalOrder(t, evs)
	})

	t.Run("signed webhook deliveries", func(t *testing.T) {
		// 3 task events, 4 step completions, 1 custom event; task.completed twice (503 first).
		eventually(t, 20*time.Second, "9 deliveries", func() bool { return len(rc.deliveries()) >= 9 })
		byEvent := map[string][]delivery{}
		for _, d := range rc.deliveries() {
			byEvent[d.event] = append(byEvent[d.event], d)
			if d.correlation != correlation || d.body["correlation_id"] != correlation {
				t.Errorf("%s: correlation %q / %v", d.event, d.correlation, d.body["correlation_id"])
			}
			if d.body["event"] != d.event || d.body["id"] != d.eventID {
				t.Errorf("envelope does not match headers: %v", d.body)
			}
		}
		want := map[string]int{"task.initialize_requested": 1, "task.start_requested": 1, "task.completed": 2,
			"step.completed": 4, "order.charged": 1}
		for name, n := range want {
			if len(byEvent[name]) != n {
				t.Errorf("%s delivered %d times, want %d", name, len(byEvent[name]), n)
			}
		}
		if len(rc.deliveries()) != 9 {
			t.Errorf("%d deliveries, want 9: %v", len(rc.deliveries()), byEvent)
		}
		if c := byEvent["task.completed"]; len(c) == 2 && (c[0].eventID != c[1].eventID || c[0].attempt != "1" || c[1].attempt != "2") {
			t.Errorf("a retried delivery keeps its event id: %+v", c)
		}
		charged := byEvent["order.charged"]
		if len(charged) == 1 {
			data, _ := charged[0].body["data"].(map[string]any)
			payload, _ := data["payload"].(map[string]any)
			if data["step_name"] != "charge" || payload["value"] != 42.5 || charged[0].body["category"] != "custom" {
				t.Errorf("custom event: %v", charged[0].body)
			}
		}
		var log struct {
			Deliveries []struct {
				Event      string `json:"event"`
				Status     string `json:"status"`
				Attempts   int    `json:"attempts"`
				AttemptLog []struct {
					StatusCode int `json:"status_code"`
				} `json:"attempt_log"`
			} `json:"deliveries"`
		}
		eventually(t, 10*time.Second, "the delivery log", func() bool {
			code, _, body := r.call("GET", "/webhooks/"+hook.WebhookID+"/deliveries", "", nil)
			if code != 200 || json.Unmarshal(body, &log) != nil {
				return false
			}
			for _, d := range log.Deliveries {
				if d.Status != "delivered" {
					return false
				}
			}
			return len(log.Deliveries) == 8
		})
		for _, d := range log.Deliveries {
			if d.Event == "task.completed" && (d.Attempts != 2 || len(d.AttemptLog) != 2 ||
				d.AttemptLog[0].StatusCode != 503 || d.AttemptLog[1].StatusCode != 204) {
				t.Errorf("task.completed log: %+v", d)
			}
		}
	})

	t.Run("metrics moved", func(t *testing.T) {
		task := map[string]string{"namespace": "shop", "name": "diamond", "version": "1.0.0"}
		with := func(base map[string]string, kv ...string) map[string]string {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		step := map[string]string{"namespace": "shop", "task": "diamond"}
		type check struct {
			name   string
			labels map[string]string
			delta  float64
		}
		checks := []check{
			{"tasker_tasks_total", with(task, "status", "pending"), 1},
			{"tasker_tasks_total", with(task, "status", "in_progress"), 1},
			{"tasker_tasks_total", with(task, "status", "complete"), 1},
			{"tasker_task_duration_seconds_count", with(task, "status", "complete"), 1},
			{"tasker_step_queue_latency_seconds_count", step, 4},
			{"tasker_custom_events_total", with(step, "event", "order.charged"), 1},
			{"tasker_custom_event_value_count", with(step, "event", "order.charged"), 1},
			{"tasker_custom_event_value_sum", with(step, "event", "order.charged"), 42.5},
			{"tasker_http_requests_total", map[string]string{"method": "POST", "route": "/tasker/tasks", "code": "201"}, 1},
			{"tasker_webhook_deliveries_total", map[string]string{"outcome": "delivered"}, 8},
			{"tasker_webhook_deliveries_total", map[string]string{"outcome": "retry"}, 1},
			{"tasker_step_retries_total", step, 0},
			{"tasker_events_dropped_total", nil, 0},
		}
		for _, s := range []string{"validate", "charge", "reserve", "confirm"} {
			checks = append(checks,
				check{"tasker_steps_total", with(step, "step", s, "status", "pending"), 1},
				check{"tasker_steps_total", with(step, "step", s, "status", "in_progress"), 1},
				check{"tasker_steps_total", with(step, "step", s, "status", "complete"), 1},
				check{"tasker_step_duration_seconds_count", with(step, "step", s, "status", "complete"), 1})
		}
		var after map[string]*dto.MetricFamily
		eventually(t, 10*time.Second, "metrics to settle", func() bool {
			after = r.metrics()
			for _, c := range checks {
				if sample(after, c.name, c.labels)-sample(before, c.name, c.labels) != c.delta {
					return false
				}
			}
			return true
		})
		for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "tasker_build_info", "tasker_steps_in_flight",
			"tasker_ready_steps", "tasker_db_pool_max_connections", "tasker_db_pool_acquires_total", "tasker_webhook_outbox_pending",
			"tasker_http_request_duration_seconds"} {
			if after[name] == nil {
				t.Errorf("metric %s is missing", name)
			}
		}
		for name, f := range after {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), id) {
						t.Errorf("%s has an id in a label: %s=%s", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	})

	t.Run("one task span and a span per step", func(t *testing.T) {
		spans := r.taskSpans(t, id, 5)
		task := onlySpan(t, spans, "task shop.diamond")
		if task.SpanContext.TraceID().String() != traceID || task.Parent.SpanID().String() != parentSpan {
			t.Errorf("task span %s under %s: want trace %s under the create request's span %s",
				task.SpanContext.TraceID(), task.Parent.SpanID(), traceID, parentSpan)
		}
		created := uuidTime(t, id)
		if task.StartTime.Sub(created).Abs() > time.Millisecond {
			t.Errorf("task span starts at %s, the task was created at %s", task.StartTime, created)
		}
		for _, s := range []string{"validate", "charge", "reserve", "confirm"} {
			span := onlySpan(t, spans, "step "+s)
			if span.Parent.SpanID() != task.SpanContext.SpanID() || span.SpanContext.TraceID() != task.SpanContext.TraceID() {
				t.Errorf("step %s is not a child of the task span", s)
			}
			if span.StartTime.Before(task.StartTime) || span.EndTime.After(task.EndTime) {
				t.Errorf("step %s [%s, %s] is outside its task [%s, %s]", s, span.StartTime, span.EndTime, task.StartTime, task.EndTime)
			}
			if s == "charge" && (len(span.Events) != 1 || span.Events[0].Name != "order.charged") {
				t.Errorf("charge span events: %+v", span.Events)
			}
		}
		var server tracetest.SpanStub
		for _, s := range r.spans.GetSpans() {
			if s.Name == "POST /tasker/tasks" {
				server = s
			}
		}
		if server.Parent.SpanID().String() != parentSpan || server.SpanKind != trace.SpanKindServer {
			t.Errorf("the create request's server span: %+v", server)
		}
	})

	t.Run("one correlation id across the task's log lines", func(t *testing.T) {
		var taskLines int
		for _, line := range r.logs.lines(t) {
			if line["task_id"] == id {
				taskLines++
				if line["correlation_id"] != correlation {
					t.Errorf("line %q has correlation id %v", line["msg"], line["correlation_id"])
				}
				if line["trace_id"] != traceID {
					t.Errorf("line %q has trace id %v", line["msg"], line["trace_id"])
				}
			}
			if line["route"] == "/tasker/tasks" && line["method"] == "POST" &&
				(line["correlation_id"] != correlation || line["request_id"] == "" || line["trace_id"] != traceID) {
				t.Errorf("the create request's access log line: %v", line)
			}
		}
		// The task's events (3 task, 4 × 5 step, 1 custom, 5 workflow) at least.
		if taskLines < 29 {
			t.Errorf("%d log lines name the task", taskLines)
		}
	})
}

// checkLegalOrder checks a diamond's events against its state machine.
func checkLegalOrder(t *testing.T, evs []engine.Event) {
	t.Helper()
	pos := map[string]int{} // "event/step" → first index
	for i, ev := range evs {
		if _, ok := events.Lookup(ev.Name); !ok && !ev.Custom {
			t.Errorf("event %s is not in the catalog", ev.Name)
		}
		if ev.Namespace != "shop" || ev.TaskName != "diamond" || ev.CorrelationID == "" {
			t.Errorf("%s lacks its task: %+v", ev.Name, ev)
		}
		key := ev.Name + "/" + ev.StepName
		if _, seen := pos[key]; seen && ev.Name != engine.EventViableStepsDiscovered &&
			ev.Name != engine.EventStepsExecutionStarted && ev.Name != engine.EventStepsExecutionCompleted {
			t.Errorf("%s twice", key)
		}
		if _, seen := pos[key]; !seen {
			pos[key] = i
		}
	}
	before := func(a, b string) {
		t.Helper()
		pa, okA := pos[a]
		pb, okB := pos[b]
		if !okA || !okB || pa >= pb {
			t.Errorf("%s (at %d, %v) must come before %s (at %d, %v)", a, pa, okA, b, pb, okB)
		}
	}
	if evs[0].Name != "task.initialize_requested" {
		t.Errorf("first event: %s", evs[0].Name)
	}
	for _, s := range []string{"validate", "charge", "reserve", "confirm"} {
		before("task.initialize_requested/", "step.initialize_requested/"+s)
		before("step.initialize_requested/"+s, "step.execution_requested/"+s)
		before("task.start_requested/", "step.execution_requested/"+s)
		before("step.execution_requested/"+s, "step.before_handle/"+s)
		before("step.before_handle/"+s, "step.handle/"+s)
		before("step.handle/"+s, "step.completed/"+s)
		before("step.completed/"+s, "workflow.task_finalization_started/")
	}
	before("step.handle/charge", "order.charged/charge")
	before("order.charged/charge", "step.completed/charge")
	for _, e := range diamondEdges {
		before("step.completed/"+e[0], "step.execution_requested/"+e[1])
	}
	before("workflow.task_finalization_started/", "task.completed/")
	before("task.completed/", "workflow.task_finalization_completed/")
}

// taskSpans waits for n spans of the task (its own and its steps').
func (r *replica) taskSpans(t *testing.T, taskID string, n int) []tracetest.SpanStub {
	t.Helper()
	var out []tracetest.SpanStub
	eventually(t, 10*time.Second, fmt.Sprintf("%d spans of task %s", n, taskID), func() bool {
		out = out[:0]
		for _, s := range r.spans.GetSpans() {
			for _, a := range s.Attributes {
				if a.Key == "tasker.task_id" && a.Value.AsString() == taskID {
					out = append(out, s)
				}
			}
		}
		return len(out) >= n
	})
	if len(out) != n {
		t.Errorf("task %s has %d spans, want %d", taskID, len(out), n)
	}
	return out
}

func onlySpan(t *testing.T, spans []tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q", len(found), name)
	}
	return found[0]
}

func uuidTime(t *testing.T, id string) time.Time {
	t.Helper()
	created, ok := events.TaskCreatedAt(uuid.MustParse(id))
	if !ok {
		t.Fatalf("%s is not a UUIDv7", id)
	}
	return created
}

var _ sdktrace.SpanExporter = (*tracetest.InMemoryExporter)(nil)

// TestTaskSpanTrees is Tasker's Jaeger validator as a test: each task
// has one span, with one child span per step attempt, for linear, diamond
// and parallel workflows, and a retried step shows its failed attempt with
// the error recorded and the retry as an event.
func TestTaskSpanTrees(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	cases := []struct {
		name, yaml  string
		attempts    map[string]int
		traceparent string
	}{
		{name: "linear", yaml: `namespace_name: shop
name: linear
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on_step: a}
  - {name: c, handler: noop, depends_on_step: b}
`, attempts: map[string]int{"a": 1, "b": 1, "c": 1}},
		{name: "diamond", yaml: diamondYAML, attempts: map[string]int{"validate": 1, "charge": 1, "reserve": 1, "confirm": 1},
			traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{name: "parallel", yaml: `namespace_name: shop
name: parallel
version: 1.0.0
step_templates:
  - {name: p1, handler: noop}
  - {name: p2, handler: noop}
  - {name: p3, handler: noop}
  - {name: p4, handler: noop}
`, attempts: map[string]int{"p1": 1, "p2": 1, "p3": 1, "p4": 1},
			traceparent: "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01"},
		{name: "retried", yaml: `namespace_name: shop
name: retried
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: fail, handler_config: {failures: 1}, depends_on_step: a, backoff: {base: 100ms}}
`, attempts: map[string]int{"a": 1, "b": 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r.register(c.yaml)
			header := map[string]string{}
			if c.traceparent != "" {
				header["traceparent"] = c.traceparent
			}
			id := r.createTask(c.name, header)
			r.waitTask(id, "complete")
			n := 1
			for _, a := range c.attempts {
				n += a
			}
			spans := r.taskSpans(t, id, n)
			task := onlySpan(t, spans, "task shop."+c.name)
			if c.traceparent == "" {
				// No caller trace: the task starts its own, named by its id.
				if task.Parent.IsValid() || task.SpanContext.TraceID().String() != strings.ReplaceAll(id, "-", "") {
					t.Errorf("task span: trace %s parent %v", task.SpanContext.TraceID(), task.Parent)
				}
			} else if p := strings.Split(c.traceparent, "-"); task.SpanContext.TraceID().String() != p[1] || task.Parent.SpanID().String() != p[2] {
				t.Errorf("task span: trace %s parent %s, want %s", task.SpanContext.TraceID(), task.Parent.SpanID(), c.traceparent)
			}
			for step, want := range c.attempts {
				var attempts []tracetest.SpanStub
				for _, s := range spans {
					if s.Name == "step "+step {
						attempts = append(attempts, s)
						if s.Parent.SpanID() != task.SpanContext.SpanID() {
							t.Errorf("step %s: parent %s, want the task span %s", step, s.Parent.SpanID(), task.SpanContext.SpanID())
						}
					}
				}
				if len(attempts) != want {
					t.Errorf("step %s: %d spans, want %d", step, len(attempts), want)
					continue
				}
				if want == 2 {
					slices.SortFunc(attempts, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
					failed := attempts[0]
					var names []string
					for _, e := range failed.Events {
						names = append(names, e.Name)
					}
					if failed.Status.Code.String() != "Error" || !slices.Contains(names, "exception") || !slices.Contains(names, "retry scheduled") {
						t.Errorf("the failed attempt: status %v, events %v", failed.Status, names)
					}
					if attempts[1].Status.Code.String() == "Error" || attempts[1].StartTime.Sub(failed.EndTime) < 90*time.Millisecond {
						t.Errorf("the retry: status %v, %s after the failure", attempts[1].Status, attempts[1].StartTime.Sub(failed.EndTime))
					}
				}
			}
		})
	}
}

// Template registrations, deletions and refusals are handler.* events.
func TestRegistryEvents(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	r.register(diamondYAML)
	if code, _, body := r.call("POST", "/templates", "namespace_name: shop\nname: broken\nstep_templates: []\n", nil); code != 422 {
		t.Fatalf("an invalid template: %d %s", code, body)
	}
	if code, _, body := r.call("DELETE", "/templates/shop/diamond/1.0.0", "", nil); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	var got []engine.Event
	eventually(t, 10*time.Second, "three handler events", func() bool {
		r.events.mu.Lock()
		defer r.events.mu.Unlock()
		got = got[:0]
		for _, ev := range r.events.events {
			if strings.HasPrefix(ev.Name, "handler.") {
				got = append(got, ev)
			}
		}
		return len(got) == 3
	})
	if got[0].Name != "handler.registered" || got[0].TaskName != "diamond" || got[0].Reason != "created" ||
		got[1].Name != "handler.validation_failed" || !strings.Contains(string(got[1].Payload), `"pointer"`) ||
		got[2].Name != "handler.unregistered" || got[2].TaskVersion != "1.0.0" {
		t.Errorf("handler events: %+v", got)
	}
}
