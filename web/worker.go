package web

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
// queues, and a handler pool that is not saturated; /metrics serves WorkerCollector.
func NewWorker(o WorkerOptions) *Server {
	start := time.Now()
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
		Collectors: []Collector{WorkerCollector(o)},
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
		Templates: o.Templates,
		Logger:    o.Logger,
	})
}

// WorkerCollector exposes a worker's counters, its queues and its database pool:
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
//	tasker_worker_db_errors_total, _steps_recovered_total, _late_completions_rejected_total,
//	_messages_malformed_total, _messages_duplicate_total, _messages_archived_total,
//	_steps_in_progress_elsewhere_total, _handlers_interrupted_total, _checkpoints_total  counters
//	tasker_worker_db_pool_size / _in_use / _max               gauges (with a DBPool)
func WorkerCollector(o WorkerOptions) Collector {
	return CollectorFunc(func(ctx context.Context) []Family {
		s := o.Stats.Snapshot()
		counter := func(name, help string, v int64) Family {
			return Family{Name: name, Help: help, Type: Counter, Samples: []Sample{{Value: float64(v)}}}
		}
		gauge := func(name, help string, v float64) Family {
			return Family{Name: name, Help: help, Type: Gauge, Samples: []Sample{{Value: v}}}
		}
		fams := []Family{
			{Name: "tasker_worker_info", Help: "Worker build and identity.", Type: Gauge,
				Samples: []Sample{{Labels: []Label{{"version", o.Version}, {"worker_id", o.WorkerID}}, Value: 1}}},
			gauge("tasker_worker_uptime_seconds", "Seconds since the worker was created.", s.Uptime.Seconds()),
			counter("tasker_worker_messages_read_total", "Step messages read from the worker queues.", s.MessagesRead),
			counter("tasker_worker_steps_claimed_total", "Steps this worker claimed (moved to in_progress).", s.Claimed),
		}
		completed := Family{Name: "tasker_worker_steps_completed_total", Help: "Successful handler results by namespace and handler.", Type: Counter}
		failed := Family{Name: "tasker_worker_steps_failed_total", Help: "Failed handler results by namespace and handler.", Type: Counter}
		duration := Family{Name: "tasker_worker_handler_duration_seconds", Help: "Handler execution time by namespace and handler.", Type: Histogram}
		for _, st := range s.Steps {
			labels := []Label{{"namespace", st.Namespace}, {"handler", st.Handler}}
			completed.Samples = append(completed.Samples, Sample{Labels: labels, Value: float64(st.Completed)})
			failed.Samples = append(failed.Samples, Sample{Labels: labels, Value: float64(st.Failed)})
			duration.Histograms = append(duration.Histograms, HistogramSample{
				Labels: labels, Bounds: worker.DurationBuckets, Cumulative: st.Buckets, Count: st.Count, Sum: st.SumSeconds,
			})
		}
		fams = append(fams, completed, failed,
			Family{Name: "tasker_worker_step_results_committed_total", Help: "Step results persisted with their transition, by outcome.", Type: Counter,
				Samples: []Sample{{Labels: []Label{{"result", "success"}}, Value: float64(s.Completed)}, {Labels: []Label{{"result", "failure"}}, Value: float64(s.Failed)}}},
			duration,
			gauge("tasker_worker_handler_pool_in_use", "Handler slots in use.", float64(s.InFlight)),
			gauge("tasker_worker_handler_pool_capacity", "Handler slots (max concurrent handlers).", float64(o.Concurrency)),
			gauge("tasker_worker_handlers_stuck", "Handlers still running after their timeout because they ignore cancellation.", float64(s.StuckHandlers)),
			readAgeFamily("tasker_worker_queue_last_read_age_seconds", o.Stats),
		)
		fams = append(fams, queueFamilies(ctx, o)...)
		fams = append(fams,
			Family{Name: "tasker_worker_wakeups_total", Help: "Fetch loop wakeups by source: a queue notification or the fallback poll.", Type: Counter,
				Samples: []Sample{{Labels: []Label{{"source", "notify"}}, Value: float64(s.NotifyWakeups)}, {Labels: []Label{{"source", "poll"}}, Value: float64(s.PollWakeups)}}},
			Family{Name: "tasker_worker_notified_claims_total", Help: "Messages carried by notifications, by outcome: claimed without a read, or left to the next read.", Type: Counter,
				Samples: []Sample{{Labels: []Label{{"outcome", "claimed"}}, Value: float64(s.HintsClaimed)}, {Labels: []Label{{"outcome", "left"}}, Value: float64(s.HintsMissed)}}},
			counter("tasker_worker_db_errors_total", "Database errors while reading, claiming or completing.", s.DBErrors),
			counter("tasker_worker_steps_recovered_total", "Steps abandoned in progress by a dead worker and reported as timed out.", s.Recovered),
			counter("tasker_worker_late_completions_rejected_total", "Results discarded because the claim was superseded.", s.LateRejected),
			counter("tasker_worker_messages_malformed_total", "Messages archived because they could not be decoded.", s.Malformed),
			counter("tasker_worker_messages_duplicate_total", "Messages archived because their step was not claimable.", s.Duplicates),
			counter("tasker_worker_messages_archived_total", "Messages archived with a reason.", s.Archived),
			counter("tasker_worker_steps_in_progress_elsewhere_total", "Messages left alone because a live worker runs their step.", s.InProgressElsewhere),
			counter("tasker_worker_handlers_interrupted_total", "Handlers cancelled by a hard shutdown.", s.Interrupted),
			counter("tasker_worker_checkpoints_total", "Checkpoint yields persisted.", s.Checkpoints),
			counter("tasker_worker_completion_groups_total", "Statements that wrote a group of completions.", s.CompletionGroups),
			counter("tasker_worker_grouped_completions_total", "Completions written by group statements.", s.GroupedCompletions),
			counter("tasker_worker_completion_groups_split_total", "Group statements that failed; their completions were written one at a time.", s.GroupsSplit),
		)
		if o.DBPool != nil {
			st := o.DBPool.Stat()
			fams = append(fams,
				gauge("tasker_worker_db_pool_size", "Open database connections.", float64(st.TotalConns())),
				gauge("tasker_worker_db_pool_in_use", "Database connections in use.", float64(st.AcquiredConns())),
				gauge("tasker_worker_db_pool_max", "Database pool capacity.", float64(st.MaxConns())),
			)
		}
		return fams
	})
}

