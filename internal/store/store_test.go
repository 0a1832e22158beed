package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func newStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	v, err := newStore(t, testdb.New(t)).SchemaVersion(ctx)
	if err != nil || v != migrate.LatestVersion() {
		t.Fatalf("migrated: %d, %v; want %d", v, err, migrate.LatestVersion())
	}

	_, err = newStore(t, testdb.NewEmpty(t)).SchemaVersion(ctx)
	if !errors.Is(err, store.ErrNotMigrated) {
		t.Fatalf("empty database: %v, want ErrNotMigrated", err)
	}

	// Port 1 on loopback: nothing listens there.
	_, err = newStore(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2").SchemaVersion(ctx)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("unreachable database: %v, want ErrUnavailable", err)
	}
}

func TestNewRejectsBadURLWithoutEchoingIt(t *testing.T) {
	t.Parallel()
	_, err := store.New(store.Config{DatabaseURL: "postgres://u:s3cret@host:notaport/db"})
	if err == nil {
		t.Fatal("want an error")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Fatalf("error leaks the password: %s", got)
	}
}

// fixture inserts a namespace, a named task with one step template, and
// tasks with one step each in the given states.
type fixture struct {
	conn        *pgx.Conn
	namedTaskID int64
	namedStepID int64
}

// setup gives a test its own migrated database: a connection to it, a
// store on it, and a template to create tasks of.
func setup(t *testing.T) (*pgx.Conn, *store.Store, *fixture) {
	t.Helper()
	dsn := testdb.New(t)
	conn := connect(t, dsn)
	return conn, newStore(t, dsn), newFixture(t, conn)
}

func newFixture(t *testing.T, conn *pgx.Conn) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{conn: conn}
	var nsID int64
	must(t, conn.QueryRow(ctx, `INSERT INTO task_namespaces (name) VALUES ('payments') RETURNING task_namespace_id`).Scan(&nsID))
	must(t, conn.QueryRow(ctx, `INSERT INTO named_tasks (task_namespace_id, name, version, template, content_hash)
		VALUES ($1, 'refund', '1.0.0', '{}', 'h') RETURNING named_task_id`, nsID).Scan(&f.namedTaskID))
	must(t, conn.QueryRow(ctx, `INSERT INTO named_steps (named_task_id, name, position, handler)
		VALUES ($1, 'a', 0, 'noop') RETURNING named_step_id`, f.namedTaskID).Scan(&f.namedStepID))
	return f
}

type stepSpec struct {
	status     string
	attempts   int
	retryLimit int
	lastError  bool
	inBackoff  bool
}

func (f *fixture) task(t *testing.T, taskStatus string, steps ...stepSpec) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	_, err := f.conn.Exec(ctx, `INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status)
		VALUES ($1, $2, 'payments', 'refund', '1.0.0', $3)`, id, f.namedTaskID, taskStatus)
	must(t, err)
	for i, s := range steps {
		var lastErr any
		if s.lastError {
			lastErr = `{"message":"boom"}`
		}
		runnable := "now()"
		if s.inBackoff {
			runnable = "now() + interval '1 hour'"
		}
		_, err := f.conn.Exec(ctx, `INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, status,
				attempts, retry_limit, last_error, runnable_at)
			VALUES ($1, $2, $3, $4, 'noop', $5, $6, $7, $8, `+runnable+`)`,
			uuid.Must(uuid.NewV7()), id, f.namedStepID, fmt.Sprintf("s%d", i), s.status, s.attempts, s.retryLimit, lastErr)
		must(t, err)
	}
	return id
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHealthCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	f := newFixture(t, connect(t, dsn))
	f.task(t, "pending", stepSpec{status: "pending", retryLimit: 3})
	f.task(t, "in_progress",
		stepSpec{status: "in_progress", attempts: 1, retryLimit: 3},
		stepSpec{status: "pending", attempts: 1, retryLimit: 3, lastError: true, inBackoff: true})
	f.task(t, "complete", stepSpec{status: "complete", attempts: 1, retryLimit: 3})
	f.task(t, "error", stepSpec{status: "error", attempts: 3, retryLimit: 3, lastError: true})
	f.task(t, "cancelled", stepSpec{status: "cancelled", retryLimit: 3})
	f.task(t, "resolved_manually", stepSpec{status: "resolved_manually", retryLimit: 3})

	h, err := newStore(t, dsn).HealthCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantTasks := store.StateCounts{Total: 6, Pending: 1, InProgress: 1, Complete: 1, Error: 1, Cancelled: 1, ResolvedManually: 1}
	wantSteps := store.StateCounts{Total: 7, Pending: 2, InProgress: 1, Complete: 1, Error: 1, Cancelled: 1, ResolvedManually: 1}
	if h.Tasks != wantTasks {
		t.Errorf("tasks = %+v, want %+v", h.Tasks, wantTasks)
	}
	if h.Steps != wantSteps {
		t.Errorf("steps = %+v, want %+v", h.Steps, wantSteps)
	}
	if h.RetryableErrors != 1 || h.ExhaustedRetries != 1 || h.InBackoff != 1 {
		t.Errorf("retries = %d retryable, %d exhausted, %d in backoff; want 1, 1, 1", h.RetryableErrors, h.ExhaustedRetries, h.InBackoff)
	}
	if h.MaxConnections <= 0 || h.ActiveConnections < 1 {
		t.Errorf("connections = %d active of %d", h.ActiveConnections, h.MaxConnections)
	}

	// The view agrees with the function.
	var n int64
	must(t, connect(t, dsn).QueryRow(ctx, `SELECT sum(task_count) FROM task_status_counts WHERE namespace_name = 'payments'`).Scan(&n))
	if n != 6 {
		t.Errorf("task_status_counts sums to %d, want 6", n)
	}
}

