package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
)

// SubtaskKeyPrefix starts the idempotency key of a subtask's child task; the
// rest is the parent step's id. A retried parent step finds its child by it
// even when the child was created but not yet linked.
const SubtaskKeyPrefix = "subtask:"

// RunSubtask implements handler.SubtaskRunner: it creates the step's child
// task once, links it to the step and hands the step's attempt over to it
// (handler.ErrDetached: no slot, no lease while it runs). When the child has
// already finished it returns its results at once; a failed child is
// retried (its failed steps run again) rather than replaced.
func (e *Engine) RunSubtask(ctx context.Context, step handler.Step, spec handler.SubtaskSpec) (json.RawMessage, error) {
	// The attempt's deadline bounds the whole wait for the child.
	wait := e.subtaskWait(ctx)
	child, err := e.store.SubtaskChild(ctx, step.StepID)
	if err != nil {
		return nil, err
	}
	full := spec.Namespace + "." + spec.Name
	if spec.Version != "" {
		full += "@" + spec.Version
	}
	if child == uuid.Nil {
		view, _, err := e.CreateTask(ctx, CreateTaskRequest{
			Namespace: spec.Namespace, Name: spec.Name, Version: spec.Version, Context: spec.Context,
			Initiator: "subtask", SourceSystem: "taskerd",
			Reason:         fmt.Sprintf("subtask of step %s of task %s (%s.%s@%s)", step.StepName, step.TaskID, step.Namespace, step.TaskName, step.TaskVersion),
			IdempotencyKey: SubtaskKeyPrefix + step.StepID.String(),
			CorrelationID:  step.CorrelationID, Traceparent: step.Traceparent,
		})
		var idem *store.IdempotencyConflictError
		var invalid *ValidationError
		switch {
		case errors.As(err, &idem):
			child = idem.TaskID // created by an earlier attempt with another context
		case errors.As(err, &invalid):
			return nil, handler.Permanent(fmt.Errorf("subtask %s: %w", full, err))
		case err != nil:
			return nil, fmt.Errorf("subtask %s: create the child task: %w", full, err)
		default:
			child = view.Task.TaskID
		}
	}
	p := store.AttachParams{ParentTaskID: step.TaskID, ParentStepID: step.StepID, Attempt: step.Attempt,
		ChildTaskID: child, Wait: wait, RetryDelay: e.subtaskRetryDelay(ctx, step), CancelChannel: e.cancelChannel}
	for retried := false; ; retried = true {
		res, err := e.store.AttachSubtask(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("subtask %s: %w", full, err)
		}
		switch res.State {
		case store.AttachWaiting:
			return nil, handler.ErrDetached
		case store.AttachChildDone:
			return res.Results, nil
		case store.AttachChildCancelled:
			return nil, handler.Permanent(fmt.Errorf("subtask %s: the child task %s was cancelled", full, child))
		case store.AttachParentCancelled:
			for _, c := range res.Changes {
				if c.StepID != uuid.Nil {
					e.cancelStep(c.StepID, errTaskCancelled)
				}
			}
			return nil, errTaskCancelled
		case store.AttachStale:
			return nil, errLeaseLost
		case store.AttachChildFailed:
			if retried {
				return nil, fmt.Errorf("subtask %s: the child task %s failed again at once", full, child)
			}
			// This attempt retries the child: its failed steps run again.
			if err := e.RetryTask(ctx, child, "subtask"); err != nil && !errors.Is(err, store.ErrConflict) {
				return nil, fmt.Errorf("subtask %s: retry the child task %s: %w", full, child, err)
			}
		}
	}
}

// subtaskWait is what is left of the attempt's deadline: the child must
// finish within it, or the attempt fails as timed out.
func (e *Engine) subtaskWait(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(time.Until(deadline), time.Millisecond)
	}
	return 30 * time.Second
}

// subtaskRetryDelay is the step's backoff after this attempt, used should
// the child end in error.
func (e *Engine) subtaskRetryDelay(ctx context.Context, step handler.Step) time.Duration {
	b := e.cfg.Backoff
	if reg, err := e.cfg.Templates.Resolve(ctx, step.Namespace, step.TaskName, step.TaskVersion); err == nil {
		if tmpl := stepTemplate(reg, step.StepName); tmpl != nil {
			if tmpl.Backoff.Base > 0 {
				b.Base = time.Duration(tmpl.Backoff.Base)
			}
			if tmpl.Backoff.Max > 0 {
				b.Max = time.Duration(tmpl.Backoff.Max)
			}
		}
	}
	return b.Delay(step.Attempt, 0)
}

// TaskLinks reads a task's parent and child subtasks.
func (e *Engine) TaskLinks(ctx context.Context, taskID uuid.UUID) (*store.TaskLinks, error) {
	return e.store.Links(ctx, taskID)
}

// announceRemote wakes remote workers waiting on other replicas when a new
// task has steps they can claim at once: the engine's own claim loop is
// poked in process, but long-polling workers hear only notifications.
func (e *Engine) announceRemote(ctx context.Context, steps []store.NewStep, runAt *time.Time) {
	if runAt != nil && runAt.After(time.Now()) {
		return // not runnable yet; the waiters' timer finds it when due
	}
	for _, s := range steps {
		if s.Queue != "" && s.UnfinishedParents == 0 && !s.Bypassed {
			if err := e.store.Notify(ctx, e.channel, ""); err != nil {
				e.logger.WarnContext(ctx, "announcing remote steps failed; workers find them at their next poll",
					slog.String("error", err.Error()))
			}
			return
		}
	}
}
