package analysissql_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// diamond is a → {b, c} → d with the given states.
func diamond(a, b, c, d string) []step {
	return []step{
		{Name: "a", Status: a},
		{Name: "b", Status: b, Parents: []string{"a"}},
		{Name: "c", Status: c, Parents: []string{"a"}},
		{Name: "d", Status: d, Parents: []string{"b", "c"}},
	}
}

func TestFunctionsAreStable(t *testing.T) {
	t.Parallel()
	e := setup(t)
	type fn struct {
		Signature  string `db:"signature"`
		Volatility string `db:"provolatile"`
	}
	got := map[string]string{}
	for _, f := range query[fn](t, e, `SELECT p.oid::regprocedure::text AS signature, p.provolatile::text AS provolatile
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'tasker' AND p.proname IN ('get_step_readiness_status', 'get_step_readiness_status_batch',
			'get_task_execution_context', 'get_task_execution_contexts_batch', 'calculate_dependency_levels')`) {
		got[f.Signature] = f.Volatility
	}
	for _, sig := range []string{
		"get_step_readiness_status(uuid,uuid[])",
		"get_step_readiness_status_batch(uuid[])",
		"get_task_execution_context(uuid)",
		"get_task_execution_contexts_batch(uuid[])",
		"calculate_dependency_levels(uuid)",
	} {
		if got[sig] != "s" {
			t.Fatalf("%s: volatility %q, want STABLE (all: %v)", sig, got[sig], got)
		}
	}
	if len(got) != 5 {
		t.Fatalf("functions: %v, want exactly 5", got)
	}
}

func TestLinearChain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tk := e.task(t,
		step{Name: "a", Status: "complete", Attempts: 1},
		step{Name: "b", Parents: []string{"a"}},
		step{Name: "c", Parents: []string{"b"}},
	)
	checkReadiness(t, e.readinessOf(t, tk.ID, nil), map[string]want{
		"a": {deps: true},
		"b": {ready: true, deps: true, total: 1, done: 1},
		"c": {reason: "waiting_for_dependencies", total: 1},
	})
	checkContext(t, e.contextOf(t, tk.ID), execContext{
		TotalSteps: 3, PendingSteps: 2, CompletedSteps: 1, ReadySteps: 1,
		ExecutionStatus: "has_ready_steps", RecommendedAction: "execute_ready_steps",
		CompletionPercentage: "33.33", HealthStatus: "healthy",
	})
	if got := e.levelsOf(t, tk.ID); got["a"] != 0 || got["b"] != 1 || got["c"] != 2 || len(got) != 3 {
		t.Fatalf("levels = %v, want a:0 b:1 c:2", got)
	}
}

