package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/domainevents"
	exdomainevents "github.com/tasker-go/tasker/examples/domainevents"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

func deLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("TASKER_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// deTemplate writes a template configuration for the fixture's named task with the given step
// definitions (each a JSON-able map with name, handler, publishes_events...).
func deTemplate(t *testing.T, pool *pgxpool.Pool, f taskFixture, steps []map[string]any) {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{"name": "t", "namespace_name": "ns", "version": "0.1.0", "steps": steps})
	if err != nil {
		t.Fatal(err)
	}
	deConfigure(t, pool, f, cfg)
}

func deConfigure(t *testing.T, pool *pgxpool.Pool, f taskFixture, cfg []byte) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.named_tasks SET configuration = $2, updated_at = clock_timestamp() WHERE named_task_uuid = $1`, f.NamedTaskUUID, cfg); err != nil {
		t.Fatal(err)
	}
}

// deEvent is a publishes_events entry.
func deEvent(name, condition, mode string, schema any) map[string]any {
	return map[string]any{"name": name, "description": name + " (test)", "condition": condition, "delivery_mode": mode, "schema": schema}
}

// deStart runs a worker for ns with events as its EventPublisher until the test ends.
func deStart(t *testing.T, pool *pgxpool.Pool, ns string, reg *handlers.Registry, events worker.EventPublisher) *wkRunning {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.Namespaces = []string{ns}
	cfg.PollInterval = 100 * time.Millisecond
	cfg.VisibilityTimeout = 3 * time.Second
	cfg.StepTimeout = 5 * time.Second
	cfg.StaleGrace = time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Concurrency = 8
	w, err := worker.New(cfg, pool, reg, worker.WithLogger(deLogger()), worker.WithEvents(events))
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, "worker", w.Run)
	if err := w.EnsureQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &wkRunning{w: w, stop: stop}
}

type deRunningConsumer struct {
	c    *domainevents.DurableConsumer
	stop func()
}

// deConsume runs a durable consumer until stop is called (or the test ends).
func deConsume(t *testing.T, pool *pgxpool.Pool, subs *domainevents.SubscriberRegistry, cfg domainevents.ConsumerConfig) *deRunningConsumer {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	cfg.Logger = deLogger()
	c, err := domainevents.NewDurableConsumer(pool, subs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, "consumer", c.Run)
	return &deRunningConsumer{c: c, stop: stop}
}

// deQueued returns the envelopes waiting in q (without reading them), in send order.
func deQueued(t *testing.T, pool *pgxpool.Pool, q string) []*domainevents.DomainEvent {
	t.Helper()
	return deEnvelopes(t, pool, `SELECT message FROM pgmq.`+pgx.Identifier{"q_" + q}.Sanitize()+` ORDER BY msg_id`)
}

func deEnvelopes(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []*domainevents.DomainEvent {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*domainevents.DomainEvent, len(raws))
	for i, raw := range raws {
		if out[i], err = domainevents.DecodeEvent(raw); err != nil {
			t.Fatalf("queued message is not an envelope: %v\n%s", err, raw)
		}
	}
	return out
}

// deRecorder counts, per event_id, how often subscribers were invoked and how often they
// succeeded. before, when set, runs first and may fail the delivery.
type deRecorder struct {
	mu        sync.Mutex
	attempts  map[uuid.UUID]int
	successes map[uuid.UUID]int
	events    map[uuid.UUID]*domainevents.DomainEvent
	modes     map[uuid.UUID]domainevents.DeliveryMode
	order     []uuid.UUID
	before    func(ctx context.Context, ev *domainevents.DomainEvent, successesSoFar int) error
}

func newDERecorder() *deRecorder {
	return &deRecorder{attempts: map[uuid.UUID]int{}, successes: map[uuid.UUID]int{},
		events: map[uuid.UUID]*domainevents.DomainEvent{}, modes: map[uuid.UUID]domainevents.DeliveryMode{}}
}

func (r *deRecorder) subscriber(name string, patterns ...string) domainevents.Subscriber {
	return domainevents.NewSubscriber(name, patterns, func(ctx context.Context, ev *domainevents.DomainEvent) error {
		r.mu.Lock()
		r.attempts[ev.EventID]++
		r.events[ev.EventID] = ev
		if d, ok := domainevents.DeliveryFrom(ctx); ok {
			r.modes[ev.EventID] = d.Mode
		}
		before := r.before
		n := r.totalSuccesses()
		r.mu.Unlock()
		if before != nil {
			if err := before(ctx, ev, n); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.successes[ev.EventID]++
		r.order = append(r.order, ev.EventID)
		r.mu.Unlock()
		return nil
	})
}

func (r *deRecorder) totalSuccesses() int {
	n := 0
	for _, v := range r.successes {
		n += v
	}
	return n
}

func (r *deRecorder) snapshot() (attempts, successes map[uuid.UUID]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps2(r.attempts), maps2(r.successes)
}

func (r *deRecorder) byName() map[string][]*domainevents.DomainEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]*domainevents.DomainEvent{}
	for _, id := range r.order {
		ev := r.events[id]
		out[ev.EventName] = append(out[ev.EventName], ev)
	}
	return out
}

func maps2(m map[uuid.UUID]int) map[uuid.UUID]int {
	out := make(map[uuid.UUID]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func deWait(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deItemSteps builds n steps, each publishing one durable item.processed event on success
// whose payload (the handler's result {"n": i}) must have an integer n.
func deItemSteps(t *testing.T, pool *pgxpool.Pool, ns string, n int) (taskFixture, *handlers.Registry) {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("de_item_%03d", i)
	}
	f := newTaskWithSteps(t, pool, ns, names, nil)
	initTransitions(t, pool, f)
	schema := map[string]any{"type": "object", "required": []string{"n"}, "properties": map[string]any{"n": map[string]any{"type": "integer"}}}
	var steps []map[string]any
	for _, name := range names {
		steps = append(steps, map[string]any{"name": name, "handler": map[string]any{"callable": "de_item"},
			"publishes_events": []any{deEvent("item.processed", "success", "durable", schema)}})
	}
	deTemplate(t, pool, f, steps)
	reg := handlers.NewRegistry()
	reg.MustRegister("de_item", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		var i int
		fmt.Sscanf(s.StepName(), "de_item_%03d", &i)
		return handlers.Success(map[string]any{"n": i}, nil)
	}))
	return f, reg
}

func deCountQ(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	return wkCount(t, pool, `SELECT count(*) FROM pgmq.`+pgx.Identifier{table}.Sanitize())
}

// TestDEDurableEventsExactlyOnce: 50 steps complete while a consumer runs; every event reaches
// the subscriber exactly once (no dedupe anywhere: the recorder counts raw invocations).
func TestDEDurableEventsExactlyOnce(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_once"
	f, reg := deItemSteps(t, pool, ns, 50)
	rec := newDERecorder()
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(rec.subscriber("audit", "item.*"))
	consumer := deConsume(t, pool, subs, domainevents.ConsumerConfig{Namespaces: []string{ns}, Concurrency: 4, VisibilityTimeout: 5 * time.Second})
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Logger: deLogger()})
	deStart(t, pool, ns, reg, events)
	for _, s := range f.StepNames {
		wkEnqueue(t, pool, ns, f, s)
	}
	deWait(t, 30*time.Second, "50 handled events", func() bool { _, s := rec.snapshot(); return len(s) == 50 })
	time.Sleep(500 * time.Millisecond) // a duplicate delivery would show up here
	consumer.stop()

	attempts, successes := rec.snapshot()
	steps := map[uuid.UUID]bool{}
	for id, n := range attempts {
		if n != 1 || successes[id] != 1 {
			t.Errorf("event %s delivered %d times (%d successes), want exactly once", id, n, successes[id])
		}
		ev := rec.events[id]
		steps[*ev.Metadata.StepUUID] = true
		var p struct{ N int }
		if err := json.Unmarshal(ev.Payload.Payload, &p); err != nil || fmt.Sprintf("de_item_%03d", p.N) != *ev.Metadata.StepName {
			t.Errorf("event of %s carries payload %s", *ev.Metadata.StepName, ev.Payload.Payload)
		}
		if ev.Metadata.Namespace != ns || ev.Metadata.FiredBy != domainevents.DefaultPublisherName || ev.Metadata.TaskUUID != f.TaskUUID ||
			ev.Metadata.CorrelationID != f.CorrelationID || rec.modes[id] != domainevents.DeliveryDurable {
			t.Errorf("metadata %+v (mode %s)", ev.Metadata, rec.modes[id])
		}
	}
	if len(attempts) != 50 || len(steps) != 50 {
		t.Fatalf("%d events for %d distinct steps, want 50/50", len(attempts), len(steps))
	}
	for _, s := range f.StepNames {
		if got := wkStepState(t, pool, f.Step(t, s)); got != state.StepEnqueuedForOrchestration {
			t.Fatalf("step %s is %s", s, got)
		}
	}
	if s := consumer.c.Stats(); s.Acked != 50 || s.Redelivered != 0 || s.Failed != 0 || s.Archived != 0 || s.Deliveries != 50 {
		t.Fatalf("consumer stats %+v", s)
	}
	if s := events.Stats(); s.DurablePublished != 50 || s.PendingCompletions != 0 || s.SchemaInvalid != 0 {
		t.Fatalf("publisher stats %+v", s)
	}
	if n := deCountQ(t, pool, "q_"+ns+"_domain_events") + deCountQ(t, pool, "a_"+ns+"_domain_events"); n != 0 {
		t.Fatalf("%d messages left in the queue or its archive", n)
	}
}

// TestDEDurableConsumerRestart: 50 committed events are consumed by three consumers in turn.
// Consumer A is stopped hard while one delivery is in flight, B is stopped gracefully in the
// middle, C finishes. The guarantee is at-least-once: the only event handled twice must be the
// one whose delivery A's hard stop interrupted (its subscriber ran, the message was not
// deleted, B received it again with read_ct 2); the graceful stop of B adds no duplicate, and
// every event is handled successfully exactly once.
func TestDEDurableConsumerRestart(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_restart"
	f, reg := deItemSteps(t, pool, ns, 50)
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Logger: deLogger()})
	deStart(t, pool, ns, reg, events)
	for _, s := range f.StepNames {
		wkEnqueue(t, pool, ns, f, s)
	}
	for _, s := range f.StepNames {
		wkWaitState(t, pool, f.Step(t, s), state.StepEnqueuedForOrchestration, 30*time.Second)
	}
	// One event per completed step, committed with it: the expected set.
	queued := deQueued(t, pool, ns+"_domain_events")
	expected := map[uuid.UUID]bool{}
	perStep := map[uuid.UUID]int{}
	for _, ev := range queued {
		expected[ev.EventID] = true
		perStep[*ev.Metadata.StepUUID]++
	}
	if len(queued) != 50 || len(expected) != 50 || len(perStep) != 50 {
		t.Fatalf("%d queued events (%d ids, %d steps), want 50 one per step", len(queued), len(expected), len(perStep))
	}

	rec := newDERecorder()
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(rec.subscriber("audit", "*"))
	cfg := domainevents.ConsumerConfig{Namespaces: []string{ns}, Concurrency: 1, BatchSize: 5,
		VisibilityTimeout: 10 * time.Second, ShutdownTimeout: 200 * time.Millisecond}

	// A: after 20 successes the next delivery blocks until its context is cancelled.
	var interrupted uuid.UUID
	blocked := make(chan struct{})
	rec.before = func(ctx context.Context, ev *domainevents.DomainEvent, n int) error {
		if n < 20 {
			return nil
		}
		interrupted = ev.EventID
		close(blocked)
		<-ctx.Done()
		return ctx.Err()
	}
	a := deConsume(t, pool, subs, cfg)
	<-blocked
	a.stop()
	if s := a.c.Stats(); s.Acked != 20 || s.Failed != 1 || s.Released != 4 {
		t.Fatalf("consumer A stats %+v: want 20 acked, 1 interrupted, the 4 unstarted messages of its batch released", s)
	}

	// B: stops itself gracefully once 35 events succeeded in total.
	stopping := make(chan struct{})
	var once sync.Once
	rec.before = func(_ context.Context, _ *domainevents.DomainEvent, n int) error {
		if n == 34 { // this delivery is the 35th success
			once.Do(func() { close(stopping) })
		}
		return nil
	}
	b := deConsume(t, pool, subs, cfg)
	<-stopping
	b.stop()
	if s := b.c.Stats(); s.Acked != 15 || s.Redelivered != 1 || s.Failed != 0 {
		t.Fatalf("consumer B stats %+v: want 15 acked, 1 redelivery (the interrupted event), no failure", s)
	}

	// C: finishes.
	rec.before = nil
	c := deConsume(t, pool, subs, cfg)
	deWait(t, 30*time.Second, "every event handled", func() bool { _, s := rec.snapshot(); return len(s) == 50 })
	time.Sleep(300 * time.Millisecond)
	c.stop()
	// C's Redelivered counts messages whose read_ct > 1; under load B may read a last batch
	// while stopping, and its reads then show up here. Handler invocations, the real
	// duplicates, are asserted per event below.
	if s := c.c.Stats(); s.Acked != 15 {
		t.Fatalf("consumer C stats %+v", s)
	}

	attempts, successes := rec.snapshot()
	total := 0
	for id := range expected {
		if successes[id] != 1 {
			t.Errorf("event %s succeeded %d times, want exactly once", id, successes[id])
		}
		want := 1
		if id == interrupted {
			want = 2 // interrupted by A's hard stop, delivered again by B
		}
		if attempts[id] != want {
			t.Errorf("event %s delivered %d times, want %d", id, attempts[id], want)
		}
		total += attempts[id]
	}
	if len(attempts) != 50 || total != 51 {
		t.Fatalf("%d distinct events, %d deliveries; want 50 and 51", len(attempts), total)
	}
	if n := deCountQ(t, pool, "q_"+ns+"_domain_events") + deCountQ(t, pool, "a_"+ns+"_domain_events"); n != 0 {
		t.Fatalf("%d messages left in the queue or its archive", n)
	}
}

// TestDEConsumerRetriesPartialFailuresAndArchives: a message is deleted only when all matching
// subscribers succeeded; a redelivery runs only the subscribers that have not succeeded yet;
// after MaxDeliveries the message is archived with the reason; malformed messages are archived.
func TestDEConsumerRetriesPartialFailuresAndArchives(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_retry"
	q := queue.DomainEventsQueue(ns)
	client := queue.NewClient(pool)
	ctx := context.Background()
	if err := client.EnsureQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *domainevents.DomainEvent {
		step := uuid.Must(uuid.NewV7())
		stepName := "hand_made"
		return &domainevents.DomainEvent{EventID: uuid.Must(uuid.NewV7()), EventName: name, EventVersion: domainevents.EventVersion,
			Payload:  domainevents.EventPayload{Payload: json.RawMessage(`{"order_id":"o-1"}`)},
			Metadata: domainevents.EventMetadata{TaskUUID: uuid.Must(uuid.NewV7()), StepUUID: &step, StepName: &stepName, Namespace: ns, FiredAt: time.Now(), FiredBy: "test"}}
	}
	created, cancelled := mk("order.created"), mk("order.cancelled")
	for _, b := range []any{created, cancelled, json.RawMessage(`{"hello":"world"}`)} {
		if _, err := client.SendWithNotify(ctx, nil, q, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	var okCalls, flakyCalls, brokenCalls sync.Map
	count := func(m *sync.Map, id uuid.UUID) int {
		v, _ := m.LoadOrStore(id, new(atomic.Int32))
		return int(v.(*atomic.Int32).Add(1))
	}
	get := func(m *sync.Map, id uuid.UUID) int {
		v, ok := m.Load(id)
		if !ok {
			return 0
		}
		return int(v.(*atomic.Int32).Load())
	}
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(domainevents.NewSubscriber("ok", []string{"order.*"}, func(_ context.Context, ev *domainevents.DomainEvent) error {
		count(&okCalls, ev.EventID)
		return nil
	}))
	subs.MustRegister(domainevents.NewSubscriber("flaky", []string{"order.created"}, func(_ context.Context, ev *domainevents.DomainEvent) error {
		if count(&flakyCalls, ev.EventID) == 1 {
			return errors.New("warehouse API timeout")
		}
		return nil
	}))
	subs.MustRegister(domainevents.NewSubscriber("broken", []string{"order.cancelled"}, func(_ context.Context, ev *domainevents.DomainEvent) error {
		if count(&brokenCalls, ev.EventID) > 0 {
			panic("broken subscriber")
		}
		return nil
	}))
	c := deConsume(t, pool, subs, domainevents.ConsumerConfig{Namespaces: []string{ns}, MaxDeliveries: 3,
		RetryDelay: 10 * time.Millisecond, VisibilityTimeout: 2 * time.Second})
	deWait(t, 20*time.Second, "queue drained", func() bool { return deCountQ(t, pool, "q_"+q) == 0 })
	c.stop()

	if get(&okCalls, created.EventID) != 1 || get(&flakyCalls, created.EventID) != 2 {
		t.Fatalf("order.created: ok ran %d times, flaky %d; want 1 and 2 (the retry skips the subscriber that succeeded)",
			get(&okCalls, created.EventID), get(&flakyCalls, created.EventID))
	}
	if get(&okCalls, cancelled.EventID) != 1 || get(&brokenCalls, cancelled.EventID) != 3 {
		t.Fatalf("order.cancelled: ok ran %d times, broken %d; want 1 and 3 (MaxDeliveries)",
			get(&okCalls, cancelled.EventID), get(&brokenCalls, cancelled.EventID))
	}
	rows, err := pool.Query(ctx, `SELECT message, headers, read_ct FROM pgmq.`+pgx.Identifier{"a_" + q}.Sanitize()+` ORDER BY msg_id`)
	if err != nil {
		t.Fatal(err)
	}
	type archived struct {
		msg     json.RawMessage
		headers map[string]string
		reads   int
	}
	var got []archived
	for rows.Next() {
		var a archived
		if err := rows.Scan(&a.msg, &a.headers, &a.reads); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if len(got) != 2 {
		t.Fatalf("%d archived messages, want 2 (order.cancelled, the malformed one)", len(got))
	}
	if h := got[0].headers; h[queue.ArchiveReasonHeader] != domainevents.ReasonMaxDeliveriesExceeded ||
		h[domainevents.DeliveredToHeader] != `["ok"]` || !strings.Contains(h[queue.ArchiveReasonHeader+"-why"], "broken") || got[0].reads != 3 {
		t.Fatalf("order.cancelled archived with %v after %d reads", h, got[0].reads)
	}
	if h := got[1].headers; h[queue.ArchiveReasonHeader] != domainevents.ReasonMalformedEvent {
		t.Fatalf("malformed message archived with %v", h)
	}
	if s := c.c.Stats(); s.Acked != 1 || s.Archived != 2 || s.Malformed != 1 || s.Panics != 3 || s.Failed != 4 {
		t.Fatalf("consumer stats %+v", s)
	}
}

// deFailingEvents wraps a StepPublisher: the durable send happens, then the completion fails.
type deFailingEvents struct {
	*domainevents.StepPublisher
	ns          string
	seenInTx    atomic.Int64
	afterCommit atomic.Int64
}

func (f *deFailingEvents) PublishDurable(ctx context.Context, tx pgx.Tx, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) error {
	if err := f.StepPublisher.PublishDurable(ctx, tx, seq, res); err != nil {
		return err
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pgmq.`+pgx.Identifier{"q_" + queue.DomainEventsQueue(f.ns)}.Sanitize()).Scan(&n); err != nil {
		return err
	}
	f.seenInTx.Store(n)
	return errors.New("injected failure after the durable send")
}

