package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// CorrelationHeader carries the correlation id (Tasker's X-Correlation-ID).
const CorrelationHeader = "X-Correlation-ID"

type taskHandlers struct {
	engine *engine.Engine
	logger *slog.Logger
}

func (h *taskHandlers) routes(r chi.Router) {
	r.Post("/tasks", h.create)
	r.Route("/tasks/{task_id}", func(r chi.Router) {
		r.Get("/", h.show)
		r.Delete("/", h.cancel)
		r.Post("/retry", h.retry)
		r.Post("/resolve", h.resolve)
		r.Get("/workflow_steps", h.steps)
		r.Route("/workflow_steps/{step_id}", func(r chi.Router) {
			r.Get("/", h.step)
			r.Post("/retry", h.stepRetry)
			r.Post("/resolve", h.stepResolve)
			r.Post("/cancel", h.stepCancel)
		})
	})
}

// CreateTaskRequest is the body of POST /tasker/tasks.
type CreateTaskRequest struct {
	Namespace      string          `json:"namespace"`
	Name           string          `json:"name"`
	Version        string          `json:"version,omitempty"`
	Context        json.RawMessage `json:"context,omitempty" swaggertype:"object"`
	Initiator      string          `json:"initiator,omitempty"`
	SourceSystem   string          `json:"source_system,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Tags           []string        `json:"tags,omitempty"`
	Priority       int             `json:"priority,omitempty"`
	RunAt          *time.Time      `json:"run_at,omitempty"`
	BypassSteps    []string        `json:"bypass_steps,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// create makes a task from a registered template. 201 with the task; 200
// with the existing task when the idempotency key was used by the same
// request; 409 when by a different one; 422 when the template is unknown or
// the context does not match its schema.
func (h *taskHandlers) create(w http.ResponseWriter, r *http.Request) {
	var body CreateTaskRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	var problems []FieldError
	if body.Name == "" {
		problems = append(problems, FieldError{Pointer: "/name", Detail: "name is required"})
	}
	if body.Namespace == "" {
		body.Namespace = "default"
	}
	if len(body.Context) > 0 && body.Context[0] != '{' && string(body.Context) != "null" {
		problems = append(problems, FieldError{Pointer: "/context", Detail: "context must be a JSON object"})
	}
	if body.Priority < -1000 || body.Priority > 1000 {
		problems = append(problems, FieldError{Pointer: "/priority", Detail: "priority must be between -1000 and 1000"})
	}
	key := body.IdempotencyKey
	if hk := r.Header.Get("Idempotency-Key"); hk != "" {
		if key != "" && key != hk {
			problems = append(problems, FieldError{Pointer: "/idempotency_key", Detail: "differs from the Idempotency-Key header"})
		}
		key = hk
	}
	if len(key) > 255 {
		problems = append(problems, FieldError{Pointer: "/idempotency_key", Detail: "at most 255 characters"})
	}
	if len(problems) > 0 {
		WriteProblem(w, r, ValidationFailed("the task request is not valid", problems...))
		return
	}
	correlation := r.Header.Get(CorrelationHeader)
	if correlation == "" || len(correlation) > 128 {
		correlation = uuid.Must(uuid.NewV7()).String()
	}
	w.Header().Set(CorrelationHeader, correlation)
	view, created, err := h.engine.CreateTask(r.Context(), engine.CreateTaskRequest{
		Namespace: body.Namespace, Name: body.Name, Version: body.Version, Context: body.Context,
		Initiator: body.Initiator, SourceSystem: body.SourceSystem, Reason: body.Reason, Tags: body.Tags,
		Priority: body.Priority, RunAt: body.RunAt, BypassSteps: body.BypassSteps, IdempotencyKey: key,
		CorrelationID: correlation, Traceparent: r.Header.Get("traceparent"),
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", BasePath+"/tasks/"+view.Task.TaskID.String())
	WriteJSON(w, status, taskJSON(view))
}

// show answers a task with its steps (and transitions with include=transitions).
func (h *taskHandlers) show(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	include := r.URL.Query().Get("include")
	view, err := h.engine.GetTask(r.Context(), id, strings.Contains(include, "transitions"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, taskJSON(view))
}

func (h *taskHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.CancelTask)
}

func (h *taskHandlers) retry(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.RetryTask)
}

func (h *taskHandlers) resolve(w http.ResponseWriter, r *http.Request) {
	h.taskAction(w, r, h.engine.ResolveTask)
}

func (h *taskHandlers) taskAction(w http.ResponseWriter, r *http.Request, act func(context.Context, uuid.UUID, string) error) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	if err := act(r.Context(), id, actor(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.show(w, r)
}

// steps lists a task's workflow steps.
func (h *taskHandlers) steps(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	view, err := h.engine.GetTask(r.Context(), id, false)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]stepJSON, 0, len(view.Steps))
	for _, s := range view.Steps {
		out = append(out, toStepJSON(s))
	}
	WriteJSON(w, http.StatusOK, map[string]any{"task_id": id, "workflow_steps": out, "total": len(out)})
}

// step answers one step with its transitions.
func (h *taskHandlers) step(w http.ResponseWriter, r *http.Request) {
	taskID, stepID, ok := h.stepIDs(w, r)
	if !ok {
		return
	}
	st, transitions, err := h.engine.GetStep(r.Context(), taskID, stepID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := toStepJSON(*st)
	out.Transitions = transitionsJSON(transitions)
	WriteJSON(w, http.StatusOK, out)
}

func (h *taskHandlers) stepRetry(w http.ResponseWriter, r *http.Request) {
	h.stepAction(w, r, func(taskID, stepID uuid.UUID) error {
		return h.engine.RetryStep(r.Context(), taskID, stepID, actor(r))
	})
}

// ResolveStepRequest is the optional body of a step's resolve action.
type ResolveStepRequest struct {
	Results json.RawMessage `json:"results,omitempty" swaggertype:"object"`
}

func (h *taskHandlers) stepResolve(w http.ResponseWriter, r *http.Request) {
	var body ResolveStepRequest
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &body); err != nil {
			WriteError(w, r, h.logger, err)
			return
		}
	}
	h.stepAction(w, r, func(taskID, stepID uuid.UUID) error {
		return h.engine.ResolveStep(r.Context(), taskID, stepID, body.Results, actor(r))
	})
}

func (h *taskHandlers) stepCancel(w http.ResponseWriter, r *http.Request) {
	h.stepAction(w, r, func(taskID, stepID uuid.UUID) error {
		return h.engine.CancelStep(r.Context(), taskID, stepID, actor(r))
	})
}

func (h *taskHandlers) stepAction(w http.ResponseWriter, r *http.Request, act func(taskID, stepID uuid.UUID) error) {
	taskID, stepID, ok := h.stepIDs(w, r)
	if !ok {
		return
	}
	if err := act(taskID, stepID); err != nil {
		h.fail(w, r, err)
		return
	}
	h.step(w, r)
}

// actor is who acts, for the audit trail; authentication fills it later.
func actor(r *http.Request) string { return "" }

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
	case errors.Is(err, store.ErrNotFound):
		WriteProblem(w, r, NotFound("no such task or step"))
	case errors.Is(err, store.ErrUnavailable):
		WriteProblem(w, r, Unavailable("the database is unavailable; retry later"))
	default:
		WriteError(w, r, h.logger, err)
	}
}
