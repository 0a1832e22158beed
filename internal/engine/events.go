package engine

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
)

// Event is one state transition of a task or a step.
type Event struct {
	// Name is the event's name, e.g. "step.completed" or "task.failed".
	Name   string
	TaskID uuid.UUID
	// StepID is zero for task events.
	StepID  uuid.UUID
	Attempt int
	From    string
	To      string
	// Reason is set where the transition has one (lease_expired, released,
	// retry, cancelled, …).
	Reason string
	// Time is the replica's clock when the event was built, for logs; the
	// transition rows hold the database's time.
	Time time.Time

	// Namespace, TaskName and TaskVersion name the task's template, and
	// StepName the step. Empty where the engine does not have them at hand
	// (lease rescue, manual actions); sinks look them up. A task's creation
	// time is in its id (UUIDv7).
	Namespace, TaskName, TaskVersion, StepName string
	// CorrelationID and Traceparent are the task's, from the request that
	// created it (set where Namespace is).
	CorrelationID, Traceparent string
	// StartedAt and Duration are when the attempt's handler started and how
	// long it ran (step.handle and the transitions recording its outcome).
	StartedAt time.Time
	Duration  time.Duration
	// ReadyAt is when a claimed step became runnable (step.execution_requested).
	ReadyAt time.Time
	// RetryAt is when a failed attempt runs again (step.backoff and the
	// step.failed of an attempt that will be retried).
	RetryAt time.Time
	// Error is a failed attempt's error document ({"message": …}).
	Error json.RawMessage
	// Custom marks a business event a handler emitted (declared in the
	// template's custom_events); Payload is its payload.
	Custom  bool
	Payload json.RawMessage
	// Count is how many steps a workflow event is about.
	Count int
	// Run is the task's run on its final transitions and reopenings: 1,
	// plus one per manual retry of the failed task (0: not known). A
	// retried task is finalised once per run.
	Run int
}

// DecorateStep gives a step run outside the engine's handlers (by a remote
// worker) what the event sink gives the engine's own: step.Traceparent
// naming the attempt's span, and the trace context and log fields in ctx.
func (e *Engine) DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step) {
	if e.decorator == nil {
		return ctx, step
	}
	return e.decorator.DecorateStep(ctx, step)
}

// publishOrder keeps each task's events in causal order although different
// goroutines publish them: a flush's commit can wake a claim (by NOTIFY)
// that publishes its step.execution_requested before the flush goroutine
// got to publish the parent's step.completed. A change holds its tasks from
// just before its commit until its events are published; a claim of a held
// task publishes (and lets its handlers start) only once released.
type publishOrder struct {
	mu   sync.Mutex
	cond *sync.Cond
	held map[uuid.UUID]int
}

func (p *publishOrder) hold(ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held, p.cond = map[uuid.UUID]int{}, sync.NewCond(&p.mu)
	}
	for _, id := range ids {
		p.held[id]++
	}
}

func (p *publishOrder) release(ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if p.held[id]--; p.held[id] <= 0 {
			delete(p.held, id)
		}
	}
	p.cond.Broadcast()
}

// blocked reports whether a step of steps belongs to a held task.
func (p *publishOrder) blocked(steps []store.ClaimedStep) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blockedLocked(steps)
}

func (p *publishOrder) blockedLocked(steps []store.ClaimedStep) bool {
	for i := range steps {
		if p.held[steps[i].TaskID] > 0 {
			return true
		}
	}
	return false
}

// wait returns once no step of steps belongs to a held task, or after
// limit: order is worth a short wait, never a stalled step.
func (p *publishOrder) wait(steps []store.ClaimedStep, limit time.Duration) {
	deadline := time.Now().Add(limit)
	t := time.AfterFunc(limit, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blockedLocked(steps) && time.Now().Before(deadline) {
		p.cond.Wait()
	}
}

// changedTasks lists the tasks a flush changed.
func changedTasks(r *store.FinishResult) []uuid.UUID {
	ids := make([]uuid.UUID, 0, len(r.Completed)+len(r.Retried)+len(r.Failed))
	for _, c := range r.Completed {
		ids = append(ids, c.TaskID)
	}
	for _, c := range r.Retried {
		ids = append(ids, c.TaskID)
	}
	for _, c := range r.Failed {
		ids = append(ids, c.TaskID)
	}
	return ids
}

// Names of the events the engine emits besides transitions.
const (
	EventStepBeforeHandle          = "step.before_handle"
	EventStepHandle                = "step.handle"
	EventStepBackoff               = "step.backoff"
	EventStepMaxRetriesReached     = "step.max_retries_reached"
	EventViableStepsDiscovered     = "workflow.viable_steps_discovered"
	EventNoViableSteps             = "workflow.no_viable_steps"
	EventStepsExecutionStarted     = "workflow.steps_execution_started"
	EventStepsExecutionCompleted   = "workflow.steps_execution_completed"
	EventTaskFinalizationStarted   = "workflow.task_finalization_started"
	EventTaskFinalizationCompleted = "workflow.task_finalization_completed"
)

// TxFilter may be implemented by an EventSink whose InTx needs only some
// events. Claims and task creations are single statements; the engine runs
// them in a transaction, and calls InTx, only when the sink wants one of
// their events. It asks before the statement and again after it: a sink
// that wants them only then (a subscription made meanwhile) gets them in
// InTx of a transaction of their own, just after the change committed.
type TxFilter interface {
	WantsTx(name string) bool
}

// StepDecorator may be implemented by an EventSink to adjust what a handler
// gets before it runs: the telemetry sink puts the attempt's trace context
// and log fields in ctx and the attempt's span in step.Traceparent. It runs
// on the handler's goroutine and must not block.
type StepDecorator interface {
	DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step)
}

