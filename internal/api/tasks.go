package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// CorrelationHeader carries the correlation id (Tasker's X-Correlation-ID).
const CorrelationHeader = "X-Correlation-ID"

// taskStates are the states a task or step can be in.
var taskStates = []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"}

type taskHandlers struct {
	engine *engine.Engine
	// registry finds a task's template schema, to redact its sensitive
	// context values; nil shows the context as it is.
	registry *registry.Registry
	// store serves the reads and edits the engine has no business with:
	// lists, analysis, annotations. nil leaves those routes out.
	store  *store.Store
	logger *slog.Logger
}

// CreateTaskRequest is the body of POST /tasker/tasks.
type CreateTaskRequest struct {
	// Namespace of the template; default "default".
	Namespace string `json:"namespace" example:"shop"`
	// Name of the template.
	Name string `json:"name" example:"checkout"`
	// Version of the template; default the highest registered.
	Version string `json:"version,omitempty" example:"1.0.0"`
	// Context is the task's input, checked against the template's schema.
	Context json.RawMessage `json:"context,omitempty" swaggertype:"object"`
	// Initiator says who asked for the task.
	Initiator string `json:"initiator,omitempty" example:"web"`
	// SourceSystem says which system asked.
	SourceSystem string `json:"source_system,omitempty" example:"storefront"`
	// Reason says why.
	Reason string `json:"reason,omitempty" example:"order placed"`
	// Tags label the task for filtering.
	Tags []string `json:"tags,omitempty" example:"vip,web"`
	// Priority orders claims: higher first, from -1000 to 1000.
	Priority int `json:"priority,omitempty" example:"0" minimum:"-1000" maximum:"1000"`
	// RunAt delays the task's first steps until then.
	RunAt *time.Time `json:"run_at,omitempty" example:"2025-01-31T08:00:00Z"`
	// BypassSteps are skippable steps to resolve without running them.
	BypassSteps []string `json:"bypass_steps,omitempty" example:"gift_wrap"`
	// IdempotencyKey makes a retried request return the first task (also
	// the Idempotency-Key header).
	IdempotencyKey string `json:"idempotency_key,omitempty" example:"order-42" maxLength:"255"`
}

