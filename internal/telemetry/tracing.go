package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
)

// Span attribute keys.
const (
	AttrTaskID        = attribute.Key("tasker.task_id")
	AttrStepID        = attribute.Key("tasker.step_id")
	AttrNamespace     = attribute.Key("tasker.namespace")
	AttrTaskName      = attribute.Key("tasker.task_name")
	AttrTaskVersion   = attribute.Key("tasker.task_version")
	AttrStepName      = attribute.Key("tasker.step_name")
	AttrAttempt       = attribute.Key("tasker.attempt")
	AttrStatus        = attribute.Key("tasker.status")
	AttrCorrelationID = attribute.Key("tasker.correlation_id")
	AttrRun           = attribute.Key("tasker.run")
)

// newTracerProvider builds the provider from the OTEL_* variables (or the
// exporter of cfg), and says whether spans go anywhere. Span ids come from
// idGenerator, so that spans emitted after the fact keep the ids handlers
// already propagated.
func newTracerProvider(ctx context.Context, cfg Config) (_ *sdktrace.TracerProvider, exporting bool, err error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = osGetenv
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	// The variables come last so that OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES win over the defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && res == nil {
		return nil, false, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithIDGenerator(idGenerator{})}
	if cfg.SpanExporter != nil {
		opts = append(opts, sdktrace.WithSyncer(cfg.SpanExporter))
		return sdktrace.NewTracerProvider(opts...), true, nil
	}
	exp, err := exporterFromEnv(ctx, getenv)
	if err != nil {
		return nil, false, err
	}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), exp != nil, nil
}

// exporterFromEnv picks the span exporter the OTEL_* variables ask for;
// nil means none (spans still get ids, for propagation and logs).
func exporterFromEnv(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	kind := strings.TrimSpace(strings.ToLower(getenv("OTEL_TRACES_EXPORTER")))
	if kind == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil // no exporter unless asked for
		}
		kind = "otlp"
	}
	switch kind {
	case "none":
		return nil, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q is not supported: use otlp or none", kind)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	// The exporters read their endpoint, headers, timeout and TLS settings
	// from the OTEL_EXPORTER_OTLP_* variables themselves.
	switch strings.ToLower(protocol) {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	}
	return nil, fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported: use grpc or http/protobuf", protocol)
}

// forcedIDsKey carries the ids the next span must take.
type forcedIDsKey struct{}

type forcedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// idGenerator makes random ids, except for spans whose ids are derived from
// stored ids (a task's span, a step attempt's span): those are emitted when
// the work is over, perhaps on another replica, with ids that were
// propagated while it ran.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if f, ok := ctx.Value(forcedIDsKey{}).(forcedIDs); ok {
		return f.trace, f.span
	}
	var t trace.TraceID
	for !t.IsValid() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t, randomSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if f, ok := ctx.Value(forcedIDsKey{}).(forcedIDs); ok {
		return f.span
	}
	return randomSpanID()
}

func randomSpanID() trace.SpanID {
	var s trace.SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// derivedSpanID hashes stored ids into a span id: the first 8 bytes of
// SHA-256 over kind, the id and the attempt.
func derivedSpanID(kind string, id uuid.UUID, attempt int) trace.SpanID {
	var buf [64]byte
	n := copy(buf[:], kind)
	n += copy(buf[n:], id[:])
	binary.BigEndian.PutUint64(buf[n:], uint64(attempt))
	sum := sha256.Sum256(buf[:n+8])
	var s trace.SpanID
	copy(s[:], sum[:8])
	if !s.IsValid() {
		s[7] = 1
	}
	return s
}

// parseTraceparent reads a W3C traceparent (version 00, or a later version
// read as 00 would be); invalid means none.
func parseTraceparent(tp string) trace.SpanContext {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] == "ff" || (len(tp) > 55 && tp[55] != '-') {
		return trace.SpanContext{}
	}
	var traceID trace.TraceID
	var spanID trace.SpanID
	var flags [1]byte
	if _, err := hex.Decode(traceID[:], []byte(tp[3:35])); err != nil {
		return trace.SpanContext{}
	}
	if _, err := hex.Decode(spanID[:], []byte(tp[36:52])); err != nil {
		return trace.SpanContext{}
	}
	if _, err := hex.Decode(flags[:], []byte(tp[53:55])); err != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID,
		TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true})
}

