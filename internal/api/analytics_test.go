package api_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// analyticsFixture writes a day and a half of history straight into the
// tables: shop.diamond tasks (a → b, a → c, {b, c} → d) and ops.sync tasks
// (one step), in every state, with retried and failed attempts, and some
// history older than the 24-hour window. Times are random but far from the
// window's edge, so the test's clock and the database's agree on what is in.
func analyticsFixture(t *testing.T, s templateServer) {
	t.Helper()
	s.register(t, noopDiamondYAML)
	s.register(t, syncYAML)
	conn := connect(t, s.dsn)
	ctx := context.Background()
	namedSteps := map[string]int64{}
	rows, err := conn.Query(ctx, `SELECT ns.name || '.' || nt.name || '.' || st.name, st.named_step_id
		FROM named_steps st JOIN named_tasks nt USING (named_task_id) JOIN task_namespaces ns USING (task_namespace_id)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var id int64
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		namedSteps[k] = id
	}
	diamond, syncID := namedTaskID(t, conn, "shop", "diamond"), namedTaskID(t, conn, "ops", "sync")

	rng := rand.New(rand.NewPCG(8, 2025))
	now := time.Now().Truncate(time.Microsecond)
	dur := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(rng.Int64N(int64(hi-lo)))).Truncate(time.Microsecond)
	}
	messages := []func() string{
		func() string { return fmt.Sprintf("payment gateway answered %d", 500+rng.IntN(4)) },
		func() string {
			return fmt.Sprintf("order %s: timeout after %d ms", uuid.NewString(), 1000+rng.IntN(9000))
		},
	}
	var tasks []fixtureTask
	type stepRow struct {
		id, task              uuid.UUID
		named                 int64
		name, handler, status string
		attempts              int
		attempted, processed  *time.Time
		failures              []time.Time // failed attempts' times
		finalFailure          bool
	}
	var steps []stepRow
	type edge struct{ from, to uuid.UUID }
	var edges []edge
	statuses := []string{"complete", "complete", "complete", "complete", "error", "error", "in_progress", "pending", "cancelled", "resolved_manually"}
	for i := range 70 {
		old := i%10 == 9 // history outside the window
		ft := fixtureTask{id: uuid.Must(uuid.NewV7()), status: statuses[rng.IntN(len(statuses))]}
		if i%3 == 0 {
			ft.namespace, ft.name, ft.version, ft.namedTaskID = "ops", "sync", "2.0.0", syncID
		} else {
			ft.namespace, ft.name, ft.version, ft.namedTaskID = "shop", "diamond", "1.0.0", diamond
		}
		ft.createdAt = now.Add(-dur(time.Hour, 20*time.Hour))
		if old {
			ft.createdAt = now.Add(-dur(40*time.Hour, 44*time.Hour))
			ft.status = []string{"complete", "error"}[i%2]
		}
		if ft.status != "pending" {
			ft.startedAt = ptr(ft.createdAt.Add(dur(0, 5*time.Second)))
		}
		if ft.status != "pending" && ft.status != "in_progress" {
			ft.completedAt = ptr(ft.startedAt.Add(dur(100*time.Millisecond, 90*time.Second)))
		}
		// Step states that fit the task's.
		var names []string
		var states map[string]string
		if ft.name == "sync" {
			names = []string{"pull"}
			st := ft.status
			if st == "resolved_manually" {
				st = "error"
			}
			states = map[string]string{"pull": st}
		} else {
			names = []string{"a", "b", "c", "d"}
			switch ft.status {
			case "complete", "resolved_manually":
				states = map[string]string{"a": "complete", "b": "complete", "c": "complete", "d": "complete"}
			case "error", "cancelled":
				states = map[string]string{"a": "complete", "b": "error", "c": "complete", "d": "pending"}
			case "in_progress":
				states = map[string]string{"a": "complete", "b": "in_progress", "c": "error", "d": "pending"}
			default:
				states = map[string]string{"a": "pending", "b": "pending", "c": "pending", "d": "pending"}
			}
		}
		ids := map[string]uuid.UUID{}
		for _, name := range names {
			sr := stepRow{id: uuid.Must(uuid.NewV7()), task: ft.id, named: namedSteps[ft.namespace+"."+ft.name+"."+name],
				name: name, handler: "noop", status: states[name]}
			ids[name] = sr.id
			if sr.status != "pending" {
				sr.attempts = 1
				if name == "b" || name == "c" || name == "pull" {
					sr.attempts = 1 + rng.IntN(3)
				}
				at := ft.startedAt.Add(dur(10*time.Second, 60*time.Second))
				for k := 1; k < sr.attempts; k++ {
					sr.failures = append(sr.failures, at.Add(-time.Duration(sr.attempts-k)*time.Second))
				}
				if sr.status == "error" {
					sr.failures = append(sr.failures, at.Add(dur(time.Millisecond, time.Second)))
					sr.finalFailure = true
				}
				sr.attempted = &at
				if sr.status != "in_progress" {
					sr.processed = ptr(at.Add(dur(5*time.Millisecond, 8*time.Second)))
				}
			}
			steps = append(steps, sr)
		}
		if ft.name == "diamond" {
			edges = append(edges, edge{ids["a"], ids["b"]}, edge{ids["a"], ids["c"]}, edge{ids["b"], ids["d"]}, edge{ids["c"], ids["d"]})
		}
		ft.totalSteps = len(names)
		tasks = append(tasks, ft)
	}
	insertTasks(t, conn, tasks)

	batch := &pgx.Batch{}
	for _, sr := range steps {
		batch.Queue(`INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, status, attempts,
				last_attempted_at, processed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			sr.id, sr.task, sr.named, sr.name, sr.handler, sr.status, sr.attempts, sr.attempted, sr.processed)
		for k, at := range sr.failures {
			last := sr.finalFailure && k == len(sr.failures)-1
			meta, _ := json.Marshal(map[string]any{"attempt": k + 1, "will_retry": !last,
				"error": map[string]any{"message": messages[rng.IntN(len(messages))](), "attempt": k + 1, "retryable": !last}})
			batch.Queue(`INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, created_at)
				VALUES ($1, $2, 'in_progress', 'error', $3, $4)`, sr.id, sr.task, string(meta), at)
		}
	}
	for _, e := range edges {
		batch.Queue(`INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id)
			SELECT $1, $2, task_id FROM workflow_steps WHERE workflow_step_id = $1`, e.from, e.to)
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
}

