package domainevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recPublisher is a custom publisher recording its hooks.
type recPublisher struct {
	name    string
	steps   []string
	panicOn string

	mu      sync.Mutex
	before  []string
	after   []*DomainEvent
	pubErrs map[string]error
}

func (p *recPublisher) Name() string { return p.name }
func (p *recPublisher) ShouldHandle(step string) bool {
	for _, s := range p.steps {
		if s == step {
			return true
		}
	}
	return len(p.steps) == 0
}
func (p *recPublisher) TransformPayload(_ context.Context, ec *StepEventContext, d EventDeclaration) (json.RawMessage, error) {
	switch {
	case d.Name == p.panicOn:
		panic("transform exploded")
	case d.Name == "payment.skipped":
		return nil, ErrSkipEvent
	case ec.Succeeded():
		var r map[string]any
		_ = json.Unmarshal(ec.Result.Result, &r)
		return json.Marshal(map[string]any{"transaction_id": r["transaction_id"], "amount": r["amount"]})
	default:
		return json.Marshal(map[string]any{"error_code": *ec.Result.Metadata.ErrorCode, "error_message": ec.Result.Error.Message})
	}
}
func (p *recPublisher) AdditionalMetadata(context.Context, *StepEventContext, EventDeclaration) (map[string]any, error) {
	return map[string]any{"payment_processor": "stripe", "namespace": "hijack"}, nil
}
func (p *recPublisher) BeforePublish(_ context.Context, _ *StepEventContext, d EventDeclaration) {
	p.mu.Lock()
	p.before = append(p.before, d.Name)
	p.mu.Unlock()
}
func (p *recPublisher) AfterPublish(_ context.Context, _ *StepEventContext, ev *DomainEvent) {
	p.mu.Lock()
	p.after = append(p.after, ev)
	p.mu.Unlock()
}
func (p *recPublisher) OnPublishError(_ context.Context, _ *StepEventContext, d EventDeclaration, err error) {
	p.mu.Lock()
	if p.pubErrs == nil {
		p.pubErrs = map[string]error{}
	}
	p.pubErrs[d.Name] = err
	p.mu.Unlock()
}

type collector struct {
	mu     sync.Mutex
	events []*DomainEvent
}

func (c *collector) sub(patterns ...string) Subscriber {
	return NewSubscriber("collector", patterns, func(_ context.Context, ev *DomainEvent) error {
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.mu.Unlock()
		return nil
	})
}

func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.events))
	for i, e := range c.events {
		out[i] = e.EventName
	}
	return out
}

const paymentEvents = `[
	{"name":"payment.processed","description":"ok","condition":"success","delivery_mode":"fast","publisher":"PaymentEventPublisher",
	 "schema":{"type":"object","required":["transaction_id","amount"]}},
	{"name":"payment.failed","description":"ko","condition":"failure","delivery_mode":"fast",
	 "schema":{"type":"object","required":["error_code","error_message"]}},
	{"name":"payment.attempted","description":"always","condition":"always","delivery_mode":"fast",
	 "schema":{"type":"object","required":["no_such_field"]}},
	{"name":"payment.skipped","description":"publisher says no","condition":"always","delivery_mode":"fast"},
	{"name":"payment.audited","description":"durable only","condition":"always","delivery_mode":"durable"}
]`

func newFastPublisher(t *testing.T, pub Publisher, log *slog.Logger) (*StepPublisher, *collector, *Bus) {
	t.Helper()
	reg := NewSubscriberRegistry()
	col := &collector{}
	reg.MustRegister(col.sub("payment.*"))
	bus := NewBus(reg, BusConfig{})
	pubs := NewPublisherRegistry(log)
	if pub != nil {
		pubs.MustRegister(pub)
	}
	return NewStepPublisher(StepPublisherConfig{Publishers: pubs, Bus: bus, Logger: log}), col, bus
}

