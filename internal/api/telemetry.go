package api

import (
	"net/http"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/telemetry"
)

// unmatchedRoute labels requests no route matched, so that scanners probing
// random paths cannot grow the metrics without bound.
const unmatchedRoute = "unmatched"

// traceRequests starts an OpenTelemetry server span per request, the child
// of the caller's traceparent; observeRequests names it after the route.
func traceRequests(t *telemetry.Telemetry) func(http.Handler) http.Handler {
	return otelhttp.NewMiddleware("tasker",
		otelhttp.WithTracerProvider(t.TracerProvider()),
		otelhttp.WithPropagators(t.Propagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// observeRequests gives each request's context its log fields (request and
// correlation ids), and once the route is known names the request's span
// after it and records the HTTP metrics by route pattern. A request
// without a usable X-Correlation-ID gets a fresh one, on the request (so
// a task created by it stores it) and on the response. t may be nil.
func observeRequests(t *telemetry.Telemetry) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			correlation := r.Header.Get(CorrelationHeader)
			if !validRequestID(correlation) {
				correlation = uuid.Must(uuid.NewV7()).String()
				r.Header.Set(CorrelationHeader, correlation)
			}
			w.Header().Set(CorrelationHeader, correlation)
			ctx := telemetry.WithLogFields(r.Context(), telemetry.LogFields{
				RequestID: RequestIDFromContext(r.Context()), CorrelationID: correlation,
			})
			r = r.WithContext(ctx)
			if t == nil {
				next.ServeHTTP(w, r)
				return
			}
			t.Metrics().HTTPStarted()
			start := time.Now()
			m := httpsnoop.CaptureMetrics(next, w, r)
			route := unmatchedRoute
			if rctx := chi.RouteContext(ctx); rctx != nil && rctx.RoutePattern() != "" {
				route = rctx.RoutePattern()
			}
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetName(r.Method + " " + route)
				span.SetAttributes(attribute.String("http.route", route))
			}
			t.Metrics().HTTPFinished(r.Method, route, m.Code, time.Since(start))
		})
	}
}

// metricsHandler serves the Prometheus registry.
type metricsHandler struct{ h http.Handler }

// serve answers GET /tasker/metrics.
//
//	@Summary		Prometheus metrics
//	@Description	The Prometheus text format: tasks, steps and their durations, retries, queue depth and latency, custom business events, webhook deliveries, dropped events, HTTP requests by route pattern, the database pool, and the Go runtime and process. Labels hold names, never ids. Permission: tasker.metrics:index (only with TASKER_METRICS_AUTH=true; open by default).
//	@Tags			metrics
//	@Produce		plain
//	@Success		200	{string}	string	"Metrics in the Prometheus text format"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.metrics:index"
//	@Router			/metrics [get]
func (m metricsHandler) serve(w http.ResponseWriter, r *http.Request) { m.h.ServeHTTP(w, r) }
