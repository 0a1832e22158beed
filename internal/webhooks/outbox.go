package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/store"
)

// transactional reports events whose outbox rows are written in the
// transaction of their transition (custom events ride with their
// attempt's outcome).
func transactional(ev *engine.Event) bool {
	if ev.Custom {
		return true
	}
	d, ok := events.Lookup(ev.Name)
	return ok && d.Transactional
}

// InTx writes the deliveries of events that subscriptions match, inside
// the transaction of the transition that made them. With no subscription
// (the common case) it costs a pointer load and a loop.
func (s *Service) InTx(ctx context.Context, tx store.Tx, evs []engine.Event) error {
	entries, err := s.entries(ctx, tx, evs)
	if err != nil || len(entries) == 0 {
		return err
	}
	_, err = s.store.InsertOutbox(ctx, tx, entries)
	return err
}

// immediate writes the deliveries of events no transaction records.
func (s *Service) immediate(ctx context.Context, evs []engine.Event) {
	entries, err := s.entries(ctx, store.Tx{}, evs)
	if err == nil && len(entries) > 0 {
		_, err = s.store.InsertOutboxNow(ctx, entries)
	}
	if err != nil {
		s.logger.WarnContext(ctx, "webhooks: writing deliveries of events failed; they are lost",
			slog.Int("events", len(evs)), slog.String("error", err.Error()))
	}
}

// entries builds one outbox row per matching (subscription, event).
func (s *Service) entries(ctx context.Context, tx store.Tx, evs []engine.Event) ([]store.OutboxEntry, error) {
	subs := s.subs.Load().subs
	if len(subs) == 0 || len(evs) == 0 {
		return nil, nil
	}
	type match struct {
		ev   int
		subs []uuid.UUID
	}
	var matches []match
	for i := range evs {
		var ids []uuid.UUID
		for _, w := range subs {
			if events.MatchAny(w.Events, evs[i].Name) {
				ids = append(ids, w.ID)
			}
		}
		if len(ids) > 0 {
			matches = append(matches, match{ev: i, subs: ids})
		}
	}
	if len(matches) == 0 {
		return nil, nil
	}
	// Rescues and manual actions do not carry names: read them in the
	// same transaction, only for the events being delivered.
	picked := make([]engine.Event, len(matches))
	for i, m := range matches {
		picked[i] = evs[m.ev]
	}
	if err := events.Complete(ctx, s.store, tx, picked); err != nil {
		return nil, fmt.Errorf("webhooks: look up event subjects: %w", err)
	}
	var out []store.OutboxEntry
	for i, m := range matches {
		ev := &picked[i]
		eventID := uuid.Must(uuid.NewV7())
		body, err := json.Marshal(events.NewEnvelope(eventID, ev))
		if err != nil {
			return nil, fmt.Errorf("webhooks: encode %s: %w", ev.Name, err)
		}
		for _, id := range slices.Compact(m.subs) {
			out = append(out, store.OutboxEntry{DeliveryID: uuid.Must(uuid.NewV7()), WebhookID: id, EventID: eventID,
				EventName: ev.Name, TaskID: ev.TaskID, Body: body})
		}
	}
	return out, nil
}
