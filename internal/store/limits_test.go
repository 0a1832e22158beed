package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/store"
)

// limitedTask is a one-step task whose step has concurrency key "k", limit 1.
func limitedTask(f *fixture) store.NewTask {
	return store.NewTask{
		TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0",
		Steps: []store.NewStep{{StepID: uuid.Must(uuid.NewV7()), NamedStepID: f.namedStepID, Name: "a", Handler: "noop",
			RetryLimit: 2, Retryable: true, LimitKey: "k", LimitMax: 1}},
	}
}

// The claim parks a step whose key has no free slot (and says so), a
// completion wakes the oldest waiting one, and a woken step cancelled
// before it ran passes the turn on rather than leaving the key stuck.
func TestLimitSlotsThroughTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	var tasks []store.NewTask
	for range 3 {
		nt := limitedTask(f)
		if _, _, err := s.CreateTask(ctx, nt); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, nt)
	}
	parkedOf := func(nt store.NewTask) string {
		t.Helper()
		var p *string
		if err := conn.QueryRow(ctx, "SELECT parked FROM workflow_steps WHERE task_id = $1", nt.TaskID).Scan(&p); err != nil {
			t.Fatal(err)
		}
		if p == nil {
			return ""
		}
		return *p
	}
	held := 0
	steps, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r1", Lease: time.Minute,
		Held: func(n int, _ time.Time) { held = n }})
	if err != nil || len(steps) != 1 || steps[0].TaskID != tasks[0].TaskID || held != 2 {
		t.Fatalf("first claim: %d steps, %d held, %v", len(steps), held, err)
	}
	if parkedOf(tasks[1]) != "limit" || parkedOf(tasks[2]) != "limit" {
		t.Fatal("the steps over the limit are not parked")
	}
	if more := claim(t, s, "r2", 10); len(more) != 0 {
		t.Fatalf("claimed %d parked steps", len(more))
	}
	// The holder completes: the oldest waiting step is woken, the other waits.
	if _, err := s.FinishSteps(ctx, store.FinishParams{Owner: "r1",
		Completions: []store.Completion{{StepID: steps[0].StepID, Attempt: 1, Results: json.RawMessage(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	if parkedOf(tasks[1]) != "" || parkedOf(tasks[2]) != "limit" {
		t.Fatalf("after the completion: parked %q and %q", parkedOf(tasks[1]), parkedOf(tasks[2]))
	}
	// The woken step is cancelled before any claim: the next one wakes.
	if _, err := conn.Exec(ctx, "UPDATE workflow_steps SET status = 'cancelled', runnable_at = NULL WHERE task_id = $1", tasks[1].TaskID); err != nil {
		t.Fatal(err)
	}
	got := claim(t, s, "r2", 10)
	if len(got) != 1 || got[0].TaskID != tasks[2].TaskID {
		t.Fatalf("after the cancel: claimed %d steps", len(got))
	}
	var running int
	if err := conn.QueryRow(ctx, "SELECT running FROM concurrency_slots WHERE limit_key = 'k'").Scan(&running); err != nil || running != 1 {
		t.Fatalf("slot count %d, %v; want 1", running, err)
	}
}

// Pausing parks runnable steps and a claim parks those that became
// runnable after the pause; resuming makes them claimable.
func TestPauseThroughTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, f := setup(t)
	before, _ := diamond(f, "")
	if _, _, err := s.CreateTask(ctx, before); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PauseHandlers(ctx, "payments", "refund", "ops"); err != nil || n != 1 {
		t.Fatalf("pause parked %d, %v; want 1", n, err)
	}
	after, _ := diamond(f, "")
	if _, _, err := s.CreateTask(ctx, after); err != nil {
		t.Fatal(err)
	}
	held := 0
	steps, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r1", Lease: time.Minute,
		Held: func(n int, _ time.Time) { held = n }})
	if err != nil || len(steps) != 0 || held != 1 {
		t.Fatalf("claim while paused: %d steps, %d held, %v", len(steps), held, err)
	}
	ps, err := s.Pauses(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "refund" || ps[0].PausedBy != "ops" {
		t.Fatalf("pauses %+v %v", ps, err)
	}
	resumed, n, err := s.ResumeHandlers(ctx, "payments", "refund", "tasker_steps")
	if err != nil || !resumed || n != 2 {
		t.Fatalf("resume: %v %d %v; want 2 steps", resumed, n, err)
	}
	if got := claim(t, s, "r1", 10); len(got) != 2 {
		t.Fatalf("after resume: claimed %d, want 2", len(got))
	}
	// A namespace pause covers the template too.
	if _, err := s.PauseHandlers(ctx, "payments", "", "ops"); err != nil {
		t.Fatal(err)
	}
	third, _ := diamond(f, "")
	if _, _, err := s.CreateTask(ctx, third); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "r1", 10); len(got) != 0 {
		t.Fatalf("claimed %d steps of a paused namespace", len(got))
	}
}

// A resume that runs while a claim is parking a step for its pause waits for
// that claim and unparks the step. Unordered, the resume saw no parked step
// and the claim's park committed after it: the step stayed parked, with no
// pause left to lift (found by the throughput benchmark's warm-up).
func TestResumeUnparksWhatAConcurrentClaimParks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, f := setup(t)
	if _, err := s.PauseHandlers(ctx, "payments", "refund", "ops"); err != nil {
		t.Fatal(err)
	}
	nt, _ := diamond(f, "")
	if _, _, err := s.CreateTask(ctx, nt); err != nil {
		t.Fatal(err)
	}
	parked, release := make(chan int, 1), make(chan struct{})
	claimed := make(chan error, 1)
	go func() {
		held := 0
		_, err := s.ClaimSteps(ctx, store.ClaimParams{Limit: 10, Owner: "r1", Lease: time.Minute,
			Held: func(n int, _ time.Time) { held = n },
			InTx: func(context.Context, store.Tx, []store.ClaimedStep) error {
				parked <- held
				<-release // the park is written, not committed
				return nil
			}})
		claimed <- err
	}()
	if n := <-parked; n != 1 {
		close(release)
		t.Fatalf("the claim held %d steps, want the root", n)
	}
	type result struct {
		resumed bool
		n       int
		err     error
	}
	resumed := make(chan result, 1)
	go func() {
		ok, n, err := s.ResumeHandlers(ctx, "payments", "refund", "tasker_steps")
		resumed <- result{ok, n, err}
	}()
	// The resume must not finish while the claim holds its pause.
	select {
	case r := <-resumed:
		close(release)
		t.Fatalf("resume finished before the parking claim committed: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-claimed; err != nil {
		t.Fatal(err)
	}
	r := <-resumed
	if r.err != nil || !r.resumed || r.n != 1 {
		t.Fatalf("resume: %+v; want the parked root unparked", r)
	}
	if got := claim(t, s, "r1", 10); len(got) != 1 {
		t.Fatalf("after resume: claimed %d, want the root", len(got))
	}
}

// A task concurrency key admits tasks in creation order: beyond the limit
// a task waits with its runnable steps parked, and an admitted task that
// ends (here cancelled) admits the next.
func TestTaskLimitAdmission(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	var ids []uuid.UUID
	for range 3 {
		nt, _ := diamond(f, "")
		nt.LimitKey, nt.LimitMax = "t", 1
		if _, _, err := s.CreateTask(ctx, nt); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, nt.TaskID)
	}
	state := func(id uuid.UUID) (limitState string, parked int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT limit_state, (SELECT count(*) FROM workflow_steps WHERE task_id = $1 AND parked = 'task_limit')
			FROM tasks WHERE task_id = $1`, id).Scan(&limitState, &parked); err != nil {
			t.Fatal(err)
		}
		return limitState, parked
	}
	if st, p := state(ids[0]); st != "admitted" || p != 0 {
		t.Fatalf("first task: %s with %d parked steps", st, p)
	}
	for _, id := range ids[1:] {
		if st, p := state(id); st != "waiting" || p != 1 {
			t.Fatalf("later task: %s with %d parked steps, want waiting with its root parked", st, p)
		}
	}
	got := claim(t, s, "r1", 10)
	if len(got) != 1 || got[0].TaskID != ids[0] {
		t.Fatalf("claimed %d steps; only the admitted task's root may run", len(got))
	}
	if _, err := conn.Exec(ctx, "UPDATE tasks SET status = 'cancelled' WHERE task_id = $1", ids[0]); err != nil {
		t.Fatal(err)
	}
	if st, p := state(ids[1]); st != "admitted" || p != 0 {
		t.Fatalf("after the first ended, the second: %s with %d parked steps", st, p)
	}
	if st, _ := state(ids[2]); st != "waiting" {
		t.Fatalf("the third: %s, want still waiting", st)
	}
	got = claim(t, s, "r1", 10)
	if len(got) != 1 || got[0].TaskID != ids[1] {
		t.Fatalf("after admission: claimed %d steps", len(got))
	}
}

// A step with a rate token but no concurrency slot is parked for its slot
// and does not spend the token: the next step of the rate key may start.
func TestRateTokenKeptWhenNoSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	task := func(rate bool) store.NewTask {
		nt := limitedTask(f)
		if rate {
			// One token an hour: none comes back during the test.
			nt.Steps[0].RateKey, nt.Steps[0].RatePerSecond = "r", 1.0/3600
		}
		return nt
	}
	holder := task(false)
	if _, _, err := s.CreateTask(ctx, holder); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "r1", 10); len(got) != 1 {
		t.Fatalf("the holder: claimed %d", len(got))
	}
	waiting := task(true)
	if _, _, err := s.CreateTask(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "r1", 10); len(got) != 0 {
		t.Fatalf("claimed %d steps past a full slot", len(got))
	}
	var parked *string
	var tokens float64
	if err := conn.QueryRow(ctx, "SELECT parked FROM workflow_steps WHERE task_id = $1", waiting.TaskID).Scan(&parked); err != nil || parked == nil || *parked != "limit" {
		t.Fatalf("the rate-limited step without a slot: parked %v, %v", parked, err)
	}
	if err := conn.QueryRow(ctx, "SELECT tokens FROM rate_buckets WHERE rate_key = 'r'").Scan(&tokens); err != nil || tokens < 0.99 {
		t.Fatalf("the bucket has %v tokens after a step without a slot (%v); want its token kept", tokens, err)
	}
}

// The rows of keys that nothing refers to any more go once no task has
// used them for the idle time; the others stay, and those still referred
// to are marked used so that the next batch looks at others. A row that a
// create is marking used (locked until it commits) is skipped. Creates,
// step keys and task keys alike, mark their keys used.
func TestPurgeLimitKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// A step key "k", a rate key "r" and a task key "tk", each used by a task.
	nt := limitedTask(f)
	nt.Steps[0].RateKey, nt.Steps[0].RatePerSecond = "r", 5
	nt.LimitKey, nt.LimitMax = "tk", 1
	if _, _, err := s.CreateTask(ctx, nt); err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE concurrency_slots SET used_at = now() - interval '2 hours'`)
	exec(`UPDATE rate_buckets SET used_at = now() - interval '2 hours'`)
	// Created again, a key is marked used.
	again := limitedTask(f)
	again.Steps[0].RateKey, again.Steps[0].RatePerSecond = "r", 5
	again.LimitKey, again.LimitMax = "tk", 1
	if _, _, err := s.CreateTask(ctx, again); err != nil {
		t.Fatal(err)
	}
	var fresh int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM concurrency_slots WHERE used_at > now() - interval '1 minute')
		+ (SELECT count(*) FROM rate_buckets WHERE used_at > now() - interval '1 minute')`).Scan(&fresh); err != nil || fresh != 3 {
		t.Fatalf("a create marked %d of its 3 keys used (%v)", fresh, err)
	}
	exec(`UPDATE concurrency_slots SET used_at = now() - interval '2 hours', running = 0 WHERE limit_key = 'k'`)
	exec(`UPDATE rate_buckets SET used_at = now() - interval '2 hours'`)
	exec(`INSERT INTO concurrency_slots (limit_key, running, used_at) VALUES
		('gone', 0, now() - interval '2 hours'), ('recent', 0, now()), ('held', 1, now() - interval '2 hours'),
		('locked', 0, now() - interval '2 hours')`)
	exec(`INSERT INTO rate_buckets (rate_key, used_at) VALUES ('gone', now() - interval '2 hours'), ('recent', now())`)

	tx, err := conn.Begin(ctx) // a create marking "locked" used
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM concurrency_slots WHERE limit_key = 'locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	deleted, looked, err := s.PurgeLimitKeys(ctx, time.Hour, 100)
	if err != nil || deleted != 2 || looked != 3 {
		t.Errorf("purge: %d deleted, %d looked at (want 2 and 3: the slots gone, held and k, the buckets gone and r), %v", deleted, looked, err)
	}
	keys := func(sql string) []string {
		t.Helper()
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := keys(`SELECT limit_key FROM concurrency_slots ORDER BY 1`); !slices.Equal(got, []string{"held", "k", "locked", "recent", "tk"}) {
		t.Errorf("slots left: %v", got)
	}
	if got := keys(`SELECT rate_key FROM rate_buckets ORDER BY 1`); !slices.Equal(got, []string{"r", "recent"}) {
		t.Errorf("buckets left: %v", got)
	}
	if got := keys(`SELECT limit_key FROM concurrency_slots WHERE used_at > now() - interval '1 minute'
		UNION ALL SELECT rate_key FROM rate_buckets WHERE used_at > now() - interval '1 minute' ORDER BY 1`); !slices.Equal(got, []string{"held", "k", "r", "recent", "recent", "tk"}) {
		t.Errorf("marked used: %v (want the kept rows that were looked at, and the recent ones)", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if deleted, looked, err := s.PurgeLimitKeys(ctx, time.Hour, 100); err != nil || deleted != 1 || looked != 1 {
		t.Errorf("purge once the lock is gone: %d deleted, %d looked at (want 1 and 1), %v", deleted, looked, err)
	}
}
