package queue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWakerCoalescesAndTimesOut(t *testing.T) {
	w := NewWaker()
	w.Wake()
	w.Wake()
	w.Wake()
	ctx := context.Background()
	if woken, err := w.Wait(ctx, time.Second); !woken || err != nil {
		t.Fatalf("first wait = %v, %v", woken, err)
	}
	start := time.Now()
	if woken, err := w.Wait(ctx, 30*time.Millisecond); woken || err != nil {
		t.Fatalf("second wait = %v, %v; signals were not coalesced", woken, err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("returned before the interval")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := w.Wait(cctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait = %v", err)
	}
}

func TestPollRunsOnWakeAndInterval(t *testing.T) {
	w := NewWaker()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	more := 2 // the first call reports more work twice: no waiting in between
	done := make(chan error)
	go func() {
		done <- Poll(ctx, w, time.Hour, func(context.Context) bool {
			calls.Add(1)
			if more > 0 {
				more--
				return true
			}
			return false
		})
	}()
	waitFor(t, func() bool { return calls.Load() == 3 })
	w.Wake()
	waitFor(t, func() bool { return calls.Load() == 4 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll = %v", err)
	}

	// With no wake-ups, the interval alone drives it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	var n atomic.Int32
	_ = Poll(ctx2, NewWaker(), 20*time.Millisecond, func(context.Context) bool { n.Add(1); return false })
	if n.Load() < 3 {
		t.Errorf("interval polls = %d, want several", n.Load())
	}
}

func TestRoute(t *testing.T) {
	a, b := NewWaker(), NewWaker()
	events := make(chan Event, 4)
	events <- Event{Type: EventMessageReady, QueueName: "qa"}
	events <- Event{Type: EventQueueCreated, QueueName: "qb"}
	events <- Event{Type: EventMessageWithPayload, QueueName: "unknown"}
	close(events)
	Route(context.Background(), events, map[string]*Waker{"qa": a, "qb": b})
	if len(a.C()) != 1 || len(b.C()) != 0 {
		t.Fatalf("a=%d b=%d", len(a.C()), len(b.C()))
	}
	<-a.C()
	events = make(chan Event, 1)
	events <- Event{Type: EventReconnected}
	close(events)
	Route(context.Background(), events, map[string]*Waker{"qa": a, "qb": b})
	if len(a.C()) != 1 || len(b.C()) != 1 {
		t.Fatalf("reconnect woke a=%d b=%d", len(a.C()), len(b.C()))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWakerHints(t *testing.T) {
	w := NewHintingWaker(2)
	w.Offer(Hint{MsgID: 1})
	w.Offer(Hint{MsgID: 2})
	if hs, over := w.TakeHints(); len(hs) != 2 || hs[0].MsgID != 1 || hs[1].MsgID != 2 || over {
		t.Fatalf("TakeHints = %v, %v", hs, over)
	}
	w.Offer(Hint{MsgID: 3})
	w.Offer(Hint{MsgID: 4})
	w.Offer(Hint{MsgID: 5}) // over capacity: the consumer must read
	if hs, over := w.TakeHints(); len(hs) != 2 || !over {
		t.Fatalf("over capacity: TakeHints = %v, %v", hs, over)
	}
	w.MissedHint()
	if hs, over := w.TakeHints(); len(hs) != 0 || !over {
		t.Fatalf("after MissedHint: TakeHints = %v, %v", hs, over)
	}
	if woken, _ := w.Wait(context.Background(), time.Millisecond); !woken {
		t.Fatal("Offer and MissedHint did not wake")
	}
	plain := NewWaker()
	plain.Offer(Hint{MsgID: 9})
	if hs, over := plain.TakeHints(); len(hs) != 0 || over {
		t.Fatalf("a plain Waker kept hints: %v, %v", hs, over)
	}
}

func TestRouteOffersPayloads(t *testing.T) {
	events := make(chan Event, 4)
	w := NewHintingWaker(8)
	other := NewHintingWaker(8)
	events <- Event{Type: EventMessageWithPayload, QueueName: "worker_a_queue", MsgID: 7, Message: []byte(`{}`)}
	events <- Event{Type: EventMessageReady, QueueName: "worker_a_queue", MsgID: 8}
	events <- Event{Type: EventMessageWithPayload, QueueName: "worker_b_queue", MsgID: 9}
	close(events)
	Route(context.Background(), events, map[string]*Waker{"worker_a_queue": w, "worker_b_queue": other})
	hs, over := w.TakeHints()
	if len(hs) != 1 || hs[0].MsgID != 7 || !over {
		t.Fatalf("worker_a_queue: %v, %v (want message 7 and a read for message 8)", hs, over)
	}
	if hs, over := other.TakeHints(); len(hs) != 1 || hs[0].MsgID != 9 || over {
		t.Fatalf("worker_b_queue: %v, %v", hs, over)
	}
}
