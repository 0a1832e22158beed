package api

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// DefaultAnalyticsCacheTTL is how long an analytics answer is reused: the
// queries scan the task tables, and a dashboard polling every few seconds
// should not make the database do it each time.
const DefaultAnalyticsCacheTTL = 30 * time.Second

// Analytics periods, in hours (Tasker's default: the last 24).
const (
	defaultPeriodHours = 24
	maxPeriodHours     = 24 * 366
	bottleneckLimit    = 10
)

// maxAnalyticsCacheEntries bounds the cache: bottleneck filters are free
// text, and a client cycling through them must not grow memory without end.
const maxAnalyticsCacheEntries = 256

// analyticsHandlers answer Tasker's analytics from the SQL functions.
type analyticsHandlers struct {
	store  *store.Store
	logger *slog.Logger
	cache  *ttlCache
	now    func() time.Time
}

// DurationStats summarises durations in milliseconds; null when there was
// nothing to measure. Percentiles interpolate between the closest ranks.
type DurationStats struct {
	AvgMS *float64 `json:"avg_ms" extensions:"x-nullable" example:"812.4"`
	P50MS *float64 `json:"p50_ms" extensions:"x-nullable" example:"640"`
	P95MS *float64 `json:"p95_ms" extensions:"x-nullable" example:"2210.5"`
	P99MS *float64 `json:"p99_ms" extensions:"x-nullable" example:"4102.75"`
}

// PerformanceMetrics are the figures of one namespace, or of all together.
type PerformanceMetrics struct {
	// ActiveTasks are pending or in progress now.
	ActiveTasks int64 `json:"active_tasks" example:"12"`
	// TasksCreated in the period.
	TasksCreated int64 `json:"tasks_created" example:"480"`
	// TasksCompleted in the period (status complete).
	TasksCompleted int64 `json:"tasks_completed" example:"452"`
	// TasksFailed in the period (status error).
	TasksFailed int64 `json:"tasks_failed" example:"8"`
	// ThroughputPerHour is tasks_completed over the period's hours.
	ThroughputPerHour float64 `json:"throughput_per_hour" example:"18.83"`
	// CompletionRate is completed / (completed + failed): of the tasks that
	// ended in the period, the share that succeeded; 0 when none ended.
	CompletionRate float64 `json:"completion_rate" example:"0.9826"`
	// ErrorRate is failed / (completed + failed).
	ErrorRate float64 `json:"error_rate" example:"0.0174"`
	// TaskDuration is completed_at - started_at of the completed tasks.
	TaskDuration DurationStats `json:"task_duration"`
	// StepsCompleted in the period.
	StepsCompleted int64 `json:"steps_completed" example:"1808"`
	// StepFailures are failed attempts in the period, retried or not.
	StepFailures int64 `json:"step_failures" example:"31"`
	// StepErrorRate is step_failures / (steps_completed + step_failures).
	StepErrorRate float64 `json:"step_error_rate" example:"0.0169"`
	// StepDuration is the run time of the attempt that completed each step.
	StepDuration DurationStats `json:"step_duration"`
}

// NamespacePerformance is one namespace's figures.
type NamespacePerformance struct {
	Namespace string `json:"namespace" example:"shop"`
	PerformanceMetrics
}

// PerformanceResponse is the body of GET /analytics/performance.
type PerformanceResponse struct {
	PeriodHours int       `json:"period_hours" example:"24"`
	Since       time.Time `json:"since" example:"2025-01-30T08:00:00Z"`
	// GeneratedAt is when the figures were computed; answers are cached for
	// a short while, so it may be a few seconds old.
	GeneratedAt time.Time `json:"generated_at" example:"2025-01-31T08:00:00Z"`
	// Overall covers every namespace.
	Overall PerformanceMetrics `json:"overall"`
	// Namespaces has one entry per namespace with activity, by name.
	Namespaces []NamespacePerformance `json:"namespaces"`
}

