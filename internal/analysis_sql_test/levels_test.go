package analysissql_test

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestDependencyLevels(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		name  string
		steps []step
		want  map[string]int
		order []string // rows come by level, then name
	}{{
		name:  "diamond",
		steps: diamond("pending", "pending", "pending", "pending"),
		want:  map[string]int{"a": 0, "b": 1, "c": 1, "d": 2},
		order: []string{"a", "b", "c", "d"},
	}, {
		// Five levels; d1 also hangs off the root directly, and its level is
		// the longest path, not the shortest. z is a second root.
		name: "five-level tree",
		steps: []step{
			{Name: "r"},
			{Name: "a1", Parents: []string{"r"}},
			{Name: "a2", Parents: []string{"r"}},
			{Name: "b1", Parents: []string{"a1"}},
			{Name: "b2", Parents: []string{"a1"}},
			{Name: "b3", Parents: []string{"a2"}},
			{Name: "c1", Parents: []string{"b1"}},
			{Name: "d1", Parents: []string{"c1", "r"}},
			{Name: "z"},
		},
		want:  map[string]int{"r": 0, "z": 0, "a1": 1, "a2": 1, "b1": 2, "b2": 2, "b3": 2, "c1": 3, "d1": 4},
		order: []string{"r", "z", "a1", "a2", "b1", "b2", "b3", "c1", "d1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tk := e.task(t, tc.steps...)
			if got := e.levelsOf(t, tk.ID); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("levels = %v, want %v", got, tc.want)
			}
			var order []string
			for _, r := range query[level](t, e, `SELECT * FROM calculate_dependency_levels($1)`, tk.ID) {
				if r.WorkflowStepID != tk.Steps[r.Name] {
					t.Fatalf("%s: id %v, want %v", r.Name, r.WorkflowStepID, tk.Steps[r.Name])
				}
				order = append(order, r.Name)
			}
			if !reflect.DeepEqual(order, tc.order) {
				t.Fatalf("row order %v, want %v", order, tc.order)
			}
		})
	}
}

// The engine never builds a cycle, but the schema only forbids self-loops:
// the recursion must still end, and steps no root reaches get no level.
func TestDependencyLevelsEndOnCycles(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tk := e.task(t, step{Name: "a"}, step{Name: "b", Parents: []string{"a"}}, step{Name: "x"}, step{Name: "y", Parents: []string{"x"}})
	// a → b → a is reachable from no root once closed; so is x ⇄ y.
	mustExec(t, e, `INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id) VALUES ($1, $2, $3), ($4, $5, $3)`,
		tk.Steps["b"], tk.Steps["a"], tk.ID, tk.Steps["y"], tk.Steps["x"])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := e.conn.Query(ctx, `SELECT name, dependency_level FROM calculate_dependency_levels($1)`, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name string
		var lvl *int
		if err := rows.Scan(&name, &lvl); err != nil {
			t.Fatal(err)
		}
		if lvl != nil {
			t.Fatalf("%s: level %d on an unrooted cycle, want NULL", name, *lvl)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 4 {
		t.Fatalf("rows: %d, %v; want 4 rows", n, err)
	}

	// A cycle below a root ends too (the levels there mean nothing).
	looped := e.task(t, step{Name: "r"}, step{Name: "p", Parents: []string{"r"}}, step{Name: "q", Parents: []string{"p"}})
	mustExec(t, e, `INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id) VALUES ($1, $2, $3)`,
		looped.Steps["q"], looped.Steps["p"], looped.ID)
	var count int
	mustScan(t, e.conn.QueryRow(ctx, `SELECT count(*) FROM calculate_dependency_levels($1)`, looped.ID), &count)
	if count != 3 {
		t.Fatalf("rooted cycle: %d rows, want 3", count)
	}
}
