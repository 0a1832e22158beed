// Package handler defines handler kinds: what runs a workflow step. A step
// template names a kind ("noop", "http", …) and gives it a handler_config;
// the kind validates that config when the template registers and handles
// each attempt of the step when the engine runs it.
//
// Built-in kinds live in this package; embedders register their own Go
// kinds in a Kinds set.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/taskerd/taskerd/internal/jsonb"
)

// Kind runs the steps whose template names it.
type Kind interface {
	// Name is the kind's name as templates write it, e.g. "noop".
	Name() string
	// ValidateConfig checks a step template's handler_config when the
	// template registers (nil or empty config means {}). Its error text is
	// shown to the template's author.
	ValidateConfig(config json.RawMessage) error
	// Handle runs one attempt of a step. It returns the step's results (a
	// JSON document; nil means null) or an error; wrap the error with
	// Permanent or RetryAfter to steer retries. ctx is cancelled when the
	// step times out or its task is cancelled.
	Handle(ctx context.Context, step Step) (json.RawMessage, error)
}

// Step is what a handler gets for one attempt.
type Step struct {
	TaskID      uuid.UUID
	StepID      uuid.UUID
	Namespace   string
	TaskName    string
	TaskVersion string
	StepName    string
	// Attempt counts from 1 and keeps growing across manual retries.
	Attempt int
	// Context is the task's context document.
	Context json.RawMessage
	// Inputs are the step's inputs (from the template, editable before a retry).
	Inputs json.RawMessage
	// Parents holds the results of the step's parent steps by step name.
	Parents map[string]json.RawMessage
	// Config is the step template's handler_config.
	Config json.RawMessage
	// CorrelationID and Traceparent come from the request that created the task.
	CorrelationID string
	Traceparent   string
	// Emit records a custom business event that the step's template
	// declares (custom_events on the step or the template); it is published
	// with the attempt's outcome. Nil when the template declares none;
	// Publish reports that as ErrUndeclaredEvent.
	Emit EmitFunc
}

// EmitFunc records a custom event with a JSON payload (nil means null).
type EmitFunc func(name string, payload json.RawMessage) error

// ErrUndeclaredEvent refuses a custom event the step's template does not declare.
var ErrUndeclaredEvent = errors.New("custom event not declared in the template's custom_events")

// Publish emits a custom business event, its payload encoded as JSON; a
// numeric "value" field in it is observed by the tasker_custom_event_value
// histogram (revenue per order, rows imported, …).
func (s Step) Publish(name string, payload any) error {
	if s.Emit == nil {
		return fmt.Errorf("%w: %q (step %q declares no custom events)", ErrUndeclaredEvent, name, s.StepName)
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("custom event %q: encode payload: %w", name, err)
	}
	return s.Emit(name, raw)
}

// CustomEvent is a business event a handler emitted during an attempt.
type CustomEvent struct {
	Name    string
	Payload json.RawMessage
}

// Limits of one attempt's custom events, so a runaway handler cannot fill
// the replica's memory or the webhook outbox.
const (
	MaxCustomEvents       = 100
	MaxCustomEventPayload = 64 << 10
)

// EventRecorder collects the custom events of one attempt, refusing names
// the template does not declare. Handler kinds that learn of events in
// other ways (a remote worker's complete call, a field of an HTTP
// response) record them through the same Emit. Safe for concurrent use.
type EventRecorder struct {
	declared map[string]bool
	mu       sync.Mutex
	events   []CustomEvent
}

// NewEventRecorder accepts the names declared in the given custom_events
// lists ([{name, description}], as templates write them).
func NewEventRecorder(declarations ...json.RawMessage) *EventRecorder {
	r := &EventRecorder{declared: map[string]bool{}}
	for _, raw := range declarations {
		var list []struct {
			Name string `json:"name"`
		}
		if len(raw) == 0 || json.Unmarshal(raw, &list) != nil {
			continue // the registry validated the list; nothing to accept here
		}
		for _, d := range list {
			if d.Name != "" && !reservedEventName(d.Name) {
				r.declared[d.Name] = true
			}
		}
	}
	return r
}

// reservedEventName reports names of taskerd's own event categories, which
// a custom event may not take.
func reservedEventName(name string) bool {
	for _, p := range []string{"task.", "step.", "workflow.", "handler."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Emit records one event; see EmitFunc.
func (r *EventRecorder) Emit(name string, payload json.RawMessage) error {
	if reservedEventName(name) {
		return fmt.Errorf("%w: %q is reserved: task.*, step.*, workflow.* and handler.* are taskerd's own events", ErrUndeclaredEvent, name)
	}
	if !r.declared[name] {
		return fmt.Errorf("%w: %q", ErrUndeclaredEvent, name)
	}
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	if len(payload) > MaxCustomEventPayload {
		return fmt.Errorf("custom event %q: payload of %d bytes is above the limit of %d", name, len(payload), MaxCustomEventPayload)
	}
	if !json.Valid(payload) {
		return fmt.Errorf("custom event %q: payload is not valid JSON", name)
	}
	if off, why := jsonb.Unstorable(payload); off >= 0 {
		return fmt.Errorf("custom event %q: payload holds %s at byte %d", name, why, off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) >= MaxCustomEvents {
		return fmt.Errorf("custom event %q: an attempt may emit at most %d events", name, MaxCustomEvents)
	}
	r.events = append(r.events, CustomEvent{Name: name, Payload: append(json.RawMessage(nil), payload...)})
	return nil
}

// Events returns what was recorded, in order.
func (r *EventRecorder) Events() []CustomEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Error is a failed attempt that tells the engine how to retry.
type Error struct {
	Err error
	// Retryable false fails the step for good, whatever attempts are left.
	Retryable bool
	// RetryAfter, when set, is a delay the handler (or the service it
	// called) asked for; it replaces the exponential backoff, capped at the
	// maximum.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &Error{Err: err} }

// RetryAfter marks err as retryable after d.
func RetryAfter(err error, d time.Duration) error {
	return &Error{Err: err, Retryable: true, RetryAfter: d}
}

// Classify reports how the engine should treat a handler's error: plain
// errors are retryable with the normal backoff.
func Classify(err error) (retryable bool, retryAfter time.Duration) {
	var he *Error
	if errors.As(err, &he) {
		return he.Retryable, he.RetryAfter
	}
	return true, 0
}

// Kinds is a thread-safe set of kinds by name.
type Kinds struct {
	mu    sync.RWMutex
	kinds map[string]Kind
}

// NewKinds returns a set holding the given kinds.
func NewKinds(kinds ...Kind) (*Kinds, error) {
	k := &Kinds{kinds: map[string]Kind{}}
	for _, kind := range kinds {
		if err := k.Register(kind); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Register adds a kind; a name already taken is an error.
func (k *Kinds) Register(kind Kind) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := kind.Name()
	if name == "" {
		return errors.New("handler: a kind needs a name")
	}
	if _, ok := k.kinds[name]; ok {
		return fmt.Errorf("handler: kind %q is already registered", name)
	}
	k.kinds[name] = kind
	return nil
}

// Lookup finds a kind by name.
func (k *Kinds) Lookup(name string) (Kind, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	kind, ok := k.kinds[name]
	return kind, ok
}

// Names lists the registered kinds, sorted.
func (k *Kinds) Names() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	names := make([]string, 0, len(k.kinds))
	for n := range k.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
