package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/workers"
)

// workerHandlers serve remote workers: claim (long poll), heartbeat,
// complete, fail, and the list of workers.
type workerHandlers struct {
	workers *workers.Service
	logger  *slog.Logger
}

// ClaimRequest is the body of POST /tasker/workers/claim.
type ClaimRequest struct {
	// WorkerID names the worker (it becomes the steps' lease owner).
	WorkerID string `json:"worker_id" example:"refunds-7f9c"`
	// Handlers are the queues served, e.g. ["remote:refunds"].
	Handlers []string `json:"handlers" example:"remote:refunds"`
	// Max is how many steps at most (default 1, at most 100).
	Max int `json:"max,omitempty" example:"4"`
	// WaitSeconds long-polls for work when there is none (at most 30).
	WaitSeconds float64 `json:"wait_seconds,omitempty" example:"25"`
	// LeaseSeconds is how long the steps are held without a heartbeat (default 30).
	LeaseSeconds float64 `json:"lease_seconds,omitempty" example:"30"`
}

// ClaimResponse lists the claimed steps; empty when none came within the wait.
type ClaimResponse struct {
	Steps []ClaimedStep `json:"steps"`
}

// ClaimedStep is a step leased to the worker with what it needs to run it.
type ClaimedStep struct {
	StepID uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid"`
	TaskID uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid"`
	// Attempt is the fencing token of heartbeat, complete and fail.
	Attempt       int                        `json:"attempt"`
	Handler       string                     `json:"handler"`
	StepName      string                     `json:"step_name"`
	Namespace     string                     `json:"namespace"`
	TaskName      string                     `json:"task_name"`
	TaskVersion   string                     `json:"task_version"`
	HandlerConfig json.RawMessage            `json:"handler_config" swaggertype:"object"`
	Inputs        json.RawMessage            `json:"inputs" swaggertype:"object"`
	Context       json.RawMessage            `json:"context" swaggertype:"object"`
	ParentResults map[string]json.RawMessage `json:"parent_results" swaggertype:"object"`
	CorrelationID string                     `json:"correlation_id,omitempty"`
	// Traceparent (W3C) names this attempt's span in the task's trace: a
	// worker's spans for the step continue the trace as its children.
	Traceparent string `json:"traceparent,omitempty" example:"00-0190f8c45a8b7c3e9b1a2f4e6d8c0a1b-5f2e8c1a9b3d7e40-01"`
	// LeaseExpiresAt is when the step is taken back without a heartbeat.
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	// TimeoutSeconds is the step's timeout; Deadline is when this attempt
	// must be done by (heartbeats do not extend a lease past it).
	TimeoutSeconds float64    `json:"timeout_seconds,omitempty"`
	Deadline       *time.Time `json:"deadline,omitempty"`
}

// claim leases steps to a worker, waiting up to wait_seconds for some.
//
//	@Summary		Claim steps (remote workers)
//	@Description	Leases up to max runnable steps of the named remote queues ("remote:<name>") to the worker, with what it needs to run them: handler_config, the task's context, the parents' results by step name, the correlation id, and a traceparent naming the attempt's span in the task's trace (continue it so the worker's spans nest under the step). attempt is the fencing token of heartbeat, complete and fail. With wait_seconds (at most 30) the call long-polls: it returns as soon as work exists, or with no steps when the wait ends. Waiting workers are woken by the engine's notifications, not by polling the database. Permission: tasker.worker:claim for each queue (remote:refunds needs refunds:tasker.worker:claim).
//	@Tags			workers
//	@Accept			json
//	@Produce		json
//	@Param			claim	body		ClaimRequest	true	"Who claims what"
//	@Success		200		{object}	ClaimResponse
//	@Failure		400		{object}	Problem	"Malformed JSON"
//	@Failure		415		{object}	Problem	"Not JSON"
//	@Failure		422		{object}	Problem	"Missing worker_id or handlers, a queue not named remote:<name>, max, wait_seconds or lease_seconds out of range"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.worker:claim"
//	@Router			/workers/claim [post]
func (h *workerHandlers) claim(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	var body ClaimRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	// Each queue is a scope of tasker.worker:claim (remote:refunds →
	// refunds): a worker claims only the queues it was granted.
	for _, q := range body.Handlers {
		if !can(r, auth.WorkerClaim, queueScope(q)) {
			WriteProblem(w, r, Forbidden(fmt.Sprintf("this request needs the permission %s for queue %q", auth.WorkerClaim, q)))
			return
		}
	}
	steps, err := h.workers.Claim(r.Context(), workers.ClaimRequest{
		WorkerID: body.WorkerID, Handlers: body.Handlers, Max: body.Max,
		Wait: seconds(body.WaitSeconds), Lease: seconds(body.LeaseSeconds),
	})
	if err != nil {
		h.fail409(w, r, err)
		return
	}
	out := ClaimResponse{Steps: make([]ClaimedStep, 0, len(steps))}
	for _, s := range steps {
		c := ClaimedStep{
			StepID: s.StepID, TaskID: s.TaskID, Attempt: s.Attempt, Handler: s.Handler, StepName: s.StepName,
			Namespace: s.Namespace, TaskName: s.TaskName, TaskVersion: s.TaskVersion, HandlerConfig: s.HandlerConfig,
			Inputs: s.Inputs, Context: s.Context, ParentResults: s.ParentResults, CorrelationID: s.CorrelationID,
			Traceparent: s.Traceparent, LeaseExpiresAt: s.LeaseExpiresAt, TimeoutSeconds: s.Timeout.Seconds(),
		}
		if len(c.HandlerConfig) == 0 {
			c.HandlerConfig = json.RawMessage("{}")
		}
		if len(c.Inputs) == 0 {
			c.Inputs = json.RawMessage("null")
		}
		if !s.Deadline.IsZero() {
			d := s.Deadline
			c.Deadline = &d
		}
		out.Steps = append(out.Steps, c)
	}
	WriteJSON(w, http.StatusOK, out)
}

