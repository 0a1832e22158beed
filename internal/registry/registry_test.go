package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// replica is one registry on a test database, as a server would build it.
type replica struct {
	reg      *registry.Registry
	store    *store.Store
	notifier *notifier.Notifier
}

type replicaOptions struct {
	env, dir string
	notify   bool
}

func newReplica(t *testing.T, dsn string, o replicaOptions) replica {
	t.Helper()
	st, err := store.New(store.Config{DatabaseURL: dsn, MaxConns: 25, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg := registry.Config{Store: st, Kinds: builtins(t), Env: o.env, TemplatesDir: o.dir, Logger: quietLogger, PollInterval: time.Hour}
	var n *notifier.Notifier
	if o.notify {
		n, err = notifier.New(notifier.Config{DatabaseURL: dsn, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Notifier = n
	}
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return replica{reg: reg, store: st, notifier: n}
}

// start starts the registry, then the notifier (so that its first LISTEN
// covers the registry's channel), and waits until both are live.
func (r replica) start(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := r.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.reg.Stop(ctx) })
	if r.notifier != nil {
		if err := r.notifier.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.notifier.Stop(ctx) })
		select {
		case <-r.notifier.Ready():
		case <-time.After(30 * time.Second):
			t.Fatal("notifier never listened")
		}
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), "SET search_path = tasker"); err != nil {
		t.Fatal(err)
	}
	return conn
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func diamond(version, extra string) []byte {
	return fmt.Appendf(nil, `
namespace_name: demo
name: diamond
version: %s
description: %q
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: echo, depends_on_step: a}
  - {name: c, handler: echo, depends_on_step: a}
  - {name: d, handler: noop, depends_on_steps: [b, c]}
`, version, extra)
}

func register(t *testing.T, reg *registry.Registry, doc []byte, replace bool) *registry.RegisterResult {
	t.Helper()
	res, err := reg.Register(context.Background(), doc, registry.FormatYAML, registry.RegisterOptions{Replace: replace, Source: "test"})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return res
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestRegisterAgainConflictReplace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	r := newReplica(t, dsn, replicaOptions{})
	conn := connect(t, dsn)

	first := register(t, r.reg, diamond("1.0.0", "first"), false)
	if first.Outcome != registry.Created || first.Registered.ID == 0 || len(first.Registered.StepIDs) != 4 || first.Registered.Deleted {
		t.Fatalf("first registration: %+v %+v", first, first.Registered)
	}
	again := register(t, r.reg, diamond("1.0.0", "first"), false)
	if again.Outcome != registry.Unchanged || again.Registered.ID != first.Registered.ID {
		t.Fatalf("same template again: %s id %d", again.Outcome, again.Registered.ID)
	}

	_, err := r.reg.Register(ctx, diamond("1.0.0", "second"), registry.FormatYAML, registry.RegisterOptions{})
	var ce *registry.ConflictError
	if !errors.Is(err, registry.ErrConflict) || !errors.As(err, &ce) || ce.RegisteredHash != first.Registered.ContentHash {
		t.Fatalf("different template, same version: %v", err)
	}
	if !strings.Contains(err.Error(), "demo.diamond@1.0.0 is already registered with different content") {
		t.Errorf("conflict text: %v", err)
	}

	replaced := register(t, r.reg, diamond("1.0.0", "second"), true)
	if replaced.Outcome != registry.Replaced || replaced.Registered.ID == first.Registered.ID || replaced.Registered.Template.Description != "second" {
		t.Fatalf("replace: %s %+v", replaced.Outcome, replaced.Registered)
	}
	// Tasks of the replaced version keep it: its row and steps are untouched.
	old, err := r.reg.ByID(ctx, first.Registered.ID)
	if err != nil || !old.Deleted || old.Template.Description != "first" || old.StepIDs["d"] != first.Registered.StepIDs["d"] {
		t.Fatalf("replaced version: %+v, %v", old, err)
	}
	if n := count(t, conn, "SELECT count(*) FROM named_steps WHERE named_task_id = $1", first.Registered.ID); n != 4 {
		t.Errorf("replaced version's named_steps: %d", n)
	}
	if n := count(t, conn, "SELECT count(*) FROM named_tasks WHERE superseded_by = $1 AND deleted_at IS NOT NULL", replaced.Registered.ID); n != 1 {
		t.Errorf("superseded rows: %d", n)
	}
	got, err := r.reg.Resolve(ctx, "demo", "diamond", "1.0.0")
	if err != nil || got.ID != replaced.Registered.ID {
		t.Fatalf("resolve after replace: %+v, %v", got, err)
	}
}

func TestResolveHighestVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newReplica(t, testdb.New(t), replicaOptions{})
	for _, v := range []string{"1.9.0", "1.10.0", "1.2.0", "2.0.0-rc.1"} {
		register(t, r.reg, diamond(v, v), false)
	}
	got, err := r.reg.Resolve(ctx, "demo", "diamond", "")
	if err != nil || got.Template.Version != "2.0.0-rc.1" {
		t.Fatalf("highest: %v, %v", got, err)
	}
	if err := r.reg.Delete(ctx, "demo", "diamond", "2.0.0-rc.1", false); err != nil {
		t.Fatal(err)
	}
	if got, err := r.reg.Resolve(ctx, "demo", "diamond", ""); err != nil || got.Template.Version != "1.10.0" {
		t.Fatalf("highest after delete (semver, not text order): %v, %v", got, err)
	}
	hs, err := r.reg.Handlers("demo")
	if err != nil || len(hs) != 1 || strings.Join(hs[0].Versions, ",") != "1.2.0,1.9.0,1.10.0" || hs[0].LatestVersion != "1.10.0" {
		t.Fatalf("handlers: %+v, %v", hs, err)
	}
	if ns := r.reg.Namespaces(); len(ns) != 1 || ns[0] != (registry.NamespaceSummary{Name: "demo", HandlerCount: 1}) {
		t.Fatalf("namespaces: %+v", ns)
	}
	for _, tc := range []struct{ ns, name, version string }{{"demo", "diamond", "9.9.9"}, {"demo", "nope", ""}, {"nope", "diamond", "1.2.0"}} {
		if _, err := r.reg.Resolve(ctx, tc.ns, tc.name, tc.version); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("resolve %v: %v, want ErrNotFound", tc, err)
		}
	}
	if _, err := r.reg.Handlers("nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown namespace: %v", err)
	}
	if _, err := r.reg.ByID(ctx, 987654); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestDeleteRespectsUnfinishedTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	r := newReplica(t, dsn, replicaOptions{})
	conn := connect(t, dsn)
	reg := register(t, r.reg, diamond("1.0.0", ""), false).Registered

	insertTask := func(status string) {
		t.Helper()
		_, err := conn.Exec(ctx, `INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status)
			VALUES ($1, $2, 'demo', 'diamond', '1.0.0', $3)`, uuid.New(), reg.ID, status)
		if err != nil {
			t.Fatal(err)
		}
	}
	insertTask("complete")
	insertTask("error")
	err := r.reg.Delete(ctx, "demo", "diamond", "1.0.0", false)
	if !errors.Is(err, registry.ErrInUse) || !strings.Contains(err.Error(), "1 unfinished tasks") {
		t.Fatalf("delete with an unfinished task: %v", err)
	}
	if _, err := r.reg.Resolve(ctx, "demo", "diamond", "1.0.0"); err != nil {
		t.Fatalf("a refused delete must leave the version live: %v", err)
	}
	if err := r.reg.Delete(ctx, "demo", "diamond", "1.0.0", true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	if _, err := r.reg.Resolve(ctx, "demo", "diamond", "1.0.0"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted version still resolves: %v", err)
	}
	if old, err := r.reg.ByID(ctx, reg.ID); err != nil || !old.Deleted {
		t.Fatalf("existing tasks keep a deleted version: %+v, %v", old, err)
	}
	if err := r.reg.Delete(ctx, "demo", "diamond", "1.0.0", false); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// A deleted version may be registered anew.
	if again := register(t, r.reg, diamond("1.0.0", ""), false); again.Outcome != registry.Created || again.Registered.ID == reg.ID {
		t.Fatalf("re-register after delete: %s %d", again.Outcome, again.Registered.ID)
	}
}

