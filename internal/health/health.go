// Package health answers Kubernetes probes and humans: liveness, readiness
// (database reachable, schema recent enough, nothing else failing) and a
// status summary of the system. Response shapes follow Tasker's, so probes
// and dashboards written for Tasker keep working.
package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/internal/store"
)

// Defaults, as in Tasker: readiness waits 5 s, status is cached 15 s.
const (
	DefaultReadyTimeout   = 5 * time.Second
	DefaultStatusCacheTTL = 15 * time.Second
)

// Check statuses.
const (
	StatusHealthy   = "healthy"
	StatusUnhealthy = "unhealthy"
	// StatusWarning is a problem worth reporting that does not make the
	// replica unready (e.g. a template file that conflicts with the
	// registered version, which keeps being served).
	StatusWarning = "warning"
)

// WarningError marks a check's error as a warning.
type WarningError struct{ Err error }

func (w *WarningError) Error() string { return w.Err.Error() }
func (w *WarningError) Unwrap() error { return w.Err }

// Warn makes a check's error a warning: reported, not failing readiness.
func Warn(err error) error { return &WarningError{Err: err} }

// Store is what the checker needs from the database.
type Store interface {
	SchemaVersion(ctx context.Context) (int64, error)
	HealthCounts(ctx context.Context) (store.HealthCounts, error)
	Pauses(ctx context.Context) ([]store.Pause, error)
	PoolStats() store.PoolStats
}

// CheckFunc is an extra readiness check; a non-nil error makes the replica
// unready with the error's text as the message.
type CheckFunc func(ctx context.Context) error

