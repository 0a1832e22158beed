package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/testdb"
)

// A profiled run says so, in its table and its JSON, and comparing it with
// a run without a profile warns: the profiler's sampling slows taskerd.
func TestBenchCPUProfileIsLabelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prof, profiled, plain := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "profiled.json"), filepath.Join(dir, "plain.json")
	r := taskerd(t, []string{"TASKER_DATABASE_URL=" + testdb.AdminURL(t)},
		"bench", "--workload", "idle", "--quick", "--json", profiled, "--cpuprofile", prof)
	if r.code != 0 || !strings.Contains(r.stdout, "CPU PROFILED") || !strings.Contains(r.stdout, "queries_per_second") {
		t.Fatalf("bench: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Fatalf("profile: %v", err)
	}
	raw, err := os.ReadFile(profiled)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(raw, &rep); err != nil || rep["cpu_profiled"] != true {
		t.Fatalf("JSON (%v): cpu_profiled = %v", err, rep["cpu_profiled"])
	}
	delete(rep, "cpu_profiled")
	raw, _ = json.Marshal(rep)
	if err := os.WriteFile(plain, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c := taskerd(t, nil, "bench", "compare", plain, profiled)
	if c.code != 0 || !strings.Contains(c.stdout, "warning: only the new run took a CPU profile") || !strings.Contains(c.stdout, "queries_per_second") {
		t.Errorf("compare plain profiled: exit %d\n%s%s", c.code, c.stdout, c.stderr)
	}
	if c := taskerd(t, nil, "bench", "compare", profiled, profiled); c.code != 0 || strings.Contains(c.stdout, "warning") {
		t.Errorf("compare profiled profiled: exit %d\n%s%s", c.code, c.stdout, c.stderr)
	}
}