// SlowTask is a task that ran long.
type SlowTask struct {
	TaskID      uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Namespace   string    `json:"namespace" example:"shop"`
	Name        string    `json:"name" example:"checkout"`
	Version     string    `json:"version" example:"1.0.0"`
	Status      string    `json:"status" example:"complete"`
	DurationMS  float64   `json:"duration_ms" example:"5230.5"`
	TotalSteps  int       `json:"total_steps" example:"4"`
	FailedSteps int       `json:"failed_steps" example:"0"`
	Initiator   string    `json:"initiator,omitempty" example:"web"`
	StartedAt   time.Time `json:"started_at" example:"2025-01-31T07:10:00Z"`
	CompletedAt time.Time `json:"completed_at" example:"2025-01-31T07:10:05.2305Z"`
}

// SlowStep is a step whose last attempt ran long.
type SlowStep struct {
	StepID      uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8c-7c3e-9b1a-2f4e6d8c0a1c"`
	TaskID      uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Namespace   string    `json:"namespace" example:"shop"`
	TaskName    string    `json:"task_name" example:"checkout"`
	TaskVersion string    `json:"task_version" example:"1.0.0"`
	StepName    string    `json:"step_name" example:"charge"`
	Status      string    `json:"status" example:"complete"`
	Attempts    int       `json:"attempts" example:"2"`
	DurationMS  float64   `json:"duration_ms" example:"4100.25"`
	ProcessedAt time.Time `json:"processed_at" example:"2025-01-31T07:10:04.9Z"`
}

// RetriedStep is a step template whose steps needed retries.
type RetriedStep struct {
	Namespace     string `json:"namespace" example:"shop"`
	TaskName      string `json:"task_name" example:"checkout"`
	TaskVersion   string `json:"task_version" example:"1.0.0"`
	StepName      string `json:"step_name" example:"charge"`
	Executions    int64  `json:"executions" example:"120"`
	TotalAttempts int64  `json:"total_attempts" example:"151"`
	Retries       int64  `json:"retries" example:"31"`
	MaxAttempts   int    `json:"max_attempts" example:"3"`
	// Exhausted steps rest in error: they failed for good.
	Exhausted int64 `json:"exhausted" example:"2"`
}

// ErrorPattern is one kind of failure: messages that differ only in numbers
// and UUIDs.
type ErrorPattern struct {
	Namespace     string    `json:"namespace" example:"shop"`
	TaskName      string    `json:"task_name" example:"checkout"`
	TaskVersion   string    `json:"task_version" example:"1.0.0"`
	StepName      string    `json:"step_name" example:"charge"`
	Pattern       string    `json:"pattern" example:"payment gateway answered N"`
	Occurrences   int64     `json:"occurrences" example:"29"`
	AffectedSteps int64     `json:"affected_steps" example:"27"`
	Retried       int64     `json:"retried" example:"27"`
	FirstSeenAt   time.Time `json:"first_seen_at" example:"2025-01-30T09:12:00Z"`
	LastSeenAt    time.Time `json:"last_seen_at" example:"2025-01-31T07:58:00Z"`
	SampleMessage string    `json:"sample_message" example:"payment gateway answered 503"`
}

// BlockingStep is a step template whose unfinished steps hold up others.
type BlockingStep struct {
	Namespace         string `json:"namespace" example:"shop"`
	TaskName          string `json:"task_name" example:"checkout"`
	TaskVersion       string `json:"task_version" example:"1.0.0"`
	StepName          string `json:"step_name" example:"charge"`
	TasksBlocked      int64  `json:"tasks_blocked" example:"3"`
	DependentsBlocked int64  `json:"dependents_blocked" example:"6"`
	MaxDependents     int64  `json:"max_dependents" example:"2"`
	Failed            int64  `json:"failed" example:"1"`
	Running           int64  `json:"running" example:"1"`
	Waiting           int64  `json:"waiting" example:"1"`
	Cancelled         int64  `json:"cancelled" example:"0"`
}

