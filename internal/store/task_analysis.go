package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ExecutionContext is a task's row of get_task_execution_context().
type ExecutionContext struct {
	TotalSteps, PendingSteps, InProgressSteps, CompletedSteps int64
	FailedSteps, CancelledSteps, ReadySteps                   int64
	// ExecutionStatus: has_ready_steps, processing, blocked_by_failures,
	// all_complete or waiting_for_dependencies.
	ExecutionStatus string
	// RecommendedAction: execute_ready_steps, wait_for_completion,
	// handle_failures, finalize_task or wait_for_dependencies.
	RecommendedAction    string
	CompletionPercentage float64
	// HealthStatus: healthy, recovering, blocked or unknown.
	HealthStatus string
}

// StepReadiness is a step's row of get_step_readiness_status() with its
// level from calculate_dependency_levels().
type StepReadiness struct {
	StepID                uuid.UUID
	Name                  string
	CurrentState          string
	DependenciesSatisfied bool
	RetryEligible         bool
	ReadyForExecution     bool
	LastFailureAt         *time.Time
	NextRetryAt           *time.Time
	TotalParents          int
	CompletedParents      int
	Attempts              int
	RetryLimit            int
	// BlockedReason is empty when the step is ready or finished.
	BlockedReason string
	// DependencyLevel is nil only for a step no root reaches.
	DependencyLevel *int
}

// CriticalPathStep is one step of get_task_critical_path(), root first.
type CriticalPathStep struct {
	Position     int
	StepID       uuid.UUID
	Name         string
	Status       string
	DurationMS   int64
	CumulativeMS int64
}

// TaskAnalysis is what the SQL analysis functions say about one task, read
// in one snapshot.
type TaskAnalysis struct {
	Context      ExecutionContext
	Steps        []StepReadiness
	CriticalPath []CriticalPathStep
}

//go:embed sql/task_analysis_context.sql
var taskAnalysisContextSQL string

//go:embed sql/task_analysis_readiness.sql
var taskAnalysisReadinessSQL string

//go:embed sql/task_analysis_critical_path.sql
var taskAnalysisCriticalPathSQL string

// AnalyzeTask runs the analysis functions for a task in one read-only
// repeatable-read transaction, so the counts, readiness and path agree with
// each other; ErrNotFound when the task does not exist.
func (s *Store) AnalyzeTask(ctx context.Context, taskID uuid.UUID) (*TaskAnalysis, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var a TaskAnalysis
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		c := &a.Context
		err := tx.QueryRow(ctx, taskAnalysisContextSQL, taskID).Scan(&c.TotalSteps, &c.PendingSteps,
			&c.InProgressSteps, &c.CompletedSteps, &c.FailedSteps, &c.CancelledSteps, &c.ReadySteps,
			&c.ExecutionStatus, &c.RecommendedAction, &c.CompletionPercentage, &c.HealthStatus)
		if err != nil {
			return err
		}
		if a.Steps, err = readiness(ctx, tx, taskID, nil); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, taskAnalysisCriticalPathSQL, taskID)
		if err != nil {
			return err
		}
		a.CriticalPath, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (CriticalPathStep, error) {
			var c CriticalPathStep
			err := row.Scan(&c.Position, &c.StepID, &c.Name, &c.Status, &c.DurationMS, &c.CumulativeMS)
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, translate("analyze task", err)
	}
	return &a, nil
}

// StepReadiness returns the readiness of the given steps of a task (all of
// them when stepIDs is nil). It evaluates the whole task, since a step's
// readiness depends on its parents.
func (s *Store) StepReadiness(ctx context.Context, taskID uuid.UUID, stepIDs []uuid.UUID) ([]StepReadiness, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	out, err := readiness(ctx, s.pool, taskID, stepIDs)
	if err != nil {
		return nil, translate("step readiness", err)
	}
	return out, nil
}