// seconds turns a JSON number of seconds into a duration; NaN and
// infinities cannot arrive through encoding/json, huge values saturate.
func seconds(s float64) time.Duration {
	if s >= math.MaxInt64/float64(time.Second) {
		return math.MaxInt64
	}
	if s <= -math.MaxInt64/float64(time.Second) {
		return math.MinInt64
	}
	return time.Duration(s * float64(time.Second))
}

// HeartbeatRequest is the body of POST /tasker/steps/{step_id}/heartbeat.
type HeartbeatRequest struct {
	Attempt int `json:"attempt" example:"1"`
	// LeaseSeconds extends the lease by this much (default 30).
	LeaseSeconds float64 `json:"lease_seconds,omitempty"`
}

// HeartbeatResponse is the renewed lease.
type HeartbeatResponse struct {
	StepID         uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid"`
	Attempt        int       `json:"attempt"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	Cancelled      bool      `json:"cancelled"`
}

// heartbeat extends a claimed step's lease.
//
//	@Summary		Heartbeat a claimed step
//	@Description	Extends the lease of a step claimed at attempt, never past the step's deadline (its claim plus its timeout). 409 when the attempt no longer holds the step — cancelled (cancelled: true: stop working on it), timed out (timed_out: true) or taken back after its lease expired — and nothing changes. Permission: tasker.worker:claim.
//	@Tags			workers
//	@Accept			json
//	@Produce		json
//	@Param			step_id		path		string				true	"Step id"	Format(uuid)
//	@Param			heartbeat	body		HeartbeatRequest	true	"The attempt holding the step"
//	@Success		200			{object}	HeartbeatResponse
//	@Failure		400			{object}	Problem			"Malformed step id or JSON"
//	@Failure		404			{object}	Problem			"No remote step with this id"
//	@Failure		409			{object}	StaleProblem	"The attempt no longer holds the step"
//	@Failure		422			{object}	Problem			"Missing attempt"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.worker:claim"
//	@Router			/steps/{step_id}/heartbeat [post]
func (h *workerHandlers) heartbeat(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r, "step_id")
	if !ok || !noQuery(w, r) {
		return
	}
	var body HeartbeatRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if !validAttempt(w, r, body.Attempt) {
		return
	}
	lease, err := h.workers.Heartbeat(r.Context(), id, body.Attempt, seconds(body.LeaseSeconds))
	if err != nil {
		h.fail409(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, HeartbeatResponse{StepID: id, Attempt: body.Attempt, LeaseExpiresAt: lease.ExpiresAt})
}

// CompleteRequest is the body of POST /tasker/steps/{step_id}/complete.
type CompleteRequest struct {
	Attempt int             `json:"attempt" example:"1"`
	Results json.RawMessage `json:"results,omitempty" swaggertype:"object"`
	// Events are custom business events the attempt emitted; each must be
	// declared in the step template's custom_events (or the template's).
	Events []CustomEventJSON `json:"events,omitempty"`
}

// CustomEventJSON is a custom business event a remote worker emitted. A
// numeric "value" in its payload is observed by tasker_custom_event_value.
type CustomEventJSON struct {
	Name    string          `json:"name" example:"order.charged"`
	Payload json.RawMessage `json:"payload,omitempty" swaggertype:"object"`
}

// StepOutcomeResponse is a step's state after complete or fail.
type StepOutcomeResponse struct {
	StepID uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid"`
	TaskID uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid"`
	// Status is complete, pending (retried at retry_at) or error (failed for good).
	Status  string     `json:"status" enums:"complete,pending,error"`
	RetryAt *time.Time `json:"retry_at,omitempty"`
	// TaskStatus is set when the task reached a final state.
	TaskStatus string `json:"task_status,omitempty"`
}

