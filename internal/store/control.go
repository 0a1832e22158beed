package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Change is one transition made by a manual action.
type Change struct {
	TaskID  uuid.UUID
	StepID  uuid.UUID // zero for a task's own transition
	From    string
	To      string
	Attempt int
	Reason  string
	// Run is the task's run after a task's own change (see TaskFinal.Run).
	Run int
}

// Action is a manual action on a task or one of its steps.
type Action struct {
	TaskID uuid.UUID
	StepID uuid.UUID // for step actions
	// Actor is recorded on the transitions (the token's subject).
	Actor string
	// Results, for resolving a step, become its results (nil keeps them).
	Results json.RawMessage
	// StepsChannel is NOTIFYed when steps became runnable; CancelChannel
	// with the task id (or "step:<id>") when running handlers must stop.
	StepsChannel  string
	CancelChannel string
	// Stagger, as in FinishParams.
	Stagger time.Duration
	// InTx runs inside the transaction with the changes; an error rolls back.
	InTx func(ctx context.Context, tx Tx, changes []Change) error

	maxResultBytes int // the store's, for subtasks' results (settleSubtasks)
}

//go:embed sql/task_lock.sql
var taskLockSQL string

//go:embed sql/task_set_status.sql
var taskSetStatusSQL string

//go:embed sql/task_cancel_steps.sql
var taskCancelStepsSQL string

//go:embed sql/step_lock.sql
var stepLockSQL string

//go:embed sql/steps_retry_failed.sql
var stepsRetryFailedSQL string

//go:embed sql/step_resolve.sql
var stepResolveSQL string

//go:embed sql/step_cancel.sql
var stepCancelSQL string

//go:embed sql/notify.sql
var notifySQL string

// action runs fn with the task locked, then the InTx hook.
func (s *Store) action(ctx context.Context, op string, a Action, fn func(tx pgx.Tx, status string) ([]Change, error)) ([]Change, error) {
	var changes []Change
	a.maxResultBytes = s.maxResultBytes
	err := s.inTx(ctx, op, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, taskLockSQL, a.TaskID).Scan(&status); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return keep(ErrNotFound)
			}
			return err
		}
		var err error
		if changes, err = fn(tx, status); err != nil {
			return err
		}
		if a.InTx != nil {
			if err := a.InTx(ctx, Tx{tx}, changes); err != nil {
				return keep(err)
			}
		}
		return nil
	})
	return changes, err
}

func meta(reason string) string {
	b, _ := json.Marshal(map[string]string{"reason": reason})
	return string(b)
}

// moveTask moves the locked task and records the change.
func moveTask(ctx context.Context, tx pgx.Tx, a Action, from, to, reason string, changes *[]Change) error {
	var run int
	err := tx.QueryRow(ctx, taskSetStatusSQL, a.TaskID, to, from, meta(reason), nullable(a.Actor)).Scan(new(uuid.UUID), &run)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	*changes = append(*changes, Change{TaskID: a.TaskID, From: from, To: to, Reason: reason, Run: run})
	return nil
}

// reopen brings a task back to in_progress so that its counters can
// finalise it again: pending → in_progress, or error → pending → in_progress.
func reopen(ctx context.Context, tx pgx.Tx, a Action, status, reason string, changes *[]Change) error {
	switch status {
	case "in_progress":
		return nil
	case "error":
		if err := moveTask(ctx, tx, a, "error", "pending", reason, changes); err != nil {
			return err
		}
		fallthrough
	case "pending":
		return moveTask(ctx, tx, a, "pending", "in_progress", reason, changes)
	}
	return keep(&StateError{Resource: "task", Action: "change a step of", State: status})
}

// CancelTask cancels a task and its unfinished steps (Tasker's destroy).
// Tasks already cancelled cannot be cancelled again.
func (s *Store) CancelTask(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "cancel task", a, func(tx pgx.Tx, status string) ([]Change, error) {
		return cancelLockedTask(ctx, tx, a, status)
	})
}

