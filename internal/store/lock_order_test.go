package store_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// Flushes lock the rows they share with other replicas' flushes (fan-in
// children, tasks) in id order, so they wait on each other but never
// deadlock. Each case holds the lock of the smallest such row, lets a
// flush block on it, and checks that the flush has locked none of the
// larger rows yet: with the locks taken in input or hash order (the bug
// this guards against), it had, and two replicas flushing overlapping sets
// deadlocked, stalling both for a deadlock_timeout.
func TestFlushLocksSharedRowsInIDOrder(t *testing.T) {
	t.Parallel()
	// Enough rows that the planner aggregates the children by hash.
	const n = 300
	// Each case holds the smallest of one table's shared rows: the roots'
	// children, or their tasks.
	for _, tc := range []struct{ name, table, column string }{
		{"children", "workflow_steps", "workflow_step_id"},
		{"tasks", "tasks", "task_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := testdb.New(t)
			conn := connect(t, dsn)
			s := newStore(t, dsn)
			f := newFixture(t, conn)
			// n tasks of root → child, created so that the order of ids is
			// not the order of creation (which the input would follow).
			var tasks []store.NewTask
			shared := map[string][]uuid.UUID{}
			for range n {
				nt := store.NewTask{TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0"}
				root := store.NewStep{StepID: uuid.Must(uuid.NewV7()), NamedStepID: f.namedStepID, Name: "root", Handler: "noop", RetryLimit: 1, Retryable: true}
				child := store.NewStep{StepID: uuid.Must(uuid.NewV7()), NamedStepID: f.namedStepID, Name: "child", Handler: "noop", RetryLimit: 1, Retryable: true, UnfinishedParents: 1}
				nt.Steps = []store.NewStep{root, child}
				nt.Edges = []store.Edge{{From: root.StepID, To: child.StepID}}
				tasks = append(tasks, nt)
				shared["children"] = append(shared["children"], child.StepID)
				shared["tasks"] = append(shared["tasks"], nt.TaskID)
			}
			// Reversed: the last created (largest ids) first.
			for i := n - 1; i >= 0; i-- {
				_, _, err := s.CreateTask(ctx, tasks[i])
				must(t, err)
			}
			claimed, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 2 * n, Owner: "r", Lease: time.Minute})
			must(t, err)
			if len(claimed) != n {
				t.Fatalf("claimed %d roots, want %d", len(claimed), n)
			}
			// Completions in the order least likely to be id order.
			p := store.FinishParams{Owner: "r", Channel: "c"}
			for i := len(claimed) - 1; i >= 0; i-- {
				p.Completions = append(p.Completions, store.Completion{StepID: claimed[i].StepID, Attempt: claimed[i].Attempt})
			}
			ahead := lockedAhead(t, dsn, tc.table, tc.column, shared[tc.name], func() error {
				_, err := s.FinishSteps(ctx, p)
				return err
			})
			if ahead != 0 {
				t.Errorf("the flush waiting on the smallest of %d %s had already locked %d larger ones", n, tc.name, ahead)
			}
			var runnable int
			must(t, conn.QueryRow(ctx, "SELECT count(*) FROM workflow_steps WHERE name = 'child' AND unfinished_parents = 0 AND runnable_at IS NOT NULL").Scan(&runnable))
			if runnable != n {
				t.Fatalf("%d of %d children runnable after the flush", runnable, n)
			}
		})
	}
}

// lockedAhead holds the row of table with the smallest of ids, runs act in
// the background until it waits on that row, and returns how many of the
// other rows act had locked by then (a row it locked cannot be taken;
// SKIP LOCKED counts the others). It then lets act finish and fails the
// test if act fails.
func lockedAhead(t *testing.T, dsn, table, column string, ids []uuid.UUID, act func() error) int {
	t.Helper()
	ctx := context.Background()
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	holder := connect(t, dsn)
	tx, err := holder.Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	var pid int
	must(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = tx.Exec(ctx, fmt.Sprintf("SELECT 1 FROM %s WHERE %s = $1 FOR UPDATE", table, column), ids[0])
	must(t, err)

	done := make(chan error, 1)
	go func() { done <- act() }()
	probe := connect(t, dsn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		must(t, probe.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))", pid).Scan(&waiting))
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing ever waited on the held row")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ptx, err := probe.Begin(ctx)
	must(t, err)
	var free int
	must(t, ptx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s = ANY($1) FOR UPDATE SKIP LOCKED) x", table, column), ids[1:]).Scan(&free))
	must(t, ptx.Rollback(ctx))

	must(t, tx.Rollback(ctx))
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("still blocked after the lock was released")
	}
	return len(ids) - 1 - free
}

// A claim starts the tasks of the steps it took in id order too: tasks
// with several root steps are started by whichever replica claims first.
// (Before the explicit ordering the plan happened to lock them in order by
// walking the pending-task index; this pins it: sorting the claim's tasks
// in descending order makes this test fail.)
func TestClaimStartsTasksInIDOrder(t *testing.T) {
	t.Parallel()
	const n = 300
	ctx := context.Background()
	dsn := testdb.New(t)
	conn := connect(t, dsn)
	s := newStore(t, dsn)
	f := newFixture(t, conn)
	var ids []uuid.UUID
	for range n {
		nt := store.NewTask{TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0"}
		nt.Steps = []store.NewStep{{StepID: uuid.Must(uuid.NewV7()), NamedStepID: f.namedStepID, Name: "root", Handler: "noop", RetryLimit: 1, Retryable: true}}
		_, _, err := s.CreateTask(ctx, nt)
		must(t, err)
		ids = append(ids, nt.TaskID)
	}
	ahead := lockedAhead(t, dsn, "tasks", "task_id", ids, func() error {
		_, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: n, Owner: "r", Lease: time.Minute})
		return err
	})
	if ahead != 0 {
		t.Errorf("the claim waiting on the smallest of %d tasks had already locked %d larger ones", n, ahead)
	}
	var started int
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM tasks WHERE status = 'in_progress'").Scan(&started))
	if started != n {
		t.Fatalf("%d of %d tasks started", started, n)
	}
}
