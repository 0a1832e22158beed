package store_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// The engine keeps readiness incrementally (unfinished_parents, runnable_at);
// get_step_readiness_status computes it from the DAG. On random DAGs driven
// through claims, completions, retries and permanent failures, the two must
// agree at every step of the way.
func TestReadinessAgreesWithSQLOracle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)

	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 5 + rng.IntN(26)
		ids := make([]uuid.UUID, n)
		parents := make([]int, n)
		var edges []store.Edge
		for j := range n {
			ids[j] = uuid.Must(uuid.NewV7())
		}
		for j := range n {
			for i := range j {
				if rng.Float64() < 0.25 {
					edges = append(edges, store.Edge{From: ids[i], To: ids[j]})
					parents[j]++
				}
			}
		}
		nt := store.NewTask{TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments",
			Name: "refund", Version: "1.0.0", Edges: edges}
		for j := range n {
			nt.Steps = append(nt.Steps, store.NewStep{StepID: ids[j], NamedStepID: f.namedStepID, Name: ids[j].String(),
				Handler: "noop", RetryLimit: 1 + rng.IntN(3), Retryable: true, UnfinishedParents: parents[j]})
		}
		if _, _, err := s.CreateTask(ctx, nt); err != nil {
			t.Fatal(err)
		}
		compare := func(round int) {
			t.Helper()
			rows, err := conn.Query(ctx, `
				SELECT w.workflow_step_id::text, w.status,
				       (w.status = 'pending' AND w.runnable_at IS NOT NULL AND w.runnable_at <= now()) AS engine_ready,
				       r.ready_for_execution, w.unfinished_parents, r.total_parents - r.completed_parents
				FROM workflow_steps w JOIN get_step_readiness_status($1) r USING (workflow_step_id)`, nt.TaskID)
			must(t, err)
			defer rows.Close()
			count := 0
			for rows.Next() {
				var id, status string
				var engineReady, sqlReady bool
				var unfinished, sqlUnfinished int
				must(t, rows.Scan(&id, &status, &engineReady, &sqlReady, &unfinished, &sqlUnfinished))
				count++
				if engineReady != sqlReady {
					t.Fatalf("seed %d round %d: step %s (%s): engine ready=%v, SQL ready=%v", seed, round, id, status, engineReady, sqlReady)
				}
				if status == "pending" && unfinished != sqlUnfinished {
					t.Fatalf("seed %d round %d: step %s: unfinished_parents %d, DAG says %d", seed, round, id, unfinished, sqlUnfinished)
				}
			}
			must(t, rows.Err())
			if count != n {
				t.Fatalf("oracle saw %d steps of %d", count, n)
			}
		}
		compare(0)
		for round := 1; round < 4*n; round++ {
			claimed, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 1 + rng.IntN(3), Owner: "r", Lease: time.Minute})
			must(t, err)
			if len(claimed) == 0 {
				break
			}
			compare(round)
			var p store.FinishParams
			p.Owner, p.Channel = "r", "oracle"
			for _, c := range claimed {
				switch x := rng.Float64(); {
				case x < 0.7:
					p.Completions = append(p.Completions, store.Completion{StepID: c.StepID, Attempt: c.Attempt, Results: json.RawMessage(`true`)})
				case x < 0.9:
					p.Failures = append(p.Failures, store.Failure{StepID: c.StepID, Attempt: c.Attempt, Retryable: true})
				default:
					p.Failures = append(p.Failures, store.Failure{StepID: c.StepID, Attempt: c.Attempt, Retryable: false})
				}
			}
			_, err = s.FinishSteps(ctx, p)
			must(t, err)
			compare(round)
		}
		// Finished: the task's final state matches its steps.
		var status string
		var unfinished, failed int
		must(t, conn.QueryRow(ctx, "SELECT status, unfinished_steps, failed_steps FROM tasks WHERE task_id = $1", nt.TaskID).Scan(&status, &unfinished, &failed))
		var execStatus string
		must(t, conn.QueryRow(ctx, "SELECT execution_status FROM get_task_execution_context($1)", nt.TaskID).Scan(&execStatus))
		switch {
		case status == "complete" && execStatus != "all_complete",
			status == "error" && execStatus != "blocked_by_failures",
			status != "complete" && status != "error":
			t.Fatalf("seed %d: task %s (unfinished %d, failed %d) but SQL says %s", seed, status, unfinished, failed, execStatus)
		}
	}
}
