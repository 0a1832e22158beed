package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Remote workers claim steps with ClaimSteps (their queue, their id as the
// lease owner) and finish them with FinishSteps, fenced by the attempt like
// the engine's own outcomes. What follows is what only they need.

//go:embed sql/worker_upsert.sql
var workerUpsertSQL string

//go:embed sql/worker_step.sql
var workerStepSQL string

//go:embed sql/worker_heartbeat.sql
var workerHeartbeatSQL string

//go:embed sql/worker_list.sql
var workerListSQL string

//go:embed sql/worker_queues_due.sql
var workerQueuesDueSQL string

//go:embed sql/worker_prune.sql
var workerPruneSQL string

// RemoteStep is a step as the worker endpoints see it.
type RemoteStep struct {
	StepID          uuid.UUID
	TaskID          uuid.UUID
	NamedTaskID     int64
	Name            string
	Handler         string
	Queue           string
	Status          string
	Attempts        int
	LeaseOwner      string
	LeaseExpiresAt  *time.Time
	LastAttemptedAt *time.Time
}

// RemoteStep reads a step run by remote workers; ErrNotFound when there is
// no such step or the engine runs it (workers never touch those).
func (s *Store) RemoteStep(ctx context.Context, id uuid.UUID) (*RemoteStep, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var r RemoteStep
	err := s.pool.QueryRow(ctx, workerStepSQL, id).Scan(&r.StepID, &r.TaskID, &r.NamedTaskID, &r.Name, &r.Handler,
		&r.Queue, &r.Status, &r.Attempts, &r.LeaseOwner, &r.LeaseExpiresAt, &r.LastAttemptedAt)
	if err != nil {
		return nil, translate("remote step", err)
	}
	if r.Queue == "" {
		return nil, fmt.Errorf("remote step %s: run by the engine, not by remote workers: %w", id, ErrNotFound)
	}
	return &r, nil
}

// TouchWorker records that a worker was seen claiming from handlers.
func (s *Store) TouchWorker(ctx context.Context, workerID string, handlers []string, replica string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, workerUpsertSQL, workerID, handlers, nullable(replica)); err != nil {
		return translate("record worker", err)
	}
	return nil
}

// Lease is a remote step's renewed lease.
type Lease struct {
	ExpiresAt time.Time
	// Expired is set when the step's deadline has passed: the lease could
	// not be extended and the attempt will be taken back.
	Expired bool
}

// ErrLeaseLost means a remote step is no longer held at that attempt: its
// lease expired and it was taken back (and perhaps claimed again), or it
// finished. Nothing was changed.
var ErrLeaseLost = errors.New("the step is not held at this attempt")

// RenewRemoteLease extends a remote step's lease by lease, fenced by the
// attempt and capped at the step's claim plus timeout (0: no cap). It
// returns ErrLeaseLost when the attempt no longer holds the step.
func (s *Store) RenewRemoteLease(ctx context.Context, stepID uuid.UUID, attempt int, lease, timeout time.Duration) (*Lease, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var capMs *int64
	if timeout > 0 {
		ms := timeout.Milliseconds()
		capMs = &ms
	}
	var l Lease
	err := s.pool.QueryRow(ctx, workerHeartbeatSQL, stepID, attempt, lease.Milliseconds(), capMs).Scan(&l.ExpiresAt, &l.Expired)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("renew lease of step %s attempt %d: %w", stepID, attempt, ErrLeaseLost)
	}
	if err != nil {
		return nil, translate("renew remote lease", err)
	}
	return &l, nil
}

// Worker is a remote worker seen lately.
type Worker struct {
	WorkerID    string
	Handlers    []string
	FirstSeenAt time.Time
	LastSeenAt  time.Time
	LastReplica string
	InFlight    []InFlightStep
}

// InFlightStep is a step a worker holds.
type InFlightStep struct {
	StepID         uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid"`
	TaskID         uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid"`
	Attempt        int       `json:"attempt"`
	Handler        string    `json:"handler"`
	StepName       string    `json:"step_name"`
	ClaimedAt      time.Time `json:"claimed_at"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
}

// Workers lists up to limit workers seen within seenWithin, by id, with the
// steps each holds.
func (s *Store) Workers(ctx context.Context, seenWithin time.Duration, limit int) ([]Worker, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, workerListSQL, seenWithin.Milliseconds(), limit)
	if err != nil {
		return nil, translate("list workers", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Worker, error) {
		var w Worker
		var steps []byte
		if err := row.Scan(&w.WorkerID, &w.Handlers, &w.FirstSeenAt, &w.LastSeenAt, &w.LastReplica, &steps); err != nil {
			return w, err
		}
		return w, json.Unmarshal(steps, &w.InFlight)
	})
	if err != nil {
		return nil, translate("list workers", err)
	}
	return out, nil
}

// PruneWorkers forgets workers not seen for olderThan.
func (s *Store) PruneWorkers(ctx context.Context, olderThan time.Duration) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, workerPruneSQL, olderThan.Milliseconds())
	if err != nil {
		return 0, translate("prune workers", err)
	}
	return tag.RowsAffected(), nil
}

// QueueDue is when a queue's earliest pending step becomes runnable.
type QueueDue struct {
	Queue string
	// Next is zero when the queue has no pending runnable step.
	Next time.Time
}

// QueuesDue reports, for each queue, when its earliest pending step becomes
// runnable, and the database's clock to compare with.
func (s *Store) QueuesDue(ctx context.Context, queues []string) ([]QueueDue, time.Time, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, workerQueuesDueSQL, queues)
	if err != nil {
		return nil, time.Time{}, translate("queues due", err)
	}
	defer rows.Close()
	var out []QueueDue
	var now time.Time
	for rows.Next() {
		var q QueueDue
		var next *time.Time
		if err := rows.Scan(&q.Queue, &next, &now); err != nil {
			return nil, time.Time{}, translate("queues due", err)
		}
		if next != nil {
			q.Next = *next
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, translate("queues due", err)
	}
	return out, now, nil
}

// Notify sends a notification on channel (delivered at once: there is no
// surrounding transaction).
func (s *Store) Notify(ctx context.Context, channel, payload string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, notifySQL, channel, payload); err != nil {
		return translate("notify", err)
	}
	return nil
}
