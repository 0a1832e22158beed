package bench

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/server"
)

//go:embed sql/hot_updates.sql
var hotUpdatesSQL string

//go:embed sql/timeline.sql
var timelineSQL string

//go:embed sql/step_span.sql
var stepSpanSQL string

//go:embed sql/ready_to_start.sql
var readyToStartSQL string

//go:embed sql/task_durations.sql
var taskDurationsSQL string

//go:embed sql/unfinished_tasks.sql
var unfinishedTasksSQL string

//go:embed sql/task_duration.sql
var taskDurationSQL string

type tmplStep struct {
	Name    string   `json:"name"`
	Handler string   `json:"handler"`
	Deps    []string `json:"depends_on_steps,omitempty"`
}

// register registers a template of noop steps on srv.
func register(ctx context.Context, srv *server.Server, name string, steps []tmplStep) error {
	doc, _ := json.Marshal(map[string]any{"namespace_name": "bench", "name": name, "version": "1.0.0", "step_templates": steps})
	_, err := srv.Registry().Register(ctx, doc, registry.FormatJSON, registry.RegisterOptions{Source: "bench"})
	return err
}

// tenSteps is the throughput shape: 1 → 4 parallel → 4 → 1 fan-in.
func tenSteps() []tmplStep {
	steps := []tmplStep{{Name: "root", Handler: "noop"}}
	var mids []string
	for i := range 4 {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		steps = append(steps, tmplStep{Name: a, Handler: "noop", Deps: []string{"root"}})
		steps = append(steps, tmplStep{Name: b, Handler: "noop", Deps: []string{a}})
		mids = append(mids, b)
	}
	return append(steps, tmplStep{Name: "sink", Handler: "noop", Deps: mids})
}

func chain(n int) []tmplStep {
	steps := []tmplStep{{Name: "s0", Handler: "noop"}}
	for i := 1; i < n; i++ {
		steps = append(steps, tmplStep{Name: fmt.Sprintf("s%d", i), Handler: "noop", Deps: []string{fmt.Sprintf("s%d", i-1)}})
	}
	return steps
}

// wide is root → n-2 parallel → sink.
func wide(n int) []tmplStep {
	steps := []tmplStep{{Name: "root", Handler: "noop"}}
	var mids []string
	for i := range n - 2 {
		m := fmt.Sprintf("m%d", i)
		steps = append(steps, tmplStep{Name: m, Handler: "noop", Deps: []string{"root"}})
		mids = append(mids, m)
	}
	return append(steps, tmplStep{Name: "sink", Handler: "noop", Deps: mids})
}

// deep is n/100 independent chains of 100 steps.
func deep(n int) []tmplStep {
	var steps []tmplStep
	for c := range n / 100 {
		for i := range 100 {
			s := tmplStep{Name: fmt.Sprintf("c%d_%d", c, i), Handler: "noop"}
			if i > 0 {
				s.Deps = []string{fmt.Sprintf("c%d_%d", c, i-1)}
			}
			steps = append(steps, s)
		}
	}
	return steps
}

