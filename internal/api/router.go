// Package api speaks HTTP: it routes /tasker requests to the services of the
// other packages, decodes and validates input, and writes JSON or
// application/problem+json. It holds no SQL and no business rules.
package api

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/registry"
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
	// MaxBodyBytes caps request bodies (413 above); default 1 MiB.
	MaxBodyBytes int64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// New returns the handler serving every route under /tasker.
func New(cfg Config) (http.Handler, error) {
	if cfg.Health == nil {
		return nil, errors.New("api: Health is required")
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String(LogKeyComponent, "api"))
	r := chi.NewRouter()
	// Set before any route so that mounted sub-routers inherit them.
	r.NotFound(NotFoundHandler())
	r.MethodNotAllowed(MethodNotAllowedHandler())
	r.Use(RequestID, AccessLog(logger), Recoverer(logger), BodyLimit(cmp.Or(cfg.MaxBodyBytes, DefaultMaxBodyBytes)))

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
			(&taskHandlers{engine: cfg.Engine, logger: logger}).routes(r)
		}
	})
	return r, nil
}
