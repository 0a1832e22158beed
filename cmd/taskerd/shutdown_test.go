package main_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/testdb"
)

// shutdownYAML is chaosYAML with a slow last step: it outlasts the
// shutdown timeout, so a SIGTERM finds steps that cannot finish in time
// and must be handed back.
const shutdownYAML = `namespace_name: shutdown
name: fan
version: 1.0.0
defaults: {retry_limit: 100, backoff: {base: 50ms, max: 200ms}}
step_templates:
  - {name: s00, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}}
  - {name: s01, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s02, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s03, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s04, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s05, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s06, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s07, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s08, handler: http, handler_config: {method: POST, url: "%[1]s/exec"}, depends_on_step: s00}
  - {name: s09, handler: http, handler_config: {method: POST, url: "%[1]s/slow"}, depends_on_steps: [s01, s02, s03, s04, s05, s06, s07, s08]}
`

// sent is one request of the load and what it got.
type sent struct {
	key    string // the create's idempotency key; "" for a list
	before bool   // sent before SIGTERM
	answer answer
}

// TestShutdownUnderLoad sends SIGTERM to a `taskerd serve` while clients
// create and list tasks and its engine runs steps, some of which cannot
// finish within the shutdown timeout. No accepted request may be lost
// (every create answered 2xx is in the database, whole), every other
// answer must be a clean refusal (503, or the connection refused once the
// listener is closed), and no claimed step may be left to its lease: once
// the replica has exited, no step is in progress, and a second replica
// then completes every task with no step completed twice.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	rec := &executions{count: map[string]int{}}
	mux := http.NewServeMux()
	mux.Handle("/exec", rec)
	var slowStarted atomic.Int64
	var slow atomic.Bool // only while the first replica runs
	slow.Store(true)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		slowStarted.Add(1)
		if slow.Load() {
			select { // until the replica gives up on it
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		rec.ServeHTTP(w, r)
	})
	recorder := httptest.NewServer(mux)
	t.Cleanup(recorder.Close)

	env := []string{"TASKER_DATABASE_URL=" + dsn,
		// A lease far longer than the test waits: a step left leased by
		// the stopped replica would stay stuck and fail the test.
		"TASKER_LEASE_DURATION=5m", "TASKER_POLL_INTERVAL=500ms", "TASKER_MAX_CONCURRENT_STEPS=16",
		"TASKER_SHUTDOWN_TIMEOUT=2s"}
	first := &chaosReplica{index: 0, env: env}
	first.start(t)
	t.Cleanup(func() {
		first.kill()
		if t.Failed() {
			t.Logf("first replica output:\n%s", first.out.String())
		}
	})
	first.waitReady(t, time.Minute)
	base := first.url()
	client := &http.Client{Timeout: 30 * time.Second}
	if a := call(client, http.MethodPost, base+"/tasker/templates", "application/yaml", fmt.Sprintf(shutdownYAML, recorder.URL)); a.code != 201 {
		t.Fatalf("register: %s", a)
	}

	// Eight clients, each a create then a list, 25 ms apart, until the
	// replica refuses them.
	var (
		mu       sync.Mutex
		results  []sent
		signaled bool
	)
	var wg sync.WaitGroup
	giveUp := time.Now().Add(2 * time.Minute)
	for c := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(giveUp); i++ {
				key := fmt.Sprintf("sd-%d-%d", c, i)
				for _, req := range []struct{ key, method, path, body string }{
					{key, http.MethodPost, "/tasker/tasks", fmt.Sprintf(`{"namespace":"shutdown","name":"fan","idempotency_key":%q}`, key)},
					{"", http.MethodGet, "/tasker/tasks?limit=10", ""},
				} {
					mu.Lock()
					before := !signaled
					mu.Unlock()
					a := call(client, req.method, base+req.path, "application/json", req.body)
					mu.Lock()
					results = append(results, sent{key: req.key, before: before, answer: a})
					mu.Unlock()
					if errors.Is(a.err, syscall.ECONNREFUSED) {
						return // the listener is closed: the replica is going
					}
					time.Sleep(25 * time.Millisecond)
				}
			}
		})
	}

	// SIGTERM once slow steps are running.
	deadline := time.Now().Add(time.Minute)
	for slowStarted.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no slow step started within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	signaled = true
	mu.Unlock()
	signaledAt := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.done:
	case <-time.After(time.Minute):
		t.Fatal("the replica did not exit within a minute of SIGTERM")
	}
	exitedIn := time.Since(signaledAt)
	if code := first.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: %d, want 0", code)
	}
	wg.Wait()

	conn, err := pgx.Connect(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	one := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
		return n
	}

	// What the clients got.
	var accepted, acceptedCreates, answeredAfter int
	var refused, cut []string // creates' keys
	refusals := 0
	for _, s := range results {
		a := s.answer
		switch {
		case a.err == nil && a.code >= 200 && a.code < 300:
			accepted++
			if !s.before {
				answeredAfter++
			}
			if s.key == "" {
				continue
			}
			acceptedCreates++
			if one(`SELECT count(*) FROM tasks WHERE idempotency_key = $1`, s.key) != 1 {
				t.Errorf("create %s was answered %d but is not in the database", s.key, a.code)
			}
		case errors.Is(a.err, syscall.ECONNREFUSED), a.unavailable():
			refusals++
			if s.key != "" {
				refused = append(refused, s.key)
			}
		case a.err != nil:
			// Cut mid-request: allowed only if the work is whole or absent,
			// which the checks below and the retry on the next replica show.
			t.Logf("request cut: %s", a)
			if s.key != "" {
				cut = append(cut, s.key)
			}
		default:
			t.Errorf("%s: %s, want 2xx or a clean refusal", s.key, a)
		}
	}
	// A clean refusal did nothing.
	for _, key := range refused {
		if one(`SELECT count(*) FROM tasks WHERE idempotency_key = $1`, key) != 0 {
			t.Errorf("create %s was refused but its task exists", key)
		}
	}
	if acceptedCreates == 0 || refusals == 0 {
		t.Fatalf("%d creates accepted, %d requests refused: the load did not straddle the shutdown", acceptedCreates, refusals)
	}
	// No create half-done: every task has all its steps.
	if n := one(`SELECT count(*) FROM tasks k WHERE (SELECT count(*) FROM workflow_steps w WHERE w.task_id = k.task_id) <> 10`); n != 0 {
		t.Errorf("%d tasks without their ten steps", n)
	}
	// No claimed step lost: nothing is left in progress or leased.
	if n := one(`SELECT count(*) FROM workflow_steps WHERE status = 'in_progress' OR lease_owner IS NOT NULL`); n != 0 {
		t.Errorf("%d steps left in progress or leased by the stopped replica", n)
	}
	// The slow steps still running at the deadline were handed back, the
	// attempt given back too: stopping is not the step's failure.
	released := one(`SELECT count(*) FROM workflow_step_transitions WHERE metadata->>'reason' = 'released'`)
	if released == 0 {
		t.Error("no step was handed back, though slow steps outlasted the shutdown timeout")
	}
	if n := one(`SELECT count(*) FROM workflow_step_transitions WHERE to_state = 'error'`); n != 0 {
		t.Errorf("%d attempts recorded as failed; the steps the shutdown stopped should be released", n)
	}

	// A second replica takes over: the refused creates are sent again with
	// their keys, and every task completes.
	slow.Store(false)
	second := &chaosReplica{index: 1, env: env}
	second.start(t)
	t.Cleanup(func() {
		second.kill()
		if t.Failed() {
			t.Logf("second replica output:\n%s", second.out.String())
		}
	})
	second.waitReady(t, time.Minute)
	for _, key := range append(refused, cut...) {
		a := call(client, http.MethodPost, second.url()+"/tasker/tasks", "application/json",
			fmt.Sprintf(`{"namespace":"shutdown","name":"fan","idempotency_key":%q}`, key))
		if a.code != 200 && a.code != 201 {
			t.Errorf("create %s sent again: %s", key, a)
		}
	}
	tasks := one(`SELECT count(*) FROM tasks`)
	deadline = time.Now().Add(time.Minute)
	for one(`SELECT count(*) FROM tasks WHERE status <> 'complete'`) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks unfinished a minute after the second replica started",
				one(`SELECT count(*) FROM tasks WHERE status <> 'complete'`), tasks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := one(`SELECT count(*) FROM (SELECT workflow_step_id FROM workflow_step_transitions
		WHERE to_state = 'complete' GROUP BY 1 HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d steps completed more than once", n)
	}
	if n := one(`SELECT count(*) FROM workflow_steps WHERE status <> 'complete' OR lease_owner IS NOT NULL`); n != 0 {
		t.Errorf("%d steps not complete or still leased", n)
	}
	if n := one(`SELECT count(*) FROM workflow_step_transitions WHERE NOT step_transition_is_legal(from_state, to_state)`); n != 0 {
		t.Errorf("%d illegal step transitions", n)
	}
	if want := acceptedCreates + len(refused) + len(cut); tasks != want {
		t.Errorf("%d tasks, want the %d accepted creates and the %d sent again", tasks, acceptedCreates, len(refused)+len(cut))
	}
	t.Logf("shutdown under load: %d requests, exited %s after SIGTERM; %d answered 2xx (%d of them sent after the signal), %d refused cleanly, %d cut; "+
		"%d steps handed back; %d tasks, all completed by the next replica",
		len(results), exitedIn.Round(time.Millisecond), accepted, answeredAfter, refusals, len(cut), released, tasks)
}
