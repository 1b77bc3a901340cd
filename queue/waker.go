package queue

import (
	"context"
	"time"
)

// Waker coalesces wake-up signals for one consumer: any number of Wake calls before the consumer
// waits again count as one. Consumers wait for "woken OR poll interval elapsed", so a lost
// notification only delays a message by at most one interval.
type Waker struct {
	c chan struct{}
}

// NewWaker returns a Waker with no pending signal.
func NewWaker() *Waker { return &Waker{c: make(chan struct{}, 1)} }

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
// events wake the Waker registered under the event's queue name; EventReconnected and
// EventUnparsable wake every Waker (something may have been missed). Unknown queues are ignored.
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
					w.Wake()
				}
			default:
				if w := wakers[ev.QueueName]; w != nil {
					w.Wake()
				}
			}
		}
	}
}
