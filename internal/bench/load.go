package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/server"
)

// DefaultLoadDuration is how long the load workload sends traffic.
const DefaultLoadDuration = 60 * time.Second

// Load workload settings: the request rate, and its gates on what the
// replica holds once the traffic is over.
const (
	loadRate      = 200 // paced requests per second, a quarter each of create, list, show, claim
	loadQuickRate = 50
	// loadMaxInFlight bounds the requests open at once: the load is at a
	// fixed rate while the server keeps up, and never a flood when not.
	loadMaxInFlight    = 64
	loadGoroutineSlack = 10
	loadHeapGrowthPct  = 20
	loadWorker         = "bench-load"
	loadQueue          = "remote:load"
	loadGoroutineLabel = "taskerd_bench_replica"
	loadSettleTimeout  = 15 * time.Second
	loadDrainTimeout   = 2 * time.Minute
	loadLeaseSeconds   = 60
	loadClaimMax       = 5
	loadMinWarmup      = 5 * time.Second
)

// The routes the load sends, in the order figures are reported.
var loadRoutes = []string{"create", "list", "show", "claim", "complete"}

// load is issue 11's bounded load: a fixed rate of mixed API traffic
// (create, list, show, and a remote worker's claim and complete) against
// one replica on loopback for the configured duration. Every request must
// succeed; once the traffic is over and drained, the replica must be back
// to the goroutines it had before (±10) and, outside quick runs, its heap
// after GC within 20 % of before. Those figures carry gates: `taskerd
// bench` exits non-zero when one is missed.
func (r *runner) load(ctx context.Context) ([]Figure, error) {
	dur, rate := r.duration, loadRate
	if dur <= 0 {
		dur = DefaultLoadDuration
	}
	// A quarter as long again of the same traffic first, so that what fills
	// once (pools, caches, prepared statements) is mostly in the baseline.
	warmup := max(loadMinWarmup, dur/4)
	if r.quick {
		dur, rate, warmup = min(dur, time.Second), loadQuickRate, 200*time.Millisecond
	}
	url, drop, err := r.freshDatabase(ctx, "load")
	if err != nil {
		return nil, err
	}
	defer drop()
	// The replica's goroutines carry a label of this run's own, so they
	// are counted apart from the load generator's and from whatever else
	// shares the process (other tests).
	label := "load-" + randomSuffix()
	var s *server.Server
	pprof.Do(ctx, pprof.Labels(loadGoroutineLabel, label), func(ctx context.Context) {
		if s, err = r.replica(url, nil); err != nil {
			return
		}
		if err = register(ctx, s, "load", []tmplStep{{Name: "prep", Handler: "noop"}, {Name: "work", Handler: loadQueue, Deps: []string{"prep"}}}); err != nil {
			return
		}
		err = s.Start(ctx)
	})
	if err != nil {
		return nil, err
	}
	defer stopAll(s)
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)

	l := &loadGen{logger: r.logger, base: "http://" + s.Addr() + "/tasker", lat: map[string][]time.Duration{},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: loadMaxInFlight}}}
	if err := l.run(ctx, warmup, rate); err != nil {
		return nil, err
	}
	if err := l.drain(ctx, conn); err != nil {
		return nil, err
	}
	l.reset()
	// Bounded caches fill at their own pace; both heap readings are taken
	// without them (a leak is growth that no bound stops).
	s.Events().DropCache()
	goBefore, heapBefore := l.settle(label, -1)
	connsBefore := s.Store().PoolStats().TotalConns

	started := time.Now()
	if err := l.run(ctx, dur, rate); err != nil {
		return nil, err
	}
	figs := l.figures(rate, dur, time.Since(started))
	l.reset() // the samples are the generator's heap, not the replica's
	if err := l.drain(ctx, conn); err != nil {
		return nil, err
	}
	s.Events().DropCache()
	goAfter, heapAfter := l.settle(label, goBefore)
	connsAfter := s.Store().PoolStats().TotalConns
	r.logger.Info("load: done", slog.Int("goroutines_before", goBefore), slog.Int("goroutines_after", goAfter),
		slog.Uint64("heap_before", heapBefore), slog.Uint64("heap_after", heapAfter))

	gate := func(f Figure, target string, met bool) Figure {
		f.Target, f.Met, f.Gate = target, &met, true
		return f
	}
	growth := goAfter - goBefore
	heapPct := (float64(heapAfter) - float64(heapBefore)) / float64(heapBefore) * 100
	figs = append(figs,
		Figure{Workload: "load", Metric: "goroutines_before", Value: float64(goBefore), Unit: "goroutines (the replica's)", Replicas: 1},
		Figure{Workload: "load", Metric: "goroutines_after", Value: float64(goAfter), Unit: "goroutines (the replica's)", Replicas: 1},
		gate(Figure{Workload: "load", Metric: "goroutine_growth", Value: float64(growth), Unit: "goroutines", Replicas: 1},
			fmt.Sprintf("within ±%d", loadGoroutineSlack), growth <= loadGoroutineSlack && growth >= -loadGoroutineSlack),
		Figure{Workload: "load", Metric: "db_conns_before", Value: float64(connsBefore), Unit: "pool connections", Replicas: 1},
		Figure{Workload: "load", Metric: "db_conns_after", Value: float64(connsAfter), Unit: "pool connections", Replicas: 1},
		Figure{Workload: "load", Metric: "heap_before_mb", Value: float64(heapBefore) / (1 << 20), Unit: "MiB after GC (process)", Replicas: 1},
		Figure{Workload: "load", Metric: "heap_after_mb", Value: float64(heapAfter) / (1 << 20), Unit: "MiB after GC (process)", Replicas: 1},
	)
	heap := Figure{Workload: "load", Metric: "heap_growth_percent", Value: heapPct, Unit: "%", Replicas: 1}
	if !r.quick {
		// A one-second run shares its process with whatever else runs
		// (tests): its heap says nothing, so it is reported, not gated.
		heap = gate(heap, fmt.Sprintf("≤ %d", loadHeapGrowthPct), heapPct <= loadHeapGrowthPct)
	}
	return append(figs, heap), nil
}

