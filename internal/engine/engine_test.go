package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// templates is an in-test registry: the engine depends on an interface, and
// these tests exercise the engine, not the template parser.
type templates struct {
	mu     sync.Mutex
	byID   map[int64]*registry.Registered
	byName map[string]*registry.Registered
}

func (t *templates) Resolve(_ context.Context, ns, name, version string) (*registry.Registered, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.byName[ns+"."+name]; ok && (version == "" || version == r.Template.Version) {
		return r, nil
	}
	return nil, registry.ErrNotFound
}

func (t *templates) ByID(_ context.Context, id int64) (*registry.Registered, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.byID[id]; ok {
		return r, nil
	}
	return nil, registry.ErrNotFound
}

// env is one test's database with its registry and engines.
type env struct {
	t         *testing.T
	dsn       string
	store     *store.Store
	pool      *pgxpool.Pool // for assertions
	templates *templates
	kinds     *handler.Kinds
	runs      *runLog
}

// runLog records every handler execution, as the multi-replica tests'
// "side table": a step that ran twice shows twice.
type runLog struct {
	mu   sync.Mutex
	runs map[uuid.UUID]int
}

func (l *runLog) add(id uuid.UUID) {
	l.mu.Lock()
	l.runs[id]++
	l.mu.Unlock()
}

func (l *runLog) count(id uuid.UUID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs[id]
}

// recordKind counts executions and optionally blocks until released.
type recordKind struct {
	log   *runLog
	delay time.Duration
}

