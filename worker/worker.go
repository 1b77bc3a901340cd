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
	templates      templateCache
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
	if len(cfg.Namespaces) == 0 {
		return nil, &ConfigError{Key: "TASKER_NAMESPACES", Message: "no namespaces to consume (set it, or load templates)"}
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
	w.log = w.log.With("worker_id", cfg.WorkerID)
	w.metrics.init(cfg.Namespaces)
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
	events := w.externalEvents
	if events == nil {
		l, err := queue.Listen(ctx, queue.ListenerConfig{
			URL:      w.pool.Config().ConnString(),
			Channels: notifyChannels(w.cfg.Namespaces),
			Logger:   w.log,
		})
		if err != nil {
			w.log.Warn("LISTEN unavailable; polling only", "error", err)
		} else {
			defer l.Close()
			events = l.Events()
		}
	}
	stopFlushers := w.runCompletionFlushers()
	var fetchers sync.WaitGroup
	if events != nil {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			queue.Route(ctx, events, wakers)
		}()
	}
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

// maxReadBackoff caps the wait between failing reads, so a worker reads again within seconds
// of the database answering after an outage or a partition.
const maxReadBackoff = 4 * time.Second

// dbCtx bounds one database call or transaction by DBTimeout. It is detached from ctx's
// cancellation: a claim or completion that started finishes (or fails) as a unit on shutdown.
func (w *Worker) dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DBTimeout)
}

// hintCapacity bounds the notified messages a namespace keeps for its next wake-up; beyond it
// the worker reads the queue instead.
const hintCapacity = 64

// fetchLoop reads only as many messages as there are free handler slots (no prefetch beyond
// capacity), claims the steps of the messages read together in one statement (claimGroup),
// hands each to the pool, and reads again at once after a full batch; otherwise it
// waits for a notification or the poll interval. A notification that carries its message (all
// of tasker's small ones do) is acted on without a read: the claim itself takes the step and
// the message (processHint); the queue is read when a notification had no message, hints
// overflowed or found no free slot, and at every poll interval.
func (w *Worker) fetchLoop(ctx, workCtx context.Context, ns string, wk *queue.Waker, p *pool.Pool) {
	q := queue.WorkerQueue(ns)
	vt := int(w.cfg.VisibilityTimeout / time.Second)
	log := w.log.With("namespace", ns, "queue", q)
	backoff := w.cfg.PollInterval
	backlog := false // the last read filled its batch: more messages are waiting
	read := true
	hinted := newIDRing(4 * hintCapacity) // messages claimed from notifications
	for ctx.Err() == nil {
		if read {
			want := 1
			if backlog {
				// With messages waiting, gather a few free slots before reading: one read per
				// several messages costs PostgreSQL less than one per message (a read is
				// planned anew each time), and short handlers finish within the wait.
				want = max(1, min(w.cfg.BatchSize, w.cfg.Concurrency/2))
			}
			n := w.acquire(ctx, want, w.cfg.BatchSize, batchGather)
			if n == 0 {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, w.cfg.DBTimeout)
			msgs, err := w.queue.Read(rctx, q, vt, n)
			cancel()
			if err != nil {
				w.release(n)
				if ctx.Err() != nil {
					return
				}
				w.metrics.dbErrors.Add(1)
				w.metrics.reads.Failed(q)
				log.Error("read failed; retrying", "error", err, "in", backoff)
				sleep(ctx, backoff)
				backoff = min(backoff*2, maxReadBackoff)
				continue
			}
			backoff = w.cfg.PollInterval
			if o := w.metrics.reads.Mark(q); o.Failures > 0 {
				log.Info("queue reads resumed", "failed_reads", o.Failures, "after", o.For.Round(time.Millisecond))
			}
			w.release(n - len(msgs))
			w.metrics.messagesRead.Add(int64(len(msgs)))
			fresh := msgs[:0]
			for _, m := range msgs {
				if hinted.has(m.ID) {
					w.release(1) // read while its notification's claim ran: already ours
					continue
				}
				fresh = append(fresh, m)
			}
			if len(fresh) == 1 {
				w.dispatch(p, func(s *slot) { w.process(workCtx, ns, q, fresh[0], s) })
			} else if len(fresh) > 1 {
				w.claimGroup(workCtx, ns, q, fresh, p)
			}
			if backlog = len(msgs) == n; backlog {
				continue // a full batch: there may be more
			}
		}
		woke, err := wk.Wait(ctx, w.cfg.PollInterval)
		if err != nil {
			return
		}
		if !woke {
			w.metrics.pollWakeups.Add(1)
			read = true
			continue
		}
		w.metrics.notifyWakeups.Add(1)
		hints, missed := wk.TakeHints()
		if missed {
			read = true // more than notifications told: reads take them in batches
			continue
		}
		// No hints and nothing missed: a wake-up whose hints an earlier round already took.
		read = false
		for _, h := range hints {
			if !w.tryAcquire() {
				read = true // no free slot: the rest wait for a read
				break
			}
			w.dispatch(p, func(s *slot) {
				if w.processHint(workCtx, ns, q, h, s) {
					hinted.add(h.MsgID)
				}
			})
		}
	}
}

// idRing remembers the last n message ids added.
type idRing struct {
	mu   sync.Mutex
	ids  []int64
	next int
	set  map[int64]struct{}
}

func newIDRing(n int) *idRing {
	return &idRing{ids: make([]int64, 0, n), set: make(map[int64]struct{}, n)}
}

func (r *idRing) add(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) < cap(r.ids) {
		r.ids = append(r.ids, id)
	} else {
		delete(r.set, r.ids[r.next])
		r.ids[r.next] = id
		r.next = (r.next + 1) % len(r.ids)
	}
	r.set[id] = struct{}{}
}

func (r *idRing) has(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

// dispatch runs fn on the handler pool in a slot the caller acquired; the slot is given back
// when fn returns, or earlier if fn frees it.
func (w *Worker) dispatch(p *pool.Pool, fn func(s *slot)) {
	w.metrics.inFlight.Add(1)
	s := &slot{w: w}
	p.Go(func() {
		defer s.free()
		fn(s)
	})
}

// slot is a handler slot held by a dispatched function.
type slot struct {
	w    *Worker
	once sync.Once
}

// free gives the slot back (once; nil-safe). A handler whose completion only waits for its
// write frees its slot so another message can start meanwhile.
func (s *slot) free() {
	if s != nil {
		s.once.Do(func() {
			s.w.metrics.inFlight.Add(-1)
			s.w.release(1)
		})
	}
}

// tryAcquire takes one free handler slot if there is one.
func (w *Worker) tryAcquire() bool {
	select {
	case w.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// batchGather bounds how long acquire waits for more free slots once it holds one.
const batchGather = 2 * time.Millisecond

// acquire blocks until at least one handler slot is free and takes up to most of them; when it
// holds fewer than least, it waits up to gather for more.
func (w *Worker) acquire(ctx context.Context, least, most int, gather time.Duration) int {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	var deadline <-chan time.Time
	for n < most {
		if w.tryAcquire() {
			n++
			continue
		}
		if n >= least {
			return n
		}
		if deadline == nil {
			t := time.NewTimer(gather)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case w.slots <- struct{}{}:
			n++
		case <-deadline:
			return n
		case <-ctx.Done():
			return n
		}
	}
	return n
}

func (w *Worker) release(n int) {
	for range n {
		<-w.slots
	}
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
