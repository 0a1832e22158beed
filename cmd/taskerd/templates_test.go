package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
)

const corpus = "../../internal/registry/testdata/corpus"

func TestTemplatesValidate(t *testing.T) {
	t.Parallel()
	r := taskerd(t, nil, "templates", "validate", corpus)
	if r.code != 0 || !strings.Contains(r.stdout, "8 template files valid") ||
		!strings.Contains(r.stdout, "tasker_ecommerce_checkout.yaml: ok (ecommerce.process_order@1.0.0, 5 steps)") {
		t.Fatalf("corpus: %+v", r)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: loop\nstep_templates:\n  - {name: a, handler: noop, depends_on_step: b}\n  - {name: b, handler: nope, depends_on_step: a}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(corpus, "native_diamond.json")
	r = taskerd(t, nil, "templates", "validate", good, bad)
	if r.code != 1 ||
		!strings.Contains(r.stdout, bad+": /step_templates/0/depends_on_step: dependency cycle: a → b → a") ||
		!strings.Contains(r.stdout, bad+`: /step_templates/1/handler: unknown handler kind "nope"`) ||
		!strings.Contains(r.stdout, "1 of 2 template files invalid") {
		t.Fatalf("invalid file: %+v", r)
	}

	for _, args := range [][]string{{"templates"}, {"templates", "validate"}, {"templates", "frob"}} {
		if r := taskerd(t, nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2: %+v", args, r.code, r)
		}
	}
	if r := taskerd(t, nil, "templates", "list"); r.code != 2 || !strings.Contains(r.stderr, "TASKER_DATABASE_URL") {
		t.Errorf("list without a database: %+v", r)
	}
}

func diamondFile(t *testing.T, dir, version, description string) string {
	t.Helper()
	path := filepath.Join(dir, "diamond.yaml")
	doc := fmt.Sprintf(`namespace_name: demo
name: diamond
version: %s
description: %s
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on_step: a}
  - {name: c, handler: noop, depends_on_step: a}
  - {name: d, handler: noop, depends_on_steps: [b, c]}
`, version, description)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Two replicas on one database: a template file that conflicts with what
// the other registered leaves the second one serving the registered
// version and ready, with the file named as a warning in /health/ready (a
// stale file must not take replicas out of service); fixing the file and
// sending SIGHUP clears it, and the first replica sees the new version.
func TestServeTemplatesDirConflict(t *testing.T) {
	t.Parallel()
	dsn := "TASKER_DATABASE_URL=" + testdb.New(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	diamondFile(t, dirA, "1.0.0", "from_replica_a")
	fileB := diamondFile(t, dirB, "1.0.0", "edited_without_a_version_bump")

	a := start(t, []string{dsn, "TASKER_TEMPLATES_DIR=" + dirA}, "serve", "--insecure-no-auth")
	a.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)

	b := start(t, []string{dsn, "TASKER_TEMPLATES_DIR=" + dirB}, "serve", "--insecure-no-auth")
	b.waitFor(t, "/tasker/health/live", 200, 30*time.Second)
	var body map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		var code int
		code, _, body = getJSON(t, b.base+"/tasker/health/ready")
		checks, _ := body["checks"].(map[string]any)
		if tc, ok := checks["templates"].(map[string]any); ok && code == 200 && tc["status"] == "warning" {
			msg := fmt.Sprint(tc["message"])
			if !strings.Contains(msg, fileB) || !strings.Contains(msg, "demo.diamond@1.0.0") || !strings.Contains(msg, "differs from the registered version") {
				t.Fatalf("conflict message: %s", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no conflict reported: %v", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// B keeps serving, with the registered version.
	code, _, body := getJSON(t, b.base+"/tasker/handlers/demo/diamond")
	if h, _ := body["handler"].(map[string]any); code != 200 || h["description"] != "from_replica_a" {
		t.Fatalf("b serves: %d %v", code, body)
	}
	if !strings.Contains(b.output.String(), "template file not registered") {
		t.Errorf("the conflict is not logged:\n%s", b.output.String())
	}

	// Fix the file (a new version) and reload with SIGHUP.
	diamondFile(t, dirB, "1.1.0", "with_a_version_bump")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, _, body = getJSON(t, b.base+"/tasker/health/ready")
		checks, _ := body["checks"].(map[string]any)
		if tc, _ := checks["templates"].(map[string]any); tc["status"] == "healthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warning did not clear after SIGHUP: %v", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(time.Second)
	for {
		_, _, body = getJSON(t, a.base+"/tasker/handlers/demo")
		hs, _ := body["handlers"].([]any)
		if len(hs) == 1 && hs[0].(map[string]any)["latest_version"] == "1.1.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica a did not see b's registration within a second: %v", body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	r := taskerd(t, []string{dsn}, "templates", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "NAMESPACE") || strings.Count(r.stdout, "demo ") != 2 ||
		!strings.Contains(r.stdout, "1.0.0") || !strings.Contains(r.stdout, "1.1.0") || !strings.Contains(r.stdout, "from_replica_a") {
		t.Fatalf("templates list: %+v", r)
	}
	if got := b.stop(t, 30*time.Second); got != 0 {
		t.Errorf("b exit code %d", got)
	}
	if got := a.stop(t, 30*time.Second); got != 0 {
		t.Errorf("a exit code %d", got)
	}
}