// Config configures a Checker.
type Config struct {
	// Store is the database; required.
	Store Store
	// RequiredVersion is the lowest schema version this binary works with.
	// A newer schema (from a rolling deploy's migration) is fine.
	RequiredVersion int64
	// Version is the binary's version, shown by Status.
	Version string
	// ReadyTimeout bounds the readiness check; default 5 s.
	ReadyTimeout time.Duration
	// StatusCacheTTL is how long Status answers from its cache; default 15 s.
	// Negative disables the cache (tests).
	StatusCacheTTL time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Checker computes the health reports.
type Checker struct {
	cfg          Config
	started      time.Time
	shuttingDown atomic.Bool

	checksMu sync.RWMutex
	checks   map[string]CheckFunc

	leadership atomic.Pointer[func() Leadership]

	statusMu     sync.Mutex // held while refreshing, so concurrent probes share one query
	statusCache  *StatusReport
	statusExpiry time.Time
}

// New validates cfg and returns a Checker.
func New(cfg Config) (*Checker, error) {
	if cfg.Store == nil {
		return nil, errors.New("health: Store is required")
	}
	cfg.ReadyTimeout = cmp.Or(cfg.ReadyTimeout, DefaultReadyTimeout)
	cfg.StatusCacheTTL = cmp.Or(cfg.StatusCacheTTL, DefaultStatusCacheTTL)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Checker{cfg: cfg, started: cfg.Now(), checks: map[string]CheckFunc{}}, nil
}

// AddCheck adds a named readiness check (e.g. the template registry's
// conflicts). Adding a name again replaces it.
func (c *Checker) AddCheck(name string, fn CheckFunc) {
	c.checksMu.Lock()
	defer c.checksMu.Unlock()
	c.checks[name] = fn
}

// SetShuttingDown makes readiness fail from now on: Kubernetes stops routing
// new traffic while the server drains.
func (c *Checker) SetShuttingDown() { c.shuttingDown.Store(true) }

// LiveReport is the body of /health/live.
type LiveReport struct {
	Alive     bool      `json:"alive"`
	Timestamp time.Time `json:"timestamp"`
	Service   string    `json:"service"`
}

// Live reports that the process serves. It touches nothing else: a slow
// database must not get the pod restarted.
func (c *Checker) Live() LiveReport {
	return LiveReport{Alive: true, Timestamp: c.cfg.Now().UTC(), Service: "tasker"}
}

// CheckResult is one readiness check.
type CheckResult struct {
	Status         string  `json:"status"`
	Message        string  `json:"message"`
	ResponseTimeMS float64 `json:"response_time_ms"`
	// Set on the migrations check only.
	CurrentVersion  *int64 `json:"current_version,omitempty"`
	RequiredVersion *int64 `json:"required_version,omitempty"`
}

// ReadyReport is the body of /health/ready.
type ReadyReport struct {
	Ready         bool                   `json:"ready"`
	Checks        map[string]CheckResult `json:"checks"`
	Message       string                 `json:"message"`
	Timestamp     time.Time              `json:"timestamp"`
	CheckDuration float64                `json:"check_duration"` // milliseconds
	FailedChecks  []string               `json:"failed_checks"`
}

// Ready runs the readiness checks within the ready timeout.
func (c *Checker) Ready(ctx context.Context) ReadyReport {
	start := c.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	r := ReadyReport{Checks: map[string]CheckResult{}, FailedChecks: []string{}}

	if c.shuttingDown.Load() {
		r.Checks["shutdown"] = CheckResult{Status: StatusUnhealthy, Message: "shutting down"}
	}

	// One query answers both "does the database respond" and "is the
	// schema recent enough".
	t0 := c.cfg.Now()
	v, err := c.cfg.Store.SchemaVersion(ctx)
	elapsed := ms(c.cfg.Now().Sub(t0))
	required := c.cfg.RequiredVersion
	switch {
	case err == nil || errors.Is(err, store.ErrNotMigrated):
		r.Checks["database"] = CheckResult{Status: StatusHealthy, Message: "database answered", ResponseTimeMS: elapsed}
		mig := CheckResult{Status: StatusHealthy, CurrentVersion: &v, RequiredVersion: &required, ResponseTimeMS: elapsed}
		if v >= required {
			mig.Message = fmt.Sprintf("schema at version %d (needs %d)", v, required)
		} else {
			mig.Status = StatusUnhealthy
			mig.Message = fmt.Sprintf("schema at version %d, this binary needs %d: run `taskerd migrate up`", v, required)
		}
		r.Checks["migrations"] = mig
	default:
		msg := "database unreachable: " + err.Error()
		if ctx.Err() != nil {
			msg = fmt.Sprintf("database did not answer within %s", c.cfg.ReadyTimeout)
		}
		r.Checks["database"] = CheckResult{Status: StatusUnhealthy, Message: msg, ResponseTimeMS: elapsed}
		r.Checks["migrations"] = CheckResult{Status: StatusUnhealthy, Message: "unknown: the database is unreachable", RequiredVersion: &required}
	}

	c.checksMu.RLock()
	for name, fn := range c.checks {
		t := c.cfg.Now()
		res := CheckResult{Status: StatusHealthy, Message: "ok"}
		if err := fn(ctx); err != nil {
			res = CheckResult{Status: StatusUnhealthy, Message: err.Error()}
			var warn *WarningError
			if errors.As(err, &warn) {
				res.Status = StatusWarning
			}
		}
		res.ResponseTimeMS = ms(c.cfg.Now().Sub(t))
		r.Checks[name] = res
	}
	c.checksMu.RUnlock()

	for name, res := range r.Checks {
		if res.Status == StatusUnhealthy {
			r.FailedChecks = append(r.FailedChecks, name)
		}
	}
	sort.Strings(r.FailedChecks)
	r.Ready = len(r.FailedChecks) == 0
	if r.Ready {
		r.Message = "ready"
	} else {
		r.Message = "not ready: " + r.Checks[r.FailedChecks[0]].Message
	}
	r.Timestamp = c.cfg.Now().UTC()
	r.CheckDuration = ms(c.cfg.Now().Sub(start))
	return r
}

// StatusReport is the body of /health/status.
type StatusReport struct {
	Healthy          bool           `json:"healthy"`
	Status           string         `json:"status"`
	Version          string         `json:"version"`
	Uptime           float64        `json:"uptime"` // seconds
	MigrationVersion int64          `json:"migration_version"`
	Metrics          StatusMetrics  `json:"metrics"`
	Database         DatabaseStatus `json:"database"`
	Timestamp        time.Time      `json:"timestamp"`
	Cached           bool           `json:"cached"`
	// Leadership is who runs maintenance (read fresh, never cached).
	Leadership *Leadership `json:"leadership,omitempty"`
	// Paused lists the paused namespaces and templates (read fresh, never
	// cached: an operator checks it right after pausing).
	Paused []store.Pause `json:"paused"`
}

// Leadership is the maintenance leader as this replica knows it.
type Leadership struct {
	Leader    bool      `json:"leader"`     // this replica leads
	Holder    string    `json:"holder"`     // the leader's replica id; "" when unknown
	ExpiresAt time.Time `json:"expires_at"` // when the leader's lease ends unrenewed
}

// SetLeadership makes Status report the leadership that fn returns.
func (c *Checker) SetLeadership(fn func() Leadership) { c.leadership.Store(&fn) }

func (c *Checker) withLeadership(r StatusReport) StatusReport {
	if fn := c.leadership.Load(); fn != nil {
		l := (*fn)()
		r.Leadership = &l
	}
	return r
}

// StatusMetrics are task, step and retry counts.
type StatusMetrics struct {
	Tasks   StateCounts `json:"tasks"`
	Steps   StateCounts `json:"steps"`
	Retries RetryCounts `json:"retries"`
}

// StateCounts counts tasks or steps by state.
type StateCounts struct {
	Total            int64 `json:"total"`
	Pending          int64 `json:"pending"`
	InProgress       int64 `json:"in_progress"`
	Complete         int64 `json:"complete"`
	Error            int64 `json:"error"`
	Cancelled        int64 `json:"cancelled"`
	ResolvedManually int64 `json:"resolved_manually"`
}

// RetryCounts are Tasker's retry figures.
type RetryCounts struct {
	RetryableErrors  int64 `json:"retryable_errors"`
	ExhaustedRetries int64 `json:"exhausted_retries"`
	InBackoff        int64 `json:"in_backoff"`
}

// DatabaseStatus describes connection usage.
type DatabaseStatus struct {
	ActiveConnections     int64           `json:"active_connections"`
	MaxConnections        int64           `json:"max_connections"`
	ConnectionUtilization float64         `json:"connection_utilization"` // percent of max_connections in use
	Pool                  store.PoolStats `json:"pool"`
}

// Status returns the system summary, from the cache while it is fresh.
func (c *Checker) Status(ctx context.Context) (StatusReport, error) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	now := c.cfg.Now()
	if c.statusCache != nil && now.Before(c.statusExpiry) {
		r := *c.statusCache
		r.Cached = true
		r.Uptime = now.Sub(c.started).Seconds()
		r.Database.Pool = c.cfg.Store.PoolStats()
		return c.fresh(ctx, r)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	v, err := c.cfg.Store.SchemaVersion(ctx)
	if err != nil {
		return StatusReport{}, err
	}
	h, err := c.cfg.Store.HealthCounts(ctx)
	if err != nil {
		return StatusReport{}, err
	}
	r := StatusReport{
		Version:          c.cfg.Version,
		Uptime:           now.Sub(c.started).Seconds(),
		MigrationVersion: v,
		Metrics: StatusMetrics{
			Tasks: StateCounts(h.Tasks),
			Steps: StateCounts(h.Steps),
			Retries: RetryCounts{
				RetryableErrors:  h.RetryableErrors,
				ExhaustedRetries: h.ExhaustedRetries,
				InBackoff:        h.InBackoff,
			},
		},
		Database: DatabaseStatus{
			ActiveConnections: h.ActiveConnections,
			MaxConnections:    h.MaxConnections,
			Pool:              c.cfg.Store.PoolStats(),
		},
		Timestamp: now.UTC(),
	}
	if h.MaxConnections > 0 {
		r.Database.ConnectionUtilization = float64(h.ActiveConnections) * 100 / float64(h.MaxConnections)
	}
	r.Healthy = v >= c.cfg.RequiredVersion && !c.shuttingDown.Load()
	r.Status = StatusHealthy
	if !r.Healthy {
		r.Status = StatusUnhealthy
	}
	if c.cfg.StatusCacheTTL > 0 {
		c.statusCache = &r
		c.statusExpiry = now.Add(c.cfg.StatusCacheTTL)
	}
	return c.fresh(ctx, r)
}

// fresh adds what Status never caches.
func (c *Checker) fresh(ctx context.Context, r StatusReport) (StatusReport, error) {
	ps, err := c.cfg.Store.Pauses(ctx)
	if err != nil {
		return StatusReport{}, err
	}
	r.Paused = ps
	if r.Paused == nil {
		r.Paused = []store.Pause{}
	}
	return c.withLeadership(r), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
