package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/store"
)

// Metric buckets.
var (
	stepBuckets  = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	taskBuckets  = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	queueBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	httpBuckets  = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	valueBuckets = prometheus.ExponentialBuckets(0.1, 4, 14) // 0.1 … 6.7 million: amounts, counts
)

// Metrics are taskerd's Prometheus collectors. Labels never hold ids: a
// namespace, template, step or event name, a state, a route pattern.
type Metrics struct {
	tasks         *prometheus.CounterVec
	taskDuration  *prometheus.HistogramVec
	steps         *prometheus.CounterVec
	stepDuration  *prometheus.HistogramVec
	stepRetries   *prometheus.CounterVec
	queueLatency  *prometheus.HistogramVec
	events        *prometheus.CounterVec
	customEvents  *prometheus.CounterVec
	customValues  *prometheus.HistogramVec
	deliveries    *prometheus.CounterVec
	deliveryTime  prometheus.Histogram
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	httpInFlight  prometheus.Gauge
	sourcesMu     sync.Mutex
	sources       Sources
	sourceMetrics *sourceCollector
}

// Sources are the parts of a replica whose state metrics read at scrape
// time; a nil field leaves its metrics out.
type Sources struct {
	// RunningSteps is how many handlers run now (tasker_steps_in_flight).
	RunningSteps func() int
	// PoolStats reads the database pool.
	PoolStats func() store.PoolStats
	// Dropped reads the bus's dropped events by subscriber.
	Dropped func() map[string]uint64
}

func newMetrics() *Metrics {
	m := &Metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_tasks_total",
			Help: "Task transitions by the state entered (pending counts created tasks, complete finished ones).",
		}, []string{"namespace", "name", "version", "status"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_task_duration_seconds", Help: "Seconds from a task's creation to its final state.", Buckets: taskBuckets,
		}, []string{"namespace", "name", "version", "status"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_steps_total",
			Help: "Step transitions by the state entered (in_progress counts attempts, complete successes, error failures).",
		}, []string{"namespace", "task", "step", "status"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_step_duration_seconds", Help: "How long step handlers ran, per attempt, by outcome.", Buckets: stepBuckets,
		}, []string{"namespace", "task", "step", "status"}),
		stepRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_step_retries_total",
			Help: "Steps sent back to pending for another attempt (after a failure, a lost lease, or by hand).",
		}, []string{"namespace", "task", "step"}),
		queueLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_step_queue_latency_seconds", Help: "Seconds from a step becoming runnable to its claim.", Buckets: queueBuckets,
		}, []string{"namespace", "task"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_events_total", Help: "Events published on this replica's bus, by category.",
		}, []string{"category"}),
		customEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_custom_events_total", Help: "Custom business events emitted by step handlers.",
		}, []string{"namespace", "task", "event"}),
		customValues: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_custom_event_value", Help: "The numeric value field of custom events' payloads.", Buckets: valueBuckets,
		}, []string{"namespace", "task", "event"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_webhook_deliveries_total", Help: "Webhook delivery attempts by outcome: delivered, retry (failed, will retry) or failed (for good).",
		}, []string{"outcome"}),
		deliveryTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tasker_webhook_delivery_duration_seconds", Help: "How long webhook delivery attempts took.", Buckets: httpBuckets,
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_http_requests_total", Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_http_request_duration_seconds", Help: "How long HTTP requests took, by route pattern.", Buckets: httpBuckets,
		}, []string{"method", "route"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tasker_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	// Delivery outcomes exist from the start, so rate() sees the first one.
	for _, o := range []string{store.DeliveryDelivered, store.DeliveryRetry, store.DeliveryFailed} {
		m.deliveries.WithLabelValues(o)
	}
	for _, c := range append(events.Categories(), events.CategoryCustom) {
		m.events.WithLabelValues(string(c))
	}
	m.sourceMetrics = &sourceCollector{m: m}
	return m
}

