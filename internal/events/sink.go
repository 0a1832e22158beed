package events

import (
	"context"
	"errors"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
)

// TxWriter writes events inside the transaction of their transition: the
// webhook outbox.
type TxWriter interface {
	// WantsTx reports whether some subscription wants events named name.
	WantsTx(name string) bool
	// InTx writes what it wants of events; an error rolls the transition back.
	InTx(ctx context.Context, tx store.Tx, events []engine.Event) error
}

// SinkConfig configures a Sink.
type SinkConfig struct {
	// Bus receives every committed event; required.
	Bus *Bus
	// Outbox, when set, writes events inside their transaction.
	Outbox TxWriter
	// Decorator, when set, adjusts each step's handler context (tracing
	// and log fields).
	Decorator engine.StepDecorator
}

// Sink is the engine's EventSink: events go to the outbox inside their
// transaction and to the bus once committed.
type Sink struct {
	bus       *Bus
	outbox    TxWriter
	decorator engine.StepDecorator
}

var (
	_ engine.EventSink     = (*Sink)(nil)
	_ engine.TxFilter      = (*Sink)(nil)
	_ engine.StepDecorator = (*Sink)(nil)
)

// NewSink validates cfg.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if cfg.Bus == nil {
		return nil, errors.New("events: Bus is required")
	}
	return &Sink{bus: cfg.Bus, outbox: cfg.Outbox, decorator: cfg.Decorator}, nil
}

// InTx hands events to the outbox.
func (s *Sink) InTx(ctx context.Context, tx store.Tx, events []engine.Event) error {
	if s.outbox == nil || len(events) == 0 {
		return nil
	}
	return s.outbox.InTx(ctx, tx, events)
}

// Committed publishes events on the bus; it never blocks.
func (s *Sink) Committed(_ context.Context, events []engine.Event) {
	s.bus.Publish(events)
}

// WantsTx reports whether the outbox wants events named name.
func (s *Sink) WantsTx(name string) bool {
	return s.outbox != nil && s.outbox.WantsTx(name)
}

// DecorateStep lets the decorator adjust a handler's context and step.
func (s *Sink) DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step) {
	if s.decorator == nil {
		return ctx, step
	}
	return s.decorator.DecorateStep(ctx, step)
}
