package api

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/store"
)

// TaskResponse is a task as the API shows it.
type TaskResponse struct {
	TaskID          uuid.UUID            `json:"task_id"`
	Namespace       string               `json:"namespace"`
	Name            string               `json:"name"`
	Version         string               `json:"version"`
	FullName        string               `json:"full_name"`
	Status          string               `json:"status"`
	Context         json.RawMessage      `json:"context" swaggertype:"object"`
	Initiator       string               `json:"initiator,omitempty"`
	SourceSystem    string               `json:"source_system,omitempty"`
	Reason          string               `json:"reason,omitempty"`
	Tags            []string             `json:"tags"`
	Priority        int                  `json:"priority"`
	IdempotencyKey  string               `json:"idempotency_key,omitempty"`
	RunAt           *time.Time           `json:"run_at,omitempty"`
	CorrelationID   string               `json:"correlation_id,omitempty"`
	TotalSteps      int                  `json:"total_steps"`
	UnfinishedSteps int                  `json:"unfinished_steps"`
	FailedSteps     int                  `json:"failed_steps"`
	RequestedAt     time.Time            `json:"requested_at"`
	StartedAt       *time.Time           `json:"started_at"`
	CompletedAt     *time.Time           `json:"completed_at"`
	CreatedAt       time.Time            `json:"created_at"`
	UpdatedAt       time.Time            `json:"updated_at"`
	Steps           []stepJSON           `json:"workflow_steps"`
	Transitions     []TransitionResponse `json:"transitions,omitempty"`
}

type stepJSON struct {
	StepID          uuid.UUID            `json:"step_id"`
	TaskID          uuid.UUID            `json:"task_id"`
	Name            string               `json:"name"`
	Handler         string               `json:"handler"`
	Status          string               `json:"status"`
	Attempts        int                  `json:"attempts"`
	RetryLimit      int                  `json:"retry_limit"`
	Retryable       bool                 `json:"retryable"`
	Skippable       bool                 `json:"skippable"`
	DependsOn       []string             `json:"depends_on_steps"`
	Inputs          json.RawMessage      `json:"inputs,omitempty" swaggertype:"object"`
	Results         json.RawMessage      `json:"results,omitempty" swaggertype:"object"`
	LastError       json.RawMessage      `json:"last_error,omitempty" swaggertype:"object"`
	NextRunAt       *time.Time           `json:"next_run_at,omitempty"`
	LeaseOwner      string               `json:"lease_owner,omitempty"`
	LeaseExpiresAt  *time.Time           `json:"lease_expires_at,omitempty"`
	LastAttemptedAt *time.Time           `json:"last_attempted_at,omitempty"`
	ProcessedAt     *time.Time           `json:"processed_at,omitempty"`
	CreatedAt       time.Time            `json:"created_at"`
	UpdatedAt       time.Time            `json:"updated_at"`
	Transitions     []TransitionResponse `json:"transitions,omitempty"`
}

// TransitionResponse is one recorded state change.
type TransitionResponse struct {
	StepID    *uuid.UUID      `json:"step_id,omitempty"`
	FromState *string         `json:"from_state"`
	ToState   string          `json:"to_state"`
	Metadata  json.RawMessage `json:"metadata" swaggertype:"object"`
	Actor     string          `json:"actor,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

func taskJSON(v *engine.TaskView) TaskResponse {
	t := v.Task
	out := TaskResponse{
		TaskID: t.TaskID, Namespace: t.Namespace, Name: t.Name, Version: t.Version,
		FullName: t.Namespace + "." + t.Name + "@" + t.Version, Status: t.Status, Context: t.Context,
		Initiator: t.Initiator, SourceSystem: t.SourceSystem, Reason: t.Reason, Tags: t.Tags, Priority: t.Priority,
		IdempotencyKey: t.IdempotencyKey, RunAt: t.RunAt, CorrelationID: t.CorrelationID, TotalSteps: t.TotalSteps,
		UnfinishedSteps: t.UnfinishedSteps, FailedSteps: t.FailedSteps, RequestedAt: t.RequestedAt,
		StartedAt: t.StartedAt, CompletedAt: t.CompletedAt, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		Steps: make([]stepJSON, 0, len(v.Steps)), Transitions: transitionsJSON(v.Transitions),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	for _, s := range v.Steps {
		out.Steps = append(out.Steps, toStepJSON(s))
	}
	return out
}

func toStepJSON(s store.Step) stepJSON {
	out := stepJSON{
		StepID: s.StepID, TaskID: s.TaskID, Name: s.Name, Handler: s.Handler, Status: s.Status, Attempts: s.Attempts,
		RetryLimit: s.RetryLimit, Retryable: s.Retryable, Skippable: s.Skippable, DependsOn: s.Parents,
		Inputs: s.Inputs, Results: s.Results, LastError: s.LastError, LeaseOwner: s.LeaseOwner,
		LeaseExpiresAt: s.LeaseExpiresAt, LastAttemptedAt: s.LastAttemptedAt, ProcessedAt: s.ProcessedAt,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
	if s.Status == "pending" {
		out.NextRunAt = s.RunnableAt
	}
	if out.DependsOn == nil {
		out.DependsOn = []string{}
	}
	return out
}

func transitionsJSON(ts []store.Transition) []TransitionResponse {
	if ts == nil {
		return nil
	}
	out := make([]TransitionResponse, 0, len(ts))
	for _, t := range ts {
		out = append(out, TransitionResponse{StepID: t.StepID, FromState: t.From, ToState: t.To, Metadata: t.Metadata,
			Actor: t.Actor, CreatedAt: t.CreatedAt})
	}
	return out
}
