// Package orchestration is tasker-go's orchestrator, compatible with tasker-core's: it creates
// tasks from registered templates, dispatches ready steps to worker_<namespace>_queue, consumes
// orchestration_step_results, applies retries with backoff, expands decision points and batch
// steps, finalizes tasks, and recovers from dead workers and crashed orchestrators. It uses
// tasker-core's tables, states, SQL functions and messages, so Go and Rust workers (and Rust
// orchestrators) can share a database with it.
//
// Every unit of work is one transaction that first locks the task row: the state changes of a
// task, the step transitions, the messages sent to workers and the acknowledgement of the
// message that caused them commit together or not at all, and two orchestrators never work on
// one task at the same time.
package orchestration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// Option customizes an Orchestrator.
type Option func(*Orchestrator)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *Orchestrator) {
		if l != nil {
			o.log = l
		}
	}
}

// Orchestrator runs tasker-core's orchestration on a database. Create it with New; CreateTask,
// Cancel and TaskStatus may be used with or without Run.
type Orchestrator struct {
	cfg       Config
	pool      *pgxpool.Pool
	queue     *queue.Client
	log       *slog.Logger
	templates template.Cache
	jitter    jitterSource
	reads     *queue.ReadTimes // last successful read of orchestration_step_results
	metrics   Metrics
	turn      readyTurn // the readiness sweep's position among waiting and active tasks

	queuesMu sync.Mutex
	queues   map[string]bool // queues known to exist

	runMu   sync.Mutex
	running bool
}

