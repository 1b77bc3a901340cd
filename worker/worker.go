// Package worker runs tasker-core step handlers in Go: it consumes worker_<namespace>_queue
// messages from PGMQ, claims each step, runs its handler on a bounded pool, and writes the
// result, the state transition and the orchestration notification in one transaction.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sourcegraph/conc/pool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/template"
)

// Resolver finds the handler for a step definition, trying the fallback names (the template
// step name) when the callable is not registered; *handlers.Registry satisfies it.
type Resolver interface {
	ResolveWithFallback(def protocol.HandlerDefinition, fallbacks ...string) (handlers.Handler, error)
}

// EventPublisher publishes the domain events a step declares. PublishDurable runs inside the
// completion transaction (so events exist exactly when the result does); PublishAfterCommit
// runs after it committed and must not block for long.
type EventPublisher interface {
	PublishDurable(ctx context.Context, tx pgx.Tx, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) error
	PublishAfterCommit(ctx context.Context, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult)
}

// DurableDecider may be implemented by an EventPublisher: NeedsDurable reports whether
// completing seq must run PublishDurable inside the completion's transaction. Completions that
// do not are written by the faster grouped path. Without it, a step needs it when its definition
// declares any event.
type DurableDecider interface {
	NeedsDurable(seq protocol.TaskSequenceStep) bool
}

// Option customizes a Worker.
type Option func(*Worker)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(w *Worker) { w.log = l } }

// WithEvents sets the domain event publisher.
func WithEvents(p EventPublisher) Option { return func(w *Worker) { w.events = p } }

// WithWakeups lets the caller feed queue notifications (e.g. from a shared listener) instead of
// the worker opening its own LISTEN connection.
func WithWakeups(events <-chan queue.Event) Option {
	return func(w *Worker) { w.externalEvents = events }
}

// Worker consumes step messages for its namespaces. Create it with New, run it with Run.
type Worker struct {
	cfg            Config
	pool           *pgxpool.Pool
	queue          *queue.Client
	resolver       Resolver
	events         EventPublisher
	log            *slog.Logger
	workerUUID     uuid.UUID
	hostname       string
	resultsQueue   string
	templates      template.Cache
	startTemplates *templateSet // WithTemplates
	metrics        Metrics
	slots          chan struct{}
	externalEvents <-chan queue.Event
	completions    chan<- *pendingCompletion // to the completion flushers while Run runs

	mu      sync.Mutex
	running bool
}

// New checks cfg and returns a Worker using pool (configured with db.Config: search_path
// tasker,public and UTC). Namespaces must be set (template registration fills them in cmd/).
func New(cfg Config, pool *pgxpool.Pool, resolver Resolver, opts ...Option) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if resolver == nil {
		return nil, errors.New("worker: a handler resolver (registry) is required")
	}
	wu, _ := WorkerUUID(cfg.WorkerID)
	host, _ := os.Hostname()
	w := &Worker{
		cfg:          cfg,
		pool:         pool,
		queue:        queue.NewClient(pool),
		resolver:     resolver,
		log:          slog.Default(),
		workerUUID:   wu,
		hostname:     host,
		resultsQueue: queue.StepResultsQueue,
		slots:        make(chan struct{}, cfg.Concurrency),
	}
	for _, o := range opts {
		o(w)
	}
	if err := w.loadTemplates(); err != nil { // WithTemplates; fills w.cfg.Namespaces when empty
		return nil, err
	}
	if len(w.cfg.Namespaces) == 0 {
		return nil, &ConfigError{Key: "TASKER_NAMESPACES", Message: "no namespaces to consume (set it, or load templates)"}
	}
	w.log = w.log.With("worker_id", cfg.WorkerID)
	w.metrics.init(w.cfg.Namespaces)
	return w, nil
}

// Metrics returns the worker's live counters.
func (w *Worker) Metrics() *Metrics { return &w.metrics }

// Config returns the worker's configuration.
func (w *Worker) Config() Config { return w.cfg }