// complete records a claimed step's success.
//
//	@Summary		Complete a claimed step
//	@Description	Records the results of the attempt that holds the step: the step completes, its dependents become runnable, and the task may complete — in one transaction. 409 when the attempt no longer holds the step (a stale attempt changes nothing). Results above TASKER_MAX_RESULT_BYTES fail the step for good (422). events are custom business events the attempt emitted ([{name, payload}], at most 100, payloads up to 64 KiB): each must be declared in the step template's custom_events (or the template's), else the call is refused with 422 and nothing is written; they are published with the completion like a Go handler's (tasker_custom_events_total, tasker_custom_event_value for a numeric payload value, webhooks). Permission: tasker.worker:claim.
//	@Tags			workers
//	@Accept			json
//	@Produce		json
//	@Param			step_id		path		string				true	"Step id"	Format(uuid)
//	@Param			completion	body		CompleteRequest		true	"The attempt and its results"
//	@Success		200			{object}	StepOutcomeResponse
//	@Failure		400			{object}	Problem			"Malformed step id or JSON"
//	@Failure		404			{object}	Problem			"No remote step with this id"
//	@Failure		409			{object}	StaleProblem	"The attempt no longer holds the step"
//	@Failure		422			{object}	Problem			"Missing attempt, or results too large (the step failed)"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.worker:claim"
//	@Router			/steps/{step_id}/complete [post]
func (h *workerHandlers) complete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r, "step_id")
	if !ok || !noQuery(w, r) {
		return
	}
	var body CompleteRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if !validAttempt(w, r, body.Attempt) {
		return
	}
	events := make([]handler.CustomEvent, len(body.Events))
	for i, ev := range body.Events {
		events[i] = handler.CustomEvent{Name: ev.Name, Payload: ev.Payload}
	}
	out, err := h.workers.Complete(r.Context(), id, body.Attempt, body.Results, events...)
	if err != nil {
		h.fail409(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, outcomeJSON(out))
}

// FailRequest is the body of POST /tasker/steps/{step_id}/fail.
type FailRequest struct {
	Attempt int `json:"attempt" example:"1"`
	// Error is a message, or an object whose "message" is one (the whole
	// object is kept as details).
	Error json.RawMessage `json:"error" swaggertype:"object"`
	// Retryable false fails the step for good (default true).
	Retryable *bool `json:"retryable,omitempty"`
	// RetryAfterSeconds replaces the step's backoff before the next attempt.
	RetryAfterSeconds float64 `json:"retry_after_seconds,omitempty"`
}

// fail records a claimed step's failure.
//
//	@Summary		Fail a claimed step
//	@Description	Records the failure of the attempt that holds the step. A retryable failure (the default) runs again after the step's backoff, or after retry_after_seconds when given (capped at the backoff's max), while the step's retry budget lasts; otherwise the step fails for good. 409 when the attempt no longer holds the step. Permission: tasker.worker:claim.
//	@Tags			workers
//	@Accept			json
//	@Produce		json
//	@Param			step_id	path		string			true	"Step id"	Format(uuid)
//	@Param			failure	body		FailRequest		true	"The attempt and what went wrong"
//	@Success		200		{object}	StepOutcomeResponse
//	@Failure		400		{object}	Problem			"Malformed step id or JSON"
//	@Failure		404		{object}	Problem			"No remote step with this id"
//	@Failure		409		{object}	StaleProblem	"The attempt no longer holds the step"
//	@Failure		422		{object}	Problem			"Missing attempt, malformed error, retry_after_seconds out of range"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.worker:claim"
//	@Router			/steps/{step_id}/fail [post]
func (h *workerHandlers) fail(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r, "step_id")
	if !ok || !noQuery(w, r) {
		return
	}
	var body FailRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if !validAttempt(w, r, body.Attempt) {
		return
	}
	req := workers.FailRequest{StepID: id, Attempt: body.Attempt, Retryable: body.Retryable == nil || *body.Retryable,
		RetryAfter: seconds(body.RetryAfterSeconds)}
	var msg string
	var obj map[string]json.RawMessage
	switch {
	case len(body.Error) == 0 || string(body.Error) == "null":
	case json.Unmarshal(body.Error, &msg) == nil:
		req.Message = msg
	case json.Unmarshal(body.Error, &obj) == nil:
		_ = json.Unmarshal(obj["message"], &req.Message)
		req.Details = body.Error
	default:
		WriteProblem(w, r, ValidationFailed("the failure is not valid",
			FieldError{Pointer: "/error", Detail: "must be a message, or an object with a message"}))
		return
	}
	if body.RetryAfterSeconds < 0 || req.RetryAfter > 24*time.Hour {
		WriteProblem(w, r, ValidationFailed("the failure is not valid",
			FieldError{Pointer: "/retry_after_seconds", Detail: "must be from 0 to 86400"}))
		return
	}
	out, err := h.workers.Fail(r.Context(), req)
	if err != nil {
		h.fail409(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, outcomeJSON(out))
}

