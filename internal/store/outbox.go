package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// OutboxEntry is one delivery of one event to one subscription.
type OutboxEntry struct {
	DeliveryID uuid.UUID
	WebhookID  uuid.UUID
	// EventID is shared by the deliveries of one event.
	EventID   uuid.UUID
	EventName string
	// TaskID is zero for events of no task.
	TaskID uuid.UUID
	// Body is the JSON document to send.
	Body json.RawMessage
}

//go:embed sql/outbox_insert.sql
var outboxInsertSQL string

// InsertOutbox writes deliveries inside tx, the transaction of the
// transition that caused them, and wakes the dispatchers when any was
// written. Entries of subscriptions deleted meanwhile are skipped; it
// returns how many were written.
func (s *Store) InsertOutbox(ctx context.Context, tx Tx, entries []OutboxEntry) (int, error) {
	if tx.tx == nil {
		return 0, errNoTx
	}
	n, err := insertOutbox(ctx, tx.tx, entries, s.OutboxChannel())
	if err != nil {
		// Wrapped, not translated: it goes back through the transaction
		// that called the hook, which retries deadlocks and translates.
		return 0, fmt.Errorf("write webhook outbox: %w", err)
	}
	return n, nil
}

// InsertOutboxNow writes deliveries of events that no transition records
// (step.before_handle, workflow discoveries, registry events) in their own
// transaction.
func (s *Store) InsertOutboxNow(ctx context.Context, entries []OutboxEntry) (int, error) {
	var n int
	err := s.inTx(ctx, "write webhook outbox", func(tx pgx.Tx) error {
		var err error
		n, err = insertOutbox(ctx, tx, entries, s.OutboxChannel())
		return err
	})
	return n, err
}

func insertOutbox(ctx context.Context, tx pgx.Tx, entries []OutboxEntry, channel string) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	deliveries := make([]uuid.UUID, len(entries))
	webhooks := make([]uuid.UUID, len(entries))
	events := make([]uuid.UUID, len(entries))
	names := make([]string, len(entries))
	tasks := make([]*uuid.UUID, len(entries))
	bodies := make([]string, len(entries))
	for i, e := range entries {
		deliveries[i], webhooks[i], events[i], names[i], bodies[i] = e.DeliveryID, e.WebhookID, e.EventID, e.EventName, string(e.Body)
		if e.TaskID != uuid.Nil {
			id := e.TaskID
			tasks[i] = &id
		}
	}
	var n, notified int64
	err := tx.QueryRow(ctx, outboxInsertSQL, deliveries, webhooks, events, names, tasks, bodies, int64(0), channel).Scan(&n, &notified)
	return int(n), err
}

// Delivery is one attempt a dispatcher makes.
type Delivery struct {
	ID        uuid.UUID
	WebhookID uuid.UUID
	EventID   uuid.UUID
	EventName string
	TaskID    uuid.UUID
	// Body is the exact bytes to send and sign.
	Body    []byte
	Attempt int
	URL     string
	Secret  string
}

//go:embed sql/outbox_claim.sql
var outboxClaimSQL string

// ClaimDeliveries takes up to limit due deliveries for one attempt each,
// hidden from other replicas for visibility (longer than an attempt lasts).
func (s *Store) ClaimDeliveries(ctx context.Context, limit int, visibility time.Duration) ([]Delivery, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, outboxClaimSQL, limit, visibility.Milliseconds())
	if err != nil {
		return nil, translate("claim webhook deliveries", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		var task *uuid.UUID
		var body string
		err := row.Scan(&d.ID, &d.WebhookID, &d.EventID, &d.EventName, &task, &body, &d.Attempt, &d.URL, &d.Secret)
		if task != nil {
			d.TaskID = *task
		}
		d.Body = []byte(body)
		return d, err
	})
	return list, translate("claim webhook deliveries", err)
}

// Delivery outcomes.
const (
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed" // for good
	DeliveryRetry     = "retry"
)

// DeliveryAttempt is the outcome of one attempt.
type DeliveryAttempt struct {
	DeliveryID uuid.UUID
	Attempt    int
	// StatusCode is the receiver's answer; zero when none came.
	StatusCode int
	Error      string
	Duration   time.Duration
	// Outcome is DeliveryDelivered, DeliveryFailed or DeliveryRetry.
	Outcome string
	// RetryIn is the delay before the next attempt (DeliveryRetry).
	RetryIn time.Duration
	Replica string
}

//go:embed sql/outbox_record.sql
var outboxRecordSQL string

// RecordDelivery records an attempt; an attempt that is no longer the
// delivery's latest (its visibility ran out and another replica took it)
// changes nothing.
func (s *Store) RecordDelivery(ctx context.Context, a DeliveryAttempt) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var code *int32
	if a.StatusCode != 0 {
		c := int32(a.StatusCode)
		code = &c
	}
	_, err := s.pool.Exec(ctx, outboxRecordSQL, a.DeliveryID, int32(a.Attempt), code, nullable(a.Error), a.Outcome,
		a.RetryIn.Milliseconds(), float64(a.Duration.Microseconds())/1000, a.Replica)
	return translate("record webhook delivery", err)
}

