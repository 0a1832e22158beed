package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/testdb"
)

// A flush finds each finished step by its primary key, whatever the
// statistics say. Analysed while no step ran, the table's statistics made
// the lease index (every running step) look empty, and the state test of
// the completion, pushed into its per-row lookup, let the generic plan scan
// that index once per finished step: with thousands running, a flush took
// seconds and every replica stalled behind its locks.
func TestFlushLooksStepsUpByKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	conn := connect(t, dsn)
	s := newStore(t, dsn)
	f := newFixture(t, conn)
	for range 50 {
		nt, _ := diamond(f, "")
		if _, _, err := s.CreateTask(ctx, nt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "ANALYZE workflow_steps"); err != nil {
		t.Fatal(err)
	}
	for name, sql := range map[string]string{"complete": store.StepsCompleteSQL, "fail": store.StepsFailSQL} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{store.HotPlannerSQL, "SET LOCAL plan_cache_mode = force_generic_plan"} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec(ctx, "PREPARE flush_"+name+" AS "+sql); err != nil {
			t.Fatal(err)
		}
		args := "(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY['{}'::jsonb], 'r1')"
		if name == "fail" {
			args = "(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY['{}'::jsonb], ARRAY[true], ARRAY[0::bigint], 'r1')"
		}
		rows, err := tx.Query(ctx, "EXPLAIN EXECUTE flush_"+name+args)
		if err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plan.String(), "workflow_steps_leases") || !strings.Contains(plan.String(), "workflow_steps_pkey") {
			t.Errorf("the %s statement does not look steps up by primary key:\n%s", name, plan.String())
		}
	}
}
