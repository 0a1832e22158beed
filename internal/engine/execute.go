package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/jsonb"
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
	// detached: the handler handed the attempt over (handler.ErrDetached,
	// a subtask waiting for its child); nothing is written for it.
	detached bool

	// For events: the claim, when the handler started and how long it ran,
	// and the custom events it emitted.
	step    *store.ClaimedStep
	started time.Time
	elapsed time.Duration
	custom  []handler.CustomEvent
}

// stepTimedOut is the cause of a handler's context ending at the step's
// timeout. A type, not an error built per attempt: formatted only when
// read, not for every step that finishes in time.
type stepTimedOut time.Duration

func (d stepTimedOut) Error() string {
	return fmt.Sprintf("step timed out after %s", time.Duration(d))
}

// Causes of a handler's context ending early.
var (
	errLeaseLost     = errors.New("the step's lease was lost (another replica may run it)")
	errTaskCancelled = errors.New("the task was cancelled")
)

// claimed starts a handler for each claimed step. events are the claim's,
// when its transaction already built them.
func (e *Engine) claimed(ctx, runCtx context.Context, steps []store.ClaimedStep, events []Event) {
	var published chan struct{} // closed once a late claim's events are out
	if e.cfg.Events != nil {
		// Published before any handler starts, so that a step's claim
		// precedes its step.before_handle; after the events of the change
		// that made it runnable, when that one is still publishing.
		if events == nil {
			events = claimEvents(steps)
		}
		if e.order.blocked(steps) {
			published = make(chan struct{})
			go func() {
				e.order.wait(steps, 5*time.Second)
				e.cfg.Events.Committed(ctx, events)
				close(published)
			}()
		} else {
			e.cfg.Events.Committed(ctx, events)
		}
	}
	for _, s := range steps {
		ref := store.StepRef{StepID: s.StepID, TaskID: s.TaskID, Attempt: s.Attempt}
		e.slots <- struct{}{}
		stepCtx, cancel := context.WithCancelCause(runCtx)
		e.mu.Lock()
		e.running[s.StepID] = &run{ref: ref, cancel: cancel}
		e.mu.Unlock()
		e.handlers.Add(1)
		go func() {
			defer e.handlers.Done()
			if published != nil {
				<-published
			}
			o := e.execute(stepCtx, &s, ref)
			o.step = &s
			cancel(nil)
			e.mu.Lock()
			delete(e.running, s.StepID)
			e.mu.Unlock()
			// A handler Stop cancelled failed only because it was stopped:
			// its step is released (the attempt given back), not failed,
			// so its outcome is not written. Written first, it would spend
			// an attempt and leave nothing to release.
			if !o.detached && !(o.failed && e.releasing.Load()) {
				e.outcomes <- o
			}
			<-e.slots
			e.poke()
		}()
	}
}

// execute runs one attempt and turns what the handler did into an outcome.
func (e *Engine) execute(ctx context.Context, s *store.ClaimedStep, ref store.StepRef) outcome {
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
	hctx, cancel := context.WithTimeoutCause(ctx, timeout, stepTimedOut(timeout))
	defer cancel()
	step := handler.Step{
		TaskID: s.TaskID, StepID: s.StepID, Namespace: s.Namespace, TaskName: s.TaskName, TaskVersion: s.TaskVersion,
		StepName: s.Name, Attempt: s.Attempt, Context: s.Context, Inputs: s.Inputs, Parents: s.Parents,
		Config: tmpl.HandlerConfig, CorrelationID: s.CorrelationID, Traceparent: s.Traceparent,
	}
	// The handler gets the context as it is; what it says back (its error,
	// its custom events) leaves the engine without the values the schema
	// marks x-sensitive, for logs, events, webhooks and traces.
	scrub := reg.ContextScrubber(s.Context)
	if e.cfg.Events == nil {
		results, err := e.safeHandle(hctx, kind, step, scrub)
		o := e.handled(hctx, ref, tmpl, results, err)
		o.scrub(scrub)
		return o
	}
	var recorder *handler.EventRecorder
	if len(tmpl.CustomEvents) > 0 || len(reg.Template.CustomEvents) > 0 {
		recorder = handler.NewEventRecorder(tmpl.CustomEvents, reg.Template.CustomEvents)
		step.Emit = recorder.Emit
	}
	if e.decorator != nil {
		hctx, step = e.decorator.DecorateStep(hctx, step)
	}
	started := time.Now()
	e.cfg.Events.Committed(ctx, []Event{handleEvent(EventStepBeforeHandle, s, ref.Attempt, started, 0, nil)})
	results, err := e.safeHandle(hctx, kind, step, scrub)
	o := e.handled(hctx, ref, tmpl, results, err)
	o.started, o.elapsed = started, time.Since(started)
	if recorder != nil {
		o.custom = recorder.Events()
	}
	o.scrub(scrub)
	var errDoc json.RawMessage
	if o.failed {
		errDoc = o.err
	}
	e.cfg.Events.Committed(ctx, []Event{handleEvent(EventStepHandle, s, ref.Attempt, started, o.elapsed, errDoc)})
	return o
}

// handled turns what a handler returned into an outcome.
func (e *Engine) handled(hctx context.Context, ref store.StepRef, tmpl *registry.StepTemplate, results json.RawMessage, err error) outcome {
	if errors.Is(err, handler.ErrDetached) {
		return outcome{ref: ref, detached: true}
	}
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
	if off, why := jsonb.Unstorable(results); off >= 0 {
		return e.failure(ref, tmpl, fmt.Errorf("results hold %s at byte %d", why, off), false, 0)
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
	// A NUL in a message (a response body quoted in an error) would make
	// the error document unstorable, and with it the whole flush.
	body := map[string]any{"message": strings.ReplaceAll(err.Error(), "\x00", "\uFFFD"), "attempt": ref.Attempt, "retryable": retryable}
	if retryAfter > 0 {
		body["retry_after_seconds"] = retryAfter.Seconds()
	}
	raw, _ := json.Marshal(body)
	return outcome{ref: ref, failed: true, err: raw, retryable: retryable, delay: b.Delay(ref.Attempt, retryAfter)}
}

// scrub removes the task's sensitive context values from the attempt's
// error and custom event payloads. Results are kept as they are: the
// step's children read them, and they reach no log, event or span.
func (o *outcome) scrub(sc registry.Scrubber) {
	if sc.Empty() {
		return
	}
	o.err = sc.JSON(o.err)
	if len(o.custom) == 0 {
		return
	}
	custom := make([]handler.CustomEvent, len(o.custom))
	for i, c := range o.custom {
		c.Payload = sc.JSON(c.Payload)
		custom[i] = c
	}
	o.custom = custom
}

// safeHandle runs a handler; a panic is a failed attempt, not a dead
// replica. The panic's value is logged without the sensitive values sc
// knows.
func (e *Engine) safeHandle(ctx context.Context, kind handler.Kind, step handler.Step, sc registry.Scrubber) (results json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.logger.ErrorContext(ctx, "handler panicked", slog.String("kind", kind.Name()), slog.String("step_id", step.StepID.String()),
				slog.String("panic", sc.Text(fmt.Sprint(p))), slog.String("stack", string(debug.Stack())))
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
