package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// NewTask is a task to create with all its steps.
type NewTask struct {
	TaskID         uuid.UUID
	NamedTaskID    int64
	Namespace      string
	Name           string
	Version        string
	Context        []byte // JSON
	Initiator      string
	SourceSystem   string
	Reason         string
	Tags           []string
	IdempotencyKey string
	RequestHash    string
	Priority       int
	RunAt          *time.Time
	CorrelationID  string
	Traceparent    string
	Actor          string
	Steps          []NewStep
	Edges          []Edge
	// LimitKey, when set, admits the task only while fewer than LimitMax
	// tasks of the key are admitted and unfinished; it waits, in creation
	// order, otherwise (a task concurrency limit).
	LimitKey string
	LimitMax int
	// Stagger spaces root steps' runnable times (see task_create.sql).
	Stagger time.Duration
	// InTx, when set, creates the task in a transaction and calls the hook
	// in it once the task is written (for an event outbox); an error rolls
	// the task back. It is not called when an idempotency key returns an
	// existing task.
	InTx func(ctx context.Context, tx Tx, taskID uuid.UUID) error
	// readBack, when set, receives the created task and its steps, read in
	// the create's own transaction (CreateTaskRead).
	readBack *TaskRead
}

// NewStep is one workflow step of a NewTask.
type NewStep struct {
	StepID            uuid.UUID
	NamedStepID       int64
	Name              string
	Handler           string
	Queue             string
	RetryLimit        int
	Retryable         bool
	Skippable         bool
	Bypassed          bool
	Inputs            []byte // JSON or nil
	UnfinishedParents int
	// LimitKey, when set, lets at most LimitMax steps of the key run at
	// once (a step concurrency limit).
	LimitKey string
	LimitMax int
	// RateKey, when set, starts steps of the key at most RatePerSecond
	// times a second.
	RateKey       string
	RatePerSecond float64
}

// Edge links a parent step to a child step.
type Edge struct{ From, To uuid.UUID }

// ErrIdempotencyConflict means the idempotency key was used before for a
// different request.
var ErrIdempotencyConflict = errors.New("idempotency key already used for a different request")

// IdempotencyConflictError names the task that holds the key.
type IdempotencyConflictError struct{ TaskID uuid.UUID }

func (e *IdempotencyConflictError) Error() string {
	return fmt.Sprintf("idempotency key already used by task %s for a different request", e.TaskID)
}

// Is makes errors.Is(err, ErrIdempotencyConflict) and ErrConflict true.
func (e *IdempotencyConflictError) Is(target error) bool {
	return target == ErrIdempotencyConflict || target == ErrConflict
}

//go:embed sql/task_create.sql
var taskCreateSQL string

//go:embed sql/task_by_idempotency_key.sql
var taskByIdempotencyKeySQL string

// CreateTask writes a task, its steps, edges and initial transitions in one
// statement. With an idempotency key already used by the same request it
// returns the existing task and created=false; by a different request, an
// *IdempotencyConflictError.
func (s *Store) CreateTask(ctx context.Context, t NewTask) (taskID uuid.UUID, created bool, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := s.creates.create(ctx, &t, t.readBack != nil)
	taskID = res.id
	if err == nil {
		if t.readBack != nil {
			t.readBack.Task, t.readBack.Steps = res.task, res.steps
		}
		return taskID, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) || t.IdempotencyKey == "" {
		return uuid.Nil, false, translate("create task", err)
	}
	// The key exists: the same request gets the existing task back.
	var existingHash string
	err = s.pool.QueryRow(ctx, taskByIdempotencyKeySQL, t.Namespace, t.Name, t.IdempotencyKey).Scan(&taskID, &existingHash)
	if err != nil {
		return uuid.Nil, false, translate("create task: look up idempotency key", err)
	}
	if existingHash != t.RequestHash {
		return taskID, false, &IdempotencyConflictError{TaskID: taskID}
	}
	return taskID, false, nil
}

// nullableInt is NULL for zero.
func nullableInt(n int) *int32 {
	if n == 0 {
		return nil
	}
	return new(int32(n))
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// TaskRead is a task with its steps as read from the database.
type TaskRead struct {
	Task  *Task
	Steps []Step
}

// CreateTaskRead is CreateTask that also returns the created task and its
// steps, read in the same transaction and round trip as the create (nil
// when created is false).
func (s *Store) CreateTaskRead(ctx context.Context, t NewTask) (read *TaskRead, taskID uuid.UUID, created bool, err error) {
	t.readBack = &TaskRead{}
	taskID, created, err = s.CreateTask(ctx, t)
	if err != nil || !created || t.readBack.Task == nil {
		return nil, taskID, created, err
	}
	return t.readBack, taskID, created, nil
}