// querier is what a pool and a transaction share.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readiness(ctx context.Context, q querier, taskID uuid.UUID, stepIDs []uuid.UUID) ([]StepReadiness, error) {
	rows, err := q.Query(ctx, taskAnalysisReadinessSQL, taskID, stepIDs)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (StepReadiness, error) {
		var r StepReadiness
		var reason *string
		err := row.Scan(&r.StepID, &r.Name, &r.CurrentState, &r.DependenciesSatisfied, &r.RetryEligible,
			&r.ReadyForExecution, &r.LastFailureAt, &r.NextRetryAt, &r.TotalParents, &r.CompletedParents,
			&r.Attempts, &r.RetryLimit, &reason, &r.DependencyLevel)
		if reason != nil {
			r.BlockedReason = *reason
		}
		return r, err
	})
}

//go:embed sql/task_edit.sql
var taskEditSQL string

// TaskEdit changes a task's annotations; nil fields stay as they are.
type TaskEdit struct {
	TaskID uuid.UUID
	// Reason replaces the reason; "" clears it.
	Reason *string
	// Tags replaces the tags; empty clears them.
	Tags *[]string
}

// EditTask changes a task's reason and tags, whatever its state;
// ErrNotFound when the task does not exist.
func (s *Store) EditTask(ctx context.Context, e TaskEdit) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var reason string
	if e.Reason != nil {
		reason = *e.Reason
	}
	tags := []string{}
	if e.Tags != nil && *e.Tags != nil {
		tags = *e.Tags
	}
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, taskEditSQL, e.TaskID, e.Reason != nil, reason, e.Tags != nil, tags).Scan(&id)
	return translate("edit task", err)
}

//go:embed sql/step_edit.sql
var stepEditSQL string

// StepEdit changes what a step will run with; nil fields stay as they are.
type StepEdit struct {
	TaskID, StepID uuid.UUID
	// RetryLimit replaces the step's attempt budget.
	RetryLimit *int
	// Inputs replaces the step's inputs when set; JSON null clears them.
	Inputs json.RawMessage
}

// ErrRetryBudget means a retry limit would leave a waiting step no attempt.
var ErrRetryBudget = errors.New("retry limit leaves no attempt")

// RetryBudgetError reports a retry limit at or below the attempts a
// pending step has already spent. errors.Is(err, ErrRetryBudget) holds.
type RetryBudgetError struct {
	Spent, Limit int
}

func (e *RetryBudgetError) Error() string {
	return fmt.Sprintf("retry_limit %d would leave no attempt: the step has already spent %d and waits to run again; cancel it instead",
		e.Limit, e.Spent)
}

// Is makes errors.Is(err, ErrRetryBudget) true.
func (e *RetryBudgetError) Is(target error) bool { return target == ErrRetryBudget }

// EditStep changes a step's retry limit and inputs in one statement. It
// answers ErrNotFound when the step is not the task's, a *StateError
// (errors.Is ErrConflict) when the step is running, and a
// *RetryBudgetError when the limit would strand a waiting step.
func (s *Store) EditStep(ctx context.Context, e StepEdit) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var limit *int32
	if e.RetryLimit != nil {
		l := int32(*e.RetryLimit)
		limit = &l
	}
	var inputs *string
	if len(e.Inputs) > 0 && string(e.Inputs) != "null" {
		in := string(e.Inputs)
		inputs = &in
	}
	var status string
	var spent int
	var changed bool
	err := s.pool.QueryRow(ctx, stepEditSQL, e.TaskID, e.StepID, limit, len(e.Inputs) > 0, inputs).Scan(&status, &spent, &changed)
	switch {
	case err != nil:
		return translate("edit step", err)
	case changed:
		return nil
	case status == "in_progress":
		return &StateError{Resource: "step", Action: "edit", State: status}
	case e.RetryLimit != nil:
		return &RetryBudgetError{Spent: spent, Limit: *e.RetryLimit}
	default:
		return fmt.Errorf("edit step: a %s step was left unchanged", status) // step_edit.sql cannot do this
	}
}