// BottleneckFilter echoes the scope of a bottleneck analysis.
type BottleneckFilter struct {
	Namespace string `json:"namespace,omitempty" example:"shop"`
	Name      string `json:"name,omitempty" example:"checkout"`
	Version   string `json:"version,omitempty" example:"1.0.0"`
}

// BottlenecksResponse is the body of GET /analytics/bottlenecks; each list
// holds at most 10 entries, worst first.
type BottlenecksResponse struct {
	PeriodHours      int              `json:"period_hours" example:"24"`
	Since            time.Time        `json:"since" example:"2025-01-30T08:00:00Z"`
	GeneratedAt      time.Time        `json:"generated_at" example:"2025-01-31T08:00:00Z"`
	Filter           BottleneckFilter `json:"filter"`
	SlowestTasks     []SlowTask       `json:"slowest_tasks"`
	SlowestSteps     []SlowStep       `json:"slowest_steps"`
	MostRetriedSteps []RetriedStep    `json:"most_retried_steps"`
	ErrorPatterns    []ErrorPattern   `json:"error_patterns"`
	BlockingSteps    []BlockingStep   `json:"blocking_steps"`
}

// performance answers throughput, rates and durations.
//
//	@Summary		Performance analytics
//	@Description	Task and step throughput, completion and error rates, and average/p50/p95/p99 task and step durations over the last period hours, overall and per namespace, computed by the SQL function get_analytics_metrics() with percentile_cont. Answers are cached for a few seconds (see generated_at). Permission: tasker.analytics:index.
//	@Tags			analytics
//	@Produce		json
//	@Param			period	query		int	false	"Hours to look back"	default(24)	minimum(1)	maximum(8784)
//	@Success		200		{object}	PerformanceResponse
//	@Failure		400		{object}	Problem	"Bad period"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.analytics:index"
//	@Router			/analytics/performance [get]
func (h *analyticsHandlers) performance(w http.ResponseWriter, r *http.Request) {
	q := newQueryParams(r)
	q.Unknown("period")
	period := q.Int("period", defaultPeriodHours, 1, maxPeriodHours)
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	h.cached(w, r, "performance|"+strconv.Itoa(period), func(ctx context.Context) (any, error) {
		now := h.now()
		since := now.Add(-time.Duration(period) * time.Hour)
		rows, err := h.store.PerformanceSince(ctx, since)
		if err != nil {
			return nil, err
		}
		out := PerformanceResponse{PeriodHours: period, Since: since.UTC(), GeneratedAt: now.UTC(), Namespaces: []NamespacePerformance{}}
		for _, m := range rows {
			pm := performanceJSON(m, period)
			if m.Namespace == "" {
				out.Overall = pm
				continue
			}
			out.Namespaces = append(out.Namespaces, NamespacePerformance{Namespace: m.Namespace, PerformanceMetrics: pm})
		}
		return out, nil
	})
}

func performanceJSON(m store.PerformanceMetrics, period int) PerformanceMetrics {
	return PerformanceMetrics{
		ActiveTasks: m.ActiveTasks, TasksCreated: m.TasksCreated, TasksCompleted: m.TasksCompleted,
		TasksFailed: m.TasksFailed, ThroughputPerHour: round4(float64(m.TasksCompleted) / float64(period)),
		CompletionRate: m.CompletionRate, ErrorRate: m.ErrorRate, TaskDuration: durationsJSON(m.TaskDurations),
		StepsCompleted: m.StepsCompleted, StepFailures: m.StepFailures, StepErrorRate: m.StepErrorRate,
		StepDuration: durationsJSON(m.StepDurations),
	}
}

