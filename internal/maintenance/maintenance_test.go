package maintenance_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/taskerd/taskerd/internal/leadership"
	"github.com/taskerd/taskerd/internal/maintenance"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

type bundle struct {
	conn   *pgx.Conn
	runner *maintenance.Runner
	reg    *prometheus.Registry
	named  int64
	step   int64
}

// setup gives a migrated database, a leading elector and a runner whose
// interval is long: tests call Pass themselves. With archive, retention
// archives what it deletes.
func setup(t *testing.T, archive ...bool) *bundle {
	t.Helper()
	ctx := context.Background()
	dsn := testdb.New(t)
	s, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(ctx, dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	e, err := leadership.New(leadership.Config{Store: s, ReplicaID: "leader", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	deadline := time.Now().Add(5 * time.Second)
	for !e.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("never became leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b := &bundle{conn: conn, reg: prometheus.NewRegistry()}
	b.runner, err = maintenance.New(maintenance.Config{Store: s, Elector: e, Interval: time.Hour, BatchSize: 3,
		RetentionCompleted: 24 * time.Hour, RetentionFailed: 72 * time.Hour, RetentionAudit: 48 * time.Hour,
		RetentionDeliveries: 12 * time.Hour, RetentionWorkers: time.Hour, Archive: len(archive) > 0 && archive[0],
		Registerer: b.reg})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO task_namespaces (name) VALUES ('payments')`)
	if err := conn.QueryRow(ctx, `INSERT INTO named_tasks (task_namespace_id, name, version, template, content_hash)
		SELECT task_namespace_id, 'refund', '1.0.0', '{}', 'h' FROM task_namespaces RETURNING named_task_id`).Scan(&b.named); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO named_steps (named_task_id, name, position, handler)
		VALUES ($1, 'a', 0, 'noop') RETURNING named_step_id`, b.named).Scan(&b.step); err != nil {
		t.Fatal(err)
	}
	return b
}

// task inserts a task in status that finished age ago (never, when age is
// 0 and the status is unfinished), with two steps, an edge and transitions.
func (b *bundle) task(t *testing.T, status string, age time.Duration) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	var completed any
	if age > 0 {
		completed = time.Now().Add(-age)
	}
	if _, err := b.conn.Exec(ctx, `INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status, completed_at)
		VALUES ($1, $2, 'payments', 'refund', '1.0.0', $3, $4)`, id, b.named, status, completed); err != nil {
		t.Fatal(err)
	}
	s1, s2 := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	stepStatus := "complete"
	if status == "pending" {
		stepStatus = "pending"
	}
	for i, sid := range []uuid.UUID{s1, s2} {
		runnable := "NULL"
		if stepStatus == "pending" && i == 0 {
			runnable = "now() - interval '3 seconds'"
		}
		if _, err := b.conn.Exec(ctx, `INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, status, runnable_at)
			VALUES ($1, $2, $3, $4, 'noop', $5, `+runnable+`)`, sid, id, b.step, fmt.Sprintf("s%d", i), stepStatus); err != nil {
			t.Fatal(err)
		}
		if _, err := b.conn.Exec(ctx, `INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state)
			VALUES ($1, $2, NULL, 'pending')`, sid, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.conn.Exec(ctx, `INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id) VALUES ($1, $2, $3)`, s1, s2, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Exec(ctx, `INSERT INTO task_transitions (task_id, from_state, to_state) VALUES ($1, NULL, 'pending')`, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRetentionDeletesExactlyTheExpiredTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	day := 24 * time.Hour
	var gone, kept []uuid.UUID
	// Seven expired tasks: more than one batch (3), so batches repeat.
	for _, st := range []string{"complete", "cancelled", "resolved_manually", "complete", "complete"} {
		gone = append(gone, b.task(t, st, 2*day))
	}
	gone = append(gone, b.task(t, "error", 4*day), b.task(t, "error", 5*day))
	kept = append(kept,
		b.task(t, "complete", time.Hour),  // finished recently
		b.task(t, "error", 2*day),         // failed tasks are kept longer
		b.task(t, "in_progress", 0),       // never finished
		b.task(t, "pending", 0),           // never started
		b.task(t, "resolved_manually", 0), // no finish time recorded: kept
	)
	b.runner.Pass(context.Background())

	for _, id := range gone {
		if n := b.count(t, `SELECT count(*) FROM tasks WHERE task_id = $1`, id); n != 0 {
			t.Fatalf("expired task %s kept", id)
		}
	}
	for _, id := range kept {
		if n := b.count(t, `SELECT count(*) FROM tasks WHERE task_id = $1`, id); n != 1 {
			t.Fatalf("task %s deleted, want kept", id)
		}
	}
	// Their steps, edges and transitions went with them; the others' stay.
	want := map[string]int{
		`SELECT count(*) FROM workflow_steps`:            2 * len(kept),
		`SELECT count(*) FROM workflow_step_edges`:       len(kept),
		`SELECT count(*) FROM workflow_step_transitions`: 2 * len(kept),
		`SELECT count(*) FROM task_transitions`:          len(kept),
	}
	for sql, n := range want {
		if got := b.count(t, sql); got != n {
			t.Fatalf("%s = %d, want %d", sql, got, n)
		}
	}
	for _, table := range []string{"tasks_archive", "workflow_steps_archive", "workflow_step_edges_archive",
		"task_transitions_archive", "workflow_step_transitions_archive"} {
		if n := b.count(t, `SELECT count(*) FROM `+table); n != 0 {
			t.Fatalf("%s has %d rows without TASKER_ARCHIVE", table, n)
		}
	}
	deleted := `
# HELP tasker_retention_deleted_total Rows deleted by retention, by kind (completed_tasks, failed_tasks, audit_events, webhook_deliveries, workers, limit_keys).
# TYPE tasker_retention_deleted_total counter
tasker_retention_deleted_total{kind="audit_events"} 0
tasker_retention_deleted_total{kind="completed_tasks"} 5
tasker_retention_deleted_total{kind="failed_tasks"} 2
tasker_retention_deleted_total{kind="limit_keys"} 0
tasker_retention_deleted_total{kind="webhook_deliveries"} 0
tasker_retention_deleted_total{kind="workers"} 0
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(deleted), "tasker_retention_deleted_total"); err != nil {
		t.Fatal(err)
	}
}

func TestArchiveKeepsEveryRowOfTheDeletedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	var gone []uuid.UUID
	for range 4 { // more than one batch of 3
		gone = append(gone, b.task(t, "complete", 2*24*time.Hour))
	}
	kept := b.task(t, "complete", time.Hour)
	// What the archive must hold afterwards: the expired tasks' rows, as
	// they are now, column for column.
	snapshot := func(table, key string) string {
		var s string
		if err := b.conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(x::text, '|' ORDER BY x::text), '')
			FROM `+table+` x WHERE `+key+` = ANY ($1)`, gone).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	pairs := [][3]string{
		{"tasks", "tasks_archive", "task_id"},
		{"workflow_steps", "workflow_steps_archive", "task_id"},
		{"workflow_step_edges", "workflow_step_edges_archive", "task_id"},
		{"task_transitions", "task_transitions_archive", "task_id"},
		{"workflow_step_transitions", "workflow_step_transitions_archive", "task_id"},
	}
	before := map[string]string{}
	for _, p := range pairs {
		before[p[0]] = snapshot(p[0], p[2])
		if before[p[0]] == "" {
			t.Fatalf("fixture has no %s rows", p[0])
		}
	}
	b.runner.Pass(context.Background())
	for _, p := range pairs {
		if got := snapshot(p[1], p[2]); got != before[p[0]] {
			t.Fatalf("%s holds\n%s\nwant the deleted rows of %s\n%s", p[1], got, p[0], before[p[0]])
		}
		if got := snapshot(p[0], p[2]); got != "" {
			t.Fatalf("%s still holds rows of expired tasks: %s", p[0], got)
		}
		if n := b.count(t, `SELECT count(*) FROM `+p[1]+` WHERE task_id = $1`, kept); n != 0 {
			t.Fatalf("%s archived the task still retained", p[1])
		}
	}
	if n := b.count(t, `SELECT count(*) FROM tasks WHERE task_id = $1`, kept); n != 1 {
		t.Fatal("the retained task was deleted")
	}
}

// Retention copies with SELECT *, so every archive table must have its
// source's columns in the same order and types: a migration that adds a
// column to one and not the other fails here, not in production.
func TestArchiveTablesMatchTheirSources(t *testing.T) {
	t.Parallel()
	b := setup(t)
	columns := func(table string) string {
		var s string
		if err := b.conn.QueryRow(context.Background(), `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
			FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, table).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, table := range []string{"tasks", "workflow_steps", "workflow_step_edges", "task_transitions", "workflow_step_transitions"} {
		src, arc := columns(table), columns(table+"_archive")
		if src == "" || src != arc {
			t.Errorf("%s_archive has columns\n  %s\nwant those of %s\n  %s", table, arc, table, src)
		}
	}
}

func TestRetentionOfAuditRowsDeliveriesWorkersAndLimitKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := b.conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Audit rows: kept 48 h in this setup; 4 old (more than a batch).
	for _, age := range []string{"3 days", "4 days", "5 days", "50 hours", "47 hours", "1 minute"} {
		exec(`INSERT INTO audit_events (occurred_at, actor, action, resource, method, path, status, outcome)
			VALUES (now() - $1::interval, 'alice', 'tasker.task:create', 'task', 'POST', '/tasker/tasks', 201, 'succeeded')`, age)
	}
	// Deliveries: finished ones kept 12 h; pending ones never go.
	hook := uuid.Must(uuid.NewV7())
	exec(`INSERT INTO webhook_subscriptions (webhook_id, url, events, secret) VALUES ($1, 'http://example.test/', '{task.completed}', 's')`, hook)
	for _, d := range []struct{ status, finished string }{
		{"delivered", "13 hours"}, {"failed", "2 days"}, {"cancelled", "1 day"}, {"delivered", "11 hours"}, {"pending", ""},
	} {
		id := uuid.Must(uuid.NewV7())
		var finished any
		if d.finished != "" {
			finished = d.finished
		}
		exec(`INSERT INTO webhook_outbox (delivery_id, webhook_id, event_id, event_name, body, status, finished_at)
			VALUES ($1, $2, $1, 'task.completed', '{}', $3, now() - $4::interval)`, id, hook, d.status, finished)
		exec(`INSERT INTO webhook_delivery_attempts (delivery_id, attempt, duration_ms, replica) VALUES ($1, 1, 1, 'r')`, id)
	}
	// Workers: kept an hour after last seen.
	exec(`INSERT INTO workers (worker_id, last_seen_at) VALUES ('gone', now() - interval '2 hours'), ('here', now() - interval '5 minutes')`)
	// Limit keys no task uses: kept an hour after their last use.
	exec(`INSERT INTO concurrency_slots (limit_key, used_at) VALUES ('gone', now() - interval '2 hours'), ('recent', now() - interval '5 minutes')`)
	exec(`INSERT INTO rate_buckets (rate_key, used_at) VALUES ('gone', now() - interval '2 hours')`)

	b.runner.Pass(ctx)

	for sql, want := range map[string]int{
		`SELECT count(*) FROM audit_events`:                                                 2,
		`SELECT count(*) FROM audit_events WHERE occurred_at < now() - interval '48 hours'`: 0,
		`SELECT count(*) FROM webhook_outbox`:                                               2,
		`SELECT count(*) FROM webhook_outbox WHERE status = 'pending'`:                      1,
		`SELECT count(*) FROM webhook_delivery_attempts`:                                    2,
		`SELECT count(*) FROM workers WHERE worker_id = 'here'`:                             1,
		`SELECT count(*) FROM workers`:                                                      1,
		`SELECT count(*) FROM concurrency_slots WHERE limit_key = 'recent'`:                 1,
		`SELECT count(*) FROM concurrency_slots`:                                            1,
		`SELECT count(*) FROM rate_buckets`:                                                 0,
	} {
		if got := b.count(t, sql); got != want {
			t.Errorf("%s = %d, want %d", sql, got, want)
		}
	}
	for kind, want := range map[string]float64{"audit_events": 4, "webhook_deliveries": 3, "workers": 1, "limit_keys": 2} {
		if got := testutil.ToFloat64(counterOf(t, b.reg, "tasker_retention_deleted_total", kind)); got != want {
			t.Errorf("tasker_retention_deleted_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
}

// counterOf returns the series of a counter family with label kind as a
// collector.
func counterOf(t *testing.T, reg *prometheus.Registry, name, kind string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no series %s{kind=%q}", name, kind)
	return nil
}

func TestGaugesAreSetByTheLeaderPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.task(t, "pending", 0)
	b.task(t, "pending", 0)
	b.task(t, "in_progress", 0)
	b.task(t, "complete", time.Minute)
	// A third pending task's ready step is parked by a pause: it waits,
	// out of the ready queue, and shows as waiting.
	paused := b.task(t, "pending", 0)
	if _, err := b.conn.Exec(context.Background(), `UPDATE workflow_steps
		SET parked = 'paused', parked_at = runnable_at, runnable_at = NULL WHERE task_id = $1 AND runnable_at IS NOT NULL`, paused); err != nil {
		t.Fatal(err)
	}
	b.runner.Pass(context.Background())

	tasks := `
# HELP tasker_tasks_by_status Tasks in the database by status (set by the leader each maintenance interval).
# TYPE tasker_tasks_by_status gauge
tasker_tasks_by_status{status="cancelled"} 0
tasker_tasks_by_status{status="complete"} 1
tasker_tasks_by_status{status="error"} 0
tasker_tasks_by_status{status="in_progress"} 1
tasker_tasks_by_status{status="pending"} 3
tasker_tasks_by_status{status="resolved_manually"} 0
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(tasks), "tasker_tasks_by_status"); err != nil {
		t.Fatal(err)
	}
	depth := `
# HELP tasker_queue_depth Steps runnable now and not yet claimed, by template (set by the leader each maintenance interval).
# TYPE tasker_queue_depth gauge
tasker_queue_depth{namespace="payments",task="refund"} 2
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(depth), "tasker_queue_depth"); err != nil {
		t.Fatal(err)
	}
	waiting := `
# HELP tasker_waiting_steps Steps ready but parked, by template and reason: paused, limit (a step concurrency slot), task_limit (a task concurrency slot) (set by the leader).
# TYPE tasker_waiting_steps gauge
tasker_waiting_steps{namespace="payments",reason="paused",task="refund"} 1
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(waiting), "tasker_waiting_steps"); err != nil {
		t.Fatal(err)
	}
	ready := `
# HELP tasker_ready_steps Steps runnable now and not yet claimed (the ready queue's depth), by handler queue (set by the leader each maintenance interval).
# TYPE tasker_ready_steps gauge
tasker_ready_steps{queue="default"} 2
# HELP tasker_webhook_outbox_pending Webhook deliveries waiting in the outbox (set by the leader each maintenance interval).
# TYPE tasker_webhook_outbox_pending gauge
tasker_webhook_outbox_pending 0
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(ready), "tasker_ready_steps", "tasker_webhook_outbox_pending"); err != nil {
		t.Fatal(err)
	}
	if age := testutil.ToFloat64(gaugeOf(t, b.reg, "tasker_oldest_runnable_step_age_seconds")); age < 2 {
		t.Fatalf("oldest runnable age %.2f s, want ≥ 2 (the fixture's steps became runnable 3 s ago)", age)
	}
	leader := `
# HELP tasker_leader 1 when this replica is the elected maintenance leader.
# TYPE tasker_leader gauge
tasker_leader 1
`
	if err := testutil.GatherAndCompare(b.reg, strings.NewReader(leader), "tasker_leader"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(b.reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", problems, err)
	}
}

// gaugeOf returns the single series of a gauge family as a collector.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "copy"})
			g.Set(f.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no single series of %s", name)
	return nil
}