// Twenty registrations of one namespace/name/version at once leave one
// row: identical ones are no-ops, different ones conflicts, none an error.
func TestConcurrentRegistrations(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	r := newReplica(t, dsn, replicaOptions{})
	conn := connect(t, dsn)
	for _, tc := range []struct {
		version   string
		different bool
	}{{"1.0.0", false}, {"2.0.0", true}} {
		var wg sync.WaitGroup
		outcomes := make(chan string, 20)
		start := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-start
				extra := "same"
				if tc.different {
					extra = fmt.Sprint(i)
				}
				res, err := r.reg.Register(context.Background(), diamond(tc.version, extra), registry.FormatYAML, registry.RegisterOptions{})
				switch {
				case err == nil:
					outcomes <- string(res.Outcome)
				case errors.Is(err, registry.ErrConflict):
					outcomes <- "conflict"
				default:
					outcomes <- "error: " + err.Error()
				}
			})
		}
		close(start)
		wg.Wait()
		close(outcomes)
		tally := map[string]int{}
		for o := range outcomes {
			tally[o]++
		}
		want := map[string]int{"created": 1, "unchanged": 19}
		if tc.different {
			want = map[string]int{"created": 1, "conflict": 19}
		}
		if fmt.Sprint(tally) != fmt.Sprint(want) {
			t.Errorf("%s: outcomes %v, want %v", tc.version, tally, want)
		}
		if n := count(t, conn, "SELECT count(*) FROM named_tasks WHERE name = 'diamond' AND version = $1", tc.version); n != 1 {
			t.Errorf("%s: %d rows, want 1", tc.version, n)
		}
	}
}

// Two replicas on one database: each sees the other's registrations and
// deletions within a second, through NOTIFY (polling is set to an hour).
func TestReplicasSeeEachOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	a := newReplica(t, dsn, replicaOptions{notify: true})
	b := newReplica(t, dsn, replicaOptions{notify: true, env: "staging"})
	a.start(t)
	b.start(t)
	eventually(t, 10*time.Second, "initial load", func() bool { return a.reg.Check(ctx) == nil && b.reg.Check(ctx) == nil })

	register(t, a.reg, diamond("1.0.0", ""), false)
	took := eventually(t, time.Second, "b sees a's registration", func() bool {
		_, err := b.reg.Handlers("demo")
		return err == nil
	})
	t.Logf("b saw a's registration after %s", took)

	doc := []byte(`
namespace_name: other
name: with_env
step_templates: [{name: s, handler: fail, handler_config: {failures: 3}}]
environments: {staging: {step_templates: [{name: s, handler_config: {failures: 0}}]}}
`)
	reg := register(t, b.reg, doc, false).Registered
	eventually(t, time.Second, "a sees b's registration", func() bool { return len(a.reg.Namespaces()) == 2 })
	// Each replica applies its own environment to the one stored document.
	fromA, err := a.reg.ByID(ctx, reg.ID)
	if err != nil || string(fromA.Template.StepTemplates[0].HandlerConfig) != `{"failures":3}` || string(reg.Template.StepTemplates[0].HandlerConfig) != `{"failures":0}` {
		t.Fatalf("environments per replica: a %s, b %s (%v)", fromA.Template.StepTemplates[0].HandlerConfig, reg.Template.StepTemplates[0].HandlerConfig, err)
	}

	if err := a.reg.Delete(ctx, "demo", "diamond", "1.0.0", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "b sees a's deletion", func() bool {
		_, err := b.reg.Handlers("demo")
		return errors.Is(err, registry.ErrNotFound)
	})
}