// loadGen sends the load and keeps what it saw.
type loadGen struct {
	logger *slog.Logger
	base   string
	client *http.Client

	mu      sync.Mutex
	lat     map[string][]time.Duration // by route, successful requests only
	errs    []string                   // the first few failures, for the log
	tasks   []string                   // created task ids, for show
	nErrors atomic.Int64
	seq     atomic.Int64
}

// run sends rate paced requests per second for dur (creates, lists, shows
// and claims in turn; each claimed step is completed at once), waiting for
// the last answers before it returns.
func (l *loadGen) run(ctx context.Context, dur time.Duration, rate int) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	slots := make(chan struct{}, loadMaxInFlight)
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-tick.C:
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			switch i % 4 {
			case 0:
				l.create(ctx)
			case 1:
				l.do(ctx, "list", http.MethodGet, "/tasks?limit=20", nil, http.StatusOK, nil)
			case 2:
				l.show(ctx)
			case 3:
				l.claim(ctx, &wg)
			}
		})
	}
	wg.Wait()
	if n := l.nErrors.Load(); n > 0 {
		// Not an error of the run: the figure reports it, and its gate fails.
		l.mu.Lock()
		defer l.mu.Unlock()
		l.logger.Warn("load: failed requests", slog.Int64("count", n), slog.String("first", strings.Join(l.errs, "; ")))
	}
	return nil
}

func (l *loadGen) create(ctx context.Context) {
	body := fmt.Sprintf(`{"namespace":"bench","name":"load","context":{"n":%d}}`, l.seq.Add(1))
	var out struct {
		TaskID string `json:"task_id"`
	}
	if l.do(ctx, "create", http.MethodPost, "/tasks", []byte(body), http.StatusCreated, &out) {
		l.mu.Lock()
		l.tasks = append(l.tasks, out.TaskID)
		l.mu.Unlock()
	}
}

func (l *loadGen) show(ctx context.Context) {
	l.mu.Lock()
	var id string
	if n := len(l.tasks); n > 0 {
		id = l.tasks[int(l.seq.Add(1))%n]
	}
	l.mu.Unlock()
	if id == "" {
		l.do(ctx, "list", http.MethodGet, "/tasks?limit=20", nil, http.StatusOK, nil)
		return
	}
	l.do(ctx, "show", http.MethodGet, "/tasks/"+id, nil, http.StatusOK, nil)
}

// claim takes up to five remote steps and completes each in a request of
// its own, counted in wg.
func (l *loadGen) claim(ctx context.Context, wg *sync.WaitGroup) int {
	body := fmt.Sprintf(`{"worker_id":%q,"handlers":[%q],"max":%d,"lease_seconds":%d}`, loadWorker, loadQueue, loadClaimMax, loadLeaseSeconds)
	var out struct {
		Steps []struct {
			StepID  string `json:"step_id"`
			Attempt int    `json:"attempt"`
		} `json:"steps"`
	}
	if !l.do(ctx, "claim", http.MethodPost, "/workers/claim", []byte(body), http.StatusOK, &out) {
		return 0
	}
	for _, st := range out.Steps {
		wg.Go(func() {
			l.do(ctx, "complete", http.MethodPost, "/steps/"+st.StepID+"/complete",
				fmt.Appendf(nil, `{"attempt":%d,"results":{"ok":true}}`, st.Attempt), http.StatusOK, nil)
		})
	}
	return len(out.Steps)
}

