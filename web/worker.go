package web

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/worker"
)

// WorkerStats is a worker's live counters; *worker.Metrics satisfies it.
type WorkerStats interface {
	Snapshot() worker.Snapshot
	InFlight() int64
	ReadAgeSource
}

// DBPoolStats reports the database pool; *pgxpool.Pool satisfies it.
type DBPoolStats interface {
	Stat() *pgxpool.Stat
}

// WorkerOptions assemble a worker's server; ForWorker fills them from a running worker.
type WorkerOptions struct {
	Addr        string
	WorkerID    string
	Version     string
	Namespaces  []string // the worker's namespaces: their queues are checked and measured
	Concurrency int      // handler pool capacity
	// StaleReads is how old the last successful read of a worker queue may be before
	// readiness fails while handler slots are free (ForWorker: twice the database call
	// timeout plus the poll interval).
	StaleReads time.Duration
	Stats      WorkerStats
	DB         Pinger             // readiness "database" check (SelectOne(pool))
	Queues     QueueMetricsSource // readiness "queues" check and queue metrics (*queue.Client)
	DBPool     DBPoolStats        // optional: database pool gauges
	Templates  TemplateSource     // optional: /v1/templates
	Logger     *slog.Logger
	// TemplateAccess optionally guards the template routes (see Config.TemplateAccess).
	TemplateAccess TemplateAccess
}

// ForWorker returns the options of w's server: its config, metrics, the database pool it uses
// and the handler names of reg (may be nil).
func ForWorker(w *worker.Worker, pool *pgxpool.Pool, reg HandlerLister, addr, version string) WorkerOptions {
	cfg := w.Config()
	return WorkerOptions{
		Addr:        addr,
		WorkerID:    cfg.WorkerID,
		Version:     version,
		Namespaces:  cfg.Namespaces,
		Concurrency: cfg.Concurrency,
		StaleReads:  2*cfg.DBTimeout + cfg.PollInterval,
		Stats:       w.Metrics(),
		DB:          SelectOne(pool),
		Queues:      queue.NewClient(pool),
		DBPool:      pool,
		Templates:   DBTemplates{DB: pool, Handlers: reg, Namespaces: cfg.Namespaces},
	}
}

// WorkerQueues are the queues a worker needs: its namespaces' worker queues and the results
// queue it reports to.
func WorkerQueues(namespaces []string) []string {
	qs := make([]string, 0, len(namespaces)+1)
	for _, ns := range namespaces {
		qs = append(qs, queue.WorkerQueue(ns))
	}
	return append(qs, queue.StepResultsQueue)
}

// NewWorker returns a worker's server: readiness requires the database (SELECT 1), the worker
// queues, and a handler pool that is not saturated; /metrics serves the worker's counters, its
// queues and its database pool (see README "Metrics").
func NewWorker(o WorkerOptions) *Server {
	start := time.Now()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return New(Config{
		Addr:       o.Addr,
		IDKey:      "worker_id",
		InstanceID: o.WorkerID,
		Checks: []Check{
			DatabaseCheck(o.DB),
			QueuesCheck(o.Queues, WorkerQueues(o.Namespaces)),
			PoolCheck(o.Stats, o.Concurrency),
			ReadsCheck(o.Stats, o.StaleReads, func() bool { return o.Stats.InFlight() >= int64(o.Concurrency) }),
		},
		Collectors: []prometheus.Collector{newWorkerCollector(o)},
		SystemInfo: func() map[string]any {
			info := map[string]any{
				"version":              o.Version,
				"uptime_seconds":       int64(time.Since(start).Seconds()),
				"worker_type":          "go",
				"supported_namespaces": o.Namespaces,
				"max_concurrent":       o.Concurrency,
			}
			if o.DBPool != nil {
				info["database_pool_size"] = o.DBPool.Stat().TotalConns()
			}
			return info
		},
		Templates:      o.Templates,
		TemplateAccess: o.TemplateAccess,
		Logger:         o.Logger,
	})
}

// queueMetricsTimeout bounds the queue metrics query of a scrape, so a slow database turns into
// tasker_worker_queue_metrics_up 0 before a scraper's usual 10s timeout.
const queueMetricsTimeout = 5 * time.Second