// The database itself refuses illegal state changes, whatever the code does.
func TestTransitionLegality(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, testdb.New(t))
	f := newFixture(t, conn)
	taskID := f.task(t, "pending", stepSpec{status: "pending", retryLimit: 3})
	var stepID uuid.UUID
	must(t, conn.QueryRow(ctx, `SELECT workflow_step_id FROM workflow_steps WHERE task_id = $1`, taskID).Scan(&stepID))

	taskCases := []struct {
		from  *string
		to    string
		legal bool
	}{
		{nil, "pending", true}, {nil, "complete", false},
		{ptr("pending"), "in_progress", true}, {ptr("pending"), "complete", false}, {ptr("pending"), "pending", false},
		{ptr("in_progress"), "complete", true}, {ptr("in_progress"), "pending", true}, {ptr("in_progress"), "resolved_manually", false},
		{ptr("error"), "pending", true}, {ptr("error"), "resolved_manually", true}, {ptr("error"), "cancelled", true}, {ptr("error"), "complete", false},
		{ptr("complete"), "cancelled", true}, {ptr("complete"), "pending", false},
		{ptr("resolved_manually"), "cancelled", true}, {ptr("cancelled"), "pending", false}, {ptr("bogus"), "pending", false},
	}
	for _, tc := range taskCases {
		_, err := conn.Exec(ctx, `INSERT INTO task_transitions (task_id, from_state, to_state) VALUES ($1, $2, $3)`, taskID, tc.from, tc.to)
		if (err == nil) != tc.legal {
			t.Errorf("task %v → %s: err = %v, want legal=%v", deref(tc.from), tc.to, err, tc.legal)
		}
	}
	stepCases := []struct {
		from  *string
		to    string
		legal bool
	}{
		{nil, "pending", true}, {ptr("pending"), "resolved_manually", true}, {ptr("pending"), "complete", false},
		{ptr("in_progress"), "pending", true}, {ptr("in_progress"), "complete", true},
		{ptr("error"), "cancelled", true}, {ptr("complete"), "cancelled", false}, {ptr("complete"), "pending", false},
		{ptr("resolved_manually"), "pending", false}, {ptr("cancelled"), "pending", false},
	}
	for _, tc := range stepCases {
		_, err := conn.Exec(ctx, `INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state) VALUES ($1, $2, $3, $4)`,
			stepID, taskID, tc.from, tc.to)
		if (err == nil) != tc.legal {
			t.Errorf("step %v → %s: err = %v, want legal=%v", deref(tc.from), tc.to, err, tc.legal)
		}
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "(initial)"
	}
	return *s
}

// TestDeletingTasksTakesTheirTransitions checks the cascade that replaced
// the transition tables' foreign keys (migration 00009): deleting a task
// deletes its steps and every transition of both, and nothing of its
// neighbours.
func TestDeletingTasksTakesTheirTransitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, testdb.New(t))
	f := newFixture(t, conn)
	gone := f.task(t, "pending", stepSpec{status: "pending", retryLimit: 3}, stepSpec{status: "pending", retryLimit: 3})
	kept := f.task(t, "pending", stepSpec{status: "pending", retryLimit: 3})
	for _, id := range []uuid.UUID{gone, kept} {
		_, err := conn.Exec(ctx, `INSERT INTO task_transitions (task_id, from_state, to_state) VALUES ($1, NULL, 'pending')`, id)
		must(t, err)
		_, err = conn.Exec(ctx, `INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state)
			SELECT workflow_step_id, task_id, NULL, 'pending' FROM workflow_steps WHERE task_id = $1`, id)
		must(t, err)
	}
	_, err := conn.Exec(ctx, `DELETE FROM tasks WHERE task_id = $1`, gone)
	must(t, err)
	count := func(sql string, id uuid.UUID) int {
		var n int
		must(t, conn.QueryRow(ctx, sql, id).Scan(&n))
		return n
	}
	const taskTransitions = `SELECT count(*) FROM task_transitions WHERE task_id = $1`
	const stepTransitions = `SELECT count(*) FROM workflow_step_transitions WHERE task_id = $1`
	if n, m := count(taskTransitions, gone), count(stepTransitions, gone); n != 0 || m != 0 {
		t.Fatalf("deleted task keeps %d task and %d step transitions", n, m)
	}
	if n, m := count(taskTransitions, kept), count(stepTransitions, kept); n != 1 || m != 1 {
		t.Fatalf("neighbour has %d task and %d step transitions, want 1 and 1", n, m)
	}
}
