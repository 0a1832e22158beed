package main_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/testdb"
)

// The chaos run's size. make test runs the short default; make chaos sets
// TASKER_CHAOS_TASKS=500 and TASKER_CHAOS_KILLS=20.
const (
	chaosTasksEnv = "TASKER_CHAOS_TASKS"
	chaosKillsEnv = "TASKER_CHAOS_KILLS"
	// chaosCutsEnv counts connection kills: every session taskerd has on
	// the database terminated at once (pg_terminate_backend).
	chaosCutsEnv  = "TASKER_CHAOS_CONNECTION_KILLS"
	chaosReplicas = 3
	chaosSteps    = 10
)

// chaosYAML is ten http steps (one, eight in parallel, one joining them)
// against the execution recorder. The retry budget is large: the run
// tests that lease expiry brings work back, not the budget.
const chaosYAML = `namespace_name: chaos
name: fan
version: 1.0.0
defaults: {retry_limit: 100, backoff: {base: 50ms, max: 200ms}}
step_templates:
  - {name: s00, handler: http, handler_config: {method: POST, url: "%[1]s"}}
  - {name: s01, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s02, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s03, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s04, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s05, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s06, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s07, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s08, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_step: s00}
  - {name: s09, handler: http, handler_config: {method: POST, url: "%[1]s"}, depends_on_steps: [s01, s02, s03, s04, s05, s06, s07, s08]}
`

// executions records every request a step made, by step id (the http
// kind sends the step's id as Idempotency-Key on every attempt). It lives
// in the test process, which no kill reaches.
type executions struct {
	mu    sync.Mutex
	count map[string]int
}

func (e *executions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Idempotency-Key")
	e.mu.Lock()
	e.count[id]++
	e.mu.Unlock()
	// Long enough that kills land on steps in flight.
	time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func (e *executions) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.count))
	for k, v := range e.count {
		out[k] = v
	}
	return out
}

// chaosReplica is one `taskerd serve` process, restarted after each kill.
type chaosReplica struct {
	index int
	env   []string
	mu    sync.Mutex
	cmd   *exec.Cmd
	base  string
	done  chan struct{}
	out   *syncBuffer
	gen   int
}

func (r *chaosReplica) start(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	addr := freeAddr(t)
	cmd := exec.Command(binary, "serve", "--insecure-no-auth")
	cmd.Env = append(cleanEnv(), append([]string{"TASKER_HTTP_ADDR=" + addr, "TASKER_LOG_FORMAT=text", "TASKER_LOG_LEVEL=warn",
		fmt.Sprintf("TASKER_REPLICA_ID=chaos-%d-%d", r.index, r.gen)}, r.env...)...)
	r.out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.base, r.done = cmd, "http://"+addr, done
}

// kill sends SIGKILL: no shutdown, no lease released, connections cut.
func (r *chaosReplica) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.base = ""
	r.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

func (r *chaosReplica) url() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base
}

