package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Task is a task row.
type Task struct {
	TaskID          uuid.UUID
	NamedTaskID     int64
	Namespace       string
	Name            string
	Version         string
	Status          string
	Context         json.RawMessage
	Initiator       string
	SourceSystem    string
	Reason          string
	Tags            []string
	IdempotencyKey  string
	Priority        int
	RunAt           *time.Time
	CorrelationID   string
	Traceparent     string
	TotalSteps      int
	UnfinishedSteps int
	FailedSteps     int
	RequestedAt     time.Time
	StartedAt       *time.Time
	CompletedAt     *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Step is a workflow step row with its parents' names.
type Step struct {
	StepID            uuid.UUID
	TaskID            uuid.UUID
	Name              string
	Handler           string
	Queue             string
	Status            string
	Attempts          int
	RetryBase         int
	RetryLimit        int
	Retryable         bool
	Skippable         bool
	Inputs            json.RawMessage
	Results           json.RawMessage
	LastError         json.RawMessage
	UnfinishedParents int
	RunnableAt        *time.Time
	LeaseOwner        string
	LeaseExpiresAt    *time.Time
	LastAttemptedAt   *time.Time
	ProcessedAt       *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
	Parents           []string
}

// Transition is one recorded state change of a task (StepID nil) or step.
type Transition struct {
	StepID    *uuid.UUID
	From      *string
	To        string
	Metadata  json.RawMessage
	Actor     string
	CreatedAt time.Time
}

//go:embed sql/task_get.sql
var taskGetSQL string

//go:embed sql/steps_of_task.sql
var stepsOfTaskSQL string

//go:embed sql/transitions_of_task.sql
var transitionsOfTaskSQL string

// GetTask reads a task; ErrNotFound when there is none.
func (s *Store) GetTask(ctx context.Context, id uuid.UUID) (*Task, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t, err := scanTask(s.pool.QueryRow(ctx, taskGetSQL, id))
	if err != nil {
		return nil, translate("get task", err)
	}
	return t, nil
}

func scanTask(row pgx.Row) (*Task, error) {
	var t Task
	err := row.Scan(&t.TaskID, &t.NamedTaskID, &t.Namespace, &t.Name, &t.Version,
		&t.Status, &t.Context, &t.Initiator, &t.SourceSystem, &t.Reason, &t.Tags, &t.IdempotencyKey, &t.Priority,
		&t.RunAt, &t.CorrelationID, &t.Traceparent, &t.TotalSteps, &t.UnfinishedSteps, &t.FailedSteps,
		&t.RequestedAt, &t.StartedAt, &t.CompletedAt, &t.CreatedAt, &t.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// TaskWithSteps reads a task and its steps in one round trip (two
// statements pipelined in one implicit transaction, so both see the same
// moment); ErrNotFound when there is no such task.
func (s *Store) TaskWithSteps(ctx context.Context, id uuid.UUID) (*Task, []Step, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t *Task
	var steps []Step
	var b pgx.Batch
	b.Queue(taskGetSQL, id).QueryRow(func(row pgx.Row) (err error) {
		t, err = scanTask(row)
		return err
	})
	b.Queue(stepsOfTaskSQL, id, nil).Query(func(rows pgx.Rows) (err error) {
		steps, err = pgx.CollectRows(rows, scanStep)
		return err
	})
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, nil, translate("get task", err)
	}
	return t, steps, nil
}

// Steps lists a task's steps, or the one step stepID when it is not nil.
func (s *Store) Steps(ctx context.Context, taskID uuid.UUID, stepID *uuid.UUID) ([]Step, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, stepsOfTaskSQL, taskID, stepID)
	if err != nil {
		return nil, translate("list steps", err)
	}
	steps, err := pgx.CollectRows(rows, scanStep)
	if err != nil {
		return nil, translate("list steps", err)
	}
	return steps, nil
}

func scanStep(row pgx.CollectableRow) (Step, error) {
	var st Step
	err := row.Scan(&st.StepID, &st.TaskID, &st.Name, &st.Handler, &st.Queue, &st.Status, &st.Attempts, &st.RetryBase,
		&st.RetryLimit, &st.Retryable, &st.Skippable, &st.Inputs, &st.Results, &st.LastError, &st.UnfinishedParents,
		&st.RunnableAt, &st.LeaseOwner, &st.LeaseExpiresAt, &st.LastAttemptedAt, &st.ProcessedAt,
		&st.CreatedAt, &st.UpdatedAt, &st.Parents)
	return st, err
}

// GetStep reads one step of a task; ErrNotFound when there is none.
func (s *Store) GetStep(ctx context.Context, taskID, stepID uuid.UUID) (*Step, error) {
	steps, err := s.Steps(ctx, taskID, &stepID)
	if err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("get step: %w", ErrNotFound)
	}
	return &steps[0], nil
}

// Transitions lists a task's transitions and its steps' (or one step's).
func (s *Store) Transitions(ctx context.Context, taskID uuid.UUID, stepID *uuid.UUID) ([]Transition, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, transitionsOfTaskSQL, taskID, stepID)
	if err != nil {
		return nil, translate("list transitions", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Transition, error) {
		var t Transition
		var id int64
		var kind int
		err := row.Scan(&t.StepID, &t.From, &t.To, &t.Metadata, &t.Actor, &t.CreatedAt, &id, &kind)
		return t, err
	})
	if err != nil {
		return nil, translate("list transitions", err)
	}
	return out, nil
}