// create makes a task from a registered template. 201 with the task; 200
// with the existing task when the idempotency key was used by the same
// request; 409 when by a different one; 422 when the template is unknown or
// the context does not match its schema.
//
//	@Summary		Create a task
//	@Description	Creates a task from a registered template and schedules its root steps. An idempotency key (header or body) makes a retried request return the first task with 200; the same key with a different request is a 409. Permission: tasker.task:create in the namespace of the body (403 otherwise).
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			Idempotency-Key		header		string				false	"Idempotency key (or idempotency_key in the body)"
//	@Param			X-Correlation-ID	header		string				false	"Correlation id carried by the task and its events; made when absent"
//	@Param			task				body		CreateTaskRequest	true	"The task to create"
//	@Success		201					{object}	TaskResponse		"Created"
//	@Success		200					{object}	TaskResponse		"The task this idempotency key created before"
//	@Header			201					{string}	Location			"/tasker/tasks/{task_id}"
//	@Failure		400					{object}	Problem				"Malformed JSON"
//	@Failure		409					{object}	Problem				"Idempotency key used for a different request"
//	@Failure		413					{object}	Problem				"Body too large"
//	@Failure		415					{object}	Problem				"Not JSON"
//	@Failure		422					{object}	Problem				"Unknown template, invalid context or fields"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:create"
//	@Router			/tasks [post]
func (h *taskHandlers) create(w http.ResponseWriter, r *http.Request) {
	var body CreateTaskRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	key := body.IdempotencyKey
	var headerProblems []FieldError
	if hk := r.Header.Get("Idempotency-Key"); hk != "" {
		if key != "" && key != hk {
			headerProblems = append(headerProblems, FieldError{Pointer: "/idempotency_key", Detail: "differs from the Idempotency-Key header"})
		}
		key = hk
	}
	req := engine.CreateTaskRequest{
		Namespace: body.Namespace, Name: body.Name, Version: body.Version, Context: body.Context,
		Initiator: body.Initiator, SourceSystem: body.SourceSystem, Reason: body.Reason, Tags: body.Tags,
		Priority: body.Priority, RunAt: body.RunAt, BypassSteps: body.BypassSteps, IdempotencyKey: key,
		Traceparent: r.Header.Get("traceparent"),
	}
	// The rules are the engine's, shared with GraphQL's createTask.
	problems := fieldErrors(engine.PrepareCreateTask(&req))
	if problems = append(problems, headerProblems...); len(problems) > 0 {
		WriteProblem(w, r, ValidationFailed("the task request is not valid", problems...))
		return
	}
	body.Namespace = req.Namespace
	// The namespace is the caller's own choice here, so refusing it leaks
	// nothing: 403, not the 404 of an object addressed by id.
	if !can(r, auth.TaskCreate, body.Namespace) {
		noteAudit(r, "", body.Namespace)
		WriteProblem(w, r, Forbidden(fmt.Sprintf("this request needs the permission %s in namespace %q", auth.TaskCreate, body.Namespace)))
		return
	}
	correlation := r.Header.Get(CorrelationHeader)
	if correlation == "" || len(correlation) > 128 {
		correlation = uuid.Must(uuid.NewV7()).String()
	}
	w.Header().Set(CorrelationHeader, correlation)
	req.CorrelationID = correlation
	view, created, err := h.engine.CreateTask(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	noteAudit(r, view.Task.TaskID.String(), view.Task.Namespace)
	w.Header().Set("Location", BasePath+"/tasks/"+view.Task.TaskID.String())
	out := taskJSON(view)
	if err := h.redactContext(r, view, &out); err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, status, out)
}

// fieldErrors turns the engine's field errors into the problem's.
func fieldErrors(in []engine.FieldError) []FieldError {
	var out []FieldError
	for _, e := range in {
		out = append(out, FieldError{Pointer: e.Pointer, Detail: e.Message})
	}
	return out
}

// taskIncludes is what a task view carries besides the task and its steps.
type taskIncludes struct {
	transitions, dependencies bool
}

// show answers a task with its steps, and transitions and dependency
// analysis when asked.
//
//	@Summary		Show a task
//	@Description	A task with its context and workflow steps. include=transitions adds every state change of the task and its steps; include=dependencies (or Tasker's include_dependencies=true) adds each step's readiness and blocked reason, the execution status and recommended action, the dependency levels and the critical path, all from the SQL analysis functions. include=steps is accepted for Tasker's clients: steps are always included. Permission: tasker.task:show.
//	@Tags			tasks
//	@Produce		json
//	@Param			task_id					path		string		true	"Task id"	Format(uuid)
//	@Param			include					query		[]string	false	"What to add"	collectionFormat(csv)	Enums(steps, dependencies, transitions)
//	@Param			include_dependencies	query		bool		false	"Tasker's spelling of include=dependencies"
//	@Success		200						{object}	TaskResponse
//	@Failure		400						{object}	Problem	"Malformed task id or query parameter"
//	@Failure		404						{object}	Problem	"No such task"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:show"
//	@Router			/tasks/{task_id} [get]
func (h *taskHandlers) show(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	q := newQueryParams(r)
	q.Unknown("include", "include_dependencies")
	includes := q.EnumList("include", "steps", "dependencies", "transitions")
	inc := taskIncludes{
		transitions:  slices.Contains(includes, "transitions"),
		dependencies: slices.Contains(includes, "dependencies") || q.Bool("include_dependencies"),
	}
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	h.render(w, r, id, inc)
}

