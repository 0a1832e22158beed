package engine

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
)

func names(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Name
	}
	return out
}

// A flush's events come in the order of its transitions, each attempt's
// custom events first, with what the claims knew of the steps.
func TestFinishEvents(t *testing.T) {
	t.Parallel()
	task := uuid.Must(uuid.NewV7())
	claim := func(name string) *store.ClaimedStep {
		return &store.ClaimedStep{StepID: uuid.Must(uuid.NewV7()), TaskID: task, Namespace: "shop", TaskName: "checkout",
			TaskVersion: "1.0.0", Name: name, CorrelationID: "c-1", Attempt: 1}
	}
	a, b, c := claim("a"), claim("b"), claim("c")
	started := time.Now().Add(-time.Second)
	ref := func(s *store.ClaimedStep) store.StepRef {
		return store.StepRef{StepID: s.StepID, TaskID: task, Attempt: 1}
	}
	buf := []outcome{
		{ref: ref(a), step: a, started: started, elapsed: time.Millisecond,
			custom: []handler.CustomEvent{{Name: "order.charged", Payload: json.RawMessage(`{"value":1}`)}}},
		{ref: ref(b), step: b, failed: true, retryable: true, err: json.RawMessage(`{"message":"boom"}`)},
		{ref: ref(c), step: c, failed: true, retryable: true, err: json.RawMessage(`{"message":"again"}`)},
	}
	retryAt := time.Now().Add(time.Minute)
	r := &store.FinishResult{
		Completed: []store.StepRef{ref(a)},
		Retried:   []store.RetryRef{{StepRef: ref(b), RetryAt: retryAt}},
		Failed:    []store.StepRef{ref(c), {StepID: uuid.New(), TaskID: task, Attempt: 1}}, // the last one: no outcome at hand
		Finalized: []store.TaskFinal{{TaskID: task, Status: "error"}},
	}
	evs := finishEvents(r, buf)
	want := []string{"order.charged", "step.completed", "step.failed", "step.retry_requested", "step.backoff",
		"step.failed", "step.max_retries_reached", "step.failed", "workflow.steps_execution_completed",
		"workflow.task_finalization_started", "task.failed", "workflow.task_finalization_completed"}
	if got := names(evs); !slices.Equal(got, want) {
		t.Fatalf("events %v\nwant   %v", got, want)
	}
	if !evs[0].Custom || evs[0].StepName != "a" || string(evs[0].Payload) != `{"value":1}` {
		t.Errorf("custom event: %+v", evs[0])
	}
	if evs[1].Namespace != "shop" || evs[1].StartedAt != started || evs[1].Duration != time.Millisecond || evs[1].CorrelationID != "c-1" {
		t.Errorf("completion: %+v", evs[1])
	}
	if !evs[2].RetryAt.Equal(retryAt) || !evs[4].RetryAt.Equal(retryAt) || string(evs[2].Error) != `{"message":"boom"}` {
		t.Errorf("retried attempt: %+v / %+v", evs[2], evs[4])
	}
	if evs[7].Namespace != "" {
		t.Errorf("an outcome not at hand leaves the names to the sink: %+v", evs[7])
	}
	if evs[8].Count != 3 || evs[8].StepID != uuid.Nil || evs[10].TaskName != "checkout" {
		t.Errorf("workflow and task events: %+v / %+v", evs[8], evs[10])
	}
}

func TestClaimEvents(t *testing.T) {
	t.Parallel()
	t1, t2 := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	ready := time.Now().Add(-time.Second)
	steps := []store.ClaimedStep{
		{StepID: uuid.New(), TaskID: t1, Name: "a", TaskStarted: true, ReadyAt: ready, Namespace: "shop", Attempt: 1},
		{StepID: uuid.New(), TaskID: t2, Name: "x", Attempt: 2},
		{StepID: uuid.New(), TaskID: t1, Name: "b", TaskStarted: true, Attempt: 1},
	}
	evs := claimEvents(steps)
	want := []string{"task.start_requested", "workflow.viable_steps_discovered", "step.execution_requested",
		"step.execution_requested", "workflow.steps_execution_started",
		"workflow.viable_steps_discovered", "step.execution_requested", "workflow.steps_execution_started"}
	if got := names(evs); !slices.Equal(got, want) {
		t.Fatalf("events %v\nwant   %v", got, want)
	}
	if evs[1].Count != 2 || evs[2].StepName != "a" || !evs[2].ReadyAt.Equal(ready) || evs[6].Attempt != 2 || evs[0].Namespace != "shop" {
		t.Errorf("claim events: %+v", evs)
	}
}

func TestPublishOrder(t *testing.T) {
	t.Parallel()
	var p publishOrder
	task := uuid.New()
	steps := []store.ClaimedStep{{TaskID: task}}
	if p.blocked(steps) {
		t.Fatal("nothing held")
	}
	p.hold([]uuid.UUID{task, task})
	p.release([]uuid.UUID{task})
	if !p.blocked(steps) {
		t.Fatal("held twice, released once")
	}
	done := make(chan struct{})
	go func() { p.wait(steps, time.Minute); close(done) }()
	select {
	case <-done:
		t.Fatal("wait returned while held")
	case <-time.After(20 * time.Millisecond):
	}
	p.release([]uuid.UUID{task})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return once released")
	}
	p.hold([]uuid.UUID{task})
	start := time.Now()
	p.wait(steps, 50*time.Millisecond) // never released: gives up
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("wait with a limit took %s", d)
	}
}
