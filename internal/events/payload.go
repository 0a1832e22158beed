package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
)

// Envelope is how an event travels outside the process: the body of a
// webhook delivery.
type Envelope struct {
	// ID identifies the event; an event delivered to several webhooks, or
	// delivered again, keeps it, so receivers can deduplicate.
	ID string `json:"id" doc:"The event's id (UUIDv7): the same in every delivery of the event."`
	// Event is the event's name.
	Event    string   `json:"event" doc:"The event's name, e.g. step.failed."`
	Category Category `json:"category" doc:"task, step, workflow, handler or custom."`
	// OccurredAt is the emitting replica's clock.
	OccurredAt    time.Time `json:"occurred_at" doc:"When the event happened (the emitting replica's clock)."`
	CorrelationID string    `json:"correlation_id,omitempty" doc:"The correlation id of the task (X-Correlation-ID of the request that created it)."`
	// Data is the payload of the event's category.
	Data any `json:"data" doc:"The payload: its fields depend on the category."`
}

// NewEnvelope wraps ev with its payload.
func NewEnvelope(id uuid.UUID, ev *engine.Event) Envelope {
	return Envelope{ID: id.String(), Event: ev.Name, Category: CategoryOf(ev), OccurredAt: ev.Time.UTC(),
		CorrelationID: ev.CorrelationID, Data: Payload(ev)}
}

// TaskPayload is the payload of task events.
type TaskPayload struct {
	TaskID          string  `json:"task_id" doc:"The task."`
	Namespace       string  `json:"namespace" doc:"Namespace of the task's template."`
	TaskName        string  `json:"task_name" doc:"Name of the task's template."`
	TaskVersion     string  `json:"task_version" doc:"Version of the task's template."`
	FromState       string  `json:"from_state,omitempty" doc:"State before the transition; absent for a new task."`
	ToState         string  `json:"to_state" doc:"State after the transition: pending, in_progress, complete, error, cancelled or resolved_manually."`
	Reason          string  `json:"reason,omitempty" doc:"Why, when the transition has a reason (lease_expired, …)."`
	DurationSeconds float64 `json:"duration_seconds,omitempty" doc:"For a final state: seconds since the task was created."`
}

// StepPayload is the payload of step events.
type StepPayload struct {
	TaskID              string          `json:"task_id" doc:"The step's task."`
	StepID              string          `json:"step_id" doc:"The step."`
	Namespace           string          `json:"namespace" doc:"Namespace of the task's template."`
	TaskName            string          `json:"task_name" doc:"Name of the task's template."`
	TaskVersion         string          `json:"task_version" doc:"Version of the task's template."`
	StepName            string          `json:"step_name" doc:"The step's name in the template."`
	Attempt             int             `json:"attempt" doc:"The attempt, counting from 1; 0 before the first claim."`
	FromState           string          `json:"from_state,omitempty" doc:"State before the transition (transition events only)."`
	ToState             string          `json:"to_state,omitempty" doc:"State after the transition (transition events only)."`
	Reason              string          `json:"reason,omitempty" doc:"Why, when the transition has a reason: retry, lease_expired, bypassed, …"`
	StartedAt           *time.Time      `json:"started_at,omitempty" doc:"When the attempt's handler started."`
	DurationSeconds     float64         `json:"duration_seconds,omitempty" doc:"How long the attempt's handler ran."`
	QueueLatencySeconds float64         `json:"queue_latency_seconds,omitempty" doc:"step.execution_requested: seconds from runnable to claimed."`
	RetryAt             *time.Time      `json:"retry_at,omitempty" doc:"When the step runs again (step.backoff, and step.failed of an attempt that will be retried)."`
	Error               json.RawMessage `json:"error,omitempty" doc:"The failed attempt's error: {message, attempt, retryable, retry_after_seconds}."`
}

// WorkflowPayload is the payload of workflow events.
type WorkflowPayload struct {
	TaskID      string `json:"task_id,omitempty" doc:"The task (absent for workflow.no_viable_steps)."`
	Namespace   string `json:"namespace,omitempty" doc:"Namespace of the task's template."`
	TaskName    string `json:"task_name,omitempty" doc:"Name of the task's template."`
	TaskVersion string `json:"task_version,omitempty" doc:"Version of the task's template."`
	StepCount   int    `json:"step_count,omitempty" doc:"How many steps the event is about."`
	ToState     string `json:"to_state,omitempty" doc:"Finalization events: the task's final state."`
}