// render answers the task as show does.
func (h *taskHandlers) render(w http.ResponseWriter, r *http.Request, id uuid.UUID, inc taskIncludes) {
	view, err := h.engine.GetTask(r.Context(), id, inc.transitions)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := taskJSON(view)
	if err := h.redactContext(r, view, &out); err != nil { // sensitive.go
		h.fail(w, r, err)
		return
	}
	if err := h.addLinks(r, &out); err != nil { // subtasks.go
		h.fail(w, r, err)
		return
	}
	if inc.dependencies {
		if h.store == nil {
			WriteProblem(w, r, Unavailable("dependency analysis is not configured on this server"))
			return
		}
		a, err := h.store.AnalyzeTask(r.Context(), id)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out.DependencyAnalysis = analysisJSON(a, out.Steps)
	}
	WriteJSON(w, http.StatusOK, out)
}

// UpdateTaskRequest is the body of PATCH /tasker/tasks/{task_id}: only a
// task's annotations may change. An absent (or null) field is left alone.
type UpdateTaskRequest struct {
	// Reason replaces the reason; "" clears it.
	Reason *string `json:"reason,omitempty" example:"customer called to expedite"`
	// Tags replaces the tags; [] clears them.
	Tags *[]string `json:"tags,omitempty" example:"vip,expedite"`
}

// update changes a task's reason and tags (Tasker's update), whatever the
// task's state; nothing else of a task can be changed.
//
//	@Summary		Update a task's reason and tags
//	@Description	Replaces the reason and/or the tags of a task, in any state. Other fields are refused (422): a task's template, context and steps are fixed once it exists. Permission: tasker.task:update.
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string				true	"Task id"	Format(uuid)
//	@Param			changes	body		UpdateTaskRequest	true	"What to change"
//	@Success		200		{object}	TaskResponse
//	@Failure		400		{object}	Problem	"Malformed task id or JSON"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		413		{object}	Problem	"Body too large"
//	@Failure		415		{object}	Problem	"Not JSON"
//	@Failure		422		{object}	Problem	"Unknown field, wrong type, or nothing to change"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:update"
//	@Router			/tasks/{task_id} [patch]
func (h *taskHandlers) update(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok || !noQuery(w, r) {
		return
	}
	var body UpdateTaskRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if problems := fieldErrors(engine.CheckTaskEdit(body.Reason, body.Tags)); len(problems) > 0 {
		WriteProblem(w, r, ValidationFailed("the task update is not valid", problems...))
		return
	}
	if err := h.store.EditTask(r.Context(), store.TaskEdit{TaskID: id, Reason: body.Reason, Tags: body.Tags}); err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, id, taskIncludes{})
}

// cancel cancels a task (Tasker's destroy).
//
//	@Summary		Cancel a task
//	@Description	Cancels the task and its unfinished steps; running handlers see their context cancelled. A complete task may be cancelled (admin override); a cancelled one may not. Permission: tasker.task:cancel.
//	@Tags			tasks
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Success		200		{object}	TaskResponse
//	@Failure		400		{object}	Problem	"Malformed task id"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		409		{object}	Problem	"Already cancelled"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:cancel"
//	@Router			/tasks/{task_id} [delete]
func (h *taskHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.CancelTask)
}

// retry sends a failed task's failed steps back to pending.
//
//	@Summary		Retry a failed task
//	@Description	Sends every failed step of a task in error back to pending with a fresh retry budget. The body, if any, must be an empty JSON object. Permission: tasker.task:retry.
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Success		200		{object}	TaskResponse
//	@Failure		400		{object}	Problem	"Malformed task id or body"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		409		{object}	Problem	"The task is not in error"
//	@Failure		415		{object}	Problem	"A body that is not JSON"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:retry"
//	@Router			/tasks/{task_id}/retry [post]
func (h *taskHandlers) retry(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.RetryTask)
}