// EventSink receives every transition the engine makes. It is how events
// leave the engine without the engine knowing of metrics, traces or HTTP.
type EventSink interface {
	// InTx runs inside the transaction that made the transitions (for a
	// transactional outbox); an error rolls the change back.
	InTx(ctx context.Context, tx store.Tx, events []Event) error
	// Committed runs after the transaction committed. It must not block.
	Committed(ctx context.Context, events []Event)
}

// eventName maps a transition to its event name in Tasker's vocabulary.
func eventName(step bool, from, to string) string {
	if step {
		switch to {
		case "in_progress":
			return "step.execution_requested"
		case "complete":
			return "step.completed"
		case "error":
			return "step.failed"
		case "pending":
			if from == "" {
				return "step.initialize_requested"
			}
			return "step.retry_requested"
		case "cancelled":
			return "step.cancelled"
		case "resolved_manually":
			return "step.resolved_manually"
		}
		return "step.transition"
	}
	switch to {
	case "in_progress":
		return "task.start_requested"
	case "complete":
		return "task.completed"
	case "error":
		return "task.failed"
	case "pending":
		if from == "" {
			return "task.initialize_requested"
		}
		return "task.retry_requested"
	case "cancelled":
		return "task.cancelled"
	case "resolved_manually":
		return "task.resolved_manually"
	}
	return "task.transition"
}

func stepEvent(ref store.StepRef, from, to, reason string) Event {
	return Event{Name: eventName(true, from, to), TaskID: ref.TaskID, StepID: ref.StepID, Attempt: ref.Attempt,
		From: from, To: to, Reason: reason, Time: time.Now()}
}

func taskEvent(id uuid.UUID, from, to, reason string) Event {
	return Event{Name: eventName(false, from, to), TaskID: id, From: from, To: to, Reason: reason, Time: time.Now()}
}

// finishEvents lists the transitions of a flush in the order they were
// made, each attempt's custom events before its outcome, with what the
// attempts' outcomes know of their steps.
func finishEvents(r *store.FinishResult, buf []outcome) []Event {
	byStep := make(map[uuid.UUID]*outcome, len(buf))
	for i := range buf {
		byStep[buf[i].ref.StepID] = &buf[i]
	}
	byTask := map[uuid.UUID]*outcome{}
	perTask := map[uuid.UUID]int{}
	var order []uuid.UUID // tasks in the order met
	out := make([]Event, 0, len(r.Completed)+3*len(r.Retried)+2*len(r.Failed)+3*len(r.Finalized)+1)
	attempt := func(ref store.StepRef) *outcome {
		o := byStep[ref.StepID]
		if o == nil || o.ref.Attempt != ref.Attempt {
			return nil
		}
		if perTask[ref.TaskID] == 0 {
			order = append(order, ref.TaskID)
			byTask[ref.TaskID] = o
		}
		perTask[ref.TaskID]++
		for _, c := range o.custom {
			ev := o.event(c.Name, "", "", "")
			ev.Custom, ev.Payload = true, c.Payload
			out = append(out, ev)
		}
		return o
	}
	for _, c := range r.Completed {
		ev := stepEvent(c, "in_progress", "complete", "")
		if o := attempt(c); o != nil {
			ev = o.event(ev.Name, ev.From, ev.To, "")
		}
		out = append(out, ev)
	}
	for _, c := range r.Retried {
		failed, retry := stepEvent(c.StepRef, "in_progress", "error", ""), stepEvent(c.StepRef, "error", "pending", "retry")
		backoff := retry
		backoff.Name, backoff.From, backoff.To = EventStepBackoff, "", ""
		if o := attempt(c.StepRef); o != nil {
			failed = o.event(failed.Name, failed.From, failed.To, "")
			retry = o.event(retry.Name, retry.From, retry.To, "retry")
			backoff = o.event(EventStepBackoff, "", "", "retry")
		}
		failed.RetryAt, backoff.RetryAt = c.RetryAt, c.RetryAt
		out = append(out, failed, retry, backoff)
	}
	for _, c := range r.Failed {
		ev := stepEvent(c, "in_progress", "error", "")
		o := attempt(c)
		if o != nil {
			ev = o.event(ev.Name, ev.From, ev.To, "")
		}
		out = append(out, ev)
		if o != nil && o.retryable {
			// The handler asked for a retry and none is left.
			out = append(out, o.event(EventStepMaxRetriesReached, "", "", ""))
		}
	}
	for _, id := range order {
		ev := byTask[id].event(EventStepsExecutionCompleted, "", "", "")
		ev.StepID, ev.Attempt, ev.StepName, ev.StartedAt, ev.Duration, ev.Error = uuid.Nil, 0, "", time.Time{}, 0, nil
		ev.Count = perTask[id]
		out = append(out, ev)
	}
	for _, f := range r.Finalized {
		ev := taskEvent(f.TaskID, "in_progress", f.Status, "")
		ev.Run = f.Run
		if o := byTask[f.TaskID]; o != nil && o.step != nil {
			withTask(&ev, o.step)
		}
		started, completed := ev, ev
		started.Name, started.From, started.To = EventTaskFinalizationStarted, "", ""
		completed.Name, completed.From, completed.To = EventTaskFinalizationCompleted, "", ""
		out = append(out, started, ev, completed)
	}
	return out
}