// workerCounters are the worker's unlabelled counters, read from its snapshot.
var workerCounters = []struct {
	name, help string
	value      func(*worker.Snapshot) int64
}{
	{"tasker_worker_messages_read_total", "Step messages read from the worker queues.", func(s *worker.Snapshot) int64 { return s.MessagesRead }},
	{"tasker_worker_steps_claimed_total", "Steps this worker claimed (moved to in_progress).", func(s *worker.Snapshot) int64 { return s.Claimed }},
	{"tasker_worker_db_errors_total", "Database errors while reading, claiming or completing.", func(s *worker.Snapshot) int64 { return s.DBErrors }},
	{"tasker_worker_steps_recovered_total", "Steps abandoned in progress by a dead worker and reported as timed out.", func(s *worker.Snapshot) int64 { return s.Recovered }},
	{"tasker_worker_late_completions_rejected_total", "Results discarded because the claim was superseded.", func(s *worker.Snapshot) int64 { return s.LateRejected }},
	{"tasker_worker_messages_malformed_total", "Messages archived because they could not be decoded.", func(s *worker.Snapshot) int64 { return s.Malformed }},
	{"tasker_worker_messages_duplicate_total", "Messages archived because their step was not claimable.", func(s *worker.Snapshot) int64 { return s.Duplicates }},
	{"tasker_worker_messages_archived_total", "Messages archived with a reason.", func(s *worker.Snapshot) int64 { return s.Archived }},
	{"tasker_worker_steps_in_progress_elsewhere_total", "Messages left alone because a live worker runs their step.", func(s *worker.Snapshot) int64 { return s.InProgressElsewhere }},
	{"tasker_worker_handlers_interrupted_total", "Handlers cancelled by a hard shutdown.", func(s *worker.Snapshot) int64 { return s.Interrupted }},
	{"tasker_worker_checkpoints_total", "Checkpoint yields persisted.", func(s *worker.Snapshot) int64 { return s.Checkpoints }},
	{"tasker_worker_completion_groups_total", "Statements that wrote a group of completions.", func(s *worker.Snapshot) int64 { return s.CompletionGroups }},
	{"tasker_worker_grouped_completions_total", "Completions written by group statements.", func(s *worker.Snapshot) int64 { return s.GroupedCompletions }},
	{"tasker_worker_completion_groups_split_total", "Group statements that failed; their completions were written one at a time.", func(s *worker.Snapshot) int64 { return s.GroupsSplit }},
}

// workerCollector exposes a worker's counters, its queues and its database pool, read at scrape
// time from the worker's snapshot, the queue metrics and the pool statistics:
//
//	tasker_worker_info{version,worker_id}                     gauge, always 1
//	tasker_worker_uptime_seconds                              gauge
//	tasker_worker_messages_read_total                         counter
//	tasker_worker_steps_claimed_total                         counter
//	tasker_worker_steps_completed_total{namespace,handler}    counter: successful handler results
//	tasker_worker_steps_failed_total{namespace,handler}       counter: failed handler results
//	tasker_worker_step_results_committed_total{result}        counter: results persisted (success|failure)
//	tasker_worker_handler_duration_seconds{namespace,handler} histogram (worker.DurationBuckets)
//	tasker_worker_handler_pool_in_use / _capacity             gauges
//	tasker_worker_handlers_stuck                              gauge: handlers ignoring cancellation
//	tasker_worker_queue_depth{namespace}                      gauge: messages in worker_<ns>_queue
//	tasker_worker_queue_visible_depth{namespace}              gauge: of which readable now
//	tasker_worker_queue_oldest_message_age_seconds{namespace} gauge
//	tasker_worker_queue_metrics_up                            gauge: 1 when queue metrics were read
//	tasker_worker_queue_last_read_age_seconds{queue}          gauge: since the last successful read
//	tasker_worker_wakeups_total{source}                       counter: notify | poll
//	tasker_worker_notified_claims_total{outcome}              counter: claimed | left
//	workerCounters                                            the other counters
//	tasker_worker_db_pool_size / _in_use / _max               gauges (with a DBPool)
type workerCollector struct {
	o                                                    WorkerOptions
	info, uptime, completed, failed, committed, duration *prometheus.Desc
	poolInUse, poolCapacity, stuck, wakeups, notified    *prometheus.Desc
	depth, visible, oldest, queuesUp                     *prometheus.Desc
	dbPoolSize, dbPoolInUse, dbPoolMax                   *prometheus.Desc   // nil without a DBPool
	counters                                             []*prometheus.Desc // of workerCounters
	reads                                                prometheus.Collector
}

