package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// A fan-in step counts every parent exactly once, whether its parents
// finish in one flush or in several.
func TestFanInCountsEveryParent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	conn := connect(t, dsn)
	s := newStore(t, dsn)
	f := newFixture(t, conn)
	for _, perFlush := range []int{4, 1, 2} {
		ids := map[string]uuid.UUID{}
		nt := store.NewTask{TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0"}
		for _, n := range []string{"p0", "p1", "p2", "p3", "sink"} {
			ids[n] = uuid.Must(uuid.NewV7())
			parents := 0
			if n == "sink" {
				parents = 4
			}
			nt.Steps = append(nt.Steps, store.NewStep{StepID: ids[n], NamedStepID: f.namedStepID, Name: n, Handler: "noop", RetryLimit: 1, Retryable: true, UnfinishedParents: parents})
		}
		for _, p := range []string{"p0", "p1", "p2", "p3"} {
			nt.Edges = append(nt.Edges, store.Edge{From: ids[p], To: ids["sink"]})
		}
		_, _, err := s.CreateTask(ctx, nt)
		must(t, err)
		claimed, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r", Lease: time.Minute})
		must(t, err)
		if len(claimed) != 4 {
			t.Fatalf("claimed %d", len(claimed))
		}
		for i := 0; i < 4; i += perFlush {
			var p store.FinishParams
			p.Owner, p.Channel = "r", "c"
			for _, c := range claimed[i : i+perFlush] {
				p.Completions = append(p.Completions, store.Completion{StepID: c.StepID, Attempt: c.Attempt})
			}
			_, err := s.FinishSteps(ctx, p)
			must(t, err)
		}
		var left int
		var runnable bool
		must(t, conn.QueryRow(ctx, "SELECT unfinished_parents, runnable_at IS NOT NULL FROM workflow_steps WHERE workflow_step_id = $1", ids["sink"]).Scan(&left, &runnable))
		if left != 0 || !runnable {
			t.Fatalf("%d parents per flush: sink has %d unfinished parents, runnable=%v", perFlush, left, runnable)
		}
		claimed, err = s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r", Lease: time.Minute})
		must(t, err)
		_, err = s.FinishSteps(ctx, store.FinishParams{Owner: "r", Channel: "c", Completions: []store.Completion{{StepID: claimed[0].StepID, Attempt: 1}}})
		must(t, err)
	}
}
