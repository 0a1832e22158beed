package workers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/workers"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// replica is one test's database with a replica's parts: registry, engine
// (short leases and rescue), the worker service and the notifier.
type replica struct {
	t     *testing.T
	store *store.Store
	pool  *pgxpool.Pool // for assertions
	reg   *registry.Registry
	eng   *engine.Engine
	svc   *workers.Service
}

type options struct {
	workerPoll    time.Duration
	kinds         []handler.Kind
	maxConcurrent int
}

func setup(t *testing.T, mods ...func(*options)) *replica {
	t.Helper()
	opts := options{workerPoll: 10 * time.Second} // long: wake-ups must come from notifications
	for _, m := range mods {
		m(&opts)
	}
	dsn := testdb.New(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(store.Config{DatabaseURL: dsn, MaxConns: 30, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pool, err := pgxpool.New(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	httpKind, err := handler.NewHTTP(handler.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sub := handler.NewSubtask()
	kinds, err := handler.NewKinds(append(append(handler.Builtins(), httpKind, sub), opts.kinds...)...)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := notifier.New(notifier.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Kinds: kinds, Notifier: notes, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Store: st, Templates: reg, Kinds: kinds, Notifier: notes, Logger: logger,
		MaxConcurrentSteps: opts.maxConcurrent,
		LeaseDuration:      3 * time.Second, LeaseRenewInterval: time.Second, RescueInterval: 200 * time.Millisecond,
		PollInterval: 500 * time.Millisecond, Backoff: engine.Backoff{Base: 50 * time.Millisecond, Max: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	sub.Bind(eng)
	svc, err := workers.New(workers.Config{Store: st, Steps: eng, Templates: reg, Notifier: notes, ReplicaID: "test-replica",
		PollInterval: opts.workerPoll, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, start := range []func(context.Context) error{reg.Start, eng.Start, svc.Start, notes.Start} {
		if err := start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = svc.Stop(stopCtx)
		_ = eng.Stop(stopCtx)
		_ = reg.Stop(stopCtx)
		_ = notes.Stop(stopCtx)
	})
	select {
	case <-notes.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the notifier did not start listening")
	}
	return &replica{t: t, store: st, pool: pool, reg: reg, eng: eng, svc: svc}
}

func (r *replica) register(yaml string) {
	r.t.Helper()
	if _, err := r.reg.Register(context.Background(), []byte(yaml), registry.FormatYAML, registry.RegisterOptions{}); err != nil {
		r.t.Fatalf("register: %v", err)
	}
}

func (r *replica) create(ns, name, ctxJSON string) uuid.UUID {
	r.t.Helper()
	v, created, err := r.eng.CreateTask(context.Background(), engine.CreateTaskRequest{Namespace: ns, Name: name, Context: json.RawMessage(ctxJSON)})
	if err != nil || !created {
		r.t.Fatalf("create %s.%s: created=%v err=%v", ns, name, created, err)
	}
	return v.Task.TaskID
}

// waitTask polls until the task has status, failing at the deadline.
func (r *replica) waitTask(id uuid.UUID, status string, within time.Duration) *engine.TaskView {
	r.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		v, err := r.eng.GetTask(context.Background(), id, true)
		if err != nil {
			r.t.Fatal(err)
		}
		if last = v.Task.Status; last == status {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	v, _ := r.eng.GetTask(context.Background(), id, true)
	r.t.Fatalf("task %s: status %s, want %s within %s; steps: %+v", id, last, status, within, stepStates(v))
	return nil
}

// waitStep polls until the task's step has status.
func (r *replica) waitStep(taskID uuid.UUID, name, status string, within time.Duration) store.Step {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := r.step(taskID, name)
		if st.Status == status {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("step %s: status %s, want %s within %s", name, st.Status, status, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *replica) step(taskID uuid.UUID, name string) store.Step {
	r.t.Helper()
	v, err := r.eng.GetTask(context.Background(), taskID, false)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, s := range v.Steps {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("task %s has no step %q", taskID, name)
	return store.Step{}
}

func stepStates(v *engine.TaskView) map[string]string {
	out := map[string]string{}
	if v == nil {
		return out
	}
	for _, s := range v.Steps {
		out[s.Name] = s.Status + " " + string(s.LastError)
	}
	return out
}

// claim claims for a worker, failing the test on error.
func (r *replica) claim(worker string, max int, wait time.Duration, lease time.Duration, queues ...string) []workers.ClaimedStep {
	r.t.Helper()
	steps, err := r.svc.Claim(context.Background(), workers.ClaimRequest{WorkerID: worker, Handlers: queues, Max: max, Wait: wait, Lease: lease})
	if err != nil {
		r.t.Fatalf("claim: %v", err)
	}
	return steps
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
