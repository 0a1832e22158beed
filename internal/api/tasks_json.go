package api

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/store"
)

// TaskSummary is a task without its steps, as the task list shows it. The
// context is left out of lists (it may be large); GET /tasks/{task_id} has it.
type TaskSummary struct {
	TaskID          uuid.UUID  `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Namespace       string     `json:"namespace" example:"shop"`
	Name            string     `json:"name" example:"checkout"`
	Version         string     `json:"version" example:"1.0.0"`
	FullName        string     `json:"full_name" example:"shop.checkout@1.0.0"`
	Status          string     `json:"status" enums:"pending,in_progress,complete,error,cancelled,resolved_manually" example:"complete"`
	Initiator       string     `json:"initiator,omitempty" example:"web"`
	SourceSystem    string     `json:"source_system,omitempty" example:"storefront"`
	Reason          string     `json:"reason,omitempty" example:"order placed"`
	Tags            []string   `json:"tags" example:"vip,web"`
	Priority        int        `json:"priority" example:"0"`
	IdempotencyKey  string     `json:"idempotency_key,omitempty" example:"order-42"`
	RunAt           *time.Time `json:"run_at,omitempty" example:"2025-01-31T08:00:00Z"`
	CorrelationID   string     `json:"correlation_id,omitempty" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a00"`
	TotalSteps      int        `json:"total_steps" example:"4"`
	UnfinishedSteps int        `json:"unfinished_steps" example:"0"`
	FailedSteps     int        `json:"failed_steps" example:"0"`
	RequestedAt     time.Time  `json:"requested_at" example:"2025-01-31T08:00:00.000123Z"`
	StartedAt       *time.Time `json:"started_at" example:"2025-01-31T08:00:00.004512Z"`
	CompletedAt     *time.Time `json:"completed_at" example:"2025-01-31T08:00:01.532861Z"`
	CreatedAt       time.Time  `json:"created_at" example:"2025-01-31T08:00:00.000123Z"`
	UpdatedAt       time.Time  `json:"updated_at" example:"2025-01-31T08:00:01.532861Z"`
}

// TaskResponse is a task as GET /tasks/{task_id} shows it: with its context
// and steps, and with what include= asked for.
type TaskResponse struct {
	TaskSummary
	Context json.RawMessage `json:"context" swaggertype:"object"`
	Steps   []StepResponse  `json:"workflow_steps"`
	// Transitions are the task's and its steps' state changes, oldest first
	// (include=transitions).
	Transitions []TransitionResponse `json:"transitions,omitempty"`
	// DependencyAnalysis comes with include=dependencies or include_dependencies=true.
	DependencyAnalysis *DependencyAnalysis `json:"dependency_analysis,omitempty"`
	// ParentTask is the task whose subtask step started this one;
	// ChildTasks are the tasks this one's subtask steps started.
	ParentTask *TaskLink  `json:"parent_task,omitempty"`
	ChildTasks []TaskLink `json:"child_tasks,omitempty"`
}

// StepResponse is a workflow step.
type StepResponse struct {
	StepID          uuid.UUID       `json:"step_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8c-7c3e-9b1a-2f4e6d8c0a1c"`
	TaskID          uuid.UUID       `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Name            string          `json:"name" example:"charge"`
	Handler         string          `json:"handler" example:"http"`
	Status          string          `json:"status" enums:"pending,in_progress,complete,error,cancelled,resolved_manually" example:"complete"`
	Attempts        int             `json:"attempts" example:"1"`
	RetryLimit      int             `json:"retry_limit" example:"3"`
	Retryable       bool            `json:"retryable" example:"true"`
	Skippable       bool            `json:"skippable" example:"false"`
	DependsOn       []string        `json:"depends_on_steps" example:"validate"`
	Inputs          json.RawMessage `json:"inputs,omitempty" swaggertype:"object"`
	Results         json.RawMessage `json:"results,omitempty" swaggertype:"object"`
	LastError       json.RawMessage `json:"last_error,omitempty" swaggertype:"object"`
	NextRunAt       *time.Time      `json:"next_run_at,omitempty" example:"2025-01-31T08:00:02Z"`
	LeaseOwner      string          `json:"lease_owner,omitempty" example:"host-a-4121-9f2c"`
	LeaseExpiresAt  *time.Time      `json:"lease_expires_at,omitempty" example:"2025-01-31T08:00:30Z"`
	LastAttemptedAt *time.Time      `json:"last_attempted_at,omitempty" example:"2025-01-31T08:00:00.104512Z"`
	ProcessedAt     *time.Time      `json:"processed_at,omitempty" example:"2025-01-31T08:00:00.912001Z"`
	CreatedAt       time.Time       `json:"created_at" example:"2025-01-31T08:00:00.000123Z"`
	UpdatedAt       time.Time       `json:"updated_at" example:"2025-01-31T08:00:00.912001Z"`
	// Readiness says whether the step may run now and why not (GET of one
	// step, or a task with include=dependencies).
	Readiness *StepReadiness `json:"readiness,omitempty"`
	// Transitions are the step's state changes, oldest first (GET of one step).
	Transitions []TransitionResponse `json:"transitions,omitempty"`
}

// TransitionResponse is one recorded state change.
type TransitionResponse struct {
	// StepID is absent for the task's own transitions.
	StepID *uuid.UUID `json:"step_id,omitempty" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8c-7c3e-9b1a-2f4e6d8c0a1c"`
	// StepName is the step's name (transitions list only).
	StepName  string          `json:"step_name,omitempty" example:"charge"`
	FromState *string         `json:"from_state" example:"in_progress"`
	ToState   string          `json:"to_state" example:"complete"`
	Metadata  json.RawMessage `json:"metadata" swaggertype:"object"`
	Actor     string          `json:"actor,omitempty" example:"ops@example.com"`
	CreatedAt time.Time       `json:"created_at" example:"2025-01-31T08:00:00.912001Z"`
}

