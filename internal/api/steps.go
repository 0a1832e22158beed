package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// maxRetryLimit bounds a step's attempt budget set by hand.
const maxRetryLimit = 1000

// StepListResponse is a task's workflow steps. A task's steps are fixed
// when it is created, so the list is not paginated.
type StepListResponse struct {
	TaskID uuid.UUID      `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Steps  []StepResponse `json:"workflow_steps"`
	Total  int            `json:"total" example:"4"`
}

// StepError is one failed attempt of a step, as recorded on its transition
// to error.
type StepError struct {
	Attempt   int             `json:"attempt" example:"1"`
	Error     json.RawMessage `json:"error" swaggertype:"object"`
	WillRetry bool            `json:"will_retry" example:"true"`
	At        time.Time       `json:"at" example:"2025-01-31T08:00:00.5Z"`
}

// StepDetailResponse is one workflow step with its readiness, its failed
// attempts and its transitions.
type StepDetailResponse struct {
	StepResponse
	// Errors lists the step's failed attempts, oldest first.
	Errors []StepError `json:"errors"`
}

// steps lists a task's workflow steps.
//
//	@Summary		List a task's workflow steps
//	@Description	Every step of a task in creation order. A task's steps are fixed when it is created, so this list is not paginated. Permission: tasker.workflow_step:index.
//	@Tags			workflow steps
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Success		200		{object}	StepListResponse
//	@Failure		400		{object}	Problem	"Malformed task id"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:index"
//	@Router			/tasks/{task_id}/workflow_steps [get]
func (h *taskHandlers) steps(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok || !noQuery(w, r) {
		return
	}
	view, err := h.engine.GetTask(r.Context(), id, false)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]StepResponse, 0, len(view.Steps))
	for _, s := range view.Steps {
		out = append(out, toStepJSON(s))
	}
	WriteJSON(w, http.StatusOK, StepListResponse{TaskID: id, Steps: out, Total: len(out)})
}

// step answers one step with its readiness, errors and transitions.
//
//	@Summary		Show a workflow step
//	@Description	One step with its attempts, inputs, results, readiness (from get_step_readiness_status), every failed attempt's error, and its transitions. Permission: tasker.workflow_step:show.
//	@Tags			workflow steps
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			step_id	path		string	true	"Step id"	Format(uuid)
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:show"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id} [get]
func (h *taskHandlers) step(w http.ResponseWriter, r *http.Request) {
	taskID, stepID, ok := h.stepIDs(w, r)
	if !ok || !noQuery(w, r) {
		return
	}
	h.renderStep(w, r, taskID, stepID)
}

func (h *taskHandlers) renderStep(w http.ResponseWriter, r *http.Request, taskID, stepID uuid.UUID) {
	st, transitions, err := h.engine.GetStep(r.Context(), taskID, stepID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := StepDetailResponse{StepResponse: toStepJSON(*st), Errors: stepErrors(transitions)}
	out.Transitions = transitionsJSON(transitions)
	if h.store != nil {
		rs, err := h.store.StepReadiness(r.Context(), taskID, []uuid.UUID{stepID})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(rs) == 1 {
			rj := readinessJSON(rs[0])
			out.Readiness = &rj
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

// stepErrors reads the failed attempts off a step's transitions to error,
// whose metadata the engine writes as {"attempt", "error", "will_retry"}.
func stepErrors(ts []store.Transition) []StepError {
	out := []StepError{}
	for _, t := range ts {
		if t.To != "error" {
			continue
		}
		var m struct {
			Attempt   int             `json:"attempt"`
			Error     json.RawMessage `json:"error"`
			WillRetry bool            `json:"will_retry"`
		}
		_ = json.Unmarshal(t.Metadata, &m) // metadata written by hand may lack fields; what is there is kept
		if len(m.Error) == 0 {
			m.Error = t.Metadata
		}
		out = append(out, StepError{Attempt: m.Attempt, Error: m.Error, WillRetry: m.WillRetry, At: t.CreatedAt})
	}
	return out
}

// UpdateStepRequest is the body of PATCH …/workflow_steps/{step_id}. An
// absent field is left alone.
type UpdateStepRequest struct {
	// RetryLimit is the step's attempt budget, first attempt included (1 to 1000).
	RetryLimit *int `json:"retry_limit,omitempty" example:"5" minimum:"1" maximum:"1000"`
	// Inputs replaces the step's inputs (a JSON object); null clears them.
	Inputs json.RawMessage `json:"inputs,omitempty" swaggertype:"object"`
}

// updateStep changes a step's retry limit and inputs (Tasker's update).
//
//	@Summary		Update a step's retry limit and inputs
//	@Description	Replaces the retry_limit and/or the inputs of a step that is not running (409 while it runs). A pending step that has already spent attempts keeps at least one more: a lower limit is refused (422); cancel the step instead. Permission: tasker.workflow_step:update.
//	@Tags			workflow steps
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string				true	"Task id"	Format(uuid)
//	@Param			step_id	path		string				true	"Step id"	Format(uuid)
//	@Param			changes	body		UpdateStepRequest	true	"What to change"
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id or JSON"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		409		{object}	Problem	"The step is running"
//	@Failure		413		{object}	Problem	"Body too large"
//	@Failure		415		{object}	Problem	"Not JSON"
//	@Failure		422		{object}	Problem	"Unknown field, wrong type, out-of-range retry_limit, inputs not an object"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:update"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id} [patch]
func (h *taskHandlers) updateStep(w http.ResponseWriter, r *http.Request) {
	taskID, stepID, ok := h.stepIDs(w, r)
	if !ok || !noQuery(w, r) {
		return
	}
	var body UpdateStepRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	var problems []FieldError
	if body.RetryLimit == nil && len(body.Inputs) == 0 {
		problems = append(problems, FieldError{Pointer: "", Detail: "nothing to change: send retry_limit, inputs or both"})
	}
	if l := body.RetryLimit; l != nil && (*l < 1 || *l > maxRetryLimit) {
		problems = append(problems, FieldError{Pointer: "/retry_limit",
			Detail: fmt.Sprintf("must be from 1 to %d (it counts every attempt, the first included)", maxRetryLimit)})
	}
	if in := bytes.TrimSpace(body.Inputs); len(in) > 0 && in[0] != '{' && string(in) != "null" {
		problems = append(problems, FieldError{Pointer: "/inputs", Detail: "inputs must be a JSON object, or null to clear them"})
	}
	if len(problems) > 0 {
		WriteProblem(w, r, ValidationFailed("the step update is not valid", problems...))
		return
	}
	err := h.store.EditStep(r.Context(), store.StepEdit{TaskID: taskID, StepID: stepID, RetryLimit: body.RetryLimit, Inputs: body.Inputs})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.renderStep(w, r, taskID, stepID)
}

// stepRetry sends a failed step back to pending with a fresh budget.
//
//	@Summary		Retry a failed step
//	@Description	Sends a step in error back to pending with a fresh retry budget; a failed task is reopened. The body, if any, must be an empty JSON object. Permission: tasker.workflow_step:retry.
//	@Tags			workflow steps
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			step_id	path		string	true	"Step id"	Format(uuid)
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id or body"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		409		{object}	Problem	"The step is not in error"
//	@Failure		415		{object}	Problem	"A body that is not JSON"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:retry"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id}/retry [post]
func (h *taskHandlers) stepRetry(w http.ResponseWriter, r *http.Request) {
	var none struct{}
	h.stepAction(w, r, &none, func(taskID, stepID uuid.UUID) error {
		return h.engine.RetryStep(r.Context(), taskID, stepID, actor(r))
	})
}

// ResolveStepRequest is the optional body of a step's resolve action.
type ResolveStepRequest struct {
	// Results become the step's results, which its dependents read.
	Results json.RawMessage `json:"results,omitempty" swaggertype:"object"`
}

// stepResolve resolves a pending or failed step by hand.
//
//	@Summary		Resolve a step by hand
//	@Description	Marks a pending or failed step resolved_manually, optionally with results its dependents will read; they then proceed. Permission: tasker.workflow_step:resolve.
//	@Tags			workflow steps
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string				true	"Task id"	Format(uuid)
//	@Param			step_id	path		string				true	"Step id"	Format(uuid)
//	@Param			body	body		ResolveStepRequest	false	"Results to record"
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id or JSON"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		409		{object}	Problem	"The step is running or finished"
//	@Failure		413		{object}	Problem	"Body too large"
//	@Failure		415		{object}	Problem	"Not JSON"
//	@Failure		422		{object}	Problem	"Unknown field or wrong type"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:resolve"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id}/resolve [post]
func (h *taskHandlers) stepResolve(w http.ResponseWriter, r *http.Request) {
	var body ResolveStepRequest
	h.stepAction(w, r, &body, func(taskID, stepID uuid.UUID) error {
		return h.engine.ResolveStep(r.Context(), taskID, stepID, body.Results, actor(r))
	})
}

// stepCancel cancels one step.
//
//	@Summary		Cancel a step
//	@Description	Cancels a pending, running or failed step; its dependents never run, and the task fails once nothing else can run. The body, if any, must be an empty JSON object. Permission: tasker.workflow_step:cancel.
//	@Tags			workflow steps
//	@Accept			json
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			step_id	path		string	true	"Step id"	Format(uuid)
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id or body"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		409		{object}	Problem	"The step is finished"
//	@Failure		415		{object}	Problem	"A body that is not JSON"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:cancel"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id}/cancel [post]
func (h *taskHandlers) stepCancel(w http.ResponseWriter, r *http.Request) {
	var none struct{}
	h.stepAction(w, r, &none, func(taskID, stepID uuid.UUID) error {
		return h.engine.CancelStep(r.Context(), taskID, stepID, actor(r))
	})
}

// stepDestroy is Tasker's destroy of a step: the same as cancel.
//
//	@Summary		Cancel a step (Tasker's destroy)
//	@Description	The same as POST …/cancel, kept for Tasker's clients. Permission: tasker.workflow_step:cancel.
//	@Tags			workflow steps
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			step_id	path		string	true	"Step id"	Format(uuid)
//	@Success		200		{object}	StepDetailResponse
//	@Failure		400		{object}	Problem	"Malformed id"
//	@Failure		404		{object}	Problem	"No such task or step"
//	@Failure		409		{object}	Problem	"The step is finished"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.workflow_step:cancel"
//	@Router			/tasks/{task_id}/workflow_steps/{step_id} [delete]
func (h *taskHandlers) stepDestroy(w http.ResponseWriter, r *http.Request) {
	h.stepCancel(w, r)
}

// stepAction checks the ids, query and body before acting, so a bad request
// never leaves a change behind, then answers with the step.
func (h *taskHandlers) stepAction(w http.ResponseWriter, r *http.Request, body any, act func(taskID, stepID uuid.UUID) error) {
	taskID, stepID, ok := h.stepIDs(w, r)
	if !ok || !noQuery(w, r) {
		return
	}
	if err := decodeOptionalJSON(r, body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if err := act(taskID, stepID); err != nil {
		h.fail(w, r, err)
		return
	}
	h.renderStep(w, r, taskID, stepID)
}