// TaskTrace is where a task's spans live: the trace of the request that
// created it (its traceparent), or one named after the task when there was
// none.
type TaskTrace struct {
	// Parent is the create request's span; invalid when there was none.
	Parent trace.SpanContext
	// Task is the task's own span.
	Task trace.SpanContext
}

// TraceOfTask derives a task's trace from its stored id and traceparent.
func TraceOfTask(taskID uuid.UUID, traceparent string) TaskTrace {
	var tt TaskTrace
	flags := trace.FlagsSampled
	var traceID trace.TraceID
	if traceparent != "" {
		tt.Parent = parseTraceparent(traceparent)
	}
	if tt.Parent.IsValid() {
		traceID, flags = tt.Parent.TraceID(), tt.Parent.TraceFlags()
	} else {
		copy(traceID[:], taskID[:]) // a UUIDv7 is 16 bytes, never zero
	}
	tt.Task = trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: derivedSpanID("tasker/task/", taskID, 0), TraceFlags: flags, Remote: true,
	})
	return tt
}

// StepSpan is the span context of one attempt of a step.
func (tt TaskTrace) StepSpan(stepID uuid.UUID, attempt int) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tt.Task.TraceID(), SpanID: derivedSpanID("tasker/step/", stepID, attempt),
		TraceFlags: tt.Task.TraceFlags(), Remote: true,
	})
}

// Traceparent formats a span context as a W3C traceparent header.
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	copy(b[:], "00-")
	t, s := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], t[:])
	b[35] = '-'
	hex.Encode(b[36:52], s[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & trace.FlagsSampled)})
	return string(b[:])
}

// DecorateStep gives a handler the context of its attempt's span (so
// outbound calls instrumented with OpenTelemetry are its children, and
// step.Traceparent names it) and the log fields of its task and step.
func (t *Telemetry) DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step) {
	sc := TraceOfTask(step.TaskID, step.Traceparent).StepSpan(step.StepID, step.Attempt)
	step.Traceparent = Traceparent(sc)
	ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	ctx = WithLogFields(ctx, LogFields{CorrelationID: step.CorrelationID, TaskID: step.TaskID.String(), StepID: step.StepID.String()})
	return ctx, step
}

var _ engine.StepDecorator = (*Telemetry)(nil)

// tracedEvent selects the events the tracing subscriber turns into spans.
func tracedEvent(ev *engine.Event) bool {
	if ev.Custom {
		return true
	}
	switch ev.Name {
	case "step.completed", "step.failed", "step.retry_requested", "step.cancelled",
		"task.completed", "task.failed", "task.cancelled", "task.resolved_manually", "task.retry_requested":
		return true
	}
	return false
}

// traceEvents emits the spans of finished work: a span per step attempt
// when its outcome is recorded (with the attempt's custom events as span
// events), and the task's span when it reaches a final state, starting at
// the task's creation. Both are emitted after the fact with derived ids,
// so nothing is held in memory while a task runs, and a task that outlives
// its replica still gets its span.
func (t *Telemetry) traceEvents(_ context.Context, evs []engine.Event) {
	custom := map[uuid.UUID][]*engine.Event{}
	for i := range evs {
		ev := &evs[i]
		if ev.Custom {
			custom[ev.StepID] = append(custom[ev.StepID], ev)
			continue
		}
		switch {
		case strings.HasPrefix(ev.Name, "step."):
			if ev.From == "in_progress" {
				t.stepSpan(ev, custom[ev.StepID])
				delete(custom, ev.StepID)
			}
		case ev.From == "error" || ev.To == "pending":
			// After the task's span was emitted (it failed): a marker under it.
			t.taskMarker(ev)
		default:
			t.taskSpan(ev)
		}
	}
}

func taskAttrs(ev *engine.Event) []attribute.KeyValue {
	return []attribute.KeyValue{
		AttrTaskID.String(ev.TaskID.String()), AttrNamespace.String(ev.Namespace), AttrTaskName.String(ev.TaskName),
		AttrTaskVersion.String(ev.TaskVersion), AttrCorrelationID.String(ev.CorrelationID),
	}
}

