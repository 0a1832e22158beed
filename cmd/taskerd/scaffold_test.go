package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScaffold writes every kind with each worker language, as a user
// would, and checks the result is ready to run: the template passes
// `templates validate`, and the worker's own test passes (the Go worker
// also vets, built against this checkout of pkg/client).
func TestScaffold(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"api", "calculation", "database", "notification"} {
		for _, worker := range []string{"go", "python"} {
			t.Run(kind+"/"+worker, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				name := kind + "_flow"
				r := taskerd(t, nil, "scaffold", "--kind", kind, "--namespace", "team_a", "--name", name, "--worker", worker, "--dir", dir)
				if r.code != 0 {
					t.Fatalf("scaffold: %+v", r)
				}
				tmpl := filepath.Join(dir, "templates", name+".yaml")
				if r := taskerd(t, nil, "templates", "validate", filepath.Join(dir, "templates")); r.code != 0 ||
					!strings.Contains(r.stdout, tmpl+": ok (team_a."+name+"@0.1.0, 3 steps)") {
					t.Fatalf("validate: %+v", r)
				}
				raw, err := os.ReadFile(tmpl)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(raw), `handler: "remote:team_a.`+name+`.`) {
					t.Errorf("the template has no remote step:\n%s", raw)
				}
				wdir := filepath.Join(dir, "worker")
				if worker == "go" {
					// Scaffold wrote go.mod (the folder is in no module);
					// point it at this checkout, as its comment says.
					gomod := filepath.Join(wdir, "go.mod")
					f, err := os.OpenFile(gomod, os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					_, err = f.WriteString("\nreplace github.com/taskerd/taskerd => " + root + "\n")
					if cerr := f.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						t.Fatal(err)
					}
					// Offline: every module comes from this machine's cache.
					offline := []string{"GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off"}
					command(t, wdir, offline, "go", "mod", "tidy")
					command(t, wdir, offline, "go", "vet", "./...")
					command(t, wdir, offline, "go", "test", "-count=1", "./...")
					return
				}
				python, err := exec.LookPath("python3")
				if err != nil {
					t.Skip("python3 is not installed")
				}
				command(t, wdir, nil, python, "-m", "unittest", "-v")
			})
		}
	}
}

// command runs a program in dir and fails the test with its output when
// it fails.
func command(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestScaffoldRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"scaffold"},
		{"scaffold", "--kind", "batch", "--namespace", "a", "--name", "b"},
		{"scaffold", "--kind", "api", "--namespace", "A-B", "--name", "b"},
		{"scaffold", "--kind", "api", "--namespace", "a", "--name", "b", "--worker", "ruby"},
		{"scaffold", "--kind", "api", "--namespace", "a", "--name", "b", "extra"},
	} {
		if r := taskerd(t, nil, append(args, "--dir", dir)...); r.code != 2 || !strings.Contains(r.stderr, "Usage: taskerd scaffold") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused scaffold wrote %v", entries)
	}

	args := []string{"scaffold", "--kind", "api", "--namespace", "a", "--name", "b", "--dir", dir}
	if r := taskerd(t, nil, args...); r.code != 0 {
		t.Fatalf("first: %+v", r)
	}
	if r := taskerd(t, nil, args...); r.code != 1 || !strings.Contains(r.stderr, "exists; nothing written (--force overwrites)") {
		t.Errorf("again: %+v", r)
	}
	if r := taskerd(t, nil, append(args, "--force")...); r.code != 0 {
		t.Errorf("--force: %+v", r)
	}
	if r := taskerd(t, nil, "scaffold", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--kind") {
		t.Errorf("--help: %+v", r)
	}
}
