// Package maintenance keeps a long-running database healthy: retention of
// finished tasks (optionally archived first), old audit rows, finished
// webhook deliveries and workers long gone, the concurrency slots and rate
// buckets of keys nothing uses any more, and the database-wide gauges
// that scrapes must not compute. Only the elected leader (package
// leadership) runs it, once per interval.
package maintenance

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskerd/taskerd/internal/leadership"
	"github.com/taskerd/taskerd/internal/store"
)

// Defaults.
const (
	DefaultInterval            = time.Minute
	DefaultRetentionCompleted  = 30 * 24 * time.Hour
	DefaultRetentionFailed     = 90 * 24 * time.Hour
	DefaultRetentionAudit      = 365 * 24 * time.Hour
	DefaultRetentionDeliveries = 7 * 24 * time.Hour
	DefaultRetentionWorkers    = 24 * time.Hour
	DefaultLimitKeysIdle       = time.Hour
	DefaultBatchSize           = 200
	// A pass stops deleting after this long and goes on at the next
	// interval: a backlog of millions never holds the leader for long.
	DefaultPassBudget = 20 * time.Second
)

// Config configures a Runner.
type Config struct {
	// Store is the database; required.
	Store *store.Store
	// Elector tells whether this replica leads; required.
	Elector *leadership.Elector
	// Interval between passes; default 1 minute.
	Interval time.Duration
	// RetentionCompleted keeps complete, cancelled and resolved tasks this
	// long after they finished; default 30 days. Negative keeps them forever.
	RetentionCompleted time.Duration
	// RetentionFailed keeps tasks in error this long; default 90 days.
	// Negative keeps them forever.
	RetentionFailed time.Duration
	// RetentionAudit keeps audit-trail rows this long; default 1 year.
	// Negative keeps them forever.
	RetentionAudit time.Duration
	// RetentionDeliveries keeps finished webhook deliveries (and their
	// attempts) this long; default 7 days. Negative keeps them forever.
	RetentionDeliveries time.Duration
	// RetentionWorkers keeps remote workers listed this long after they
	// were last seen; default 1 day. Negative keeps them forever.
	RetentionWorkers time.Duration
	// LimitKeysIdle is how long a concurrency slot or rate bucket that no
	// task or step refers to any more is kept after a task last used its
	// key; default 1 hour. Negative keeps them forever.
	LimitKeysIdle time.Duration
	// Archive copies tasks with their steps, edges and transitions to the
	// archive tables in the transaction that deletes them.
	Archive bool
	// BatchSize is how many tasks (or rows) one delete statement removes;
	// default 200: short transactions, so the engine never waits long.
	BatchSize int
	// PassBudget bounds the time one pass spends deleting; default 20 s.
	PassBudget time.Duration
	// Registerer receives the maintenance metrics and gauges; nil skips them.
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Runner runs the maintenance passes while this replica leads.
type Runner struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	passes  chan struct{} // receives after each pass (tests)
}

// New validates cfg and registers the metrics.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Elector == nil {
		return nil, errors.New("maintenance: Store and Elector are required")
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.RetentionCompleted = cmp.Or(cfg.RetentionCompleted, DefaultRetentionCompleted)
	cfg.RetentionFailed = cmp.Or(cfg.RetentionFailed, DefaultRetentionFailed)
	cfg.RetentionAudit = cmp.Or(cfg.RetentionAudit, DefaultRetentionAudit)
	cfg.RetentionDeliveries = cmp.Or(cfg.RetentionDeliveries, DefaultRetentionDeliveries)
	cfg.RetentionWorkers = cmp.Or(cfg.RetentionWorkers, DefaultRetentionWorkers)
	cfg.LimitKeysIdle = cmp.Or(cfg.LimitKeysIdle, DefaultLimitKeysIdle)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	cfg.PassBudget = cmp.Or(cfg.PassBudget, DefaultPassBudget)
	r := &Runner{cfg: cfg, logger: cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "maintenance")),
		metrics: newMetrics(), passes: make(chan struct{}, 1)}
	if cfg.Registerer != nil {
		if err := r.metrics.register(cfg.Registerer, cfg.Elector); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Start begins the passes; it returns at once.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return nil
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go r.run(ctx)
	return nil
}

// Stop ends the passes, waiting for a running one to stop. Safe twice and
// before Start.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel = nil
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runner) run(ctx context.Context) {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.Elector.Changed():
			// Became leader (run now) or stopped leading (clear the gauges).
		case <-timer.C:
		}
		if r.cfg.Elector.IsLeader() {
			r.Pass(ctx)
		} else {
			r.metrics.clearGauges()
		}
		timer.Reset(r.cfg.Interval)
	}
}

