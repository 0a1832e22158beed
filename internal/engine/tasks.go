package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// CreateTaskRequest asks for a new task from a registered template.
type CreateTaskRequest struct {
	Namespace string
	Name      string
	// Version "" means the highest registered.
	Version        string
	Context        json.RawMessage
	Initiator      string
	SourceSystem   string
	Reason         string
	Tags           []string
	Priority       int
	RunAt          *time.Time
	BypassSteps    []string
	IdempotencyKey string
	CorrelationID  string
	Traceparent    string
	Actor          string
}

// FieldError points at a part of a request that is not acceptable.
type FieldError = registry.FieldError

// ValidationError lists what is wrong with a request.
type ValidationError = registry.ValidationError

// ErrNotFound means the task or step does not exist.
var ErrNotFound = store.ErrNotFound

// TaskView is a task with its steps and, when asked, transitions.
type TaskView struct {
	Task        *store.Task
	Steps       []store.Step
	Transitions []store.Transition
}

// CreateTask validates the request against its template and writes the
// task, its steps and edges in one transaction. created is false when an
// idempotency key returned an existing task.
func (e *Engine) CreateTask(ctx context.Context, req CreateTaskRequest) (view *TaskView, created bool, err error) {
	reg, err := e.cfg.Templates.Resolve(ctx, req.Namespace, req.Name, req.Version)
	if errors.Is(err, registry.ErrNotFound) {
		what := req.Namespace + "." + req.Name
		if req.Version != "" {
			what += "@" + req.Version
		}
		return nil, false, &ValidationError{Errors: []FieldError{{Pointer: "/name", Message: fmt.Sprintf("no registered template %s", what)}}}
	}
	if err != nil {
		return nil, false, err
	}
	if len(req.Context) == 0 || string(req.Context) == "null" {
		req.Context = json.RawMessage("{}")
	}
	var problems []FieldError
	for _, fe := range reg.ValidateContext(req.Context) {
		fe.Pointer = "/context" + fe.Pointer
		problems = append(problems, fe)
	}
	tmpl := reg.Template
	bypass := map[string]bool{}
	for i, name := range req.BypassSteps {
		st, ok := tmpl.Step(name)
		switch {
		case !ok:
			problems = append(problems, FieldError{Pointer: fmt.Sprintf("/bypass_steps/%d", i), Message: fmt.Sprintf("no step %q in %s", name, tmpl.FullName())})
		case !st.Skippable:
			problems = append(problems, FieldError{Pointer: fmt.Sprintf("/bypass_steps/%d", i), Message: fmt.Sprintf("step %q is not skippable", name)})
		default:
			bypass[name] = true
		}
	}
	// Concurrency and rate keys are rendered from the context now: a
	// context without the key's field is the caller's mistake (422), not a
	// step that can never run.
	taskKey, taskLimit, err := tmpl.TaskLimitKey(req.Context)
	if err != nil {
		problems = append(problems, FieldError{Pointer: "/context", Message: err.Error()})
	}
	type stepLimits struct {
		key, rateKey string
		limit        int
		rate         float64
	}
	limits := make(map[string]stepLimits, len(tmpl.StepTemplates))
	for i := range tmpl.StepTemplates {
		st := &tmpl.StepTemplates[i]
		if st.Concurrency == nil && st.RateLimit == nil {
			continue
		}
		var l stepLimits
		var kerr, rerr error
		l.key, l.limit, kerr = tmpl.StepLimitKey(st, req.Context)
		l.rateKey, l.rate, rerr = st.RateKey(req.Context)
		for _, e := range []error{kerr, rerr} {
			if e != nil {
				problems = append(problems, FieldError{Pointer: "/context", Message: e.Error()})
			}
		}
		limits[st.Name] = l
	}
	if len(problems) > 0 {
		return nil, false, &ValidationError{Errors: problems}
	}

	nt := store.NewTask{
		LimitKey: taskKey, LimitMax: taskLimit,
		TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: reg.ID, Namespace: tmpl.NamespaceName, Name: tmpl.Name,
		Version: tmpl.Version, Context: req.Context, Initiator: req.Initiator, SourceSystem: req.SourceSystem,
		Reason: req.Reason, Tags: req.Tags, IdempotencyKey: req.IdempotencyKey, Priority: req.Priority,
		RunAt: req.RunAt, CorrelationID: req.CorrelationID, Traceparent: req.Traceparent, Actor: req.Actor,
		Stagger: e.cfg.Stagger,
	}
	if req.IdempotencyKey != "" {
		nt.RequestHash = requestHash(req)
	}
	ids := make(map[string]uuid.UUID, len(tmpl.StepTemplates))
	for _, st := range tmpl.StepTemplates {
		ids[st.Name] = uuid.Must(uuid.NewV7())
	}
	for _, st := range tmpl.StepTemplates {
		unfinished := 0
		for _, parent := range st.DependsOn {
			nt.Edges = append(nt.Edges, store.Edge{From: ids[parent], To: ids[st.Name]})
			if !bypass[parent] {
				unfinished++
			}
		}
		nt.Steps = append(nt.Steps, store.NewStep{
			StepID: ids[st.Name], NamedStepID: reg.StepIDs[st.Name], Name: st.Name, Handler: st.Handler,
			Queue: st.Queue(), RetryLimit: st.RetryLimit, Retryable: st.Retryable, Skippable: st.Skippable,
			Bypassed: bypass[st.Name], Inputs: nonEmpty(st.Inputs), UnfinishedParents: unfinished,
			LimitKey: limits[st.Name].key, LimitMax: limits[st.Name].limit,
			RateKey: limits[st.Name].rateKey, RatePerSecond: limits[st.Name].rate,
		})
	}
	var events []Event
	if e.wantsTx(createEventNames...) {
		nt.InTx = func(ctx context.Context, tx store.Tx, _ uuid.UUID) error {
			events = createEvents(&nt)
			return e.cfg.Events.InTx(ctx, tx, events)
		}
	}
	held := []uuid.UUID{nt.TaskID}
	if e.cfg.Events != nil {
		// The task's claims are published after its creation's events.
		e.order.hold(held)
		defer func() { e.order.release(held) }()
	}
	read, taskID, created, err := e.store.CreateTaskRead(ctx, nt)
	if err != nil {
		return nil, false, err
	}
	if created && len(bypass) == len(nt.Steps) {
		// Nothing to run: every step was bypassed.
		if _, err := e.store.ResolveAllBypassed(ctx, taskID); err != nil {
			return nil, false, err
		}
	}
	if created {
		if e.cfg.Events != nil {
			// Published before waking the claim loop, so that the task's
			// creation precedes its claims.
			if events == nil {
				events = createEvents(&nt)
				e.catchUp(ctx, events, createEventNames)
			}
			e.cfg.Events.Committed(ctx, events)
			e.order.release(held)
			held = nil
		}
		e.poke()
		e.announceRemote(ctx, nt.Steps, nt.RunAt) // subtask.go
	}
	if read != nil && len(bypass) < len(nt.Steps) {
		// Read in the create's own transaction: no second round trip.
		return &TaskView{Task: read.Task, Steps: read.Steps}, true, nil
	}
	view, err = e.GetTask(ctx, taskID, false)
	return view, created, err
}

func nonEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	return raw
}

// requestHash identifies a create request, so that a retried request with
// the same idempotency key is told apart from a different one. Decoding and
// re-encoding the context makes key order and spacing irrelevant.
func requestHash(req CreateTaskRequest) string {
	var ctxDoc any
	_ = json.Unmarshal(req.Context, &ctxDoc)
	b, _ := json.Marshal(map[string]any{
		"namespace": req.Namespace, "name": req.Name, "version": req.Version, "context": ctxDoc,
		"initiator": req.Initiator, "source_system": req.SourceSystem, "reason": req.Reason, "tags": req.Tags,
		"priority": req.Priority, "run_at": req.RunAt, "bypass_steps": req.BypassSteps,
	})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// GetTask reads a task with its steps, and its transitions when asked.
func (e *Engine) GetTask(ctx context.Context, id uuid.UUID, transitions bool) (*TaskView, error) {
	t, steps, err := e.store.TaskWithSteps(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &TaskView{Task: t, Steps: steps}
	if transitions {
		if v.Transitions, err = e.store.Transitions(ctx, id, nil); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// GetStep reads one step of a task.
func (e *Engine) GetStep(ctx context.Context, taskID, stepID uuid.UUID) (*store.Step, []store.Transition, error) {
	st, err := e.store.GetStep(ctx, taskID, stepID)
	if err != nil {
		return nil, nil, err
	}
	tr, err := e.store.Transitions(ctx, taskID, &stepID)
	return st, tr, err
}

// Manual actions. Each runs in one transaction that locks the task first,
// writes transitions with the actor, and answers a *store.StateError
// (errors.Is ErrConflict) when the current state does not allow it.

// CancelTask cancels a task: its runnable, backing-off and running steps are
// cancelled, and running handlers see their context cancelled.
func (e *Engine) CancelTask(ctx context.Context, taskID uuid.UUID, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, Actor: actor}, e.store.CancelTask)
}

// RetryTask sends a failed task's failed steps back to pending.
func (e *Engine) RetryTask(ctx context.Context, taskID uuid.UUID, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, Actor: actor}, e.store.RetryTask)
}