// EnsureQueues creates the worker queues of its namespaces and the orchestration queues
// (idempotent), as tasker-core's worker does at start.
func (w *Worker) EnsureQueues(ctx context.Context) error {
	qs := []string{queue.StepResultsQueue, queue.TaskRequestsQueue, queue.TaskFinalizationsQueue}
	for _, ns := range w.cfg.Namespaces {
		qs = append(qs, queue.WorkerQueue(ns), queue.DomainEventsQueue(ns), queue.DomainEventsDLQ(ns))
	}
	return w.queue.EnsureQueues(ctx, qs...)
}

// Run consumes messages until ctx is cancelled, then shuts down gracefully: it stops reading,
// lets in-flight handlers finish for up to ShutdownTimeout, then cancels them and reports each
// of their steps as a retryable worker_shutdown failure (an attempt, as a timeout would be), so
// orchestration retries it within its backoff. A handler that ignores its cancelled context is
// waited for at most shutdownGrace more; its goroutine is left behind.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("worker: already running")
	}
	w.running = true
	w.mu.Unlock()
	if err := w.registerTemplates(ctx); err != nil { // WithTemplates
		return err
	}
	if err := w.EnsureQueues(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing was claimed
		}
		return fmt.Errorf("worker: ensure queues: %w", err)
	}

	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)
	// Concurrency slots bound the running handlers; the pool also holds the goroutines of
	// handlers that freed their slot and wait for their completion's write: at most as many as
	// the completion queue holds plus the groups being flushed.
	handlersPool := pool.New().WithMaxGoroutines(2*w.cfg.Concurrency + completionFlushers(w.cfg.Concurrency)*maxCompletionGroup)

	// Wakers by queue name: every notification for a queue wakes its fetcher and offers the
	// message it carries (claimed without a read, see fetchLoop); a listener reconnect wakes them
	// all telling them to read, since notifications sent during the gap are lost.
	wakers := make(map[string]*queue.Waker, len(w.cfg.Namespaces))
	for _, ns := range w.cfg.Namespaces {
		wakers[queue.WorkerQueue(ns)] = queue.NewHintingWaker(hintCapacity)
	}
	var fetchers sync.WaitGroup
	if w.externalEvents != nil {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			queue.Route(ctx, w.externalEvents, wakers)
		}()
	} else {
		defer queue.WakeOnNotify(ctx, queue.ListenerConfigFor(w.pool, notifyChannels(w.cfg.Namespaces), w.log), wakers)()
	}
	stopFlushers := w.runCompletionFlushers()
	w.log.Info("worker started", "namespaces", w.cfg.Namespaces, "concurrency", w.cfg.Concurrency,
		"visibility_timeout", w.cfg.VisibilityTimeout, "poll_interval", w.cfg.PollInterval)
	for _, ns := range w.cfg.Namespaces {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			w.fetchLoop(ctx, workCtx, ns, wakers[queue.WorkerQueue(ns)], handlersPool)
		}()
	}
	fetchers.Wait()

	w.log.Info("worker stopping: draining in-flight handlers", "in_flight", w.metrics.InFlight(), "deadline", w.cfg.ShutdownTimeout)
	drained := make(chan struct{})
	go func() { handlersPool.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(w.cfg.ShutdownTimeout):
		w.log.Warn("shutdown deadline reached: cancelling in-flight handlers", "in_flight", w.metrics.InFlight())
		cancelWork(errShutdown)
		<-drained
	}
	stopFlushers()
	w.log.Info("worker stopped", "claimed", w.metrics.claimed.Load(), "completed", w.metrics.completed.Load(), "failed", w.metrics.failed.Load())
	return nil
}

// dbCtx bounds one database call or transaction by DBTimeout. It is detached from ctx's
// cancellation: a claim or completion that started finishes (or fails) as a unit on shutdown.
func (w *Worker) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DBTimeout)
}

func notifyChannels(namespaces []string) []string {
	out := make([]string, len(namespaces))
	for i, ns := range namespaces {
		out[i] = queue.NotifyChannel(ns)
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
