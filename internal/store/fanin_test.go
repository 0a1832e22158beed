package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/store"
)

// A fan-in step counts every parent exactly once, whether its parents
// finish in one flush or in several.
func TestFanInCountsEveryParent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
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
		claimed := createAndClaim(t, s, nt, 4)
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
		claimed, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r", Lease: time.Minute})
		must(t, err)
		_, err = s.FinishSteps(ctx, store.FinishParams{Owner: "r", Channel: "c", Completions: []store.Completion{{StepID: claimed[0].StepID, Attempt: 1}}})
		must(t, err)
	}
}

// Children made runnable together get their runnable times in blocks of 32,
// in id order, each block 32 × the stagger after the previous one; a child
// with parents left is counted down but not made runnable.
func TestReleasedChildrenAreStaggeredInBlocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	nt := store.NewTask{TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0"}
	newStep := func(name string, parents int) uuid.UUID {
		id := uuid.Must(uuid.NewV7())
		nt.Steps = append(nt.Steps, store.NewStep{StepID: id, NamedStepID: f.namedStepID, Name: name, Handler: "noop", RetryLimit: 1, Retryable: true, UnfinishedParents: parents})
		return id
	}
	root := newStep("root", 0)
	var children []uuid.UUID
	for i := range 70 {
		c := newStep(fmt.Sprintf("c%02d", i), 1)
		nt.Edges = append(nt.Edges, store.Edge{From: root, To: c})
		children = append(children, c)
	}
	fanIn := newStep("fan_in", 2) // waits for root and c00
	nt.Edges = append(nt.Edges, store.Edge{From: root, To: fanIn}, store.Edge{From: children[0], To: fanIn})
	createAndClaim(t, s, nt, 1)
	res, err := s.FinishSteps(ctx, store.FinishParams{Owner: "r", Channel: "c", Stagger: time.Millisecond,
		Completions: []store.Completion{{StepID: root, Attempt: 1}}})
	must(t, err)
	if res.BecameRunnable != 70 {
		t.Errorf("%d became runnable, want 70", res.BecameRunnable)
	}
	rows, err := conn.Query(ctx, "SELECT runnable_at FROM workflow_steps WHERE workflow_step_id = ANY ($1) ORDER BY workflow_step_id", children)
	must(t, err)
	times, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	must(t, err)
	if len(times) != 70 {
		t.Fatalf("%d children", len(times))
	}
	for i, at := range times {
		block := times[i/32*32]
		if !at.Equal(block) {
			t.Errorf("child %d: runnable at %s, its block's first at %s", i, at, block)
		}
		if i%32 == 0 && i > 0 {
			if gap := at.Sub(times[i-32]); gap != 32*time.Millisecond {
				t.Errorf("block of child %d: %s after the previous block, want 32ms", i, gap)
			}
		}
	}
	var left int
	var runnable bool
	must(t, conn.QueryRow(ctx, "SELECT unfinished_parents, runnable_at IS NOT NULL FROM workflow_steps WHERE workflow_step_id = $1", fanIn).Scan(&left, &runnable))
	if left != 1 || runnable {
		t.Errorf("fan-in child: %d parents left, runnable=%v; want 1, false", left, runnable)
	}
}

// createAndClaim creates nt and claims its runnable steps, which must be want.
func createAndClaim(t *testing.T, s *store.Store, nt store.NewTask, want int) []store.ClaimedStep {
	t.Helper()
	ctx := context.Background()
	_, _, err := s.CreateTask(ctx, nt)
	must(t, err)
	claimed, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r", Lease: time.Minute})
	must(t, err)
	if len(claimed) != want {
		t.Fatalf("claimed %d steps, want %d", len(claimed), want)
	}
	return claimed
}
