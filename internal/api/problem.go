package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// Media types written by this package.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeProblem = "application/problem+json"
)

// problemTypePrefix namespaces problem types; a URN rather than a URL because
// nothing is served at it and clients should compare it, not dereference it.
const problemTypePrefix = "urn:taskerd:problem:"

// UnavailableRetryAfter is the Retry-After header, in seconds, of every
// unavailable problem (503): long enough that clients do not hammer a
// database coming back, short enough that a connection cut or a restart
// costs them a second or two.
const UnavailableRetryAfter = "1"

// statusClientClosedRequest is nginx's non-standard status for a client that
// went away before the answer; it only reaches the access log, never a client.
const statusClientClosedRequest = 499

// Problem is an RFC 9457 problem document, the body of every error response.
// It is also an error, so code below the handlers can return one and let
// WriteError answer with it unchanged.
type Problem struct {
	// Type identifies the kind of problem: "urn:taskerd:problem:<slug>".
	Type string `json:"type" example:"urn:taskerd:problem:validation-failed"`
	// Title is a short summary that is the same for every problem of a Type.
	Title string `json:"title" example:"Validation Failed"`
	// Status is the HTTP status code of the response.
	Status int `json:"status" example:"422"`
	// Detail explains this occurrence in words a person can act on.
	Detail string `json:"detail,omitempty" example:"the task request is not valid"`
	// Instance is the request path; WriteProblem fills it when empty.
	Instance string `json:"instance,omitempty" example:"/tasker/tasks"`
	// RequestID correlates the response with server logs; WriteProblem fills it when empty.
	RequestID string `json:"request_id,omitempty" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a99"`
	// Errors lists the offending fields of the request body, one per field.
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request body, or one invalid
// query parameter.
type FieldError struct {
	// Pointer is an RFC 6901 JSON pointer into the request body, e.g. "/step_templates/3/name".
	Pointer string `json:"pointer,omitempty" example:"/context/order_id"`
	// Parameter names the offending query parameter, for errors outside the body.
	Parameter string `json:"parameter,omitempty" example:"limit"`
	// Detail says what is wrong with the field.
	Detail string `json:"detail" example:"context/order_id: expected string, got number"`
}

// Error returns the status, title and detail, so a Problem logged as an error reads well.
func (p *Problem) Error() string {
	if p.Detail == "" {
		return fmt.Sprintf("%d %s", p.Status, p.Title)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}

func newProblem(status int, slug, title, detail string, errs []FieldError) *Problem {
	return &Problem{
		Type:   problemTypePrefix + slug,
		Title:  title,
		Status: status,
		Detail: detail,
		Errors: errs,
	}
}

// BadRequest reports a request the server cannot parse: malformed JSON, an
// empty body, a query parameter of the wrong shape.
func BadRequest(detail string, errs ...FieldError) *Problem {
	return newProblem(http.StatusBadRequest, "bad-request", "Bad Request", detail, errs)
}

// ValidationFailed reports a well-formed request whose content is invalid,
// with one FieldError per offending field.
func ValidationFailed(detail string, errs ...FieldError) *Problem {
	return newProblem(http.StatusUnprocessableEntity, "validation-failed", "Validation Failed", detail, errs)
}

// Unauthorized reports a request without valid credentials; the caller
// must also set WWW-Authenticate. The detail never says what was wrong with
// a token: that would help forge one (the log has it).
func Unauthorized() *Problem {
	return newProblem(http.StatusUnauthorized, "unauthorized", "Unauthorized",
		"a valid bearer token is required (Authorization: Bearer <JWT>)", nil)
}

// Forbidden reports an authenticated caller without the permission the
// request needs.
func Forbidden(detail string) *Problem {
	return newProblem(http.StatusForbidden, "forbidden", "Forbidden", detail, nil)
}

// NotFound reports that the addressed resource does not exist.
func NotFound(detail string) *Problem {
	return newProblem(http.StatusNotFound, "not-found", "Not Found", detail, nil)
}

// MethodNotAllowed reports a method the resource does not support; the
// caller must also set the Allow header.
func MethodNotAllowed(detail string) *Problem {
	return newProblem(http.StatusMethodNotAllowed, "method-not-allowed", "Method Not Allowed", detail, nil)
}

// UnsupportedMediaType reports a request body in a media type the server does not read.
func UnsupportedMediaType(detail string) *Problem {
	return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported Media Type", detail, nil)
}

// PayloadTooLarge reports a request body over the configured limit.
func PayloadTooLarge(detail string) *Problem {
	return newProblem(http.StatusRequestEntityTooLarge, "payload-too-large", "Payload Too Large", detail, nil)
}

// Conflict reports a request that contradicts the current state of a resource.
func Conflict(detail string) *Problem {
	return newProblem(http.StatusConflict, "conflict", "Conflict", detail, nil)
}

// Unavailable reports a temporary failure the client may retry; WriteProblem
// answers it with Retry-After: UnavailableRetryAfter.
func Unavailable(detail string) *Problem {
	return newProblem(http.StatusServiceUnavailable, "unavailable", "Service Unavailable", detail, nil)
}

// Internal reports a server fault. Its detail is deliberately generic: the
// cause goes to the log, keyed by request id, never to the client.
func Internal() *Problem {
	return newProblem(http.StatusInternalServerError, "internal", "Internal Server Error",
		"the server failed to handle the request; quote the request_id when reporting it", nil)
}

// WriteProblem writes p as application/problem+json with p.Status, filling
// Instance with the request path and RequestID from the context when empty.
// p itself is not modified, so a Problem may be shared.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p == nil {
		p = Internal()
	}
	out := *p
	if out.Status == 0 {
		out.Status = http.StatusInternalServerError
	}
	if out.Type == "" {
		// RFC 9457 §4.2.1: a problem with no more specific type is about:blank.
		out.Type = "about:blank"
	}
	if out.Instance == "" {
		out.Instance = r.URL.Path
	}
	if out.RequestID == "" {
		out.RequestID = RequestIDFromContext(r.Context())
	}
	if out.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// RFC 9110 §10.2.3: tells clients (and the http kind of another
		// taskerd) when to come back instead of leaving them to guess.
		w.Header().Set("Retry-After", UnavailableRetryAfter)
	}
	writeBody(w, ContentTypeProblem, out.Status, &out)
}

