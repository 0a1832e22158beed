package workers

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// storeSteps claims and finishes through the store alone (no events).
type storeSteps struct{ st *store.Store }

func (s storeSteps) ClaimRemote(ctx context.Context, p store.ClaimParams) ([]store.ClaimedStep, error) {
	return s.st.ClaimSteps(ctx, p)
}

func (s storeSteps) DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step) {
	return ctx, step
}

func (s storeSteps) FinishRemote(ctx context.Context, p store.FinishParams, _ map[uuid.UUID][]handler.CustomEvent) (*store.FinishResult, error) {
	return s.st.FinishSteps(ctx, p)
}

type noTemplates struct{}

func (noTemplates) Resolve(context.Context, string, string, string) (*registry.Registered, error) {
	return nil, registry.ErrNotFound
}
func (noTemplates) ByID(context.Context, int64) (*registry.Registered, error) {
	return nil, registry.ErrNotFound
}

var _ engine.Templates = noTemplates{}

// Many long-polling workers cost the database a query per wake-up of the
// replica, not one per worker: twenty waiters, woken twice by
// notifications, make a handful of checks.
func TestWaitingCostsNothingPerWorker(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(store.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	notes, err := notifier.New(notifier.Config{DatabaseURL: dsn, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, Steps: storeSteps{st}, Templates: noTemplates{}, Notifier: notes, PollInterval: time.Minute, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := notes.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = svc.Stop(stop)
		_ = notes.Stop(stop)
	})
	<-notes.Ready()

	const waiters = 20
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			steps, err := svc.Claim(ctx, ClaimRequest{WorkerID: "w" + string(rune('a'+i)), Handlers: []string{"remote:idle"}, Wait: 2 * time.Second})
			if err != nil || len(steps) != 0 {
				t.Errorf("claim: %v %v", steps, err)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		svc.hub.mu.Lock()
		n := len(svc.hub.waiters)
		svc.hub.mu.Unlock()
		if n == waiters || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 2 {
		if err := st.Notify(ctx, "tasker_steps", ""); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	// A check or two when the queue was first waited on (waiters arriving
	// during the first check ask again), one or two for the notifications
	// (close ones fold into one): never one per waiter.
	if n := svc.hub.checks.Load(); n < 2 || n > 5 {
		t.Errorf("%d checks for %d waiters woken twice; want a few, not one per waiter", n, waiters)
	}
}
