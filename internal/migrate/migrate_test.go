package migrate_test

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// objects lists the taskerd objects found in schema.
func objects(t *testing.T, dsn, schema string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'v')
		UNION ALL
		SELECT p.proname, 'function' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			t.Fatal(err)
		}
		got[name] = kind
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

var wantObjects = map[string]string{
	"task_namespaces":           "table",
	"named_tasks":               "table",
	"named_steps":               "table",
	"tasks":                     "table",
	"workflow_steps":            "table",
	"workflow_step_edges":       "table",
	"task_transitions":          "table",
	"workflow_step_transitions": "table",
	"goose_db_version":          "table",
	"task_status_counts":        "view",
	"get_system_health_counts":  "function",
	// 00009: the cascade from steps and tasks to their transitions.
	"delete_step_transitions": "function",
	"delete_task_transitions": "function",
	// 00014: the cascade from tasks to steps and from steps to edges.
	"delete_task_steps":        "function",
	"delete_step_edges":        "function",
	"task_transition_is_legal": "function",
	"step_transition_is_legal": "function",
	// Tasker's analysis functions (00003).
	"get_step_readiness_status":         "function",
	"get_step_readiness_status_batch":   "function",
	"get_task_execution_context":        "function",
	"get_task_execution_contexts_batch": "function",
	"calculate_dependency_levels":       "function",
	// The API's critical path and analytics (00004).
	"get_task_critical_path": "function",
	"get_analytics_metrics":  "function",
	"get_slowest_tasks":      "function",
	"get_slowest_steps":      "function",
	"get_most_retried_steps": "function",
	"get_error_patterns":     "function",
	"get_blocking_steps":     "function",
	// Remote workers (00005).
	"workers": "table",
	// Outbound webhooks (00006).
	"webhook_subscriptions":     "table",
	"webhook_outbox":            "table",
	"webhook_delivery_attempts": "table",
	// The audit trail (00007).
	"audit_events": "table",
	// 00010: the maintenance leader's lease.
	"leader_leases": "table",
	// 00012: retention's archive (TASKER_ARCHIVE=table).
	"tasks_archive":                     "table",
	"workflow_steps_archive":            "table",
	"workflow_step_edges_archive":       "table",
	"task_transitions_archive":          "table",
	"workflow_step_transitions_archive": "table",
	// Pauses and limits (00013).
	"handler_pauses":    "table",
	"concurrency_slots": "table",
	"rate_buckets":      "table",
	"free_step_slot":    "function",
	"admit_task":        "function",
	"free_task_slot":    "function",
}

func newMigrator(t *testing.T, dsn, schema string) *migrate.Migrator {
	t.Helper()
	m, err := migrate.New(context.Background(), migrate.Config{DatabaseURL: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.NewEmpty(t)
	m := newMigrator(t, dsn, "tasker")

	if v, err := m.Version(ctx); err != nil || v != 0 {
		t.Fatalf("fresh database: version %d, %v; want 0", v, err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	got := objects(t, dsn, "tasker")
	for name, kind := range wantObjects {
		if got[name] != kind {
			t.Errorf("after up: %s is %q, want %q", name, got[name], kind)
		}
	}
	if v, _ := m.Version(ctx); v != migrate.LatestVersion() {
		t.Fatalf("after up: version %d, want %d", v, migrate.LatestVersion())
	}
	if other := objects(t, dsn, "public"); len(other) != 0 {
		t.Errorf("objects leaked into public: %v", other)
	}

	if err := m.DownTo(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got = objects(t, dsn, "tasker")
	for name := range got {
		if name != "goose_db_version" {
			t.Errorf("after down to 0: %s still exists", name)
		}
	}
	if v, _ := m.Version(ctx); v != 0 {
		t.Fatalf("after down: version %d, want 0", v)
	}

	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if got := objects(t, dsn, "tasker"); len(got) != len(wantObjects) {
		t.Errorf("after up again: %d objects, want %d: %v", len(got), len(wantObjects), got)
	}
	// Up again is a no-op, not an error.
	if err := m.Up(ctx); err != nil {
		t.Fatalf("second up: %v", err)
	}
}

func TestCustomSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.NewEmpty(t)
	if err := newMigrator(t, dsn, "orchestration").Up(ctx); err != nil {
		t.Fatal(err)
	}
	got := objects(t, dsn, "orchestration")
	for name, kind := range wantObjects {
		if got[name] != kind {
			t.Errorf("%s is %q, want %q", name, got[name], kind)
		}
	}
	if len(objects(t, dsn, "tasker")) != 0 {
		t.Error("objects created in tasker although the schema is orchestration")
	}
	// The function works from a session whose search_path is the schema.
	conn, err := pgx.Connect(ctx, dsn+"&search_path=orchestration")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var total int64
	if err := conn.QueryRow(ctx, "SELECT total_tasks FROM get_system_health_counts()").Scan(&total); err != nil || total != 0 {
		t.Fatalf("get_system_health_counts: %d, %v", total, err)
	}
}

// Replicas or Jobs starting at once all run `migrate up`: the advisory lock
// makes them wait for each other, and all succeed.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.NewEmpty(t)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := migrate.New(ctx, migrate.Config{DatabaseURL: dsn})
			if err != nil {
				errs <- err
				return
			}
			defer m.Close()
			errs <- m.Up(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent up: %v", err)
		}
	}
	m := newMigrator(t, dsn, "tasker")
	list, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if !s.Applied {
			t.Errorf("migration %d not applied", s.Version)
		}
	}
}

func TestIncludesExpanded(t *testing.T) {
	t.Parallel()
	fsys, err := migrate.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(fsys, "*.sql")
	if len(names) == 0 {
		t.Fatal("no migrations embedded")
	}
	var all strings.Builder
	for _, n := range names {
		b, _ := fs.ReadFile(fsys, n)
		all.Write(b)
	}
	if strings.Contains(all.String(), "+taskerd include") {
		t.Error("an include directive was left unexpanded")
	}
	for _, want := range []string{"CREATE OR REPLACE VIEW task_status_counts", "CREATE OR REPLACE FUNCTION get_system_health_counts"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("migrations lack %q", want)
		}
	}
}

func TestValidateSchemaName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"tasker", true}, {"_x1", true}, {"", false}, {"1abc", false}, {"Tasker", false}, {"a-b", false}, {"a;drop", false},
		{strings.Repeat("a", 64), false},
	} {
		if err := migrate.ValidateSchemaName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateSchemaName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
