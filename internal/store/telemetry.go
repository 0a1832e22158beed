package store

import (
	"context"
	_ "embed"

	"github.com/jackc/pgx/v5"
)

//go:embed sql/telemetry_ready_steps.sql
var telemetryReadyStepsSQL string

// ReadySteps counts the steps runnable now and not yet claimed, by queue
// ("" is the engine's own). It reads only the ready-queue index, so a
// metrics scrape may call it.
func (s *Store) ReadySteps(ctx context.Context) (map[string]int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, telemetryReadyStepsSQL)
	if err != nil {
		return nil, translate("count ready steps", err)
	}
	out := map[string]int64{}
	var queue string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&queue, &n}, func() error {
		out[queue] = n
		return nil
	})
	return out, translate("count ready steps", err)
}