// New validates cfg (after WithDefaults) and returns an orchestrator on pool, which must be
// configured with db.Config (search_path tasker,public; TimeZone UTC).
func New(cfg Config, pool *pgxpool.Pool, opts ...Option) (*Orchestrator, error) {
	if pool == nil {
		return nil, errors.New("orchestration: a database pool is required")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &Orchestrator{
		cfg:    cfg,
		pool:   pool,
		queue:  queue.NewClient(pool),
		log:    slog.Default(),
		jitter: randJitter{},
		reads:  queue.NewReadTimes(queue.StepResultsQueue),
		queues: map[string]bool{},
	}
	for _, opt := range opts {
		opt(o)
	}
	o.log = o.log.With("component", "orchestration", "processor_uuid", cfg.ProcessorUUID)
	return o, nil
}

// Config returns the effective configuration.
func (o *Orchestrator) Config() Config { return o.cfg }

// OrchestrationQueues are the queues the orchestrator owns and creates at start.
var OrchestrationQueues = []string{queue.StepResultsQueue, queue.TaskRequestsQueue, queue.TaskFinalizationsQueue}

// EnsureQueues creates the orchestration-owned queues if they do not exist.
func (o *Orchestrator) EnsureQueues(ctx context.Context) error {
	for _, q := range OrchestrationQueues {
		if err := o.ensureQueue(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// ensureQueue creates a queue once per process (outside any caller transaction: creating it is
// idempotent and must not roll back with the caller's work). Worker queues are normally created
// by workers; creating one here keeps messages for a namespace whose workers are not up yet.
func (o *Orchestrator) ensureQueue(ctx context.Context, name string) error {
	o.queuesMu.Lock()
	known := o.queues[name]
	o.queuesMu.Unlock()
	if known {
		return nil
	}
	if err := o.queue.EnsureQueue(ctx, name); err != nil {
		return fmt.Errorf("orchestration: %w", err)
	}
	o.queuesMu.Lock()
	o.queues[name] = true
	o.queuesMu.Unlock()
	return nil
}

// Run consumes orchestration_step_results (woken by LISTEN on pgmq_message_ready.orchestration,
// with a PollInterval fallback), and runs the readiness sweep every ReadinessInterval and the
// recovery sweep every RecoveryInterval, until ctx is cancelled. Work in progress when ctx is
// cancelled finishes (each unit is one short transaction); then Run returns nil.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.runMu.Lock()
	if o.running {
		o.runMu.Unlock()
		return errors.New("orchestration: already running")
	}
	o.running = true
	o.runMu.Unlock()
	defer func() {
		o.runMu.Lock()
		o.running = false
		o.runMu.Unlock()
	}()

	if err := o.EnsureQueues(ctx); err != nil {
		return err
	}
	waker := queue.NewHintingWaker(resultHintCapacity)
	var wg sync.WaitGroup
	defer queue.WakeOnNotify(ctx, queue.ListenerConfigFor(o.pool, []string{queue.NotifyChannel("orchestration")}, o.log),
		map[string]*queue.Waker{queue.StepResultsQueue: waker})()
	o.log.Info("orchestrator started", "poll_interval", o.cfg.PollInterval,
		"readiness_interval", o.cfg.ReadinessInterval, "recovery_interval", o.cfg.RecoveryInterval)

	wg.Add(3)
	go func() {
		defer wg.Done()
		o.resultLoop(ctx, waker)
	}()
	go func() {
		defer wg.Done()
		o.every(ctx, o.cfg.ReadinessInterval, func(ctx context.Context) {
			if _, err := o.runReadinessSweep(ctx); err != nil && ctx.Err() == nil {
				o.log.Error("readiness sweep failed", "error", err)
			}
		})
	}()
	go func() {
		defer wg.Done()
		o.every(ctx, o.cfg.RecoveryInterval, func(ctx context.Context) {
			if _, err := o.runRecoverySweep(ctx); err != nil && ctx.Err() == nil {
				o.log.Error("recovery sweep failed", "error", err)
			}
		})
	}()
	<-ctx.Done()
	wg.Wait()
	o.log.Info("orchestrator stopped")
	return nil
}

// begin starts a transaction whose BEGIN, writes and COMMIT travel with its reads (see
// db.PipeTx): result processing and advancing a task queue their transitions and dispatches, so
// a hop costs no round trip of its own.
func (o *Orchestrator) begin(ctx context.Context) (*db.PipeTx, error) {
	return db.BeginPipe(ctx, o.pool)
}

// dbCtx bounds one result's or one task's transaction by DBTimeout (and by the visibility
// timeout, past which another orchestrator may take the same result). It is detached from ctx's
// cancellation: a transaction that started finishes (or fails) as a unit on shutdown.
func (o *Orchestrator) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(o.cfg.DBTimeout, o.cfg.VisibilityTimeout))
}

// sweepCtx bounds a sweep's search query: four times DBTimeout, since it scans more than one
// task's rows.
func (o *Orchestrator) sweepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 4*o.cfg.DBTimeout)
}

// ReadAges says how long ago orchestration_step_results was last read (or a result taken
// from its notification) successfully.
func (o *Orchestrator) ReadAges(now time.Time) []queue.ReadAge { return o.reads.Ages(now) }

// every calls fn every interval until ctx is done.
func (o *Orchestrator) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// maxResultReads is how often a result message may be read and fail before it is archived with
// a reason; the recovery sweep then processes its step directly from the database.
const maxResultReads = 20

// transientRetries is how often a result whose transaction lost a race (deadlock, serialization
// failure, a concurrent transition by an orchestrator that does not lock the task row) is
// retried at once before it is left for redelivery.
const transientRetries = 3

// isTransient reports errors worth retrying immediately: the transaction was rolled back because
// of a concurrent one, not because of the data.
func isTransient(err error) bool {
	if errors.Is(err, state.ErrConcurrentTransition) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "55P03": // serialization_failure, deadlock_detected, lock_not_available
			return true
		}
	}
	return false
}

// resultHintCapacity bounds the results the orchestrator keeps from notifications for its next
// wake-up; beyond it, it reads the queue instead.
const resultHintCapacity = 64