// stepSpan emits the span of the attempt whose outcome ev records.
func (t *Telemetry) stepSpan(ev *engine.Event, custom []*engine.Event) {
	tt := TraceOfTask(ev.TaskID, ev.Traceparent)
	sc := tt.StepSpan(ev.StepID, ev.Attempt)
	start, end := ev.StartedAt, ev.StartedAt.Add(ev.Duration)
	if start.IsZero() {
		start, end = ev.Time, ev.Time // no handler ran (or another replica ran it): a point in time
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), tt.Task)
	ctx = context.WithValue(ctx, forcedIDsKey{}, forcedIDs{trace: sc.TraceID(), span: sc.SpanID()})
	attrs := append(taskAttrs(ev), AttrStepID.String(ev.StepID.String()), AttrStepName.String(ev.StepName),
		attribute.Int(string(AttrAttempt), ev.Attempt), AttrStatus.String(ev.To))
	_, span := t.tracer.Start(ctx, "step "+ev.StepName, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	for _, c := range custom {
		span.AddEvent(c.Name, trace.WithTimestamp(c.Time), trace.WithAttributes(attribute.String("tasker.payload", string(c.Payload))))
	}
	switch {
	case ev.To == "error" || ev.Reason == "lease_expired":
		msg := errorMessage(ev)
		span.RecordError(errors.New(msg), trace.WithTimestamp(end))
		span.SetStatus(codes.Error, msg)
		if !ev.RetryAt.IsZero() {
			span.AddEvent("retry scheduled", trace.WithTimestamp(end), trace.WithAttributes(
				attribute.String("tasker.retry_at", ev.RetryAt.UTC().Format(time.RFC3339Nano)),
				attribute.Float64("tasker.backoff_seconds", ev.RetryAt.Sub(end).Seconds())))
		}
	case ev.To == "cancelled":
		span.SetStatus(codes.Error, "cancelled")
	}
	span.End(trace.WithTimestamp(end))
}

func errorMessage(ev *engine.Event) string {
	var e struct {
		Message string `json:"message"`
	}
	if len(ev.Error) > 0 && json.Unmarshal(ev.Error, &e) == nil && e.Message != "" {
		return e.Message
	}
	if ev.Reason != "" {
		return ev.Reason
	}
	return "step failed"
}

// taskSpan emits a task's span, from its creation to ev. A task is
// finalised once per run: a failed task retried by hand and finished again
// gets a span of its own for each later run (a span id derived from the
// run), linked to the task's first span and beside it under the same
// parent, rather than a second span with the first one's id. The first
// keeps the id its steps' spans name as their parent.
func (t *Telemetry) taskSpan(ev *engine.Event) {
	tt := TraceOfTask(ev.TaskID, ev.Traceparent)
	start, ok := events.TaskCreatedAt(ev.TaskID)
	if !ok || start.After(ev.Time) {
		start = ev.Time
	}
	ctx := context.Background()
	if tt.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, tt.Parent)
	}
	spanID := tt.Task.SpanID()
	attrs := append(taskAttrs(ev), AttrStatus.String(ev.To))
	opts := []trace.SpanStartOption{trace.WithTimestamp(start)}
	if ev.Run > 1 {
		spanID = derivedSpanID("tasker/task/", ev.TaskID, ev.Run)
		attrs = append(attrs, attribute.Int(string(AttrRun), ev.Run))
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: tt.Task,
			Attributes: []attribute.KeyValue{attribute.String("tasker.link", "first_run")}}))
	}
	ctx = context.WithValue(ctx, forcedIDsKey{}, forcedIDs{trace: tt.Task.TraceID(), span: spanID})
	opts = append(opts, trace.WithAttributes(attrs...))
	if !tt.Parent.IsValid() {
		opts = append(opts, trace.WithNewRoot())
	}
	_, span := t.tracer.Start(ctx, "task "+ev.Namespace+"."+ev.TaskName, opts...)
	switch ev.To {
	case "error":
		span.SetStatus(codes.Error, "the task failed")
	case "cancelled":
		span.SetStatus(codes.Error, "the task was cancelled")
	}
	span.End(trace.WithTimestamp(ev.Time))
}

// taskMarker records a later change of a task whose span was already
// emitted (a failed task retried, resolved or cancelled by hand) as a
// point-in-time span under it.
func (t *Telemetry) taskMarker(ev *engine.Event) {
	tt := TraceOfTask(ev.TaskID, ev.Traceparent)
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), tt.Task)
	_, span := t.tracer.Start(ctx, ev.Name, trace.WithTimestamp(ev.Time),
		trace.WithAttributes(append(taskAttrs(ev), AttrStatus.String(ev.To))...))
	span.End(trace.WithTimestamp(ev.Time))
}