func durationsJSON(d store.Durations) DurationStats {
	return DurationStats{AvgMS: d.AvgMS, P50MS: d.P50MS, P95MS: d.P95MS, P99MS: d.P99MS}
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// bottlenecks answers what slows tasks down.
//
//	@Summary		Bottleneck analytics
//	@Description	The slowest tasks and steps, the most retried steps, error patterns and the steps that block the most dependents over the last period hours, optionally for one namespace, name and version, from the SQL functions get_slowest_tasks(), get_slowest_steps(), get_most_retried_steps(), get_error_patterns() and get_blocking_steps(). At most 10 entries per list. Answers are cached for a few seconds (see generated_at). Permission: tasker.analytics:index.
//	@Tags			analytics
//	@Produce		json
//	@Param			namespace	query		string	false	"Template namespace"	example(shop)
//	@Param			name		query		string	false	"Template name"			example(checkout)
//	@Param			version		query		string	false	"Template version"		example(1.0.0)
//	@Param			period		query		int		false	"Hours to look back"	default(24)	minimum(1)	maximum(8784)
//	@Success		200			{object}	BottlenecksResponse
//	@Failure		400			{object}	Problem	"Bad period or parameter"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.analytics:index"
//	@Router			/analytics/bottlenecks [get]
func (h *analyticsHandlers) bottlenecks(w http.ResponseWriter, r *http.Request) {
	q := newQueryParams(r)
	q.Unknown("namespace", "name", "version", "period")
	f := BottleneckFilter{Namespace: q.String("namespace"), Name: q.String("name"), Version: q.String("version")}
	period := q.Int("period", defaultPeriodHours, 1, maxPeriodHours)
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	key := fmt.Sprintf("bottlenecks|%d|%q|%q|%q", period, f.Namespace, f.Name, f.Version)
	h.cached(w, r, key, func(ctx context.Context) (any, error) {
		now := h.now()
		since := now.Add(-time.Duration(period) * time.Hour)
		b, err := h.store.Bottlenecks(ctx, store.BottleneckParams{Since: since, Limit: bottleneckLimit,
			Namespace: f.Namespace, Name: f.Name, Version: f.Version})
		if err != nil {
			return nil, err
		}
		return bottlenecksJSON(b, period, since, now, f), nil
	})
}

func bottlenecksJSON(b *store.Bottlenecks, period int, since, now time.Time, f BottleneckFilter) BottlenecksResponse {
	out := BottlenecksResponse{PeriodHours: period, Since: since.UTC(), GeneratedAt: now.UTC(), Filter: f,
		SlowestTasks: []SlowTask{}, SlowestSteps: []SlowStep{}, MostRetriedSteps: []RetriedStep{},
		ErrorPatterns: []ErrorPattern{}, BlockingSteps: []BlockingStep{}}
	for _, t := range b.SlowestTasks {
		out.SlowestTasks = append(out.SlowestTasks, SlowTask{TaskID: t.TaskID, Namespace: t.Namespace, Name: t.Name,
			Version: t.Version, Status: t.Status, DurationMS: t.DurationMS, TotalSteps: t.TotalSteps,
			FailedSteps: t.FailedSteps, Initiator: t.Initiator, StartedAt: t.StartedAt, CompletedAt: t.CompletedAt})
	}
	for _, s := range b.SlowestSteps {
		out.SlowestSteps = append(out.SlowestSteps, SlowStep{StepID: s.StepID, TaskID: s.TaskID, Namespace: s.Namespace,
			TaskName: s.TaskName, TaskVersion: s.TaskVersion, StepName: s.StepName, Status: s.Status,
			Attempts: s.Attempts, DurationMS: s.DurationMS, ProcessedAt: s.ProcessedAt})
	}
	for _, s := range b.MostRetriedSteps {
		out.MostRetriedSteps = append(out.MostRetriedSteps, RetriedStep{Namespace: s.Namespace, TaskName: s.TaskName,
			TaskVersion: s.TaskVersion, StepName: s.StepName, Executions: s.Executions, TotalAttempts: s.TotalAttempts,
			Retries: s.Retries, MaxAttempts: s.MaxAttempts, Exhausted: s.Exhausted})
	}
	for _, p := range b.ErrorPatterns {
		out.ErrorPatterns = append(out.ErrorPatterns, ErrorPattern{Namespace: p.Namespace, TaskName: p.TaskName,
			TaskVersion: p.TaskVersion, StepName: p.StepName, Pattern: p.Pattern, Occurrences: p.Occurrences,
			AffectedSteps: p.AffectedSteps, Retried: p.Retried, FirstSeenAt: p.FirstSeenAt, LastSeenAt: p.LastSeenAt,
			SampleMessage: p.SampleMessage})
	}
	for _, s := range b.BlockingSteps {
		out.BlockingSteps = append(out.BlockingSteps, BlockingStep{Namespace: s.Namespace, TaskName: s.TaskName,
			TaskVersion: s.TaskVersion, StepName: s.StepName, TasksBlocked: s.TasksBlocked,
			DependentsBlocked: s.DependentsBlocked, MaxDependents: s.MaxDependents, Failed: s.Failed,
			Running: s.Running, Waiting: s.Waiting, Cancelled: s.Cancelled})
	}
	return out
}

// cached answers from the cache when a fresh answer for key is there, and
// otherwise computes one (once, however many requests ask at the same time)
// and keeps it. The Cache-Control header tells clients how long it stays.
func (h *analyticsHandlers) cached(w http.ResponseWriter, r *http.Request, key string, compute func(context.Context) (any, error)) {
	v, expires, err := h.cache.get(r.Context(), key, compute)
	if err != nil {
		if ctxErr := r.Context().Err(); ctxErr != nil {
			err = fmt.Errorf("analytics: %w", ctxErr)
		}
		WriteError(w, r, h.logger, err)
		return
	}
	if left := int(time.Until(expires).Seconds()); left > 0 {
		w.Header().Set("Cache-Control", "private, max-age="+strconv.Itoa(left))
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	WriteJSON(w, http.StatusOK, v)
}

// ttlCache keeps computed answers for a while. A key being computed is
// computed once: later callers wait for the first (or their own context).
type ttlCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*cacheEntry
}

type cacheEntry struct {
	done    chan struct{} // closed when value and err are set
	value   any
	err     error
	expires time.Time
}

func newTTLCache(ttl time.Duration, now func() time.Time) *ttlCache {
	return &ttlCache{ttl: ttl, now: now, entries: map[string]*cacheEntry{}}
}

func (c *ttlCache) get(ctx context.Context, key string, compute func(context.Context) (any, error)) (any, time.Time, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.done:
			if e.err != nil || !c.now().Before(e.expires) {
				ok = false // failed or stale: compute again
			}
		default: // being computed: wait for it below
		}
	}
	if !ok {
		c.evictLocked()
		e = &cacheEntry{done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		// The computation outlives a caller that gives up, so that its waiting
		// peers still get an answer; its own deadline bounds it.
		v, err := compute(context.WithoutCancel(ctx))
		c.mu.Lock()
		e.value, e.err, e.expires = v, err, c.now().Add(c.ttl)
		if err != nil || c.ttl <= 0 {
			delete(c.entries, key)
		}
		close(e.done)
		c.mu.Unlock()
		return v, e.expires, err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.value, e.expires, e.err
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	}
}

// evictLocked drops expired entries, and the oldest when the cache is full.
func (c *ttlCache) evictLocked() {
	if len(c.entries) < maxAnalyticsCacheEntries {
		return
	}
	now := c.now()
	var oldestKey string
	var oldest time.Time
	for k, e := range c.entries {
		select {
		case <-e.done:
		default:
			continue // in flight
		}
		if !now.Before(e.expires) {
			delete(c.entries, k)
			continue
		}
		if oldestKey == "" || e.expires.Before(oldest) {
			oldestKey, oldest = k, e.expires
		}
	}
	if len(c.entries) >= maxAnalyticsCacheEntries && oldestKey != "" {
		delete(c.entries, oldestKey)
	}
}
