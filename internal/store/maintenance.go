package store

import (
	"context"
	_ "embed"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed sql/leader_acquire.sql
var leaderAcquireSQL string

//go:embed sql/leader_resign.sql
var leaderResignSQL string

//go:embed sql/retention_delete.sql
var retentionDeleteSQL string

//go:embed sql/retention_archive.sql
var retentionArchiveSQL string

//go:embed sql/audit_purge.sql
var auditPurgeSQL string

//go:embed sql/gauges_queue.sql
var gaugesQueueSQL string

//go:embed sql/gauges_tasks.sql
var gaugesTasksSQL string

//go:embed sql/gauges_ready.sql
var readyStepsSQL string

//go:embed sql/gauges_outbox.sql
var outboxPendingCountSQL string

// LeaderLease is who holds a leader lease, and until when.
type LeaderLease struct {
	Holder    string
	ExpiresAt time.Time
}

// AcquireLease takes or renews the lease name for holder for ttl, and
// returns its holder afterwards (holder itself when it got it).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (LeaderLease, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var l LeaderLease
	err := s.pool.QueryRow(ctx, leaderAcquireSQL, name, holder, ttl.Milliseconds()).Scan(&l.Holder, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another replica took the lease after this statement's snapshot:
		// the insert met its row, the fallback read could not see it. A new
		// statement sees it.
		err = s.pool.QueryRow(ctx, leaderAcquireSQL, name, holder, ttl.Milliseconds()).Scan(&l.Holder, &l.ExpiresAt)
	}
	return l, translate("acquire leader lease", err)
}

// ResignLease gives up the lease name if holder holds it.
func (s *Store) ResignLease(ctx context.Context, name, holder string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, leaderResignSQL, name, holder)
	return translate("resign leader lease", err)
}

// DeleteFinishedTasks deletes up to limit tasks in one of statuses that
// finished more than olderThan ago, with everything they own, and returns
// how many went. With archive, the rows are first copied to the archive
// tables in the same statement.
func (s *Store) DeleteFinishedTasks(ctx context.Context, statuses []string, olderThan time.Duration, limit int, archive bool) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	sql := retentionDeleteSQL
	if archive {
		sql = retentionArchiveSQL
	}
	tag, err := s.pool.Exec(ctx, sql, statuses, olderThan.Milliseconds(), limit)
	if err != nil {
		return 0, translate("delete finished tasks", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteAuditEvents forgets up to limit audit rows older than olderThan and
// returns how many went.
func (s *Store) DeleteAuditEvents(ctx context.Context, olderThan time.Duration, limit int) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, auditPurgeSQL, time.Now().Add(-olderThan), limit)
	if err != nil {
		return 0, translate("delete audit events", err)
	}
	return tag.RowsAffected(), nil
}

//go:embed sql/limit_keys_purge.sql
var limitKeysPurgeSQL string

// PurgeLimitKeys deletes up to limit concurrency slots and up to limit
// rate buckets not marked used for idle that no task or step refers to any
// more (their keys are templates over tasks' contexts, so the tables would
// otherwise keep every key ever used). Rows still referred to are marked
// used, so that the next call looks at others. It returns the rows deleted
// and the most rows one table had to look at: below limit, nothing is left.
func (s *Store) PurgeLimitKeys(ctx context.Context, idle time.Duration, limit int) (deleted, looked int64, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := s.pool.QueryRow(ctx, limitKeysPurgeSQL, idle.Milliseconds(), limit).Scan(&deleted, &looked); err != nil {
		return 0, 0, translate("purge limit keys", err)
	}
	return deleted, looked, nil
}

// QueueGauge is the ready queue of one template (Waiting ""), or its
// steps that are ready but parked, by why they wait: "paused", "limit" (a
// step concurrency slot), "task_limit" (a task concurrency slot).
type QueueGauge struct {
	Namespace, Task string
	Waiting         string
	// Ready counts the steps; OldestSeconds is how long the oldest waited.
	Ready         int64
	OldestSeconds float64
}

// Gauges is a snapshot of the database-wide gauges.
type Gauges struct {
	Queues []QueueGauge
	Tasks  map[string]int64 // by status
	// Ready counts the steps runnable now by handler queue ("" is the
	// engine's own).
	Ready map[string]int64
	// PendingDeliveries counts webhook deliveries not yet made.
	PendingDeliveries int64
}

// ReadGauges computes the database-wide gauges (one round trip of four
// queries; the leader runs it on an interval, so scrapes run none).
func (s *Store) ReadGauges(ctx context.Context) (*Gauges, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	g := &Gauges{Tasks: map[string]int64{}, Ready: map[string]int64{}}
	var b pgx.Batch
	b.Queue(gaugesQueueSQL).Query(func(rows pgx.Rows) (err error) {
		g.Queues, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (QueueGauge, error) {
			var q QueueGauge
			err := row.Scan(&q.Namespace, &q.Task, &q.Waiting, &q.Ready, &q.OldestSeconds)
			return q, err
		})
		return err
	})
	b.Queue(gaugesTasksSQL).Query(func(rows pgx.Rows) error {
		var status string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
			g.Tasks[status] = n
			return nil
		})
		return err
	})
	b.Queue(readyStepsSQL).Query(func(rows pgx.Rows) error {
		var queue string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&queue, &n}, func() error {
			g.Ready[queue] = n
			return nil
		})
		return err
	})
	b.Queue(outboxPendingCountSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&g.PendingDeliveries) })
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, translate("read gauges", err)
	}
	return g, nil
}