func TestDiamond(t *testing.T) {
	t.Parallel()
	e := setup(t)
	waitingD := func(done int) want { return want{reason: "waiting_for_dependencies", total: 2, done: done} }
	for _, tc := range []struct {
		name       string
		a, b, c, d string
		want       map[string]want
		ctx        execContext
	}{{
		name: "fresh", a: "pending", b: "pending", c: "pending", d: "pending",
		want: map[string]want{
			"a": {ready: true, deps: true},
			"b": {reason: "waiting_for_dependencies", total: 1},
			"c": {reason: "waiting_for_dependencies", total: 1},
			"d": waitingD(0),
		},
		ctx: execContext{TotalSteps: 4, PendingSteps: 4, ReadySteps: 1, ExecutionStatus: "has_ready_steps",
			RecommendedAction: "execute_ready_steps", CompletionPercentage: "0.00", HealthStatus: "healthy"},
	}, {
		name: "a complete", a: "complete", b: "pending", c: "pending", d: "pending",
		want: map[string]want{
			"a": {deps: true},
			"b": {ready: true, deps: true, total: 1, done: 1},
			"c": {ready: true, deps: true, total: 1, done: 1},
			"d": waitingD(0),
		},
		ctx: execContext{TotalSteps: 4, PendingSteps: 3, CompletedSteps: 1, ReadySteps: 2, ExecutionStatus: "has_ready_steps",
			RecommendedAction: "execute_ready_steps", CompletionPercentage: "25.00", HealthStatus: "healthy"},
	}, {
		name: "b complete, c pending", a: "complete", b: "complete", c: "pending", d: "pending",
		want: map[string]want{
			"a": {deps: true},
			"b": {deps: true, total: 1, done: 1},
			"c": {ready: true, deps: true, total: 1, done: 1},
			"d": waitingD(1),
		},
		ctx: execContext{TotalSteps: 4, PendingSteps: 2, CompletedSteps: 2, ReadySteps: 1, ExecutionStatus: "has_ready_steps",
			RecommendedAction: "execute_ready_steps", CompletionPercentage: "50.00", HealthStatus: "healthy"},
	}, {
		name: "b complete, c running", a: "complete", b: "complete", c: "in_progress", d: "pending",
		want: map[string]want{
			"a": {deps: true},
			"b": {deps: true, total: 1, done: 1},
			"c": {deps: true, reason: "running", total: 1, done: 1},
			"d": waitingD(1),
		},
		ctx: execContext{TotalSteps: 4, PendingSteps: 1, InProgressSteps: 1, CompletedSteps: 2, ExecutionStatus: "processing",
			RecommendedAction: "wait_for_completion", CompletionPercentage: "50.00", HealthStatus: "healthy"},
	}, {
		name: "d ready", a: "complete", b: "complete", c: "complete", d: "pending",
		want: map[string]want{
			"a": {deps: true},
			"b": {deps: true, total: 1, done: 1},
			"c": {deps: true, total: 1, done: 1},
			"d": {ready: true, deps: true, total: 2, done: 2},
		},
		ctx: execContext{TotalSteps: 4, PendingSteps: 1, CompletedSteps: 3, ReadySteps: 1, ExecutionStatus: "has_ready_steps",
			RecommendedAction: "execute_ready_steps", CompletionPercentage: "75.00", HealthStatus: "healthy"},
	}, {
		name: "all complete", a: "complete", b: "complete", c: "complete", d: "complete",
		want: map[string]want{
			"a": {deps: true},
			"b": {deps: true, total: 1, done: 1},
			"c": {deps: true, total: 1, done: 1},
			"d": {deps: true, total: 2, done: 2},
		},
		ctx: execContext{TotalSteps: 4, CompletedSteps: 4, ExecutionStatus: "all_complete",
			RecommendedAction: "finalize_task", CompletionPercentage: "100.00", HealthStatus: "healthy"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tk := e.task(t, diamond(tc.a, tc.b, tc.c, tc.d)...)
			checkReadiness(t, e.readinessOf(t, tk.ID, nil), tc.want)
			checkContext(t, e.contextOf(t, tk.ID), tc.ctx)
		})
	}
}

// A failed attempt with retries left goes back to pending with a last_error
// and a future runnable_at: not ready, in backoff, and the task recovering.
func TestBackoff(t *testing.T) {
	t.Parallel()
	e := setup(t)
	retried := []string{"in_progress", "error", "pending"}
	backoff := e.task(t, step{Name: "a", Attempts: 1, LastError: true, Run: runFuture, History: retried})
	got := e.readinessOf(t, backoff.ID, nil)
	checkReadiness(t, got, map[string]want{"a": {deps: true, reason: "in_backoff", eligible: ptr(true)}})
	var runnableAt time.Time
	mustScan(t, e.conn.QueryRow(context.Background(), `SELECT runnable_at FROM workflow_steps WHERE workflow_step_id = $1`,
		backoff.Steps["a"]), &runnableAt)
	if r := got["a"]; r.NextRetryAt == nil || !r.NextRetryAt.Equal(runnableAt) {
		t.Fatalf("next_retry_at = %v, want runnable_at %v", r.NextRetryAt, runnableAt)
	}
	if r := got["a"]; r.LastFailureAt == nil || !r.LastFailureAt.Equal(historyBase.Add(2*time.Minute)) {
		t.Fatalf("last_failure_at = %v, want %v", r.LastFailureAt, historyBase.Add(2*time.Minute))
	}
	checkContext(t, e.contextOf(t, backoff.ID), execContext{TotalSteps: 1, PendingSteps: 1,
		ExecutionStatus: "waiting_for_dependencies", RecommendedAction: "wait_for_dependencies",
		CompletionPercentage: "0.00", HealthStatus: "recovering"})

	// Once the backoff has passed the step is ready again, still recovering.
	due := e.task(t, step{Name: "a", Attempts: 1, LastError: true, Run: runPast, History: retried})
	got = e.readinessOf(t, due.ID, nil)
	checkReadiness(t, got, map[string]want{"a": {ready: true, deps: true}})
	if got["a"].NextRetryAt != nil {
		t.Fatalf("next_retry_at = %v once due, want NULL", got["a"].NextRetryAt)
	}
	checkContext(t, e.contextOf(t, due.ID), execContext{TotalSteps: 1, PendingSteps: 1, ReadySteps: 1,
		ExecutionStatus: "has_ready_steps", RecommendedAction: "execute_ready_steps",
		CompletionPercentage: "0.00", HealthStatus: "recovering"})

	// Deferred without a failure: in backoff by time, but no retry is due
	// and nothing is recovering.
	deferred := e.task(t, step{Name: "a", Run: runFuture}, step{Name: "b", Run: runNull})
	got = e.readinessOf(t, deferred.ID, nil)
	checkReadiness(t, got, map[string]want{
		"a": {deps: true, reason: "in_backoff"},
		"b": {ready: true, deps: true},
	})
	if got["a"].NextRetryAt != nil || got["a"].LastFailureAt != nil {
		t.Fatalf("deferred step: next_retry_at %v, last_failure_at %v; want NULL", got["a"].NextRetryAt, got["a"].LastFailureAt)
	}
	if c := e.contextOf(t, deferred.ID); c.HealthStatus != "healthy" || c.ExecutionStatus != "has_ready_steps" {
		t.Fatalf("deferred task: %+v", c)
	}
}

