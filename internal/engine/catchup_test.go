package engine_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/store"
)

// lateSink is an event sink with a subscription made while the engine's
// first change is under way: the first time the engine asks whether it
// wants an event, it runs meanwhile (the change's other work, if any) and
// subscribes to subscribe, then answers no. From then on it wants that
// event, and records what reaches the outbox (InTx).
type lateSink struct {
	subscribe string
	meanwhile func()

	mu         sync.Mutex
	asked      bool
	subscribed bool
	inTx       []engine.Event
}

func (s *lateSink) WantsTx(name string) bool {
	s.mu.Lock()
	if !s.asked {
		s.asked = true
		s.mu.Unlock()
		if s.meanwhile != nil {
			s.meanwhile()
		}
		s.mu.Lock()
		s.subscribed = true
		s.mu.Unlock()
		return false
	}
	defer s.mu.Unlock()
	return s.subscribed && name == s.subscribe
}

func (s *lateSink) InTx(_ context.Context, _ store.Tx, events []engine.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inTx = append(s.inTx, events...)
	return nil
}

func (s *lateSink) Committed(context.Context, []engine.Event) {}

// names lists the events InTx got.
func (s *lateSink) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.inTx {
		out = append(out, ev.Name)
	}
	return out
}

// outboxed reports whether InTx got the event name of task id.
func (s *lateSink) outboxed(name string, id uuid.UUID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.inTx, func(ev engine.Event) bool { return ev.Name == name && ev.TaskID == id })
}

// The engine asks the sink before a claim's statement, whose snapshot comes
// later. A subscription and a task that both appear in between: the claim
// takes the task's root without a transaction for events, and the event the
// subscription wants reaches the outbox after it, in a transaction of its
// own. (Under load, a webhook created just before a task lost the task's
// task.start_requested delivery this way.)
func TestClaimCatchesUpEventsWantedDuringIt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.register("ns", "one", step{name: "a", handler: "noop"})
	creator, err := engine.New(engine.Config{Store: e.store, Templates: e.templates, Kinds: e.kinds})
	must(t, err)
	created := make(chan uuid.UUID, 1)
	sink := &lateSink{subscribe: "task.start_requested", meanwhile: func() {
		v, _, err := creator.CreateTask(context.Background(), engine.CreateTaskRequest{Namespace: "ns", Name: "one"})
		if err != nil {
			t.Errorf("create: %v", err)
			close(created)
			return
		}
		created <- v.Task.TaskID
	}}
	e.engine(func(c *engine.Config) { c.Events = sink })
	id, ok := <-created
	if !ok {
		t.FailNow()
	}
	e.wait(id, "complete", 10*time.Second)
	if !sink.outboxed("task.start_requested", id) {
		t.Errorf("the claim that started the task gave the outbox none of its events: %v", sink.names())
	}
}

// The same for a task's creation: the sink is asked before the create
// transaction begins.
func TestCreateCatchesUpEventsWantedDuringIt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.register("ns", "one", step{name: "a", handler: "noop"})
	sink := &lateSink{subscribe: "task.initialize_requested"}
	eng, err := engine.New(engine.Config{Store: e.store, Templates: e.templates, Kinds: e.kinds, Events: sink})
	must(t, err)
	v, _, err := eng.CreateTask(context.Background(), engine.CreateTaskRequest{Namespace: "ns", Name: "one"})
	must(t, err)
	if !sink.outboxed("task.initialize_requested", v.Task.TaskID) {
		t.Errorf("the create gave the outbox none of its events: %v", sink.names())
	}
}