func newWorkerCollector(o WorkerOptions) *workerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	c := &workerCollector{
		o:            o,
		info:         d("tasker_worker_info", "Worker build and identity.", "version", "worker_id"),
		uptime:       d("tasker_worker_uptime_seconds", "Seconds since the worker was created."),
		completed:    d("tasker_worker_steps_completed_total", "Successful handler results by namespace and handler.", "namespace", "handler"),
		failed:       d("tasker_worker_steps_failed_total", "Failed handler results by namespace and handler.", "namespace", "handler"),
		committed:    d("tasker_worker_step_results_committed_total", "Step results persisted with their transition, by outcome.", "result"),
		duration:     d("tasker_worker_handler_duration_seconds", "Handler execution time by namespace and handler.", "namespace", "handler"),
		poolInUse:    d("tasker_worker_handler_pool_in_use", "Handler slots in use."),
		poolCapacity: d("tasker_worker_handler_pool_capacity", "Handler slots (max concurrent handlers)."),
		stuck:        d("tasker_worker_handlers_stuck", "Handlers still running after their timeout because they ignore cancellation."),
		wakeups:      d("tasker_worker_wakeups_total", "Fetch loop wakeups by source: a queue notification or the fallback poll.", "source"),
		notified:     d("tasker_worker_notified_claims_total", "Messages carried by notifications, by outcome: claimed without a read, or left to the next read.", "outcome"),
		depth:        d("tasker_worker_queue_depth", "Messages in the namespace's worker queue, visible or not.", "namespace"),
		visible:      d("tasker_worker_queue_visible_depth", "Messages in the namespace's worker queue readable now.", "namespace"),
		oldest:       d("tasker_worker_queue_oldest_message_age_seconds", "Age of the oldest message in the namespace's worker queue.", "namespace"),
		queuesUp:     d("tasker_worker_queue_metrics_up", "1 when the queue metrics were read on this scrape."),
		reads:        ReadAgeCollector("tasker_worker_queue_last_read_age_seconds", o.Stats),
	}
	for _, wc := range workerCounters {
		c.counters = append(c.counters, d(wc.name, wc.help))
	}
	if o.DBPool != nil {
		c.dbPoolSize = d("tasker_worker_db_pool_size", "Open database connections.")
		c.dbPoolInUse = d("tasker_worker_db_pool_in_use", "Database connections in use.")
		c.dbPoolMax = d("tasker_worker_db_pool_max", "Database pool capacity.")
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.uptime, c.completed, c.failed, c.committed, c.duration,
		c.poolInUse, c.poolCapacity, c.stuck, c.wakeups, c.notified, c.depth, c.visible, c.oldest, c.queuesUp,
		c.dbPoolSize, c.dbPoolInUse, c.dbPoolMax} {
		if d != nil {
			ch <- d
		}
	}
	for _, d := range c.counters {
		ch <- d
	}
	c.reads.Describe(ch)
}

// Collect implements prometheus.Collector: one snapshot of the worker per scrape.
func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.o.Stats.Snapshot()
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		metric(d, prometheus.CounterValue, float64(v), labels...)
	}
	metric(c.info, prometheus.GaugeValue, 1, c.o.Version, c.o.WorkerID)
	metric(c.uptime, prometheus.GaugeValue, s.Uptime.Seconds())
	for i, wc := range workerCounters {
		counter(c.counters[i], wc.value(&s))
	}
	for _, st := range s.Steps {
		counter(c.completed, st.Completed, st.Namespace, st.Handler)
		counter(c.failed, st.Failed, st.Namespace, st.Handler)
		buckets := make(map[float64]uint64, len(worker.DurationBuckets))
		for i, b := range worker.DurationBuckets {
			buckets[b] = uint64(st.Buckets[i])
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, uint64(st.Count), st.SumSeconds, buckets, st.Namespace, st.Handler)
	}
	counter(c.committed, s.Completed, "success")
	counter(c.committed, s.Failed, "failure")
	metric(c.poolInUse, prometheus.GaugeValue, float64(s.InFlight))
	metric(c.poolCapacity, prometheus.GaugeValue, float64(c.o.Concurrency))
	metric(c.stuck, prometheus.GaugeValue, float64(s.StuckHandlers))
	counter(c.wakeups, s.NotifyWakeups, "notify")
	counter(c.wakeups, s.PollWakeups, "poll")
	counter(c.notified, s.HintsClaimed, "claimed")
	counter(c.notified, s.HintsMissed, "left")
	c.reads.Collect(ch)
	c.collectQueues(ch)
	if c.o.DBPool != nil {
		st := c.o.DBPool.Stat()
		metric(c.dbPoolSize, prometheus.GaugeValue, float64(st.TotalConns()))
		metric(c.dbPoolInUse, prometheus.GaugeValue, float64(st.AcquiredConns()))
		metric(c.dbPoolMax, prometheus.GaugeValue, float64(st.MaxConns()))
	}
}

// collectQueues reads the worker queues' metrics; on failure only the _up gauge (0) is sent.
func (c *workerCollector) collectQueues(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueMetricsTimeout)
	defer cancel()
	ms, err := c.o.Queues.MetricsAll(ctx)
	if err != nil {
		c.o.Logger.Warn("queue metrics unavailable", "error", err)
		ch <- prometheus.MustNewConstMetric(c.queuesUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.queuesUp, prometheus.GaugeValue, 1)
	byName := make(map[string]queue.Metrics, len(ms))
	for _, m := range ms {
		byName[m.Queue] = m
	}
	for _, ns := range c.o.Namespaces {
		m, ok := byName[queue.WorkerQueue(ns)]
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(m.Length), ns)
		ch <- prometheus.MustNewConstMetric(c.visible, prometheus.GaugeValue, float64(m.VisibleLength), ns)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, m.OldestAge.Seconds(), ns)
	}
}