// Pass runs every maintenance service once (the leader's job; exported for
// tests and for operators' one-off runs).
func (r *Runner) Pass(ctx context.Context) {
	// One budget for all the deleting: a backlog of millions never holds
	// the leader for long, and goes on at the next interval.
	deadline := time.Now().Add(r.cfg.PassBudget)
	st := r.cfg.Store
	tasks := func(statuses ...string) func(context.Context, time.Duration, int) (int64, error) {
		return func(ctx context.Context, keep time.Duration, n int) (int64, error) {
			return st.DeleteFinishedTasks(ctx, statuses, keep, n, r.cfg.Archive)
		}
	}
	r.service(ctx, "retention", func(ctx context.Context) error {
		return errors.Join(
			r.prune(ctx, deadline, "completed_tasks", r.cfg.RetentionCompleted, tasks("complete", "cancelled", "resolved_manually")),
			r.prune(ctx, deadline, "failed_tasks", r.cfg.RetentionFailed, tasks("error")))
	})
	r.service(ctx, "audit", func(ctx context.Context) error {
		return r.prune(ctx, deadline, "audit_events", r.cfg.RetentionAudit, st.DeleteAuditEvents)
	})
	r.service(ctx, "webhook_deliveries", func(ctx context.Context) error {
		return r.prune(ctx, deadline, "webhook_deliveries", r.cfg.RetentionDeliveries,
			func(ctx context.Context, keep time.Duration, n int) (int64, error) {
				return st.PurgeDeliveries(ctx, time.Now().Add(-keep), n)
			})
	})
	r.service(ctx, "workers", func(ctx context.Context) error {
		// Workers are few: one statement takes them all.
		return r.prune(ctx, deadline, "workers", r.cfg.RetentionWorkers,
			func(ctx context.Context, keep time.Duration, _ int) (int64, error) { return st.PruneWorkers(ctx, keep) })
	})
	r.service(ctx, "limit_keys", func(ctx context.Context) error {
		return r.sweep(ctx, deadline, "limit_keys", r.cfg.LimitKeysIdle, st.PurgeLimitKeys)
	})
	r.service(ctx, "gauges", r.gauges)
	select {
	case r.passes <- struct{}{}:
	default:
	}
}

func (r *Runner) service(ctx context.Context, name string, fn func(context.Context) error) {
	started := time.Now()
	err := fn(ctx)
	outcome := "ok"
	if err != nil {
		outcome = "error"
		if ctx.Err() == nil {
			r.logger.ErrorContext(ctx, "maintenance failed", slog.String("service", name), slog.String("error", err.Error()))
		}
	}
	r.metrics.runs.WithLabelValues(name, outcome).Inc()
	r.metrics.duration.WithLabelValues(name).Observe(time.Since(started).Seconds())
}

// prune deletes what is older than keep in batches (each its own short
// statement) until none is left or the pass's deadline is reached; a
// negative keep keeps everything.
func (r *Runner) prune(ctx context.Context, deadline time.Time, kind string, keep time.Duration,
	deleteBatch func(ctx context.Context, keep time.Duration, limit int) (int64, error)) error {
	return r.sweep(ctx, deadline, kind, keep, func(ctx context.Context, keep time.Duration, limit int) (int64, int64, error) {
		n, err := deleteBatch(ctx, keep, limit)
		return n, n, err
	})
}

// sweep is prune for batches that look at rows they may keep: a batch
// says how many it deleted and how many it looked at, and a batch that
// looked at fewer than its size was the last.
func (r *Runner) sweep(ctx context.Context, deadline time.Time, kind string, keep time.Duration,
	batch func(ctx context.Context, keep time.Duration, limit int) (deleted, looked int64, err error)) error {
	if keep < 0 {
		return nil
	}
	for time.Now().Before(deadline) {
		began := time.Now()
		n, looked, err := batch(ctx, keep, r.cfg.BatchSize)
		if err != nil {
			return err
		}
		r.metrics.deleted.WithLabelValues(kind).Add(float64(n))
		if n > 0 {
			r.logger.InfoContext(ctx, "retention deleted rows", slog.String("kind", kind), slog.Int64("rows", n))
		}
		if looked < int64(r.cfg.BatchSize) {
			break
		}
		// A backlog is deleted at half speed at most: after each full batch
		// the leader rests as long as the batch took, so the database's
		// cores and WAL are shared with the engine rather than taken.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Since(began), time.Second)):
		}
	}
	return nil
}

func (r *Runner) gauges(ctx context.Context) error {
	g, err := r.cfg.Store.ReadGauges(ctx)
	if err != nil {
		return err
	}
	r.metrics.setGauges(g)
	return nil
}
