package analysissql_test

import (
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// The batch forms return, for many tasks at once, exactly what the single
// forms return task by task.
func TestBatchEqualsSingle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tasks := []task{
		e.task(t, diamond("pending", "pending", "pending", "pending")...),
		e.task(t, diamond("complete", "complete", "in_progress", "pending")...),
		e.task(t, diamond("complete", "complete", "complete", "complete")...),
		e.task(t, step{Name: "a", Status: "error", Attempts: 3, LastError: true, History: []string{"in_progress", "error"}},
			step{Name: "b", Parents: []string{"a"}}, step{Name: "c", Status: "complete"}),
		e.task(t, step{Name: "a", Attempts: 1, LastError: true, Run: runFuture, History: []string{"in_progress", "error", "pending"}}),
		e.task(t), // no steps
	}
	ids := make([]uuid.UUID, 0, len(tasks)+2)
	for _, tk := range tasks {
		ids = append(ids, tk.ID)
	}
	// An unknown id is ignored and a repeated one counts once.
	ids = append(ids, uuid.Must(uuid.NewV7()), tasks[0].ID)

	var singles []readiness
	for _, tk := range tasks {
		singles = append(singles, query[readiness](t, e, `SELECT * FROM get_step_readiness_status($1)`, tk.ID)...)
	}
	batch := query[readiness](t, e, `SELECT * FROM get_step_readiness_status_batch($1)`, ids)
	if len(singles) != 16 || !reflect.DeepEqual(batch, singles) {
		t.Fatalf("readiness batch (%d rows) differs from singles (%d rows, want 16)\nbatch   %+v\nsingles %+v",
			len(batch), len(singles), batch, singles)
	}

	var contexts []execContext
	for _, tk := range tasks {
		contexts = append(contexts, e.contextOf(t, tk.ID))
	}
	batchContexts := query[execContext](t, e, `SELECT `+contextColumns+` FROM get_task_execution_contexts_batch($1)`, ids)
	if !reflect.DeepEqual(batchContexts, contexts) {
		t.Fatalf("context batch differs from singles\nbatch   %+v\nsingles %+v", batchContexts, contexts)
	}

	// The task without steps: nothing to do but finalise, nothing to judge.
	checkContext(t, contexts[5], execContext{ExecutionStatus: "all_complete", RecommendedAction: "finalize_task",
		CompletionPercentage: "100.00", HealthStatus: "unknown"})
	if rows := query[execContext](t, e, `SELECT `+contextColumns+` FROM get_task_execution_context($1)`, uuid.Must(uuid.NewV7())); len(rows) != 0 {
		t.Fatalf("unknown task: %d context rows, want 0", len(rows))
	}
	if rows := query[readiness](t, e, `SELECT * FROM get_step_readiness_status_batch('{}')`); len(rows) != 0 {
		t.Fatalf("empty batch: %d rows, want 0", len(rows))
	}
}
