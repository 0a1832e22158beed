package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/store"
)

// A flush finds each finished step by its primary key, whatever the
// statistics say. Analysed while no step ran, the table's statistics made
// the lease index (every running step) look empty, and the state test of
// the completion, pushed into its per-row lookup, let the generic plan scan
// that index once per finished step: with thousands running, a flush took
// seconds and every replica stalled behind its locks. The updates that lock
// rows other flushes share (completed steps, fan-in children, tasks) read
// them by the primary key's scan of an id array, which is what takes their
// locks in id order: any other input to the update (a join, another index)
// would lock them in its own order, and two replicas could deadlock.
func TestFlushLooksStepsUpByKey(t *testing.T) {
	t.Parallel()
	conn := analysedDiamonds(t)
	for _, tc := range []struct{ name, sql, args string }{
		{"complete", store.StepsCompleteSQL, "(ARRAY[gen_random_uuid()], '{}'::jsonb, 'r1')"},
		{"fail", store.StepsFailSQL, "(ARRAY[gen_random_uuid()], '{}'::jsonb, 'r1')"},
		{"release", store.StepsReleaseChildrenSQL, "(ARRAY[gen_random_uuid()], 20, 'c')"},
		{"count", store.TasksCountFinishedSQL, "(ARRAY[gen_random_uuid()], '{}'::jsonb)"},
	} {
		lines := explainGeneric(t, conn, tc.sql, tc.args)
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "workflow_steps_leases") || !strings.Contains(plan, "_pkey") {
			t.Errorf("the %s statement does not look rows up by primary key:\n%s", tc.name, plan)
		}
		if in := updateInputs(lines); len(in) == 0 {
			t.Errorf("the %s statement updates nothing:\n%s", tc.name, plan)
		} else {
			for _, scan := range in {
				if !strings.Contains(scan[0], "Index Scan using ") || !strings.Contains(scan[0], "_pkey on ") || !strings.Contains(scan[1], "= ANY (") {
					t.Errorf("the %s statement's update does not read its rows by the primary key's scan of an id array:\n%s", tc.name, plan)
				}
			}
		}
	}
}

// analysedDiamonds is a database of 50 diamond tasks, analysed.
func analysedDiamonds(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, s, f := setup(t)
	for range 50 {
		nt, _ := diamond(f, "")
		if _, _, err := s.CreateTask(ctx, nt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "ANALYZE workflow_steps"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// explainGeneric is the EXPLAIN of sql's generic plan with args, under
// the hot path's planner settings.
func explainGeneric(t *testing.T, conn *pgx.Conn, sql, args string) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // only explained
	for _, stmt := range []string{store.HotPlannerSQL, "SET LOCAL plan_cache_mode = force_generic_plan", "PREPARE explained AS " + sql} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE explained"+args)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// A prepared statement outlives the transaction.
	if _, err := tx.Exec(ctx, "DEALLOCATE explained"); err != nil {
		t.Fatal(err)
	}
	return lines
}

// updateInputs returns, for each Update node of an EXPLAIN, its input's
// line and the line after it (the index condition of an index scan).
func updateInputs(lines []string) [][2]string {
	var out [][2]string
	for i, l := range lines {
		if !strings.Contains(l, "Update on ") {
			continue
		}
		// The input is the next node one level in (an InitPlan's nodes
		// are indented further).
		child := 2 // under the root
		if at := strings.Index(l, "->"); at >= 0 {
			child = at + 6
		}
		for j := i + 1; j+1 < len(lines); j++ {
			if strings.Index(lines[j], "->") == child {
				out = append(out, [2]string{lines[j], lines[j+1]})
				break
			}
		}
	}
	return out
}

// A claim updates the versions its candidates locked by their tuple ids
// (a Tid Scan), not by a second probe of the primary key, which also visits
// every dead version of each key: step updates are never HOT.
func TestClaimUpdatesTheLockedVersions(t *testing.T) {
	t.Parallel()
	lines := explainGeneric(t, analysedDiamonds(t), store.StepsClaimSQL, "('', 256, 'r1', 30000)")
	plan := strings.Join(lines, "\n")
	var claim []string // the claim's update: from its node to the next CTE's
	for i, l := range lines {
		if strings.Contains(l, "CTE claimed") {
			claim = lines[i:]
			for j, m := range claim[1:] {
				if strings.HasPrefix(strings.TrimSpace(m), "CTE ") {
					claim = claim[:j+1]
					break
				}
			}
		}
	}
	body := strings.Join(claim, "\n")
	if !strings.Contains(body, "Update on workflow_steps w") || !strings.Contains(body, "Tid Scan on workflow_steps w") ||
		strings.Contains(body, "workflow_steps_pkey on workflow_steps w") {
		t.Errorf("the claim does not update its candidates by tuple id:\n%s", plan)
	}
}
