package store

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// A subtask step starts a child task and waits for it with no slot and no
// lease: AttachSubtask links the child and hands the step's attempt over to
// it, and the child's finalisation (settle) completes or fails the step in
// the same transaction. Cancelling the parent cancels the child.

//go:embed sql/subtask_child_of_step.sql
var subtaskChildOfStepSQL string

//go:embed sql/subtask_lock_child.sql
var subtaskLockChildSQL string

//go:embed sql/subtask_link.sql
var subtaskLinkSQL string

//go:embed sql/subtask_results.sql
var subtaskResultsSQL string

//go:embed sql/subtask_detach.sql
var subtaskDetachSQL string

//go:embed sql/subtask_step_status.sql
var subtaskStepStatusSQL string

//go:embed sql/subtask_waiting_parents.sql
var subtaskWaitingParentsSQL string

//go:embed sql/subtask_cancel_tree.sql
var subtaskCancelTreeSQL string

//go:embed sql/subtask_links.sql
var subtaskLinksSQL string

// SubtaskOwnerPrefix starts the lease_owner of a step waiting for its child
// task; the rest is the child's id.
const SubtaskOwnerPrefix = "subtask:"

// SubtaskChild returns the child task a subtask step started, or uuid.Nil.
func (s *Store) SubtaskChild(ctx context.Context, parentStepID uuid.UUID) (uuid.UUID, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, subtaskChildOfStepSQL, parentStepID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, translate("subtask child", err)
	}
	return id, nil
}

// AttachParams links a child task to the subtask step that started it.
type AttachParams struct {
	ParentTaskID uuid.UUID
	ParentStepID uuid.UUID
	// Attempt is the parent step's attempt (the fencing token).
	Attempt     int
	ChildTaskID uuid.UUID
	// Wait bounds the wait for the child: the step's deadline, after which
	// the attempt fails as timed out.
	Wait time.Duration
	// RetryDelay is how long the parent step waits before its next attempt
	// should the child end in error.
	RetryDelay time.Duration
	// Actor and CancelChannel are used when the parent step turns out to be
	// cancelled: the child is cancelled with it.
	Actor         string
	CancelChannel string
}

// AttachState says what AttachSubtask found.
type AttachState int

// What AttachSubtask found.
const (
	// AttachWaiting: the parent step now waits for the child, holding no
	// lease; the child's finalisation will finish it.
	AttachWaiting AttachState = iota + 1
	// AttachChildDone: the child had already completed (or was resolved);
	// Results are the parent step's results.
	AttachChildDone
	// AttachChildFailed: the child rests in error.
	AttachChildFailed
	// AttachChildCancelled: the child was cancelled; the parent step cannot
	// succeed.
	AttachChildCancelled
	// AttachParentCancelled: the parent step was cancelled meanwhile; the
	// child was cancelled with it.
	AttachParentCancelled
	// AttachStale: the parent step is no longer at this attempt (its lease
	// was lost); nothing changed but the link.
	AttachStale
)

// AttachResult is what AttachSubtask did.
type AttachResult struct {
	State   AttachState
	Results json.RawMessage // AttachChildDone
	// Changes lists the cancellations made for AttachParentCancelled.
	Changes []Change
}

// ErrSubtaskTaken means the child task already belongs to another step.
var ErrSubtaskTaken = errors.New("the task is already the subtask of another step")

