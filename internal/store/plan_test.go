package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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
	for _, tc := range []struct{ name, sql, args string }{
		{"complete", store.StepsCompleteSQL, "(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY['{}'::jsonb], 'r1')"},
		{"fail", store.StepsFailSQL, "(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY['{}'::jsonb], ARRAY[true], ARRAY[0::bigint], 'r1')"},
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{store.HotPlannerSQL, "SET LOCAL plan_cache_mode = force_generic_plan",
			"PREPARE flush_" + tc.name + " AS " + tc.sql} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := tx.Query(ctx, "EXPLAIN EXECUTE flush_"+tc.name+tc.args)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "workflow_steps_leases") || !strings.Contains(plan, "workflow_steps_pkey") {
			t.Errorf("the %s statement does not look steps up by primary key:\n%s", tc.name, plan)
		}
	}
}
