package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/engine"
)

//go:embed sql/retention_fill.sql
var retentionFillSQL string

// retention measures what issue 12 promises of a database that ran for
// months: one with a million finished tasks past their retention (three
// steps each, with edges and every transition) shrinks to the retained set
// while the engine goes on serving a steady load, and that load's
// ready→start latency shows no more than a moment's pause.
func (r *runner) retention(ctx context.Context) ([]Figure, error) {
	expired, kept, rate := 1_000_000, 100_000, 50
	if r.quick {
		expired, kept, rate = 2_000, 200, 20
	}
	s, url, done, err := r.single(ctx, "retention", func(c *config.Config) {
		// Passes back to back: the backlog is the point.
		c.MaintenanceInterval = time.Second
	})
	if err != nil {
		return nil, err
	}
	defer done()
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	day := 24 * time.Hour
	filling := time.Now()
	for _, batch := range []struct {
		n   int
		age time.Duration
	}{{expired, 60 * day}, {kept, day}} {
		for left := batch.n; left > 0; left -= 50_000 {
			if _, err := conn.Exec(ctx, retentionFillSQL, min(left, 50_000), batch.age.Milliseconds()); err != nil {
				return nil, fmt.Errorf("fill: %w", err)
			}
		}
	}
	// As months-old rows would be: vacuumed, analysed, visible to all.
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return nil, err
	}
	r.logger.Info("retention: database filled", slog.Int("expired", expired), slog.Int("kept", kept),
		slog.Duration("took", time.Since(filling)))
	if err := register(ctx, s, "chain3", chain(3)); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}

	// The steady load, from the start of retention to its end.
	began := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, created atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Go(func() {
				if _, _, err := s.Engine().CreateTask(ctx, engine.CreateTaskRequest{Namespace: "bench", Name: "chain3"}); err != nil {
					failed.Add(1)
				} else {
					created.Add(1)
				}
			})
		}
	})
	var shrink time.Duration
	for {
		// EXISTS, not count(*): the probe must not compete with what it
		// measures (a count over a million index entries every poll did).
		var left bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tasks
			WHERE status IN ('complete', 'error', 'cancelled', 'resolved_manually') AND completed_at < now() - interval '30 days')`).Scan(&left); err != nil {
			close(stop)
			wg.Wait()
			return nil, err
		}
		if !left {
			shrink = time.Since(began)
			break
		}
		if time.Since(began) > 30*time.Minute {
			close(stop)
			wg.Wait()
			return nil, errors.New("expired tasks left after 30 minutes")
		}
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d creates failed during retention", n)
	}
	if err := waitDone(ctx, conn, 2*time.Minute); err != nil {
		return nil, err
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE task_name = 'finished3'`).Scan(&left); err != nil {
		return nil, err
	}
	if left != kept {
		return nil, fmt.Errorf("%d finished tasks left, want exactly the %d retained", left, kept)
	}
	var pct []float64
	var steps int
	if err := conn.QueryRow(ctx, readyToStartSQL, "chain3").Scan(&pct, &steps); err != nil {
		return nil, err
	}
	return []Figure{
		{Workload: "retention", Metric: "expired_tasks_deleted", Value: float64(expired), Unit: fmt.Sprintf("tasks (3 steps each; %d kept)", kept), Replicas: 1},
		{Workload: "retention", Metric: "shrink_seconds", Value: shrink.Seconds(), Unit: "s", Replicas: 1},
		{Workload: "retention", Metric: "deleted_tasks_per_second", Value: float64(expired) / shrink.Seconds(), Unit: "tasks/s", Replicas: 1},
		{Workload: "retention", Metric: "ready_to_start_p99_ms", Value: pct[2] * 1000, Unit: fmt.Sprintf("ms (%d steps, %d tasks/s during retention)", steps, rate), Replicas: 1},
		{Workload: "retention", Metric: "ready_to_start_max_ms", Value: pct[3] * 1000, Unit: "ms", Replicas: 1},
	}, nil
}