// ExecutionContext is Tasker's task execution context, from
// get_task_execution_context().
type ExecutionContext struct {
	TotalSteps      int64 `json:"total_steps" example:"4"`
	PendingSteps    int64 `json:"pending_steps" example:"1"`
	InProgressSteps int64 `json:"in_progress_steps" example:"1"`
	CompletedSteps  int64 `json:"completed_steps" example:"2"`
	FailedSteps     int64 `json:"failed_steps" example:"0"`
	CancelledSteps  int64 `json:"cancelled_steps" example:"0"`
	ReadySteps      int64 `json:"ready_steps" example:"0"`
	// ExecutionStatus is the first that applies of all_complete,
	// has_ready_steps, processing, blocked_by_failures, waiting_for_dependencies.
	ExecutionStatus string `json:"execution_status" enums:"all_complete,has_ready_steps,processing,blocked_by_failures,waiting_for_dependencies" example:"processing"`
	// RecommendedAction follows execution_status.
	RecommendedAction    string  `json:"recommended_action" enums:"finalize_task,execute_ready_steps,wait_for_completion,handle_failures,wait_for_dependencies" example:"wait_for_completion"`
	CompletionPercentage float64 `json:"completion_percentage" example:"50"`
	HealthStatus         string  `json:"health_status" enums:"healthy,recovering,blocked,unknown" example:"healthy"`
}

// StepReadiness is a step's row of get_step_readiness_status(), with its
// dependency level from calculate_dependency_levels().
type StepReadiness struct {
	DependenciesSatisfied bool       `json:"dependencies_satisfied" example:"true"`
	RetryEligible         bool       `json:"retry_eligible" example:"true"`
	ReadyForExecution     bool       `json:"ready_for_execution" example:"false"`
	LastFailureAt         *time.Time `json:"last_failure_at,omitempty" example:"2025-01-31T08:00:00.5Z"`
	NextRetryAt           *time.Time `json:"next_retry_at,omitempty" example:"2025-01-31T08:00:01.5Z"`
	TotalParents          int        `json:"total_parents" example:"1"`
	CompletedParents      int        `json:"completed_parents" example:"1"`
	// BlockedReason is absent when the step is ready or finished.
	BlockedReason string `json:"blocked_reason,omitempty" enums:"cancelled,running,retries_exhausted,failed,waiting_for_dependencies,paused,concurrency_limit,task_concurrency_limit,in_backoff" example:"in_backoff"`
	// DependencyLevel is the step's depth: 0 for a root, else 1 + its
	// deepest parent's.
	DependencyLevel *int `json:"dependency_level" example:"1"`
}

// DependencyLevel lists the steps at one depth of the DAG; steps of one
// level never depend on each other.
type DependencyLevel struct {
	Level int      `json:"level" example:"1"`
	Steps []string `json:"steps" example:"charge,reserve"`
}

// CriticalPathStep is one step of the critical path, root first.
type CriticalPathStep struct {
	StepID uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8c-7c3e-9b1a-2f4e6d8c0a1c"`
	Name   string    `json:"name" example:"charge"`
	Status string    `json:"status" example:"complete"`
	// DurationMS is the step's run time from its first claim.
	DurationMS int64 `json:"duration_ms" example:"812"`
	// CumulativeMS is the path's run time up to and including this step.
	CumulativeMS int64 `json:"cumulative_ms" example:"1020"`
}

// CriticalPath is the chain of steps whose run times add up to the most:
// the one that decides how long the task takes. Before anything ran it is
// the longest chain.
type CriticalPath struct {
	Steps []CriticalPathStep `json:"steps"`
	// Length is the number of steps on the path.
	Length int `json:"length" example:"3"`
	// DurationMS is the path's total run time so far.
	DurationMS int64 `json:"duration_ms" example:"1420"`
}

