// Package telemetry turns taskerd's events into Prometheus metrics,
// OpenTelemetry spans and log lines, and carries request, correlation,
// task, step and trace ids into every log line written with a context.
//
// It subscribes to the event bus like any other consumer: the engine knows
// nothing of it. The one exception is DecorateStep, which the engine calls
// before each handler so that the handler's context carries the attempt's
// trace context and log fields.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/events"
)

// DefaultServiceName names taskerd in traces unless OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "tasker"

// Config configures Telemetry.
type Config struct {
	// ServiceName is the service.name of spans; OTEL_SERVICE_NAME overrides
	// it; default "tasker".
	ServiceName string
	// Version and Commit label tasker_build_info and spans.
	Version, Commit string
	// SpanExporter, when set, receives every span synchronously instead of
	// the exporter the OTEL_* variables choose, and the global OpenTelemetry
	// providers are left alone (tests, embedders).
	SpanExporter sdktrace.SpanExporter
	// Getenv reads the OTEL_* variables; os.Getenv by default.
	Getenv func(string) string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Telemetry is a replica's metrics registry, tracer provider and event
// subscribers.
type Telemetry struct {
	cfg        Config
	logger     *slog.Logger
	registry   *prometheus.Registry
	metrics    *Metrics
	provider   *sdktrace.TracerProvider
	exporting  bool // spans go to an exporter
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator

	stopOnce sync.Once
}

// New builds the registry (with Go and process collectors) and the tracer
// provider. OTEL_TRACES_EXPORTER picks the exporter: otlp (over
// OTEL_EXPORTER_OTLP_PROTOCOL grpc or http/protobuf) or none; unset means
// otlp when an OTLP endpoint variable is set, and none otherwise.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	cfg.ServiceName = cmp.Or(cfg.ServiceName, DefaultServiceName)
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "telemetry"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tasker_build_info",
		Help:        "Always 1; the labels say which taskerd runs.",
		ConstLabels: prometheus.Labels{"version": cmp.Or(cfg.Version, "dev"), "commit": cmp.Or(cfg.Commit, "unknown"), "go_version": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	m := newMetrics()
	if err := m.register(reg); err != nil {
		return nil, err
	}
	provider, exporting, err := newTracerProvider(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{
		cfg:        cfg,
		logger:     logger,
		registry:   reg,
		metrics:    m,
		provider:   provider,
		exporting:  exporting,
		tracer:     provider.Tracer("github.com/taskerd/taskerd"),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if cfg.SpanExporter == nil {
		// Handler kinds and other libraries find the provider here.
		otel.SetTracerProvider(provider)
		otel.SetTextMapPropagator(t.propagator)
	}
	return t, nil
}

// Registry is the Prometheus registry /tasker/metrics serves.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// Metrics are the collectors events move.
func (t *Telemetry) Metrics() *Metrics { return t.metrics }

// MetricsHandler serves the registry in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(t.logger.Handler(), slog.LevelWarn),
		// The API's middleware compresses responses; twice would be waste.
		DisableCompression: true,
		// A database that is down must not hide the other metrics: the
		// figures read from it are left out and the error logged.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// TracerProvider is the provider of taskerd's spans.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.provider }

// Propagator reads and writes traceparent and baggage headers.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// Subscribe attaches the metrics, tracing and logging subscribers to bus.
// logger receives the lifecycle log lines (a task's end at INFO, failures
// for good at WARN, the rest at DEBUG).
func (t *Telemetry) Subscribe(bus *events.Bus, logger *slog.Logger) {
	bus.Subscribe("metrics", t.metrics.handle, events.SubscribeOptions{})
	if t.exporting {
		// Spans of steps and tasks are built after the fact from events;
		// with no exporter they would be built for nobody (a span per
		// attempt: 8 % of the process's CPU at 10,000 steps/s). Handlers
		// still get their trace context (DecorateStep) for the services
		// they call.
		bus.Subscribe("tracing", t.traceEvents, events.SubscribeOptions{Match: tracedEvent})
	}
	lg := newEventLogger(cmp.Or(logger, slog.Default()))
	bus.Subscribe("logging", lg.handle, events.SubscribeOptions{})
	t.metrics.watchBus(bus)
}

// Start does nothing: the subscribers run on the bus's goroutines.
func (t *Telemetry) Start(context.Context) error { return nil }

// Stop exports the spans still buffered, until ctx ends. Safe twice.
func (t *Telemetry) Stop(ctx context.Context) error {
	var err error
	t.stopOnce.Do(func() {
		err = t.provider.Shutdown(ctx)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	})
	return err
}
