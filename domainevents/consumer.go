package domainevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/queue"
)

// Reasons the consumer archives a message; written to the archived message's headers under
// queue.ArchiveReasonHeader, with the details under queue.ArchiveDetailHeader.
const (
	ReasonMalformedEvent        = "malformed_event"
	ReasonMaxDeliveriesExceeded = "max_deliveries_exceeded"
)

// DeliveredToHeader is the message header listing (as a JSON array in a string) the subscribers
// that already handled a durable event, so a redelivery after a partial failure runs only the
// subscribers that have not succeeded.
const DeliveredToHeader = "x-tasker-delivered-to"

// ConsumerConfig configures a DurableConsumer; zero values take the defaults.
type ConsumerConfig struct {
	// Namespaces whose "<ns>_domain_events" queues are consumed. Required.
	Namespaces []string
	// VisibilityTimeout hides a read message from other readers (default 30s); it is extended
	// while the message's subscribers run.
	VisibilityTimeout time.Duration
	// BatchSize caps one read (default 10).
	BatchSize int
	// Concurrency is how many messages are dispatched at once (default 1).
	Concurrency int
	// PollInterval is the fallback poll period; notifications wake the consumer sooner
	// (default 1s).
	PollInterval time.Duration
	// MaxDeliveries is how many times a message is read before it is archived with reason
	// max_deliveries_exceeded (default 5).
	MaxDeliveries int
	// RetryDelay is how long a message whose subscribers failed stays hidden (default 5s).
	RetryDelay time.Duration
	// HandlerTimeout bounds one subscriber's Handle (default 30s).
	HandlerTimeout time.Duration
	// ShutdownTimeout is how long in-flight deliveries may finish after Run's context is done
	// before their contexts are cancelled (default 10s).
	ShutdownTimeout time.Duration
	// DBTimeout bounds each database call: a read, an ack, a visibility extension, an archive
	// (default 10s). A call that hits it loses its connection, so a connection a network fault
	// killed silently is replaced instead of blocking the consumer.
	DBTimeout time.Duration
	// NoListen disables LISTEN/NOTIFY wake-ups (polling only). Otherwise the consumer listens on
	// pgmq_message_ready.default, where tasker's SQL announces "<ns>_domain_events" messages.
	NoListen bool
	// ListenURL is the database URL for the LISTEN connection (default: the pool's).
	ListenURL string
	// ConsumerID is written into archive headers (default "domain_event_consumer_<uuid v7>").
	ConsumerID string
	Logger     *slog.Logger
}

