// Package analysissql_test tests the analysis SQL functions installed by
// migration 00003 (get_step_readiness_status and friends) against fixtures
// written straight into a freshly migrated database, bypassing the engine:
// the functions are an oracle for the engine, so the tests must not depend
// on it.
package analysissql_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// historyBase is the created_at of a fixture step's initial pending
// transition; History[i] is recorded at historyBase + (i+1) minutes.
var historyBase = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// runAt is where a fixture step's runnable_at lies relative to now().
type runAt int

const (
	runPast   runAt = iota // an hour ago: no time gate
	runNull                // NULL: no time gate either, by the functions' rules
	runFuture              // in an hour: in backoff
)

// step describes one workflow step of a fixture task. The zero value is a
// fresh pending root with three attempts of budget.
type step struct {
	Name         string
	Status       string   // "" means pending
	Parents      []string // names of earlier steps of the same task
	Attempts     int
	RetryBase    int
	RetryLimit   int // 0 means 3, negative means 0
	NotRetryable bool
	Run          runAt
	LastError    bool
	// History lists the states the step went through after its initial
	// pending transition, inserted as legal workflow_step_transitions.
	History []string
}

// task is an inserted fixture task.
type task struct {
	ID    uuid.UUID
	Steps map[string]uuid.UUID // by name
}

// env is one test's migrated database and the templates fixture tasks use.
type env struct {
	conn        *pgx.Conn
	namedTaskID int64
	namedStepID int64
}

// setup gives the test its own migrated database with one namespace, named
// task and step template.
func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.New(t)+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	e := &env{conn: conn}
	var nsID int64
	mustScan(t, conn.QueryRow(ctx, `INSERT INTO task_namespaces (name) VALUES ('analysis') RETURNING task_namespace_id`), &nsID)
	mustScan(t, conn.QueryRow(ctx, `INSERT INTO named_tasks (task_namespace_id, name, version, template, content_hash)
		VALUES ($1, 'flow', '1.0.0', '{}', 'x') RETURNING named_task_id`, nsID), &e.namedTaskID)
	mustScan(t, conn.QueryRow(ctx, `INSERT INTO named_steps (named_task_id, name, position, handler)
		VALUES ($1, 'step', 0, 'noop') RETURNING named_step_id`, e.namedTaskID), &e.namedStepID)
	return e
}

