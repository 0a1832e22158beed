package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/bench"
	"github.com/taskerd/taskerd/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// The harness runs every workload tiny, so it cannot rot; the figures of a
// quick run mean nothing and are not judged here.
func TestQuickRun(t *testing.T) {
	t.Parallel()
	rep, err := bench.Run(context.Background(), bench.Config{AdminURL: testdb.AdminURL(t), Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range rep.Figures {
		seen[f.Workload] = true
		if f.Value < 0 {
			t.Errorf("%s/%s is negative: %v", f.Workload, f.Metric, f.Value)
		}
		if f.Workload == "api" && f.Metric == "errors" && f.Value != 0 {
			t.Errorf("api workload saw %v errors", f.Value)
		}
	}
	for _, w := range bench.Workloads {
		if !seen[w] {
			t.Errorf("workload %s reported nothing", w)
		}
	}
	var table bytes.Buffer
	rep.Print(&table)
	if !strings.Contains(table.String(), "steps_per_second") || !strings.Contains(table.String(), "PostgreSQL") {
		t.Errorf("table:\n%s", table.String())
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := bench.ReadReport(path)
	if err != nil || len(back.Figures) != len(rep.Figures) {
		t.Fatalf("JSON round trip: %v, %d figures", err, len(back.Figures))
	}
	var cmp bytes.Buffer
	bench.Compare(&cmp, back, rep)
	if !strings.Contains(cmp.String(), "+0.0%") {
		t.Errorf("comparing a report with itself:\n%s", cmp.String())
	}
}

// -v shows where a throughput run spent its time: each replica's claims
// and completions per 100 ms, and the tables' HOT updates.
func TestQuickThroughputDetails(t *testing.T) {
	t.Parallel()
	var details bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Config{AdminURL: testdb.AdminURL(t), Quick: true, Workload: "throughput", Statements: &details})
	if err != nil {
		t.Fatal(err)
	}
	// The warm-up's tasks run first, and are not counted.
	cpu := map[string]int{}
	for _, f := range rep.Figures {
		switch f.Metric {
		case "steps_completed":
			if f.Value != 200 {
				t.Errorf("%d replica(s) completed %v measured steps, want 200", f.Replicas, f.Value)
			}
		case "cpu_us_per_step_taskerd", "cpu_us_per_step_postgres":
			// The server's share is read in 10 ms ticks: a quick run's 200
			// steps may cost it less than one.
			cpu[f.Metric]++
			if f.Value < 0 || (f.Metric == "cpu_us_per_step_taskerd" && f.Value == 0) {
				t.Errorf("%d replica(s): %s = %v", f.Replicas, f.Metric, f.Value)
			}
		case "machine_busy_percent":
			if f.Value < 0 || f.Value > 100 {
				t.Errorf("%d replica(s): %s = %v", f.Replicas, f.Metric, f.Value)
			}
		}
	}
	// The server's CPU is read when it runs on this machine, as testdb's
	// own cluster does.
	if cpu["cpu_us_per_step_taskerd"] != 2 || (os.Getenv("TASKER_TEST_DATABASE_URL") == "" && cpu["cpu_us_per_step_postgres"] != 2) {
		t.Errorf("CPU figures per replica count: %v", cpu)
	}
	out := details.String()
	for _, want := range []string{"-- throughput, 1 replica(s): per 100 ms", "-- throughput, 3 replica(s): per 100 ms",
		"updates of tasks:", "updates of workflow_steps:"} {
		if !strings.Contains(out, want) {
			t.Errorf("-v output lacks %q:\n%s", want, out)
		}
	}
	// The quick run's 200 measured steps, claimed and completed, in the buckets.
	claimed, done := 0, 0
	for _, line := range strings.Split(out, "\n") {
		var ms, c, cs, d, fs int
		var replica string
		if n, _ := fmt.Sscanf(line, "%d %s %d %d %d %d", &ms, &replica, &c, &cs, &d, &fs); n == 6 {
			claimed, done = claimed+c, done+d
		}
	}
	if claimed != 400 || done != 400 {
		t.Errorf("the timelines count %d claims and %d completions, want 400 each (200 steps, twice)", claimed, done)
	}
}

// The retention workload (named only) shrinks a filled database to exactly
// its retained set while a load runs; its quick form keeps it honest.
func TestQuickRetention(t *testing.T) {
	t.Parallel()
	rep, err := bench.Run(context.Background(), bench.Config{AdminURL: testdb.AdminURL(t), Quick: true, Workload: "retention"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range rep.Figures {
		if f.Workload != "retention" {
			t.Errorf("a named workload ran another: %+v", f)
		}
		got[f.Metric] = f.Value
	}
	if got["expired_tasks_deleted"] != 2000 || got["shrink_seconds"] <= 0 || got["ready_to_start_max_ms"] < got["ready_to_start_p99_ms"] {
		t.Fatalf("figures: %v", got)
	}
}

func TestUnknownWorkload(t *testing.T) {
	t.Parallel()
	if _, err := bench.Run(context.Background(), bench.Config{Workload: "nope"}); err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Fatalf("err = %v", err)
	}
}

// The load workload (named only) sends mixed API traffic at a fixed rate
// and gates on failed requests and on what the replica holds afterwards;
// its quick form runs a second of it, where every gate but the heap's
// (shared with the other tests of this process) still applies.
func TestQuickLoad(t *testing.T) {
	t.Parallel()
	rep, err := bench.Run(context.Background(), bench.Config{AdminURL: testdb.AdminURL(t), Quick: true, Workload: "load"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bench.Figure{}
	for _, f := range rep.Figures {
		if f.Workload != "load" {
			t.Errorf("a named workload ran another: %+v", f)
		}
		got[f.Metric] = f
	}
	for _, route := range []string{"create", "list", "show", "claim", "complete"} {
		if f, ok := got[route+"_p99_ms"]; !ok || f.Value <= 0 || got[route+"_p50_ms"].Value > f.Value {
			t.Errorf("%s: p50 %v, p99 %v", route, got[route+"_p50_ms"], f)
		}
	}
	if got["goroutines_before"].Value <= 0 {
		t.Errorf("the replica's goroutines were not counted: %+v", got["goroutines_before"])
	}
	for _, m := range []string{"errors", "goroutine_growth"} {
		if f := got[m]; !f.Gate || f.Met == nil {
			t.Errorf("%s carries no gate: %+v", m, f)
		}
	}
	if missed := rep.Missed(); len(missed) > 0 {
		t.Errorf("gates missed: %+v", missed)
	}
}

// Missed lists exactly the gated figures whose target was not met.
func TestMissedGates(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	rep := &bench.Report{Figures: []bench.Figure{
		{Metric: "met", Gate: true, Met: &yes},
		{Metric: "missed", Gate: true, Met: &no},
		{Metric: "unjudged", Gate: true},
		{Metric: "target only", Met: &no},
	}}
	var names []string
	for _, f := range rep.Missed() {
		names = append(names, f.Metric)
	}
	if strings.Join(names, ",") != "missed,unjudged" {
		t.Fatalf("Missed() = %v", names)
	}
}
