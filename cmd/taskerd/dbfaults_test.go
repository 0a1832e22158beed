package main_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDatabaseFaults runs tasks on two `taskerd serve` replicas while their
// database goes away under them, twice: first every session of theirs is
// terminated (pg_terminate_backend), then PostgreSQL itself is stopped
// (fast shutdown, what `pg_ctl restart -m fast` does first) and started
// again on the same port. The cluster is the test's own.
//
// Throughout, every API answer must be a success or the documented 503
// problem with Retry-After — never a 500, a reset or a hang. While the
// database is down, readiness must say so (503, the database check failed)
// and the API must refuse at once; once it is back, readiness must return
// to 200 without a restart of the replicas, and the run must end with
// every task complete, no step completed twice and every re-execution
// explained by a lease expiry (the chaos test's checks).
func TestDatabaseFaults(t *testing.T) {
	t.Parallel()
	const tasks, replicaCount = 40, 2
	cluster, dsn := faultCluster(t)

	rec := &executions{count: map[string]int{}}
	recorder := httptest.NewServer(rec)
	t.Cleanup(recorder.Close)
	replicas := make([]*chaosReplica, replicaCount)
	for i := range replicas {
		replicas[i] = &chaosReplica{index: i, env: []string{
			"TASKER_DATABASE_URL=" + dsn,
			"TASKER_LEASE_DURATION=3s", "TASKER_POLL_INTERVAL=500ms", "TASKER_MAX_CONCURRENT_STEPS=8",
			"TASKER_DB_MAX_CONNS=10", "TASKER_SHUTDOWN_TIMEOUT=5s", "TASKER_READY_TIMEOUT=2s", "TASKER_STATUS_CACHE=0s",
		}}
		replicas[i].start(t)
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			r.kill()
			if t.Failed() {
				t.Logf("replica %d output:\n%s", r.index, r.out.String())
			}
		}
	})
	for _, r := range replicas {
		r.waitReady(t, time.Minute)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	base := func(i int) string { return replicas[i%replicaCount].url() }
	if a := call(client, http.MethodPost, base(0)+"/tasker/templates", "application/yaml", fmt.Sprintf(chaosYAML, recorder.URL+"/exec")); a.code != 201 {
		t.Fatalf("register: %s", a)
	}

	// The prober asks every replica for a page of tasks and for readiness
	// every 50 ms, from start to end, and keeps whatever is not allowed.
	var (
		probeMu      sync.Mutex
		bad          []string
		api503       int
		maxDownTook  time.Duration
		probing      = make(chan struct{})
		proberDone   = make(chan struct{})
		databaseDown atomic.Bool
	)
	go func() {
		defer close(proberDone)
		for {
			select {
			case <-probing:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for i := range replicaCount {
				a := call(client, http.MethodGet, base(i)+"/tasker/tasks?limit=1", "", "")
				code, _, err := readiness(client, base(i))
				probeMu.Lock()
				switch {
				case a.err == nil && a.code == 200:
				case a.unavailable():
					api503++
					if databaseDown.Load() {
						maxDownTook = max(maxDownTook, a.took)
					}
				default:
					bad = append(bad, fmt.Sprintf("replica %d GET /tasks: %s", i, a))
				}
				if err != nil || code != 200 && code != 503 {
					bad = append(bad, fmt.Sprintf("replica %d readiness: %d %v", i, code, err))
				}
				probeMu.Unlock()
			}
		}
	}()

	// Tasks are submitted at 10/s across the faults; a create answered 503
	// (or cut) is sent again with the same idempotency key.
	var refused atomic.Int64
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for i := range tasks {
			body := fmt.Sprintf(`{"namespace":"chaos","name":"fan","idempotency_key":"faults-%d","context":{"n":%d}}`, i, i)
			deadline := time.Now().Add(2 * time.Minute)
			for n := 0; ; n++ {
				a := call(client, http.MethodPost, base(i+n)+"/tasker/tasks", "application/json", body)
				if a.err == nil && (a.code == 201 || a.code == 200) {
					break
				}
				if !a.unavailable() && a.err == nil || time.Now().After(deadline) {
					t.Errorf("create task %d: %s", i, a)
					return
				}
				refused.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitExecutions := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for total(rec.snapshot()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d step executions after a minute", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// 1. Every session of every replica is cut mid-work.
	waitExecutions(20)
	admin, err := pgx.Connect(context.Background(), cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var cut int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = 'taskerd' AND pid <> pg_backend_pid()`).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	admin.Close(context.Background())
	if cut == 0 {
		t.Fatal("no session of taskerd's to terminate")
	}
	for i := range replicaCount {
		waitReadiness(t, client, base(i), 200, 30*time.Second)
		if a := call(client, http.MethodGet, base(i)+"/tasker/tasks?limit=1", "", ""); a.code != 200 {
			t.Fatalf("replica %d after the connection kill: %s", i, a)
		}
	}
	waitExecutions(total(rec.snapshot()) + 20) // work goes on

	// 2. PostgreSQL stops (fast shutdown) while steps run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := cluster.Port()
	databaseDown.Store(true)
	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for i := range replicaCount {
		waitReadiness(t, client, base(i), 503, 30*time.Second)
		if _, failed, _ := readiness(client, base(i)); !slices.Contains(failed, "database") {
			t.Errorf("replica %d: failed checks %v, want the database's", i, failed)
		}
		if a := call(client, http.MethodGet, base(i)+"/tasker/health/live", "", ""); a.code != 200 {
			t.Errorf("replica %d liveness with the database down: %s", i, a)
		}
		for _, req := range [][3]string{
			{http.MethodGet, "/tasker/tasks?limit=5", ""},
			{http.MethodPost, "/tasker/tasks", `{"namespace":"chaos","name":"fan","idempotency_key":"while-down"}`},
			{http.MethodGet, "/tasker/health/status", ""},
		} {
			a := call(client, req[0], base(i)+req[1], "application/json", req[2])
			if !a.unavailable() {
				t.Errorf("replica %d %s %s with the database down: %s, want 503 unavailable with Retry-After", i, req[0], req[1], a)
			}
			probeMu.Lock()
			maxDownTook = max(maxDownTook, a.took)
			probeMu.Unlock()
		}
	}
	if err := cluster.Start(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Since(stopped)
	databaseDown.Store(false)
	if cluster.Port() != port {
		t.Fatalf("the cluster came back on port %d, not %d", cluster.Port(), port)
	}
	var backToReady time.Duration
	for i := range replicaCount {
		backToReady = max(backToReady, waitReadiness(t, client, base(i), 200, time.Minute))
	}

	// 3. The run drains; the database says nothing was lost or doubled.
	<-submitted
	conn, err := pgx.Connect(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM tasks WHERE status <> 'complete'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks unfinished two minutes after the database came back", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(probing)
	<-proberDone
	time.Sleep(200 * time.Millisecond) // as in TestChaos: late recorder requests land first
	f := checkChaosRun(t, conn, rec.snapshot(), tasks)
	probeMu.Lock()
	defer probeMu.Unlock()
	for _, b := range bad {
		t.Error(b)
	}
	t.Logf("database faults: %d tasks, %d steps, %d sessions terminated, database down %s, replicas ready %s after it was back; "+
		"%d API answers 503 (slowest while down %s), %d creates refused and retried, %d executions, %d re-executions (%d lease expiries), %d double completions",
		f.tasks, f.steps, cut, down.Round(time.Millisecond), backToReady.Round(time.Millisecond),
		api503, maxDownTook.Round(time.Millisecond), refused.Load(), f.executions, f.reexecutions, f.leaseExpiries, f.doubleCompleted)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
