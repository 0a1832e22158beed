package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// diamond builds a NewTask a → {b, c} → d on the fixture's named task.
func diamond(f *fixture, key string) (store.NewTask, map[string]uuid.UUID) {
	ids := map[string]uuid.UUID{}
	var steps []store.NewStep
	parents := map[string]int{"a": 0, "b": 1, "c": 1, "d": 2}
	for _, n := range []string{"a", "b", "c", "d"} {
		ids[n] = uuid.Must(uuid.NewV7())
		steps = append(steps, store.NewStep{StepID: ids[n], NamedStepID: f.namedStepID, Name: n, Handler: "noop",
			RetryLimit: 2, Retryable: true, UnfinishedParents: parents[n]})
	}
	return store.NewTask{
		TaskID: uuid.Must(uuid.NewV7()), NamedTaskID: f.namedTaskID, Namespace: "payments", Name: "refund", Version: "1.0.0",
		Context: []byte(`{"order":1}`), IdempotencyKey: key, RequestHash: "h1", Steps: steps,
		Edges: []store.Edge{{ids["a"], ids["b"]}, {ids["a"], ids["c"]}, {ids["b"], ids["d"]}, {ids["c"], ids["d"]}},
	}, ids
}

func claim(t *testing.T, s *store.Store, owner string, n int) []store.ClaimedStep {
	t.Helper()
	steps, err := s.ClaimSteps(context.Background(), store.ClaimParams{Limit: n, Owner: owner, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func names(steps []store.ClaimedStep) map[string]store.ClaimedStep {
	m := map[string]store.ClaimedStep{}
	for _, s := range steps {
		m[s.Name] = s
	}
	return m
}

func TestDiamondThroughTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)

	nt, _ := diamond(f, "k1")
	taskID, created, err := s.CreateTask(ctx, nt)
	if err != nil || !created || taskID != nt.TaskID {
		t.Fatalf("create: %v %v %v", taskID, created, err)
	}
	// Same key, same request: the same task back. Different request: conflict.
	again, _ := diamond(f, "k1")
	if id, created, err := s.CreateTask(ctx, again); err != nil || created || id != taskID {
		t.Fatalf("replay: %v %v %v", id, created, err)
	}
	again.RequestHash = "other"
	if _, _, err := s.CreateTask(ctx, again); !errors.Is(err, store.ErrIdempotencyConflict) {
		t.Fatalf("conflicting replay: %v", err)
	}

	got := names(claim(t, s, "r1", 10))
	if len(got) != 1 || got["a"].Attempt != 1 || string(got["a"].Context) != `{"order": 1}` {
		t.Fatalf("first claim: %+v", got)
	}
	if more := claim(t, s, "r2", 10); len(more) != 0 {
		t.Fatalf("nothing else is runnable, got %d", len(more))
	}
	a := got["a"]
	// A stale attempt (fencing token) changes nothing.
	res, err := s.FinishSteps(ctx, store.FinishParams{Owner: "r1", Channel: "c", Completions: []store.Completion{{StepID: a.StepID, Attempt: 7, Results: json.RawMessage(`1`)}}})
	if err != nil || !res.Empty() {
		t.Fatalf("stale completion: %+v %v", res, err)
	}
	res, err = s.FinishSteps(ctx, store.FinishParams{Owner: "r1", Channel: "c", Completions: []store.Completion{{StepID: a.StepID, Attempt: 1, Results: json.RawMessage(`{"x":1}`)}}})
	if err != nil || len(res.Completed) != 1 || res.BecameRunnable != 2 {
		t.Fatalf("complete a: %+v %v", res, err)
	}
	got = names(claim(t, s, "r1", 10))
	if len(got) != 2 || string(got["b"].Parents["a"]) != `{"x": 1}` {
		t.Fatalf("b and c with a's results: %+v", got)
	}
	// b fails with a retry left: error → pending with a backoff; c completes.
	res, err = s.FinishSteps(ctx, store.FinishParams{Owner: "r1", Channel: "c",
		Completions: []store.Completion{{StepID: got["c"].StepID, Attempt: 1}},
		Failures:    []store.Failure{{StepID: got["b"].StepID, Attempt: 1, Error: json.RawMessage(`{"message":"boom"}`), Retryable: true, Delay: time.Hour}},
	})
	if err != nil || len(res.Retried) != 1 || len(res.Completed) != 1 || res.BecameRunnable != 0 {
		t.Fatalf("b retry, c complete: %+v %v", res, err)
	}
	// The retry is not claimable before its backoff, then it is. (An hour,
	// then moved to now in SQL: a short real backoff made the first check
	// depend on the machine's speed.)
	if early := claim(t, s, "r1", 10); len(early) != 0 {
		t.Fatalf("claimed during backoff: %+v", early)
	}
	var wait time.Duration
	must(t, conn.QueryRow(ctx, `SELECT runnable_at - now() FROM workflow_steps WHERE workflow_step_id = $1`, got["b"].StepID).Scan(&wait))
	if wait < 59*time.Minute {
		t.Fatalf("b runnable in %v, want its hour of backoff", wait)
	}
	if _, err := conn.Exec(ctx, `UPDATE workflow_steps SET runnable_at = now() WHERE workflow_step_id = $1`, got["b"].StepID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var b []store.ClaimedStep
	for len(b) == 0 && time.Now().Before(deadline) {
		b = claim(t, s, "r1", 10)
		time.Sleep(10 * time.Millisecond)
	}
	if len(b) != 1 || b[0].Name != "b" || b[0].Attempt != 2 {
		t.Fatalf("retry of b: %+v", b)
	}
	// The last attempt fails: b fails for good, d never runs, the task errors.
	res, err = s.FinishSteps(ctx, store.FinishParams{Owner: "r1", Channel: "c",
		Failures: []store.Failure{{StepID: b[0].StepID, Attempt: 2, Error: json.RawMessage(`{"message":"boom"}`), Retryable: true}}})
	if err != nil || len(res.Failed) != 1 || len(res.Finalized) != 1 || res.Finalized[0].Status != "error" {
		t.Fatalf("b fails for good: %+v %v", res, err)
	}
	var status string
	var unfinished, failed int
	must(t, conn.QueryRow(ctx, "SELECT status, unfinished_steps, failed_steps FROM tasks WHERE task_id = $1", taskID).Scan(&status, &unfinished, &failed))
	if status != "error" || unfinished != 1 || failed != 1 {
		t.Fatalf("task: %s unfinished=%d failed=%d", status, unfinished, failed)
	}
	var transitions []string
	rows, _ := conn.Query(ctx, `SELECT coalesce(from_state, '-') || '>' || to_state FROM workflow_step_transitions WHERE workflow_step_id = $1 ORDER BY workflow_step_transition_id`, b[0].StepID)
	for rows.Next() {
		var s string
		must(t, rows.Scan(&s))
		transitions = append(transitions, s)
	}
	want := []string{"->pending", "pending>in_progress", "in_progress>error", "error>pending", "pending>in_progress", "in_progress>error"}
	if len(transitions) != len(want) {
		t.Fatalf("b's transitions: %v, want %v", transitions, want)
	}
	for i := range want {
		if transitions[i] != want[i] {
			t.Fatalf("b's transitions: %v, want %v", transitions, want)
		}
	}
}

func TestLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, s, f := setup(t)
	nt, _ := diamond(f, "")
	if _, _, err := s.CreateTask(ctx, nt); err != nil {
		t.Fatal(err)
	}
	a := claim(t, s, "dead", 1)[0]
	held, err := s.RenewLeases(ctx, "dead", []store.StepRef{{StepID: a.StepID, Attempt: 1}}, time.Minute)
	if err != nil || !held[a.StepID] {
		t.Fatalf("renew own lease: %v %v", held, err)
	}
	if held, _ := s.RenewLeases(ctx, "thief", []store.StepRef{{StepID: a.StepID, Attempt: 1}}, time.Minute); held[a.StepID] {
		t.Fatal("another replica renewed a lease it does not hold")
	}
	// Expire it by hand, as if the replica had died long ago.
	_, err = conn.Exec(ctx, "UPDATE workflow_steps SET lease_expires_at = now() - interval '1 second' WHERE workflow_step_id = $1", a.StepID)
	must(t, err)
	r, err := s.RescueExpired(ctx, "alive", 100, "c")
	if err != nil || len(r.Requeued) != 1 {
		t.Fatalf("rescue: %+v %v", r, err)
	}
	again := claim(t, s, "alive", 1)
	if len(again) != 1 || again[0].StepID != a.StepID || again[0].Attempt != 2 {
		t.Fatalf("reclaim: %+v", again)
	}
	// The dead replica's late result is fenced out; the live one's counts.
	res, _ := s.FinishSteps(ctx, store.FinishParams{Owner: "dead", Channel: "c", Completions: []store.Completion{{StepID: a.StepID, Attempt: 1}}})
	if !res.Empty() {
		t.Fatalf("zombie completion changed something: %+v", res)
	}
	n, err := s.ReleaseSteps(ctx, "alive", []store.StepRef{{StepID: a.StepID, Attempt: 2}}, "c")
	if err != nil || n != 1 {
		t.Fatalf("release: %d %v", n, err)
	}
	var reason string
	must(t, conn.QueryRow(ctx, `SELECT metadata->>'reason' FROM workflow_step_transitions WHERE workflow_step_id = $1 ORDER BY workflow_step_transition_id DESC LIMIT 1`, a.StepID).Scan(&reason))
	if reason != "released" {
		t.Fatalf("last transition reason %q", reason)
	}
}
