package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
)

// keyedKind runs for delay and records, per context customer_id, how many
// of its handlers ran at once at most: handler time lies within the time a
// step holds its concurrency slot, so this is an exact lower bound check.
type keyedKind struct {
	delay time.Duration
	mu    *sync.Mutex
	now   map[string]int
	max   map[string]int
}

func newKeyedKind(delay time.Duration) keyedKind {
	return keyedKind{delay: delay, mu: &sync.Mutex{}, now: map[string]int{}, max: map[string]int{}}
}

func (keyedKind) Name() string                         { return "keyed" }
func (keyedKind) ValidateConfig(json.RawMessage) error { return nil }
func (k keyedKind) Handle(ctx context.Context, s handler.Step) (json.RawMessage, error) {
	var c struct {
		Customer string `json:"customer_id"`
	}
	_ = json.Unmarshal(s.Context, &c)
	k.mu.Lock()
	k.now[c.Customer]++
	k.max[c.Customer] = max(k.max[c.Customer], k.now[c.Customer])
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.now[c.Customer]--
		k.mu.Unlock()
	}()
	select {
	case <-time.After(k.delay):
		return json.RawMessage(`{}`), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// waitAll waits until no task is unfinished.
func (e *env) waitAll(within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var n int
		must(e.t, e.pool.QueryRow(context.Background(),
			"SELECT count(*) FROM tasks WHERE status NOT IN ('complete', 'error', 'cancelled')").Scan(&n))
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d tasks unfinished after %s", n, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepOverlapSQL is, per key, the most steps in progress at one instant by
// their transitions: for each step's start, the steps of its key started
// at or before it and not yet complete. Transitions are ordered by id, not
// time: a transition's time is its transaction's start, and a claim that
// waited for the slot a completion freed may be stamped before that
// completion; ids are drawn as the rows are written, after the claim took
// its slot and before the completion freed it.
const stepOverlapSQL = `
WITH runs AS (
  SELECT w.workflow_step_id, t.context->>'customer_id' AS k,
         (SELECT min(workflow_step_transition_id) FROM workflow_step_transitions x
          WHERE x.workflow_step_id = w.workflow_step_id AND x.to_state = 'in_progress') AS s,
         (SELECT max(workflow_step_transition_id) FROM workflow_step_transitions x
          WHERE x.workflow_step_id = w.workflow_step_id AND x.to_state = 'complete') AS e
  FROM workflow_steps w JOIN tasks t USING (task_id)
)
SELECT a.k, max((SELECT count(*) FROM runs b WHERE b.k = a.k AND b.s <= a.s AND b.e > a.s))
FROM runs a GROUP BY a.k ORDER BY a.k`

// At most limit steps of a key run at once across three replicas, and the
// waiting ones all run in the end.
func TestStepConcurrencyKeyAcrossReplicas(t *testing.T) {
	t.Parallel()
	kind := newKeyedKind(50 * time.Millisecond)
	e := setup(t, kind)
	const limit = 2
	e.register("lim", "keyed", step{name: "a", handler: "keyed",
		concurrency: &registry.Concurrency{Limit: limit, Key: "{{ .context.customer_id }}"}})
	engines := []*engine.Engine{e.engine(), e.engine(), e.engine()}
	for i := range 50 {
		e.create(engines[i%3], "lim", "keyed", func(r *engine.CreateTaskRequest) {
			r.Context = json.RawMessage(fmt.Sprintf(`{"customer_id":"c%d"}`, i%5))
		})
	}
	e.waitAll(2 * time.Minute)
	kind.mu.Lock()
	for k, m := range kind.max {
		if m > limit {
			t.Errorf("handlers of key %s: %d at once, limit %d", k, m, limit)
		}
	}
	kind.mu.Unlock()
	rows, err := e.pool.Query(context.Background(), stepOverlapSQL)
	must(t, err)
	keys := 0
	for rows.Next() {
		var k string
		var n int
		must(t, rows.Scan(&k, &n))
		keys++
		if n > limit {
			t.Errorf("key %s: %d steps in progress at once by their transitions, limit %d", k, n, limit)
		}
	}
	must(t, rows.Err())
	if keys != 5 {
		t.Fatalf("%d keys, want 5", keys)
	}
	var complete, running, parked int
	must(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'complete'),
		count(*) FILTER (WHERE parked IS NOT NULL), (SELECT coalesce(sum(running), 0) FROM concurrency_slots)
		FROM workflow_steps`).Scan(&complete, &parked, &running))
	if complete != 50 || parked != 0 || running != 0 {
		t.Fatalf("complete %d (want 50), still parked %d, slots held %d", complete, parked, running)
	}
}

// A task-level limit: at most limit tasks of the template in progress at
// once; the others wait and start as tasks finish.
func TestTaskConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := setup(t)
	slow := recordKind{log: e.runs, delay: 30 * time.Millisecond}
	slowKinds, err := handler.NewKinds(append(handler.Builtins(), slow)...)
	must(t, err)
	const limit = 2
	e.registerTemplate(&registry.Template{NamespaceName: "lim", Name: "tasks", Version: "1.0.0",
		Concurrency: &registry.Concurrency{Limit: limit}},
		step{name: "a", handler: "record"}, step{name: "b", handler: "record", deps: []string{"a"}})
	mod := func(c *engine.Config) { c.Kinds = slowKinds }
	engines := []*engine.Engine{e.engine(mod), e.engine(mod)}
	for i := range 12 {
		e.create(engines[i%2], "lim", "tasks")
	}
	e.waitAll(time.Minute)
	var most, complete int
	must(t, e.pool.QueryRow(context.Background(), `
		WITH runs AS (
		  SELECT task_id, -- in transition order, as stepOverlapSQL
		         (SELECT min(task_transition_id) FROM task_transitions x WHERE x.task_id = t.task_id AND x.to_state = 'in_progress') AS s,
		         (SELECT max(task_transition_id) FROM task_transitions x WHERE x.task_id = t.task_id AND x.to_state = 'complete') AS e
		  FROM tasks t
		)
		SELECT max((SELECT count(*) FROM runs b WHERE b.s <= a.s AND b.e > a.s)),
		       (SELECT count(*) FROM tasks WHERE status = 'complete')
		FROM runs a`).Scan(&most, &complete))
	if most > limit || complete != 12 {
		t.Fatalf("%d tasks in progress at once (limit %d); %d of 12 complete", most, limit, complete)
	}
	var running int
	must(t, e.pool.QueryRow(context.Background(), "SELECT coalesce(sum(running), 0) FROM concurrency_slots").Scan(&running))
	if running != 0 {
		t.Fatalf("slots still held: %d", running)
	}
}

// A rate limit spaces starts across replicas: no one-second window holds
// more than per_second claims (one more for the tolerance of transaction
// timestamps), and everything runs.
func TestRateLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const perSecond = 8
	e.register("lim", "rated", step{name: "a", handler: "record", rateLimit: &registry.RateLimit{PerSecond: perSecond}})
	engines := []*engine.Engine{e.engine(), e.engine()}
	for i := range 24 {
		e.create(engines[i%2], "lim", "rated")
	}
	e.waitAll(time.Minute)
	rows, err := e.pool.Query(context.Background(), `
		SELECT date_trunc('second', created_at) AS w, count(*) FROM workflow_step_transitions
		WHERE to_state = 'in_progress' GROUP BY 1 ORDER BY 1`)
	must(t, err)
	windows, total := 0, 0
	for rows.Next() {
		var w time.Time
		var n int
		must(t, rows.Scan(&w, &n))
		windows++
		total += n
		if n > perSecond+1 {
			t.Errorf("window %s: %d starts, rate %d/s", w.Format(time.RFC3339), n, perSecond)
		}
	}
	must(t, rows.Err())
	if total != 24 || windows < 3 {
		t.Fatalf("%d starts over %d one-second windows, want 24 over at least 3", total, windows)
	}
}

// A limited step whose replica dies frees its slot when its lease expires:
// the step waiting on the key runs, and so does the rescued one.
func TestLimitedStepLeaseExpiryFreesSlot(t *testing.T) {
	t.Parallel()
	e := setup(t)
	slowKinds, err := handler.NewKinds(recordKind{log: e.runs, delay: time.Hour})
	must(t, err)
	e.register("lim", "one", step{name: "a", handler: "record", concurrency: &registry.Concurrency{Limit: 1}})
	victim := e.engine(func(c *engine.Config) { c.Kinds = slowKinds; c.ReplicaID = "victim" })
	first := e.create(victim, "lim", "one")
	ctx := context.Background()
	waitFor := func(what, query string, args ...any) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var ok bool
			must(t, e.pool.QueryRow(ctx, query, args...).Scan(&ok))
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the victim to run the first step",
		"SELECT EXISTS (SELECT 1 FROM workflow_steps WHERE task_id = $1 AND lease_owner = 'victim')", first)
	second := e.create(victim, "lim", "one")
	waitFor("the second step to wait for the slot",
		"SELECT EXISTS (SELECT 1 FROM workflow_steps WHERE task_id = $1 AND parked = 'limit')", second)
	engine.Abandon(victim)
	e.engine(func(c *engine.Config) { c.ReplicaID = "survivor" })
	for _, id := range []uuid.UUID{first, second} {
		e.wait(id, "complete", 30*time.Second)
	}
	var running int
	must(t, e.pool.QueryRow(ctx, "SELECT coalesce(sum(running), 0) FROM concurrency_slots").Scan(&running))
	if running != 0 {
		t.Fatalf("slot still held: %d", running)
	}
}