func (c *ConsumerConfig) fill() error {
	if len(c.Namespaces) == 0 {
		return errors.New("domainevents: consumer: no namespaces")
	}
	if err := queue.ValidateNamespaces(c.Namespaces); err != nil {
		return err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.VisibilityTimeout, 30*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.RetryDelay, 5*time.Second)
	def(&c.HandlerTimeout, 30*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	def(&c.DBTimeout, 10*time.Second)
	if c.VisibilityTimeout < time.Second {
		c.VisibilityTimeout = time.Second
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 5
	}
	if c.ConsumerID == "" {
		c.ConsumerID = "domain_event_consumer_" + uuid.Must(uuid.NewV7()).String()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// DurableConsumer delivers durable domain events from "<ns>_domain_events" to the matching
// subscribers of a registry, at least once: a message is deleted only after every matching
// subscriber succeeded. The queue is the only state, so a consumer can stop and restart (or run
// in several processes) without losing events; a delivery interrupted by a stop is repeated.
type DurableConsumer struct {
	pool *pgxpool.Pool
	q    *queue.Client
	subs *SubscriberRegistry
	cfg  ConsumerConfig
	log  *slog.Logger
	sem  chan struct{}

	mu      sync.Mutex
	running bool

	read, acked, failed, redelivered, archived, malformed, unmatched, deliveries, panics, released atomic.Int64
}

// NewDurableConsumer checks cfg and returns a consumer using pool (configured with db.Connect).
func NewDurableConsumer(pool *pgxpool.Pool, subs *SubscriberRegistry, cfg ConsumerConfig) (*DurableConsumer, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if subs == nil {
		return nil, errors.New("domainevents: consumer: a subscriber registry is required")
	}
	return &DurableConsumer{pool: pool, q: queue.NewClient(pool), subs: subs, cfg: cfg,
		log: cfg.Logger.With("component", "domainevents.consumer", "consumer_id", cfg.ConsumerID),
		sem: make(chan struct{}, cfg.Concurrency)}, nil
}

// Run consumes until ctx is done, then stops reading, gives in-flight deliveries up to
// ShutdownTimeout, cancels them (their messages are delivered again later) and returns.
// Messages read but not yet started are released: visible again at once, their read undone.
func (c *DurableConsumer) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("domainevents: consumer already running")
	}
	c.running = true
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.running = false; c.mu.Unlock() }()

	queues := make([]string, len(c.cfg.Namespaces))
	for i, ns := range c.cfg.Namespaces {
		queues[i] = queue.DomainEventsQueue(ns)
	}
	if err := c.q.EnsureQueues(ctx, queues...); err != nil {
		return fmt.Errorf("domainevents: consumer: ensure queues: %w", err)
	}
	wakers := make(map[string]*queue.Waker, len(queues))
	for _, q := range queues {
		wakers[q] = queue.NewWaker()
	}
	if !c.cfg.NoListen {
		// tasker.extract_queue_namespace maps "<ns>_domain_events" to "default".
		lc := queue.ListenerConfigFor(c.pool, []string{queue.NotifyChannel("default")}, c.log)
		if c.cfg.ListenURL != "" {
			lc.URL = c.cfg.ListenURL
		}
		defer queue.WakeOnNotify(ctx, lc, wakers)()
	}

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var loops sync.WaitGroup
	for _, q := range queues {
		loops.Add(1)
		go func() {
			defer loops.Done()
			c.loop(ctx, workCtx, q, wakers[q])
		}()
	}
	c.log.Info("domain event consumer started", "queues", queues, "concurrency", c.cfg.Concurrency)
	loopsDone := make(chan struct{})
	go func() { loops.Wait(); close(loopsDone) }()
	select {
	case <-loopsDone: // only after ctx is done
	case <-ctx.Done():
		// The loops stop reading at once; the batches in hand finish within the grace period.
		select {
		case <-loopsDone:
		case <-time.After(c.cfg.ShutdownTimeout):
			c.log.Warn("shutdown deadline reached: cancelling in-flight deliveries")
			cancelWork()
			<-loopsDone
		}
	}
	c.log.Info("domain event consumer stopped", "acked", c.acked.Load(), "failed", c.failed.Load())
	return nil
}

// loop reads batches from one queue until ctx is done.
func (c *DurableConsumer) loop(ctx, workCtx context.Context, q string, wk *queue.Waker) {
	vt := int(c.cfg.VisibilityTimeout / time.Second)
	backoff := c.cfg.PollInterval
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.DBTimeout)
		msgs, err := c.q.Read(rctx, q, vt, c.cfg.BatchSize)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Error("read failed; retrying", "queue", q, "error", err, "in", backoff)
			if _, err := wk.Wait(ctx, backoff); err != nil {
				return
			}
			backoff = min(backoff*2, 4*time.Second)
			continue
		}
		backoff = c.cfg.PollInterval
		c.read.Add(int64(len(msgs)))
		if len(msgs) > 0 {
			c.batch(ctx, workCtx, q, msgs)
		}
		if len(msgs) == c.cfg.BatchSize {
			continue
		}
		if _, err := wk.Wait(ctx, c.cfg.PollInterval); err != nil {
			return
		}
	}
}

// batch dispatches the messages of one read, keeping the unfinished ones invisible, and returns
// when all are done. Once ctx is done, messages not yet started are released for other readers.
func (c *DurableConsumer) batch(ctx, workCtx context.Context, q string, msgs []queue.Message) {
	var mu sync.Mutex
	open := map[int64]bool{}
	for _, m := range msgs {
		open[m.ID] = true
	}
	stopBeat := c.heartbeat(workCtx, q, &mu, open)
	defer stopBeat()
	finish := func(id int64) {
		mu.Lock()
		delete(open, id)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, m := range msgs {
		acquired := false
		if ctx.Err() == nil {
			select {
			case c.sem <- struct{}{}:
				acquired = true
			case <-ctx.Done():
			}
		}
		if !acquired {
			finish(m.ID)
			c.release(q, m)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-c.sem; finish(m.ID); wg.Done() }()
			c.handle(workCtx, q, m, func() { finish(m.ID) })
		}()
	}
	wg.Wait()
}

