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
	n := len(t.Steps)
	ids := make([]uuid.UUID, n)
	namedIDs := make([]int64, n)
	names := make([]string, n)
	handlers := make([]string, n)
	queues := make([]string, n)
	limits := make([]int32, n)
	retryable := make([]bool, n)
	skippable := make([]bool, n)
	bypassed := make([]bool, n)
	inputs := make([]*string, n)
	parents := make([]int32, n)
	limitKeys := make([]*string, n)
	limitMaxes := make([]*int32, n)
	rateKeys := make([]*string, n)
	rates := make([]*float64, n)
	unfinished := 0
	for i, st := range t.Steps {
		ids[i], namedIDs[i], names[i], handlers[i], queues[i] = st.StepID, st.NamedStepID, st.Name, st.Handler, st.Queue
		limits[i], retryable[i], skippable[i], bypassed[i] = int32(st.RetryLimit), st.Retryable, st.Skippable, st.Bypassed
		parents[i] = int32(st.UnfinishedParents)
		if st.LimitKey != "" {
			limitKeys[i], limitMaxes[i] = &st.LimitKey, new(int32(st.LimitMax))
		}
		if st.RateKey != "" {
			rateKeys[i], rates[i] = &st.RateKey, new(st.RatePerSecond)
		}
		if st.Inputs != nil {
			in := string(st.Inputs)
			inputs[i] = &in
		}
		if !st.Bypassed {
			unfinished++
		}
	}
	from := make([]uuid.UUID, len(t.Edges))
	to := make([]uuid.UUID, len(t.Edges))
	for i, e := range t.Edges {
		from[i], to[i] = e.From, e.To
	}
	ctxJSON := string(t.Context)
	if ctxJSON == "" {
		ctxJSON = "{}"
	}
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	args := []any{
		t.TaskID, t.NamedTaskID, t.Namespace, t.Name, t.Version, ctxJSON, nullable(t.Initiator),
		nullable(t.SourceSystem), nullable(t.Reason), tags, nullable(t.IdempotencyKey), nullable(t.RequestHash),
		t.Priority, t.RunAt, nullable(t.CorrelationID), nullable(t.Traceparent), n, unfinished,
		ids, namedIDs, names, handlers, queues, limits, retryable, skippable, bypassed, inputs, parents,
		t.Stagger.Microseconds(), from, to, nullable(t.Actor),
		nullable(t.LimitKey), nullableInt(t.LimitMax), limitKeys, limitMaxes, rateKeys, rates,
	}
	res, err := s.creates.create(ctx, args, t.InTx, t.readBack != nil)
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