// history is what the database holds, read back plainly: the test's own
// computation of the analytics starts from these rows.
type history struct {
	tasks []struct {
		id                        uuid.UUID
		ns, name, version, status string
		created                   time.Time
		started, completed        *time.Time
	}
	steps []struct {
		id, task             uuid.UUID
		name, status         string
		attempts             int
		attempted, processed *time.Time
	}
	edges    map[uuid.UUID][]uuid.UUID // parent → children
	parents  map[uuid.UUID][]uuid.UUID
	failures []struct {
		step      uuid.UUID
		at        time.Time
		message   string
		willRetry bool
	}
}

func readHistory(t *testing.T, dsn string) *history {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	h := &history{edges: map[uuid.UUID][]uuid.UUID{}, parents: map[uuid.UUID][]uuid.UUID{}}
	rows, _ := conn.Query(ctx, `SELECT task_id, namespace_name, task_name, task_version, status, created_at, started_at, completed_at FROM tasks`)
	for rows.Next() {
		var r = struct {
			id                        uuid.UUID
			ns, name, version, status string
			created                   time.Time
			started, completed        *time.Time
		}{}
		if err := rows.Scan(&r.id, &r.ns, &r.name, &r.version, &r.status, &r.created, &r.started, &r.completed); err != nil {
			t.Fatal(err)
		}
		h.tasks = append(h.tasks, r)
	}
	rows, _ = conn.Query(ctx, `SELECT workflow_step_id, task_id, name, status, attempts, last_attempted_at, processed_at FROM workflow_steps`)
	for rows.Next() {
		var r = struct {
			id, task             uuid.UUID
			name, status         string
			attempts             int
			attempted, processed *time.Time
		}{}
		if err := rows.Scan(&r.id, &r.task, &r.name, &r.status, &r.attempts, &r.attempted, &r.processed); err != nil {
			t.Fatal(err)
		}
		h.steps = append(h.steps, r)
	}
	rows, _ = conn.Query(ctx, `SELECT from_step_id, to_step_id FROM workflow_step_edges`)
	for rows.Next() {
		var from, to uuid.UUID
		if err := rows.Scan(&from, &to); err != nil {
			t.Fatal(err)
		}
		h.edges[from] = append(h.edges[from], to)
		h.parents[to] = append(h.parents[to], from)
	}
	rows, _ = conn.Query(ctx, `SELECT workflow_step_id, created_at, metadata->'error'->>'message', metadata->>'will_retry' = 'true'
		FROM workflow_step_transitions WHERE to_state = 'error'`)
	for rows.Next() {
		var r = struct {
			step      uuid.UUID
			at        time.Time
			message   string
			willRetry bool
		}{}
		if err := rows.Scan(&r.step, &r.at, &r.message, &r.willRetry); err != nil {
			t.Fatal(err)
		}
		h.failures = append(h.failures, r)
	}
	if len(h.tasks) == 0 || len(h.steps) == 0 || len(h.failures) == 0 {
		t.Fatal("the fixture wrote nothing")
	}
	return h
}