// DependencyAnalysis is what the SQL analysis functions say about a task
// as a whole: its execution context, its steps by dependency level, and the
// critical path. Each step's readiness is in its workflow_steps entry.
type DependencyAnalysis struct {
	ExecutionContext ExecutionContext `json:"execution_context"`
	// Levels groups the steps by dependency level, roots first.
	Levels []DependencyLevel `json:"dependency_levels"`
	// MaxDepth is the deepest level (0 for a task whose steps are all roots).
	MaxDepth     int          `json:"max_depth" example:"2"`
	CriticalPath CriticalPath `json:"critical_path"`
}

func summaryJSON(t *store.Task) TaskSummary {
	out := TaskSummary{
		TaskID: t.TaskID, Namespace: t.Namespace, Name: t.Name, Version: t.Version,
		FullName: t.Namespace + "." + t.Name + "@" + t.Version, Status: t.Status,
		Initiator: t.Initiator, SourceSystem: t.SourceSystem, Reason: t.Reason, Tags: t.Tags, Priority: t.Priority,
		IdempotencyKey: t.IdempotencyKey, RunAt: t.RunAt, CorrelationID: t.CorrelationID, TotalSteps: t.TotalSteps,
		UnfinishedSteps: t.UnfinishedSteps, FailedSteps: t.FailedSteps, RequestedAt: t.RequestedAt,
		StartedAt: t.StartedAt, CompletedAt: t.CompletedAt, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	return out
}

func taskJSON(v *engine.TaskView) TaskResponse {
	out := TaskResponse{
		TaskSummary: summaryJSON(v.Task),
		Context:     v.Task.Context,
		Steps:       make([]StepResponse, 0, len(v.Steps)),
		Transitions: transitionsJSON(v.Transitions),
	}
	for _, s := range v.Steps {
		out.Steps = append(out.Steps, toStepJSON(s))
	}
	return out
}

func toStepJSON(s store.Step) StepResponse {
	out := StepResponse{
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
		out = append(out, transitionJSON(t, ""))
	}
	return out
}

func transitionJSON(t store.Transition, stepName string) TransitionResponse {
	return TransitionResponse{StepID: t.StepID, StepName: stepName, FromState: t.From, ToState: t.To,
		Metadata: t.Metadata, Actor: t.Actor, CreatedAt: t.CreatedAt}
}

func readinessJSON(r store.StepReadiness) StepReadiness {
	return StepReadiness{
		DependenciesSatisfied: r.DependenciesSatisfied, RetryEligible: r.RetryEligible,
		ReadyForExecution: r.ReadyForExecution, LastFailureAt: r.LastFailureAt, NextRetryAt: r.NextRetryAt,
		TotalParents: r.TotalParents, CompletedParents: r.CompletedParents, BlockedReason: r.BlockedReason,
		DependencyLevel: r.DependencyLevel,
	}
}

// analysisJSON shapes the analysis of a task, and attaches each step's
// readiness to the step in steps.
func analysisJSON(a *store.TaskAnalysis, steps []StepResponse) *DependencyAnalysis {
	c := a.Context
	out := &DependencyAnalysis{
		ExecutionContext: ExecutionContext{
			TotalSteps: c.TotalSteps, PendingSteps: c.PendingSteps, InProgressSteps: c.InProgressSteps,
			CompletedSteps: c.CompletedSteps, FailedSteps: c.FailedSteps, CancelledSteps: c.CancelledSteps,
			ReadySteps: c.ReadySteps, ExecutionStatus: c.ExecutionStatus, RecommendedAction: c.RecommendedAction,
			CompletionPercentage: c.CompletionPercentage, HealthStatus: c.HealthStatus,
		},
		Levels:       []DependencyLevel{},
		CriticalPath: CriticalPath{Steps: make([]CriticalPathStep, 0, len(a.CriticalPath))},
	}
	byID := make(map[uuid.UUID]store.StepReadiness, len(a.Steps))
	byLevel := map[int][]string{}
	for _, r := range a.Steps {
		byID[r.StepID] = r
		if r.DependencyLevel != nil {
			byLevel[*r.DependencyLevel] = append(byLevel[*r.DependencyLevel], r.Name)
			out.MaxDepth = max(out.MaxDepth, *r.DependencyLevel)
		}
	}
	for i := range steps {
		if r, ok := byID[steps[i].StepID]; ok {
			rj := readinessJSON(r)
			steps[i].Readiness = &rj
		}
	}
	for level := 0; level <= out.MaxDepth && len(byLevel) > 0; level++ {
		names := byLevel[level]
		slices.Sort(names)
		out.Levels = append(out.Levels, DependencyLevel{Level: level, Steps: append([]string{}, names...)})
	}
	for _, p := range a.CriticalPath {
		out.CriticalPath.Steps = append(out.CriticalPath.Steps, CriticalPathStep{StepID: p.StepID, Name: p.Name,
			Status: p.Status, DurationMS: p.DurationMS, CumulativeMS: p.CumulativeMS})
		out.CriticalPath.DurationMS = p.CumulativeMS
	}
	out.CriticalPath.Length = len(out.CriticalPath.Steps)
	return out
}
