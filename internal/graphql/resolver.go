// Package graphql serves taskerd's GraphQL API (POST /tasker/graphql) and
// its playground (GET /tasker/graphql). It is schema-first with gqlgen:
// schema.graphqls is the contract, gen/ and model/ are generated from it
// (`make graphql`), and the resolvers here call the same engine, store and
// registry functions as the REST handlers, with the same permissions,
// namespace scoping and audit trail. It holds no SQL and no business rules.
package graphql

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/graphql/gen"
	"github.com/taskerd/taskerd/internal/graphql/model"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// Defaults of the query limits.
const (
	// DefaultMaxDepth is the deepest selection a query may nest
	// (introspection aside). tasks → edges → node → steps → dependsOn →
	// name is 6.
	DefaultMaxDepth = 10
	// DefaultMaxComplexity bounds a query's estimated cost: one per field,
	// a connection's fields times its page size, a task's steps times
	// ten. A page of 100 tasks with their steps' names, levels and
	// dependencies costs about 10,000.
	DefaultMaxComplexity = 20000
	// DefaultMaxPage is the largest page of tasks (REST's limit too).
	DefaultMaxPage = 100
)

// Config configures the GraphQL handler.
type Config struct {
	// Engine creates tasks and acts on tasks and steps; required.
	Engine *engine.Engine
	// Store serves lists, batched reads, edits, namespace lookups and the
	// audit trail; required.
	Store *store.Store
	// Registry serves handlers and namespaces and redacts sensitive
	// context values; required.
	Registry *registry.Registry
	// MaxDepth caps a query's nesting; default DefaultMaxDepth.
	MaxDepth int
	// MaxComplexity caps a query's estimated cost; default DefaultMaxComplexity.
	MaxComplexity int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves the GraphQL endpoint and the playground.
type Handler struct {
	srv        *handler.Server
	store      *store.Store
	logger     *slog.Logger
	playground *playground
}

// Resolver is the root of gqlgen's resolvers: the services they call.
type Resolver struct {
	engine   *engine.Engine
	store    *store.Store
	registry *registry.Registry
	logger   *slog.Logger
}

// New returns the handler; it fails when a required service is missing.
func New(cfg Config) (*Handler, error) {
	if cfg.Engine == nil || cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("graphql: Engine, Store and Registry are required")
	}
	if cfg.MaxDepth < 0 || cfg.MaxComplexity < 0 {
		return nil, errors.New("graphql: MaxDepth and MaxComplexity must not be negative")
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String(api.LogKeyComponent, "graphql"))
	r := &Resolver{engine: cfg.Engine, store: cfg.Store, registry: cfg.Registry, logger: logger}
	gcfg := gen.Config{Resolvers: r}
	setComplexity(&gcfg.Complexity)
	srv := handler.New(gen.NewExecutableSchema(gcfg))
	// POST only: GET /graphql is the playground, and queries in URLs would
	// land in access logs.
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(depthLimit{max: cmp.Or(cfg.MaxDepth, DefaultMaxDepth)})
	srv.Use(extension.FixedComplexityLimit(cmp.Or(cfg.MaxComplexity, DefaultMaxComplexity)))
	srv.SetErrorPresenter(presentError(logger))
	srv.SetRecoverFunc(func(ctx context.Context, v any) error {
		logger.LogAttrs(ctx, slog.LevelError, "resolver panicked",
			slog.String(api.LogKeyRequestID, api.RequestIDFromContext(ctx)),
			slog.String(api.LogKeyPanic, fmt.Sprint(v)), slog.String(api.LogKeyStack, string(debug.Stack())))
		return errInternal
	})
	pg, err := newPlayground()
	if err != nil {
		return nil, fmt.Errorf("graphql: playground: %w", err)
	}
	return &Handler{srv: srv, store: cfg.Store, logger: logger, playground: pg}, nil
}

// ServeHTTP answers POST /tasker/graphql. The API's guard has
// authenticated the caller; each field checks its own permission.
//
// A request that is not a GraphQL request at all (not JSON, too large,
// unknown fields, no query) is refused as every route refuses a malformed
// body, with a problem document; what GraphQL itself refuses (a query that
// does not parse or fit the schema) comes in GraphQL's format.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var env envelope
	if err := api.DecodeJSON(r, &env); err != nil {
		api.WriteError(w, r, h.logger, err)
		return
	}
	if strings.TrimSpace(env.Query) == "" {
		api.WriteProblem(w, r, api.ValidationFailed("the GraphQL request has no query",
			api.FieldError{Pointer: "/query", Detail: "query is required"}))
		return
	}
	body, err := json.Marshal(env)
	if err != nil {
		api.WriteError(w, r, h.logger, err)
		return
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	rq := &request{method: r.Method, path: r.URL.Path, loaders: newLoaders(h.store)}
	h.srv.ServeHTTP(w, r2.WithContext(context.WithValue(r.Context(), requestKey{}, rq)))
}

// envelope is the body of a GraphQL request over HTTP POST.
type envelope struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName,omitempty"`
	Variables     json.RawMessage `json:"variables,omitempty"`
	Extensions    json.RawMessage `json:"extensions,omitempty"`
}

// request is what one HTTP request's resolvers share: its batching
// loaders, and what the audit trail records of it.
type request struct {
	method, path string
	loaders      *loaders
}

type requestKey struct{}

// requestOf is the request state; a fresh one outside ServeHTTP (tests).
func (r *Resolver) requestOf(ctx context.Context) *request {
	if rq, ok := ctx.Value(requestKey{}).(*request); ok {
		return rq
	}
	return &request{method: http.MethodPost, path: api.BasePath + "/graphql", loaders: newLoaders(r.store)}
}

// setComplexity makes lists cost what they fetch: a connection its page
// size, a task's steps about ten, a step's parents about three.
func setComplexity(c *gen.ComplexityRoot) {
	c.Query.Tasks = func(child int, _ *model.TaskFilter, first *int, _ *string, _ *model.TaskSortKey, _ *model.SortOrder) int {
		n := DefaultMaxPage
		if first != nil && *first > 0 && *first < n {
			n = *first
		}
		return 1 + n*child
	}
	c.Task.Steps = func(child int) int { return 1 + 10*child }
	c.Step.DependsOn = func(child int) int { return 1 + 3*child }
}
