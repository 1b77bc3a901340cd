package domainevents

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

type hookSub struct {
	name     string
	patterns []string
	handle   func(ctx context.Context, ev *DomainEvent) error

	mu               sync.Mutex
	before, after    int
	errs             []error
	modes            []DeliveryMode
	startErr         error
	started, stopped int
	stopOrder        *[]string
}

func (s *hookSub) Name() string       { return s.name }
func (s *hookSub) Patterns() []string { return s.patterns }
func (s *hookSub) Handle(ctx context.Context, ev *DomainEvent) error {
	if d, ok := DeliveryFrom(ctx); ok {
		s.mu.Lock()
		s.modes = append(s.modes, d.Mode)
		s.mu.Unlock()
	}
	return s.handle(ctx, ev)
}
func (s *hookSub) BeforeHandle(context.Context, *DomainEvent) { s.mu.Lock(); s.before++; s.mu.Unlock() }
func (s *hookSub) AfterHandle(context.Context, *DomainEvent)  { s.mu.Lock(); s.after++; s.mu.Unlock() }
func (s *hookSub) OnHandleError(_ context.Context, _ *DomainEvent, err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}
func (s *hookSub) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.startErr != nil {
		return s.startErr
	}
	s.started++
	return nil
}
func (s *hookSub) Stop(context.Context) error {
	s.mu.Lock()
	s.stopped++
	s.mu.Unlock()
	if s.stopOrder != nil {
		*s.stopOrder = append(*s.stopOrder, s.name)
	}
	return nil
}

func testEvent(name string) *DomainEvent {
	return &DomainEvent{EventID: uuid.Must(uuid.NewV7()), EventName: name, EventVersion: EventVersion}
}

// TestDEBusIsolatesPanickingAndSlowSubscribers: one subscriber panics on every event, one blocks;
// publishing never waits, the well-behaved subscriber gets everything, the panics are reported
// through OnHandleError and counted, and the stuck subscriber only loses its own events.
func TestDEBusIsolatesPanickingAndSlowSubscribers(t *testing.T) {
	reg := NewSubscriberRegistry()
	var got atomic.Int64
	good := &hookSub{name: "good", patterns: []string{"payment.*"}, handle: func(context.Context, *DomainEvent) error {
		got.Add(1)
		return nil
	}}
	panicker := &hookSub{name: "panicker", patterns: []string{"*"}, handle: func(context.Context, *DomainEvent) error {
		var m map[string]int
		m["boom"]++ // nil map write
		return nil
	}}
	release := make(chan struct{})
	slowStarted := make(chan struct{}, 1)
	slow := &hookSub{name: "slow", patterns: []string{"payment.processed"}, handle: func(context.Context, *DomainEvent) error {
		select {
		case slowStarted <- struct{}{}:
		default:
		}
		<-release
		return nil
	}}
	other := &hookSub{name: "other", patterns: []string{"order.*"}, handle: func(context.Context, *DomainEvent) error {
		t.Error("order.* subscriber got a payment event")
		return nil
	}}
	for _, s := range []Subscriber{good, panicker, slow, other} {
		reg.MustRegister(s)
	}
	bus := NewBus(reg, BusConfig{Buffer: 2})

	if n := bus.Publish(testEvent("payment.processed")); n != 3 {
		t.Fatalf("first event accepted by %d subscribers, want 3", n)
	}
	<-slowStarted // the slow subscriber now holds event 1; its queue (2) is empty
	var publishing time.Duration
	for i := range 19 {
		start := time.Now()
		bus.Publish(testEvent("payment.processed"))
		publishing += time.Since(start)
		// Let the healthy subscribers keep up, so only the stuck one can overflow its buffer.
		waitFor(t, func() bool {
			return got.Load() == int64(i+2) && bus.Stats().Subscribers["panicker"].Failed == int64(i+2)
		})
	}
	if publishing > 200*time.Millisecond {
		t.Fatalf("19 publishes took %s with a stuck subscriber; Publish must not block", publishing)
	}

	st := bus.Stats()
	if s := st.Subscribers["slow"]; s.Queued != 3 || s.Dropped != 17 || s.Delivered != 0 {
		t.Fatalf("slow subscriber stats %+v: want 3 queued (1 running + buffer 2), 17 dropped", s)
	}
	if st.Panics != 20 || st.Subscribers["panicker"].Panics != 20 {
		t.Fatalf("panics %d / %+v", st.Panics, st.Subscribers["panicker"])
	}
	panicker.mu.Lock()
	if len(panicker.errs) != 20 {
		t.Fatalf("OnHandleError called %d times, want 20", len(panicker.errs))
	}
	var pe *PanicError
	if !errors.As(panicker.errs[0], &pe) || fmt.Sprint(pe.Value) != "assignment to entry in nil map" || len(pe.Stack) == 0 {
		t.Fatalf("reported error %v", panicker.errs[0])
	}
	if panicker.after != 0 || panicker.before != 20 {
		t.Fatalf("panicker hooks before=%d after=%d", panicker.before, panicker.after)
	}
	panicker.mu.Unlock()
	good.mu.Lock()
	if good.before != 20 || good.after != 20 || len(good.errs) != 0 || good.modes[0] != DeliveryFast {
		t.Fatalf("good subscriber hooks before=%d after=%d errs=%v modes=%v", good.before, good.after, good.errs, good.modes[:1])
	}
	good.mu.Unlock()

	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st = bus.Stats()
	if st.Subscribers["slow"].Delivered != 3 || st.Delivered != 23 || st.Published != 20 {
		t.Fatalf("after close: %+v", st)
	}
	if n := bus.Publish(testEvent("payment.processed")); n != 0 {
		t.Fatalf("a closed bus accepted an event (%d)", n)
	}
}