// resultLoop processes step results until ctx is done. When idle (no more results waiting than
// it processes at once) it takes them straight from the notifications that carry them
// (tasker's small messages come whole), which saves the queue read: processing takes the
// message in its first round trip. With a backlog (more results, notifications overflowed, a
// read filled its batch, a notification without its message, or a failure) it reads the queue
// in batches, which costs less per result than taking them one by one (when results were
// taken with a read of their own, burst throughput halved). The poll interval reads anyway, so
// a lost notification only delays a result.
func (o *Orchestrator) resultLoop(ctx context.Context, wk *queue.Waker) {
	read := true
	for ctx.Err() == nil {
		if read && o.pollResults(ctx) {
			continue // a full batch: there may be more
		}
		woke, err := wk.Wait(ctx, o.cfg.PollInterval)
		if err != nil {
			return
		}
		hints, missed := wk.TakeHints()
		if !woke || missed || len(hints) > o.cfg.ResultConcurrency {
			read = true // more than one wave of results: a read takes them in a batch
			continue
		}
		msgs := make([]queue.Message, len(hints))
		for i, h := range hints {
			msgs[i] = queue.Message{ID: h.MsgID, Body: h.Body}
		}
		// Anything left unprocessed (a failure, a message taken by someone else) is read next.
		read = !o.processResults(ctx, msgs, true)
	}
}

// pollResults reads step results and processes them; it reports whether the read filled its
// batch (more may be waiting).
func (o *Orchestrator) pollResults(ctx context.Context) bool {
	vt := int(o.cfg.VisibilityTimeout / time.Second)
	rctx, cancel := context.WithTimeout(ctx, o.cfg.DBTimeout)
	msgs, err := o.queue.Read(rctx, queue.StepResultsQueue, vt, o.cfg.ResultBatchSize)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			o.reads.Failed(queue.StepResultsQueue)
			o.metrics.countError(ErrKindQueueRead)
			o.log.Error("read step results failed", "error", err)
		}
		return false
	}
	if out := o.reads.Mark(queue.StepResultsQueue); out.Failures > 0 {
		o.log.Info("queue reads resumed", "queue", queue.StepResultsQueue, "failed_reads", out.Failures, "after", out.For.Round(time.Millisecond))
	}
	o.processResults(ctx, msgs, false)
	return len(msgs) == o.cfg.ResultBatchSize
}

// processResults processes msgs, ResultConcurrency at a time, retrying transient failures;
// hinted says they came in notifications. It reports whether every one was processed.
func (o *Orchestrator) processResults(ctx context.Context, msgs []queue.Message, hinted bool) (all bool) {
	sem := make(chan struct{}, o.cfg.ResultConcurrency)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, m := range msgs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Finish the message even when shutdown starts: its transaction is short.
			wctx, cancel := o.dbCtx(ctx)
			defer cancel()
			start := time.Now()
			outcome, err := o.processResultMessage(wctx, m, hinted)
			for attempt := 1; err != nil && isTransient(err) && attempt <= transientRetries; attempt++ {
				time.Sleep(time.Duration(attempt*20) * time.Millisecond)
				outcome, err = o.processResultMessage(wctx, m, hinted)
			}
			o.metrics.countResult(outcome, err, time.Since(start))
			if err != nil || outcome == OutcomeTaken {
				failed.Store(true)
			} else if hinted {
				o.reads.Mark(queue.StepResultsQueue) // taken from its notification: as good as a read
			}
			switch {
			case err == nil:
			case m.ReadCount >= maxResultReads:
				o.log.Error("step result keeps failing; archiving the message (the recovery sweep will process the step)",
					"msg_id", m.ID, "read_count", m.ReadCount, "error", err)
				o.archiveAlone(wctx, m.ID, reasonProcessingFailed, err.Error())
			default:
				o.log.Error("step result processing failed; the message will be retried after its visibility timeout",
					"msg_id", m.ID, "read_count", m.ReadCount, "error", err)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}
