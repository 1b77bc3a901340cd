package domainevents

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// BusConfig configures a Bus; zero values take the defaults.
type BusConfig struct {
	// Buffer is each subscriber's queue capacity (default 256). Events for a subscriber whose
	// queue is full are dropped and counted.
	Buffer int
	// HandlerTimeout bounds the context of one Handle call (default 30s).
	HandlerTimeout time.Duration
	Logger         *slog.Logger
}

// Bus delivers fast domain events in process, best effort. Publish never blocks: each
// subscriber has its own goroutine and bounded queue, so a slow, stuck or panicking subscriber
// loses only its own events and never delays the caller or the other subscribers. Panics are
// recovered, reported to the subscriber's OnHandleError and counted.
type Bus struct {
	reg *SubscriberRegistry
	cfg BusConfig
	log *slog.Logger

	ctx    context.Context // parent of handler contexts; cancelled when Close gives up waiting
	cancel context.CancelFunc

	mu      sync.RWMutex
	closed  bool
	workers map[string]*busWorker
	wg      sync.WaitGroup

	published, queued, delivered, failed, panics, dropped atomic.Int64
}

type busWorker struct {
	sub                                        Subscriber
	ch                                         chan *DomainEvent
	queued, delivered, failed, panics, dropped atomic.Int64
}

// NewBus returns a bus delivering to the subscribers of reg (also those registered later).
func NewBus(reg *SubscriberRegistry, cfg BusConfig) *Bus {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{reg: reg, cfg: cfg, log: log.With("component", "domainevents.bus"), ctx: ctx, cancel: cancel,
		workers: map[string]*busWorker{}}
}

// Publish hands ev to every matching subscriber's queue without waiting and returns how many
// accepted it. After Close it accepts nothing.
func (b *Bus) Publish(ev *DomainEvent) int {
	b.published.Add(1)
	subs := b.reg.Matching(ev.EventName)
	ws := make([]*busWorker, len(subs))
	for i, s := range subs {
		ws[i] = b.worker(s)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, w := range ws {
		if b.closed || w == nil {
			b.dropped.Add(1)
			continue
		}
		select {
		case w.ch <- ev:
			n++
			w.queued.Add(1)
			b.queued.Add(1)
		default:
			b.dropped.Add(1)
			if d := w.dropped.Add(1); d&(d-1) == 0 { // log the 1st, 2nd, 4th, 8th... drop
				b.log.Warn("subscriber queue full; fast event dropped for it", "subscriber", w.sub.Name(),
					"event_name", ev.EventName, "event_id", ev.EventID, "buffer", b.cfg.Buffer, "dropped_total", d)
			}
		}
	}
	return n
}

// worker returns s's worker, starting it on first use; nil once the bus is closed.
func (b *Bus) worker(s Subscriber) *busWorker {
	b.mu.RLock()
	w, closed := b.workers[s.Name()], b.closed
	b.mu.RUnlock()
	if w != nil || closed {
		return w
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if w = b.workers[s.Name()]; w == nil {
		w = &busWorker{sub: s, ch: make(chan *DomainEvent, b.cfg.Buffer)}
		b.workers[s.Name()] = w
		b.wg.Add(1)
		go b.run(w)
	}
	return w
}

func (b *Bus) run(w *busWorker) {
	defer b.wg.Done()
	for ev := range w.ch {
		ctx, cancel := context.WithTimeout(WithDelivery(b.ctx, Delivery{Mode: DeliveryFast}), b.cfg.HandlerTimeout)
		err := deliver(ctx, w.sub, ev)
		cancel()
		switch {
		case err == nil:
			w.delivered.Add(1)
			b.delivered.Add(1)
		case isPanic(err):
			w.failed.Add(1)
			w.panics.Add(1)
			b.failed.Add(1)
			b.panics.Add(1)
			b.log.Error("fast event subscriber panicked", "subscriber", w.sub.Name(), "event_name", ev.EventName,
				"event_id", ev.EventID, "panic", err.(*PanicError).Value, "stack", string(err.(*PanicError).Stack))
		default:
			w.failed.Add(1)
			b.failed.Add(1)
			b.log.Warn("fast event subscriber failed", "subscriber", w.sub.Name(), "event_name", ev.EventName,
				"event_id", ev.EventID, "error", err)
		}
	}
}

// Close stops accepting events and waits until the subscribers have handled what is queued, or
// until ctx is done; then it cancels the handlers' contexts and returns ctx.Err() (a handler
// that ignores its context keeps its goroutine).
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for _, w := range b.workers {
			close(w.ch)
		}
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.cancel()
		return nil
	case <-ctx.Done():
		b.cancel()
		return ctx.Err()
	}
}

// BusStats are the bus's counters. Dropped counts per-subscriber deliveries lost to a full
// queue or a closed bus.
type BusStats struct {
	Published, Queued, Delivered, Failed, Panics, Dropped int64
	Subscribers                                           map[string]SubscriberStats
}

// SubscriberStats are one subscriber's counters on a Bus; Pending is its queue length now.
type SubscriberStats struct {
	Queued, Delivered, Failed, Panics, Dropped int64
	Pending                                    int
}

// Stats copies the counters.
func (b *Bus) Stats() BusStats {
	s := BusStats{
		Published: b.published.Load(), Queued: b.queued.Load(), Delivered: b.delivered.Load(),
		Failed: b.failed.Load(), Panics: b.panics.Load(), Dropped: b.dropped.Load(),
		Subscribers: map[string]SubscriberStats{},
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for name, w := range b.workers {
		s.Subscribers[name] = SubscriberStats{Queued: w.queued.Load(), Delivered: w.delivered.Load(),
			Failed: w.failed.Load(), Panics: w.panics.Load(), Dropped: w.dropped.Load(), Pending: len(w.ch)}
	}
	return s
}
