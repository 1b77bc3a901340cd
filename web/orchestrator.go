package web

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/orchestration"
)

// OrchestratorStats is an orchestrator's live counters; *orchestration.Orchestrator satisfies it.
type OrchestratorStats interface {
	MetricsSnapshot() orchestration.MetricsSnapshot
}

// OrchestratorMetrics are what an orchestrator's collector reads at scrape time.
type OrchestratorMetrics struct {
	ProcessorUUID string
	Stats         OrchestratorStats
	Queues        QueueMetricsSource // depth and age of orchestration.OrchestrationQueues (*queue.Client)
	DBPool        DBPoolStats        // optional: database pool gauges
	Logger        *slog.Logger
}

// ForOrchestrator returns the metrics sources of o, which uses pool.
func ForOrchestrator(o *orchestration.Orchestrator, pool *pgxpool.Pool, queues QueueMetricsSource) OrchestratorMetrics {
	m := OrchestratorMetrics{ProcessorUUID: o.Config().ProcessorUUID.String(), Stats: o, Queues: queues}
	if pool != nil {
		m.DBPool = pool
	}
	return m
}

// orchestratorCollector exposes an orchestrator's counters, its queues and its database pool,
// read at scrape time (the queue_last_read_age gauge is ReadAgeCollector's):
//
//	tasker_orchestrator_info{processor_uuid}                    gauge, always 1
//	tasker_orchestrator_uptime_seconds                          gauge
//	tasker_orchestrator_tasks_created_total{namespace,name}     counter
//	tasker_orchestrator_tasks_finalized_total{state}            counter (orchestration.FinalStates)
//	tasker_orchestrator_step_results_total{result,outcome}      counter: result applied|duplicate|rejected|taken
//	tasker_orchestrator_result_processing_seconds               histogram (orchestration.LatencyBuckets)
//	tasker_orchestrator_steps_enqueued_total{namespace}         counter
//	tasker_orchestrator_expansions_total{kind}                  counter: decision | batch
//	tasker_orchestrator_sweeps_total{sweep}                     counter: readiness | recovery
//	tasker_orchestrator_sweep_duration_seconds{sweep}           histogram
//	tasker_orchestrator_sweep_found_total{sweep,kind}           counter
//	tasker_orchestrator_errors_total{kind}                      counter (orchestration.ErrorKinds)
//	tasker_orchestrator_queue_depth{queue}                      gauge
//	tasker_orchestrator_queue_visible_depth{queue}              gauge
//	tasker_orchestrator_queue_oldest_message_age_seconds{queue} gauge
//	tasker_orchestrator_queue_metrics_up                        gauge: 1 when queue metrics were read
//	tasker_orchestrator_db_pool_size / _in_use / _max           gauges (with a DBPool)
type orchestratorCollector struct {
	m                                                       OrchestratorMetrics
	start                                                   time.Time
	info, uptime, created, finalized, results, latency      *prometheus.Desc
	enqueued, expansions, sweeps, sweepDuration, sweepFound *prometheus.Desc
	errors, depth, visible, oldest, queuesUp                *prometheus.Desc
	dbPoolSize, dbPoolInUse, dbPoolMax                      *prometheus.Desc // nil without a DBPool
}

