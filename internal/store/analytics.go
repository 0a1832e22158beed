package store

import (
	"context"
	_ "embed"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Durations summarises a set of durations in milliseconds; every field is
// nil when the set is empty. Percentiles interpolate linearly between the
// closest ranks (PostgreSQL's percentile_cont).
type Durations struct {
	AvgMS, P50MS, P95MS, P99MS *float64
}

// PerformanceMetrics is one row of get_analytics_metrics(): every
// namespace together when Namespace is "", else one namespace.
type PerformanceMetrics struct {
	Namespace      string
	ActiveTasks    int64
	TasksCreated   int64
	TasksCompleted int64
	TasksFailed    int64
	CompletionRate float64
	ErrorRate      float64
	TaskDurations  Durations
	StepsCompleted int64
	StepFailures   int64
	StepErrorRate  float64
	StepDurations  Durations
}

//go:embed sql/analytics_metrics.sql
var analyticsMetricsSQL string

// PerformanceSince runs get_analytics_metrics(since): the all-namespaces
// row first, then one row per namespace with activity. It scans the task
// tables; callers cache the answer.
func (s *Store) PerformanceSince(ctx context.Context, since time.Time) ([]PerformanceMetrics, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, analyticsMetricsSQL, since)
	if err != nil {
		return nil, translate("performance metrics", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PerformanceMetrics, error) {
		var m PerformanceMetrics
		var ns *string
		td, sd := &m.TaskDurations, &m.StepDurations
		err := row.Scan(&ns, &m.ActiveTasks, &m.TasksCreated, &m.TasksCompleted, &m.TasksFailed, &m.CompletionRate,
			&m.ErrorRate, &td.AvgMS, &td.P50MS, &td.P95MS, &td.P99MS, &m.StepsCompleted, &m.StepFailures,
			&m.StepErrorRate, &sd.AvgMS, &sd.P50MS, &sd.P95MS, &sd.P99MS)
		if ns != nil {
			m.Namespace = *ns
		}
		return m, err
	})
	if err != nil {
		return nil, translate("performance metrics", err)
	}
	return out, nil
}

// BottleneckParams scopes the bottleneck analysis; empty filters match all.
type BottleneckParams struct {
	Since     time.Time
	Limit     int
	Namespace string
	Name      string
	Version   string
}

// SlowTask is a row of get_slowest_tasks().
type SlowTask struct {
	TaskID                           uuid.UUID
	Namespace, Name, Version, Status string
	DurationMS                       float64
	TotalSteps, FailedSteps          int
	Initiator                        string
	StartedAt, CompletedAt           time.Time
}

// SlowStep is a row of get_slowest_steps().
type SlowStep struct {
	StepID, TaskID                                     uuid.UUID
	Namespace, TaskName, TaskVersion, StepName, Status string
	Attempts                                           int
	DurationMS                                         float64
	ProcessedAt                                        time.Time
}

// RetriedStep is a row of get_most_retried_steps().
type RetriedStep struct {
	Namespace, TaskName, TaskVersion, StepName    string
	Executions, TotalAttempts, Retries, Exhausted int64
	MaxAttempts                                   int
}

// ErrorPattern is a row of get_error_patterns().
type ErrorPattern struct {
	Namespace, TaskName, TaskVersion, StepName, Pattern string
	Occurrences, AffectedSteps, Retried                 int64
	FirstSeenAt, LastSeenAt                             time.Time
	SampleMessage                                       string
}

// BlockingStep is a row of get_blocking_steps().
type BlockingStep struct {
	Namespace, TaskName, TaskVersion, StepName     string
	TasksBlocked, DependentsBlocked, MaxDependents int64
	Failed, Running, Waiting, Cancelled            int64
}

// Bottlenecks is the bottleneck analysis, read in one snapshot.
type Bottlenecks struct {
	SlowestTasks     []SlowTask
	SlowestSteps     []SlowStep
	MostRetriedSteps []RetriedStep
	ErrorPatterns    []ErrorPattern
	BlockingSteps    []BlockingStep
}

