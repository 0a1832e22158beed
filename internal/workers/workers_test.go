package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/workers"
)

const refundYAML = `namespace_name: shop
name: refund
version: 1.0.0
step_templates:
  - {name: validate, handler: echo, inputs: {checked: true}}
  - name: refund
    handler: "remote:refunds"
    handler_config: {gateway: stripe, timeout_seconds: 20}
    depends_on_step: validate
    default_retry_limit: 3
    backoff: {base: 50ms}
  - {name: notify, handler: noop, depends_on_step: refund}
`

// A long-polling claim returns as soon as a step becomes runnable, woken
// by the engine's notification (the worker poll is 10 s here), with what
// the worker needs; its results flow to the step's dependents.
func TestClaimWakesOnNotificationAndResultsFlow(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	type claimed struct {
		steps []workers.ClaimedStep
		after time.Duration
	}
	got := make(chan claimed, 1)
	start := time.Now()
	go func() {
		steps, err := r.svc.Claim(context.Background(), workers.ClaimRequest{WorkerID: "w1", Handlers: []string{"remote:refunds"}, Wait: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- claimed{steps, time.Since(start)}
	}()
	// Give the claim time to be waiting, so it is the notification that wakes it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !waiting(r) {
		time.Sleep(10 * time.Millisecond)
	}
	id := r.create("shop", "refund", `{"order_id": 42}`)
	c := <-got
	if len(c.steps) != 1 || c.after > 5*time.Second {
		t.Fatalf("claim: %d steps after %s", len(c.steps), c.after)
	}
	s := c.steps[0]
	if s.TaskID != id || s.StepName != "refund" || s.Attempt != 1 || s.Handler != "remote:refunds" || s.Namespace != "shop" {
		t.Errorf("claimed %+v", s)
	}
	if string(s.Context) != `{"order_id": 42}` || string(s.ParentResults["validate"]) != `{"checked": true}` {
		t.Errorf("context %s, parents %v", s.Context, s.ParentResults)
	}
	var cfg map[string]any
	if err := json.Unmarshal(s.HandlerConfig, &cfg); err != nil || cfg["gateway"] != "stripe" || s.Timeout != 20*time.Second {
		t.Errorf("config %s, timeout %s", s.HandlerConfig, s.Timeout)
	}
	if s.Deadline.IsZero() || s.LeaseExpiresAt.After(s.Deadline) || s.CorrelationID != "" && len(s.CorrelationID) > 128 {
		t.Errorf("lease %s deadline %s", s.LeaseExpiresAt, s.Deadline)
	}
	out, err := r.svc.Complete(context.Background(), s.StepID, s.Attempt, json.RawMessage(`{"refund_id": "re_1"}`))
	if err != nil || out.Status != "complete" {
		t.Fatalf("complete: %+v %v", out, err)
	}
	v := r.waitTask(id, "complete", 10*time.Second)
	for _, st := range v.Steps {
		if st.Name == "refund" && string(st.Results) != `{"refund_id": "re_1"}` {
			t.Errorf("refund results %s", st.Results)
		}
	}
}

// waiting reports whether a claim of this replica is long-polling: the
// worker row exists once a claim started.
func waiting(r *replica) bool {
	var n int
	_ = r.pool.QueryRow(context.Background(), "SELECT count(*) FROM workers").Scan(&n)
	return n > 0
}

func TestClaimWaitEndsEmptyAndValidates(t *testing.T) {
	t.Parallel()
	r := setup(t)
	start := time.Now()
	steps := r.claim("w1", 5, 300*time.Millisecond, 0, "remote:nothing")
	if len(steps) != 0 || time.Since(start) < 300*time.Millisecond {
		t.Errorf("empty wait: %d steps after %s", len(steps), time.Since(start))
	}
	_, err := r.svc.Claim(context.Background(), workers.ClaimRequest{Handlers: []string{"refunds"}, Max: 500, Wait: time.Minute})
	var verr *registry.ValidationError
	if !errors.As(err, &verr) || len(verr.Errors) != 4 {
		t.Fatalf("invalid claim: %v", err)
	}
	for i, want := range []string{"/worker_id", "/handlers/0", "/max", "/wait_seconds"} {
		if verr.Errors[i].Pointer != want {
			t.Errorf("error %d at %s, want %s", i, verr.Errors[i].Pointer, want)
		}
	}
}

// Two workers race for the same steps: each step is claimed and completed
// exactly once, and every task completes.
func TestTwoWorkersRace(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	const tasks = 30
	ids := make([]uuid.UUID, tasks)
	for i := range ids {
		ids[i] = r.create("shop", "refund", fmt.Sprintf(`{"order_id": %d}`, i))
	}
	var mu sync.Mutex
	done := map[uuid.UUID][]string{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, worker := range []string{"w1", "w2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				steps, err := r.svc.Claim(ctx, workers.ClaimRequest{WorkerID: worker, Handlers: []string{"remote:refunds"}, Max: 4, Wait: time.Second})
				if err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				for _, s := range steps {
					if _, err := r.svc.Complete(ctx, s.StepID, s.Attempt, json.RawMessage(fmt.Sprintf(`{"by": %q}`, worker))); err != nil {
						t.Errorf("%s complete %s: %v", worker, s.StepID, err)
					}
					mu.Lock()
					done[s.StepID] = append(done[s.StepID], worker)
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		r.waitTask(id, "complete", 30*time.Second)
	}
	cancel()
	wg.Wait()
	if len(done) != tasks {
		t.Errorf("%d steps completed, want %d", len(done), tasks)
	}
	by := map[string]int{}
	for id, ws := range done {
		if len(ws) != 1 {
			t.Errorf("step %s completed %d times: %v", id, len(ws), ws)
		}
		by[ws[0]]++
	}
	t.Logf("completions by worker: %v", by)
}

// A worker that stops heartbeating loses its step: the lease expires, the
// step is taken back and another worker's waiting claim gets it (attempt
// 2). The first worker's late heartbeat and completion answer stale and
// change nothing.
func TestLostLeaseGoesToAnotherWorker(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	id := r.create("shop", "refund", `{}`)
	first := r.claim("sleepy", 1, 10*time.Second, time.Second, "remote:refunds")
	if len(first) != 1 {
		t.Fatalf("first claim: %d steps", len(first))
	}
	s1 := first[0]
	second := r.claim("eager", 1, 15*time.Second, 30*time.Second, "remote:refunds")
	if len(second) != 1 || second[0].StepID != s1.StepID || second[0].Attempt != 2 {
		t.Fatalf("second claim: %+v", second)
	}
	_, err := r.svc.Heartbeat(context.Background(), s1.StepID, s1.Attempt, 0)
	var stale *workers.StaleError
	if !errors.As(err, &stale) || stale.Cancelled || stale.CurrentAttempt != 2 || stale.Status != "in_progress" {
		t.Fatalf("late heartbeat: %v", err)
	}
	_, err = r.svc.Complete(context.Background(), s1.StepID, s1.Attempt, json.RawMessage(`{"by": "sleepy"}`))
	if !errors.Is(err, workers.ErrStale) {
		t.Fatalf("late completion: %v", err)
	}
	_, err = r.svc.Fail(context.Background(), workers.FailRequest{StepID: s1.StepID, Attempt: s1.Attempt, Message: "late", Retryable: false})
	if !errors.Is(err, workers.ErrStale) {
		t.Fatalf("late failure: %v", err)
	}
	if st := r.step(id, "refund"); st.Status != "in_progress" || st.LeaseOwner != "eager" || st.Attempts != 2 {
		t.Fatalf("after the stale calls: %+v", st)
	}
	if _, err := r.svc.Heartbeat(context.Background(), s1.StepID, 2, 0); err != nil {
		t.Fatalf("current heartbeat: %v", err)
	}
	if _, err := r.svc.Complete(context.Background(), s1.StepID, 2, json.RawMessage(`{"by": "eager"}`)); err != nil {
		t.Fatal(err)
	}
	r.waitTask(id, "complete", 10*time.Second)
	if st := r.step(id, "refund"); string(st.Results) != `{"by": "eager"}` {
		t.Errorf("results %s", st.Results)
	}
}

// Cancelling the task tells the worker at its next heartbeat; its
// completion changes nothing.
func TestHeartbeatReportsCancellation(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	id := r.create("shop", "refund", `{}`)
	steps := r.claim("w1", 1, 10*time.Second, 0, "remote:refunds")
	if len(steps) != 1 {
		t.Fatalf("claim: %d", len(steps))
	}
	s := steps[0]
	lease, err := r.svc.Heartbeat(context.Background(), s.StepID, s.Attempt, 0)
	if err != nil || !lease.ExpiresAt.After(s.LeaseExpiresAt.Add(-time.Second)) {
		t.Fatalf("heartbeat: %+v %v", lease, err)
	}
	must(t, r.eng.CancelTask(context.Background(), id, "tester"))
	_, err = r.svc.Heartbeat(context.Background(), s.StepID, s.Attempt, 0)
	var stale *workers.StaleError
	if !errors.As(err, &stale) || !stale.Cancelled {
		t.Fatalf("heartbeat after cancel: %v", err)
	}
	if _, err := r.svc.Complete(context.Background(), s.StepID, s.Attempt, nil); !errors.As(err, &stale) || !stale.Cancelled {
		t.Fatalf("complete after cancel: %v", err)
	}
	if st := r.step(id, "refund"); st.Status != "cancelled" || st.Results != nil {
		t.Errorf("step after cancel: %+v", st)
	}
	// Steps the engine runs are not the workers' to touch.
	v, _ := r.eng.GetTask(context.Background(), id, false)
	for _, st := range v.Steps {
		if st.Name == "validate" {
			if _, err := r.svc.Complete(context.Background(), st.StepID, st.Attempts, nil); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("completing an engine step: %v", err)
			}
		}
	}
}

// A retryable failure is retried after the requested delay, and a waiting
// claim wakes up when it is due; a permanent failure fails the task.
func TestFailRetriesThenFailsForGood(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	id := r.create("shop", "refund", `{}`)
	s := r.claim("w1", 1, 10*time.Second, 0, "remote:refunds")[0]
	out, err := r.svc.Fail(context.Background(), workers.FailRequest{StepID: s.StepID, Attempt: s.Attempt, Message: "gateway busy",
		Details: json.RawMessage(`{"code": "busy"}`), Retryable: true, RetryAfter: 400 * time.Millisecond})
	if err != nil || out.Status != "pending" || out.RetryAt == nil {
		t.Fatalf("fail: %+v %v", out, err)
	}
	start := time.Now()
	again := r.claim("w1", 1, 10*time.Second, 0, "remote:refunds")
	if len(again) != 1 || again[0].Attempt != 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("retry claim: %+v after %s", again, time.Since(start))
	}
	st := r.step(id, "refund")
	var lastErr map[string]any
	if err := json.Unmarshal(st.LastError, &lastErr); err != nil || lastErr["message"] != "gateway busy" || lastErr["worker"] != "w1" {
		t.Errorf("last error %s", st.LastError)
	}
	out, err = r.svc.Fail(context.Background(), workers.FailRequest{StepID: s.StepID, Attempt: 2, Message: "card closed", Retryable: false})
	if err != nil || out.Status != "error" || out.TaskStatus != "error" {
		t.Fatalf("permanent failure: %+v %v", out, err)
	}
	r.waitTask(id, "error", 5*time.Second)
}

const timeoutYAML = `namespace_name: shop
name: quick
version: 1.0.0
step_templates:
  - {name: work, handler: "remote:quick", timeout: 1s, default_retry_limit: 1}
`

// A step's timeout bounds its lease: heartbeats cannot keep it past its
// deadline, and the attempt is then taken back (failed, its last).
func TestRemoteStepTimeout(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(timeoutYAML)
	id := r.create("shop", "quick", `{}`)
	s := r.claim("w1", 1, 10*time.Second, time.Minute, "remote:quick")[0]
	if s.Timeout != time.Second || s.LeaseExpiresAt.After(s.Deadline.Add(50*time.Millisecond)) {
		t.Fatalf("lease %s not capped at deadline %s", s.LeaseExpiresAt, s.Deadline)
	}
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = r.svc.Heartbeat(context.Background(), s.StepID, s.Attempt, time.Minute); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !errors.Is(err, workers.ErrStale) {
		t.Fatalf("heartbeat past the deadline: %v", err)
	}
	r.waitTask(id, "error", 10*time.Second)
	if st := r.step(id, "work"); st.Status != "error" {
		t.Errorf("step %+v", st)
	}
}

// The workers list shows who was seen, what they serve and what they hold.
func TestWorkersList(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	id := r.create("shop", "refund", `{}`)
	s := r.claim("w-list", 1, 10*time.Second, 0, "remote:refunds", "remote:other")[0]
	list, err := r.svc.Workers(context.Background(), 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	w := list[0]
	if w.WorkerID != "w-list" || len(w.Handlers) != 2 || w.LastReplica != "test-replica" || len(w.InFlight) != 1 ||
		w.InFlight[0].StepID != s.StepID || w.InFlight[0].TaskID != id || w.InFlight[0].StepName != "refund" {
		t.Errorf("worker %+v", w)
	}
	_, err = r.svc.Complete(context.Background(), s.StepID, s.Attempt, nil)
	must(t, err)
	list, _ = r.svc.Workers(context.Background(), 0)
	if len(list) != 1 || len(list[0].InFlight) != 0 {
		t.Errorf("after completion: %+v", list)
	}
}

// Results above the limit fail the step for good instead of completing it.
func TestCompleteRefusesHugeResults(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(refundYAML)
	id := r.create("shop", "refund", `{}`)
	s := r.claim("w1", 1, 10*time.Second, 0, "remote:refunds")[0]
	huge := json.RawMessage(`"` + string(make([]byte, 0)) + fmt.Sprintf("%02000000d", 0) + `"`)
	_, err := r.svc.Complete(context.Background(), s.StepID, s.Attempt, huge)
	var tooLarge *workers.ResultsTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Outcome == nil || tooLarge.Outcome.Status != "error" {
		t.Fatalf("huge results: %v", err)
	}
	r.waitTask(id, "error", 5*time.Second)
}

// A waiting claim wakes when a rate-limited step's token falls due, not at
// the fallback poll (10 s here): the claim that put the step back said when.
func TestClaimWakesWhenRateTokenIsDue(t *testing.T) {
	t.Parallel()
	r := setup(t)
	r.register(`namespace_name: shop
name: paced
version: 1.0.0
step_templates:
  - {name: charge, handler: "remote:charges", rate_limit: {per_second: 1, key: gateway}}
`)
	type claimed struct {
		steps []workers.ClaimedStep
		after time.Duration
	}
	got := make(chan claimed, 2)
	start := time.Now()
	for _, w := range []string{"w1", "w2"} {
		go func() {
			steps, err := r.svc.Claim(context.Background(), workers.ClaimRequest{WorkerID: w, Handlers: []string{"remote:charges"}, Max: 1, Wait: 20 * time.Second})
			if err != nil {
				t.Error(err)
			}
			got <- claimed{steps, time.Since(start)}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !waitingWorkers(r, 2) {
		time.Sleep(10 * time.Millisecond)
	}
	r.create("shop", "paced", `{}`)
	r.create("shop", "paced", `{}`)
	// One claim takes the bucket's token; the other step waits for the next
	// one, a second later, and so does the other claim.
	var last time.Duration
	for range 2 {
		c := <-got
		if len(c.steps) != 1 {
			t.Fatalf("a claim returned %d steps after %s", len(c.steps), c.after)
		}
		last = max(last, c.after)
	}
	t.Logf("last claim after %s", last)
	if last > 5*time.Second {
		t.Fatalf("the second step was claimed after %s: its token was due a second after the first", last)
	}
}

// waitingWorkers reports whether n workers have a claim under way.
func waitingWorkers(r *replica, n int) bool {
	var got int
	_ = r.pool.QueryRow(context.Background(), "SELECT count(*) FROM workers").Scan(&got)
	return got >= n
}