// event builds an event of the attempt o, with its step and task.
func (o *outcome) event(name, from, to, reason string) Event {
	ev := Event{Name: name, TaskID: o.ref.TaskID, StepID: o.ref.StepID, Attempt: o.ref.Attempt, From: from, To: to,
		Reason: reason, Time: time.Now(), StartedAt: o.started, Duration: o.elapsed}
	if o.failed {
		ev.Error = o.err
	}
	if o.step != nil {
		withTask(&ev, o.step)
		ev.StepName = o.step.Name
	}
	return ev
}

// withTask copies what a claim knows of the step's task into ev.
func withTask(ev *Event, s *store.ClaimedStep) {
	ev.Namespace, ev.TaskName, ev.TaskVersion = s.Namespace, s.TaskName, s.TaskVersion
	ev.CorrelationID, ev.Traceparent = s.CorrelationID, s.Traceparent
}

// claimEvents lists what a claim did, task by task: the task's start, the
// steps found runnable, each step's claim, and the start of their handlers.
func claimEvents(steps []store.ClaimedStep) []Event {
	now := time.Now()
	index := map[uuid.UUID]int{}
	var groups [][]int
	for i := range steps {
		g, ok := index[steps[i].TaskID]
		if !ok {
			g = len(groups)
			index[steps[i].TaskID] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	out := make([]Event, 0, len(steps)+3*len(groups))
	for _, g := range groups {
		first := &steps[g[0]]
		task := Event{TaskID: first.TaskID, Time: now, Count: len(g)}
		withTask(&task, first)
		if first.TaskStarted {
			ev := task
			ev.Name, ev.From, ev.To, ev.Count = eventName(false, "pending", "in_progress"), "pending", "in_progress", 0
			out = append(out, ev)
		}
		discovered := task
		discovered.Name = EventViableStepsDiscovered
		out = append(out, discovered)
		for _, i := range g {
			s := &steps[i]
			ev := stepEvent(store.StepRef{StepID: s.StepID, TaskID: s.TaskID, Attempt: s.Attempt}, "pending", "in_progress", "")
			withTask(&ev, s)
			ev.StepName, ev.ReadyAt, ev.Time = s.Name, s.ReadyAt, now
			out = append(out, ev)
		}
		started := task
		started.Name = EventStepsExecutionStarted
		out = append(out, started)
	}
	return out
}

// handleEvent is step.before_handle or step.handle of an attempt.
func handleEvent(name string, s *store.ClaimedStep, attempt int, started time.Time, elapsed time.Duration, errDoc json.RawMessage) Event {
	ev := Event{Name: name, TaskID: s.TaskID, StepID: s.StepID, Attempt: attempt, Time: time.Now(), StepName: s.Name,
		StartedAt: started, Duration: elapsed, Error: errDoc}
	withTask(&ev, s)
	return ev
}

// createEvents lists the transitions of a task's creation.
func createEvents(nt *store.NewTask) []Event {
	now := time.Now()
	task := taskEvent(nt.TaskID, "", "pending", "")
	task.Namespace, task.TaskName, task.TaskVersion = nt.Namespace, nt.Name, nt.Version
	task.CorrelationID, task.Traceparent, task.Time = nt.CorrelationID, nt.Traceparent, now
	out := make([]Event, 0, 1+len(nt.Steps))
	out = append(out, task)
	for _, st := range nt.Steps {
		ev := task
		ev.Name, ev.StepID, ev.StepName = eventName(true, "", "pending"), st.StepID, st.Name
		out = append(out, ev)
		if st.Bypassed {
			ev.Name, ev.From, ev.To, ev.Reason = eventName(true, "pending", "resolved_manually"), "pending", "resolved_manually", "bypassed"
			out = append(out, ev)
		}
	}
	return out
}

// rescueEvents lists the transitions of a rescue of expired leases.
func rescueEvents(res *store.RescueResult) []Event {
	var events []Event
	for _, r := range res.Requeued {
		events = append(events, stepEvent(r, "in_progress", "pending", "lease_expired"))
	}
	for _, r := range res.Failed {
		events = append(events, stepEvent(r, "in_progress", "error", "lease_expired"))
	}
	for _, f := range res.Finalized {
		ev := taskEvent(f.TaskID, "in_progress", f.Status, "lease_expired")
		ev.Run = f.Run
		events = append(events, ev)
	}
	return events
}