func (m *Metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{
		m.tasks, m.taskDuration, m.steps, m.stepDuration, m.stepRetries, m.queueLatency, m.events,
		m.customEvents, m.customValues, m.deliveries, m.deliveryTime, m.httpRequests, m.httpDuration,
		m.httpInFlight, m.sourceMetrics,
	} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

// SetSources tells the scrape-time metrics where to read.
func (m *Metrics) SetSources(s Sources) {
	m.sourcesMu.Lock()
	defer m.sourcesMu.Unlock()
	dropped := m.sources.Dropped
	m.sources = s
	if s.Dropped == nil {
		m.sources.Dropped = dropped
	}
}

func (m *Metrics) watchBus(bus *events.Bus) {
	m.sourcesMu.Lock()
	defer m.sourcesMu.Unlock()
	m.sources.Dropped = bus.Dropped
}

// handle is the metrics subscriber of the event bus.
func (m *Metrics) handle(_ context.Context, evs []engine.Event) {
	for i := range evs {
		ev := &evs[i]
		cat := events.CategoryOf(ev)
		m.events.WithLabelValues(string(cat)).Inc()
		switch cat {
		case events.CategoryTask:
			if ev.To == "" {
				continue
			}
			m.tasks.WithLabelValues(ev.Namespace, ev.TaskName, ev.TaskVersion, ev.To).Inc()
			if finalState(ev.To) && ev.From != "error" {
				// A task resolved or cancelled after failing was timed when it failed.
				m.taskDuration.WithLabelValues(ev.Namespace, ev.TaskName, ev.TaskVersion, ev.To).Observe(events.TaskAge(ev))
			}
		case events.CategoryStep:
			if ev.To != "" {
				m.steps.WithLabelValues(ev.Namespace, ev.TaskName, ev.StepName, ev.To).Inc()
			}
			switch {
			case ev.From == "in_progress" && (ev.To == "complete" || ev.To == "error") && !ev.StartedAt.IsZero():
				m.stepDuration.WithLabelValues(ev.Namespace, ev.TaskName, ev.StepName, ev.To).Observe(ev.Duration.Seconds())
			case ev.To == "pending" && ev.From != "":
				m.stepRetries.WithLabelValues(ev.Namespace, ev.TaskName, ev.StepName).Inc()
			case ev.To == "in_progress" && !ev.ReadyAt.IsZero():
				m.queueLatency.WithLabelValues(ev.Namespace, ev.TaskName).Observe(max(ev.Time.Sub(ev.ReadyAt).Seconds(), 0))
			}
		case events.CategoryCustom:
			m.customEvents.WithLabelValues(ev.Namespace, ev.TaskName, ev.Name).Inc()
			var p struct {
				Value *float64 `json:"value"`
			}
			if len(ev.Payload) > 0 && ev.Payload[0] == '{' && json.Unmarshal(ev.Payload, &p) == nil && p.Value != nil {
				m.customValues.WithLabelValues(ev.Namespace, ev.TaskName, ev.Name).Observe(*p.Value)
			}
		}
	}
}

func finalState(s string) bool {
	switch s {
	case "complete", "error", "cancelled", "resolved_manually":
		return true
	}
	return false
}

// Delivered counts a webhook delivery attempt (webhooks.Observer).
func (m *Metrics) Delivered(outcome string, elapsed time.Duration) {
	m.deliveries.WithLabelValues(outcome).Inc()
	m.deliveryTime.Observe(elapsed.Seconds())
}

// HTTPStarted and HTTPFinished track a request; route is the router's
// pattern ("/tasker/tasks/{task_id}"), never the raw path.
func (m *Metrics) HTTPStarted() { m.httpInFlight.Inc() }

// HTTPFinished records a served request.
func (m *Metrics) HTTPFinished(method, route string, code int, elapsed time.Duration) {
	m.httpInFlight.Dec()
	m.httpRequests.WithLabelValues(method, route, statusCode(code)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(elapsed.Seconds())
}

func statusCode(code int) string {
	if code < 100 || code > 999 {
		return "unknown"
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

// sourceCollector reads the replica's state at scrape time: gauges that
// events cannot keep exact (handlers in flight, the ready queue's depth)
// and the pool's counters.
type sourceCollector struct{ m *Metrics }

var (
	descInFlight     = prometheus.NewDesc("tasker_steps_in_flight", "Step handlers running on this replica.", nil, nil)
	descDropped      = prometheus.NewDesc("tasker_events_dropped_total", "Events a full buffer dropped, by subscriber (bus: before any subscriber).", []string{"subscriber"}, nil)
	descPoolMax      = prometheus.NewDesc("tasker_db_pool_max_connections", "The database pool's connection budget.", nil, nil)
	descPoolConns    = prometheus.NewDesc("tasker_db_pool_connections", "Open database connections by state.", []string{"state"}, nil)
	descPoolAcquires = prometheus.NewDesc("tasker_db_pool_acquires_total", "Connections taken from the pool.", nil, nil)
	descPoolEmpty    = prometheus.NewDesc("tasker_db_pool_empty_acquires_total", "Acquisitions that found no idle connection and waited or opened one.", nil, nil)
)

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInFlight, descDropped, descPoolMax, descPoolConns, descPoolAcquires, descPoolEmpty} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.sourcesMu.Lock()
	s := c.m.sources
	c.m.sourcesMu.Unlock()
	if s.RunningSteps != nil {
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.RunningSteps()))
	}
	if s.Dropped != nil {
		for name, n := range s.Dropped() {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), name)
		}
	}
	if s.PoolStats != nil {
		p := s.PoolStats()
		ch <- prometheus.MustNewConstMetric(descPoolMax, prometheus.GaugeValue, float64(p.MaxConns))
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(p.IdleConns), "idle")
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(p.AcquiredConns), "acquired")
		ch <- prometheus.MustNewConstMetric(descPoolConns, prometheus.GaugeValue, float64(max(p.TotalConns-p.IdleConns-p.AcquiredConns, 0)), "constructing")
		ch <- prometheus.MustNewConstMetric(descPoolAcquires, prometheus.CounterValue, float64(p.AcquireCount))
		ch <- prometheus.MustNewConstMetric(descPoolEmpty, prometheus.CounterValue, float64(p.EmptyAcquires))
	}
}