// heartbeat extends the visibility of the batch's unfinished messages before it lapses.
func (c *DurableConsumer) heartbeat(ctx context.Context, q string, mu *sync.Mutex, open map[int64]bool) (stop func()) {
	bctx, cancel := context.WithCancel(ctx)
	vt := int(c.cfg.VisibilityTimeout / time.Second)
	go func() {
		t := time.NewTicker(c.cfg.VisibilityTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-bctx.Done():
				return
			case <-t.C:
				// Holding mu while extending means a message whose delivery has settled (finish
				// takes mu) is never extended afterwards, which would undo its RetryDelay.
				mu.Lock()
				for id := range open {
					sctx, cancel := context.WithTimeout(bctx, c.cfg.DBTimeout)
					_, _, err := c.q.SetVT(sctx, q, id, vt)
					cancel()
					if err != nil && bctx.Err() == nil {
						c.log.Warn("could not extend message visibility", "queue", q, "msg_id", id, "error", err)
					}
				}
				mu.Unlock()
			}
		}
	}()
	return cancel
}

// handle delivers one message to the subscribers that have not handled it yet and acks,
// retries or archives it; settle is called before that final step and stops the heartbeat for it.
func (c *DurableConsumer) handle(ctx context.Context, q string, m queue.Message, settle func()) {
	defer settle()
	log := c.log.With("queue", q, "msg_id", m.ID, "read_count", m.ReadCount)
	if m.ReadCount > 1 {
		c.redelivered.Add(1)
	}
	if m.ReadCount > c.cfg.MaxDeliveries {
		// Read again after its last allowed delivery (e.g. the consumer died while handling it).
		c.archive(q, m.ID, ReasonMaxDeliveriesExceeded, fmt.Sprintf("read %d times (max %d)", m.ReadCount, c.cfg.MaxDeliveries), nil, log)
		return
	}
	ev, err := DecodeEvent(m.Body)
	if err != nil {
		c.malformed.Add(1)
		log.Warn("archiving malformed domain event", "error", err)
		c.archive(q, m.ID, ReasonMalformedEvent, err.Error(), nil, log)
		return
	}
	log = log.With("event_name", ev.EventName, "event_id", ev.EventID)
	done := deliveredTo(m.Headers)
	matching := c.subs.Matching(ev.EventName)
	if len(matching) == 0 {
		c.unmatched.Add(1)
		log.Debug("no subscriber matches the event; acknowledging it")
	}
	dctx := WithDelivery(ctx, Delivery{Mode: DeliveryDurable, Queue: q, MsgID: m.ID, ReadCount: m.ReadCount})
	type outcome struct {
		name string
		err  error
	}
	results := make(chan outcome, len(matching))
	var wg sync.WaitGroup
	for _, s := range matching {
		if slices.Contains(done, s.Name()) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(dctx, c.cfg.HandlerTimeout)
			defer cancel()
			c.deliveries.Add(1)
			err := deliver(hctx, s, ev)
			if isPanic(err) {
				c.panics.Add(1)
				log.Error("durable event subscriber panicked", "subscriber", s.Name(), "panic", err.(*PanicError).Value,
					"stack", string(err.(*PanicError).Stack))
			} else if err != nil {
				log.Warn("durable event subscriber failed", "subscriber", s.Name(), "error", err)
			}
			results <- outcome{s.Name(), err}
		}()
	}
	wg.Wait()
	close(results)
	settle()
	var errs []error
	progressed := false
	for r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
			continue
		}
		done = append(done, r.name)
		progressed = true
	}
	if len(errs) == 0 {
		c.ack(q, m.ID, log)
		return
	}
	c.failed.Add(1)
	interrupted := ctx.Err() != nil
	var headers map[string]string
	if progressed {
		slices.Sort(done)
		b, _ := json.Marshal(done)
		headers = map[string]string{DeliveredToHeader: string(b)}
	}
	if !interrupted && m.ReadCount >= c.cfg.MaxDeliveries {
		log.Error("domain event failed its last delivery; archiving it", "errors", errors.Join(errs...))
		c.archive(q, m.ID, ReasonMaxDeliveriesExceeded, errors.Join(errs...).Error(), headers, log)
		return
	}
	delay := c.cfg.RetryDelay
	if interrupted {
		delay = 0 // shutting down: let another consumer have it now
	}
	c.retryLater(q, m.ID, headers, delay, log)
}

