package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/store"
)

// Object says how a route finds the namespace of the object it addresses,
// for the object-level check: a caller whose permission is scoped to other
// namespaces gets the same 404 as for an object that does not exist, so ids
// from other namespaces cannot be probed.
type Object int

// The objects a route may address.
const (
	// ObjectNone: the route addresses no namespaced object (lists filter
	// by scope themselves; creations check the namespace in the body).
	ObjectNone Object = iota
	// ObjectTask: the {task_id} path parameter (also for its steps).
	ObjectTask
	// ObjectNamespace: the {namespace} path parameter.
	ObjectNamespace
	// ObjectRemoteStep: the {step_id} of a remote step; the scope is its
	// queue's name (remote:refunds → refunds).
	ObjectRemoteStep
)

// Access says who may call a route. Every route declares one in the route
// table (router.go); a test walks the router and fails on a route without.
type Access struct {
	// Permission is what the caller must hold. Required unless Public.
	Permission auth.Permission
	// Public routes are open to anyone: the probes, the API's documentation,
	// and status and metrics unless TASKER_HEALTH_STATUS_AUTH and
	// TASKER_METRICS_AUTH say otherwise.
	Public bool
	// Global routes need the permission in every namespace: their objects
	// (webhooks, analytics, workers, metrics) belong to no namespace.
	Global bool
	// Object locates the namespace of the addressed object.
	Object Object
	// Audit records every call in the audit trail; refused calls are
	// recorded on every route.
	Audit bool
	// PerOperation routes (the GraphQL endpoint) only authenticate here:
	// the handler checks, scopes and audits each operation of the request
	// with its REST twin's permission. A caller without a valid token gets
	// a 401 in GraphQL's error format.
	PerOperation bool
}

// guardedRoute is a route's handler behind its access check; the router
// registers nothing else, so no route can forget its check.
type guardedRoute struct {
	access Access
	guard  *guard
	next   http.HandlerFunc
}

// Access is the route's declared access (the route-table test reads it).
func (g *guardedRoute) Access() Access { return g.access }

// guard authenticates, authorizes and audits.
type guard struct {
	// verifier is nil when authentication is off: every caller is
	// auth.Anonymous() and may do everything.
	verifier *auth.Verifier
	// store finds objects' namespaces and records the audit trail; nil
	// leaves out both (only in tests that run without a database).
	store  *store.Store
	logger *slog.Logger
}

type scopeKey struct{}

// scopeOf is the scope of the route's permission for this request:
// everywhere, or the namespaces where the caller holds it. List handlers
// pass it to their query.
func scopeOf(r *http.Request) auth.Scope {
	s, ok := r.Context().Value(scopeKey{}).(auth.Scope)
	if !ok {
		return auth.FullScope()
	}
	return s
}

// principalOf is the request's caller; auth.Anonymous() outside a guarded route.
func principalOf(r *http.Request) *auth.Principal {
	if p := auth.FromContext(r.Context()); p != nil {
		return p
	}
	return auth.Anonymous()
}

// can says whether the caller holds perm in namespace ns.
func can(r *http.Request, perm auth.Permission, ns string) bool {
	return principalOf(r).Can(perm, ns)
}

// auditNote lets a handler name the object it created, which the path does
// not: the new task's id, the template's full name.
type auditNote struct {
	resourceID, namespace string
}

type auditNoteKey struct{}

// noteAudit tells the audit trail which object the request acted on.
func noteAudit(r *http.Request, resourceID, namespace string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.resourceID, n.namespace = resourceID, namespace
	}
}