// A replica that has not heard of a registration yet finds it in the
// database when asked for it.
func TestResolveReadsThrough(t *testing.T) {
	t.Parallel()
	dsn := testdb.New(t)
	a := newReplica(t, dsn, replicaOptions{})
	b := newReplica(t, dsn, replicaOptions{})
	id := register(t, a.reg, diamond("1.0.0", ""), false).Registered.ID
	got, err := b.reg.Resolve(context.Background(), "demo", "diamond", "")
	if err != nil || got.ID != id {
		t.Fatalf("read-through: %+v, %v", got, err)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A file that differs from what is registered at its version does not stop
// the replica: the registered version stays in use, and the conflict is
// logged and reported by Check (the readiness probe) with the file.
func TestTemplatesDirConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	other := newReplica(t, dsn, replicaOptions{})
	registered := register(t, other.reg, diamond("1.0.0", "registered through the API"), false).Registered

	dir := t.TempDir()
	conflicting := writeFile(t, dir, "demo/diamond.yaml", diamond("1.0.0", "edited without a version bump"))
	writeFile(t, dir, "refund.yml", mustRead(t, "testdata/corpus/native_refund.yaml"))
	writeFile(t, dir, "tasker/pipeline.yaml", mustRead(t, "testdata/corpus/tasker_data_pipeline.yaml"))
	invalid := writeFile(t, dir, "broken.yaml", []byte("name: Broken\nstep_templates: []\n"))
	writeFile(t, dir, "README.md", []byte("not a template"))
	writeFile(t, dir, ".hidden/ignored.yaml", []byte("not: read"))

	r := newReplica(t, dsn, replicaOptions{dir: dir})
	r.start(t)
	var checkErr error
	eventually(t, 30*time.Second, "the conflict is reported", func() bool {
		checkErr = r.reg.Check(ctx)
		return checkErr != nil && strings.Contains(checkErr.Error(), "template file(s)")
	})
	msg := checkErr.Error()
	for _, part := range []string{"2 template file(s)", conflicting, "demo.diamond@1.0.0", "differs from the registered version", invalid, "the registered versions stay in use"} {
		if !strings.Contains(msg, part) {
			t.Errorf("check message lacks %q:\n%s", part, msg)
		}
	}
	rep := r.reg.Files()
	if len(rep.Registered) != 2 || len(rep.Problems) != 2 || rep.Problems[0].Problem != registry.ProblemInvalid || rep.Problems[1].Problem != registry.ProblemConflict {
		t.Fatalf("report: %+v", rep)
	}
	// The replica serves the registered version, and the good files.
	got, err := r.reg.Resolve(ctx, "demo", "diamond", "1.0.0")
	if err != nil || got.ID != registered.ID || got.Template.Description != "registered through the API" {
		t.Fatalf("serving: %+v, %v", got, err)
	}
	if _, err := r.reg.Resolve(ctx, "payments", "process_refund", "3.0.0"); err != nil {
		t.Fatalf("good file not registered: %v", err)
	}

	// Fixing the files and reloading (SIGHUP) clears the report.
	writeFile(t, dir, "demo/diamond.yaml", diamond("1.1.0", "edited with a version bump"))
	if err := os.Remove(invalid); err != nil {
		t.Fatal(err)
	}
	r.reg.Reload()
	eventually(t, 30*time.Second, "the reload clears the problems", func() bool { return r.reg.Check(ctx) == nil })
	if got, err := r.reg.Resolve(ctx, "demo", "diamond", ""); err != nil || got.Template.Version != "1.1.0" {
		t.Fatalf("after reload: %+v, %v", got, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Until the registry has read the database, it is not ready.
func TestCheckBeforeLoad(t *testing.T) {
	t.Parallel()
	r := newReplica(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", replicaOptions{})
	if err := r.reg.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not loaded yet") {
		t.Fatalf("check before load: %v", err)
	}
	if err := r.reg.Sync(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("sync on an unreachable database: %v", err)
	}
	if err := r.reg.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("check after a failed load: %v", err)
	}
	// Stop is safe before Start, and twice.
	if err := r.reg.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
