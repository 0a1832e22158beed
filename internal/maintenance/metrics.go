package maintenance

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskerd/taskerd/internal/leadership"
	"github.com/taskerd/taskerd/internal/store"
)

// metrics are the maintenance counters and the leader's gauges. The gauges
// are set by the leader's pass and read at scrape time for free; a replica
// that does not lead exports none of them, so sum() across replicas counts
// each once.
type metrics struct {
	runs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	deleted    *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
	oldest     *prometheus.GaugeVec
	waiting    *prometheus.GaugeVec
	tasks      *prometheus.GaugeVec
	ready      *prometheus.GaugeVec
	outbox     *prometheus.GaugeVec // no labels: a vec so that a follower can drop it
}

// defaultQueueLabel is the queue label of the engine's own steps (remote
// steps carry their queue, "remote:<name>").
const defaultQueueLabel = "default"

func newMetrics() *metrics {
	return &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_maintenance_runs_total", Help: "Maintenance service runs by the leader, by outcome.",
		}, []string{"service", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_maintenance_duration_seconds", Help: "Seconds one maintenance service run took.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.5, 1, 5, 20, 60},
		}, []string{"service"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_retention_deleted_total",
			Help: "Rows deleted by retention, by kind (completed_tasks, failed_tasks, audit_events, webhook_deliveries, workers, limit_keys).",
		}, []string{"kind"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_queue_depth", Help: "Steps runnable now and not yet claimed, by template (set by the leader each maintenance interval).",
		}, []string{"namespace", "task"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_oldest_runnable_step_age_seconds", Help: "How long the oldest runnable step of a template has waited (set by the leader).",
		}, []string{"namespace", "task"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_waiting_steps",
			Help: "Steps ready but parked, by template and reason: paused, limit (a step concurrency slot), task_limit (a task concurrency slot) (set by the leader).",
		}, []string{"namespace", "task", "reason"}),
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_tasks_by_status", Help: "Tasks in the database by status (set by the leader each maintenance interval).",
		}, []string{"status"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_ready_steps", Help: "Steps runnable now and not yet claimed (the ready queue's depth), by handler queue (set by the leader each maintenance interval).",
		}, []string{"queue"}),
		outbox: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tasker_webhook_outbox_pending", Help: "Webhook deliveries waiting in the outbox (set by the leader each maintenance interval).",
		}, nil),
	}
}

func (m *metrics) register(reg prometheus.Registerer, e *leadership.Elector) error {
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_leader", Help: "1 when this replica is the elected maintenance leader.",
	}, func() float64 {
		if e.IsLeader() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.runs, m.duration, m.deleted, m.queueDepth, m.oldest, m.waiting, m.tasks, m.ready, m.outbox, leader} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) setGauges(g *store.Gauges) {
	m.queueDepth.Reset()
	m.oldest.Reset()
	m.waiting.Reset()
	for _, q := range g.Queues {
		if q.Waiting != "" {
			m.waiting.WithLabelValues(q.Namespace, q.Task, q.Waiting).Set(float64(q.Ready))
			continue
		}
		m.queueDepth.WithLabelValues(q.Namespace, q.Task).Set(float64(q.Ready))
		m.oldest.WithLabelValues(q.Namespace, q.Task).Set(q.OldestSeconds)
	}
	m.ready.Reset()
	if _, ok := g.Ready[""]; !ok {
		m.ready.WithLabelValues(defaultQueueLabel) // the engine's own queue is always reported
	}
	for q, n := range g.Ready {
		if q == "" {
			q = defaultQueueLabel
		}
		m.ready.WithLabelValues(q).Set(float64(n))
	}
	m.outbox.WithLabelValues().Set(float64(g.PendingDeliveries))
	m.tasks.Reset()
	for _, status := range []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"} {
		m.tasks.WithLabelValues(status).Set(float64(g.Tasks[status]))
	}
}

func (m *metrics) clearGauges() {
	m.ready.Reset()
	m.outbox.Reset()
	m.queueDepth.Reset()
	m.oldest.Reset()
	m.waiting.Reset()
	m.tasks.Reset()
}