func (g *guardedRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.access.Public {
		g.next(w, r)
		return
	}
	p, ok := g.guard.authenticate(w, r, g.access.PerOperation)
	if !ok {
		return
	}
	if g.access.PerOperation {
		g.next(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		return
	}
	perm := g.access.Permission
	scope := p.Scope(perm)
	note := &auditNote{}
	ctx := auth.WithPrincipal(r.Context(), p)
	ctx = context.WithValue(ctx, scopeKey{}, scope)
	ctx = context.WithValue(ctx, auditNoteKey{}, note)
	r = r.WithContext(ctx)
	if scope.Empty() || (g.access.Global && !scope.All()) {
		where := "in some namespace"
		if g.access.Global {
			where = "in every namespace (\"*:\" or no scope)"
		}
		WriteProblem(w, r, Forbidden(fmt.Sprintf("this request needs the permission %s %s", perm, where)))
		g.guard.audit(r, g.access, note, http.StatusForbidden, store.AuditDenied)
		return
	}
	// The object's namespace is looked up when the scope is partial (to
	// check it) or the call is audited (to record it); an unscoped read
	// costs nothing extra.
	if g.access.Object != ObjectNone && (!scope.All() || g.access.Audit) {
		ns, found, err := g.guard.objectScope(r, g.access.Object)
		if err != nil {
			WriteError(w, r, g.guard.logger, err)
			return
		}
		note.namespace = ns
		if found && !scope.Contains(ns) {
			WriteProblem(w, r, NotFound("no such task or step"))
			g.guard.audit(r, g.access, note, http.StatusNotFound, store.AuditDenied)
			return
		}
	}
	if !g.access.Audit {
		rec := recordResponse(w)
		g.next(rec, r)
		if rec.status == http.StatusForbidden {
			g.guard.audit(r, g.access, note, rec.status, store.AuditDenied)
		}
		return
	}
	rec := recordResponse(w)
	g.next(rec, r)
	status := cmpStatus(rec.status)
	outcome := store.AuditFailed
	switch {
	case status >= 200 && status < 300:
		outcome = store.AuditSucceeded
	case status == http.StatusForbidden:
		outcome = store.AuditDenied
	}
	g.guard.audit(r, g.access, note, status, outcome)
}

func cmpStatus(s int) int {
	if s == 0 {
		return http.StatusOK
	}
	return s
}

// authenticate returns the caller, or answers 401 (in GraphQL's format
// when asked) and returns false.
func (g *guard) authenticate(w http.ResponseWriter, r *http.Request, graphQL bool) (*auth.Principal, bool) {
	if g.verifier == nil {
		return auth.Anonymous(), true
	}
	token, err := bearerToken(r)
	var p *auth.Principal
	if err == nil {
		p, err = g.verifier.Verify(r.Context(), token)
	}
	if err == nil {
		return p, true
	}
	var te *auth.TokenError
	if !errors.As(err, &te) {
		te = &auth.TokenError{Code: auth.CodeInvalidToken, Reason: "verification failed", Err: err}
	}
	challenge := `Bearer realm="taskerd"`
	if te.Code != "" {
		challenge += `, error="` + te.Code + `"`
	}
	// The reason goes to the log only; the client learns nothing that
	// would help it forge a better token.
	g.logger.LogAttrs(r.Context(), slog.LevelInfo, "request not authenticated",
		slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())),
		slog.String(LogKeyMethod, r.Method),
		slog.String(LogKeyPath, r.URL.Path),
		slog.String(LogKeyError, te.Error()),
	)
	w.Header().Set("WWW-Authenticate", challenge)
	if graphQL {
		writeGraphQLUnauthenticated(w, r)
		return nil, false
	}
	WriteProblem(w, r, Unauthorized())
	return nil, false
}

// bearerToken reads Authorization: Bearer <token>.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", auth.ErrNoToken
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", &auth.TokenError{Code: auth.CodeInvalidRequest, Reason: "Authorization is not a Bearer token"}
	}
	return strings.TrimSpace(token), nil
}

// objectScope finds the namespace (or queue name) of the addressed object;
// found is false when there is no such object (or the id is malformed):
// the handler then answers as it always does.
func (g *guard) objectScope(r *http.Request, o Object) (ns string, found bool, err error) {
	switch o {
	case ObjectNamespace:
		return chi.URLParam(r, "namespace"), true, nil
	case ObjectTask:
		id, err := uuid.Parse(chi.URLParam(r, "task_id"))
		if err != nil || g.store == nil {
			return "", false, nil
		}
		ns, err := g.store.TaskNamespace(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return "", false, nil
		}
		return ns, err == nil, err
	case ObjectRemoteStep:
		id, err := uuid.Parse(chi.URLParam(r, "step_id"))
		if err != nil || g.store == nil {
			return "", false, nil
		}
		step, err := g.store.RemoteStep(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return queueScope(step.Queue), true, nil
	}
	return "", false, nil
}

// queueScope is the scope name of a remote queue: remote:refunds → refunds.
func queueScope(queue string) string {
	return strings.TrimPrefix(queue, "remote:")
}

// audit appends one event; a failure is logged, never turned into the
// request's answer, which has already been written.
func (g *guard) audit(r *http.Request, a Access, note *auditNote, status int, outcome string) {
	if g.store == nil {
		return
	}
	p := principalOf(r)
	e := store.AuditEvent{
		Actor:      p.Subject,
		Action:     string(a.Permission),
		Resource:   a.Permission.Resource(),
		ResourceID: note.resourceID,
		Namespace:  note.namespace,
		Method:     r.Method,
		Path:       r.URL.Path,
		Status:     status,
		Outcome:    outcome,
		RequestID:  RequestIDFromContext(r.Context()),
	}
	if e.ResourceID == "" {
		e.ResourceID = pathObject(r)
	}
	// The client may have gone; the record must not go with it.
	if err := g.store.RecordAudit(context.WithoutCancel(r.Context()), e); err != nil {
		g.logger.LogAttrs(r.Context(), slog.LevelError, "audit event not recorded",
			slog.String(LogKeyRequestID, e.RequestID),
			slog.String(LogKeyMethod, r.Method),
			slog.String(LogKeyPath, r.URL.Path),
			slog.String("actor", e.Actor),
			slog.String("action", e.Action),
			slog.String(LogKeyError, err.Error()),
		)
	}
}

// pathObject names the object a path addresses: the most specific id.
func pathObject(r *http.Request) string {
	for _, name := range []string{"step_id", "task_id", "webhook_id"} {
		if v := chi.URLParam(r, name); v != "" {
			return v
		}
	}
	if ns := chi.URLParam(r, "namespace"); ns != "" {
		name, version := chi.URLParam(r, "name"), chi.URLParam(r, "version")
		switch {
		case name == "":
			return ns
		case version == "":
			return ns + "." + name
		default:
			return ns + "." + name + "@" + version
		}
	}
	return ""
}