// AttachSubtask links a child task to its parent step and, while the child
// runs, hands the step's attempt over to it (AttachWaiting). A child that
// already finished is reported instead; the caller completes or fails the
// step itself. The child's row is locked first, so the link and the child's
// finalisation are ordered: the step is finished exactly once.
func (s *Store) AttachSubtask(ctx context.Context, p AttachParams) (*AttachResult, error) {
	var res *AttachResult
	err := s.inTx(ctx, "attach subtask", func(tx pgx.Tx) error {
		res = &AttachResult{}
		var status string
		var owner *uuid.UUID
		if err := tx.QueryRow(ctx, subtaskLockChildSQL, p.ChildTaskID).Scan(&status, &owner); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return keep(fmt.Errorf("attach subtask %s: %w", p.ChildTaskID, ErrNotFound))
			}
			return err
		}
		if owner != nil && *owner != p.ParentStepID {
			return keep(fmt.Errorf("attach subtask %s to step %s: %w", p.ChildTaskID, p.ParentStepID, ErrSubtaskTaken))
		}
		if _, err := tx.Exec(ctx, subtaskLinkSQL, p.ChildTaskID, p.ParentTaskID, p.ParentStepID, p.RetryDelay.Milliseconds()); err != nil {
			return err
		}
		switch status {
		case "complete", "resolved_manually":
			res.State = AttachChildDone
			return tx.QueryRow(ctx, subtaskResultsSQL, p.ChildTaskID).Scan(&res.Results)
		case "error":
			res.State = AttachChildFailed
			return nil
		case "cancelled":
			res.State = AttachChildCancelled
			return nil
		}
		wait := max(p.Wait, time.Millisecond)
		rows, err := tx.Query(ctx, subtaskDetachSQL, p.ParentStepID, p.Attempt, p.ChildTaskID.String(), wait.Milliseconds())
		if err != nil {
			return err
		}
		detached := rows.Next()
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if detached {
			res.State = AttachWaiting
			return nil
		}
		var stepStatus string
		if err := tx.QueryRow(ctx, subtaskStepStatusSQL, p.ParentStepID).Scan(&stepStatus); err != nil {
			return err
		}
		if stepStatus != "cancelled" {
			res.State = AttachStale
			return nil
		}
		// The parent was cancelled before the link existed, so its
		// cancellation could not reach the child: cancel it now.
		res.State = AttachParentCancelled
		return cancelTree(ctx, tx, nil, &p.ParentStepID, meta("parent_cancelled"), p.Actor, p.CancelChannel, &res.Changes)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// settleSubtasks finishes the parent steps waiting for tasks that just
// reached a final state, in the transaction that finalised them: a complete
// (or resolved) child completes its parent step with its results, a failed
// child fails it (retried after the delay recorded when it started waiting,
// if the step allows), a cancelled child fails it for good. The parent steps
// are then settled like any others, which may finalise their tasks and, in
// turn, their own parents.
func settleSubtasks(ctx context.Context, tx pgx.Tx, p settleParams, finals []TaskFinal, res *FinishResult) error {
	if len(finals) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(finals))
	for i, f := range finals {
		ids[i] = f.TaskID
	}
	rows, err := tx.Query(ctx, subtaskWaitingParentsSQL, ids)
	if err != nil {
		return err
	}
	fp := FinishParams{Owner: "subtask", Channel: p.channel, Stagger: p.stagger, maxResultBytes: p.maxResultBytes}
	limit := cmp.Or(p.maxResultBytes, DefaultMaxResultBytes)
	for rows.Next() {
		var stepID, childID uuid.UUID
		var attempt int
		var childStatus, fullName string
		var delayMs int64
		var results []byte
		if err := rows.Scan(&stepID, &attempt, &childID, &childStatus, &delayMs, &fullName, &results); err != nil {
			rows.Close()
			return err
		}
		switch {
		case (childStatus == "complete" || childStatus == "resolved_manually") && len(results) > limit:
			// As the engine treats a handler's results: too large fails
			// the step for good, rather than storing them.
			msg := fmt.Sprintf("subtask %s (task %s): results are %d bytes, above the limit of %d (TASKER_MAX_RESULT_BYTES)",
				fullName, childID, len(results), limit)
			body, _ := json.Marshal(map[string]any{"message": msg, "attempt": attempt, "retryable": false,
				"child_task_id": childID, "child_status": childStatus})
			fp.Failures = append(fp.Failures, Failure{StepID: stepID, Attempt: attempt, Error: body})
		case childStatus == "complete" || childStatus == "resolved_manually":
			fp.Completions = append(fp.Completions, Completion{StepID: stepID, Attempt: attempt, Results: results})
		default:
			retryable := childStatus == "error"
			msg := fmt.Sprintf("subtask %s (task %s) ended in %s", fullName, childID, childStatus)
			body, _ := json.Marshal(map[string]any{"message": msg, "attempt": attempt, "retryable": retryable,
				"child_task_id": childID, "child_status": childStatus})
			fp.Failures = append(fp.Failures, Failure{StepID: stepID, Attempt: attempt, Error: body,
				Retryable: retryable, Delay: time.Duration(delayMs) * time.Millisecond})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(fp.Completions)+len(fp.Failures) == 0 {
		return nil
	}
	nested := &FinishResult{}
	if err := finishInTx(ctx, tx, fp, nested); err != nil {
		return err
	}
	res.Completed = append(res.Completed, nested.Completed...)
	res.Retried = append(res.Retried, nested.Retried...)
	res.Failed = append(res.Failed, nested.Failed...)
	res.Finalized = append(res.Finalized, nested.Finalized...)
	res.BecameRunnable += nested.BecameRunnable
	return nil
}

// cancelSubtasksOfTask cancels the unfinished descendants of a task being
// cancelled, and fails for good the parent step waiting for it, if it is a
// subtask itself. It runs inside CancelTask's transaction.
func cancelSubtasksOfTask(ctx context.Context, tx pgx.Tx, a Action, changes *[]Change) error {
	if err := cancelTree(ctx, tx, &a.TaskID, nil, meta("parent_cancelled"), a.Actor, a.CancelChannel, changes); err != nil {
		return err
	}
	res := &FinishResult{}
	p := settleParams{channel: a.StepsChannel, stagger: a.Stagger, actor: a.Actor, meta: meta("subtask_cancelled"),
		maxResultBytes: a.maxResultBytes}
	if err := settleSubtasks(ctx, tx, p, []TaskFinal{{TaskID: a.TaskID, Status: "cancelled"}}, res); err != nil {
		return err
	}
	for _, r := range res.Failed {
		*changes = append(*changes, Change{TaskID: r.TaskID, StepID: r.StepID, From: "in_progress", To: "error", Attempt: r.Attempt, Reason: "subtask_cancelled"})
	}
	for _, f := range res.Finalized {
		*changes = append(*changes, Change{TaskID: f.TaskID, From: "in_progress", To: f.Status, Reason: "subtask_cancelled", Run: f.Run})
	}
	return nil
}

// cancelSubtaskOfStep cancels the child task of a step being cancelled, and
// its descendants. It runs inside CancelStep's transaction.
func cancelSubtaskOfStep(ctx context.Context, tx pgx.Tx, a Action, changes *[]Change) error {
	return cancelTree(ctx, tx, nil, &a.StepID, meta("parent_cancelled"), a.Actor, a.CancelChannel, changes)
}

// cancelTree cancels the unfinished descendants of a task, or the child of
// a step and its descendants, recording the changes.
func cancelTree(ctx context.Context, tx pgx.Tx, taskID, stepID *uuid.UUID, metadata, actor, channel string, changes *[]Change) error {
	rows, err := tx.Query(ctx, subtaskCancelTreeSQL, taskID, stepID, metadata, nullable(actor), channel)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c Change
		var step *uuid.UUID
		var n int64
		if err := rows.Scan(&c.TaskID, &step, &c.From, &c.Attempt, &n, &c.Run); err != nil {
			return err
		}
		if step != nil {
			c.StepID = *step
		}
		c.To, c.Reason = "cancelled", "parent_cancelled"
		*changes = append(*changes, c)
	}
	return rows.Err()
}

// TaskLink is a task related to another as parent or child subtask.
type TaskLink struct {
	TaskID uuid.UUID
	// StepID and StepName name the parent's subtask step.
	StepID    uuid.UUID
	StepName  string
	Namespace string
	Name      string
	Version   string
	Status    string
	CreatedAt time.Time
}

// TaskLinks are a task's parent (nil unless it is a subtask) and children.
type TaskLinks struct {
	Parent   *TaskLink
	Children []TaskLink
}

// Links reads a task's parent and child tasks.
func (s *Store) Links(ctx context.Context, taskID uuid.UUID) (*TaskLinks, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, subtaskLinksSQL, taskID)
	if err != nil {
		return nil, translate("task links", err)
	}
	defer rows.Close()
	out := &TaskLinks{}
	for rows.Next() {
		var relation string
		var l TaskLink
		var step *uuid.UUID
		if err := rows.Scan(&relation, &l.TaskID, &step, &l.StepName, &l.Namespace, &l.Name, &l.Version, &l.Status, &l.CreatedAt); err != nil {
			return nil, translate("task links", err)
		}
		if step != nil {
			l.StepID = *step
		}
		if relation == "parent" {
			out.Parent = &l
		} else {
			out.Children = append(out.Children, l)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, translate("task links", err)
	}
	return out, nil
}