// cancelLockedTask is CancelTask on a task already locked in tx, whose
// status is status; bulk cancel (bulk.go) runs it for each task of a batch.
func cancelLockedTask(ctx context.Context, tx pgx.Tx, a Action, status string) ([]Change, error) {
	if status == "cancelled" {
		return nil, keep(&StateError{Resource: "task", Action: "cancel", State: status})
	}
	var changes []Change
	rows, err := tx.Query(ctx, taskCancelStepsSQL, a.TaskID, meta("task_cancelled"), nullable(a.Actor))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		c := Change{TaskID: a.TaskID, To: "cancelled", Reason: "task_cancelled"}
		if err := rows.Scan(&c.StepID, &c.From, &c.Attempt); err != nil {
			rows.Close()
			return nil, err
		}
		changes = append(changes, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := moveTask(ctx, tx, a, status, "cancelled", "cancelled", &changes); err != nil {
		return nil, err
	}
	if err := cancelSubtasksOfTask(ctx, tx, a, &changes); err != nil { // subtask.go
		return nil, err
	}
	if _, err := tx.Exec(ctx, notifySQL, a.CancelChannel, a.TaskID.String()); err != nil {
		return nil, err
	}
	return changes, nil
}

// RetryTask puts a failed task's failed steps back to pending.
func (s *Store) RetryTask(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "retry task", a, func(tx pgx.Tx, status string) ([]Change, error) {
		return retryLockedTask(ctx, tx, a, status)
	})
}

// retryLockedTask is RetryTask on a task already locked in tx, whose
// status is status; bulk retry (bulk.go) runs it for each task of a batch.
func retryLockedTask(ctx context.Context, tx pgx.Tx, a Action, status string) ([]Change, error) {
	if status != "error" {
		return nil, keep(&StateError{Resource: "task", Action: "retry", State: status})
	}
	var changes []Change
	if err := retryFailed(ctx, tx, a, nil, &changes); err != nil {
		return nil, err
	}
	if err := moveTask(ctx, tx, a, "error", "pending", "retry_requested", &changes); err != nil {
		return nil, err
	}
	return changes, nil
}

func retryFailed(ctx context.Context, tx pgx.Tx, a Action, stepID *uuid.UUID, changes *[]Change) error {
	rows, err := tx.Query(ctx, stepsRetryFailedSQL, a.TaskID, stepID, meta("retry_requested"), nullable(a.Actor), a.StepsChannel)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		c := Change{TaskID: a.TaskID, From: "error", To: "pending", Reason: "retry_requested"}
		var n int64
		if err := rows.Scan(&c.StepID, &c.Attempt, &n); err != nil {
			return err
		}
		*changes = append(*changes, c)
	}
	return rows.Err()
}

// ResolveTask resolves a failed task by hand.
func (s *Store) ResolveTask(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "resolve task", a, func(tx pgx.Tx, status string) ([]Change, error) {
		if status != "error" {
			return nil, keep(&StateError{Resource: "task", Action: "resolve", State: status})
		}
		var changes []Change
		err := moveTask(ctx, tx, a, "error", "resolved_manually", "resolved_manually", &changes)
		return changes, err
	})
}

// lockStep locks a step of the (locked) task.
func lockStep(ctx context.Context, tx pgx.Tx, a Action) (status string, attempts int, err error) {
	var parents int
	err = tx.QueryRow(ctx, stepLockSQL, a.StepID, a.TaskID).Scan(&status, &attempts, &parents)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, keep(ErrNotFound)
	}
	return status, attempts, err
}

// settleOne finishes what a manual step action started: counts on the
// task and finalisation (through the same code as the engine's flushes).
func settleOne(ctx context.Context, tx pgx.Tx, a Action, released bool, delta taskDelta, changes *[]Change) error {
	p := settleParams{counts: map[uuid.UUID]*taskDelta{a.TaskID: &delta}, channel: a.StepsChannel, stagger: a.Stagger,
		actor: a.Actor, meta: meta("step_changed"), maxResultBytes: a.maxResultBytes}
	if released {
		p.released = []uuid.UUID{a.StepID}
	}
	var res FinishResult
	if err := settle(ctx, tx, p, &res); err != nil {
		return err
	}
	for _, f := range res.Finalized {
		*changes = append(*changes, Change{TaskID: f.TaskID, From: "in_progress", To: f.Status, Run: f.Run})
	}
	return nil
}