// resolve resolves a failed task by hand.
//
//	@Summary		Resolve a failed task by hand
//	@Description	Marks a task in error as resolved_manually. The body, if any, must be an empty JSON object. Permission: tasker.task:resolve.
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Success		200		{object}	TaskResponse
//	@Failure		400		{object}	Problem	"Malformed task id or body"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		409		{object}	Problem	"The task is not in error"
//	@Failure		415		{object}	Problem	"A body that is not JSON"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:resolve"
//	@Router			/tasks/{task_id}/resolve [post]
func (h *taskHandlers) resolve(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.ResolveTask)
}

// taskAction checks the whole request before acting, so a bad request never
// leaves a change behind, then answers with the task.
func (h *taskHandlers) taskAction(w http.ResponseWriter, r *http.Request, act func(context.Context, uuid.UUID, string) error) {
	id, ok := h.taskID(w, r)
	if !ok || !noQuery(w, r) || !h.emptyBody(w, r) {
		return
	}
	if err := act(r.Context(), id, actor(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, id, taskIncludes{})
}

// emptyBody accepts an action request with no body or an empty JSON
// object; anything else is refused as DecodeJSON would.
func (h *taskHandlers) emptyBody(w http.ResponseWriter, r *http.Request) bool {
	var none struct{}
	if err := decodeOptionalJSON(r, &none); err != nil {
		WriteError(w, r, h.logger, err)
		return false
	}
	return true
}

// decodeOptionalJSON is DecodeJSON for a body that may be absent.
func decodeOptionalJSON(r *http.Request, dst any) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(trimJSONSpace(body)) == 0 {
		return nil
	}
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	return DecodeJSON(r2, dst)
}

// noQuery refuses query parameters on routes that take none.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	q := newQueryParams(r)
	q.Unknown()
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return false
	}
	return true
}

// actor is who acts, recorded on the transitions a request causes: the
// subject of its token ("" when authentication is off).
func actor(r *http.Request) string { return principalOf(r).Subject }

func (h *taskHandlers) taskID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	return pathUUID(w, r, "task_id")
}

func (h *taskHandlers) stepIDs(w http.ResponseWriter, r *http.Request) (uuid.UUID, uuid.UUID, bool) {
	taskID, ok := pathUUID(w, r, "task_id")
	if !ok {
		return uuid.Nil, uuid.Nil, false
	}
	stepID, ok := pathUUID(w, r, "step_id")
	return taskID, stepID, ok
}

// pathUUID reads a UUID path parameter; a malformed one is a 400 naming it.
func pathUUID(w http.ResponseWriter, r *http.Request, name string) (uuid.UUID, bool) {
	raw := chi.URLParam(r, name)
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		WriteProblem(w, r, BadRequest(fmt.Sprintf("%s %q is not a UUID (e.g. 0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b)", name, raw)))
		return uuid.Nil, false
	}
	return id, true
}

// fail maps engine and store errors to problems.
func (h *taskHandlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	var verr *registry.ValidationError
	var state *store.StateError
	var idem *store.IdempotencyConflictError
	var budget *store.RetryBudgetError
	switch {
	case errors.As(err, &verr):
		var fes []FieldError
		for _, e := range verr.Errors {
			fes = append(fes, FieldError{Pointer: e.Pointer, Detail: e.Message})
		}
		WriteProblem(w, r, ValidationFailed("the task request is not valid", fes...))
	case errors.As(err, &idem):
		WriteProblem(w, r, Conflict(fmt.Sprintf("idempotency key already used by task %s for a different request", idem.TaskID)))
	case errors.As(err, &state):
		WriteProblem(w, r, Conflict(state.Error()))
	case errors.As(err, &budget):
		WriteProblem(w, r, ValidationFailed(budget.Error(), FieldError{Pointer: "/retry_limit", Detail: budget.Error()}))
	case errors.Is(err, store.ErrNotFound):
		WriteProblem(w, r, NotFound("no such task or step"))
	case errors.Is(err, store.ErrUnavailable):
		WriteProblem(w, r, Unavailable("the database is unavailable; retry later"))
	default:
		WriteError(w, r, h.logger, err)
	}
}
