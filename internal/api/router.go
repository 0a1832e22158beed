// Package api speaks HTTP: it routes /tasker requests to the services of the
// other packages, decodes and validates input, and writes JSON or
// application/problem+json. It holds no SQL and no business rules.
package api

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/telemetry"
	"github.com/taskerd/taskerd/internal/webhooks"
	"github.com/taskerd/taskerd/internal/workers"
)

// BasePath prefixes every route.
const BasePath = "/tasker"

// DefaultMaxBodyBytes is the default request body limit (1 MiB).
const DefaultMaxBodyBytes = 1 << 20

// Config configures the HTTP handler.
type Config struct {
	// Health answers the probes; required.
	Health *health.Checker
	// Registry serves the template and discovery routes; nil leaves them out.
	Registry *registry.Registry
	// Engine serves the task and workflow-step routes; nil leaves them out.
	Engine *engine.Engine
	// Store serves the task list, task and step edits, dependency analysis
	// and analytics; nil leaves them out.
	Store *store.Store
	// Workers serves the remote-worker routes; nil leaves them out.
	Workers *workers.Service
	// Telemetry serves /metrics, traces requests and records HTTP metrics
	// by route pattern; nil leaves them out.
	Telemetry *telemetry.Telemetry
	// Webhooks serves the webhook routes; nil leaves them out.
	Webhooks *webhooks.Service
	// MaxBodyBytes caps request bodies (413 above); default 1 MiB.
	MaxBodyBytes int64
	// CORSOrigins may call the API from a browser page ("*": any); empty
	// means none, the default: CORS is off.
	CORSOrigins []string
	// AnalyticsCacheTTL is how long an analytics answer is reused; default
	// 30 s, negative: computed for every request.
	AnalyticsCacheTTL time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// New returns the handler serving every route under /tasker.
func New(cfg Config) (http.Handler, error) {
	if cfg.Health == nil {
		return nil, errors.New("api: Health is required")
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String(LogKeyComponent, "api"))
	origins, err := ParseCORSOrigins(cfg.CORSOrigins)
	if err != nil {
		return nil, fmt.Errorf("api: CORS origins: %w", err)
	}
	r := chi.NewRouter()
	// Set before any route so that mounted sub-routers inherit them.
	r.NotFound(NotFoundHandler())
	r.MethodNotAllowed(MethodNotAllowedHandler())
	if cfg.Telemetry != nil {
		r.Use(traceRequests(cfg.Telemetry)) // outermost: the span covers everything
	}
	r.Use(RequestID, observeRequests(cfg.Telemetry), AccessLog(logger), Recoverer(logger), CORS(origins),
		BodyLimit(cmp.Or(cfg.MaxBodyBytes, DefaultMaxBodyBytes)), Gzip(DefaultGzipMinBytes))

	h := &healthHandlers{checker: cfg.Health, logger: logger}
	r.Route(BasePath, func(r chi.Router) {
		r.Get("/health/live", h.live)
		r.Get("/health/ready", h.ready)
		r.Get("/health/status", h.status)
		if cfg.Registry != nil {
			th := &templateHandlers{registry: cfg.Registry, logger: logger}
			r.Post("/templates", th.register)
			r.Delete("/templates/{namespace}/{name}/{version}", th.remove)
			dh := &discoveryHandlers{registry: cfg.Registry, logger: logger}
			r.Get("/handlers", dh.namespaces)
			r.Get("/handlers/{namespace}", dh.namespace)
			r.Get("/handlers/{namespace}/{name}", dh.handler)
		}
		if cfg.Engine != nil {
			(&taskHandlers{engine: cfg.Engine, store: cfg.Store, logger: logger}).routes(r)
		}
		if cfg.Workers != nil {
			(&workerHandlers{workers: cfg.Workers, logger: logger}).routes(r)
		}
		if cfg.Store != nil {
			ttl := cmp.Or(cfg.AnalyticsCacheTTL, DefaultAnalyticsCacheTTL)
			ah := &analyticsHandlers{store: cfg.Store, logger: logger, now: time.Now, cache: newTTLCache(ttl, time.Now)}
			r.Get("/analytics/performance", ah.performance)
			r.Get("/analytics/bottlenecks", ah.bottlenecks)
		}
		newAPIDocs(logger).routes(r)
		r.Get("/events", (&eventHandlers{registry: cfg.Registry, logger: logger}).catalog)
		if cfg.Webhooks != nil {
			(&webhookHandlers{webhooks: cfg.Webhooks, logger: logger}).routes(r)
		}
		if cfg.Telemetry != nil {
			r.Get("/metrics", metricsHandler{cfg.Telemetry.MetricsHandler()}.serve)
		}
	})
	return r, nil
}