func (r *chaosReplica) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if base := r.url(); base != "" {
			if resp, err := http.Get(base + "/tasker/health/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("replica %d not ready within %s:\n%s", r.index, within, r.out.String())
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestChaos is the chaos run: three replicas on one database run
// tasks of ten http steps while a random replica is killed with SIGKILL
// and restarted every ~2 s, and now and then every database session of
// every replica is terminated (pg_terminate_backend). Afterwards the database must show every task
// complete, no step completed twice, every step executed at least once
// and every re-execution explained by a lease expiry, only legal
// transitions, no lease left and no task stuck in_progress.
func TestChaos(t *testing.T) {
	t.Parallel()
	tasks := envInt(t, chaosTasksEnv, 50)
	kills := envInt(t, chaosKillsEnv, 2)
	cuts := envInt(t, chaosCutsEnv, 1)
	dsn := testdb.New(t)

	rec := &executions{count: map[string]int{}}
	recorder := httptest.NewServer(rec)
	t.Cleanup(recorder.Close)

	replicas := make([]*chaosReplica, chaosReplicas)
	for i := range replicas {
		replicas[i] = &chaosReplica{index: i, env: []string{
			"TASKER_DATABASE_URL=" + dsn,
			// Short leases so a dead replica's steps come back quickly;
			// few steps at once so the run lasts long enough to be hit.
			"TASKER_LEASE_DURATION=2s", "TASKER_POLL_INTERVAL=500ms", "TASKER_MAX_CONCURRENT_STEPS=8",
			"TASKER_DB_MAX_CONNS=10", "TASKER_SHUTDOWN_TIMEOUT=5s",
		}}
		replicas[i].start(t)
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			r.kill()
			if t.Failed() {
				t.Logf("replica %d (last run) output:\n%s", r.index, r.out.String())
			}
		}
	})
	for _, r := range replicas {
		r.waitReady(t, time.Minute)
	}

	// send posts to a live replica, trying the others while one is down.
	var unavailable atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(path, contentType, body string) (int, []byte) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for i := rand.IntN(chaosReplicas); time.Now().Before(deadline); i++ {
			base := replicas[i%chaosReplicas].url()
			if base == "" {
				continue
			}
			req, _ := http.NewRequest("POST", base+"/tasker"+path, strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			resp, err := client.Do(req)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue // killed under us: the idempotency key makes the retry safe
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(raw), "urn:taskerd:problem:unavailable") {
				// Its connection was terminated under it: the documented
				// answer, which a client retries (the key makes it safe).
				unavailable.Add(1)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if resp.StatusCode >= 500 {
				t.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
			}
			return resp.StatusCode, raw
		}
		t.Fatalf("POST %s: no replica answered within a minute", path)
		return 0, nil
	}
	if code, body := send("/templates", "application/yaml", fmt.Sprintf(chaosYAML, recorder.URL+"/exec")); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}

	start := time.Now()
	// Tasks are submitted while replicas die: a create whose answer was
	// lost is sent again with the same idempotency key.
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for i := range tasks {
			body := fmt.Sprintf(`{"namespace":"chaos","name":"fan","idempotency_key":"chaos-%d","context":{"n":%d}}`, i, i)
			if code, raw := send("/tasks", "application/json", body); code != 201 && code != 200 {
				t.Errorf("create task %d: %d %s", i, code, raw)
				return
			}
		}
	}()

	conn, err := pgx.Connect(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	unfinished := func() int {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM tasks WHERE status <> 'complete'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	killed, cut, terminated := 0, 0, 0
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	drainDeadline := time.Now().Add(time.Duration(tasks)*200*time.Millisecond + 3*time.Minute)
	for {
		<-tick.C
		select {
		case <-submitted:
			// Drained, and every fault was dealt: a short run whose
			// tasks finish first still takes all its faults.
			if killed >= kills && cut >= cuts && unfinished() == 0 {
				goto drained
			}
		default:
		}
		if time.Now().After(drainDeadline) {
			t.Fatalf("%d tasks unfinished after %s", unfinished(), time.Since(start).Round(time.Second))
		}
		switch {
		case killed < kills && (cut >= cuts || killed%4 != 1):
			r := replicas[rand.IntN(chaosReplicas)]
			r.kill()
			killed++
			r.start(t)
		case cut < cuts:
			// Every replica loses every connection mid-transaction.
			var n int
			if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			cut++
			terminated += n
		}
	}
drained:
	drain := time.Since(start)
	if t.Failed() {
		return
	}
	// Let the other replicas' in-flight requests (none should remain)
	// reach the recorder before it is read.
	time.Sleep(200 * time.Millisecond)
	f := checkChaosRun(t, conn, rec.snapshot(), tasks)
	f.kills, f.drain = killed, drain
	summary := fmt.Sprintf("chaos: %d tasks, %d steps, %d replicas, %d kills, %d connection kills (%d sessions), %d executions, %d re-executions "+
		"(%d lease expiries recorded), %d creates answered 503 and retried, %d double completions, %d lost, %d stuck, %d illegal transitions, %d leases left, drained in %s",
		f.tasks, f.steps, chaosReplicas, f.kills, cut, terminated, f.executions, f.reexecutions, f.leaseExpiries, unavailable.Load(), f.doubleCompleted, f.lost,
		f.stuck, f.illegal, f.leasesLeft, f.drain.Round(time.Millisecond))
	t.Log(summary)
	fmt.Println(summary) // make chaos prints it whatever -v says
}

// chaosFigures are what the run shows.
type chaosFigures struct {
	tasks, steps, kills, executions, reexecutions, leaseExpiries int
	doubleCompleted, lost, stuck, illegal, leasesLeft            int
	drain                                                        time.Duration
}

// checkChaosRun checks the database after the run, in SQL, against the
// executions the recorder saw.
func checkChaosRun(t *testing.T, conn *pgx.Conn, executed map[string]int, tasks int) chaosFigures {
	t.Helper()
	ctx := context.Background()
	var f chaosFigures
	one := func(dst *int, sql string) {
		t.Helper()
		if err := conn.QueryRow(ctx, sql).Scan(dst); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	one(&f.tasks, `SELECT count(*) FROM tasks`)
	one(&f.steps, `SELECT count(*) FROM workflow_steps`)
	var incomplete, incompleteSteps int
	one(&incomplete, `SELECT count(*) FROM tasks WHERE status <> 'complete' OR unfinished_steps <> 0 OR failed_steps <> 0`)
	one(&incompleteSteps, `SELECT count(*) FROM workflow_steps WHERE status <> 'complete'`)
	if f.tasks != tasks || f.steps != tasks*chaosSteps || incomplete != 0 || incompleteSteps != 0 {
		t.Errorf("%d tasks (want %d), %d steps (want %d), %d tasks and %d steps not complete",
			f.tasks, tasks, f.steps, tasks*chaosSteps, incomplete, incompleteSteps)
	}
	// Exactly-once state transitions: one → complete per step.
	one(&f.doubleCompleted, `SELECT count(*) FROM (SELECT workflow_step_id FROM workflow_step_transitions
		WHERE to_state = 'complete' GROUP BY 1 HAVING count(*) > 1) d`)
	var taskDoubles int
	one(&taskDoubles, `SELECT count(*) FROM (SELECT task_id FROM task_transitions
		WHERE to_state = 'complete' GROUP BY 1 HAVING count(*) > 1) d`)
	if f.doubleCompleted != 0 || taskDoubles != 0 {
		t.Errorf("%d steps and %d tasks completed more than once", f.doubleCompleted, taskDoubles)
	}
	// Every transition legal (the CHECK constraints say so when written;
	// this says it of what is there), and each step's and task's history a
	// chain that ends in its state.
	one(&f.illegal, `SELECT
		(SELECT count(*) FROM workflow_step_transitions WHERE NOT step_transition_is_legal(from_state, to_state)) +
		(SELECT count(*) FROM task_transitions WHERE NOT task_transition_is_legal(from_state, to_state)) +
		(SELECT count(*) FROM (SELECT from_state, lag(to_state) OVER (PARTITION BY workflow_step_id ORDER BY workflow_step_transition_id) AS prev
		                       FROM workflow_step_transitions) c WHERE from_state IS DISTINCT FROM prev) +
		(SELECT count(*) FROM (SELECT from_state, lag(to_state) OVER (PARTITION BY task_id ORDER BY task_transition_id) AS prev
		                       FROM task_transitions) c WHERE from_state IS DISTINCT FROM prev) +
		(SELECT count(*) FROM workflow_steps w WHERE w.status IS DISTINCT FROM (SELECT to_state FROM workflow_step_transitions x
		  WHERE x.workflow_step_id = w.workflow_step_id ORDER BY workflow_step_transition_id DESC LIMIT 1)) +
		(SELECT count(*) FROM tasks k WHERE k.status IS DISTINCT FROM (SELECT to_state FROM task_transitions x
		  WHERE x.task_id = k.task_id ORDER BY task_transition_id DESC LIMIT 1))`)
	if f.illegal != 0 {
		t.Errorf("%d illegal or broken transitions", f.illegal)
	}
	one(&f.leasesLeft, `SELECT count(*) FROM workflow_steps WHERE lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL`)
	if f.leasesLeft != 0 {
		t.Errorf("%d leases left behind", f.leasesLeft)
	}
	one(&f.stuck, `SELECT count(*) FROM tasks k WHERE k.status = 'in_progress' AND NOT EXISTS (
		SELECT 1 FROM workflow_steps w WHERE w.task_id = k.task_id AND w.status NOT IN ('complete', 'resolved_manually', 'cancelled', 'error'))`)
	if f.stuck != 0 {
		t.Errorf("%d tasks in_progress with every step finished", f.stuck)
	}

	// At-least-once execution, and a lease expiry behind each repeat.
	rows, err := conn.Query(ctx, `SELECT w.workflow_step_id::text,
		(SELECT count(*) FROM workflow_step_transitions x WHERE x.workflow_step_id = w.workflow_step_id
		   AND x.from_state = 'in_progress' AND x.metadata->>'reason' = 'lease_expired'),
		(SELECT count(*) FROM workflow_step_transitions x WHERE x.workflow_step_id = w.workflow_step_id
		   AND x.from_state = 'in_progress' AND x.to_state = 'pending')
		FROM workflow_steps w`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var unexplained []string
	for rows.Next() {
		var id string
		var expiries, requeues int
		if err := rows.Scan(&id, &expiries, &requeues); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
		n := executed[id]
		f.executions += n
		f.leaseExpiries += expiries
		if n == 0 {
			f.lost++
			continue
		}
		f.reexecutions += n - 1
		if n-1 > expiries {
			unexplained = append(unexplained, fmt.Sprintf("%s: %d executions, %d lease expiries, %d requeues", id, n, expiries, requeues))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if f.lost != 0 {
		t.Errorf("%d steps never executed", f.lost)
	}
	for id := range executed {
		if !seen[id] {
			t.Errorf("the recorder saw step %q, which the database does not have", id)
		}
	}
	if len(unexplained) > 0 {
		t.Errorf("%d steps ran again without a lease expiry to explain it:\n%s", len(unexplained), strings.Join(unexplained, "\n"))
	}
	return f
}