// task inserts a pending task with the given steps, their edges and
// transitions, in one round trip.
func (e *env) task(t *testing.T, steps ...step) task {
	t.Helper()
	tk := task{ID: uuid.Must(uuid.NewV7()), Steps: map[string]uuid.UUID{}}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, total_steps, unfinished_steps)
		VALUES ($1, $2, 'analysis', 'flow', '1.0.0', $3, $3)`, tk.ID, e.namedTaskID, len(steps))
	for _, s := range steps {
		if _, dup := tk.Steps[s.Name]; dup {
			t.Fatalf("fixture: step %q twice", s.Name)
		}
		id := uuid.Must(uuid.NewV7())
		tk.Steps[s.Name] = id
		status := s.Status
		if status == "" {
			status = "pending"
		}
		limit := s.RetryLimit
		switch {
		case limit == 0:
			limit = 3
		case limit < 0:
			limit = 0
		}
		var lastErr any
		if s.LastError {
			lastErr = `{"message":"boom"}`
		}
		runnable := map[runAt]string{
			runPast:   "now() - interval '1 hour'",
			runNull:   "NULL",
			runFuture: "now() + interval '1 hour'",
		}[s.Run]
		// unfinished_parents is deliberately left at 0: the functions
		// must not read it.
		b.Queue(`INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, status,
				attempts, retry_base, retry_limit, retryable, last_error, runnable_at)
			VALUES ($1, $2, $3, $4, 'noop', $5, $6, $7, $8, $9, $10, `+runnable+`)`,
			id, tk.ID, e.namedStepID, s.Name, status, s.Attempts, s.RetryBase, limit, !s.NotRetryable, lastErr)
		for _, p := range s.Parents {
			pid, ok := tk.Steps[p]
			if !ok {
				t.Fatalf("fixture: %s's parent %q is not an earlier step", s.Name, p)
			}
			b.Queue(`INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id) VALUES ($1, $2, $3)`, pid, id, tk.ID)
		}
		var from *string
		for i, to := range append([]string{"pending"}, s.History...) {
			b.Queue(`INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, created_at)
				VALUES ($1, $2, $3, $4, $5)`, id, tk.ID, from, to, historyBase.Add(time.Duration(i)*time.Minute))
			from = &to
		}
	}
	if err := e.conn.SendBatch(context.Background(), b).Close(); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return tk
}

// readiness is one row of get_step_readiness_status[_batch].
type readiness struct {
	WorkflowStepID        uuid.UUID  `db:"workflow_step_id"`
	TaskID                uuid.UUID  `db:"task_id"`
	Name                  string     `db:"name"`
	CurrentState          string     `db:"current_state"`
	DependenciesSatisfied bool       `db:"dependencies_satisfied"`
	RetryEligible         bool       `db:"retry_eligible"`
	ReadyForExecution     bool       `db:"ready_for_execution"`
	LastFailureAt         *time.Time `db:"last_failure_at"`
	NextRetryAt           *time.Time `db:"next_retry_at"`
	TotalParents          int        `db:"total_parents"`
	CompletedParents      int        `db:"completed_parents"`
	Attempts              int        `db:"attempts"`
	RetryLimit            int        `db:"retry_limit"`
	BlockedReason         *string    `db:"blocked_reason"`
}

// execContext is one row of get_task_execution_context[s_batch], with the
// percentage as text so that it compares exactly.
type execContext struct {
	TaskID               uuid.UUID `db:"task_id"`
	TotalSteps           int64     `db:"total_steps"`
	PendingSteps         int64     `db:"pending_steps"`
	InProgressSteps      int64     `db:"in_progress_steps"`
	CompletedSteps       int64     `db:"completed_steps"`
	FailedSteps          int64     `db:"failed_steps"`
	CancelledSteps       int64     `db:"cancelled_steps"`
	ReadySteps           int64     `db:"ready_steps"`
	ExecutionStatus      string    `db:"execution_status"`
	RecommendedAction    string    `db:"recommended_action"`
	CompletionPercentage string    `db:"completion_percentage"`
	HealthStatus         string    `db:"health_status"`
}

const contextColumns = `task_id, total_steps, pending_steps, in_progress_steps, completed_steps, failed_steps,
	cancelled_steps, ready_steps, execution_status, recommended_action,
	completion_percentage::text AS completion_percentage, health_status`

// level is one row of calculate_dependency_levels.
type level struct {
	WorkflowStepID  uuid.UUID `db:"workflow_step_id"`
	Name            string    `db:"name"`
	DependencyLevel *int      `db:"dependency_level"`
}

func query[T any](t *testing.T, e *env, sql string, args ...any) []T {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// readinessOf returns get_step_readiness_status(task, stepIDs) by step name.
func (e *env) readinessOf(t *testing.T, taskID uuid.UUID, stepIDs []uuid.UUID) map[string]readiness {
	t.Helper()
	rows := query[readiness](t, e, `SELECT * FROM get_step_readiness_status($1, $2)`, taskID, stepIDs)
	out := map[string]readiness{}
	for _, r := range rows {
		out[r.Name] = r
	}
	if len(out) != len(rows) {
		t.Fatalf("readiness: %d rows but %d names", len(rows), len(out))
	}
	return out
}

// contextOf returns get_task_execution_context(task), which must be one row.
func (e *env) contextOf(t *testing.T, taskID uuid.UUID) execContext {
	t.Helper()
	rows := query[execContext](t, e, `SELECT `+contextColumns+` FROM get_task_execution_context($1)`, taskID)
	if len(rows) != 1 {
		t.Fatalf("get_task_execution_context: %d rows, want 1", len(rows))
	}
	return rows[0]
}

// levelsOf returns calculate_dependency_levels(task) as name → level.
func (e *env) levelsOf(t *testing.T, taskID uuid.UUID) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range query[level](t, e, `SELECT * FROM calculate_dependency_levels($1)`, taskID) {
		if r.DependencyLevel == nil {
			t.Fatalf("calculate_dependency_levels: %s has no level", r.Name)
		}
		out[r.Name] = *r.DependencyLevel
	}
	return out
}

// want is the expected readiness of one step; nil pointers are not checked.
type want struct {
	ready    bool
	deps     bool
	reason   string // "" means NULL
	total    int
	done     int
	eligible *bool
}

func checkReadiness(t *testing.T, got map[string]readiness, wants map[string]want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("readiness rows for %v, want %d steps", keys(got), len(wants))
	}
	for name, w := range wants {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no readiness row for %s", name)
		}
		if r.ReadyForExecution != w.ready || r.DependenciesSatisfied != w.deps || deref(r.BlockedReason) != w.reason ||
			r.TotalParents != w.total || r.CompletedParents != w.done {
			t.Fatalf("%s: ready=%v deps=%v reason=%q parents=%d/%d; want ready=%v deps=%v reason=%q parents=%d/%d",
				name, r.ReadyForExecution, r.DependenciesSatisfied, deref(r.BlockedReason), r.CompletedParents, r.TotalParents,
				w.ready, w.deps, w.reason, w.done, w.total)
		}
		if w.eligible != nil && r.RetryEligible != *w.eligible {
			t.Fatalf("%s: retry_eligible=%v, want %v", name, r.RetryEligible, *w.eligible)
		}
	}
}

// checkContext compares the verdict columns and counts that wantCtx sets.
func checkContext(t *testing.T, got execContext, w execContext) {
	t.Helper()
	w.TaskID = got.TaskID
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("execution context\n got %+v\nwant %+v", got, w)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

func mustScan(t *testing.T, row pgx.Row, dest ...any) {
	t.Helper()
	if err := row.Scan(dest...); err != nil {
		t.Fatal(err)
	}
}

func mustExec(t *testing.T, e *env, sql string, args ...any) {
	t.Helper()
	if _, err := e.conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