func (f *deFailingEvents) PublishAfterCommit(ctx context.Context, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) {
	f.afterCommit.Add(1)
	f.StepPublisher.PublishAfterCommit(ctx, seq, res)
}

// TestDENoEventWhenCompletionRollsBack: the durable envelope is written inside the completion
// transaction (visible there), then the completion fails; afterwards nothing was sent — no
// durable message, no fast copy, no orchestration notification — and the step is still
// in_progress.
func TestDENoEventWhenCompletionRollsBack(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_rollback"
	f := newTaskWithSteps(t, pool, ns, []string{"charge"}, nil)
	initTransitions(t, pool, f)
	deTemplate(t, pool, f, []map[string]any{{"name": "charge", "handler": map[string]any{"callable": "de_charge"},
		"publishes_events": []any{deEvent("charge.done", "success", "broadcast", map[string]any{"type": "object"})}}})
	reg := handlers.NewRegistry()
	reg.MustRegister("de_charge", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"charged": true}, nil)
	}))
	fast := newDERecorder()
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(fast.subscriber("fast", "*"))
	bus := domainevents.NewBus(subs, domainevents.BusConfig{})
	inner := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Bus: bus, Logger: deLogger()})
	events := &deFailingEvents{StepPublisher: inner, ns: ns}
	r := deStart(t, pool, ns, reg, events)
	wkEnqueue(t, pool, ns, f, "charge")
	deWait(t, 10*time.Second, "the durable send inside the completion", func() bool { return events.seenInTx.Load() == 1 })
	time.Sleep(500 * time.Millisecond)
	r.stop()

	if got := wkStepState(t, pool, f.Step(t, "charge")); got != state.StepInProgress {
		t.Fatalf("step is %s; the failed completion must leave it in_progress", got)
	}
	if n := deCountQ(t, pool, "q_"+ns+"_domain_events") + deCountQ(t, pool, "a_"+ns+"_domain_events"); n != 0 {
		t.Fatalf("%d domain event messages survived the rolled-back completion", n)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 0 {
		t.Fatalf("%d orchestration notifications", n)
	}
	if events.afterCommit.Load() != 0 {
		t.Fatal("PublishAfterCommit ran for a completion that did not commit")
	}
	if a, _ := fast.snapshot(); len(a) != 0 {
		t.Fatalf("%d fast events for a rolled-back completion", len(a))
	}
	if s := inner.Stats(); s.DurablePublished != 0 || s.FastPublished != 0 {
		t.Fatalf("publisher stats %+v", s)
	}
	if s := r.w.Metrics().Snapshot(); s.DBErrors < 1 || s.Completed != 0 {
		t.Fatalf("worker metrics %+v", s)
	}
}