func TestDEBusCloseGivesUpOnStuckSubscriber(t *testing.T) {
	reg := NewSubscriberRegistry()
	cancelled := make(chan struct{})
	reg.MustRegister(NewSubscriber("stuck", []string{"*"}, func(ctx context.Context, _ *DomainEvent) error {
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}))
	bus := NewBus(reg, BusConfig{})
	bus.Publish(testEvent("a.b"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := bus.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline", err)
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("the stuck handler's context was not cancelled")
	}
}

func TestDESubscriberRegistry(t *testing.T) {
	reg := NewSubscriberRegistry()
	var order []string
	a := &hookSub{name: "a", patterns: []string{"payment.*"}, stopOrder: &order}
	b := &hookSub{name: "b", patterns: []string{"*"}, stopOrder: &order}
	reg.MustRegister(a)
	reg.MustRegister(b)
	if err := reg.Register(&hookSub{name: "a", patterns: []string{"*"}}); err == nil {
		t.Fatal("duplicate name accepted")
	}
	if err := reg.Register(&hookSub{name: "c"}); err == nil {
		t.Fatal("subscriber without patterns accepted")
	}
	if err := reg.Register(&hookSub{name: "d", patterns: []string{"a..b"}}); err == nil {
		t.Fatal("invalid pattern accepted")
	}
	if m := reg.Matching("payment.failed"); len(m) != 2 || m[0] != a || m[1] != b {
		t.Fatalf("Matching(payment.failed) = %v", m)
	}
	if m := reg.Matching("order.created"); len(m) != 1 || m[0] != b {
		t.Fatalf("Matching(order.created) = %v", m)
	}
	ctx := context.Background()
	if err := reg.StartAll(ctx); err != nil || a.started != 1 || b.started != 1 {
		t.Fatalf("StartAll: %v (%d, %d)", err, a.started, b.started)
	}
	if err := reg.StartAll(ctx); err != nil || a.started != 1 {
		t.Fatal("StartAll started a subscriber twice")
	}
	if err := reg.StopAll(ctx); err != nil || len(order) != 2 || order[0] != "b" || order[1] != "a" {
		t.Fatalf("StopAll: %v, order %v (want reverse)", err, order)
	}
	// A failing Start stops the ones already started.
	reg.MustRegister(&hookSub{name: "e", patterns: []string{"*"}, startErr: errors.New("no broker")})
	order = nil
	if err := reg.StartAll(ctx); err == nil || a.started != 2 || a.stopped != 2 || b.stopped != 2 {
		t.Fatalf("failing StartAll: %v; a started %d stopped %d", err, a.started, a.stopped)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
