package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// TestConcurrentCreatesAreIsolated sends many creates at once, so that the
// store writes them in shared transactions: one invalid create fails alone,
// and its neighbours are all written.
func TestConcurrentCreatesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)

	const n = 80
	bad := 37
	var wg sync.WaitGroup
	errs := make([]error, n)
	ids := make([]uuid.UUID, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nt, _ := diamond(f, "")
			if i == bad {
				nt.Steps[1].RetryLimit = -1 // refused by a CHECK constraint: the statement fails
			}
			ids[i] = nt.TaskID
			_, _, errs[i] = s.CreateTask(ctx, nt)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == bad {
			if err == nil {
				t.Fatal("the invalid create succeeded")
			}
			continue
		}
		if err != nil {
			t.Fatalf("create %d failed beside the invalid one: %v", i, err)
		}
	}
	var tasks, steps int
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM tasks`).Scan(&tasks))
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM workflow_steps`).Scan(&steps))
	if tasks != n-1 || steps != 4*(n-1) {
		t.Fatalf("%d tasks and %d steps written, want %d and %d", tasks, steps, n-1, 4*(n-1))
	}
	var badRows int
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE task_id = $1`, ids[bad]).Scan(&badRows))
	if badRows != 0 {
		t.Fatal("the invalid task was half-written")
	}
}

// TestConcurrentCreatesShareAnIdempotencyKey sends the same keyed request
// many times at once: one create wins, every caller gets its task back.
func TestConcurrentCreatesShareAnIdempotencyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, f := setup(t)

	const n = 40
	var wg sync.WaitGroup
	got := make([]uuid.UUID, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nt, _ := diamond(f, "same-key")
			got[i], created[i], errs[i] = s.CreateTask(ctx, nt)
		}()
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
		if got[i] != got[0] {
			t.Fatalf("create %d returned task %s, create 0 returned %s", i, got[i], got[0])
		}
	}
	if winners != 1 {
		t.Fatalf("%d creates won the key, want 1", winners)
	}
}

// TestCreateAfterClose refuses creates once the store is closed.
func TestCreateAfterClose(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	f := newFixture(t, connect(t, dsn))
	s, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close() // safe twice
	nt, _ := diamond(f, "")
	if _, _, err := s.CreateTask(context.Background(), nt); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("create after close: %v, want an error", err)
	}
}

// TestCreateTaskReadReturnsTheWrittenRows reads the task and its steps in
// the create's own round trip; a repeated idempotent request reads nothing
// (the caller reads the existing task itself).
func TestCreateTaskReadReturnsTheWrittenRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	s := newStore(t, dsn)
	f := newFixture(t, connect(t, dsn))

	nt, ids := diamond(f, "read-key")
	read, id, created, err := s.CreateTaskRead(ctx, nt)
	if err != nil || !created || id != nt.TaskID || read == nil {
		t.Fatalf("create: %v %v %v %v", read, id, created, err)
	}
	if read.Task.TaskID != nt.TaskID || read.Task.Status != "pending" || read.Task.TotalSteps != 4 {
		t.Fatalf("task read back: %+v", read.Task)
	}
	if len(read.Steps) != 4 {
		t.Fatalf("%d steps read back, want 4", len(read.Steps))
	}
	for _, st := range read.Steps {
		if ids[st.Name] != st.StepID {
			t.Fatalf("step %s read back with id %s, want %s", st.Name, st.StepID, ids[st.Name])
		}
	}
	again, _ := diamond(f, "read-key")
	read, id, created, err = s.CreateTaskRead(ctx, again)
	if err != nil || created || id != nt.TaskID || read != nil {
		t.Fatalf("repeat: %v %v %v %v", read, id, created, err)
	}
}

// TestConcurrentCreateReadsGetTheirOwnRows creates many tasks at once (so
// they share set-based batches), each with its own tags, context, actor,
// bypassed step and idempotency key: every caller reads back exactly its
// task and steps, equal to what a later read finds, with its own
// transitions.
func TestConcurrentCreateReadsGetTheirOwnRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)

	const n = 60
	var wg sync.WaitGroup
	reads := make([]*store.TaskRead, n)
	tasks := make([]store.NewTask, n)
	errs := make([]error, n)
	for i := range n {
		nt, _ := diamond(f, fmt.Sprintf("key-%d", i))
		nt.Context = fmt.Appendf(nil, `{"order":%d}`, i)
		nt.Tags = []string{fmt.Sprintf("t%d", i), "shared"}
		nt.Actor = fmt.Sprintf("user-%d", i)
		if i%2 == 0 {
			nt.Tags = nil
		}
		if i%3 == 0 {
			nt.Steps[2].Bypassed = true // c
			nt.Steps[3].UnfinishedParents = 1
		}
		tasks[i] = nt
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reads[i], _, _, errs[i] = s.CreateTaskRead(ctx, tasks[i])
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || reads[i] == nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		got := reads[i]
		if got.Task.TaskID != tasks[i].TaskID || string(got.Task.Context) != fmt.Sprintf(`{"order": %d}`, i) {
			t.Fatalf("create %d read back task %s with context %s", i, got.Task.TaskID, got.Task.Context)
		}
		wantTags := []string{fmt.Sprintf("t%d", i), "shared"}
		if i%2 == 0 {
			wantTags = []string{}
		}
		if fmt.Sprint(got.Task.Tags) != fmt.Sprint(wantTags) {
			t.Errorf("create %d: tags %q, want %q", i, got.Task.Tags, wantTags)
		}
		wantUnfinished := 4
		if i%3 == 0 {
			wantUnfinished = 3
		}
		if got.Task.TotalSteps != 4 || got.Task.UnfinishedSteps != wantUnfinished {
			t.Errorf("create %d: %d steps, %d unfinished, want 4 and %d", i, got.Task.TotalSteps, got.Task.UnfinishedSteps, wantUnfinished)
		}
		later, err := s.GetTask(ctx, got.Task.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(*later) != fmt.Sprint(*got.Task) {
			t.Errorf("create %d: read back %+v, later read %+v", i, *got.Task, *later)
		}
		steps, err := s.StepsOfTasks(ctx, []uuid.UUID{got.Task.TaskID})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(steps) != fmt.Sprint(got.Steps) {
			t.Errorf("create %d: steps read back %+v, later %+v", i, got.Steps, steps)
		}
		var transitions, actors int
		must(t, conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE actor = $2)
			FROM (SELECT actor FROM workflow_step_transitions WHERE task_id = $1
			      UNION ALL SELECT actor FROM task_transitions WHERE task_id = $1) x`,
			got.Task.TaskID, tasks[i].Actor).Scan(&transitions, &actors))
		wantTransitions := 5 // four steps and the task
		if i%3 == 0 {
			wantTransitions = 6 // and c's pending → resolved_manually
		}
		if transitions != wantTransitions || actors != transitions {
			t.Errorf("create %d: %d transitions (%d by its actor), want %d", i, transitions, actors, wantTransitions)
		}
	}
}
