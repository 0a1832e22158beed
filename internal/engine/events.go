package engine

import (
	"context"
	"time"

	"github.com/google/uuid"

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

// finishEvents lists the transitions of a flush, in the order they were made.
func finishEvents(r *store.FinishResult) []Event {
	var out []Event
	for _, c := range r.Completed {
		out = append(out, stepEvent(c, "in_progress", "complete", ""))
	}
	for _, c := range r.Retried {
		out = append(out, stepEvent(c.StepRef, "in_progress", "error", ""), stepEvent(c.StepRef, "error", "pending", "retry"))
	}
	for _, c := range r.Failed {
		out = append(out, stepEvent(c, "in_progress", "error", ""))
	}
	for _, f := range r.Finalized {
		out = append(out, taskEvent(f.TaskID, "in_progress", f.Status, ""))
	}
	return out
}
