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

	"github.com/taskerd/taskerd/internal/auth"
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
	// Verifier authenticates bearer tokens; nil means authentication is
	// off (TASKER_AUTH_MODE=none): every caller may do everything. With a
	// Verifier, Store is required.
	Verifier *auth.Verifier
	// HealthStatusAuth makes /health/status need tasker.health_status:index
	// (TASKER_HEALTH_STATUS_AUTH); otherwise it is open like live and ready.
	HealthStatusAuth bool
	// MetricsAuth makes /metrics need tasker.metrics:index (TASKER_METRICS_AUTH).
	MetricsAuth bool
	// GraphQL serves /graphql and its playground (internal/graphql); nil
	// leaves them out.
	GraphQL GraphQLService
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Route is one line of the route table: a method and pattern under
// /tasker, who may call it, and its handler.
type Route struct {
	Method, Pattern string
	Access          Access
	Handler         http.HandlerFunc
}

// routeTable is every route the API serves with the permission each needs,
// in one place. Parts whose service is not configured are left out.
//
// Permissions follow Tasker's (tasker.<resource>:<action>); DELETE of a
// task or step is a cancel, as in Tasker.
func routeTable(cfg Config, logger *slog.Logger) []Route {
	var rt []Route
	add := func(method, pattern string, a Access, h http.HandlerFunc) {
		rt = append(rt, Route{Method: method, Pattern: pattern, Access: a, Handler: h})
	}
	public := Access{Public: true}
	global := func(p auth.Permission) Access { return Access{Permission: p, Global: true} }
	task := func(p auth.Permission) Access { return Access{Permission: p, Object: ObjectTask} }
	taskAction := func(p auth.Permission) Access { return Access{Permission: p, Object: ObjectTask, Audit: true} }
	inNamespace := func(p auth.Permission) Access { return Access{Permission: p, Object: ObjectNamespace} }

	h := &healthHandlers{checker: cfg.Health, logger: logger}
	add(http.MethodGet, "/health/live", public, h.live)
	add(http.MethodGet, "/health/ready", public, h.ready)
	add(http.MethodGet, "/health/status", Access{Permission: auth.HealthStatusIndex, Global: true, Public: !cfg.HealthStatusAuth}, h.status)
	if cfg.Registry != nil {
		th := &templateHandlers{registry: cfg.Registry, logger: logger}
		// The namespace of a new template is in its body: register checks it.
		add(http.MethodPost, "/templates", Access{Permission: auth.TemplateCreate, Audit: true}, th.register)
		add(http.MethodDelete, "/templates/{namespace}/{name}/{version}",
			Access{Permission: auth.TemplateDestroy, Object: ObjectNamespace, Audit: true}, th.remove)
		dh := &discoveryHandlers{registry: cfg.Registry, store: cfg.Store, logger: logger}
		add(http.MethodGet, "/handlers", Access{Permission: auth.HandlerIndex}, dh.namespaces) // filtered by scope
		add(http.MethodGet, "/handlers/{namespace}", inNamespace(auth.HandlerIndex), dh.namespace)
		add(http.MethodGet, "/handlers/{namespace}/{name}", inNamespace(auth.HandlerShow), dh.handler)
		if cfg.Engine != nil {
			ph := &pauseHandlers{engine: cfg.Engine, registry: cfg.Registry, logger: logger}
			nsAction := func(p auth.Permission) Access { return Access{Permission: p, Object: ObjectNamespace, Audit: true} }
			add(http.MethodPost, "/handlers/{namespace}/pause", nsAction(auth.HandlerPause), ph.pauseNamespace)
			add(http.MethodPost, "/handlers/{namespace}/resume", nsAction(auth.HandlerResume), ph.resumeNamespace)
			add(http.MethodPost, "/handlers/{namespace}/{name}/pause", nsAction(auth.HandlerPause), ph.pauseTemplate)
			add(http.MethodPost, "/handlers/{namespace}/{name}/resume", nsAction(auth.HandlerResume), ph.resumeTemplate)
		}
	}
	if cfg.Engine != nil {
		th := &taskHandlers{engine: cfg.Engine, store: cfg.Store, registry: cfg.Registry, logger: logger}
		if cfg.Store != nil {
			add(http.MethodGet, "/tasks", Access{Permission: auth.TaskIndex}, th.list) // filtered by scope in SQL
			// Bulk actions select their tasks within the caller's scope in
			// SQL, as the list does (tasks_bulk.go).
			add(http.MethodPost, "/tasks/bulk/cancel", Access{Permission: auth.TaskCancel, Audit: true}, th.bulkCancel)
			add(http.MethodPost, "/tasks/bulk/retry", Access{Permission: auth.TaskRetry, Audit: true}, th.bulkRetry)
		}
		// The namespace of a new task is in its body: create checks it.
		add(http.MethodPost, "/tasks", Access{Permission: auth.TaskCreate, Audit: true}, th.create)
		add(http.MethodGet, "/tasks/{task_id}", task(auth.TaskShow), th.show)
		add(http.MethodDelete, "/tasks/{task_id}", taskAction(auth.TaskCancel), th.cancel)
		add(http.MethodPost, "/tasks/{task_id}/retry", taskAction(auth.TaskRetry), th.retry)
		add(http.MethodPost, "/tasks/{task_id}/resolve", taskAction(auth.TaskResolve), th.resolve)
		add(http.MethodGet, "/tasks/{task_id}/diagram", task(auth.TaskShow), th.diagram)
		add(http.MethodGet, "/tasks/{task_id}/workflow_steps", task(auth.StepIndex), th.steps)
		if cfg.Store != nil {
			add(http.MethodPatch, "/tasks/{task_id}", taskAction(auth.TaskUpdate), th.update)
			add(http.MethodGet, "/tasks/{task_id}/transitions", task(auth.TaskShow), th.transitions)
		}
		const step = "/tasks/{task_id}/workflow_steps/{step_id}"
		add(http.MethodGet, step, task(auth.StepShow), th.step)
		add(http.MethodDelete, step, taskAction(auth.StepCancel), th.stepDestroy)
		add(http.MethodPost, step+"/retry", taskAction(auth.StepRetry), th.stepRetry)
		add(http.MethodPost, step+"/resolve", taskAction(auth.StepResolve), th.stepResolve)
		add(http.MethodPost, step+"/cancel", taskAction(auth.StepCancel), th.stepCancel)
		if cfg.Store != nil {
			add(http.MethodPatch, step, taskAction(auth.StepUpdate), th.updateStep)
		}
	}
	if cfg.Workers != nil {
		wh := &workerHandlers{workers: cfg.Workers, logger: logger}
		// Worker protocol calls are not audited: steps' transitions already
		// name the worker, and a row per heartbeat would put a write on the
		// hot path. Refused calls are audited like any other.
		// claim checks each queue of its body against the scope.
		add(http.MethodPost, "/workers/claim", Access{Permission: auth.WorkerClaim}, wh.claim)
		add(http.MethodGet, "/workers", global(auth.WorkerIndex), wh.list)
		remoteStep := Access{Permission: auth.WorkerClaim, Object: ObjectRemoteStep}
		add(http.MethodPost, "/steps/{step_id}/heartbeat", remoteStep, wh.heartbeat)
		add(http.MethodPost, "/steps/{step_id}/complete", remoteStep, wh.complete)
		add(http.MethodPost, "/steps/{step_id}/fail", remoteStep, wh.fail)
	}
	if cfg.Store != nil {
		ttl := cmp.Or(cfg.AnalyticsCacheTTL, DefaultAnalyticsCacheTTL)
		ah := &analyticsHandlers{store: cfg.Store, logger: logger, now: time.Now, cache: newTTLCache(ttl, time.Now)}
		add(http.MethodGet, "/analytics/performance", global(auth.AnalyticsIndex), ah.performance)
		add(http.MethodGet, "/analytics/bottlenecks", global(auth.AnalyticsIndex), ah.bottlenecks)
		add(http.MethodGet, "/audit", Access{Permission: auth.AuditIndex}, (&auditHandlers{store: cfg.Store, logger: logger}).list) // filtered by scope in SQL
	}
	docs := newAPIDocs(logger)
	// The documentation is open: the spec says what exists, never what is in it.
	add(http.MethodGet, "/api-docs", public, docs.redirect)
	add(http.MethodGet, "/api-docs/*", public, docs.serve)
	add(http.MethodGet, "/events", global(auth.EventIndex), (&eventHandlers{registry: cfg.Registry, logger: logger}).catalog)
	if cfg.Webhooks != nil {
		wh := &webhookHandlers{webhooks: cfg.Webhooks, logger: logger}
		add(http.MethodPost, "/webhooks", Access{Permission: auth.WebhookCreate, Global: true, Audit: true}, wh.create)
		add(http.MethodGet, "/webhooks", global(auth.WebhookIndex), wh.list)
		add(http.MethodGet, "/webhooks/{webhook_id}", global(auth.WebhookShow), wh.show)
		add(http.MethodDelete, "/webhooks/{webhook_id}", Access{Permission: auth.WebhookDestroy, Global: true, Audit: true}, wh.remove)
		add(http.MethodGet, "/webhooks/{webhook_id}/deliveries", global(auth.WebhookShow), wh.deliveries)
	}
	if g := cfg.GraphQL; g != nil { // graphql.go: each operation checks its REST twin's permission
		add(http.MethodPost, "/graphql", Access{PerOperation: true}, graphqlQuery(g))
		add(http.MethodGet, "/graphql", public, graphqlPlayground(g))
		add(http.MethodGet, "/graphql/{file}", public, g.PlaygroundAsset)
	}
	if cfg.Telemetry != nil {
		add(http.MethodGet, "/metrics", Access{Permission: auth.MetricsIndex, Global: true, Public: !cfg.MetricsAuth},
			metricsHandler{cfg.Telemetry.MetricsHandler()}.serve)
	}
	return rt
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

	if cfg.Verifier != nil && cfg.Store == nil {
		return nil, errors.New("api: authentication needs Store, to check objects' namespaces and record the audit trail")
	}
	g := &guard{verifier: cfg.Verifier, store: cfg.Store, logger: logger}
	r.Route(BasePath, func(r chi.Router) {
		for _, rt := range routeTable(cfg, logger) {
			r.Method(rt.Method, rt.Pattern, &guardedRoute{access: rt.Access, guard: g, next: rt.Handler})
		}
	})
	return r, nil
}
