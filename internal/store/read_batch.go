package store

import (
	"context"
	_ "embed"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Batched reads: one statement for many tasks or steps, so that an API
// answering a page of tasks with their steps costs a fixed number of
// queries whatever the page's size (the GraphQL API's loaders).

//go:embed sql/tasks_by_id.sql
var tasksByIDSQL string

//go:embed sql/steps_of_tasks.sql
var stepsOfTasksSQL string

//go:embed sql/steps_by_id.sql
var stepsByIDSQL string

//go:embed sql/readiness_of_tasks.sql
var readinessOfTasksSQL string

// TasksByID reads the tasks among ids that exist, in id order.
func (s *Store) TasksByID(ctx context.Context, ids []uuid.UUID) ([]Task, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, tasksByIDSQL, ids)
	if err != nil {
		return nil, translate("get tasks", err)
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Task, error) {
		t, err := scanTask(row)
		if err != nil {
			return Task{}, err
		}
		return *t, nil
	})
	if err != nil {
		return nil, translate("get tasks", err)
	}
	return tasks, nil
}

// StepsOfTasks lists the steps of every task in taskIDs, by task then
// creation order.
func (s *Store) StepsOfTasks(ctx context.Context, taskIDs []uuid.UUID) ([]Step, error) {
	return s.collectSteps(ctx, "list steps of tasks", stepsOfTasksSQL, taskIDs)
}

// StepsByID reads the steps among ids that exist, whatever their tasks.
func (s *Store) StepsByID(ctx context.Context, ids []uuid.UUID) ([]Step, error) {
	return s.collectSteps(ctx, "get steps", stepsByIDSQL, ids)
}

func (s *Store) collectSteps(ctx context.Context, op, sql string, ids []uuid.UUID) ([]Step, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, ids)
	if err != nil {
		return nil, translate(op, err)
	}
	steps, err := pgx.CollectRows(rows, scanStep)
	if err != nil {
		return nil, translate(op, err)
	}
	return steps, nil
}

// TaskStepReadiness is a step's readiness with its task's id.
type TaskStepReadiness struct {
	TaskID uuid.UUID
	StepReadiness
}

// ReadinessOfTasks returns the readiness and dependency level of every
// step of the tasks in taskIDs, as StepReadiness does for one task.
func (s *Store) ReadinessOfTasks(ctx context.Context, taskIDs []uuid.UUID) ([]TaskStepReadiness, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, readinessOfTasksSQL, taskIDs)
	if err != nil {
		return nil, translate("readiness of tasks", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TaskStepReadiness, error) {
		var r TaskStepReadiness
		var reason *string
		err := row.Scan(&r.StepID, &r.TaskID, &r.Name, &r.CurrentState, &r.DependenciesSatisfied, &r.RetryEligible,
			&r.ReadyForExecution, &r.LastFailureAt, &r.NextRetryAt, &r.TotalParents, &r.CompletedParents,
			&r.Attempts, &r.RetryLimit, &reason, &r.DependencyLevel)
		if reason != nil {
			r.BlockedReason = *reason
		}
		return r, err
	})
	if err != nil {
		return nil, translate("readiness of tasks", err)
	}
	return out, nil
}
