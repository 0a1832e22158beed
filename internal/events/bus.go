package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/store"
)

// Defaults of a Bus.
const (
	DefaultBuffer        = 10000
	DefaultLookupTimeout = 2 * time.Second
	// dropLogInterval spaces the warnings about one subscriber's drops.
	dropLogInterval = 10 * time.Second
	// IngressName is the name drops are counted under when the bus itself
	// is full (its dispatcher is behind), before any subscriber.
	IngressName = "bus"
)

// Resolver looks up what events need to know of tasks and steps when the
// emitter did not have it at hand (lease rescue, manual actions); the store
// implements it.
type Resolver interface {
	EventSubjects(ctx context.Context, tx store.Tx, taskIDs, stepIDs []uuid.UUID) (map[uuid.UUID]store.EventTask, map[uuid.UUID]string, error)
}

// BusConfig configures a Bus.
type BusConfig struct {
	// Buffer bounds the events waiting for each subscriber (and for the
	// bus's own dispatcher); beyond it events are dropped, counted and
	// logged. Default 10,000.
	Buffer int
	// Resolver fills in events that lack their task's or step's names; nil
	// leaves them as they are.
	Resolver Resolver
	// LookupTimeout bounds one Resolver lookup; default 2 s.
	LookupTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// HandlerFunc receives events in the order they were published, in
// batches, on the subscriber's own goroutine. The slice is shared with
// other subscribers: read it, never modify or keep it.
type HandlerFunc func(ctx context.Context, events []engine.Event)

// SubscribeOptions tune one subscription.
type SubscribeOptions struct {
	// Match selects the events delivered by name; nil means every event.
	Match func(ev *engine.Event) bool
	// Buffer overrides the bus's buffer for this subscriber.
	Buffer int
}

// Bus delivers published events to subscribers without ever blocking the
// publisher. One dispatcher goroutine keeps the order of publication, fills
// in missing names and fans out to the subscribers' bounded queues.
type Bus struct {
	cfg    BusConfig
	logger *slog.Logger

	mu      sync.RWMutex // guards stopped and the send on ingress against Stop's close
	stopped bool
	started bool
	ingress chan []engine.Event
	queued  atomic.Int64 // events in ingress
	drops   *dropCounter

	subsMu sync.RWMutex
	subs   []*subscriber

	dispatched chan struct{} // closed when the dispatcher has drained ingress
	stopOnce   sync.Once

	cacheMu sync.Mutex
	tasks   map[uuid.UUID]store.EventTask
	steps   map[uuid.UUID]string
}

type subscriber struct {
	name    string
	fn      HandlerFunc
	match   func(*engine.Event) bool
	limit   int64
	ch      chan []engine.Event
	pending atomic.Int64
	drops   *dropCounter
	done    chan struct{}
}

// dropCounter counts dropped events and logs them at most every
// dropLogInterval.
type dropCounter struct {
	n       atomic.Uint64
	lastLog atomic.Int64
}

// NewBus returns a bus; Start starts its dispatcher.
func NewBus(cfg BusConfig) (*Bus, error) {
	if cfg.Buffer < 0 {
		return nil, errors.New("events: Buffer must not be negative")
	}
	cfg.Buffer = cmp.Or(cfg.Buffer, DefaultBuffer)
	cfg.LookupTimeout = cmp.Or(cfg.LookupTimeout, DefaultLookupTimeout)
	return &Bus{
		cfg:        cfg,
		logger:     cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "events")),
		ingress:    make(chan []engine.Event, cfg.Buffer),
		drops:      &dropCounter{},
		dispatched: make(chan struct{}),
		tasks:      map[uuid.UUID]store.EventTask{},
		steps:      map[uuid.UUID]string{},
	}, nil
}

// Subscribe adds a subscriber named name (used in the dropped-events
// metric and logs) and starts its goroutine. Subscribe before Start: a
// subscriber added later misses what was published before.
func (b *Bus) Subscribe(name string, fn HandlerFunc, opts SubscribeOptions) {
	limit := cmp.Or(opts.Buffer, b.cfg.Buffer)
	s := &subscriber{name: name, fn: fn, match: opts.Match, limit: int64(limit),
		ch: make(chan []engine.Event, limit), drops: &dropCounter{}, done: make(chan struct{})}
	b.subsMu.Lock()
	b.subs = append(b.subs, s)
	b.subsMu.Unlock()
	go b.serve(s)
}