// percentileCont is PostgreSQL's percentile_cont: linear interpolation
// between the closest ranks of the sorted values.
func percentileCont(sorted []float64, p float64) float64 {
	pos := p * float64(len(sorted)-1)
	lo, hi := math.Floor(pos), math.Ceil(pos)
	return sorted[int(lo)] + (pos-lo)*(sorted[int(hi)]-sorted[int(lo)])
}

type durationsJSON struct {
	Avg *float64 `json:"avg_ms"`
	P50 *float64 `json:"p50_ms"`
	P95 *float64 `json:"p95_ms"`
	P99 *float64 `json:"p99_ms"`
}

type perfJSON struct {
	Namespace      string        `json:"namespace"`
	ActiveTasks    int64         `json:"active_tasks"`
	TasksCreated   int64         `json:"tasks_created"`
	TasksCompleted int64         `json:"tasks_completed"`
	TasksFailed    int64         `json:"tasks_failed"`
	Throughput     float64       `json:"throughput_per_hour"`
	CompletionRate float64       `json:"completion_rate"`
	ErrorRate      float64       `json:"error_rate"`
	TaskDuration   durationsJSON `json:"task_duration"`
	StepsCompleted int64         `json:"steps_completed"`
	StepFailures   int64         `json:"step_failures"`
	StepErrorRate  float64       `json:"step_error_rate"`
	StepDuration   durationsJSON `json:"step_duration"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(values []float64) durationsJSON {
	if len(values) == 0 {
		return durationsJSON{}
	}
	slices.Sort(values)
	var sum float64
	for _, v := range values {
		sum += v
	}
	return durationsJSON{Avg: ptr(sum / float64(len(values))), P50: ptr(percentileCont(values, 0.5)),
		P95: ptr(percentileCont(values, 0.95)), P99: ptr(percentileCont(values, 0.99))}
}

// expectPerformance computes get_analytics_metrics' figures from the rows,
// for one namespace or ("") all.
func (h *history) expectPerformance(since time.Time, period int, ns string) perfJSON {
	out := perfJSON{Namespace: ns}
	taskNS := map[uuid.UUID]string{}
	var taskDur, stepDur []float64
	for _, tk := range h.tasks {
		taskNS[tk.id] = tk.ns
		if ns != "" && tk.ns != ns {
			continue
		}
		if tk.status == "pending" || tk.status == "in_progress" {
			out.ActiveTasks++
		}
		if !tk.created.Before(since) {
			out.TasksCreated++
		}
		ended := tk.completed != nil && !tk.completed.Before(since)
		if ended && tk.status == "complete" {
			out.TasksCompleted++
			if tk.started != nil {
				taskDur = append(taskDur, ms(tk.completed.Sub(*tk.started)))
			}
		}
		if ended && tk.status == "error" {
			out.TasksFailed++
		}
	}
	stepNS := map[uuid.UUID]string{}
	for _, st := range h.steps {
		stepNS[st.id] = taskNS[st.task]
		if ns != "" && taskNS[st.task] != ns {
			continue
		}
		if st.status == "complete" && st.processed != nil && !st.processed.Before(since) && st.attempted != nil {
			out.StepsCompleted++
			stepDur = append(stepDur, ms(st.processed.Sub(*st.attempted)))
		}
	}
	for _, f := range h.failures {
		if (ns == "" || stepNS[f.step] == ns) && !f.at.Before(since) {
			out.StepFailures++
		}
	}
	if ended := out.TasksCompleted + out.TasksFailed; ended > 0 {
		out.CompletionRate = float64(out.TasksCompleted) / float64(ended)
		out.ErrorRate = float64(out.TasksFailed) / float64(ended)
	}
	if n := out.StepsCompleted + out.StepFailures; n > 0 {
		out.StepErrorRate = float64(out.StepFailures) / float64(n)
	}
	out.Throughput = math.Round(float64(out.TasksCompleted)/float64(period)*1e4) / 1e4
	out.TaskDuration, out.StepDuration = summarize(taskDur), summarize(stepDur)
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func nearPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return near(*a, *b)
}

func comparePerformance(t *testing.T, what string, got, want perfJSON) {
	t.Helper()
	if got.ActiveTasks != want.ActiveTasks || got.TasksCreated != want.TasksCreated || got.TasksCompleted != want.TasksCompleted ||
		got.TasksFailed != want.TasksFailed || got.StepsCompleted != want.StepsCompleted || got.StepFailures != want.StepFailures ||
		!near(got.Throughput, want.Throughput) || !near(got.CompletionRate, want.CompletionRate) || !near(got.ErrorRate, want.ErrorRate) ||
		!near(got.StepErrorRate, want.StepErrorRate) {
		t.Errorf("%s counts and rates:\n got %+v\nwant %+v", what, got, want)
	}
	for _, d := range []struct {
		name      string
		got, want durationsJSON
	}{{"task", got.TaskDuration, want.TaskDuration}, {"step", got.StepDuration, want.StepDuration}} {
		if !nearPtr(d.got.Avg, d.want.Avg) || !nearPtr(d.got.P50, d.want.P50) || !nearPtr(d.got.P95, d.want.P95) || !nearPtr(d.got.P99, d.want.P99) {
			t.Errorf("%s %s durations: got %s, want %s", what, d.name, asJSON(d.got), asJSON(d.want))
		}
	}
}

func TestAnalyticsPerformanceMatchesGo(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	analyticsFixture(t, s)
	h := readHistory(t, s.dsn)
	var got struct {
		PeriodHours int        `json:"period_hours"`
		Since       time.Time  `json:"since"`
		GeneratedAt time.Time  `json:"generated_at"`
		Overall     perfJSON   `json:"overall"`
		Namespaces  []perfJSON `json:"namespaces"`
	}
	hdr := s.getJSON(t, "/analytics/performance", 200, &got)
	if got.PeriodHours != 24 || got.GeneratedAt.Sub(got.Since) != 24*time.Hour || !strings.HasPrefix(hdr.Get("Cache-Control"), "private, max-age=") {
		t.Errorf("period %d, since %s, generated %s, Cache-Control %q", got.PeriodHours, got.Since, got.GeneratedAt, hdr.Get("Cache-Control"))
	}
	since := got.Since
	comparePerformance(t, "overall", got.Overall, h.expectPerformance(since, 24, ""))
	if len(got.Namespaces) != 2 || got.Namespaces[0].Namespace != "ops" || got.Namespaces[1].Namespace != "shop" {
		t.Fatalf("namespaces: %+v", got.Namespaces)
	}
	for _, n := range got.Namespaces {
		comparePerformance(t, n.Namespace, n, h.expectPerformance(since, 24, n.Namespace))
	}
	if got.Overall.TaskDuration.P99 == nil || got.Overall.StepFailures == 0 || got.Overall.TasksFailed == 0 {
		t.Errorf("the fixture exercised too little: %+v", got.Overall)
	}

	// A longer period takes the old history in; the answer is not the cached one.
	var week struct {
		Since   time.Time `json:"since"`
		Overall perfJSON  `json:"overall"`
	}
	s.getJSON(t, "/analytics/performance?period=168", 200, &week)
	comparePerformance(t, "a week", week.Overall, h.expectPerformance(week.Since, 168, ""))
	if week.Overall.TasksCreated <= got.Overall.TasksCreated {
		t.Errorf("a week holds no more tasks than a day: %d vs %d", week.Overall.TasksCreated, got.Overall.TasksCreated)
	}

	// Cached: a second request within the TTL is the same answer.
	var again struct {
		GeneratedAt time.Time `json:"generated_at"`
	}
	s.getJSON(t, "/analytics/performance", 200, &again)
	if !again.GeneratedAt.Equal(got.GeneratedAt) {
		t.Errorf("not cached: generated %s then %s", got.GeneratedAt, again.GeneratedAt)
	}
	for _, bad := range []string{"period=0", "period=-1", "period=day", "period=9000", "since=1h", "period=1&period=2"} {
		if r := s.do(t, "GET", "/analytics/performance?"+bad, nil, ""); r.code != 400 || !strings.Contains(string(r.body), `"parameter"`) {
			t.Errorf("%s: %d %s", bad, r.code, r.body)
		}
	}
}

var (
	uuidPattern  = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	digitPattern = regexp.MustCompile(`[0-9]+`)
)

func TestAnalyticsBottlenecksMatchGo(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	analyticsFixture(t, s)
	h := readHistory(t, s.dsn)
	type bottlenecks struct {
		Since        time.Time `json:"since"`
		SlowestTasks []struct {
			TaskID     uuid.UUID `json:"task_id"`
			DurationMS float64   `json:"duration_ms"`
		} `json:"slowest_tasks"`
		SlowestSteps []struct {
			StepID     uuid.UUID `json:"step_id"`
			DurationMS float64   `json:"duration_ms"`
		} `json:"slowest_steps"`
		MostRetried []struct {
			Namespace     string `json:"namespace"`
			TaskName      string `json:"task_name"`
			StepName      string `json:"step_name"`
			Executions    int64  `json:"executions"`
			TotalAttempts int64  `json:"total_attempts"`
			Retries       int64  `json:"retries"`
			MaxAttempts   int    `json:"max_attempts"`
			Exhausted     int64  `json:"exhausted"`
		} `json:"most_retried_steps"`
		ErrorPatterns []struct {
			Namespace     string `json:"namespace"`
			TaskName      string `json:"task_name"`
			StepName      string `json:"step_name"`
			Pattern       string `json:"pattern"`
			Occurrences   int64  `json:"occurrences"`
			AffectedSteps int64  `json:"affected_steps"`
			Retried       int64  `json:"retried"`
			Sample        string `json:"sample_message"`
		} `json:"error_patterns"`
		Blocking []struct {
			Namespace         string `json:"namespace"`
			TaskName          string `json:"task_name"`
			StepName          string `json:"step_name"`
			TasksBlocked      int64  `json:"tasks_blocked"`
			DependentsBlocked int64  `json:"dependents_blocked"`
			MaxDependents     int64  `json:"max_dependents"`
			Failed            int64  `json:"failed"`
			Running           int64  `json:"running"`
			Waiting           int64  `json:"waiting"`
		} `json:"blocking_steps"`
	}
	for _, ns := range []string{"", "shop"} {
		var got bottlenecks
		path := "/analytics/bottlenecks"
		if ns != "" {
			path += "?namespace=" + ns + "&name=diamond&version=1.0.0"
		}
		s.getJSON(t, path, 200, &got)
		since := got.Since
		tasks := map[uuid.UUID]int{}
		for i, tk := range h.tasks {
			tasks[tk.id] = i
		}
		inScope := func(taskID uuid.UUID) bool { return ns == "" || h.tasks[tasks[taskID]].ns == ns }
		key := func(taskID uuid.UUID, step string) string {
			tk := h.tasks[tasks[taskID]]
			return tk.ns + "/" + tk.name + "/" + step
		}

		// Slowest tasks and steps: the top ten by duration, ties by id.
		type slow struct {
			id uuid.UUID
			ms float64
		}
		bySlowness := func(a, b slow) int { return cmp.Or(cmp.Compare(b.ms, a.ms), bytes.Compare(a.id[:], b.id[:])) }
		var wantTasks, wantSteps []slow
		for _, tk := range h.tasks {
			if (tk.status == "complete" || tk.status == "error") && tk.completed != nil && !tk.completed.Before(since) && tk.started != nil && inScope(tk.id) {
				wantTasks = append(wantTasks, slow{tk.id, ms(tk.completed.Sub(*tk.started))})
			}
		}
		stepsByID := map[uuid.UUID]int{}
		for i, st := range h.steps {
			stepsByID[st.id] = i
			if (st.status == "complete" || st.status == "error") && st.processed != nil && !st.processed.Before(since) && st.attempted != nil && inScope(st.task) {
				wantSteps = append(wantSteps, slow{st.id, ms(st.processed.Sub(*st.attempted))})
			}
		}
		slices.SortFunc(wantTasks, bySlowness)
		slices.SortFunc(wantSteps, bySlowness)
		wantTasks, wantSteps = wantTasks[:min(10, len(wantTasks))], wantSteps[:min(10, len(wantSteps))]
		if len(got.SlowestTasks) != len(wantTasks) || len(wantTasks) == 0 {
			t.Errorf("%q: %d slowest tasks, want %d", ns, len(got.SlowestTasks), len(wantTasks))
		}
		for i := range min(len(got.SlowestTasks), len(wantTasks)) {
			if got.SlowestTasks[i].TaskID != wantTasks[i].id || !near(got.SlowestTasks[i].DurationMS, wantTasks[i].ms) {
				t.Errorf("%q: slowest task %d: %+v, want %+v", ns, i, got.SlowestTasks[i], wantTasks[i])
			}
		}
		if len(got.SlowestSteps) != len(wantSteps) {
			t.Errorf("%q: %d slowest steps, want %d", ns, len(got.SlowestSteps), len(wantSteps))
		}
		for i := range min(len(got.SlowestSteps), len(wantSteps)) {
			if got.SlowestSteps[i].StepID != wantSteps[i].id || !near(got.SlowestSteps[i].DurationMS, wantSteps[i].ms) {
				t.Errorf("%q: slowest step %d: %+v, want %+v", ns, i, got.SlowestSteps[i], wantSteps[i])
			}
		}

		// Most retried: per step template, over steps attempted in the window.
		type retried struct{ executions, attempts, retries, exhausted, max int64 }
		wantRetried := map[string]*retried{}
		for _, st := range h.steps {
			if st.attempted == nil || st.attempted.Before(since) || !inScope(st.task) {
				continue
			}
			k := key(st.task, st.name)
			r := wantRetried[k]
			if r == nil {
				r = &retried{}
				wantRetried[k] = r
			}
			r.executions++
			r.attempts += int64(st.attempts)
			r.retries += int64(max(st.attempts-1, 0))
			r.max = max(r.max, int64(st.attempts))
			if st.status == "error" {
				r.exhausted++
			}
		}
		for k, r := range wantRetried {
			if r.retries == 0 {
				delete(wantRetried, k)
			}
		}
		if len(got.MostRetried) != len(wantRetried) || len(wantRetried) == 0 {
			t.Errorf("%q: %d most retried, want %d", ns, len(got.MostRetried), len(wantRetried))
		}
		for i, r := range got.MostRetried {
			w := wantRetried[r.Namespace+"/"+r.TaskName+"/"+r.StepName]
			if w == nil || r.Executions != w.executions || r.TotalAttempts != w.attempts || r.Retries != w.retries ||
				int64(r.MaxAttempts) != w.max || r.Exhausted != w.exhausted || (i > 0 && r.Retries > got.MostRetried[i-1].Retries) {
				t.Errorf("%q: most retried %+v, want %+v", ns, r, w)
			}
		}

		// Error patterns: messages with numbers and UUIDs folded.
		type pattern struct{ occurrences, retried int64 }
		wantPatterns := map[string]*pattern{}
		affected := map[string]map[uuid.UUID]bool{}
		for _, f := range h.failures {
			st := h.steps[stepsByID[f.step]]
			if f.at.Before(since) || !inScope(st.task) {
				continue
			}
			p := digitPattern.ReplaceAllString(uuidPattern.ReplaceAllString(f.message, "<uuid>"), "N")
			k := key(st.task, st.name) + "/" + p
			if wantPatterns[k] == nil {
				wantPatterns[k], affected[k] = &pattern{}, map[uuid.UUID]bool{}
			}
			wantPatterns[k].occurrences++
			if f.willRetry {
				wantPatterns[k].retried++
			}
			affected[k][f.step] = true
		}
		if len(got.ErrorPatterns) != len(wantPatterns) || len(wantPatterns) == 0 || len(wantPatterns) > 10 {
			t.Errorf("%q: %d error patterns, want %d (and at most 10, so no cut hides a difference)", ns, len(got.ErrorPatterns), len(wantPatterns))
		}
		for i, p := range got.ErrorPatterns {
			k := p.Namespace + "/" + p.TaskName + "/" + p.StepName + "/" + p.Pattern
			w := wantPatterns[k]
			if w == nil || p.Occurrences != w.occurrences || p.Retried != w.retried || p.AffectedSteps != int64(len(affected[k])) ||
				!strings.Contains(p.Pattern, "N") || (i > 0 && p.Occurrences > got.ErrorPatterns[i-1].Occurrences) {
				t.Errorf("%q: error pattern %+v, want %+v", ns, p, w)
			}
		}

		// Blocking steps: unfinished steps whose parents are all done, in
		// unfinished tasks of the window, by how many pending steps wait below.
		type blocking struct{ tasks, dependents, max, failed, running, waiting int64 }
		wantBlocking := map[string]*blocking{}
		for _, st := range h.steps {
			tk := h.tasks[tasks[st.task]]
			if !inScope(st.task) || tk.created.Before(since) || (tk.status != "pending" && tk.status != "in_progress" && tk.status != "error") {
				continue
			}
			if st.status == "complete" || st.status == "resolved_manually" {
				continue
			}
			front := true
			for _, p := range h.parents[st.id] {
				if ps := h.steps[stepsByID[p]].status; ps != "complete" && ps != "resolved_manually" {
					front = false
				}
			}
			if !front {
				continue
			}
			below := map[uuid.UUID]bool{}
			var walk func(uuid.UUID)
			walk = func(id uuid.UUID) {
				for _, c := range h.edges[id] {
					if !below[c] {
						below[c] = true
						walk(c)
					}
				}
			}
			walk(st.id)
			var n int64
			for id := range below {
				if h.steps[stepsByID[id]].status == "pending" {
					n++
				}
			}
			if n == 0 {
				continue
			}
			k := key(st.task, st.name)
			b := wantBlocking[k]
			if b == nil {
				b = &blocking{}
				wantBlocking[k] = b
			}
			b.tasks++
			b.dependents += n
			b.max = max(b.max, n)
			switch st.status {
			case "error":
				b.failed++
			case "in_progress":
				b.running++
			case "pending":
				b.waiting++
			}
		}
		if len(got.Blocking) != len(wantBlocking) || len(wantBlocking) == 0 {
			t.Errorf("%q: %d blocking steps, want %d", ns, len(got.Blocking), len(wantBlocking))
		}
		for i, b := range got.Blocking {
			w := wantBlocking[b.Namespace+"/"+b.TaskName+"/"+b.StepName]
			if w == nil || b.TasksBlocked != w.tasks || b.DependentsBlocked != w.dependents || b.MaxDependents != w.max ||
				b.Failed != w.failed || b.Running != w.running || b.Waiting != w.waiting ||
				(i > 0 && b.DependentsBlocked > got.Blocking[i-1].DependentsBlocked) {
				t.Errorf("%q: blocking %+v, want %+v", ns, b, w)
			}
		}
		if ns != "" {
			for _, b := range got.Blocking {
				if b.Namespace != ns {
					t.Errorf("filtered by %s, got %+v", ns, b)
				}
			}
		}
	}
	if r := s.do(t, "GET", "/analytics/bottlenecks?period=0", nil, ""); r.code != 400 {
		t.Errorf("period=0: %d", r.code)
	}
}

// With nothing in the database every figure is zero and every duration
// null, in both analyses.
func TestAnalyticsOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	var perf struct {
		Overall    perfJSON   `json:"overall"`
		Namespaces []perfJSON `json:"namespaces"`
	}
	s.getJSON(t, "/analytics/performance?period=1", 200, &perf)
	if (perf.Overall != perfJSON{}) || perf.Namespaces == nil || len(perf.Namespaces) != 0 {
		t.Errorf("empty performance: %+v", perf)
	}
	var b map[string]any
	s.getJSON(t, "/analytics/bottlenecks", 200, &b)
	for _, list := range []string{"slowest_tasks", "slowest_steps", "most_retried_steps", "error_patterns", "blocking_steps"} {
		if l, ok := b[list].([]any); !ok || len(l) != 0 {
			t.Errorf("%s: %v, want []", list, b[list])
		}
	}
}