//go:embed sql/outbox_next_due.sql
var outboxNextDueSQL string

// NextDeliveryAt is when the earliest pending delivery is due; zero when
// none waits.
func (s *Store) NextDeliveryAt(ctx context.Context) (time.Time, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t *time.Time
	if err := s.pool.QueryRow(ctx, outboxNextDueSQL).Scan(&t); err != nil {
		return time.Time{}, translate("next webhook delivery", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

//go:embed sql/outbox_purge.sql
var outboxPurgeSQL string

// PurgeDeliveries deletes up to limit finished deliveries older than before.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, outboxPurgeSQL, before, limit)
	if err != nil {
		return 0, translate("purge webhook deliveries", err)
	}
	return tag.RowsAffected(), nil
}

// DeliveryLog is one delivery as its subscription's log shows it.
type DeliveryLog struct {
	ID             uuid.UUID
	EventID        uuid.UUID
	EventName      string
	TaskID         uuid.UUID
	Status         string
	Attempts       int
	NextAttemptAt  time.Time
	LastStatusCode int
	LastError      string
	CreatedAt      time.Time
	FinishedAt     *time.Time
	Body           json.RawMessage
	// AttemptLog lists every attempt: [{attempt, status_code, error, duration_ms, replica, at}].
	AttemptLog json.RawMessage
}

// DeliveryQuery pages through a subscription's log.
type DeliveryQuery struct {
	WebhookID uuid.UUID
	// Status filters on one status ("" for all).
	Status string
	Limit  int
	// Before continues a listing: deliveries older than this one.
	Before uuid.UUID
}

//go:embed sql/outbox_deliveries.sql
var outboxDeliveriesSQL string

// Deliveries lists a subscription's deliveries, newest first.
func (s *Store) Deliveries(ctx context.Context, q DeliveryQuery) ([]DeliveryLog, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var before *uuid.UUID
	if q.Before != uuid.Nil {
		before = &q.Before
	}
	rows, err := s.pool.Query(ctx, outboxDeliveriesSQL, q.WebhookID, nullable(q.Status), q.Limit, before)
	if err != nil {
		return nil, translate("list webhook deliveries", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeliveryLog, error) {
		var d DeliveryLog
		var task *uuid.UUID
		var code *int32
		var body, attempts string
		err := row.Scan(&d.ID, &d.EventID, &d.EventName, &task, &d.Status, &d.Attempts, &d.NextAttemptAt, &code,
			&d.LastError, &d.CreatedAt, &d.FinishedAt, &body, &attempts)
		if task != nil {
			d.TaskID = *task
		}
		if code != nil {
			d.LastStatusCode = int(*code)
		}
		d.Body, d.AttemptLog = json.RawMessage(body), json.RawMessage(attempts)
		return d, err
	})
	return list, translate("list webhook deliveries", err)
}

// EventTask is what an event needs to know of its task.
type EventTask struct {
	Namespace, Name, Version   string
	CorrelationID, Traceparent string
}

//go:embed sql/outbox_event_tasks.sql
var outboxEventTasksSQL string

//go:embed sql/outbox_event_steps.sql
var outboxEventStepsSQL string

// EventSubjects looks up the tasks and step names that events name, for
// the events whose emitter did not have them at hand. With a non-zero tx
// it reads inside that transaction.
func (s *Store) EventSubjects(ctx context.Context, tx Tx, taskIDs, stepIDs []uuid.UUID) (map[uuid.UUID]EventTask, map[uuid.UUID]string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	query := s.pool.Query
	if tx.tx != nil {
		query = tx.tx.Query
	}
	tasks := make(map[uuid.UUID]EventTask, len(taskIDs))
	steps := make(map[uuid.UUID]string, len(stepIDs))
	if len(taskIDs) > 0 {
		rows, err := query(ctx, outboxEventTasksSQL, taskIDs)
		if err != nil {
			return nil, nil, translate("look up event tasks", err)
		}
		var id uuid.UUID
		var t EventTask
		_, err = pgx.ForEachRow(rows, []any{&id, &t.Namespace, &t.Name, &t.Version, &t.CorrelationID, &t.Traceparent}, func() error {
			tasks[id] = t
			return nil
		})
		if err != nil {
			return nil, nil, translate("look up event tasks", err)
		}
	}
	if len(stepIDs) > 0 {
		rows, err := query(ctx, outboxEventStepsSQL, stepIDs)
		if err != nil {
			return nil, nil, translate("look up event steps", err)
		}
		var id uuid.UUID
		var name string
		_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error {
			steps[id] = name
			return nil
		})
		if err != nil {
			return nil, nil, translate("look up event steps", err)
		}
	}
	return tasks, steps, nil
}
