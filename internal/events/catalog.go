// Package events is taskerd's event catalog and its in-process bus.
//
// The engine emits every transition it makes (and a few moments that are
// not transitions, such as a handler starting) as engine.Events through an
// engine.EventSink. Sink is that sink: inside the transaction of a
// transition it hands the events to the webhook outbox, and after the
// commit it publishes them on a Bus, whose subscribers (metrics, traces,
// logs, webhooks of events that record no transition) each have a bounded
// buffer, so a slow subscriber loses events — counted and logged — rather
// than slow the engine.
//
// The catalog names every event, says when it is emitted and documents its
// payload; GET /tasker/events and docs/events.md are generated from it.
package events

import (
	"reflect"
	"slices"
	"strings"

	"github.com/taskerd/taskerd/internal/engine"
)

// Category groups events by what they are about.
type Category string

// Categories, in the order the catalog lists them.
const (
	CategoryTask     Category = "task"
	CategoryStep     Category = "step"
	CategoryWorkflow Category = "workflow"
	CategoryHandler  Category = "handler"
	// CategoryCustom holds the business events templates declare
	// (custom_events); they are not in the catalog.
	CategoryCustom Category = "custom"
)

// Definition describes one event of the catalog.
type Definition struct {
	Name     string
	Category Category
	// Description says when the event is emitted.
	Description string
	// Transactional events record a state change: a webhook outbox row is
	// written in the transaction that made it, so none is lost to a crash.
	// The others are written to the outbox just after they happen.
	Transactional bool
	// payload is a value of the event's payload type.
	payload any
}

// PayloadType is the Go type of the event's payload.
func (d Definition) PayloadType() reflect.Type { return reflect.TypeOf(d.payload) }

// catalog lists every event taskerd emits, besides custom events.
var catalog = []Definition{
	{Name: "task.initialize_requested", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "A task was created, with its steps (state pending)."},
	{Name: "task.start_requested", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "The task's first step was claimed: the task moved from pending to in_progress."},
	{Name: "task.completed", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "Every step is complete or resolved: the task is complete."},
	{Name: "task.failed", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "A step failed for good and nothing else can run: the task is in error."},
	{Name: "task.retry_requested", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "A failed task was sent back to pending by hand (POST /tasks/{id}/retry)."},
	{Name: "task.cancelled", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "The task was cancelled; its unfinished steps are cancelled with it."},
	{Name: "task.resolved_manually", Category: CategoryTask, Transactional: true, payload: TaskPayload{},
		Description: "A failed task was resolved by hand."},

	{Name: "step.initialize_requested", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "A step was created with its task (state pending)."},
	{Name: "step.execution_requested", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "A replica claimed the step for an attempt (pending → in_progress); queue_latency_seconds is the wait since it became runnable."},
	{Name: engine.EventStepBeforeHandle, Category: CategoryStep, payload: StepPayload{},
		Description: "The step's handler is about to run an attempt."},
	{Name: engine.EventStepHandle, Category: CategoryStep, payload: StepPayload{},
		Description: "The step's handler returned, successfully or with an error (in error); the outcome is written next."},
	{Name: "step.completed", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The attempt succeeded and its results were stored (in_progress → complete)."},
	{Name: "step.failed", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The attempt failed (→ error). retry_at is set when the step will run again; otherwise it failed for good."},
	{Name: "step.retry_requested", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The step went back to pending for another attempt: after a failure (reason retry), a lost lease (lease_expired) or by hand."},
	{Name: "step.cancelled", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The step was cancelled, alone or with its task."},
	{Name: "step.resolved_manually", Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The step was resolved by hand, or bypassed when its task was created (reason bypassed); its dependents proceed."},
	{Name: engine.EventStepBackoff, Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "A failed attempt will be retried at retry_at, after its backoff."},
	{Name: engine.EventStepMaxRetriesReached, Category: CategoryStep, Transactional: true, payload: StepPayload{},
		Description: "The handler asked for a retry but none is allowed (the retry budget is spent, or the step is not retryable): the step failed for good."},

	{Name: engine.EventViableStepsDiscovered, Category: CategoryWorkflow, Transactional: true, payload: WorkflowPayload{},
		Description: "A claim found runnable steps of the task (step_count of them) for this replica."},
	{Name: engine.EventNoViableSteps, Category: CategoryWorkflow, payload: WorkflowPayload{},
		Description: "This replica's ready queue ran dry: a claim found nothing after one that found steps. It names no task."},
	{Name: engine.EventStepsExecutionStarted, Category: CategoryWorkflow, Transactional: true, payload: WorkflowPayload{},
		Description: "The handlers of the task's claimed steps (step_count) are starting."},
	{Name: engine.EventStepsExecutionCompleted, Category: CategoryWorkflow, Transactional: true, payload: WorkflowPayload{},
		Description: "The outcomes of step_count attempts of the task were written in one batch."},
	{Name: engine.EventTaskFinalizationStarted, Category: CategoryWorkflow, Transactional: true, payload: WorkflowPayload{},
		Description: "The task's last step finished: its final state is being recorded (just before task.completed or task.failed)."},
	{Name: engine.EventTaskFinalizationCompleted, Category: CategoryWorkflow, Transactional: true, payload: WorkflowPayload{},
		Description: "The task's final state was recorded (just after task.completed or task.failed)."},

	{Name: "handler.registered", Category: CategoryHandler, payload: HandlerPayload{},
		Description: "A task template (a handler, in the discovery API) was registered or replaced on this replica."},
	{Name: "handler.unregistered", Category: CategoryHandler, payload: HandlerPayload{},
		Description: "A task template version was deleted."},
	{Name: "handler.validation_failed", Category: CategoryHandler, payload: HandlerPayload{},
		Description: "A task template was refused as invalid; errors lists why."},
}

// Catalog returns every event of the catalog, by category.
func Catalog() []Definition { return slices.Clone(catalog) }

var byName = func() map[string]Definition {
	m := make(map[string]Definition, len(catalog))
	for _, d := range catalog {
		m[d.Name] = d
	}
	return m
}()

// Lookup finds an event of the catalog by name.
func Lookup(name string) (Definition, bool) {
	d, ok := byName[name]
	return d, ok
}

// CategoryOf names the category of an event: the catalog's, custom for a
// custom event.
func CategoryOf(ev *engine.Event) Category {
	if ev.Custom {
		return CategoryCustom
	}
	if d, ok := byName[ev.Name]; ok {
		return d.Category
	}
	cat, _, _ := strings.Cut(ev.Name, ".")
	return Category(cat)
}

// Categories lists the catalog's categories in order.
func Categories() []Category {
	return []Category{CategoryTask, CategoryStep, CategoryWorkflow, CategoryHandler}
}