// ResolveTask resolves a failed task by hand.
func (e *Engine) ResolveTask(ctx context.Context, taskID uuid.UUID, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, Actor: actor}, e.store.ResolveTask)
}

// RetryStep sends one failed step back to pending with a fresh retry budget.
func (e *Engine) RetryStep(ctx context.Context, taskID, stepID uuid.UUID, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, StepID: stepID, Actor: actor}, e.store.RetryStep)
}

// ResolveStep resolves a pending or failed step by hand, optionally with
// results; its dependents proceed.
func (e *Engine) ResolveStep(ctx context.Context, taskID, stepID uuid.UUID, results json.RawMessage, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, StepID: stepID, Actor: actor, Results: results}, e.store.ResolveStep)
}

// CancelStep cancels one step; its dependents never run.
func (e *Engine) CancelStep(ctx context.Context, taskID, stepID uuid.UUID, actor string) error {
	return e.act(ctx, store.Action{TaskID: taskID, StepID: stepID, Actor: actor}, e.store.CancelStep)
}

func (e *Engine) act(ctx context.Context, a store.Action, fn func(context.Context, store.Action) ([]store.Change, error)) error {
	a.StepsChannel, a.CancelChannel, a.Stagger = e.channel, e.cancelChannel, e.cfg.Stagger
	held := []uuid.UUID{a.TaskID}
	if e.cfg.Events != nil {
		a.InTx = func(ctx context.Context, tx store.Tx, changes []store.Change) error {
			return e.cfg.Events.InTx(ctx, tx, changeEvents(changes))
		}
		// The claims the action makes possible are published after it.
		e.order.hold(held)
		defer func() { e.order.release(held) }()
	}
	changes, err := fn(ctx, a)
	if err != nil {
		return err
	}
	// Handlers of this replica stop at once; other replicas hear the NOTIFY.
	for _, c := range changes {
		if c.To == "cancelled" && c.StepID != uuid.Nil {
			e.cancelStep(c.StepID, errTaskCancelled)
		}
	}
	if e.cfg.Events != nil {
		e.cfg.Events.Committed(ctx, changeEvents(changes))
		e.order.release(held)
		held = nil
	}
	e.poke()
	return nil
}

func changeEvents(changes []store.Change) []Event {
	out := make([]Event, 0, len(changes))
	for _, c := range changes {
		if c.StepID == uuid.Nil {
			ev := taskEvent(c.TaskID, c.From, c.To, c.Reason)
			ev.Run = c.Run
			out = append(out, ev)
		} else {
			out = append(out, stepEvent(store.StepRef{StepID: c.StepID, TaskID: c.TaskID, Attempt: c.Attempt}, c.From, c.To, c.Reason))
		}
	}
	return out
}