// RetryStep puts one failed step back to pending with a fresh budget; a
// failed task is reopened.
func (s *Store) RetryStep(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "retry step", a, func(tx pgx.Tx, taskStatus string) ([]Change, error) {
		status, _, err := lockStep(ctx, tx, a)
		if err != nil {
			return nil, err
		}
		if status != "error" {
			return nil, keep(&StateError{Resource: "step", Action: "retry", State: status})
		}
		if taskStatus != "error" && taskStatus != "in_progress" && taskStatus != "pending" {
			return nil, keep(&StateError{Resource: "task", Action: "retry a step of", State: taskStatus})
		}
		var changes []Change
		id := a.StepID
		if err := retryFailed(ctx, tx, a, &id, &changes); err != nil {
			return nil, err
		}
		if taskStatus == "error" {
			if err := moveTask(ctx, tx, a, "error", "pending", "step_retry_requested", &changes); err != nil {
				return nil, err
			}
		}
		return changes, nil
	})
}

// ResolveStep resolves a pending or failed step by hand: its dependents
// proceed, and the task may complete.
func (s *Store) ResolveStep(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "resolve step", a, func(tx pgx.Tx, taskStatus string) ([]Change, error) {
		status, attempts, err := lockStep(ctx, tx, a)
		if err != nil {
			return nil, err
		}
		if status != "pending" && status != "error" {
			return nil, keep(&StateError{Resource: "step", Action: "resolve", State: status})
		}
		var changes []Change
		if err := reopen(ctx, tx, a, taskStatus, "step_resolved", &changes); err != nil {
			return nil, err
		}
		var results *string
		if len(a.Results) > 0 {
			r := string(a.Results)
			results = &r
		}
		rows, err := tx.Query(ctx, stepResolveSQL, a.StepID, status, results, meta("resolved_manually"), nullable(a.Actor))
		if err != nil {
			return nil, err
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		changes = append(changes, Change{TaskID: a.TaskID, StepID: a.StepID, From: status, To: "resolved_manually", Attempt: attempts})
		delta := taskDelta{done: 1}
		if status == "error" {
			// It had been counted as finished and failed; now it is finished and fine.
			delta = taskDelta{done: 0, failed: -1}
		}
		return changes, settleOne(ctx, tx, a, true, delta, &changes)
	})
}

// CancelStep cancels one step; its dependents never run, and the task
// fails once nothing else can run.
func (s *Store) CancelStep(ctx context.Context, a Action) ([]Change, error) {
	return s.action(ctx, "cancel step", a, func(tx pgx.Tx, taskStatus string) ([]Change, error) {
		status, attempts, err := lockStep(ctx, tx, a)
		if err != nil {
			return nil, err
		}
		if status != "pending" && status != "in_progress" && status != "error" {
			return nil, keep(&StateError{Resource: "step", Action: "cancel", State: status})
		}
		var changes []Change
		if err := reopen(ctx, tx, a, taskStatus, "step_cancelled", &changes); err != nil {
			return nil, err
		}
		rows, err := tx.Query(ctx, stepCancelSQL, a.StepID, status, meta("cancelled"), nullable(a.Actor))
		if err != nil {
			return nil, err
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		changes = append(changes, Change{TaskID: a.TaskID, StepID: a.StepID, From: status, To: "cancelled", Attempt: attempts})
		if err := cancelSubtaskOfStep(ctx, tx, a, &changes); err != nil { // subtask.go
			return nil, err
		}
		if status == "in_progress" {
			if _, err := tx.Exec(ctx, notifySQL, a.CancelChannel, "step:"+a.StepID.String()); err != nil {
				return nil, err
			}
		}
		delta := taskDelta{done: 1, failed: 1}
		if status == "error" {
			delta = taskDelta{} // already counted as finished and failed
		}
		return changes, settleOne(ctx, tx, a, false, delta, &changes)
	})
}

// ResolveAllBypassed completes a new task whose steps were all bypassed:
// nothing will ever be claimed for it, so nothing else would finish it.
func (s *Store) ResolveAllBypassed(ctx context.Context, taskID uuid.UUID) ([]Change, error) {
	a := Action{TaskID: taskID}
	return s.action(ctx, "complete bypassed task", a, func(tx pgx.Tx, status string) ([]Change, error) {
		var changes []Change
		if status != "pending" {
			return nil, nil
		}
		if err := moveTask(ctx, tx, a, "pending", "in_progress", "all_steps_bypassed", &changes); err != nil {
			return nil, err
		}
		err := moveTask(ctx, tx, a, "in_progress", "complete", "all_steps_bypassed", &changes)
		return changes, err
	})
}
