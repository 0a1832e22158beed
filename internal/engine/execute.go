package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// outcome is a finished attempt waiting to be written.
type outcome struct {
	ref       store.StepRef
	results   json.RawMessage // on success
	err       json.RawMessage // on failure: {"message": …}
	failed    bool
	retryable bool
	delay     time.Duration
}

// Causes of a handler's context ending early.
var (
	errLeaseLost     = errors.New("the step's lease was lost (another replica may run it)")
	errTaskCancelled = errors.New("the task was cancelled")
)

// claimed starts a handler for each claimed step.
func (e *Engine) claimed(ctx, runCtx context.Context, steps []store.ClaimedStep) {
	var events []Event
	for _, s := range steps {
		ref := store.StepRef{StepID: s.StepID, TaskID: s.TaskID, Attempt: s.Attempt}
		if s.TaskStarted {
			events = append(events, taskEvent(s.TaskID, "pending", "in_progress", ""))
		}
		events = append(events, stepEvent(ref, "pending", "in_progress", ""))
		e.slots <- struct{}{}
		stepCtx, cancel := context.WithCancelCause(runCtx)
		e.mu.Lock()
		e.running[s.StepID] = &run{ref: ref, cancel: cancel}
		e.mu.Unlock()
		e.handlers.Add(1)
		go func() {
			defer e.handlers.Done()
			o := e.execute(stepCtx, s, ref)
			cancel(nil)
			e.mu.Lock()
			delete(e.running, s.StepID)
			e.mu.Unlock()
			e.outcomes <- o
			<-e.slots
			e.poke()
		}()
	}
	if e.cfg.Events != nil {
		e.cfg.Events.Committed(ctx, events)
	}
}

// execute runs one attempt and turns what the handler did into an outcome.
func (e *Engine) execute(ctx context.Context, s store.ClaimedStep, ref store.StepRef) outcome {
	reg, err := e.cfg.Templates.ByID(ctx, s.NamedTaskID)
	if err != nil {
		// The template may be unreadable only for a moment (database
		// blip): retry rather than fail the step for good.
		return e.failure(ref, nil, fmt.Errorf("load template: %w", err), true, 0)
	}
	tmpl := stepTemplate(reg, s.Name)
	if tmpl == nil {
		return e.failure(ref, nil, fmt.Errorf("step %q is not in template %s.%s@%s", s.Name, s.Namespace, s.TaskName, s.TaskVersion), false, 0)
	}
	kind, ok := e.cfg.Kinds.Lookup(tmpl.Handler)
	if !ok {
		return e.failure(ref, tmpl, fmt.Errorf("no handler kind %q on this replica", tmpl.Handler), false, 0)
	}
	timeout := time.Duration(tmpl.Timeout)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	hctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("step timed out after %s", timeout))
	defer cancel()
	results, err := safeHandle(hctx, kind, handler.Step{
		TaskID: s.TaskID, StepID: s.StepID, Namespace: s.Namespace, TaskName: s.TaskName, TaskVersion: s.TaskVersion,
		StepName: s.Name, Attempt: s.Attempt, Context: s.Context, Inputs: s.Inputs, Parents: s.Parents,
		Config: tmpl.HandlerConfig, CorrelationID: s.CorrelationID, Traceparent: s.Traceparent,
	})
	if err != nil {
		if cause := context.Cause(hctx); cause != nil && hctx.Err() != nil {
			// The handler stopped because we stopped it: say why.
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		retryable, retryAfter := handler.Classify(err)
		return e.failure(ref, tmpl, err, retryable, retryAfter)
	}
	if len(results) == 0 {
		results = json.RawMessage("null")
	}
	if len(results) > e.cfg.MaxResultBytes {
		return e.failure(ref, tmpl, fmt.Errorf("results are %d bytes, above the limit of %d (TASKER_MAX_RESULT_BYTES)", len(results), e.cfg.MaxResultBytes), false, 0)
	}
	if !json.Valid(results) {
		return e.failure(ref, tmpl, errors.New("results are not valid JSON"), false, 0)
	}
	return outcome{ref: ref, results: results}
}

// failure builds a failed outcome with its backoff.
func (e *Engine) failure(ref store.StepRef, tmpl *registry.StepTemplate, err error, retryable bool, retryAfter time.Duration) outcome {
	b := e.cfg.Backoff
	if tmpl != nil {
		if tmpl.Backoff.Base > 0 {
			b.Base = time.Duration(tmpl.Backoff.Base)
		}
		if tmpl.Backoff.Max > 0 {
			b.Max = time.Duration(tmpl.Backoff.Max)
		}
	}
	body := map[string]any{"message": err.Error(), "attempt": ref.Attempt, "retryable": retryable}
	if retryAfter > 0 {
		body["retry_after_seconds"] = retryAfter.Seconds()
	}
	raw, _ := json.Marshal(body)
	return outcome{ref: ref, failed: true, err: raw, retryable: retryable, delay: b.Delay(ref.Attempt, retryAfter)}
}

// safeHandle runs a handler; a panic is a failed attempt, not a dead replica.
func safeHandle(ctx context.Context, kind handler.Kind, step handler.Step) (results json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			slog.Default().Error("handler panicked", slog.String("kind", kind.Name()), slog.String("step_id", step.StepID.String()),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("handler %q panicked: %v", kind.Name(), p)
		}
	}()
	return kind.Handle(ctx, step)
}

func stepTemplate(reg *registry.Registered, name string) *registry.StepTemplate {
	if reg == nil || reg.Template == nil {
		return nil
	}
	for i := range reg.Template.StepTemplates {
		if reg.Template.StepTemplates[i].Name == name {
			return &reg.Template.StepTemplates[i]
		}
	}
	return nil
}