// queueFamilies reads the worker queues' metrics; on failure only the _up gauge (0) is written.
func queueFamilies(ctx context.Context, o WorkerOptions) []Family {
	up := Family{Name: "tasker_worker_queue_metrics_up", Help: "1 when the queue metrics were read on this scrape.", Type: Gauge}
	ms, err := o.Queues.MetricsAll(ctx)
	if err != nil {
		if o.Logger != nil {
			o.Logger.Warn("queue metrics unavailable", "error", err)
		}
		up.Samples = []Sample{{Value: 0}}
		return []Family{up}
	}
	up.Samples = []Sample{{Value: 1}}
	byName := make(map[string]queue.Metrics, len(ms))
	for _, m := range ms {
		byName[m.Queue] = m
	}
	depth := Family{Name: "tasker_worker_queue_depth", Help: "Messages in the namespace's worker queue, visible or not.", Type: Gauge}
	visible := Family{Name: "tasker_worker_queue_visible_depth", Help: "Messages in the namespace's worker queue readable now.", Type: Gauge}
	oldest := Family{Name: "tasker_worker_queue_oldest_message_age_seconds", Help: "Age of the oldest message in the namespace's worker queue.", Type: Gauge}
	for _, ns := range o.Namespaces {
		m, ok := byName[queue.WorkerQueue(ns)]
		if !ok {
			continue
		}
		l := []Label{{"namespace", ns}}
		depth.Samples = append(depth.Samples, Sample{Labels: l, Value: float64(m.Length)})
		visible.Samples = append(visible.Samples, Sample{Labels: l, Value: float64(m.VisibleLength)})
		oldest.Samples = append(oldest.Samples, Sample{Labels: l, Value: m.OldestAge.Seconds()})
	}
	return []Family{depth, visible, oldest, up}
}