// createTasks creates n tasks of template name with 8 concurrent creators.
func createTasks(ctx context.Context, eng *engine.Engine, name string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, _, err := eng.CreateTask(ctx, engine.CreateTaskRequest{Namespace: "bench", Name: name}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitDone polls until no task is unfinished.
func waitDone(ctx context.Context, conn *pgx.Conn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := conn.QueryRow(ctx, unfinishedTasksSQL).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d unfinished after %s", errTimeout, n, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// throughputRounds is how many times each replica count works its 2,000
// tasks. One run lasts under two seconds on 2 cores, and a shared machine's
// hiccup moves a single run's figure by ±15 %; the median of five runs,
// interleaved (1, 3, 1, 3, … replicas) so that a slow minute slows both
// counts alike, is what the targets are judged on, with the slowest and
// fastest run beside it. (With three, the 3-replica ratio of medians moved
// between 0.85 and 1.09 in consecutive runs of one binary.)
const throughputRounds = 5

// The throughput workload's templates, one shape under two names: the
// figures (and the -v timeline) count the measured template's steps only.
const (
	measuredTemplate = "ten"
	warmUpTemplate   = "warm"
)

// throughputRun is one run's figures.
type throughputRun struct {
	stepsPerSecond, completed, seconds, createsPerSecond float64
	// CPU per measured step, in µs (server: -1 when not readable), and the
	// share of the machine busy, over the window from resume to done.
	selfCPU, serverCPU, busy float64
}

func (r *runner) throughput(ctx context.Context) ([]Figure, error) {
	tasks, rounds := 2000, throughputRounds
	if r.quick {
		tasks, rounds = 20, 1
	}
	runs := map[int][]throughputRun{}
	for range rounds {
		for _, replicas := range []int{1, 3} {
			run, err := r.throughputWith(ctx, tasks, replicas)
			if err != nil {
				return nil, err
			}
			runs[replicas] = append(runs[replicas], run)
		}
	}
	var figs []Figure
	for _, replicas := range []int{1, 3} {
		rs := runs[replicas]
		slices.SortFunc(rs, func(a, b throughputRun) int { return cmp.Compare(a.stepsPerSecond, b.stepsPerSecond) })
		median := rs[len(rs)/2]
		figs = append(figs,
			Figure{Workload: "throughput", Metric: "steps_per_second", Value: median.stepsPerSecond, Unit: fmt.Sprintf("steps/s (median of %d runs, warm replicas)", len(rs)), Replicas: replicas},
			Figure{Workload: "throughput", Metric: "steps_per_second_min", Value: rs[0].stepsPerSecond, Unit: "steps/s (slowest run)", Replicas: replicas},
			Figure{Workload: "throughput", Metric: "steps_per_second_max", Value: rs[len(rs)-1].stepsPerSecond, Unit: "steps/s (fastest run)", Replicas: replicas},
			Figure{Workload: "throughput", Metric: "steps_completed", Value: median.completed, Unit: "steps", Replicas: replicas},
			Figure{Workload: "throughput", Metric: "seconds", Value: median.seconds, Unit: "s", Replicas: replicas},
			Figure{Workload: "throughput", Metric: "task_creates_per_second", Value: median.createsPerSecond, Unit: "tasks/s (in-process, 8 creators)", Replicas: replicas},
			Figure{Workload: "throughput", Metric: "cpu_us_per_step_taskerd", Value: medianOf(rs, func(r throughputRun) float64 { return r.selfCPU }), Unit: "µs of CPU per step in taskerd's process (median)", Replicas: replicas},
		)
		if server := medianOf(rs, func(r throughputRun) float64 { return r.serverCPU }); server >= 0 {
			figs = append(figs, Figure{Workload: "throughput", Metric: "cpu_us_per_step_postgres", Value: server, Unit: "µs of CPU per step in PostgreSQL (median)", Replicas: replicas})
		}
		figs = append(figs, Figure{Workload: "throughput", Metric: "machine_busy_percent", Value: medianOf(rs, func(r throughputRun) float64 { return r.busy }), Unit: "% of all cores busy while the steps ran (median)", Replicas: replicas})
	}
	return figs, nil
}

// medianOf is the median of f over runs.
func medianOf(runs []throughputRun, f func(throughputRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (r *runner) throughputWith(ctx context.Context, tasks, replicas int) (throughputRun, error) {
	url, drop, err := r.freshDatabase(ctx, "throughput")
	if err != nil {
		return throughputRun{}, err
	}
	defer drop()
	var servers []*server.Server
	defer func() { stopAll(servers...) }()
	for range replicas {
		s, err := r.replica(url, nil)
		if err != nil {
			return throughputRun{}, err
		}
		servers = append(servers, s)
	}
	for _, name := range []string{warmUpTemplate, measuredTemplate} {
		if err := register(ctx, servers[0], name, tenSteps()); err != nil {
			return throughputRun{}, err
		}
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return throughputRun{}, err
	}
	defer conn.Close(ctx)
	if err := r.warmUp(ctx, conn, servers, tasks/4); err != nil {
		return throughputRun{}, err
	}
	// The measured tasks wait, paused, until all are created: a claim parks
	// their roots, and resuming puts them back in the ready queue in their
	// original order, with one notification.
	eng := servers[0].Engine()
	if _, err := eng.Pause(ctx, "bench", measuredTemplate, "bench"); err != nil {
		return throughputRun{}, err
	}
	created := time.Now()
	if err := createTasks(ctx, eng, measuredTemplate, tasks); err != nil {
		return throughputRun{}, err
	}
	createSecs := time.Since(created).Seconds()
	r.logger.Info("tasks created", slog.Int("tasks", tasks), slog.Float64("seconds", createSecs))
	meter := newCPUMeter(ctx, conn)
	before := meter.sample()
	if _, err := eng.Resume(ctx, "bench", measuredTemplate, "bench"); err != nil {
		return throughputRun{}, err
	}
	if err := waitDone(ctx, conn, 10*time.Minute); err != nil {
		return throughputRun{}, err
	}
	cpu := meter.since(before)
	var first, last time.Time
	var completed int
	if err := conn.QueryRow(ctx, stepSpanSQL, measuredTemplate).Scan(&first, &last, &completed); err != nil {
		return throughputRun{}, err
	}
	secs := last.Sub(first).Seconds()
	if r.details != nil {
		r.timeline(ctx, conn, replicas)
	}
	run := throughputRun{stepsPerSecond: float64(completed) / secs, completed: float64(completed), seconds: secs,
		createsPerSecond: float64(tasks) / createSecs, serverCPU: -1, busy: cpu.busy * 100}
	if completed > 0 {
		run.selfCPU = float64(cpu.self.Microseconds()) / float64(completed)
		if cpu.serverKnown {
			run.serverCPU = float64(cpu.server.Microseconds()) / float64(completed)
		}
	}
	return run, nil
}

// warmUp runs n tasks of the measured shape through started replicas and
// waits for them: the replicas of a running fleet have had their database
// sessions for hours, with their catalog caches loaded, their statements
// prepared and planned, and shared memory mapped, and their goroutines'
// stacks grown. Started cold, three replicas spent their first half-second
// on that (a ramp in the -v timeline that one replica barely shows),
// which is 15 % of a two-second run.
func (r *runner) warmUp(ctx context.Context, conn *pgx.Conn, servers []*server.Server, n int) error {
	for _, s := range servers {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	if err := createTasks(ctx, servers[0].Engine(), warmUpTemplate, n); err != nil {
		return err
	}
	return waitDone(ctx, conn, 10*time.Minute)
}

func (r *runner) latency(ctx context.Context) ([]Figure, error) {
	rate, dur := 50, 20*time.Second
	if r.quick {
		rate, dur = 20, time.Second
	}
	s, url, done, err := r.single(ctx, "latency", nil)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := register(ctx, s, "chain3", chain(3)); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for time.Now().Before(end) {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Engine().CreateTask(ctx, engine.CreateTaskRequest{Namespace: "bench", Name: "chain3"}); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d creates failed", n)
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if err := waitDone(ctx, conn, 2*time.Minute); err != nil {
		return nil, err
	}
	var pct []float64
	var steps int
	if err := conn.QueryRow(ctx, readyToStartSQL, "").Scan(&pct, &steps); err != nil {
		return nil, err
	}
	var task []float64
	var tasks int
	if err := conn.QueryRow(ctx, taskDurationsSQL).Scan(&task, &tasks); err != nil {
		return nil, err
	}
	return []Figure{
		{Workload: "latency", Metric: "ready_to_start_p50_ms", Value: pct[0] * 1000, Unit: "ms", Replicas: 1},
		{Workload: "latency", Metric: "ready_to_start_p95_ms", Value: pct[1] * 1000, Unit: "ms", Replicas: 1},
		{Workload: "latency", Metric: "ready_to_start_p99_ms", Value: pct[2] * 1000, Unit: "ms", Replicas: 1},
		{Workload: "latency", Metric: "task_create_to_complete_p50_ms", Value: task[0] * 1000, Unit: "ms", Replicas: 1},
		{Workload: "latency", Metric: "task_create_to_complete_p99_ms", Value: task[1] * 1000, Unit: "ms", Replicas: 1},
		{Workload: "latency", Metric: "tasks", Value: float64(tasks), Unit: fmt.Sprintf("tasks (%d/s for %s)", rate, dur), Replicas: 1},
	}, nil
}

func (r *runner) dagSize(ctx context.Context) ([]Figure, error) {
	small, large := 1000, 10000
	if r.quick {
		small, large = 100, 1000
	}
	s, url, done, err := r.single(ctx, "dag-size", nil)
	if err != nil {
		return nil, err
	}
	defer done()
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	shapes := []struct {
		name  string
		build func(int) []tmplStep
	}{{"wide", wide}, {"deep", deep}}
	for _, sh := range shapes {
		for _, n := range []int{small, large} {
			if err := register(ctx, s, fmt.Sprintf("%s_%d", sh.name, n), sh.build(n)); err != nil {
				return nil, err
			}
		}
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	var figs []Figure
	for _, sh := range shapes {
		var times [2]float64
		for i, n := range []int{small, large} {
			v, _, err := s.Engine().CreateTask(ctx, engine.CreateTaskRequest{Namespace: "bench", Name: fmt.Sprintf("%s_%d", sh.name, n)})
			if err != nil {
				return nil, err
			}
			if err := waitDone(ctx, conn, 10*time.Minute); err != nil {
				return nil, err
			}
			var status string
			if err := conn.QueryRow(ctx, taskDurationSQL, v.Task.TaskID).Scan(&status, &times[i]); err != nil {
				return nil, err
			}
			if status != "complete" {
				return nil, fmt.Errorf("%s task of %d steps ended %s", sh.name, n, status)
			}
			figs = append(figs, Figure{Workload: "dag-size", Metric: fmt.Sprintf("%s_%d_seconds", sh.name, n), Value: times[i], Unit: "s", Replicas: 1})
		}
		figs = append(figs, Figure{Workload: "dag-size", Metric: sh.name + "_ratio_10k_1k", Value: times[1] / times[0], Unit: "×", Replicas: 1})
	}
	return figs, nil
}

func (r *runner) api(ctx context.Context) ([]Figure, error) {
	clients, dur := 32, 15*time.Second
	if r.quick {
		clients, dur = 4, 500*time.Millisecond
	}
	s, _, done, err := r.single(ctx, "api", func(c *config.Config) { c.DBMaxConns = 40 })
	if err != nil {
		return nil, err
	}
	defer done()
	if err := register(ctx, s, "chain3", chain(3)); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	// Creates only: the engine's work is measured by the throughput
	// workload, and here it would compete with the API for the same cores.
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = s.Engine().Stop(stopCtx)
	cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}, Timeout: 10 * time.Second}
	target := "http://" + s.Addr() + "/tasker/tasks"
	body := []byte(`{"namespace":"bench","name":"chain3","context":{"order_id":"A-1","amount":10}}`)
	var mu sync.Mutex
	var lat []time.Duration
	var errCount atomic.Int64
	end := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				resp, err := client.Post(target, "application/json", bytes.NewReader(body))
				if err != nil {
					errCount.Add(1)
					continue
				}
				_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errCount.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	return []Figure{
		{Workload: "api", Metric: "creates_per_second", Value: float64(len(lat)) / elapsed, Unit: fmt.Sprintf("req/s (%d clients)", clients), Replicas: 1},
		{Workload: "api", Metric: "create_p50_ms", Value: p(0.5), Unit: "ms", Replicas: 1},
		{Workload: "api", Metric: "create_p99_ms", Value: p(0.99), Unit: "ms", Replicas: 1},
		{Workload: "api", Metric: "errors", Value: float64(errCount.Load()), Unit: "requests", Replicas: 1},
	}, nil
}

func (r *runner) idle(ctx context.Context) ([]Figure, error) {
	dur := 30 * time.Second
	if r.quick {
		dur = time.Second
	}
	s, _, done, err := r.single(ctx, "idle", nil)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	time.Sleep(min(2*time.Second, dur)) // start-up queries are not idling
	before := s.Store().PoolStats().AcquireCount
	time.Sleep(dur)
	after := s.Store().PoolStats().AcquireCount
	return []Figure{
		{Workload: "idle", Metric: "queries_per_second", Value: float64(after-before) / dur.Seconds(), Unit: "queries/s (pool acquisitions)", Replicas: 1},
	}, nil
}

// connect opens a connection whose search_path is the taskerd schema.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["search_path"] = "tasker"
	return pgx.ConnectConfig(ctx, cfg)
}

// single prepares a workload that runs on one replica: a fresh database and
// a replica on it (not started); done stops the replica and drops the
// database.
func (r *runner) single(ctx context.Context, workload string, mod func(*config.Config)) (s *server.Server, url string, done func(), err error) {
	url, drop, err := r.freshDatabase(ctx, workload)
	if err != nil {
		return nil, "", nil, err
	}
	s, err = r.replica(url, mod)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	return s, url, func() { stopAll(s); drop() }, nil
}

// timeline prints, per 100 ms of the throughput window, how many steps each
// replica claimed and completed, and in how many statements: where a run
// ramps up, stalls or tails off.
func (r *runner) timeline(ctx context.Context, conn *pgx.Conn, replicas int) {
	rows, err := conn.Query(ctx, timelineSQL, measuredTemplate)
	if err != nil {
		fmt.Fprintf(r.details, "(timeline: %v)\n", err)
		return
	}
	defer rows.Close()
	fmt.Fprintf(r.details, "\n-- throughput, %d replica(s): per 100 ms\n%6s  %-24s %7s %7s %7s %7s\n", replicas, "ms", "replica", "claimed", "claims", "done", "flushes")
	for rows.Next() {
		var ms, claimed, claims, done, flushes int64
		var replica string
		if rows.Scan(&ms, &replica, &claimed, &claims, &done, &flushes) == nil {
			fmt.Fprintf(r.details, "%6d  %-24s %7d %7d %7d %7d\n", ms, replica, claimed, claims, done, flushes)
		}
	}
	rows.Close()
	rows, err = conn.Query(ctx, hotUpdatesSQL)
	if err != nil {
		fmt.Fprintf(r.details, "(hot updates: %v)\n", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var table string
		var updates, hot int64
		if rows.Scan(&table, &updates, &hot) == nil {
			fmt.Fprintf(r.details, "updates of %s: %d, HOT %d\n", table, updates, hot)
		}
	}
}
