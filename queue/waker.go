package queue

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Waker coalesces wake-up signals for one consumer: any number of Wake calls before the consumer
// waits again count as one. Consumers wait for "woken OR poll interval elapsed", so a lost
// notification only delays a message by at most one interval. A hinting Waker also keeps the
// messages notifications carried (Hint), so the consumer can act on them without reading.
type Waker struct {
	c chan struct{}

	mu       sync.Mutex
	hintCap  int
	hints    []Hint
	overflow bool
}

// Hint is a message a notification carried (message_with_payload). The message was visible when
// sent; by the time the consumer acts on it another consumer may have read it.
type Hint struct {
	MsgID int64
	Body  json.RawMessage
}

// NewWaker returns a Waker with no pending signal.
func NewWaker() *Waker { return &Waker{c: make(chan struct{}, 1)} }

// NewHintingWaker returns a Waker that keeps up to capacity hints between TakeHints calls.
func NewHintingWaker(capacity int) *Waker {
	return &Waker{c: make(chan struct{}, 1), hintCap: capacity}
}

// Offer keeps h for the consumer (when the Waker hints and has room; otherwise the consumer is
// told that hints overflowed, and reads) and wakes it.
func (w *Waker) Offer(h Hint) {
	w.mu.Lock()
	switch {
	case w.hintCap == 0:
	case len(w.hints) < w.hintCap:
		w.hints = append(w.hints, h)
	default:
		w.overflow = true
	}
	w.mu.Unlock()
	w.Wake()
}

// TakeHints returns the hints kept since the last call, and whether some were dropped (or came
// without a message), in which case the consumer must read the queue.
func (w *Waker) TakeHints() (hints []Hint, overflowed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hints, overflowed = w.hints, w.overflow
	w.hints, w.overflow = nil, false
	return hints, overflowed
}

// MissedHint records that a notification for the consumer carried no message (it must read).
func (w *Waker) MissedHint() {
	w.mu.Lock()
	w.overflow = true
	w.mu.Unlock()
	w.Wake()
}

// Wake records a signal; it never blocks.
func (w *Waker) Wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// C receives once per (coalesced) signal, for use in a select.
func (w *Waker) C() <-chan struct{} { return w.c }

// Wait returns true when woken, false when interval elapsed first, and ctx.Err() when ctx is
// done.
func (w *Waker) Wait(ctx context.Context, interval time.Duration) (bool, error) {
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-w.c:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Poll calls fn at once and then after every wake-up or elapsed interval, until ctx is done
// (it returns ctx.Err()). fn reports whether more work may be waiting (for example it read a
// full batch); then it is called again without waiting. fn handles its own errors.
func Poll(ctx context.Context, w *Waker, interval time.Duration, fn func(ctx context.Context) (more bool)) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if fn(ctx) {
			continue
		}
		if _, err := w.Wait(ctx, interval); err != nil {
			return err
		}
	}
}

// Route wakes consumers from listener events until events is closed or ctx is done: message
// events wake the Waker registered under the event's queue name (offering the message when the
// event carries it); EventReconnected and EventUnparsable wake every Waker telling it to read
// (something may have been missed). Unknown queues are ignored.
func Route(ctx context.Context, events <-chan Event, wakers map[string]*Waker) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Type {
			case EventQueueCreated:
			case EventReconnected, EventUnparsable:
				for _, w := range wakers {
					w.MissedHint()
				}
			case EventMessageWithPayload:
				if w := wakers[ev.QueueName]; w != nil {
					if ev.DelaySeconds > 0 {
						w.MissedHint() // not visible yet: a later read gets it
					} else {
						w.Offer(Hint{MsgID: ev.MsgID, Body: ev.Message})
					}
				}
			default:
				if w := wakers[ev.QueueName]; w != nil {
					w.MissedHint()
				}
			}
		}
	}
}

// WakeOnNotify is the listen-or-poll start every consumer shares: it listens on cfg.Channels and
// Routes the notifications to wakers until ctx is done or stop is called. When LISTEN is
// unavailable it logs that the consumers poll only (they read at every poll interval anyway).
// stop closes the listener and waits for the router.
func WakeOnNotify(ctx context.Context, cfg ListenerConfig, wakers map[string]*Waker) (stop func()) {
	l, err := Listen(ctx, cfg)
	if err != nil {
		if cfg.Logger != nil {
			cfg.Logger.Warn("LISTEN unavailable; polling only", "error", err)
		}
		return func() {}
	}
	routed := make(chan struct{})
	go func() {
		defer close(routed)
		Route(ctx, l.Events(), wakers)
	}()
	return func() {
		l.Close() // closes Events, which ends Route
		<-routed
	}
}

// ListenerConfigFor is the ListenerConfig of a consumer on pool: the pool's database and
// application_name.
func ListenerConfigFor(pool *pgxpool.Pool, channels []string, log *slog.Logger) ListenerConfig {
	pc := pool.Config()
	return ListenerConfig{URL: pc.ConnString(), Channels: channels, Logger: log,
		AppName: pc.ConnConfig.RuntimeParams["application_name"]}
}