// TestDEConditionsAndBroadcast runs one step per outcome, each declaring a broadcast event
// for every condition, and checks which fired on both paths.
func TestDEConditionsAndBroadcast(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_cond"
	stepNames := []string{"ok_step", "bad_step", "retry_step", "last_step"}
	f := newTaskWithSteps(t, pool, ns, stepNames, nil)
	initTransitions(t, pool, f)
	conds := []string{"success", "failure", "retryable_failure", "permanent_failure", "always"}
	var steps []map[string]any
	for _, s := range stepNames {
		var evs []any
		for _, c := range conds {
			evs = append(evs, deEvent(s+"."+c, c, "broadcast", map[string]any{"type": "object"}))
		}
		steps = append(steps, map[string]any{"name": s, "handler": map[string]any{"callable": "de_outcome"}, "publishes_events": evs})
	}
	deTemplate(t, pool, f, steps)
	// last_step runs its third and last attempt (max_attempts is 3).
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.workflow_steps SET attempts = 2 WHERE workflow_step_uuid = $1`, f.Step(t, "last_step")); err != nil {
		t.Fatal(err)
	}
	reg := handlers.NewRegistry()
	reg.MustRegister("de_outcome", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		switch s.StepName() {
		case "ok_step":
			return handlers.Success(map[string]any{"fine": true}, nil)
		case "bad_step":
			return handlers.Failure("invalid card", handlers.ErrorTypePermanent, false)
		default:
			return handlers.Failure("gateway busy", handlers.ErrorTypeRetryable, true)
		}
	}))
	fast := newDERecorder()
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(fast.subscriber("fast", "*"))
	bus := domainevents.NewBus(subs, domainevents.BusConfig{})
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Bus: bus, Logger: deLogger()})
	deStart(t, pool, ns, reg, events)
	for _, s := range stepNames {
		wkEnqueue(t, pool, ns, f, s)
	}
	wkWaitState(t, pool, f.Step(t, "ok_step"), state.StepEnqueuedForOrchestration, 10*time.Second)
	for _, s := range stepNames[1:] {
		wkWaitState(t, pool, f.Step(t, s), state.StepEnqueuedAsErrorForOrchestration, 10*time.Second)
	}
	want := []string{
		"ok_step.success", "ok_step.always",
		"bad_step.failure", "bad_step.permanent_failure", "bad_step.always",
		"retry_step.failure", "retry_step.retryable_failure", "retry_step.always",
		"last_step.failure", "last_step.permanent_failure", "last_step.always",
	}
	slices.Sort(want)
	deWait(t, 10*time.Second, "fast copies", func() bool { a, _ := fast.snapshot(); return len(a) == len(want) })
	time.Sleep(200 * time.Millisecond)

	durable := deQueued(t, pool, ns+"_domain_events")
	durableIDs := map[string]uuid.UUID{}
	var durableNames []string
	for _, ev := range durable {
		durableNames = append(durableNames, ev.EventName)
		durableIDs[ev.EventName] = ev.EventID
		step, _, _ := strings.Cut(ev.EventName, ".")
		if *ev.Metadata.StepName != step || *ev.Metadata.StepUUID != f.Step(t, step) || ev.EventVersion != "1.0" ||
			ev.Payload.ExecutionResult.Success != (step == "ok_step") || ev.Payload.TaskSequenceStep.WorkflowStep.Name != step {
			t.Errorf("durable %s: metadata %+v, success %v", ev.EventName, ev.Metadata, ev.Payload.ExecutionResult.Success)
		}
		if string(ev.Payload.Payload) != string(ev.Payload.ExecutionResult.Result) {
			t.Errorf("durable %s payload %s, want the result %s", ev.EventName, ev.Payload.Payload, ev.Payload.ExecutionResult.Result)
		}
	}
	slices.Sort(durableNames)
	if !slices.Equal(durableNames, want) {
		t.Fatalf("durable events %v\nwant %v", durableNames, want)
	}
	var fastNames []string
	for name, evs := range fast.byName() {
		fastNames = append(fastNames, name)
		if len(evs) != 1 {
			t.Errorf("fast %s delivered %d times", name, len(evs))
		}
		if evs[0].EventID == durableIDs[name] {
			t.Errorf("broadcast %s: the fast and durable copies share event_id %s", name, evs[0].EventID)
		}
		if fast.modes[evs[0].EventID] != domainevents.DeliveryFast {
			t.Errorf("fast %s arrived as %s", name, fast.modes[evs[0].EventID])
		}
	}
	slices.Sort(fastNames)
	if !slices.Equal(fastNames, want) {
		t.Fatalf("fast events %v\nwant %v", fastNames, want)
	}
	if s := events.Stats(); s.DurablePublished != 11 || s.FastPublished != 11 || s.SkippedByCondition != 9 || s.Routed() != 22 {
		t.Fatalf("publisher stats %+v", s)
	}
}

// TestDEFastSubscribersInProcess: fast events reach in-process subscribers and nothing goes to
// the durable queue; a stuck and a panicking subscriber do not slow the steps or starve the
// healthy subscriber.
func TestDEFastSubscribersInProcess(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "de_fast"
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("de_fast_%02d", i)
	}
	f := newTaskWithSteps(t, pool, ns, names, nil)
	initTransitions(t, pool, f)
	var steps []map[string]any
	for _, n := range names {
		steps = append(steps, map[string]any{"name": n, "handler": map[string]any{"callable": "de_fast"},
			"publishes_events": []any{deEvent("item.done", "success", "fast", map[string]any{"type": "object", "required": []string{"step"}})}})
	}
	deTemplate(t, pool, f, steps)
	reg := handlers.NewRegistry()
	reg.MustRegister("de_fast", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"step": s.StepName()}, nil)
	}))
	healthy := newDERecorder()
	release := make(chan struct{})
	subs := domainevents.NewSubscriberRegistry()
	subs.MustRegister(healthy.subscriber("healthy", "item.*"))
	subs.MustRegister(domainevents.NewSubscriber("stuck", []string{"*"}, func(context.Context, *domainevents.DomainEvent) error {
		<-release
		return nil
	}))
	subs.MustRegister(domainevents.NewSubscriber("panicky", []string{"item.done"}, func(context.Context, *domainevents.DomainEvent) error {
		panic("subscriber bug")
	}))
	bus := domainevents.NewBus(subs, domainevents.BusConfig{Logger: slog.New(slog.DiscardHandler)})
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Bus: bus, Logger: deLogger()})
	deStart(t, pool, ns, reg, events)
	started := time.Now()
	for _, n := range names {
		wkEnqueue(t, pool, ns, f, n)
	}
	for _, n := range names {
		wkWaitState(t, pool, f.Step(t, n), state.StepEnqueuedForOrchestration, 10*time.Second)
	}
	elapsed := time.Since(started)
	deWait(t, 10*time.Second, "10 fast events at the healthy subscriber", func() bool { _, s := healthy.snapshot(); return len(s) == 10 })
	st := bus.Stats()
	if st.Subscribers["panicky"].Panics != 10 || st.Subscribers["stuck"].Delivered != 0 || st.Subscribers["stuck"].Queued != 10 {
		t.Fatalf("bus stats %+v", st)
	}
	for _, evs := range healthy.byName()["item.done"] {
		var p struct{ Step string }
		_ = json.Unmarshal(evs.Payload.Payload, &p)
		if p.Step != *evs.Metadata.StepName || healthy.modes[evs.EventID] != domainevents.DeliveryFast {
			t.Fatalf("fast event payload %s for step %s", evs.Payload.Payload, *evs.Metadata.StepName)
		}
	}
	if n := deCountQ(t, pool, "q_"+ns+"_domain_events"); n != 0 {
		t.Fatalf("%d fast events went to the durable queue", n)
	}
	t.Logf("10 steps completed in %s with a stuck and a panicking subscriber", elapsed)
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := bus.Stats().Subscribers["stuck"].Delivered; d != 10 {
		t.Fatalf("stuck subscriber handled %d events after release, want 10", d)
	}
}

// deScenarioHandlers are the four handlers of e2e scenario 2.14.
func deScenarioHandlers() *handlers.Registry {
	reg := handlers.NewRegistry()
	now := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
	reg.MustRegister("domain_events.validate_order", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		orderID := handlers.ContextFieldOr(s, "order_id", "")
		checks := []string{}
		if orderID != "" {
			checks = append(checks, "order_id_present")
		}
		if handlers.ContextFieldOr(s, "customer_id", "") != "" {
			checks = append(checks, "customer_id_present")
		}
		amount := handlers.ContextFieldOr(s, "amount", 0.0)
		if amount > 0 {
			checks = append(checks, "amount_positive")
		} else if handlers.ConfigOr(s, "validation_mode", "") == "strict" {
			return handlers.Failure("Order amount must be positive", "ValidationError", false, handlers.WithCode("VALIDATION_ERROR"))
		}
		return handlers.Success(map[string]any{"order_id": orderID, "validation_timestamp": now(), "validation_checks": checks, "validated": true}, nil)
	}))
	reg.MustRegister("domain_events.process_payment", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		orderID := handlers.ContextFieldOr(s, "order_id", "")
		if handlers.ContextFieldOr(s, "simulate_failure", false) {
			return handlers.Failure("Payment declined by processor", "PaymentError", true, handlers.WithCode("PAYMENT_DECLINED"),
				handlers.WithContext(map[string]any{"order_id": orderID, "failed_at": now()}))
		}
		return handlers.Success(map[string]any{"transaction_id": "TXN-" + uuid.NewString(), "amount": handlers.ContextFieldOr(s, "amount", 0.0),
			"payment_method": "credit_card", "processed_at": now(), "status": "success"}, nil)
	}))
	reg.MustRegister("domain_events.update_inventory", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"order_id": handlers.ContextFieldOr(s, "order_id", ""),
			"items":   []map[string]any{{"sku": "ITEM-001", "quantity": 1}, {"sku": "ITEM-002", "quantity": 2}},
			"success": true, "updated_at": now()}, nil)
	}))
	reg.MustRegister("domain_events.send_notification", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"notification_id": "NOTIF-" + uuid.NewString(),
			"channel": handlers.ConfigOr(s, "notification_type", "email"), "recipient": handlers.ContextFieldOr(s, "customer_id", ""),
			"sent_at": now(), "status": "delivered"}, nil)
	}))
	return reg
}

// deAdvance runs one step as orchestration would: enqueue it, wait for the worker's result, and
// (on success) complete it so its result is visible to the next step.
func deAdvance(t *testing.T, pool *pgxpool.Pool, ns string, f taskFixture, step string, wantOK bool) {
	t.Helper()
	wkEnqueue(t, pool, ns, f, step)
	if !wantOK {
		wkWaitState(t, pool, f.Step(t, step), state.StepEnqueuedAsErrorForOrchestration, 15*time.Second)
		return
	}
	wkWaitState(t, pool, f.Step(t, step), state.StepEnqueuedForOrchestration, 15*time.Second)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := state.TransitionStep(ctx, tx, f.Step(t, step), state.StepEvent{Type: state.StepEventComplete}, state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDomainEventPublishingScenario is e2e scenario 2.14 on hand-made rows: the 4-step chain of
// examples/templates/domain_event_publishing.yaml with its custom publishers. A successful
// order publishes order.validated, inventory.updated, notification.sent (fast) and
// payment.processed (durable); a declined payment publishes payment.failed (durable) instead.
func TestDomainEventPublishingScenario(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "domain_events_rust"
	src := "../examples/templates/domain_event_publishing.yaml"
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.Parse(data, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := tmpl.JSON()
	if err != nil {
		t.Fatal(err)
	}
	chain := []string{"domain_events_validate_order", "domain_events_process_payment", "domain_events_update_inventory", "domain_events_send_notification"}
	edges := [][2]string{{chain[0], chain[1]}, {chain[1], chain[2]}, {chain[2], chain[3]}}

	pubs := domainevents.NewPublisherRegistry(deLogger())
	if err := exdomainevents.Register(pubs); err != nil {
		t.Fatal(err)
	}
	var publishers []string
	for _, s := range tmpl.Steps {
		for _, e := range s.PublishesEvents {
			if e.Publisher != nil {
				publishers = append(publishers, *e.Publisher)
			}
		}
	}
	if err := pubs.ValidateRequired(publishers...); err != nil {
		t.Fatal(err)
	}
	fast := newDERecorder()
	fastSubs := domainevents.NewSubscriberRegistry()
	fastSubs.MustRegister(fast.subscriber("metrics", "*"))
	bus := domainevents.NewBus(fastSubs, domainevents.BusConfig{})
	durable := newDERecorder()
	durableSubs := domainevents.NewSubscriberRegistry()
	durableSubs.MustRegister(durable.subscriber("payments_audit", "payment.*"))
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{Publishers: pubs, Bus: bus, Logger: deLogger()})
	deStart(t, pool, ns, deScenarioHandlers(), events)
	consumer := deConsume(t, pool, durableSubs, domainevents.ConsumerConfig{Namespaces: []string{ns}})

	// Successful order.
	ok := newTaskWithSteps(t, pool, ns, chain, edges)
	initTransitions(t, pool, ok)
	deConfigure(t, pool, ok, cfg)
	orderID, customer := uuid.NewString(), "CUST-42"
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.tasks SET context = $2 WHERE task_uuid = $1`, ok.TaskUUID,
		fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"amount":199.99,"simulate_failure":false}`, orderID, customer)); err != nil {
		t.Fatal(err)
	}
	for _, s := range chain {
		deAdvance(t, pool, ns, ok, s, true)
	}
	for _, s := range chain {
		if got := wkStepState(t, pool, ok.Step(t, s)); got != state.StepComplete {
			t.Fatalf("%s is %s", s, got)
		}
	}
	deWait(t, 10*time.Second, "3 fast and 1 durable event", func() bool {
		a, _ := fast.snapshot()
		_, d := durable.snapshot()
		return len(a) == 3 && len(d) == 1
	})
	fe := fast.byName()
	check := func(name, firedBy string, fields ...string) *domainevents.DomainEvent {
		t.Helper()
		evs := fe[name]
		if len(evs) != 1 {
			t.Fatalf("fast %s delivered %d times", name, len(evs))
		}
		ev := evs[0]
		var p map[string]any
		if err := json.Unmarshal(ev.Payload.Payload, &p); err != nil {
			t.Fatal(err)
		}
		for _, k := range fields {
			if _, ok := p[k]; !ok {
				t.Errorf("%s payload %s lacks %s", name, ev.Payload.Payload, k)
			}
		}
		if ev.Metadata.FiredBy != firedBy || ev.Metadata.TaskUUID != ok.TaskUUID || ev.Metadata.CorrelationID != ok.CorrelationID {
			t.Errorf("%s metadata %+v", name, ev.Metadata)
		}
		return ev
	}
	check("order.validated", domainevents.DefaultPublisherName, "order_id", "validation_timestamp", "validation_checks")
	check("inventory.updated", domainevents.DefaultPublisherName, "order_id", "items", "success")
	n := check("notification.sent", "NotificationEventPublisher", "notification_id", "channel", "recipient", "sent_at")
	var note struct{ Channel, Recipient string }
	_ = json.Unmarshal(n.Payload.Payload, &note)
	if note.Channel != "email" || note.Recipient != customer {
		t.Errorf("notification payload %s", n.Payload.Payload)
	}
	de := durable.byName()["payment.processed"]
	if len(de) != 1 {
		t.Fatalf("durable events %v", durable.byName())
	}
	var pay struct {
		TransactionID string  `json:"transaction_id"`
		Amount        float64 `json:"amount"`
		PaymentMethod string  `json:"payment_method"`
		Status        *string `json:"status"`
	}
	_ = json.Unmarshal(de[0].Payload.Payload, &pay)
	if !strings.HasPrefix(pay.TransactionID, "TXN-") || pay.Amount != 199.99 || pay.PaymentMethod != "credit_card" || pay.Status != nil ||
		de[0].Metadata.FiredBy != "PaymentEventPublisher" || string(de[0].Metadata.Extra["payment_provider"]) != `"mock"` ||
		*de[0].Metadata.StepName != chain[1] {
		t.Fatalf("payment.processed %s %+v", de[0].Payload.Payload, de[0].Metadata)
	}
	// tasker-core's E2E assertion on the worker's router counters: >= 4 routed, >= 1 durable,
	// >= 3 fast. Here they are exact.
	if s := events.Stats(); s.Routed() != 4 || s.DurablePublished != 1 || s.FastPublished != 3 || s.SchemaInvalid != 0 {
		t.Fatalf("publisher stats %+v", s)
	}

	// Declined payment: payment.failed (condition failure) instead of payment.processed.
	ko := newTaskWithSteps(t, pool, ns, chain, edges)
	initTransitions(t, pool, ko)
	koOrder := uuid.NewString()
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.tasks SET context = $2 WHERE task_uuid = $1`, ko.TaskUUID,
		fmt.Sprintf(`{"order_id":%q,"customer_id":"CUST-7","amount":5,"simulate_failure":true}`, koOrder)); err != nil {
		t.Fatal(err)
	}
	deAdvance(t, pool, ns, ko, chain[0], true)
	deAdvance(t, pool, ns, ko, chain[1], false)
	deWait(t, 10*time.Second, "payment.failed", func() bool { return len(durable.byName()["payment.failed"]) == 1 })
	time.Sleep(300 * time.Millisecond)
	failed := durable.byName()["payment.failed"][0]
	var fp struct {
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
		OrderID      string `json:"order_id"`
	}
	_ = json.Unmarshal(failed.Payload.Payload, &fp)
	if fp.ErrorCode != "PAYMENT_DECLINED" || fp.ErrorMessage != "Payment declined by processor" || fp.OrderID != koOrder ||
		failed.Metadata.TaskUUID != ko.TaskUUID || failed.Payload.ExecutionResult.Success {
		t.Fatalf("payment.failed %s %+v", failed.Payload.Payload, failed.Metadata)
	}
	if got := durable.byName()["payment.processed"]; len(got) != 1 {
		t.Fatalf("payment.processed published for the declined payment too (%d)", len(got))
	}
	if a, _ := fast.snapshot(); len(a) != 4 { // + order.validated of the second task
		t.Fatalf("%d fast events, want 4", len(a))
	}
	consumer.stop()
	if s := consumer.c.Stats(); s.Acked != 2 || s.Failed != 0 {
		t.Fatalf("consumer stats %+v", s)
	}
}
