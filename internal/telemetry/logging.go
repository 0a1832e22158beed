package telemetry

import (
	"context"
	"log/slog"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/engine"
)

// Log keys this package adds to lines.
const (
	LogKeyRequestID     = "request_id"
	LogKeyCorrelationID = "correlation_id"
	LogKeyTaskID        = "task_id"
	LogKeyStepID        = "step_id"
	LogKeyTraceID       = "trace_id"
	LogKeySpanID        = "span_id"
)

// LogFields are the ids a context carries into every line logged with it.
type LogFields struct {
	RequestID     string
	CorrelationID string
	TaskID        string
	StepID        string
}

type logFieldsKey struct{}

// WithLogFields returns ctx carrying f, merged over the fields ctx had.
func WithLogFields(ctx context.Context, f LogFields) context.Context {
	old := LogFieldsFrom(ctx)
	if f.RequestID == "" {
		f.RequestID = old.RequestID
	}
	if f.CorrelationID == "" {
		f.CorrelationID = old.CorrelationID
	}
	if f.TaskID == "" {
		f.TaskID = old.TaskID
	}
	if f.StepID == "" {
		f.StepID = old.StepID
	}
	return context.WithValue(ctx, logFieldsKey{}, f)
}

// LogFieldsFrom returns the fields ctx carries.
func LogFieldsFrom(ctx context.Context) LogFields {
	f, _ := ctx.Value(logFieldsKey{}).(LogFields)
	return f
}

// NewLogHandler wraps h so that every record logged with a context gets
// request_id, correlation_id, task_id, step_id, trace_id and span_id from
// it, unless the record has them already.
func NewLogHandler(h slog.Handler) slog.Handler {
	if c, ok := h.(*contextHandler); ok {
		return c
	}
	return &contextHandler{inner: h}
}

type contextHandler struct{ inner slog.Handler }

func (h *contextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &contextHandler{inner: h.inner.WithAttrs(attrs)}
}

func (h *contextHandler) WithGroup(name string) slog.Handler {
	return &contextHandler{inner: h.inner.WithGroup(name)}
}

func (h *contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.inner.Handle(ctx, r)
	}
	f := LogFieldsFrom(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if f == (LogFields{}) && !sc.IsValid() {
		return h.inner.Handle(ctx, r)
	}
	var have map[string]bool
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case LogKeyRequestID, LogKeyCorrelationID, LogKeyTaskID, LogKeyStepID, LogKeyTraceID, LogKeySpanID:
			if have == nil {
				have = map[string]bool{}
			}
			have[a.Key] = true
		}
		return true
	})
	add := func(key, value string) {
		if value != "" && !have[key] {
			r.AddAttrs(slog.String(key, value))
		}
	}
	add(LogKeyRequestID, f.RequestID)
	add(LogKeyCorrelationID, f.CorrelationID)
	add(LogKeyTaskID, f.TaskID)
	add(LogKeyStepID, f.StepID)
	if sc.IsValid() {
		add(LogKeyTraceID, sc.TraceID().String())
		add(LogKeySpanID, sc.SpanID().String())
	}
	return h.inner.Handle(ctx, r)
}

// eventLogger is the logging subscriber: one line per lifecycle event.
type eventLogger struct{ logger *slog.Logger }

func newEventLogger(l *slog.Logger) *eventLogger {
	return &eventLogger{logger: l.With(slog.String("component", "events"))}
}

func (l *eventLogger) handle(ctx context.Context, evs []engine.Event) {
	for i := range evs {
		ev := &evs[i]
		level := eventLevel(ev)
		if !l.logger.Enabled(ctx, level) {
			continue
		}
		attrs := make([]slog.Attr, 0, 16)
		attrs = append(attrs, slog.String("event", ev.Name))
		if ev.TaskID != uuid.Nil {
			tt := TraceOfTask(ev.TaskID, ev.Traceparent)
			span := tt.Task
			if ev.StepID != uuid.Nil && ev.Attempt > 0 {
				span = tt.StepSpan(ev.StepID, ev.Attempt)
			}
			attrs = append(attrs, slog.String(LogKeyTaskID, ev.TaskID.String()),
				slog.String(LogKeyCorrelationID, ev.CorrelationID),
				slog.String(LogKeyTraceID, span.TraceID().String()), slog.String(LogKeySpanID, span.SpanID().String()),
				slog.String("namespace", ev.Namespace), slog.String("task_name", ev.TaskName), slog.String("task_version", ev.TaskVersion))
		}
		if ev.StepID != uuid.Nil {
			attrs = append(attrs, slog.String(LogKeyStepID, ev.StepID.String()), slog.String("step_name", ev.StepName), slog.Int("attempt", ev.Attempt))
		}
		if ev.To != "" {
			attrs = append(attrs, slog.String("from", ev.From), slog.String("to", ev.To))
		}
		if ev.Reason != "" {
			attrs = append(attrs, slog.String("reason", ev.Reason))
		}
		if ev.Duration > 0 {
			attrs = append(attrs, slog.Float64("duration_ms", float64(ev.Duration.Microseconds())/1000))
		}
		if len(ev.Error) > 0 {
			attrs = append(attrs, slog.String("error", errorMessage(ev)))
		}
		if !ev.RetryAt.IsZero() {
			attrs = append(attrs, slog.Time("retry_at", ev.RetryAt))
		}
		l.logger.LogAttrs(ctx, level, ev.Name, attrs...)
	}
}

// eventLevel: one line per task at INFO (its end), failures for good at
// WARN, the rest at DEBUG, so that a busy replica's log stays readable.
func eventLevel(ev *engine.Event) slog.Level {
	switch {
	case ev.Name == "task.failed" || ev.Name == engine.EventStepMaxRetriesReached:
		return slog.LevelWarn
	case ev.Name == "step.failed" && ev.RetryAt.IsZero():
		return slog.LevelWarn
	case ev.Custom || ev.StepID != uuid.Nil:
		return slog.LevelDebug
	case ev.TaskID != uuid.Nil && (ev.To == "complete" || ev.To == "cancelled" || ev.To == "resolved_manually"):
		return slog.LevelInfo
	case strings.HasPrefix(ev.Name, "handler."):
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
