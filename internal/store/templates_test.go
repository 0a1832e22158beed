package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

func newTemplate(hash string, replace bool) store.NewTemplate {
	return store.NewTemplate{
		Namespace: "ns", Name: "tpl", Version: "1.0.0", Description: hash,
		Document: json.RawMessage(`{"name":"tpl","hash":"` + hash + `"}`), ContentHash: hash, Replace: replace,
		Steps: []store.NewNamedStep{
			{Name: "a", Handler: "noop"},
			{Name: "b", Handler: "sleep", HandlerConfig: json.RawMessage(`{"duration":"1s"}`), Description: "waits"},
		},
	}
}

func TestRegisterTemplateRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	s := newStore(t, dsn)

	created, err := s.RegisterTemplate(ctx, newTemplate("h1", false))
	if err != nil || created.Outcome != store.RegisterCreated {
		t.Fatalf("create: %+v, %v", created, err)
	}
	if res, err := s.RegisterTemplate(ctx, newTemplate("h2", false)); err != nil || res.Outcome != store.RegisterConflict || res.ID != created.ID || res.ContentHash != "h1" {
		t.Fatalf("conflict: %+v, %v", res, err)
	}
	replaced, err := s.RegisterTemplate(ctx, newTemplate("h2", true))
	if err != nil || replaced.Outcome != store.RegisterReplaced || replaced.ReplacedID != created.ID {
		t.Fatalf("replace: %+v, %v", replaced, err)
	}
	rows, err := s.TemplatesByID(ctx, []int64{created.ID, replaced.ID})
	if err != nil || len(rows) != 2 {
		t.Fatalf("by id: %+v, %v", rows, err)
	}
	for _, r := range rows {
		if len(r.StepIDs) != 2 || r.StepIDs["a"] == 0 {
			t.Errorf("step ids of %d: %v", r.ID, r.StepIDs)
		}
		switch r.ID {
		case created.ID:
			if r.DeletedAt == nil || r.SupersededBy == nil || *r.SupersededBy != replaced.ID || r.ContentHash != "h1" {
				t.Errorf("retired row: %+v", r)
			}
		case replaced.ID:
			if r.DeletedAt != nil || r.Namespace != "ns" || !strings.Contains(string(r.Document), `"h2"`) {
				t.Errorf("live row: %+v", r)
			}
		}
	}
	live, err := s.LiveTemplates(ctx)
	if err != nil || len(live) != 1 || live[0].ID != replaced.ID || live[0].StepCount != 2 || live[0].Description != "h2" {
		t.Fatalf("live: %+v, %v", live, err)
	}
	if id, err := s.LiveTemplateID(ctx, "ns", "tpl", "1.0.0"); err != nil || id != replaced.ID {
		t.Fatalf("live id: %d, %v", id, err)
	}
	if _, err := s.LiveTemplateID(ctx, "ns", "tpl", "9.0.0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if res, err := s.DeleteTemplate(ctx, "ns", "tpl", "1.0.0", false); err != nil || !res.Deleted || res.ID != replaced.ID {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	if _, err := s.DeleteTemplate(ctx, "ns", "tpl", "1.0.0", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
}

// 00002's Down keeps every row that tasks may reference, telling retired
// rows apart by semver build metadata so the full unique constraint returns.
func TestRegistryMigrationDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	s := newStore(t, dsn)
	var ids []int64
	for i, h := range []string{"h1", "h2", "h3"} {
		res, err := s.RegisterTemplate(ctx, newTemplate(h, i > 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	m, err := migrate.New(ctx, migrate.Config{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.DownTo(ctx, 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	conn := connect(t, dsn)
	var versions []string
	rows, err := conn.Query(ctx, "SELECT version FROM named_tasks ORDER BY named_task_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	want := []string{"1.0.0+retired." + strconv.FormatInt(ids[0], 10), "1.0.0+retired." + strconv.FormatInt(ids[1], 10), "1.0.0"}
	if strings.Join(versions, ",") != strings.Join(want, ",") {
		t.Fatalf("versions after down: %v, want %v", versions, want)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO named_tasks (task_namespace_id, name, version, template, content_hash) SELECT task_namespace_id, name, version, template, 'x' FROM named_tasks WHERE version = '1.0.0'"); err == nil {
		t.Fatal("the full unique constraint is not back")
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

func TestRegistryChannel(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 63)
	for schema, want := range map[string]string{"": "tasker_registry", "custom": "custom_registry", long: long} {
		s, err := store.New(store.Config{DatabaseURL: "postgres://localhost/x", Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RegistryChannel(); got != want {
			t.Errorf("schema %q: channel %q, want %q", schema, got, want)
		}
		s.Close()
	}
}
