package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/testserver"
	"github.com/taskerd/taskerd/pkg/client"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const shipYAML = `namespace_name: shop
name: ship
version: 1.0.0
step_templates:
  - {name: ship, handler: "remote:shipping", default_retry_limit: 2, backoff: {base: 50ms}}
  - {name: done, handler: noop, depends_on_step: ship}
`

// env is a replica with the ship template, and a client for it.
type env struct {
	t      *testing.T
	base   string
	client *client.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	r := testserver.Start(t, nil, nil)
	c, err := client.New(client.Config{BaseURL: r.URL})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, base: r.URL + "/tasker", client: c}
	e.post("/templates", "application/yaml", shipYAML)
	return e
}

func (e *env) post(path, contentType, body string) map[string]any {
	e.t.Helper()
	resp, err := http.Post(e.base+path, contentType, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode >= 300 {
		e.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return out
}

func (e *env) create(ctx string) string {
	e.t.Helper()
	return e.post("/tasks", "application/json", `{"namespace": "shop", "name": "ship", "context": `+ctx+`}`)["task_id"].(string)
}

func (e *env) task(id string) map[string]any {
	e.t.Helper()
	resp, err := http.Get(e.base + "/tasks/" + id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func (e *env) wait(id, status string, within time.Duration) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		t := e.task(id)
		if t["status"] == status {
			return t
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s is %v, want %s", id, t["status"], status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func step(task map[string]any, name string) map[string]any {
	for _, s := range task["workflow_steps"].([]any) {
		if s := s.(map[string]any); s["name"] == name {
			return s
		}
	}
	return nil
}

func (e *env) worker(cfg client.WorkerConfig) *client.Worker {
	e.t.Helper()
	w, err := client.NewWorker(e.client, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w
}

// A worker runs many steps at once, up to its concurrency, and the server
// lists it while it holds them.
func TestWorkerRunsStepsConcurrently(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var running, peak atomic.Int64
	release := make(chan struct{})
	e.worker(client.WorkerConfig{ID: "shipper", Concurrency: 3, Wait: 2 * time.Second, Handlers: map[string]client.HandlerFunc{
		"remote:shipping": func(ctx context.Context, s *client.Step) (any, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-release
			var c struct{ Order int }
			if err := json.Unmarshal(s.Context, &c); err != nil {
				return nil, client.Permanent(err)
			}
			return map[string]any{"tracking": fmt.Sprintf("T-%d", c.Order), "attempt": s.Attempt}, nil
		},
	}})
	var ids []string
	for i := range 6 {
		ids = append(ids, e.create(fmt.Sprintf(`{"order": %d}`, i)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	workers, err := e.client.Workers(context.Background())
	if err != nil || len(workers) != 1 || workers[0].WorkerID != "shipper" || len(workers[0].InFlight) != 3 {
		t.Errorf("workers while busy: %+v %v", workers, err)
	}
	close(release)
	for i, id := range ids {
		task := e.wait(id, "complete", 15*time.Second)
		if got := fmt.Sprint(step(task, "ship")["results"]); got != fmt.Sprintf("map[attempt:1 tracking:T-%d]", i) {
			t.Errorf("task %d results %s", i, got)
		}
	}
	if peak.Load() != 3 {
		t.Errorf("peak concurrency %d, want 3", peak.Load())
	}
}

// Heartbeats keep a step that outlives its lease.
func TestWorkerHeartbeatsKeepLongSteps(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.worker(client.WorkerConfig{Lease: time.Second, Wait: 2 * time.Second, Handlers: map[string]client.HandlerFunc{
		"remote:shipping": func(ctx context.Context, s *client.Step) (any, error) {
			select {
			case <-time.After(2500 * time.Millisecond):
				return "shipped", nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		},
	}})
	id := e.create(`{}`)
	task := e.wait(id, "complete", 15*time.Second)
	if s := step(task, "ship"); s["attempts"] != float64(1) || s["results"] != "shipped" {
		t.Errorf("step %v", s)
	}
}

// A cancelled task ends the handler's context; the worker reports nothing.
func TestWorkerAbandonsCancelledStep(t *testing.T) {
	t.Parallel()
	e := setup(t)
	started := make(chan string, 1)
	ended := make(chan error, 1)
	e.worker(client.WorkerConfig{Lease: 1500 * time.Millisecond, Wait: 2 * time.Second, Handlers: map[string]client.HandlerFunc{
		"remote:shipping": func(ctx context.Context, s *client.Step) (any, error) {
			started <- s.TaskID
			<-ctx.Done()
			ended <- context.Cause(ctx)
			return "too late", nil
		},
	}})
	id := e.create(`{}`)
	<-started
	req, _ := http.NewRequest("DELETE", e.base+"/tasks/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("cancel: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case cause := <-ended:
		if !errors.Is(cause, client.ErrCancelled) {
			t.Errorf("handler context ended by %v, want ErrCancelled", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler was not told of the cancellation")
	}
	if s := step(e.task(id), "ship"); s["status"] != "cancelled" || s["results"] != nil {
		t.Errorf("step %v", s)
	}
}

// Stop lets running handlers finish; past its deadline it cancels them and
// their steps are reported failed (retryable), so they run again at once.
// Handler errors map to failures: Permanent fails the step for good.
func TestWorkerStopAndErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var mu sync.Mutex
	mode := "finish"
	started := make(chan struct{}, 4)
	handler := func(ctx context.Context, s *client.Step) (any, error) {
		started <- struct{}{}
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "finish":
			time.Sleep(300 * time.Millisecond)
			return "finished", nil
		case "hang":
			<-ctx.Done()
			return nil, context.Cause(ctx)
		default:
			return nil, client.Permanent(errors.New("address does not exist"))
		}
	}
	w, err := client.NewWorker(e.client, client.WorkerConfig{Wait: time.Second, Handlers: map[string]client.HandlerFunc{"remote:shipping": handler}})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Start(context.Background()))
	id := e.create(`{}`)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	must(w.Stop(ctx))
	cancel()
	if s := step(e.task(id), "ship"); s["status"] != "complete" || s["results"] != "finished" {
		t.Errorf("a graceful stop should let the step finish: %v", s)
	}

	mu.Lock()
	mode = "hang"
	mu.Unlock()
	w2, err := client.NewWorker(e.client, client.WorkerConfig{Wait: time.Second, Handlers: map[string]client.HandlerFunc{"remote:shipping": handler}})
	if err != nil {
		t.Fatal(err)
	}
	must(w2.Start(context.Background()))
	id2 := e.create(`{}`)
	<-started
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	must(w2.Stop(ctx))
	cancel()
	s := step(e.task(id2), "ship")
	if s["status"] != "pending" || !strings.Contains(fmt.Sprint(s["last_error"]), "the worker stopped") {
		t.Errorf("a stop past its deadline should hand the step back: %v", s)
	}

	mu.Lock()
	mode = "permanent"
	mu.Unlock()
	e.worker(client.WorkerConfig{Wait: time.Second, Handlers: map[string]client.HandlerFunc{"remote:shipping": handler}})
	e.wait(id2, "error", 10*time.Second)
	if s := step(e.task(id2), "ship"); s["attempts"] != float64(2) || !strings.Contains(fmt.Sprint(s["last_error"]), "address does not exist") {
		t.Errorf("permanent failure: %v", s)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	if _, err := client.New(client.Config{BaseURL: "localhost:8080"}); err == nil {
		t.Error("a URL without scheme is refused")
	}
	e := setup(t)
	ctx := context.Background()
	_, err := e.client.Heartbeat(ctx, "0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b", 1, 0)
	if !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrStale) {
		t.Errorf("unknown step: %v", err)
	}
	_, err = e.client.Claim(ctx, client.ClaimRequest{WorkerID: "w", Handlers: []string{"shipping"}})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 422 || !strings.Contains(err.Error(), "/handlers/0") {
		t.Errorf("invalid claim: %v", err)
	}
	e.create(`{}`)
	steps, err := e.client.Claim(ctx, client.ClaimRequest{WorkerID: "w", Handlers: []string{"remote:shipping"}, Wait: 5 * time.Second})
	if err != nil || len(steps) != 1 {
		t.Fatalf("claim: %v %v", steps, err)
	}
	if _, err := e.client.Complete(ctx, steps[0].StepID, steps[0].Attempt+1, "x"); !errors.Is(err, client.ErrStale) || errors.Is(err, client.ErrCancelled) {
		t.Errorf("stale completion: %v", err)
	}
	out, err := e.client.Fail(ctx, steps[0].StepID, steps[0].Attempt, client.Failure{Message: "busy", RetryAfter: time.Minute})
	if err != nil || out.Status != "pending" || out.RetryAt == nil || time.Until(*out.RetryAt) < 30*time.Second {
		t.Errorf("fail with retry after: %+v %v", out, err)
	}
}