// HandlerPayload is the payload of handler (template registry) events.
type HandlerPayload struct {
	Namespace string         `json:"namespace,omitempty" doc:"The template's namespace (absent when the document could not say)."`
	Name      string         `json:"name,omitempty" doc:"The template's name."`
	Version   string         `json:"version,omitempty" doc:"The template's version."`
	Outcome   string         `json:"outcome,omitempty" doc:"handler.registered: created or replaced."`
	Source    string         `json:"source,omitempty" doc:"api, or the path of the template file."`
	Errors    []HandlerError `json:"errors,omitempty" doc:"handler.validation_failed: what is wrong."`
}

// HandlerError is one problem of a refused template.
type HandlerError struct {
	Pointer string `json:"pointer" doc:"JSON pointer into the template."`
	Message string `json:"message" doc:"What is wrong."`
}

// CustomPayload is the payload of a custom business event.
type CustomPayload struct {
	TaskID      string          `json:"task_id" doc:"The task whose step emitted the event."`
	StepID      string          `json:"step_id" doc:"The step."`
	Namespace   string          `json:"namespace" doc:"Namespace of the task's template."`
	TaskName    string          `json:"task_name" doc:"Name of the task's template."`
	TaskVersion string          `json:"task_version" doc:"Version of the task's template."`
	StepName    string          `json:"step_name" doc:"The step's name in the template."`
	Attempt     int             `json:"attempt" doc:"The attempt that emitted it."`
	Payload     json.RawMessage `json:"payload" doc:"What the handler emitted; a numeric value field feeds tasker_custom_event_value."`
}

// Payload builds the payload of ev's category.
func Payload(ev *engine.Event) any {
	switch CategoryOf(ev) {
	case CategoryTask:
		p := TaskPayload{TaskID: ev.TaskID.String(), Namespace: ev.Namespace, TaskName: ev.TaskName,
			TaskVersion: ev.TaskVersion, FromState: ev.From, ToState: ev.To, Reason: ev.Reason}
		if final(ev.To) {
			p.DurationSeconds = TaskAge(ev)
		}
		return p
	case CategoryStep:
		p := StepPayload{TaskID: ev.TaskID.String(), StepID: ev.StepID.String(), Namespace: ev.Namespace,
			TaskName: ev.TaskName, TaskVersion: ev.TaskVersion, StepName: ev.StepName, Attempt: ev.Attempt,
			FromState: ev.From, ToState: ev.To, Reason: ev.Reason, DurationSeconds: ev.Duration.Seconds(), Error: ev.Error}
		if !ev.StartedAt.IsZero() {
			t := ev.StartedAt.UTC()
			p.StartedAt = &t
		}
		if !ev.RetryAt.IsZero() {
			t := ev.RetryAt.UTC()
			p.RetryAt = &t
		}
		if !ev.ReadyAt.IsZero() {
			p.QueueLatencySeconds = max(ev.Time.Sub(ev.ReadyAt).Seconds(), 0)
		}
		return p
	case CategoryWorkflow:
		p := WorkflowPayload{Namespace: ev.Namespace, TaskName: ev.TaskName, TaskVersion: ev.TaskVersion, StepCount: ev.Count, ToState: ev.To}
		if ev.TaskID != uuid.Nil {
			p.TaskID = ev.TaskID.String()
		}
		return p
	case CategoryHandler:
		p := HandlerPayload{Namespace: ev.Namespace, Name: ev.TaskName, Version: ev.TaskVersion, Outcome: ev.Reason}
		_ = json.Unmarshal(ev.Payload, &p) // source and errors, when the registry gave any
		return p
	default:
		payload := ev.Payload
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		return CustomPayload{TaskID: ev.TaskID.String(), StepID: ev.StepID.String(), Namespace: ev.Namespace,
			TaskName: ev.TaskName, TaskVersion: ev.TaskVersion, StepName: ev.StepName, Attempt: ev.Attempt, Payload: payload}
	}
}

// TaskAge is the seconds from a task's creation (the time in its UUIDv7
// id) to ev; zero when the id carries no time.
func TaskAge(ev *engine.Event) float64 {
	created, ok := TaskCreatedAt(ev.TaskID)
	if !ok {
		return 0
	}
	return max(ev.Time.Sub(created).Seconds(), 0)
}

// TaskCreatedAt reads a task's creation time from its UUIDv7 id.
func TaskCreatedAt(id uuid.UUID) (time.Time, bool) {
	if id.Version() != 7 {
		return time.Time{}, false
	}
	sec, nsec := id.Time().UnixTime()
	return time.Unix(sec, nsec), true
}

func final(state string) bool {
	switch state {
	case "complete", "error", "cancelled", "resolved_manually":
		return true
	}
	return false
}