var (
	//go:embed sql/analytics_slowest_tasks.sql
	analyticsSlowestTasksSQL string
	//go:embed sql/analytics_slowest_steps.sql
	analyticsSlowestStepsSQL string
	//go:embed sql/analytics_most_retried_steps.sql
	analyticsMostRetriedStepsSQL string
	//go:embed sql/analytics_error_patterns.sql
	analyticsErrorPatternsSQL string
	//go:embed sql/analytics_blocking_steps.sql
	analyticsBlockingStepsSQL string
)

// Bottlenecks runs the five bottleneck functions in one read-only
// repeatable-read transaction, so their answers describe the same moment.
// They scan the task tables; callers cache the answer.
func (s *Store) Bottlenecks(ctx context.Context, p BottleneckParams) (*Bottlenecks, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	args := []any{p.Since, p.Limit, nullable(p.Namespace), nullable(p.Name), nullable(p.Version)}
	var b Bottlenecks
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if b.SlowestTasks, err = collect(ctx, tx, analyticsSlowestTasksSQL, args, func(row pgx.CollectableRow) (SlowTask, error) {
			var r SlowTask
			err := row.Scan(&r.TaskID, &r.Namespace, &r.Name, &r.Version, &r.Status, &r.DurationMS, &r.TotalSteps,
				&r.FailedSteps, &r.Initiator, &r.StartedAt, &r.CompletedAt)
			return r, err
		}); err != nil {
			return err
		}
		if b.SlowestSteps, err = collect(ctx, tx, analyticsSlowestStepsSQL, args, func(row pgx.CollectableRow) (SlowStep, error) {
			var r SlowStep
			err := row.Scan(&r.StepID, &r.TaskID, &r.Namespace, &r.TaskName, &r.TaskVersion, &r.StepName, &r.Status,
				&r.Attempts, &r.DurationMS, &r.ProcessedAt)
			return r, err
		}); err != nil {
			return err
		}
		if b.MostRetriedSteps, err = collect(ctx, tx, analyticsMostRetriedStepsSQL, args, func(row pgx.CollectableRow) (RetriedStep, error) {
			var r RetriedStep
			err := row.Scan(&r.Namespace, &r.TaskName, &r.TaskVersion, &r.StepName, &r.Executions, &r.TotalAttempts,
				&r.Retries, &r.MaxAttempts, &r.Exhausted)
			return r, err
		}); err != nil {
			return err
		}
		if b.ErrorPatterns, err = collect(ctx, tx, analyticsErrorPatternsSQL, args, func(row pgx.CollectableRow) (ErrorPattern, error) {
			var r ErrorPattern
			err := row.Scan(&r.Namespace, &r.TaskName, &r.TaskVersion, &r.StepName, &r.Pattern, &r.Occurrences,
				&r.AffectedSteps, &r.Retried, &r.FirstSeenAt, &r.LastSeenAt, &r.SampleMessage)
			return r, err
		}); err != nil {
			return err
		}
		b.BlockingSteps, err = collect(ctx, tx, analyticsBlockingStepsSQL, args, func(row pgx.CollectableRow) (BlockingStep, error) {
			var r BlockingStep
			err := row.Scan(&r.Namespace, &r.TaskName, &r.TaskVersion, &r.StepName, &r.TasksBlocked,
				&r.DependentsBlocked, &r.MaxDependents, &r.Failed, &r.Running, &r.Waiting, &r.Cancelled)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, translate("bottlenecks", err)
	}
	return &b, nil
}

// collect runs a query in tx and scans every row with fn; an empty result
// is an empty slice, so it encodes as [] rather than null.
func collect[T any](ctx context.Context, tx pgx.Tx, sql string, args []any, fn pgx.RowToFunc[T]) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, fn)
	if out == nil && err == nil {
		out = []T{}
	}
	return out, err
}