// WriteJSON writes v as application/json with the given status. HTML is not
// escaped: the API serves JSON to programs, and "<" in a workflow name should
// read as "<", not "\u003c".
func WriteJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, ContentTypeJSON, status, v)
}

// writeBody encodes before writing anything, so a value encoding/json rejects
// (a channel, a NaN) becomes a 500 instead of a 200 with half a body.
func writeBody(w http.ResponseWriter, contentType string, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// No request here to log with; the default logger still records the bug.
		slog.Default().LogAttrs(context.Background(), slog.LevelError, "encode response body",
			slog.String(LogKeyComponent, componentName), slog.String(LogKeyError, err.Error()))
		buf.Reset()
		p := Internal()
		_ = json.NewEncoder(&buf).Encode(p) // a Problem always encodes
		contentType, status = ContentTypeProblem, p.Status
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	// The body may echo request input (paths, field names) unescaped; forbid
	// browsers from sniffing it into HTML.
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // a failed write means the client is gone; nothing to do
}

// NotFoundHandler answers routes chi cannot match with a not-found problem;
// install it with chi's Router.NotFound.
func NotFoundHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, NotFound(fmt.Sprintf("no resource at %s", r.URL.Path)))
	}
}

// MethodNotAllowedHandler answers a known path requested with an unsupported
// method with a method-not-allowed problem and an Allow header; install it
// with chi's Router.MethodNotAllowed.
//
// chi v5 sets Allow only in its own default handler and keeps the allowed
// methods in unexported fields, so this handler recomputes them; see
// allowedMethods.
func MethodNotAllowedHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		allowed := allowedMethods(r)
		// RFC 9110 §15.5.6: a 405 must carry Allow, even an empty one.
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		detail := fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)
		if len(allowed) > 0 {
			detail += "; allowed: " + strings.Join(allowed, ", ")
		}
		WriteProblem(w, r, MethodNotAllowed(detail))
	}
}