func (recordKind) Name() string                         { return "record" }
func (recordKind) ValidateConfig(json.RawMessage) error { return nil }
func (k recordKind) Handle(ctx context.Context, s handler.Step) (json.RawMessage, error) {
	k.log.add(s.StepID)
	if k.delay > 0 {
		select {
		case <-time.After(k.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return json.RawMessage(fmt.Sprintf(`{"step":%q,"attempt":%d}`, s.StepName, s.Attempt)), nil
}

// blockKind runs until its context ends, reporting the cause.
type blockKind struct{ started, ended chan string }

func (blockKind) Name() string                         { return "block" }
func (blockKind) ValidateConfig(json.RawMessage) error { return nil }
func (k blockKind) Handle(ctx context.Context, s handler.Step) (json.RawMessage, error) {
	k.started <- s.StepName
	<-ctx.Done()
	k.ended <- context.Cause(ctx).Error()
	return nil, ctx.Err()
}

// lingerKind runs until its context ends, then takes 200 ms more to
// return, except for the step named "a", which returns at once.
type lingerKind struct{ started chan string }

func (lingerKind) Name() string                         { return "linger" }
func (lingerKind) ValidateConfig(json.RawMessage) error { return nil }
func (k lingerKind) Handle(ctx context.Context, s handler.Step) (json.RawMessage, error) {
	k.started <- s.StepName
	<-ctx.Done()
	if s.StepName != "a" {
		time.Sleep(200 * time.Millisecond)
	}
	return nil, ctx.Err()
}

func setup(t *testing.T, extra ...handler.Kind) *env {
	t.Helper()
	dsn := testdb.New(t)
	st, err := store.New(store.Config{DatabaseURL: dsn, MaxConns: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pool, err := pgxpool.New(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := &runLog{runs: map[uuid.UUID]int{}}
	kinds, err := handler.NewKinds(append(append(handler.Builtins(), recordKind{log: log}), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dsn: dsn, store: st, pool: pool, kinds: kinds, runs: log,
		templates: &templates{byID: map[int64]*registry.Registered{}, byName: map[string]*registry.Registered{}}}
}

// engine starts an engine with short intervals; stopped at cleanup.
func (e *env) engine(mod ...func(*engine.Config)) *engine.Engine {
	e.t.Helper()
	n, err := notifier.New(notifier.Config{DatabaseURL: e.dsn + "&search_path=tasker"})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := engine.Config{
		Store: e.store, Templates: e.templates, Kinds: e.kinds, Notifier: n,
		LeaseDuration: 3 * time.Second, LeaseRenewInterval: time.Second, RescueInterval: 300 * time.Millisecond,
		PollInterval: 500 * time.Millisecond, MaxConcurrentSteps: 16,
	}
	for _, m := range mod {
		m(&cfg)
	}
	eng, err := engine.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
		_ = n.Stop(stopCtx)
	})
	return eng
}

// step is a compact step template for tests.
type step struct {
	name, handler string
	deps          []string
	config        string
	retryLimit    int
	backoff       time.Duration
	timeout       time.Duration
	skippable     bool
	concurrency   *registry.Concurrency
	rateLimit     *registry.RateLimit
}

// register stores a template's rows as the registry would and makes it resolvable.
func (e *env) register(ns, name string, steps ...step) *registry.Registered {
	e.t.Helper()
	return e.registerTemplate(&registry.Template{NamespaceName: ns, Name: name, Version: "1.0.0"}, steps...)
}

// registerTemplate registers tmpl (its task-level fields as given) with steps.
func (e *env) registerTemplate(tmpl *registry.Template, steps ...step) *registry.Registered {
	e.t.Helper()
	ctx := context.Background()
	ns, name := tmpl.NamespaceName, tmpl.Name
	for _, s := range steps {
		st := registry.StepTemplate{Name: s.name, Handler: s.handler, DependsOn: s.deps, Retryable: true,
			RetryLimit: 3, Timeout: registry.Duration(10 * time.Second), Skippable: s.skippable,
			Concurrency: s.concurrency, RateLimit: s.rateLimit,
			Backoff: registry.Backoff{Base: registry.Duration(20 * time.Millisecond), Max: registry.Duration(time.Second)}}
		if s.config != "" {
			st.HandlerConfig = json.RawMessage(s.config)
		}
		if s.retryLimit > 0 {
			st.RetryLimit = s.retryLimit
		}
		if s.backoff > 0 {
			st.Backoff.Base = registry.Duration(s.backoff)
		}
		if s.timeout > 0 {
			st.Timeout = registry.Duration(s.timeout)
		}
		if st.DependsOn == nil {
			st.DependsOn = []string{}
		}
		tmpl.StepTemplates = append(tmpl.StepTemplates, st)
	}
	doc, _ := json.Marshal(tmpl)
	reg := &registry.Registered{Template: tmpl, StepIDs: map[string]int64{}}
	var nsID int64
	err := e.pool.QueryRow(ctx, `INSERT INTO task_namespaces (name) VALUES ($1)
		ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING task_namespace_id`, ns).Scan(&nsID)
	must(e.t, err)
	must(e.t, e.pool.QueryRow(ctx, `INSERT INTO named_tasks (task_namespace_id, name, version, template, content_hash)
		VALUES ($1, $2, '1.0.0', $3, 'h') RETURNING named_task_id`, nsID, name, doc).Scan(&reg.ID))
	for i, s := range tmpl.StepTemplates {
		var id int64
		must(e.t, e.pool.QueryRow(ctx, `INSERT INTO named_steps (named_task_id, name, position, handler)
			VALUES ($1, $2, $3, $4) RETURNING named_step_id`, reg.ID, s.Name, i, s.Handler).Scan(&id))
		reg.StepIDs[s.Name] = id
	}
	e.templates.mu.Lock()
	e.templates.byID[reg.ID] = reg
	e.templates.byName[ns+"."+name] = reg
	e.templates.mu.Unlock()
	return reg
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) create(eng *engine.Engine, ns, name string, mod ...func(*engine.CreateTaskRequest)) uuid.UUID {
	e.t.Helper()
	req := engine.CreateTaskRequest{Namespace: ns, Name: name, Context: json.RawMessage(`{"n":1}`)}
	for _, m := range mod {
		m(&req)
	}
	v, created, err := eng.CreateTask(context.Background(), req)
	if err != nil || !created {
		e.t.Fatalf("create %s.%s: created=%v err=%v", ns, name, created, err)
	}
	return v.Task.TaskID
}

// wait polls until the task reaches status or the deadline passes.
func (e *env) wait(id uuid.UUID, status string, within time.Duration) *engine.TaskView {
	e.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		var s string
		must(e.t, e.pool.QueryRow(context.Background(), "SELECT status FROM tasks WHERE task_id = $1", id).Scan(&s))
		if s == status {
			st, _ := store.New(store.Config{DatabaseURL: e.dsn})
			defer st.Close()
			eng, _ := engine.New(engine.Config{Store: st, Templates: e.templates, Kinds: e.kinds})
			v, err := eng.GetTask(context.Background(), id, true)
			must(e.t, err)
			return v
		}
		last = s
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("task %s: want %s within %s, still %s", id, status, within, last)
	return nil
}

func stepByName(v *engine.TaskView, name string) store.Step {
	for _, s := range v.Steps {
		if s.Name == name {
			return s
		}
	}
	return store.Step{}
}

// checkOrder asserts from transition timestamps that every step started
// only after all its parents completed.
func checkOrder(t *testing.T, v *engine.TaskView) {
	t.Helper()
	started := map[uuid.UUID]time.Time{}
	done := map[uuid.UUID]time.Time{}
	for _, tr := range v.Transitions {
		if tr.StepID == nil {
			continue
		}
		if tr.To == "in_progress" {
			if _, ok := started[*tr.StepID]; !ok {
				started[*tr.StepID] = tr.CreatedAt
			}
		}
		if tr.To == "complete" || tr.To == "resolved_manually" {
			done[*tr.StepID] = tr.CreatedAt
		}
	}
	ids := map[string]uuid.UUID{}
	for _, s := range v.Steps {
		ids[s.Name] = s.StepID
	}
	for _, s := range v.Steps {
		for _, p := range s.Parents {
			pd, ok := done[ids[p]]
			if !ok {
				t.Errorf("parent %s of %s never finished", p, s.Name)
				continue
			}
			if st, ok := started[s.StepID]; ok && !st.After(pd) {
				t.Errorf("%s started at %s, before its parent %s finished at %s", s.Name, st, p, pd)
			}
		}
	}
	// A finished task's own final transition comes last in the listing,
	// after the step changes that ended it (written in the same flush).
	if n := len(v.Transitions); n > 0 && (v.Task.Status == "complete" || v.Task.Status == "error") {
		if last := v.Transitions[n-1]; last.StepID != nil || last.To != v.Task.Status {
			t.Errorf("last transition is %v → %s of step %v, want the task's → %s", last.From, last.To, last.StepID, v.Task.Status)
		}
	}
}

func TestShapesComplete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("shapes", "linear", step{name: "a", handler: "record"}, step{name: "b", handler: "record", deps: []string{"a"}},
		step{name: "c", handler: "echo", deps: []string{"b"}})
	e.register("shapes", "diamond", step{name: "a", handler: "record"}, step{name: "b", handler: "record", deps: []string{"a"}},
		step{name: "c", handler: "record", deps: []string{"a"}}, step{name: "d", handler: "record", deps: []string{"b", "c"}})
	fan := []step{{name: "start", handler: "record"}}
	var mids []string
	for i := range 8 {
		n := fmt.Sprintf("m%d", i)
		mids = append(mids, n)
		fan = append(fan, step{name: n, handler: "record", deps: []string{"start"}})
	}
	fan = append(fan, step{name: "end", handler: "record", deps: mids})
	e.register("shapes", "fan", fan...)
	// A 5-level binary tree, leaves fanning back into one sink.
	tree := []step{{name: "n1", handler: "record"}}
	var leaves []string
	for i := 2; i < 32; i++ {
		n := fmt.Sprintf("n%d", i)
		tree = append(tree, step{name: n, handler: "record", deps: []string{fmt.Sprintf("n%d", i/2)}})
		if i >= 16 {
			leaves = append(leaves, n)
		}
	}
	tree = append(tree, step{name: "sink", handler: "record", deps: leaves})
	e.register("shapes", "tree", tree...)

	for _, name := range []string{"linear", "diamond", "fan", "tree"} {
		id := e.create(eng, "shapes", name)
		v := e.wait(id, "complete", 30*time.Second)
		for _, s := range v.Steps {
			if s.Status != "complete" || s.Attempts != 1 {
				t.Errorf("%s/%s: %s after %d attempts", name, s.Name, s.Status, s.Attempts)
			}
		}
		if v.Task.UnfinishedSteps != 0 || v.Task.StartedAt == nil || v.Task.CompletedAt == nil {
			t.Errorf("%s: task %+v", name, v.Task)
		}
		checkOrder(t, v)
	}
}

func TestRetriesFollowBackoff(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("retry", "flaky", step{name: "a", handler: "fail", config: `{"failures": 2}`, backoff: 200 * time.Millisecond, retryLimit: 3})
	id := e.create(eng, "retry", "flaky")
	v := e.wait(id, "complete", 30*time.Second)
	a := stepByName(v, "a")
	if a.Attempts != 3 {
		t.Fatalf("attempts = %d, want 3", a.Attempts)
	}
	// Two failures, each recorded as in_progress → error → pending; the wait
	// before each retry grows (200 ms, then 400 ms, ±10 %).
	var errorsAt, claimsAt []time.Time
	for _, tr := range v.Transitions {
		if tr.StepID == nil {
			continue
		}
		switch {
		case tr.To == "error":
			errorsAt = append(errorsAt, tr.CreatedAt)
		case tr.To == "in_progress":
			claimsAt = append(claimsAt, tr.CreatedAt)
		}
	}
	if len(errorsAt) != 2 || len(claimsAt) != 3 {
		t.Fatalf("errors %d, claims %d", len(errorsAt), len(claimsAt))
	}
	for i, want := range []time.Duration{180 * time.Millisecond, 360 * time.Millisecond} {
		if gap := claimsAt[i+1].Sub(errorsAt[i]); gap < want {
			t.Errorf("retry %d ran %s after the failure, want at least %s", i+1, gap, want)
		}
	}
}

func TestPermanentFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	// b fails every attempt; d depends on it; c and its child e are independent.
	e.register("fail", "diamond",
		step{name: "a", handler: "record"},
		step{name: "b", handler: "fail", deps: []string{"a"}, config: `{"failures": 100}`, retryLimit: 2},
		step{name: "c", handler: "record", deps: []string{"a"}},
		step{name: "d", handler: "record", deps: []string{"b", "c"}},
		step{name: "e", handler: "record", deps: []string{"c"}})
	id := e.create(eng, "fail", "diamond")
	v := e.wait(id, "error", 30*time.Second)
	want := map[string]string{"a": "complete", "b": "error", "c": "complete", "d": "pending", "e": "complete"}
	for n, s := range want {
		if got := stepByName(v, n); got.Status != s {
			t.Errorf("%s: %s, want %s", n, got.Status, s)
		}
	}
	if e.runs.count(stepByName(v, "d").StepID) != 0 {
		t.Error("d ran although its parent failed")
	}
	if b := stepByName(v, "b"); b.Attempts != 2 || len(b.LastError) == 0 {
		t.Errorf("b: %d attempts, last error %s", b.Attempts, b.LastError)
	}

	// Resolving b by hand unblocks d, and the task completes.
	must(t, eng.ResolveStep(context.Background(), id, stepByName(v, "b").StepID, json.RawMessage(`{"manual":true}`), "alice"))
	v = e.wait(id, "complete", 30*time.Second)
	if d := stepByName(v, "d"); d.Status != "complete" {
		t.Errorf("d after resolve: %s", d.Status)
	}
	checkOrder(t, v)
	actor := false
	for _, tr := range v.Transitions {
		actor = actor || (tr.To == "resolved_manually" && tr.Actor == "alice")
	}
	if !actor {
		t.Error("the manual resolution does not record its actor")
	}
}

func TestRetryFailedTask(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("retry", "once", step{name: "a", handler: "fail", config: `{"failures": 1}`, retryLimit: 1})
	id := e.create(eng, "retry", "once")
	e.wait(id, "error", 30*time.Second)
	ctx := context.Background()
	if err := eng.ResolveTask(ctx, id, "bob"); err != nil {
		t.Fatal(err)
	}
	// A resolved task cannot be retried: 409 material.
	if err := eng.RetryTask(ctx, id, "bob"); err == nil {
		t.Fatal("retry of a resolved task accepted")
	}

	id = e.create(eng, "retry", "once")
	e.wait(id, "error", 30*time.Second)
	must(t, eng.RetryTask(ctx, id, "bob"))
	v := e.wait(id, "complete", 30*time.Second)
	if a := stepByName(v, "a"); a.Attempts != 2 || a.RetryBase != 1 {
		t.Errorf("after retry: attempts %d, retry base %d", a.Attempts, a.RetryBase)
	}
}

func TestBypassAndRunAt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("misc", "skip", step{name: "a", handler: "record", skippable: true}, step{name: "b", handler: "record", deps: []string{"a"}})
	id := e.create(eng, "misc", "skip", func(r *engine.CreateTaskRequest) { r.BypassSteps = []string{"a"} })
	v := e.wait(id, "complete", 30*time.Second)
	if a := stepByName(v, "a"); a.Status != "resolved_manually" || e.runs.count(a.StepID) != 0 {
		t.Errorf("bypassed a: %s, ran %d times", a.Status, e.runs.count(a.StepID))
	}
	_, _, err := eng.CreateTask(context.Background(), engine.CreateTaskRequest{Namespace: "misc", Name: "skip", BypassSteps: []string{"b"}})
	if _, ok := err.(*registry.ValidationError); !ok {
		t.Errorf("bypassing a step that is not skippable: %v", err)
	}

	runAt := time.Now().Add(time.Second)
	id = e.create(eng, "misc", "skip", func(r *engine.CreateTaskRequest) { r.RunAt = &runAt })
	v = e.wait(id, "complete", 30*time.Second)
	if v.Task.StartedAt == nil || v.Task.StartedAt.Before(runAt.Add(-50*time.Millisecond)) {
		t.Errorf("run_at %s but started at %v", runAt, v.Task.StartedAt)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	bk := blockKind{started: make(chan string, 4), ended: make(chan string, 4)}
	e := setup(t, bk)
	eng := e.engine()
	e.register("cancel", "running", step{name: "a", handler: "block"}, step{name: "b", handler: "record", deps: []string{"a"}})
	id := e.create(eng, "cancel", "running")
	<-bk.started
	ctx := context.Background()
	must(t, eng.CancelTask(ctx, id, "carol"))
	select {
	case cause := <-bk.ended:
		if cause != "the task was cancelled" {
			t.Errorf("handler stopped because %q", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler was not cancelled")
	}
	v := e.wait(id, "cancelled", 10*time.Second)
	for _, s := range v.Steps {
		if s.Status != "cancelled" {
			t.Errorf("%s: %s", s.Name, s.Status)
		}
	}
	if err := eng.CancelTask(ctx, id, "carol"); err == nil {
		t.Error("cancelling a cancelled task must be refused")
	}

	// A task whose step is in backoff is cancelled too, and never retried.
	e.register("cancel", "backoff", step{name: "a", handler: "fail", config: `{"failures": 5}`, backoff: time.Hour})
	id = e.create(eng, "cancel", "backoff")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var errs int
		must(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM workflow_step_transitions st JOIN workflow_steps w USING (workflow_step_id)
			WHERE w.task_id = $1 AND st.to_state = 'error'`, id).Scan(&errs))
		if errs > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, eng.CancelTask(ctx, id, "carol"))
	v = e.wait(id, "cancelled", 10*time.Second)
	if a := stepByName(v, "a"); a.Status != "cancelled" || a.Attempts != 1 {
		t.Errorf("step in backoff: %s after %d attempts", a.Status, a.Attempts)
	}
}

// Stop waits for running handlers until its deadline, then cancels them
// and hands their steps back: released (the attempt given back), never
// recorded as failed attempts, and not left leased. Step a's handler
// returns long before the others, so its outcome would be written before
// the release if the engine wrote it.
func TestStopReleasesUnfinishedSteps(t *testing.T) {
	t.Parallel()
	lk := lingerKind{started: make(chan string, 4)}
	e := setup(t, lk)
	n, err := notifier.New(notifier.Config{DatabaseURL: e.dsn + "&search_path=tasker"})
	must(t, err)
	eng, err := engine.New(engine.Config{Store: e.store, Templates: e.templates, Kinds: e.kinds, Notifier: n,
		LeaseDuration: time.Minute, PollInterval: 200 * time.Millisecond, MaxConcurrentSteps: 8})
	must(t, err)
	ctx := context.Background()
	must(t, n.Start(ctx))
	t.Cleanup(func() { _ = n.Stop(ctx) })
	must(t, eng.Start(ctx))
	t.Cleanup(func() { // when the test fails before its own Stop (safe twice)
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
	})
	e.register("stop", "four", step{name: "a", handler: "linger"}, step{name: "b", handler: "linger"},
		step{name: "c", handler: "linger"}, step{name: "d", handler: "linger"})
	id := e.create(eng, "stop", "four")
	for range 4 {
		select {
		case <-lk.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the steps did not start")
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	must(t, eng.Stop(stopCtx))
	var released, failed, leased int
	must(t, e.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM workflow_step_transitions WHERE task_id = $1 AND metadata->>'reason' = 'released'),
		(SELECT count(*) FROM workflow_step_transitions WHERE task_id = $1 AND to_state = 'error'),
		(SELECT count(*) FROM workflow_steps WHERE task_id = $1 AND (status <> 'pending' OR lease_owner IS NOT NULL OR retry_base <> 1))`,
		id).Scan(&released, &failed, &leased))
	if released != 4 || failed != 0 || leased != 0 {
		t.Fatalf("after Stop: %d steps released (want 4), %d attempts failed (want 0), %d steps not pending, leased or charged", released, failed, leased)
	}
}

func TestIdempotentCreateUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("idem", "t", step{name: "a", handler: "noop"})
	var wg sync.WaitGroup
	var createdCount atomic.Int32
	ids := make(chan uuid.UUID, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, created, err := eng.CreateTask(context.Background(), engine.CreateTaskRequest{
				Namespace: "idem", Name: "t", Context: json.RawMessage(`{"b":2,"a":1}`), IdempotencyKey: "order-42"})
			if err != nil {
				t.Error(err)
				return
			}
			if created {
				createdCount.Add(1)
			}
			ids <- v.Task.TaskID
		}()
	}
	wg.Wait()
	close(ids)
	var first uuid.UUID
	for id := range ids {
		if first == uuid.Nil {
			first = id
		} else if id != first {
			t.Errorf("two tasks for one key: %s and %s", first, id)
		}
	}
	if createdCount.Load() != 1 {
		t.Errorf("created %d times", createdCount.Load())
	}
	// Same key, same body with keys in another order: the same task.
	v, created, err := eng.CreateTask(context.Background(), engine.CreateTaskRequest{
		Namespace: "idem", Name: "t", Context: json.RawMessage(`{"a":1, "b":2}`), IdempotencyKey: "order-42"})
	if err != nil || created || v.Task.TaskID != first {
		t.Errorf("replay: %v %v %v", v, created, err)
	}
	_, _, err = eng.CreateTask(context.Background(), engine.CreateTaskRequest{
		Namespace: "idem", Name: "t", Context: json.RawMessage(`{"a":2}`), IdempotencyKey: "order-42"})
	if err == nil {
		t.Error("same key, different body: want a conflict")
	}
}

// Three engines on one database run 2,000 tasks; every step's handler
// succeeds exactly once and every task completes.
func TestThreeReplicasExactlyOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.register("multi", "pair", step{name: "a", handler: "record"}, step{name: "b", handler: "record", deps: []string{"a"}})
	engines := []*engine.Engine{e.engine(), e.engine(), e.engine()}
	const tasks = 2000
	ids := make([]uuid.UUID, tasks)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tasks; i += 8 {
				ids[i] = e.create(engines[i%3], "multi", "pair")
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var unfinished int
		must(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM tasks WHERE status <> 'complete'").Scan(&unfinished))
		if unfinished == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks unfinished", unfinished)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rows, err := e.pool.Query(ctx, "SELECT workflow_step_id, attempts FROM workflow_steps")
	must(t, err)
	steps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		ID       uuid.UUID
		Attempts int
	}])
	must(t, err)
	if len(steps) != 2*tasks {
		t.Fatalf("%d steps, want %d", len(steps), 2*tasks)
	}
	for _, s := range steps {
		if n := e.runs.count(s.ID); n != 1 || s.Attempts != 1 {
			t.Fatalf("step %s ran %d times in %d attempts", s.ID, n, s.Attempts)
		}
	}
	var replicas int
	must(t, e.pool.QueryRow(ctx, `SELECT count(DISTINCT metadata->>'replica') FROM workflow_step_transitions WHERE to_state = 'in_progress'`).Scan(&replicas))
	if replicas < 2 {
		t.Errorf("work was spread over %d replicas", replicas)
	}
	var doubles int
	must(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT workflow_step_id FROM workflow_step_transitions
		WHERE to_state = 'complete' GROUP BY 1 HAVING count(*) > 1) d`).Scan(&doubles))
	if doubles != 0 {
		t.Errorf("%d steps completed twice", doubles)
	}
}

// An engine that dies mid-run (no cleanup, no release) has its steps taken
// over by the others after its leases expire; nothing is lost.
func TestAbruptStopIsTakenOver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	slow := recordKind{log: e.runs, delay: time.Hour}
	slowKinds, err := handler.NewKinds(slow)
	must(t, err)
	e.register("crash", "t", step{name: "a", handler: "record"})
	// The victim runs "record" steps that never finish; the survivor's
	// "record" finishes at once.
	victim := e.engine(func(c *engine.Config) { c.Kinds = slowKinds; c.ReplicaID = "victim" })
	var ids []uuid.UUID
	for range 5 {
		ids = append(ids, e.create(victim, "crash", "t"))
	}
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		must(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM workflow_steps WHERE lease_owner = 'victim'").Scan(&n))
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim holds %d steps", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	engine.Abandon(victim) // as if killed: no release, no renewals, no flush
	e.engine(func(c *engine.Config) { c.ReplicaID = "survivor" })
	for _, id := range ids {
		v := e.wait(id, "complete", 30*time.Second)
		a := stepByName(v, "a")
		if a.Attempts != 2 {
			t.Errorf("attempts %d, want 2", a.Attempts)
		}
		expired := false
		for _, tr := range v.Transitions {
			var m map[string]any
			_ = json.Unmarshal(tr.Metadata, &m)
			expired = expired || (tr.To == "pending" && m["reason"] == "lease_expired" && m["replica"] == "victim")
		}
		if !expired {
			t.Error("no lease_expired transition recorded")
		}
	}
}

// nulKind returns what PostgreSQL cannot store: results with \u0000 (config
// "results") or an error whose message holds a NUL byte.
type nulKind struct{}

func (nulKind) Name() string                         { return "nul" }
func (nulKind) ValidateConfig(json.RawMessage) error { return nil }
func (nulKind) Handle(_ context.Context, s handler.Step) (json.RawMessage, error) {
	if string(s.Config) == `{"mode":"results"}` {
		return json.RawMessage(`{"body":"a\u0000b"}`), nil
	}
	return nil, &handler.Error{Err: errors.New("upstream said a\x00b"), Retryable: false}
}

// TestUnstorableOutcomesFailOnlyTheirStep checks that a handler's results
// or error that PostgreSQL cannot store fail that step with a clear error,
// and never the flush that carries its neighbours' completions.
func TestUnstorableOutcomesFailOnlyTheirStep(t *testing.T) {
	t.Parallel()
	e := setup(t, nulKind{})
	eng := e.engine()
	e.register("nul", "mixed",
		step{name: "ok1", handler: "record"},
		step{name: "bad_results", handler: "nul", config: `{"mode":"results"}`},
		step{name: "bad_error", handler: "nul", config: `{"mode":"error"}`},
		step{name: "ok2", handler: "record"})
	id := e.create(eng, "nul", "mixed")
	v := e.wait(id, "error", 30*time.Second)
	for _, n := range []string{"ok1", "ok2"} {
		if st := stepByName(v, n); st.Status != "complete" {
			t.Errorf("%s: %s, want complete", n, st.Status)
		}
	}
	br := stepByName(v, "bad_results")
	if br.Status != "error" || !strings.Contains(string(br.LastError), `\\u0000`) {
		t.Errorf("bad_results: %s, last error %s", br.Status, br.LastError)
	}
	be := stepByName(v, "bad_error")
	if be.Status != "error" || !strings.Contains(string(be.LastError), "upstream said a") {
		t.Errorf("bad_error: %s, last error %s", be.Status, be.LastError)
	}
}

// A handler still running at its step's timeout has its context cancelled,
// with the timeout as the cause; the attempt fails, retryably, saying so.
func TestStepTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	eng := e.engine()
	e.register("ns", "slow", step{name: "s", handler: "sleep", config: `{"duration":"10s"}`, timeout: 150 * time.Millisecond,
		retryLimit: 2, backoff: 10 * time.Millisecond})
	v := e.wait(e.create(eng, "ns", "slow"), "error", 8*time.Second) // the sleep alone would last 20 s
	s := stepByName(v, "s")
	var doc struct {
		Message   string `json:"message"`
		Retryable bool   `json:"retryable"`
	}
	if err := json.Unmarshal(s.LastError, &doc); err != nil {
		t.Fatal(err)
	}
	if s.Status != "error" || s.Attempts != 2 || !strings.HasPrefix(doc.Message, "step timed out after 150ms") || !doc.Retryable {
		t.Errorf("step %s after %d attempts, last error %s", s.Status, s.Attempts, s.LastError)
	}
}
