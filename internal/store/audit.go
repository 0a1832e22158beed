package store

import (
	"context"
	_ "embed"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AuditEvent is one row of the audit trail.
type AuditEvent struct {
	ID         int64     `json:"id"`
	OccurredAt time.Time `json:"occurred_at"`
	// Actor is the token's subject; "" when authentication is off.
	Actor string `json:"actor"`
	// Action is the permission the route requires, e.g. tasker.task:cancel.
	Action string `json:"action"`
	// Resource is the permission's resource, e.g. task.
	Resource   string `json:"resource"`
	ResourceID string `json:"resource_id,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Status     int    `json:"status"`
	// Outcome is succeeded (2xx), failed (any other answer) or denied
	// (refused by authorization).
	Outcome   string `json:"outcome" enums:"succeeded,failed,denied"`
	RequestID string `json:"request_id,omitempty"`
}

// Audit outcomes.
const (
	AuditSucceeded = "succeeded"
	AuditFailed    = "failed"
	AuditDenied    = "denied"
)

//go:embed sql/audit_insert.sql
var auditInsertSQL string

//go:embed sql/audit_list.sql
var auditListSQL string

//go:embed sql/task_namespace.sql
var taskNamespaceSQL string

//go:embed sql/async_commit.sql
var asyncCommitSQL string

// RecordAudit appends e to the audit trail (its ID and OccurredAt are set
// by the database) and returns once the row is written.
//
// Events are group-committed (groupWriter): one writer takes every event
// queued and inserts them in one statement, so concurrent requests neither
// pay a transaction each nor contend for the same index pages, and ids
// follow the order events were recorded.
func (s *Store) RecordAudit(ctx context.Context, e AuditEvent) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req := &auditReq{event: e, done: make(chan error, 1)}
	if err := s.audits.submit(ctx, req); err != nil {
		return translate("record audit event", err)
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return translate("record audit event", ctx.Err())
	}
}

type auditReq struct {
	event AuditEvent
	done  chan error
}

// maxAuditBatch caps the events of one insert.
const maxAuditBatch = 256

// writeAudits inserts batch and answers its events, or returns the error.
func (s *Store) writeAudits(batch []*auditReq) error {
	// Not any one requester's context: a client that gives up must not
	// lose its neighbours' records.
	ctx, cancel := context.WithTimeout(context.Background(), DefaultQueryTimeout)
	defer cancel()
	n := len(batch)
	actor, action, resource, resourceID, namespace := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	method, path, outcome, requestID := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	status := make([]int32, n)
	for i, r := range batch {
		e := r.event
		actor[i], action[i], resource[i], resourceID[i], namespace[i] = e.Actor, e.Action, e.Resource, e.ResourceID, e.Namespace
		method[i], path[i], status[i], outcome[i], requestID[i] = e.Method, e.Path, int32(e.Status), e.Outcome, e.RequestID
	}
	// The rows commit without waiting for their WAL flush (one implicit
	// transaction: a batch ends with a single Sync). The actions they
	// record committed durably on their own; a second disk flush on the
	// path of every mutating call buys little. A database crash can lose
	// the audit rows of its last few hundred milliseconds
	// (wal_writer_delay), never rows out of order, and readers see the
	// rows at once.
	var b pgx.Batch
	b.Queue(asyncCommitSQL)
	b.Queue(auditInsertSQL, actor, action, resource, resourceID, namespace, method, path, status, outcome, requestID)
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return translate("record audit event", err)
	}
	for _, r := range batch {
		r.done <- nil
	}
	return nil
}

// AuditFilter selects audit events; zero fields select everything.
type AuditFilter struct {
	Actor    string
	Resource string
	Since    time.Time
	// Namespaces, when not nil, keeps only events in these namespaces.
	Namespaces []string
}

// AuditKey is the position of an event in the newest-first list.
type AuditKey struct {
	OccurredAt time.Time
	ID         int64
}

// ListAudit returns up to limit events, newest first, strictly after
// after when it is set.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter, after *AuditKey, limit int) ([]AuditEvent, error) {
	var afterAt *time.Time
	var afterID *int64
	if after != nil {
		afterAt, afterID = &after.OccurredAt, &after.ID
	}
	var namespaces []string
	if f.Namespaces != nil {
		namespaces = append([]string{}, f.Namespaces...) // non-nil even when empty: no namespace at all
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, auditListSQL, nullable(f.Actor), nullable(f.Resource), nullableTime(f.Since),
		namespaces, limit, afterAt, afterID)
	if err != nil {
		return nil, translate("list audit events", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEvent, error) {
		var e AuditEvent
		err := row.Scan(&e.ID, &e.OccurredAt, &e.Actor, &e.Action, &e.Resource, &e.ResourceID, &e.Namespace,
			&e.Method, &e.Path, &e.Status, &e.Outcome, &e.RequestID)
		return e, err
	})
	if err != nil {
		return nil, translate("list audit events", err)
	}
	return out, nil
}

// TaskNamespace returns the namespace of a task; ErrNotFound when there
// is no such task.
func (s *Store) TaskNamespace(ctx context.Context, id uuid.UUID) (string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var ns string
	if err := s.pool.QueryRow(ctx, taskNamespaceSQL, id).Scan(&ns); err != nil {
		return "", translate("task namespace", err)
	}
	return ns, nil
}