// allowedMethods returns the methods the root router would route r's path to.
//
// chi's own Routes.Find cannot answer this: on the bare path of a mounted
// sub-router ("/tasker/workflows" for r.Route("/workflows", ...)) it matches
// Mount's stub for every method. So the route tree is mirrored into a router
// of no-op endpoints and the path is routed through it once per method,
// which gives chi's real routing semantics without running any handler or
// middleware.
func allowedMethods(r *http.Request) []string {
	rctx := chi.RouteContext(r.Context())
	if rctx == nil || rctx.Routes == nil {
		return nil
	}
	mirror := mirrorOf(rctx.Routes)
	var allowed []string
	for _, m := range mirror.methods {
		var hit bool
		// A fresh context starts a fresh chi routing context instead of
		// continuing the one of the request being answered.
		ctx := context.WithValue(context.Background(), probeHitKey{}, &hit)
		probe := (&http.Request{Method: m, URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath}, Header: http.Header{}}).WithContext(ctx)
		mirror.mux.ServeHTTP(discardResponse{}, probe)
		if hit {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// routeMirror is a root router's route tree with probeEndpoint at every route.
type routeMirror struct {
	mux     *chi.Mux
	methods []string // every method some route takes, in Allow order
}

// routeMirrors caches one mirror per root router: building one costs far
// more than a request, and an endless stream of 405s must stay cheap. Routes
// are all registered before serving starts, so a mirror does not go stale.
var routeMirrors sync.Map // *chi.Mux → *routeMirror

func mirrorOf(root chi.Routes) *routeMirror {
	key, cacheable := root.(*chi.Mux)
	if cacheable {
		if m, ok := routeMirrors.Load(key); ok {
			return m.(*routeMirror)
		}
	}
	set := map[string]bool{}
	m := &routeMirror{mux: mirrorRoutes(root, set)}
	for method := range set {
		m.methods = append(m.methods, method)
	}
	slices.SortFunc(m.methods, func(a, b string) int {
		return cmp.Or(cmp.Compare(rankMethod(a), rankMethod(b)), strings.Compare(a, b))
	})
	if cacheable {
		actual, _ := routeMirrors.LoadOrStore(key, m)
		return actual.(*routeMirror)
	}
	return m
}

// methodOrder lists methods in the order Allow names them; others follow alphabetically.
var methodOrder = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, "QUERY", http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

func rankMethod(m string) int {
	if i := slices.Index(methodOrder, m); i >= 0 {
		return i
	}
	return len(methodOrder)
}

type probeHitKey struct{}

// probeEndpoint marks the probe request that reached it as routed.
func probeEndpoint(_ http.ResponseWriter, r *http.Request) {
	if hit, ok := r.Context().Value(probeHitKey{}).(*bool); ok {
		*hit = true
	}
}

// mirrorRoutes copies the shape of routes (sub-routers and per-method
// patterns) onto a new router of probeEndpoints, recording the methods seen.
func mirrorRoutes(routes chi.Routes, methods map[string]bool) *chi.Mux {
	mux := chi.NewRouter()
	noop := func(http.ResponseWriter, *http.Request) {}
	mux.NotFound(noop)
	mux.MethodNotAllowed(noop)
	for _, rt := range routes.Routes() {
		if rt.SubRoutes != nil {
			// Sub-routers are listed as "<mount>/*"; mounting at "<mount>"
			// recreates the stubs that route "<mount>" and "<mount>/" to "/".
			mux.Mount(cmp.Or(strings.TrimSuffix(rt.Pattern, "/*"), "/"), mirrorRoutes(rt.SubRoutes, methods))
			continue
		}
		for m := range rt.Handlers {
			if m == "*" { // Handle() routes also list every method by name
				continue
			}
			methods[m] = true
			mux.Method(m, rt.Pattern, http.HandlerFunc(probeEndpoint))
		}
	}
	return mux
}

// discardResponse absorbs whatever the mirror router writes.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}

// WriteError answers err with a problem document; it is the one place that
// maps errors to HTTP statuses. Domain sentinels belong in its switch.
//
//   - a *Problem anywhere in err's chain is written as is;
//   - a *registry.ValidationError becomes 422 listing every error;
//   - registry.ErrNotFound is 404, ErrConflict and ErrInUse 409;
//   - store.ErrNotMigrated and ErrUnavailable are 503;
//   - context.DeadlineExceeded becomes 503 "request timed out";
//   - context.Canceled because the client left gets a bare 499 for the access
//     log; canceled for any other reason (shutdown) becomes 503;
//   - anything else is logged at ERROR with the request id and answered with
//     Internal(), whose body never contains the cause.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	var p *Problem
	var invalid *registry.ValidationError
	switch {
	case errors.As(err, &p):
		WriteProblem(w, r, p)
	case errors.As(err, &invalid):
		errs := make([]FieldError, len(invalid.Errors))
		for i, fe := range invalid.Errors {
			errs[i] = FieldError{Pointer: fe.Pointer, Detail: fe.Message}
		}
		WriteProblem(w, r, ValidationFailed(fmt.Sprintf("the document has %d error(s), each listed with a JSON pointer into it", len(errs)), errs...))
	case errors.Is(err, registry.ErrNotFound):
		WriteProblem(w, r, NotFound(err.Error()))
	case errors.Is(err, registry.ErrConflict), errors.Is(err, registry.ErrInUse):
		WriteProblem(w, r, Conflict(err.Error()))
	case errors.Is(err, store.ErrNotMigrated):
		WriteProblem(w, r, Unavailable("the database schema is not migrated: run `taskerd migrate up`"))
	case errors.Is(err, store.ErrUnavailable):
		WriteProblem(w, r, Unavailable("the database is unavailable; retry later"))
	case errors.Is(err, context.DeadlineExceeded):
		WriteProblem(w, r, Unavailable("request timed out"))
	case errors.Is(err, context.Canceled):
		if r.Context().Err() != nil {
			// The client is gone: nobody reads a body, and a canceled request is not a server error.
			w.WriteHeader(statusClientClosedRequest)
			return
		}
		WriteProblem(w, r, Unavailable("request canceled; retry"))
	default:
		cause := "<nil>"
		if err != nil {
			cause = err.Error()
		}
		logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())),
			slog.String(LogKeyMethod, r.Method),
			slog.String(LogKeyPath, r.URL.Path),
			slog.String(LogKeyError, cause),
		)
		WriteProblem(w, r, Internal())
	}
}