func TestBlockedReasons(t *testing.T) {
	t.Parallel()
	e := setup(t)
	threeFailures := []string{"in_progress", "error", "pending", "in_progress", "error", "pending", "in_progress", "error"}
	tk := e.task(t,
		step{Name: "exhausted", Status: "error", Attempts: 3, LastError: true, History: threeFailures},
		step{Name: "not_retryable", Status: "error", Attempts: 1, RetryLimit: 3, NotRetryable: true, LastError: true,
			History: []string{"in_progress", "error"}},
		step{Name: "failed_with_budget", Status: "error", Attempts: 1, LastError: true, History: []string{"in_progress", "error"}},
		step{Name: "pending_exhausted", Attempts: 3},
		step{Name: "pending_exhausted_child", Attempts: 3, Parents: []string{"exhausted"}},
		step{Name: "manually_retried", Attempts: 3, RetryBase: 3, LastError: true},
		step{Name: "fresh_not_retryable", NotRetryable: true},
		step{Name: "no_budget_at_all", RetryLimit: -1},
		step{Name: "cancelled", Status: "cancelled"},
		step{Name: "running", Status: "in_progress", Attempts: 1},
		step{Name: "resolved", Status: "resolved_manually", Attempts: 3},
		step{Name: "after_resolved", Parents: []string{"resolved"}},
	)
	got := e.readinessOf(t, tk.ID, nil)
	checkReadiness(t, got, map[string]want{
		"exhausted":               {deps: true, reason: "retries_exhausted", eligible: ptr(false)},
		"not_retryable":           {deps: true, reason: "failed", eligible: ptr(false)},
		"failed_with_budget":      {deps: true, reason: "failed", eligible: ptr(true)},
		"pending_exhausted":       {deps: true, reason: "retries_exhausted", eligible: ptr(false)},
		"pending_exhausted_child": {reason: "retries_exhausted", total: 1},
		"manually_retried":        {ready: true, deps: true, eligible: ptr(true)},
		"fresh_not_retryable":     {ready: true, deps: true, eligible: ptr(false)},
		"no_budget_at_all":        {deps: true, reason: "retries_exhausted", eligible: ptr(false)},
		"cancelled":               {deps: true, reason: "cancelled"},
		"running":                 {deps: true, reason: "running", eligible: ptr(true)},
		"resolved":                {deps: true},
		"after_resolved":          {ready: true, deps: true, total: 1, done: 1},
	})
	if r := got["exhausted"]; r.LastFailureAt == nil || !r.LastFailureAt.Equal(historyBase.Add(8*time.Minute)) || r.Attempts != 3 || r.RetryLimit != 3 {
		t.Fatalf("exhausted: last_failure_at %v attempts %d limit %d; want the latest error transition %v, 3, 3",
			r.LastFailureAt, r.Attempts, r.RetryLimit, historyBase.Add(8*time.Minute))
	}
	if r := got["pending_exhausted"]; r.LastFailureAt != nil || r.NextRetryAt != nil {
		t.Fatalf("pending_exhausted: last_failure_at %v next_retry_at %v, want NULL (no transitions to error)", r.LastFailureAt, r.NextRetryAt)
	}
	for name, r := range got {
		if r.TaskID != tk.ID || r.WorkflowStepID != tk.Steps[name] || r.CurrentState == "" {
			t.Fatalf("%s: ids or state wrong: %+v", name, r)
		}
	}
}