func closeBus(t *testing.T, bus *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDEStepPublisherFastPathWithCustomPublisher(t *testing.T) {
	pub := &recPublisher{name: "PaymentEventPublisher"}
	sp, col, bus := newFastPublisher(t, pub, nil)
	step := sampleStep(t, paymentEvents, nil, 3)

	sp.PublishAfterCommit(context.Background(), step, successResult(step, `{"transaction_id":"TXN-1","amount":10,"extra":true}`))
	closeBus(t, bus)

	if got := col.names(); len(got) != 1 || got[0] != "payment.processed" {
		t.Fatalf("bus delivered %v, want [payment.processed]", got)
	}
	ev := col.events[0]
	if string(ev.Payload.Payload) != `{"amount":10,"transaction_id":"TXN-1"}` {
		t.Fatalf("payload %s (TransformPayload's, not the raw result)", ev.Payload.Payload)
	}
	if ev.Metadata.FiredBy != "PaymentEventPublisher" || string(ev.Metadata.Extra["payment_processor"]) != `"stripe"` ||
		ev.Metadata.Namespace != "payments" || ev.Metadata.Extra["namespace"] != nil {
		t.Fatalf("metadata %+v", ev.Metadata)
	}
	st := sp.Stats()
	want := StepPublisherStats{FastPublished: 1, SkippedByCondition: 1, SkippedByPublisher: 1, SchemaInvalid: 1}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	// Hooks: BeforePublish for every declaration whose condition held and that reached the fast
	// path; AfterPublish for the published one; OnPublishError for the schema failure only.
	if strings.Join(pub.before, ",") != "payment.processed,payment.attempted,payment.skipped" {
		t.Fatalf("BeforePublish %v", pub.before)
	}
	if len(pub.after) != 1 || pub.after[0].EventID != ev.EventID {
		t.Fatalf("AfterPublish %v", pub.after)
	}
	var se *SchemaError
	if len(pub.pubErrs) != 1 || !errors.As(pub.pubErrs["payment.attempted"], &se) {
		t.Fatalf("OnPublishError %v", pub.pubErrs)
	}
}

func TestDEStepPublisherFailureOnlyOnFailure(t *testing.T) {
	pub := &recPublisher{name: "PaymentEventPublisher"}
	sp, col, bus := newFastPublisher(t, pub, nil)
	step := sampleStep(t, paymentEvents, nil, 3)
	sp.PublishAfterCommit(context.Background(), step, failureResult(step, false))
	closeBus(t, bus)
	if got := col.names(); len(got) != 1 || got[0] != "payment.failed" {
		t.Fatalf("bus delivered %v, want [payment.failed]", got)
	}
	if string(col.events[0].Payload.Payload) != `{"error_code":"DECLINED","error_message":"card declined"}` {
		t.Fatalf("failure payload %s", col.events[0].Payload.Payload)
	}
}

func TestDEStepPublisherDefaultPublisherAndUnknownName(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sp, col, bus := newFastPublisher(t, nil, log) // PaymentEventPublisher is not registered
	step := sampleStep(t, paymentEvents, nil, 3)
	for range 2 {
		sp.PublishAfterCommit(context.Background(), step, successResult(step, `{"transaction_id":"TXN-1","amount":10}`))
	}
	closeBus(t, bus)
	// Per completion: payment.processed, and payment.skipped (no schema, and the default
	// publisher never skips); payment.attempted fails its schema.
	got := col.names()
	if strings.Join(got, ",") != "payment.processed,payment.skipped,payment.processed,payment.skipped" ||
		col.events[0].Metadata.FiredBy != DefaultPublisherName {
		t.Fatalf("delivered %v", got)
	}
	// The default publisher's payload is execution_result.result, verbatim.
	if string(col.events[0].Payload.Payload) != `{"transaction_id":"TXN-1","amount":10}` {
		t.Fatalf("default payload %s", col.events[0].Payload.Payload)
	}
	if n := strings.Count(logs.String(), "publisher not registered"); n != 1 {
		t.Fatalf("unknown-publisher warning logged %d times, want once:\n%s", n, logs.String())
	}
	if s := sp.Stats(); s.FastPublished != 4 || s.SchemaInvalid != 2 {
		t.Fatalf("stats %+v", sp.Stats())
	}
}

func TestDEStepPublisherDeclinedAndPanickingPublisher(t *testing.T) {
	declining := &recPublisher{name: "PaymentEventPublisher", steps: []string{"some_other_step"}}
	sp, col, bus := newFastPublisher(t, declining, nil)
	step := sampleStep(t, paymentEvents, nil, 3)
	sp.PublishAfterCommit(context.Background(), step, successResult(step, `{"transaction_id":"T","amount":1}`))
	if sp.Stats().StepsDeclined != 1 || len(declining.before) != 0 {
		t.Fatalf("declined: %+v", sp.Stats())
	}
	closeBus(t, bus)
	if len(col.names()) != 0 {
		t.Fatal("a declining publisher published")
	}

	exploding := &recPublisher{name: "PaymentEventPublisher", panicOn: "payment.processed"}
	sp, col, bus = newFastPublisher(t, exploding, nil)
	sp.PublishAfterCommit(context.Background(), step, successResult(step, `{"transaction_id":"T","amount":1}`))
	closeBus(t, bus)
	var pe *PanicError
	if sp.Stats().PublisherErrors != 1 || !errors.As(exploding.pubErrs["payment.processed"], &pe) {
		t.Fatalf("panicking transform: stats %+v errs %v", sp.Stats(), exploding.pubErrs)
	}
	if len(col.names()) != 0 {
		t.Fatalf("published %v despite the panic", col.names())
	}
}

func TestDEStepPublisherIgnoresBadDeclarations(t *testing.T) {
	sp, col, bus := newFastPublisher(t, nil, nil)
	step := sampleStep(t, `[{"name":"a.b","condition":"sometimes","delivery_mode":"fast"}]`, nil, 3)
	sp.PublishAfterCommit(context.Background(), step, successResult(step, `{}`))
	closeBus(t, bus)
	if sp.Stats().DeclarationErrors != 1 || len(col.names()) != 0 {
		t.Fatalf("stats %+v", sp.Stats())
	}
	// No bus: fast events are counted, not published.
	nobus := NewStepPublisher(StepPublisherConfig{})
	step = sampleStep(t, `[{"name":"a.b","delivery_mode":"fast"}]`, nil, 3)
	nobus.PublishAfterCommit(context.Background(), step, successResult(step, `{}`))
	if s := nobus.Stats(); s.FastWithoutBus != 1 || s.FastPublished != 0 {
		t.Fatalf("no-bus stats %+v", s)
	}
}

func TestDEPublisherRegistry(t *testing.T) {
	r := NewPublisherRegistry(nil)
	p := NewPublisher("PaymentEventPublisher", func(context.Context, *StepEventContext, EventDeclaration) (json.RawMessage, error) {
		return json.RawMessage(`{}`), nil
	}, "process_payment")
	r.MustRegister(p)
	if err := r.Register(p); err == nil {
		t.Fatal("duplicate publisher accepted")
	}
	if err := r.Register(NewPublisher("", nil)); err == nil {
		t.Fatal("nameless publisher accepted")
	}
	if !p.ShouldHandle("process_payment") || p.ShouldHandle("ship_order") {
		t.Fatal("NewPublisher step filter")
	}
	decls := []EventDeclaration{{Name: "a.b", Publisher: "PaymentEventPublisher"}, {Name: "c.d", Publisher: "Other"}}
	if got := r.ForStep(decls); got != p {
		t.Fatalf("ForStep = %v, want the first declaration's publisher", got.Name())
	}
	if got := r.ForStep(decls[1:]); got.Name() != DefaultPublisherName {
		t.Fatalf("unknown publisher resolved to %s", got.Name())
	}
	if got := r.GetOrDefault("default"); got.Name() != DefaultPublisherName {
		t.Fatal("\"default\" must be the default publisher")
	}
	err := r.ValidateRequired("PaymentEventPublisher", "default", "", "Missing", "Missing")
	var me *MissingPublishersError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0] != "Missing" || me.Registered[0] != "PaymentEventPublisher" {
		t.Fatalf("ValidateRequired = %v", err)
	}
}
