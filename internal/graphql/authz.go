package graphql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/store"
)

// Every operation needs the permission of its REST twin, as the route
// table declares it (internal/api/router.go), and answers as the API's
// guard does: FORBIDDEN when the caller holds it nowhere, NOT_FOUND for
// an object in a namespace outside the caller's scope, so that ids from
// other namespaces cannot be probed. Refusals are audited, and so is every
// mutation, as on the REST routes.

// principal is the caller the API's guard authenticated.
func principal(ctx context.Context) *auth.Principal {
	if p := auth.FromContext(ctx); p != nil {
		return p
	}
	return auth.Anonymous()
}

// actor is who acts, recorded on the transitions a mutation causes.
func actor(ctx context.Context) string { return principal(ctx).Subject }

// auditNote is what one operation's audit event says of its object.
type auditNote struct {
	perm                  auth.Permission
	resourceID, namespace string
	// status replaces 200 for a success (createTask's 201).
	status int
}

// scope is the caller's scope for perm; FORBIDDEN (audited) when it is
// empty, or when global and not everywhere.
func (r *Resolver) scope(ctx context.Context, n *auditNote) (auth.Scope, error) {
	s := principal(ctx).Scope(n.perm)
	if s.Empty() {
		err := forbidden(fmt.Sprintf("this request needs the permission %s in some namespace", n.perm))
		r.audit(ctx, n, err)
		return s, err
	}
	return s, nil
}

// inScope checks the namespace of the object an operation addresses; an
// object outside the scope is NOT_FOUND (audited as denied).
func (r *Resolver) inScope(ctx context.Context, s auth.Scope, n *auditNote) error {
	if s.Contains(n.namespace) {
		return nil
	}
	err := notFound()
	r.audit(ctx, n, err)
	return err
}

// authorizeTask checks perm on task id, as the guard of a REST route
// with {task_id} does; n gets the task's namespace.
func (r *Resolver) authorizeTask(ctx context.Context, n *auditNote, id uuid.UUID) error {
	s, err := r.scope(ctx, n)
	if err != nil {
		return err
	}
	n.resourceID = id.String()
	ns, err := r.store.TaskNamespace(ctx, id)
	if err != nil {
		return translate(err) // NOT_FOUND for no such task, as the handler would answer
	}
	n.namespace = ns
	return r.inScope(ctx, s, n)
}

// authorizeStep checks perm on step id; it returns the step, which tells
// its task (REST's path names both).
func (r *Resolver) authorizeStep(ctx context.Context, n *auditNote, id uuid.UUID) (*store.Step, error) {
	s, err := r.scope(ctx, n)
	if err != nil {
		return nil, err
	}
	n.resourceID = id.String()
	steps, err := r.store.StepsByID(ctx, []uuid.UUID{id})
	if err != nil {
		return nil, translate(err)
	}
	if len(steps) == 0 {
		return nil, notFound()
	}
	ns, err := r.store.TaskNamespace(ctx, steps[0].TaskID)
	if err != nil {
		return nil, translate(err)
	}
	n.namespace = ns
	if err := r.inScope(ctx, s, n); err != nil {
		return nil, err
	}
	r.requestOf(ctx).loaders.see(steps[0].TaskID)
	return &steps[0], nil
}

// canShow says whether the caller may see a task's detail (its context
// and steps, which REST shows under tasker.task:show): a task reached
// through the list needs only tasker.task:index.
func canShow(ctx context.Context, t *store.Task) error {
	if principal(ctx).Can(auth.TaskShow, t.Namespace) {
		return nil
	}
	return forbidden(fmt.Sprintf("this field needs the permission %s in namespace %q", auth.TaskShow, t.Namespace))
}

// audit records one operation; status and outcome follow from err as the
// REST guard derives them from the response.
func (r *Resolver) audit(ctx context.Context, n *auditNote, err error) {
	status := statusOf(err)
	if err == nil && n.status != 0 {
		status = n.status
	}
	if errors.Is(err, context.Canceled) {
		status = 499
	}
	outcome := store.AuditFailed
	var e *Error
	switch {
	case err == nil:
		outcome = store.AuditSucceeded
	case errors.As(err, &e) && (e.Code == CodeForbidden || (e.Code == CodeNotFound && n.namespace != "")):
		outcome = store.AuditDenied
	}
	rq := r.requestOf(ctx)
	ev := store.AuditEvent{
		Actor:      principal(ctx).Subject,
		Action:     string(n.perm),
		Resource:   n.perm.Resource(),
		ResourceID: n.resourceID,
		Namespace:  n.namespace,
		Method:     rq.method,
		Path:       rq.path,
		Status:     status,
		Outcome:    outcome,
		RequestID:  api.RequestIDFromContext(ctx),
	}
	// The client may have gone; the record must not go with it.
	if err := r.store.RecordAudit(context.WithoutCancel(ctx), ev); err != nil {
		r.logger.LogAttrs(ctx, slog.LevelError, "audit event not recorded",
			slog.String(api.LogKeyRequestID, ev.RequestID), slog.String("action", ev.Action),
			slog.String(api.LogKeyError, err.Error()))
	}
}