func outcomeJSON(o *workers.Outcome) StepOutcomeResponse {
	return StepOutcomeResponse{StepID: o.StepID, TaskID: o.TaskID, Status: o.Status, RetryAt: o.RetryAt, TaskStatus: o.TaskStatus}
}

func validAttempt(w http.ResponseWriter, r *http.Request, attempt int) bool {
	if attempt < 1 {
		WriteProblem(w, r, ValidationFailed("the request is not valid",
			FieldError{Pointer: "/attempt", Detail: "is required: the attempt the step was claimed at (from 1)"}))
		return false
	}
	return true
}

// WorkersResponse lists the workers seen lately.
type WorkersResponse struct {
	Workers []WorkerJSON `json:"workers"`
	Total   int          `json:"total"`
}

// WorkerJSON is a worker seen lately and the steps it holds.
type WorkerJSON struct {
	WorkerID    string               `json:"worker_id"`
	Handlers    []string             `json:"handlers"`
	FirstSeenAt time.Time            `json:"first_seen_at"`
	LastSeenAt  time.Time            `json:"last_seen_at"`
	LastReplica string               `json:"last_replica,omitempty"`
	InFlight    []store.InFlightStep `json:"in_flight"`
}

// list answers the workers seen within seen_within (a Go duration, default 5m).
//
//	@Summary		List remote workers
//	@Description	The workers seen within seen_within (default 5m): the queues each claimed from last, when it was first and last seen, the replica that served it last, and the steps it holds now. Permission: tasker.worker:index.
//	@Tags			workers
//	@Produce		json
//	@Param			seen_within	query		string	false	"A Go duration such as 5m or 1h"
//	@Success		200			{object}	WorkersResponse
//	@Failure		400			{object}	Problem	"Malformed seen_within or unknown query parameter"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.worker:index"
//	@Router			/workers [get]
func (h *workerHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := newQueryParams(r)
	q.Unknown("seen_within")
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	var within time.Duration
	if v := r.URL.Query().Get("seen_within"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			WriteProblem(w, r, BadRequest(fmt.Sprintf("seen_within %q must be a positive Go duration such as 5m or 1h", v)))
			return
		}
		within = d
	}
	list, err := h.workers.Workers(r.Context(), within)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	out := WorkersResponse{Workers: make([]WorkerJSON, 0, len(list)), Total: len(list)}
	for _, k := range list {
		j := WorkerJSON{WorkerID: k.WorkerID, Handlers: k.Handlers, FirstSeenAt: k.FirstSeenAt, LastSeenAt: k.LastSeenAt,
			LastReplica: k.LastReplica, InFlight: k.InFlight}
		if j.Handlers == nil {
			j.Handlers = []string{}
		}
		if j.InFlight == nil {
			j.InFlight = []store.InFlightStep{}
		}
		out.Workers = append(out.Workers, j)
	}
	WriteJSON(w, http.StatusOK, out)
}

// StaleProblem is the 409 answered to a heartbeat, completion or failure
// whose attempt no longer holds the step. Cancelled tells the worker to stop.
type StaleProblem struct {
	Problem
	Cancelled      bool   `json:"cancelled"`
	TimedOut       bool   `json:"timed_out,omitempty"`
	StepStatus     string `json:"step_status,omitempty"`
	CurrentAttempt int    `json:"current_attempt,omitempty"`
}

// fail409 maps the worker service's errors: stale attempts are 409 with
// whether the step was cancelled, unknown steps 404, the rest as usual.
func (h *workerHandlers) fail409(w http.ResponseWriter, r *http.Request, err error) {
	var stale *workers.StaleError
	var tooLarge *workers.ResultsTooLargeError
	switch {
	case errors.As(err, &stale):
		out := StaleProblem{Problem: *Conflict(stale.Error()), Cancelled: stale.Cancelled, TimedOut: stale.TimedOut,
			StepStatus: stale.Status, CurrentAttempt: stale.CurrentAttempt}
		out.Instance, out.RequestID = r.URL.Path, RequestIDFromContext(r.Context())
		writeBody(w, ContentTypeProblem, http.StatusConflict, &out)
	case errors.As(err, &tooLarge):
		WriteProblem(w, r, ValidationFailed(tooLarge.Error(), FieldError{Pointer: "/results", Detail: tooLarge.Error()}))
	case errors.Is(err, store.ErrNotFound):
		WriteProblem(w, r, NotFound("no step run by remote workers has this id"))
	default:
		WriteError(w, r, h.logger, err)
	}
}
