package webhooks_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/webhooks"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"event":"task.completed"}`)
	now := time.Unix(1_700_000_000, 0)
	sig := webhooks.Sign("s3cret", now, body)
	// printf '1700000000.{"event":"task.completed"}' | openssl dgst -sha256 -hmac s3cret
	const want = "t=1700000000,v1=11d0389e59975c06b9115ebbd1a634b8d713506a4342f37759160fe6f0266e0c"
	if sig != want {
		t.Fatalf("signature %q, want %q", sig, want)
	}
	if err := webhooks.Verify("s3cret", sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Errorf("verify: %v", err)
	}
	for name, c := range map[string]struct {
		secret, sig string
		body        []byte
		at          time.Time
		want        error
	}{
		"other secret":   {"other", sig, body, now, webhooks.ErrBadSignature},
		"body changed":   {"s3cret", sig, []byte(`{"event":"task.failed"}`), now, webhooks.ErrBadSignature},
		"replayed later": {"s3cret", sig, body, now.Add(time.Hour), webhooks.ErrStale},
		"time changed":   {"s3cret", strings.Replace(sig, "t=1700000000", "t=1700000060", 1), body, now, webhooks.ErrBadSignature},
		"no signature":   {"s3cret", "t=1700000000", body, now, webhooks.ErrBadSignature},
	} {
		if err := webhooks.Verify(c.secret, c.sig, c.body, c.at, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// setup is a store, a bus and a webhook service with fast retries.
type setup struct {
	store   *store.Store
	pool    *pgxpool.Pool
	bus     *events.Bus
	svc     *webhooks.Service
	counted *observer
}

type observer struct {
	mu       sync.Mutex
	outcomes map[string]int
}

func (o *observer) Delivered(outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[outcome]++
}

func (o *observer) count(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outcomes[outcome]
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	dsn := testdb.New(t)
	st, err := store.New(store.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pool, err := pgxpool.New(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	bus, err := events.NewBus(events.BusConfig{Resolver: st})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{outcomes: map[string]int{}}
	svc, err := webhooks.New(webhooks.Config{Store: st, Bus: bus, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		MaxAttempts: 3, PollInterval: 50 * time.Millisecond, Timeout: 2 * time.Second, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := bus.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = svc.Stop(stopCtx)
		_ = bus.Stop(stopCtx)
	})
	return &setup{store: st, pool: pool, bus: bus, svc: svc, counted: obs}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload that read the subscriptions before a Create committed, and
// stores its list after Create's own reload, must not put the old list
// back: the engine asks WantsTx before each claim, and a subscription it
// cannot see gets no outbox rows for those events (TestDiamondObservability
// lost task.start_requested that way under load, to the 500 ms re-read).
func TestStaleReloadKeepsNewerSubscriptions(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.svc.SetAfterRead(func() { once.Do(func() { close(read); <-release }) })
	stale := make(chan struct{})
	go func() { defer close(stale); s.svc.Reload(ctx) }()
	<-read // that reload has read a table without the webhook
	s.svc.SetAfterRead(nil)
	if _, err := s.svc.Create(ctx, webhooks.CreateRequest{URL: "http://127.0.0.1:1/hook", Events: []string{"task.*"}}); err != nil {
		t.Fatal(err)
	}
	if !s.svc.WantsTx("task.start_requested") {
		t.Fatal("Create returned before this replica matched its subscription")
	}
	close(release)
	<-stale
	if !s.svc.WantsTx("task.start_requested") {
		t.Fatal("a reload that read the table before Create committed stored its older list over Create's")
	}
}

func TestCreateValidates(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	_, err := s.svc.Create(ctx, webhooks.CreateRequest{URL: "ftp://x", Events: []string{"task.*", "bad pattern"}, Secret: "short"})
	var invalid *webhooks.ValidationError
	if !errors.As(err, &invalid) {
		t.Fatalf("want a validation error, got %v", err)
	}
	pointers := map[string]bool{}
	for _, f := range invalid.Fields {
		pointers[f.Pointer] = true
	}
	for _, p := range []string{"/url", "/events/1", "/secret"} {
		if !pointers[p] {
			t.Errorf("no error at %s: %+v", p, invalid.Fields)
		}
	}
	w, err := s.svc.Create(ctx, webhooks.CreateRequest{URL: "http://127.0.0.1:1/hook", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.Secret, "whsec_") || len(w.Secret) < 40 {
		t.Errorf("generated secret %q", w.Secret)
	}
	if !s.svc.WantsTx("task.completed") {
		t.Error("a new subscription is matched at once on its replica")
	}
	if err := s.svc.Delete(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if s.svc.WantsTx("task.completed") {
		t.Error("a deleted subscription is still matched")
	}
	if err := s.svc.Delete(ctx, w.ID); !errors.Is(err, webhooks.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}

// Each receiver behaves differently; every delivery ends as it should,
// with each attempt in the log.
func TestDeliveryOutcomes(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	var mu sync.Mutex
	hits := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		switch {
		case r.URL.Path == "/ok":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/flaky" && n == 1:
			w.WriteHeader(http.StatusInternalServerError)
		case r.URL.Path == "/flaky":
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/gone":
			w.WriteHeader(http.StatusGone)
		default:
			http.Error(w, "down for maintenance", http.StatusBadGateway)
		}
	}))
	t.Cleanup(recv.Close)
	hooks := map[string]uuid.UUID{}
	for _, path := range []string{"/ok", "/flaky", "/gone", "/down"} {
		w, err := s.svc.Create(ctx, webhooks.CreateRequest{URL: recv.URL + path, Events: []string{"step.before_handle"}})
		if err != nil {
			t.Fatal(err)
		}
		hooks[path] = w.ID
	}
	// step.before_handle records no transition: it reaches the outbox
	// through the bus.
	s.bus.Publish([]engine.Event{{Name: engine.EventStepBeforeHandle, Time: time.Now(), Namespace: "shop", TaskName: "t",
		TaskID: uuid.Must(uuid.NewV7()), StepID: uuid.Must(uuid.NewV7()), StepName: "a", Attempt: 1}})
	want := map[string]struct {
		status   string
		attempts int
		codes    []int
	}{
		"/ok":    {"delivered", 1, []int{200}},
		"/flaky": {"delivered", 2, []int{500, 202}},
		"/gone":  {"failed", 1, []int{410}},
		"/down":  {"failed", 3, []int{502, 502, 502}},
	}
	for path, w := range want {
		var log []store.DeliveryLog
		eventually(t, path+" to finish", func() bool {
			var err error
			log, err = s.svc.Deliveries(ctx, store.DeliveryQuery{WebhookID: hooks[path], Limit: 10})
			return err == nil && len(log) == 1 && log[0].Status != "pending"
		})
		d := log[0]
		if d.Status != w.status || d.Attempts != w.attempts || d.EventName != engine.EventStepBeforeHandle {
			t.Errorf("%s: %s after %d attempts, want %s after %d", path, d.Status, d.Attempts, w.status, w.attempts)
		}
		if got := string(d.AttemptLog); strings.Count(got, `"attempt"`) != len(w.codes) {
			t.Errorf("%s: attempt log %s", path, got)
		}
		for _, code := range w.codes {
			if !strings.Contains(string(d.AttemptLog), `"status_code": `+strconv.Itoa(code)) {
				t.Errorf("%s: attempt log %s lacks %d", path, d.AttemptLog, code)
			}
		}
	}
	// An attempt is counted just after it is recorded: the last one may be
	// in the table and not yet in the counts.
	counted := func() bool {
		return s.counted.count("delivered") == 2 && s.counted.count("failed") == 2 && s.counted.count("retry") == 3
	}
	deadline := time.Now().Add(5 * time.Second)
	for !counted() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !counted() {
		t.Errorf("observed: delivered %d, failed %d, retry %d; want 2, 2, 3",
			s.counted.count("delivered"), s.counted.count("failed"), s.counted.count("retry"))
	}
	if _, err := s.svc.Deliveries(ctx, store.DeliveryQuery{WebhookID: uuid.New(), Limit: 10}); !errors.Is(err, webhooks.ErrNotFound) {
		t.Errorf("deliveries of no webhook: %v", err)
	}
}

// flakyOutbox fails the first write of a step completion, as a database
// error would.
type flakyOutbox struct {
	*webhooks.Service
	failed atomic.Bool
}

func (f *flakyOutbox) InTx(ctx context.Context, tx store.Tx, evs []engine.Event) error {
	for _, ev := range evs {
		if ev.Name == "step.completed" && f.failed.CompareAndSwap(false, true) {
			return errors.New("the outbox write failed")
		}
	}
	return f.Service.InTx(ctx, tx, evs)
}

// The outbox is written in the transaction of the transition: when the
// write fails the transition is rolled back too (and retried), so a
// completion is never recorded without its delivery, nor twice.
func TestOutboxSharesTheTransaction(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	kinds, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: s.store, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, []byte(`namespace_name: shop
name: pair
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on_step: a}
`), registry.FormatYAML, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.Create(ctx, webhooks.CreateRequest{URL: "http://127.0.0.1:9/none", Events: []string{"step.completed", "task.*"}}); err != nil {
		t.Fatal(err)
	}
	outbox := &flakyOutbox{Service: s.svc}
	sink, err := events.NewSink(events.SinkConfig{Bus: s.bus, Outbox: outbox})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{Store: s.store, Templates: reg, Kinds: kinds, Events: sink, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
	})
	view, _, err := eng.CreateTask(ctx, engine.CreateTaskRequest{Namespace: "shop", Name: "pair"})
	if err != nil {
		t.Fatal(err)
	}
	id := view.Task.TaskID
	eventually(t, "the task to complete", func() bool {
		v, err := eng.GetTask(ctx, id, false)
		return err == nil && v.Task.Status == "complete"
	})
	if !outbox.failed.Load() {
		t.Fatal("the outbox write never failed")
	}
	count := func(sql string) int {
		var n int
		if err := s.pool.QueryRow(ctx, sql, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	completions := count(`SELECT count(*) FROM workflow_step_transitions WHERE task_id = $1 AND to_state = 'complete'`)
	rows := count(`SELECT count(*) FROM webhook_outbox WHERE task_id = $1 AND event_name = 'step.completed'`)
	if completions != 2 || rows != 2 {
		t.Errorf("%d completions recorded, %d step.completed outbox rows: want 2 and 2", completions, rows)
	}
	for _, name := range []string{"task.initialize_requested", "task.start_requested", "task.completed"} {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox WHERE task_id = $1 AND event_name = $2`, id, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d outbox rows of %s, want 1", n, name)
		}
	}
}