func (c *DurableConsumer) dbctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.cfg.DBTimeout)
}

func (c *DurableConsumer) ack(q string, id int64, log *slog.Logger) {
	ctx, cancel := c.dbctx()
	defer cancel()
	if _, err := c.q.Delete(ctx, q, id); err != nil {
		log.Error("could not delete a handled domain event; it will be delivered again", "error", err)
		return
	}
	c.acked.Add(1)
}

// retryLater records which subscribers succeeded (so a redelivery skips them) and hides the
// message for delay.
func (c *DurableConsumer) retryLater(q string, id int64, headers map[string]string, delay time.Duration, log *slog.Logger) {
	ctx, cancel := c.dbctx()
	defer cancel()
	if headers != nil {
		if err := c.q.AnnotateTx(ctx, nil, q, id, headers); err != nil {
			log.Warn("could not record the subscribers that succeeded", "error", err)
		}
	}
	if _, _, err := c.q.SetVT(ctx, q, id, int(delay/time.Second)); err != nil {
		log.Warn("could not reschedule the message; it reappears after its visibility timeout", "error", err)
	}
}

// release makes a message read but never delivered visible again and takes back its read, so
// neither MaxDeliveries nor the redelivery count charge it. The read_ct guard leaves a message
// alone that another reader has taken since.
func (c *DurableConsumer) release(q string, m queue.Message) {
	ctx, cancel := c.dbctx()
	defer cancel()
	table := pgx.Identifier{"pgmq", "q_" + strings.ToLower(q)}.Sanitize()
	tag, err := c.pool.Exec(ctx, `UPDATE `+table+` SET vt = clock_timestamp(), read_ct = GREATEST(read_ct - 1, 0)
		WHERE msg_id = $1 AND read_ct = $2`, m.ID, m.ReadCount)
	if err != nil {
		c.log.Warn("could not release an unstarted message; it reappears after its visibility timeout", "queue", q, "msg_id", m.ID, "error", err)
		return
	}
	if tag.RowsAffected() == 1 {
		c.released.Add(1)
	}
}

// archive annotates the message with the reason and moves it to the queue's archive, in one
// transaction.
func (c *DurableConsumer) archive(q string, id int64, reason, why string, extra map[string]string, log *slog.Logger) {
	ctx, cancel := c.dbctx()
	defer cancel()
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		_, err := c.q.ArchiveWithReasonTx(ctx, tx, q, id, reason, why, c.cfg.ConsumerID, extra)
		return err
	})
	if err != nil {
		log.Error("could not archive the message; it will be read again", "reason", reason, "error", err)
		return
	}
	c.archived.Add(1)
}

// deliveredTo reads DeliveredToHeader from a message's headers.
func deliveredTo(headers json.RawMessage) []string {
	if len(headers) == 0 {
		return nil
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(headers, &h) != nil {
		return nil
	}
	var s string
	if json.Unmarshal(h[DeliveredToHeader], &s) != nil {
		return nil
	}
	var names []string
	_ = json.Unmarshal([]byte(s), &names)
	return names
}

// ConsumerStats are a DurableConsumer's counters.
type ConsumerStats struct {
	Read        int64 // messages read
	Acked       int64 // messages deleted after all matching subscribers succeeded
	Failed      int64 // message deliveries where a subscriber failed
	Redelivered int64 // reads of a message read before
	Archived    int64 // messages archived (malformed, or out of deliveries)
	Malformed   int64
	Unmatched   int64 // messages no subscriber matched (acknowledged)
	Deliveries  int64 // subscriber invocations
	Panics      int64 // subscriber panics recovered
	Released    int64 // read but not started before a stop, made visible again
}

// Stats copies the counters.
func (c *DurableConsumer) Stats() ConsumerStats {
	return ConsumerStats{
		Read: c.read.Load(), Acked: c.acked.Load(), Failed: c.failed.Load(), Redelivered: c.redelivered.Load(),
		Archived: c.archived.Load(), Malformed: c.malformed.Load(), Unmatched: c.unmatched.Load(),
		Deliveries: c.deliveries.Load(), Panics: c.panics.Load(), Released: c.released.Load(),
	}
}