// Start starts the dispatcher; it returns at once.
func (b *Bus) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.stopped {
		return nil
	}
	b.started = true
	go b.dispatch(context.WithoutCancel(ctx))
	return nil
}

// Publish hands events to the bus; it never blocks. When the bus is full
// (or stopped) the events are dropped and counted.
func (b *Bus) Publish(events []engine.Event) {
	if len(events) == 0 {
		return
	}
	n := int64(len(events))
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.stopped || full(b.queued.Load(), n, int64(b.cfg.Buffer)) {
		b.dropped(IngressName, b.drops, len(events))
		return
	}
	b.queued.Add(n)
	select {
	case b.ingress <- events:
	default:
		b.queued.Add(-n)
		b.dropped(IngressName, b.drops, len(events))
	}
}

// Stop stops accepting events, delivers those already accepted and waits
// for the subscribers until ctx ends. Safe twice and before Start.
func (b *Bus) Stop(ctx context.Context) error {
	b.stopOnce.Do(func() {
		b.mu.Lock()
		b.stopped = true
		started := b.started
		close(b.ingress)
		b.mu.Unlock()
		if !started {
			go b.dispatch(context.Background()) // drains and closes the subscribers
		}
	})
	select {
	case <-b.dispatched:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.subsMu.RLock()
	subs := b.subs
	b.subsMu.RUnlock()
	for _, s := range subs {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Dropped reports the events dropped so far, by subscriber name (and
// IngressName for the bus itself).
func (b *Bus) Dropped() map[string]uint64 {
	out := map[string]uint64{IngressName: b.drops.n.Load()}
	b.subsMu.RLock()
	defer b.subsMu.RUnlock()
	for _, s := range b.subs {
		out[s.name] += s.drops.n.Load()
	}
	return out
}

// Subscribers lists the subscribers' names, sorted.
func (b *Bus) Subscribers() []string {
	b.subsMu.RLock()
	defer b.subsMu.RUnlock()
	names := make([]string, 0, len(b.subs))
	for _, s := range b.subs {
		names = append(names, s.name)
	}
	sort.Strings(names)
	return names
}

func (b *Bus) dispatch(ctx context.Context) {
	defer func() {
		b.subsMu.RLock()
		for _, s := range b.subs {
			close(s.ch)
		}
		b.subsMu.RUnlock()
		close(b.dispatched)
	}()
	for events := range b.ingress {
		b.queued.Add(-int64(len(events)))
		events = b.complete(ctx, events)
		b.subsMu.RLock()
		subs := b.subs
		b.subsMu.RUnlock()
		for _, s := range subs {
			b.offer(s, events)
		}
	}
}

// full reports whether n more events exceed a buffer of limit holding
// queued. One batch larger than the whole buffer is taken when nothing
// waits: the publisher holds it already, and dropping it would lose every
// event of one large change, however idle the bus (the 10,001 creation
// events of a 10,000-step task).
func full(queued, n, limit int64) bool {
	return queued > 0 && queued+n > limit
}

// offer queues events for s, or drops them when s is behind.
func (b *Bus) offer(s *subscriber, events []engine.Event) {
	if s.match != nil {
		var picked []engine.Event
		for i := range events {
			if s.match(&events[i]) {
				picked = append(picked, events[i])
			}
		}
		events = picked
	}
	if len(events) == 0 {
		return
	}
	n := int64(len(events))
	if full(s.pending.Load(), n, s.limit) {
		b.dropped(s.name, s.drops, len(events))
		return
	}
	s.pending.Add(n)
	select {
	case s.ch <- events:
	default:
		s.pending.Add(-n)
		b.dropped(s.name, s.drops, len(events))
	}
}

func (b *Bus) serve(s *subscriber) {
	defer close(s.done)
	ctx := context.Background()
	for events := range s.ch {
		s.pending.Add(-int64(len(events)))
		b.deliver(ctx, s, events)
	}
}

// deliver calls a subscriber; a panic is logged, not fatal.
func (b *Bus) deliver(ctx context.Context, s *subscriber, events []engine.Event) {
	defer func() {
		if p := recover(); p != nil {
			b.logger.Error("event subscriber panicked", slog.String("subscriber", s.name),
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
		}
	}()
	s.fn(ctx, events)
}

func (b *Bus) dropped(name string, c *dropCounter, n int) {
	total := c.n.Add(uint64(n))
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(dropLogInterval) || !c.lastLog.CompareAndSwap(last, now) {
		return
	}
	b.logger.Warn("events dropped: a subscriber is behind", slog.String("subscriber", name),
		slog.Int("dropped", n), slog.Uint64("dropped_total", total))
}

// complete fills in the task and step names of events whose emitter did
// not have them, from a small cache or the Resolver. It returns events
// itself when nothing was missing.
func (b *Bus) complete(ctx context.Context, events []engine.Event) []engine.Event {
	if b.cfg.Resolver == nil || !incomplete(events) {
		return events
	}
	out := make([]engine.Event, len(events))
	copy(out, events)
	var taskIDs, stepIDs []uuid.UUID
	b.cacheMu.Lock()
	for i := range out {
		fillFromCache(&out[i], b.tasks, b.steps)
		if missingTask(&out[i]) {
			taskIDs = append(taskIDs, out[i].TaskID)
		}
		if missingStep(&out[i]) {
			stepIDs = append(stepIDs, out[i].StepID)
		}
	}
	b.cacheMu.Unlock()
	if len(taskIDs) == 0 && len(stepIDs) == 0 {
		return out
	}
	lookupCtx, cancel := context.WithTimeout(ctx, b.cfg.LookupTimeout)
	tasks, steps, err := b.cfg.Resolver.EventSubjects(lookupCtx, store.Tx{}, taskIDs, stepIDs)
	cancel()
	if err != nil {
		b.logger.Warn("events: looking up task and step names failed; publishing without them",
			slog.String("error", err.Error()))
		return out
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	// A bounded cache: manual actions and rescues are rare, and a task
	// met once is usually met again in the next few events.
	// Fresh maps, not clear(): a cleared map keeps its buckets.
	if len(b.tasks) > maxCachedSubjects {
		b.tasks = map[uuid.UUID]store.EventTask{}
	}
	if len(b.steps) > maxCachedSubjects {
		b.steps = map[uuid.UUID]string{}
	}
	for id, t := range tasks {
		b.tasks[id] = t
	}
	for id, n := range steps {
		b.steps[id] = n
	}
	for i := range out {
		fillFromCache(&out[i], b.tasks, b.steps)
	}
	return out
}

func missingTask(ev *engine.Event) bool {
	return ev.Namespace == "" && ev.TaskID != uuid.Nil
}

func missingStep(ev *engine.Event) bool {
	return ev.StepName == "" && ev.StepID != uuid.Nil
}

func incomplete(events []engine.Event) bool {
	for i := range events {
		if missingTask(&events[i]) || missingStep(&events[i]) {
			return true
		}
	}
	return false
}

// fillFromCache completes ev from what is known.
func fillFromCache(ev *engine.Event, tasks map[uuid.UUID]store.EventTask, steps map[uuid.UUID]string) {
	if missingTask(ev) {
		if t, ok := tasks[ev.TaskID]; ok {
			ev.Namespace, ev.TaskName, ev.TaskVersion = t.Namespace, t.Name, t.Version
			ev.CorrelationID, ev.Traceparent = t.CorrelationID, t.Traceparent
		}
	}
	if missingStep(ev) {
		if n, ok := steps[ev.StepID]; ok {
			ev.StepName = n
		}
	}
}

// Complete fills in the task and step names of events lacking them,
// reading inside tx (the webhook outbox does this for the events it
// writes). It modifies events in place.
func Complete(ctx context.Context, r Resolver, tx store.Tx, events []engine.Event) error {
	if r == nil || !incomplete(events) {
		return nil
	}
	var taskIDs, stepIDs []uuid.UUID
	for i := range events {
		if missingTask(&events[i]) {
			taskIDs = append(taskIDs, events[i].TaskID)
		}
		if missingStep(&events[i]) {
			stepIDs = append(stepIDs, events[i].StepID)
		}
	}
	tasks, steps, err := r.EventSubjects(ctx, tx, taskIDs, stepIDs)
	if err != nil {
		return err
	}
	for i := range events {
		fillFromCache(&events[i], tasks, steps)
	}
	return nil
}

// maxCachedSubjects bounds the task and step name caches of events.
const maxCachedSubjects = 4096

// DropCache empties the bounded cache of task and step names, so that a
// heap measurement (the bench's load workload) compares like with like: a
// cache filling up to its bound is not a leak.
func (b *Bus) DropCache() {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	b.tasks = map[uuid.UUID]store.EventTask{}
	b.steps = map[uuid.UUID]string{}
}
