package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/telemetry"
)

func newTelemetry(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Config{SpanExporter: exp, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Stop(context.Background()) })
	return tel, exp
}

func TestLogHandlerAddsContextFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With(slog.String("component", "x"))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	ctx = telemetry.WithLogFields(ctx, telemetry.LogFields{RequestID: "r-1", CorrelationID: "c-1"})
	ctx = telemetry.WithLogFields(ctx, telemetry.LogFields{TaskID: "t-1"}) // merged over the request's
	logger.InfoContext(ctx, "hello", slog.String("task_id", "explicit"))
	logger.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"request_id": "r-1", "correlation_id": "c-1", "task_id": "explicit", "component": "x",
		"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v", k, first[k], v)
		}
	}
	if strings.Count(lines[0], `"task_id"`) != 1 {
		t.Errorf("a field the record has is not added twice: %s", lines[0])
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("a line without context got fields: %s", lines[1])
	}
}

func TestTraceOfTask(t *testing.T) {
	t.Parallel()
	task, step := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	own := telemetry.TraceOfTask(task, "")
	if own.Parent.IsValid() || own.Task.TraceID() != trace.TraceID(task) || !own.Task.IsSampled() {
		t.Errorf("a task without traceparent starts its own trace: %+v", own)
	}
	if again := telemetry.TraceOfTask(task, ""); !again.Task.Equal(own.Task) {
		t.Error("the ids are derived, the same every time")
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	tt := telemetry.TraceOfTask(task, tp)
	if tt.Parent.SpanID().String() != "00f067aa0ba902b7" || tt.Task.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		tt.Task.IsSampled() || tt.Task.SpanID() != own.Task.SpanID() {
		t.Errorf("under a caller's trace: %+v", tt)
	}
	a1, a2 := tt.StepSpan(step, 1), tt.StepSpan(step, 2)
	if a1.SpanID() == a2.SpanID() || a1.TraceID() != tt.Task.TraceID() {
		t.Error("each attempt has its own span in the task's trace")
	}
	if got := telemetry.Traceparent(a1); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+a1.SpanID().String()+"-00" {
		t.Errorf("traceparent %s", got)
	}
	if telemetry.TraceOfTask(task, "garbage").Parent.IsValid() {
		t.Error("an unreadable traceparent is ignored")
	}
}

func TestDecorateStep(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	step := handler.Step{TaskID: uuid.Must(uuid.NewV7()), StepID: uuid.Must(uuid.NewV7()), Attempt: 3, CorrelationID: "c-7",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	ctx, got := tel.DecorateStep(context.Background(), step)
	sc := trace.SpanContextFromContext(ctx)
	want := telemetry.TraceOfTask(step.TaskID, step.Traceparent).StepSpan(step.StepID, 3)
	if sc.SpanID() != want.SpanID() || got.Traceparent != telemetry.Traceparent(want) {
		t.Errorf("the handler's context and traceparent name the attempt's span: %s %s", sc.SpanID(), got.Traceparent)
	}
	if f := telemetry.LogFieldsFrom(ctx); f.CorrelationID != "c-7" || f.StepID != step.StepID.String() {
		t.Errorf("log fields %+v", f)
	}
}

// Events move the metrics, and the registry stays promlint-clean.
func TestMetricsFromEvents(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	bus, err := events.NewBus(events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tel.Subscribe(bus, slog.New(slog.DiscardHandler))
	tel.Metrics().SetSources(telemetry.Sources{RunningSteps: func() int { return 3 }})
	if err := bus.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	task, step := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	base := engine.Event{TaskID: task, StepID: step, Namespace: "shop", TaskName: "checkout", TaskVersion: "1.0.0", StepName: "charge",
		Attempt: 1, Time: time.Now()}
	with := func(name, from, to string, mod func(*engine.Event)) engine.Event {
		ev := base
		ev.Name, ev.From, ev.To = name, from, to
		if mod != nil {
			mod(&ev)
		}
		return ev
	}
	bus.Publish([]engine.Event{
		with("step.execution_requested", "pending", "in_progress", func(e *engine.Event) { e.ReadyAt = e.Time.Add(-50 * time.Millisecond) }),
		with("order.charged", "", "", func(e *engine.Event) { e.Custom, e.Payload = true, json.RawMessage(`{"value": 19.5}`) }),
		with("order.charged", "", "", func(e *engine.Event) { e.Custom, e.Payload = true, json.RawMessage(`{"value": "n/a"}`) }),
		with("step.failed", "in_progress", "error", func(e *engine.Event) { e.StartedAt, e.Duration = e.Time, 20*time.Millisecond }),
		with("step.retry_requested", "error", "pending", nil),
		with("task.failed", "in_progress", "error", func(e *engine.Event) { e.StepID, e.StepName = uuid.Nil, "" }),
	})
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"tasker_custom_events_total": `tasker_custom_events_total{event="order.charged",namespace="shop",task="checkout"} 2`,
		"tasker_step_retries_total":  `tasker_step_retries_total{namespace="shop",step="charge",task="checkout"} 1`,
		"tasker_steps_in_flight":     `tasker_steps_in_flight 3`,
		"tasker_tasks_total":         `tasker_tasks_total{name="checkout",namespace="shop",status="error",version="1.0.0"} 1`,
	} {
		if err := testutil.GatherAndCompare(tel.Registry(), strings.NewReader(helpOf(t, tel, name)+want+"\n"), name); err != nil {
			t.Error(err)
		}
	}
	families, err := tel.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "tasker_custom_event_value":
			h := f.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != 19.5 {
				t.Errorf("custom value: %d samples, sum %v", h.GetSampleCount(), h.GetSampleSum())
			}
		case "tasker_step_duration_seconds", "tasker_step_queue_latency_seconds", "tasker_task_duration_seconds":
			if n := f.GetMetric()[0].GetHistogram().GetSampleCount(); n != 1 {
				t.Errorf("%s: %d samples", f.GetName(), n)
			}
		}
	}
	problems, err := testutil.GatherAndLint(tel.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// helpOf returns the HELP and TYPE lines of a metric, for GatherAndCompare.
func helpOf(t *testing.T, tel *telemetry.Telemetry, name string) string {
	t.Helper()
	families, err := tel.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return "# HELP " + name + " " + f.GetHelp() + "\n# TYPE " + name + " " + strings.ToLower(f.GetType().String()) + "\n"
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

func TestExporterFromEnvironment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"nothing set: no exporter", nil, true},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, true},
		{"otlp over http by default", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"otlp over grpc", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true},
		{"an unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false},
		{"an unknown protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, false},
	} {
		tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: func(k string) string { return c.env[k] }})
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if tel != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := tel.Stop(ctx); err != nil {
				t.Errorf("%s: stop: %v", c.name, err)
			}
			cancel()
		}
	}
}

// Spans are built from events only when they go somewhere: without an
// exporter no tracing subscriber costs the bus anything.
func TestTracingSubscribesOnlyWithAnExporter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"no exporter", nil, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
	} {
		tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: func(k string) string { return c.env[k] }})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		bus, err := events.NewBus(events.BusConfig{})
		if err != nil {
			t.Fatal(err)
		}
		tel.Subscribe(bus, slog.New(slog.DiscardHandler))
		if _, got := bus.Dropped()["tracing"]; got != c.want {
			t.Errorf("%s: tracing subscribed = %v, want %v", c.name, got, c.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = tel.Stop(ctx)
		cancel()
	}
	// An exporter given in the configuration (as the tests' in-memory one).
	tel, _ := newTelemetry(t)
	bus, err := events.NewBus(events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tel.Subscribe(bus, slog.New(slog.DiscardHandler))
	if _, ok := bus.Dropped()["tracing"]; !ok {
		t.Error("a configured span exporter gets no tracing subscriber")
	}
}
