package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/store"
)

// The generated document must be the catalog's.
func TestEventsDocIsCurrent(t *testing.T) {
	t.Parallel()
	have, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, events.Markdown()) {
		t.Fatal("docs/events.md is stale: run `make events-doc` and commit it")
	}
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, d := range events.Catalog() {
		if seen[d.Name] {
			t.Errorf("%s twice", d.Name)
		}
		seen[d.Name] = true
		if d.Description == "" || d.PayloadType() == nil {
			t.Errorf("%s: no description or payload", d.Name)
		}
		if got := events.CategoryOf(&engine.Event{Name: d.Name}); got != d.Category {
			t.Errorf("%s: category %s, listed under %s", d.Name, got, d.Category)
		}
	}
	// The list, and the names the engine emits besides transitions.
	for _, name := range []string{
		"task.initialize_requested", "task.start_requested", "task.completed", "task.failed", "task.retry_requested",
		"task.cancelled", "task.resolved_manually", "step.initialize_requested", "step.execution_requested",
		"step.before_handle", "step.handle", "step.completed", "step.failed", "step.retry_requested", "step.cancelled",
		"step.resolved_manually", "step.backoff", "step.max_retries_reached", "workflow.viable_steps_discovered",
		"workflow.no_viable_steps", "workflow.task_finalization_started", "workflow.task_finalization_completed",
		"workflow.steps_execution_started", "workflow.steps_execution_completed", "handler.registered",
		"handler.unregistered", "handler.validation_failed",
		engine.EventStepBeforeHandle, engine.EventStepHandle, engine.EventStepBackoff, engine.EventStepMaxRetriesReached,
		engine.EventViableStepsDiscovered, engine.EventNoViableSteps, engine.EventStepsExecutionStarted,
		engine.EventStepsExecutionCompleted, engine.EventTaskFinalizationStarted, engine.EventTaskFinalizationCompleted,
	} {
		if !seen[name] {
			t.Errorf("%s is not in the catalog", name)
		}
	}
	if got := events.CategoryOf(&engine.Event{Name: "task.completed", Custom: true}); got != events.CategoryCustom {
		t.Errorf("a custom event is custom whatever its name: %s", got)
	}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	s := events.SchemaOf(reflect.TypeOf(events.StepPayload{}))
	if s.Type != "object" || !slices.Contains(s.Required, "step_id") || slices.Contains(s.Required, "retry_at") {
		t.Fatalf("step payload schema: %+v", s)
	}
	if got := s.Properties["retry_at"].TypeName(); got != "string (date-time)" {
		t.Errorf("retry_at: %s", got)
	}
	if got := s.Properties["error"].TypeName(); got != "any" {
		t.Errorf("error: %s", got)
	}
	if s.Properties["attempt"].Description == "" {
		t.Error("fields carry their doc")
	}
	if got := events.SchemaOf(reflect.TypeOf(events.HandlerPayload{})).Properties["errors"].TypeName(); got != "array of object" {
		t.Errorf("errors: %s", got)
	}
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	taskID, stepID := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	now := time.Now()
	ev := engine.Event{Name: "step.failed", TaskID: taskID, StepID: stepID, Attempt: 2, From: "in_progress", To: "error",
		Time: now, Namespace: "shop", TaskName: "checkout", TaskVersion: "1.0.0", StepName: "charge", CorrelationID: "c-1",
		StartedAt: now.Add(-time.Second), Duration: 500 * time.Millisecond, RetryAt: now.Add(2 * time.Second),
		Error: json.RawMessage(`{"message":"boom"}`)}
	b, err := json.Marshal(events.NewEnvelope(uuid.Must(uuid.NewV7()), &ev))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Event         string `json:"event"`
		Category      string `json:"category"`
		CorrelationID string `json:"correlation_id"`
		Data          struct {
			StepName        string          `json:"step_name"`
			Attempt         int             `json:"attempt"`
			DurationSeconds float64         `json:"duration_seconds"`
			RetryAt         *time.Time      `json:"retry_at"`
			Error           json.RawMessage `json:"error"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Event != "step.failed" || got.Category != "step" || got.CorrelationID != "c-1" || got.Data.StepName != "charge" ||
		got.Data.Attempt != 2 || got.Data.DurationSeconds != 0.5 || got.Data.RetryAt == nil || string(got.Data.Error) != `{"message":"boom"}` {
		t.Errorf("envelope: %s", b)
	}
	created, ok := events.TaskCreatedAt(taskID)
	if !ok || created.Sub(now).Abs() > 5*time.Millisecond {
		t.Errorf("creation time from a UUIDv7: %v %v", created, ok)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, name string
		match         bool
	}{
		{"*", "step.failed", true},
		{"task.*", "task.completed", true},
		{"task.*", "taskx.completed", false},
		{"task.*", "step.completed", false},
		{"step.failed", "step.failed", true},
		{"step.failed", "step.failed_again", false},
		{"order.*", "order.charged.eu", true},
		{"order.charged", "order.charged", true},
	} {
		if got := events.Match(c.pattern, c.name); got != c.match {
			t.Errorf("Match(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
	for _, bad := range []string{"", "task.", "*.failed", "task.*.x", "ta sk", "**"} {
		if events.ValidatePattern(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"*", "task.*", "step.failed", "order.charged", "extraction_started"} {
		if err := events.ValidatePattern(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

func newBus(t *testing.T, cfg events.BusConfig) *events.Bus {
	t.Helper()
	b, err := events.NewBus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stop(t *testing.T, b *events.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// collector is a subscriber that keeps what it receives.
type collector struct {
	mu     sync.Mutex
	names  []string
	events []engine.Event
}

func (c *collector) handle(_ context.Context, evs []engine.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		c.names = append(c.names, ev.Name)
		c.events = append(c.events, ev)
	}
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names)
}

// A subscriber that is stuck loses events, counted, while the publisher
// never waits and the other subscribers get everything in order.
func TestBusSlowSubscriberDrops(t *testing.T) {
	t.Parallel()
	b := newBus(t, events.BusConfig{Buffer: 1000})
	release := make(chan struct{})
	var slowGot atomic.Int64
	b.Subscribe("slow", func(_ context.Context, evs []engine.Event) {
		<-release
		slowGot.Add(int64(len(evs)))
	}, events.SubscribeOptions{Buffer: 5})
	fast := &collector{}
	b.Subscribe("fast", fast.handle, events.SubscribeOptions{})
	matched := &collector{}
	b.Subscribe("steps", matched.handle, events.SubscribeOptions{Match: func(ev *engine.Event) bool { return ev.Name == "step.completed" }})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	start := time.Now()
	for i := range 200 {
		name := "task.completed"
		if i%2 == 0 {
			name = "step.completed"
		}
		want = append(want, name)
		b.Publish([]engine.Event{{Name: name, Attempt: i}})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publishing 200 events took %s: the publisher waited", d)
	}
	close(release)
	stop(t, b)
	if got := fast.got(); !slices.Equal(got, want) {
		t.Errorf("the fast subscriber got %d events, want all 200 in order", len(got))
	}
	for i, ev := range fast.events {
		if ev.Attempt != i {
			t.Fatalf("event %d arrived at %d", ev.Attempt, i)
		}
	}
	if got := len(matched.got()); got != 100 {
		t.Errorf("the matching subscriber got %d events, want 100", got)
	}
	dropped := b.Dropped()
	if dropped["slow"] == 0 || int64(dropped["slow"])+slowGot.Load() != 200 {
		t.Errorf("slow: %d delivered + %d dropped, want 200 with some dropped", slowGot.Load(), dropped["slow"])
	}
	if dropped["fast"] != 0 || dropped[events.IngressName] != 0 {
		t.Errorf("dropped: %v", dropped)
	}
	b.Publish([]engine.Event{{Name: "task.completed"}})
	if b.Dropped()[events.IngressName] != 1 {
		t.Error("an event published after Stop is counted as dropped")
	}
}

// One batch larger than the whole buffer reaches an idle bus's
// subscribers whole; a second one, while the first still waits, is dropped.
func TestBusTakesOneOversizedBatch(t *testing.T) {
	t.Parallel()
	b := newBus(t, events.BusConfig{Buffer: 100})
	release := make(chan struct{})
	got := &collector{}
	b.Subscribe("all", func(ctx context.Context, evs []engine.Event) {
		<-release
		got.handle(ctx, evs)
	}, events.SubscribeOptions{})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	big := func() []engine.Event {
		evs := make([]engine.Event, 250)
		for i := range evs {
			evs[i] = engine.Event{Name: "step.created", Attempt: i}
		}
		return evs
	}
	b.Publish(big())
	// The first batch is with the subscriber (held) or still queued; either
	// way, a second oversized one finds a buffer in use.
	deadline := time.Now().Add(5 * time.Second)
	for b.Dropped()["all"] == 0 && b.Dropped()[events.IngressName] == 0 && time.Now().Before(deadline) {
		b.Publish(big())
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	stop(t, b)
	names := got.got()
	if len(names) < 250 || len(names)%250 != 0 {
		t.Fatalf("the subscriber got %d events, want whole batches of 250", len(names))
	}
	for i, ev := range got.events[:250] {
		if ev.Attempt != i {
			t.Fatalf("event %d of the first batch arrived at %d", ev.Attempt, i)
		}
	}
	if d := b.Dropped(); d["all"]+d[events.IngressName] == 0 {
		t.Errorf("no batch was dropped while the buffer was in use: %v", d)
	}
}

// A panicking subscriber is logged, and the bus goes on.
func TestBusSubscriberPanics(t *testing.T) {
	t.Parallel()
	b := newBus(t, events.BusConfig{})
	var calls atomic.Int64
	b.Subscribe("panics", func(context.Context, []engine.Event) {
		calls.Add(1)
		panic("subscriber bug")
	}, events.SubscribeOptions{})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Publish([]engine.Event{{Name: "task.completed"}})
	b.Publish([]engine.Event{{Name: "task.failed"}})
	stop(t, b)
	if calls.Load() != 2 {
		t.Errorf("%d calls", calls.Load())
	}
}

// resolver answers from fixed maps and counts lookups.
type resolver struct {
	lookups atomic.Int64
	task    store.EventTask
	step    string
}

func (r *resolver) EventSubjects(_ context.Context, _ store.Tx, taskIDs, stepIDs []uuid.UUID) (map[uuid.UUID]store.EventTask, map[uuid.UUID]string, error) {
	r.lookups.Add(1)
	tasks := map[uuid.UUID]store.EventTask{}
	for _, id := range taskIDs {
		tasks[id] = r.task
	}
	steps := map[uuid.UUID]string{}
	for _, id := range stepIDs {
		steps[id] = r.step
	}
	return tasks, steps, nil
}

// Events of manual actions and rescues name no template; the bus fills
// them in, once per task.
func TestBusCompletesEvents(t *testing.T) {
	t.Parallel()
	res := &resolver{task: store.EventTask{Namespace: "shop", Name: "checkout", Version: "1.0.0", CorrelationID: "c-9"}, step: "charge"}
	b := newBus(t, events.BusConfig{Resolver: res})
	got := &collector{}
	b.Subscribe("test", got.handle, events.SubscribeOptions{})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	taskID, stepID := uuid.New(), uuid.New()
	b.Publish([]engine.Event{{Name: "task.cancelled", TaskID: taskID}, {Name: "step.cancelled", TaskID: taskID, StepID: stepID}})
	b.Publish([]engine.Event{{Name: "task.resolved_manually", TaskID: taskID}})
	b.Publish([]engine.Event{{Name: "task.completed", TaskID: taskID, Namespace: "given"}})
	stop(t, b)
	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.events) != 4 {
		t.Fatalf("%d events", len(got.events))
	}
	for _, ev := range got.events[:3] {
		if ev.Namespace != "shop" || ev.TaskName != "checkout" || ev.CorrelationID != "c-9" {
			t.Errorf("%s not completed: %+v", ev.Name, ev)
		}
	}
	if got.events[1].StepName != "charge" || got.events[3].Namespace != "given" {
		t.Errorf("steps and complete events: %+v", got.events)
	}
	if res.lookups.Load() != 1 {
		t.Errorf("%d lookups, want 1 (then the cache)", res.lookups.Load())
	}
}
