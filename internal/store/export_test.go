package store

import "context"

// QueryRowForTest runs sql on the store's pool (its codecs included) and
// scans the one row into dest.
func QueryRowForTest(ctx context.Context, s *Store, sql string, args []any, dest ...any) error {
	return s.pool.QueryRow(ctx, sql, args...).Scan(dest...)
}

// The claim's and the flush's statements, and HotPlannerSQL the settings
// they run under, for plan tests.
var (
	StepsCompleteSQL, StepsFailSQL, HotPlannerSQL  = stepsCompleteSQL, stepsFailSQL, hotPlannerSQL
	StepsReleaseChildrenSQL, TasksCountFinishedSQL = stepsReleaseChildrenSQL, tasksCountFinishedSQL
	StepsClaimSQL                                  = stepsClaimSQL
)