// A step that failed for good blocks its descendants; the task still has
// work while an independent branch can run, and is blocked once it cannot.
func TestPermanentFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	build := func(c step) task {
		c.Name = "c"
		return e.task(t,
			step{Name: "a", Status: "error", Attempts: 3, LastError: true},
			step{Name: "b", Parents: []string{"a"}},
			c,
		)
	}
	independentReady := build(step{})
	checkReadiness(t, e.readinessOf(t, independentReady.ID, nil), map[string]want{
		"a": {deps: true, reason: "retries_exhausted"},
		"b": {reason: "waiting_for_dependencies", total: 1},
		"c": {ready: true, deps: true},
	})
	checkContext(t, e.contextOf(t, independentReady.ID), execContext{TotalSteps: 3, PendingSteps: 2, FailedSteps: 1, ReadySteps: 1,
		ExecutionStatus: "has_ready_steps", RecommendedAction: "execute_ready_steps",
		CompletionPercentage: "0.00", HealthStatus: "healthy"})

	independentRunning := build(step{Status: "in_progress", Attempts: 1})
	checkContext(t, e.contextOf(t, independentRunning.ID), execContext{TotalSteps: 3, PendingSteps: 1, InProgressSteps: 1, FailedSteps: 1,
		ExecutionStatus: "processing", RecommendedAction: "wait_for_completion",
		CompletionPercentage: "0.00", HealthStatus: "healthy"})

	nothingElse := build(step{Status: "complete", Attempts: 1})
	checkContext(t, e.contextOf(t, nothingElse.ID), execContext{TotalSteps: 3, PendingSteps: 1, CompletedSteps: 1, FailedSteps: 1,
		ExecutionStatus: "blocked_by_failures", RecommendedAction: "handle_failures",
		CompletionPercentage: "33.33", HealthStatus: "blocked"})

	// A retry in backoff elsewhere does not unblock the task: the failed
	// step will never let b run, so the task needs handling either way.
	independentBackoff := build(step{Attempts: 1, LastError: true, Run: runFuture})
	checkContext(t, e.contextOf(t, independentBackoff.ID), execContext{TotalSteps: 3, PendingSteps: 2, FailedSteps: 1,
		ExecutionStatus: "blocked_by_failures", RecommendedAction: "handle_failures",
		CompletionPercentage: "0.00", HealthStatus: "blocked"})
}

func TestResolvedManuallySatisfiesDependencies(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tk := e.task(t, diamond("complete", "resolved_manually", "complete", "pending")...)
	checkReadiness(t, e.readinessOf(t, tk.ID, nil), map[string]want{
		"a": {deps: true},
		"b": {deps: true, total: 1, done: 1},
		"c": {deps: true, total: 1, done: 1},
		"d": {ready: true, deps: true, total: 2, done: 2},
	})
	checkContext(t, e.contextOf(t, tk.ID), execContext{TotalSteps: 4, PendingSteps: 1, CompletedSteps: 3, ReadySteps: 1,
		ExecutionStatus: "has_ready_steps", RecommendedAction: "execute_ready_steps",
		CompletionPercentage: "75.00", HealthStatus: "healthy"})

	allResolved := e.task(t, diamond("resolved_manually", "complete", "resolved_manually", "complete")...)
	if c := e.contextOf(t, allResolved.ID); c.ExecutionStatus != "all_complete" || c.RecommendedAction != "finalize_task" || c.CompletedSteps != 4 {
		t.Fatalf("resolved and complete steps: %+v, want all_complete", c)
	}
}

func TestStepIDsFilter(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tk := e.task(t, diamond("complete", "pending", "pending", "pending")...)
	other := e.task(t, step{Name: "x"})

	got := e.readinessOf(t, tk.ID, []uuid.UUID{tk.Steps["b"], tk.Steps["d"]})
	checkReadiness(t, got, map[string]want{
		// Filtering does not change the answer: d's parents are counted
		// although they are not selected.
		"b": {ready: true, deps: true, total: 1, done: 1},
		"d": {reason: "waiting_for_dependencies", total: 2},
	})
	if n := len(e.readinessOf(t, tk.ID, nil)); n != 4 {
		t.Fatalf("NULL step_ids: %d rows, want 4", n)
	}
	if n := len(query[readiness](t, e, `SELECT * FROM get_step_readiness_status($1)`, tk.ID)); n != 4 {
		t.Fatalf("default step_ids: %d rows, want 4", n)
	}
	if n := len(e.readinessOf(t, tk.ID, []uuid.UUID{})); n != 0 {
		t.Fatalf("empty step_ids: %d rows, want 0", n)
	}
	if n := len(e.readinessOf(t, tk.ID, []uuid.UUID{other.Steps["x"]})); n != 0 {
		t.Fatalf("another task's step id: %d rows, want 0", n)
	}
}
