package domainevents

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
)

// Subscriber reacts to domain events whose names match one of its patterns. The same
// subscriber can receive fast events (Bus) and durable events (DurableConsumer); DeliveryFrom
// tells which. Handle must treat the event as read-only.
type Subscriber interface {
	// Name identifies the subscriber (unique in a registry; recorded on durable messages).
	Name() string
	// Patterns are glob patterns (see MatchPattern): "payment.*", "order.completed", "*".
	Patterns() []string
	// Handle processes one event. For durable events an error (or panic) means the message is
	// delivered again later.
	Handle(ctx context.Context, ev *DomainEvent) error
}

// BeforeHandleHook is an optional Subscriber extension called before Handle.
type BeforeHandleHook interface {
	BeforeHandle(ctx context.Context, ev *DomainEvent)
}

// AfterHandleHook is an optional Subscriber extension called after Handle succeeded.
type AfterHandleHook interface {
	AfterHandle(ctx context.Context, ev *DomainEvent)
}

// HandleErrorHook is an optional Subscriber extension called when Handle (or a hook) failed or
// panicked (err is then a *PanicError).
type HandleErrorHook interface {
	OnHandleError(ctx context.Context, ev *DomainEvent, err error)
}

// Starter is an optional Subscriber extension run by SubscriberRegistry.StartAll.
type Starter interface {
	Start(ctx context.Context) error
}

// Stopper is an optional Subscriber extension run by SubscriberRegistry.StopAll.
type Stopper interface {
	Stop(ctx context.Context) error
}

// PanicError is the error a recovered subscriber or publisher panic turns into.
type PanicError struct {
	Value any
	Stack []byte
}

// Error reports the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("domainevents: panic: %v", e.Value) }

// NewSubscriber returns a Subscriber called name that passes matching events to fn.
func NewSubscriber(name string, patterns []string, fn func(ctx context.Context, ev *DomainEvent) error) Subscriber {
	return &funcSubscriber{name: name, patterns: slices.Clone(patterns), fn: fn}
}

type funcSubscriber struct {
	name     string
	patterns []string
	fn       func(ctx context.Context, ev *DomainEvent) error
}

func (s *funcSubscriber) Name() string       { return s.name }
func (s *funcSubscriber) Patterns() []string { return s.patterns }
func (s *funcSubscriber) Handle(ctx context.Context, ev *DomainEvent) error {
	return s.fn(ctx, ev)
}

// Delivery describes how an event reached a subscriber.
type Delivery struct {
	Mode      DeliveryMode // DeliveryFast (Bus) or DeliveryDurable (DurableConsumer)
	Queue     string       // durable only: the queue the message came from
	MsgID     int64        // durable only
	ReadCount int          // durable only: 1 on the first delivery
}

type deliveryKey struct{}

// WithDelivery returns ctx carrying d.
func WithDelivery(ctx context.Context, d Delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

// DeliveryFrom returns the Delivery a subscriber's context carries.
func DeliveryFrom(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

type subEntry struct {
	sub      Subscriber
	name     string
	patterns []string
}

func (e *subEntry) matches(event string) bool {
	return slices.ContainsFunc(e.patterns, func(p string) bool { return MatchPattern(p, event) })
}

// SubscriberRegistry holds subscribers in registration order.
type SubscriberRegistry struct {
	mu      sync.RWMutex
	entries []*subEntry

	lifecycle sync.Mutex // serializes StartAll/StopAll; not held by lookups
	started   []Subscriber
}

// NewSubscriberRegistry returns an empty registry.
func NewSubscriberRegistry() *SubscriberRegistry { return &SubscriberRegistry{} }

// Register adds s. Its name must be non-empty and unique, and it needs at least one valid
// pattern; Patterns is read once, here.
func (r *SubscriberRegistry) Register(s Subscriber) error {
	if s == nil || s.Name() == "" {
		return errors.New("domainevents: a subscriber needs a name")
	}
	pats := slices.Clone(s.Patterns())
	if len(pats) == 0 {
		return fmt.Errorf("domainevents: subscriber %q has no patterns", s.Name())
	}
	for _, p := range pats {
		if err := ValidatePattern(p); err != nil {
			return fmt.Errorf("subscriber %q: %w", s.Name(), err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e.name == s.Name() {
			return fmt.Errorf("domainevents: subscriber %q is already registered", s.Name())
		}
	}
	r.entries = append(r.entries, &subEntry{sub: s, name: s.Name(), patterns: pats})
	return nil
}

// MustRegister is Register that panics on error.
func (r *SubscriberRegistry) MustRegister(s Subscriber) {
	if err := r.Register(s); err != nil {
		panic(err)
	}
}

// Subscribers returns the registered subscribers in registration order.
func (r *SubscriberRegistry) Subscribers() []Subscriber {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Subscriber, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.sub
	}
	return out
}

// Matching returns the subscribers with a pattern matching eventName, in registration order.
func (r *SubscriberRegistry) Matching(eventName string) []Subscriber {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Subscriber
	for _, e := range r.entries {
		if e.matches(eventName) {
			out = append(out, e.sub)
		}
	}
	return out
}

// StartAll calls Start on every subscriber implementing Starter, in registration order. If one
// fails, the ones already started are stopped and the error is returned.
func (r *SubscriberRegistry) StartAll(ctx context.Context) error {
	subs := r.Subscribers()
	r.lifecycle.Lock()
	defer r.lifecycle.Unlock()
	for _, s := range subs {
		if slices.Contains(r.started, s) {
			continue
		}
		if st, ok := s.(Starter); ok {
			if err := st.Start(ctx); err != nil {
				stopErr := r.stopLocked(ctx)
				return errors.Join(fmt.Errorf("domainevents: start subscriber %q: %w", s.Name(), err), stopErr)
			}
		}
		r.started = append(r.started, s)
	}
	return nil
}

// StopAll calls Stop on every started subscriber implementing Stopper, in reverse order, and
// returns their errors joined.
func (r *SubscriberRegistry) StopAll(ctx context.Context) error {
	r.lifecycle.Lock()
	defer r.lifecycle.Unlock()
	return r.stopLocked(ctx)
}

func (r *SubscriberRegistry) stopLocked(ctx context.Context) error {
	var errs []error
	for i := len(r.started) - 1; i >= 0; i-- {
		s := r.started[i]
		if st, ok := s.(Stopper); ok {
			if err := st.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("domainevents: stop subscriber %q: %w", s.Name(), err))
			}
		}
	}
	r.started = nil
	return errors.Join(errs...)
}

// deliver runs one subscriber on one event with its hooks. Panics anywhere in the subscriber's
// code are recovered into a *PanicError (see isPanic).
func deliver(ctx context.Context, s Subscriber, ev *DomainEvent) error {
	err := guard(func() error {
		if h, ok := s.(BeforeHandleHook); ok {
			h.BeforeHandle(ctx, ev)
		}
		if err := s.Handle(ctx, ev); err != nil {
			return err
		}
		if h, ok := s.(AfterHandleHook); ok {
			h.AfterHandle(ctx, ev)
		}
		return nil
	})
	if err != nil {
		if h, ok := s.(HandleErrorHook); ok {
			_ = guard(func() error { h.OnHandleError(ctx, ev, err); return nil })
		}
	}
	return err
}

func isPanic(err error) bool {
	var pe *PanicError
	return errors.As(err, &pe)
}

// guard runs fn, turning a panic into a *PanicError.
func guard(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}