// do sends one request and records its latency, or a failure when the
// answer is not want.
func (l *loadGen) do(ctx context.Context, route, method, path string, body []byte, want int, out any) bool {
	req, err := http.NewRequestWithContext(ctx, method, l.base+path, bytes.NewReader(body))
	if err != nil {
		l.fail(route, err.Error())
		return false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		l.fail(route, err.Error())
		return false
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	if err != nil || resp.StatusCode != want {
		l.fail(route, fmt.Sprintf("%d %s", resp.StatusCode, raw))
		return false
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			l.fail(route, err.Error())
			return false
		}
	}
	l.mu.Lock()
	l.lat[route] = append(l.lat[route], took)
	l.mu.Unlock()
	return true
}

func (l *loadGen) fail(route, why string) {
	l.nErrors.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, route+": "+why)
	}
}

// drain claims and completes until every task is finished, so that what
// the replica holds afterwards is not work still under way.
func (l *loadGen) drain(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(loadDrainTimeout)
	for {
		var wg sync.WaitGroup
		n := l.claim(ctx, &wg)
		wg.Wait()
		if n > 0 {
			continue
		}
		var left int
		if err := conn.QueryRow(ctx, unfinishedTasksSQL).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d unfinished after %s", errTimeout, left, loadDrainTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reset forgets the samples and the failures of the warm-up, or the
// samples once reported.
func (l *loadGen) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat, l.tasks = map[string][]time.Duration{}, nil
}

// settle closes the generator's idle connections (the replica's side of
// them ends too), waits for the replica's goroutines to come back within
// the gate of want (any count when want < 0, after a moment's quiet) and
// returns them with the heap after GC.
func (l *loadGen) settle(label string, want int) (goroutines int, heap uint64) {
	l.client.CloseIdleConnections()
	deadline := time.Now().Add(loadSettleTimeout)
	prev := -1
	for {
		time.Sleep(100 * time.Millisecond)
		goroutines = labelled(label)
		settled := want < 0 && goroutines == prev || want >= 0 && goroutines-want <= loadGoroutineSlack && want-goroutines <= loadGoroutineSlack
		if settled || time.Now().After(deadline) {
			break
		}
		prev = goroutines
	}
	runtime.GC()
	runtime.GC() // the second one frees what the first one's finalizers released
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return goroutines, m.HeapAlloc
}

// labelled counts the goroutines carrying the load's label with value v,
// from the goroutine profile (debug=1 groups them by stack with labels).
func labelled(v string) int {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return -1
	}
	want := fmt.Sprintf("%q:%q", loadGoroutineLabel, v)
	n, group := 0, 0
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if count, _, ok := strings.Cut(line, " @ "); ok && !strings.HasPrefix(line, "#") {
			group, _ = strconv.Atoi(count)
			continue
		}
		if strings.HasPrefix(line, "# labels: ") && strings.Contains(line, want) {
			n += group
		}
	}
	return n
}

// figures turns the samples into per-route p50 and p99, the rate reached
// and the failures.
func (l *loadGen) figures(rate int, dur, elapsed time.Duration) []Figure {
	l.mu.Lock()
	defer l.mu.Unlock()
	var figs []Figure
	total := 0
	for _, route := range loadRoutes {
		lat := l.lat[route]
		total += len(lat)
		slices.Sort(lat)
		p := func(q float64) float64 {
			if len(lat) == 0 {
				return 0
			}
			return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
		}
		figs = append(figs,
			Figure{Workload: "load", Metric: route + "_p50_ms", Value: p(0.5), Unit: fmt.Sprintf("ms (%d requests)", len(lat)), Replicas: 1},
			Figure{Workload: "load", Metric: route + "_p99_ms", Value: p(0.99), Unit: "ms", Replicas: 1})
	}
	errs := float64(l.nErrors.Load())
	met := errs == 0
	return append([]Figure{
		{Workload: "load", Metric: "requests_per_second", Value: float64(total) / elapsed.Seconds(),
			Unit: fmt.Sprintf("req/s (%d/s paced for %s, plus a complete per claimed step)", rate, dur), Replicas: 1},
		{Workload: "load", Metric: "errors", Value: errs, Unit: "requests", Replicas: 1, Target: "= 0", Met: &met, Gate: true},
	}, figs...)
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