// NewOrchestratorCollector returns the collector of an orchestrator's /metrics (see README
// "Metrics").
func NewOrchestratorCollector(m OrchestratorMetrics) prometheus.Collector {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	c := &orchestratorCollector{
		m:             m,
		start:         time.Now(),
		info:          d("tasker_orchestrator_info", "Orchestrator identity.", "processor_uuid"),
		uptime:        d("tasker_orchestrator_uptime_seconds", "Seconds since the orchestrator's metrics server was created."),
		created:       d("tasker_orchestrator_tasks_created_total", "Tasks created, by template namespace and name.", "namespace", "name"),
		finalized:     d("tasker_orchestrator_tasks_finalized_total", "Tasks moved into a final state (complete, error, cancelled, resolved_manually, blocked_by_failures).", "state"),
		results:       d("tasker_orchestrator_step_results_total", "Step result messages processed, by result (applied, duplicate, rejected, taken) and outcome.", "result", "outcome"),
		latency:       d("tasker_orchestrator_result_processing_seconds", "Time from reading a step result message to committing its effect."),
		enqueued:      d("tasker_orchestrator_steps_enqueued_total", "Steps dispatched to worker queues, by namespace.", "namespace"),
		expansions:    d("tasker_orchestrator_expansions_total", "Decision and batch outcomes applied.", "kind"),
		sweeps:        d("tasker_orchestrator_sweeps_total", "Sweep runs.", "sweep"),
		sweepDuration: d("tasker_orchestrator_sweep_duration_seconds", "Sweep run duration.", "sweep"),
		sweepFound:    d("tasker_orchestrator_sweep_found_total", "What the sweeps repaired: tasks advanced (readiness); abandoned steps, stuck tasks, orphan results (recovery).", "sweep", "kind"),
		errors:        d("tasker_orchestrator_errors_total", "Errors by kind.", "kind"),
		depth:         d("tasker_orchestrator_queue_depth", "Messages in the orchestration queue, visible or not.", "queue"),
		visible:       d("tasker_orchestrator_queue_visible_depth", "Messages in the orchestration queue readable now.", "queue"),
		oldest:        d("tasker_orchestrator_queue_oldest_message_age_seconds", "Age of the oldest message in the orchestration queue.", "queue"),
		queuesUp:      d("tasker_orchestrator_queue_metrics_up", "1 when the queue metrics were read on this scrape."),
	}
	if m.DBPool != nil {
		c.dbPoolSize = d("tasker_orchestrator_db_pool_size", "Open database connections.")
		c.dbPoolInUse = d("tasker_orchestrator_db_pool_in_use", "Database connections in use.")
		c.dbPoolMax = d("tasker_orchestrator_db_pool_max", "Database pool capacity.")
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *orchestratorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.uptime, c.created, c.finalized, c.results, c.latency,
		c.enqueued, c.expansions, c.sweeps, c.sweepDuration, c.sweepFound, c.errors, c.depth, c.visible,
		c.oldest, c.queuesUp, c.dbPoolSize, c.dbPoolInUse, c.dbPoolMax} {
		if d != nil {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector: one snapshot of the orchestrator per scrape.
func (c *orchestratorCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Stats.MetricsSnapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	histogram := func(d *prometheus.Desc, h orchestration.Histogram, labels ...string) {
		buckets := make(map[float64]uint64, len(orchestration.LatencyBuckets))
		for i, b := range orchestration.LatencyBuckets {
			buckets[b] = h.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
	}
	gauge(c.info, 1, c.m.ProcessorUUID)
	gauge(c.uptime, time.Since(c.start).Seconds())
	for k, n := range s.TasksCreated {
		counter(c.created, n, k.Namespace, k.Name)
	}
	for st, n := range s.TasksFinalized {
		counter(c.finalized, n, string(st))
	}
	for o, n := range s.Results {
		counter(c.results, n, o.Disposition(), string(o))
	}
	histogram(c.latency, s.ResultLatency)
	for ns, n := range s.StepsEnqueued {
		counter(c.enqueued, n, ns)
	}
	for k, n := range s.Expansions {
		counter(c.expansions, n, k)
	}
	for name, st := range s.Sweeps {
		counter(c.sweeps, st.Runs, name)
		histogram(c.sweepDuration, st.Duration, name)
		for k, n := range st.Found {
			counter(c.sweepFound, n, name, k)
		}
	}
	for k, n := range s.Errors {
		counter(c.errors, n, k)
	}
	c.collectQueues(ch)
	if c.m.DBPool != nil {
		st := c.m.DBPool.Stat()
		gauge(c.dbPoolSize, float64(st.TotalConns()))
		gauge(c.dbPoolInUse, float64(st.AcquiredConns()))
		gauge(c.dbPoolMax, float64(st.MaxConns()))
	}
}

// collectQueues reads the orchestration queues' metrics; on failure only the _up gauge (0) is
// sent.
func (c *orchestratorCollector) collectQueues(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueMetricsTimeout)
	defer cancel()
	ms, err := c.m.Queues.MetricsAll(ctx)
	if err != nil {
		c.m.Logger.Warn("queue metrics unavailable", "error", err)
		ch <- prometheus.MustNewConstMetric(c.queuesUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.queuesUp, prometheus.GaugeValue, 1)
	for _, m := range ms {
		for _, q := range orchestration.OrchestrationQueues {
			if m.Queue == q {
				ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(m.Length), q)
				ch <- prometheus.MustNewConstMetric(c.visible, prometheus.GaugeValue, float64(m.VisibleLength), q)
				ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, m.OldestAge.Seconds(), q)
			}
		}
	}
}
