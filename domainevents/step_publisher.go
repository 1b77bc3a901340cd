package domainevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
)

// StepPublisherConfig configures a StepPublisher; every field is optional.
type StepPublisherConfig struct {
	// Publishers resolves the step's publisher (default: a registry with DefaultPublisher only).
	Publishers *PublisherRegistry
	// Bus receives fast events. Without one, fast events are counted (FastWithoutBus) and dropped.
	Bus *Bus
	// Queue sends durable events; its statements run on the completion transaction, so a client
	// without a database of its own is enough (the default).
	Queue  *queue.Client
	Logger *slog.Logger
}

// StepPublisher is the worker's EventPublisher: give it to the worker with worker.WithEvents.
// Durable copies are written inside the completion transaction (PublishDurable), fast copies are
// published after the commit (PublishAfterCommit); see the package documentation.
type StepPublisher struct {
	pubs *PublisherRegistry
	bus  *Bus
	q    *queue.Client
	log  *slog.Logger

	mu        sync.Mutex
	pending   map[uuid.UUID]*pendingEvents
	lastSweep time.Time

	durable, fast, skippedCondition, skippedPublisher, schemaInvalid, publisherErrors,
	sendErrors, declarationErrors, fastWithoutBus, stepsDeclined atomic.Int64
}

// pendingEvents is what PublishDurable wrote for one completion, kept until PublishAfterCommit
// confirms the commit (then AfterPublish runs) or swept when the completion rolled back.
type pendingEvents struct {
	completedAt time.Time
	storedAt    time.Time
	events      []*DomainEvent
	decided     map[int]decision // by declaration index; reused by broadcast fast copies
}

// decision is the built payload of one declaration, or skip.
type decision struct {
	payload json.RawMessage
	extra   map[string]json.RawMessage
	skip    bool
}

// pendingTTL bounds how long the events of a completion that never reported its commit (it
// rolled back) are remembered.
const pendingTTL = 10 * time.Minute

// NewStepPublisher returns a StepPublisher.
func NewStepPublisher(cfg StepPublisherConfig) *StepPublisher {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pubs := cfg.Publishers
	if pubs == nil {
		pubs = NewPublisherRegistry(log)
	}
	q := cfg.Queue
	if q == nil {
		q = queue.NewClient(nil)
	}
	return &StepPublisher{pubs: pubs, bus: cfg.Bus, q: q, log: log.With("component", "domainevents.publisher"),
		pending: map[uuid.UUID]*pendingEvents{}, lastSweep: time.Now()}
}

// Publishers returns the publisher registry.
func (p *StepPublisher) Publishers() *PublisherRegistry { return p.pubs }

// PublishDurable sends the step's durable and broadcast events whose condition holds to
// "<task namespace>_domain_events" on tx, the step's completion transaction: they become
// visible exactly when the result commits. Only a failed send is an error (the transaction is
// unusable then); payload problems skip the event.
func (p *StepPublisher) PublishDurable(ctx context.Context, tx pgx.Tx, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) error {
	ec, pub, ok := p.prepare(seq, res, false)
	if !ok {
		return nil
	}
	outcome := ec.Outcome()
	var pend *pendingEvents
	for i, d := range ec.Declarations {
		if !d.Durable() {
			continue
		}
		if !ShouldPublish(d.Condition, outcome) {
			p.skippedCondition.Add(1)
			continue
		}
		if pend == nil {
			pend = &pendingEvents{completedAt: res.Metadata.CompletedAt, storedAt: time.Now(), decided: map[int]decision{}}
		}
		dec := p.build(ctx, pub, ec, d)
		pend.decided[i] = dec
		if dec.skip {
			continue
		}
		ev, err := NewEvent(d.Name, ec, dec.payload, pub.Name(), dec.extra)
		if err != nil {
			return err
		}
		q := queue.DomainEventsQueue(ec.Namespace())
		if _, err := p.q.SendWithNotify(ctx, tx, q, ev, 0); err != nil {
			p.sendErrors.Add(1)
			p.onError(ctx, pub, ec, d, err)
			return fmt.Errorf("domainevents: send %s to %s: %w", d.Name, q, err)
		}
		pend.events = append(pend.events, ev)
	}
	if pend != nil {
		p.stash(res.StepUUID, pend)
	}
	return nil
}

// PublishAfterCommit runs AfterPublish for the durable events the committed completion carried,
// then publishes the fast and broadcast events whose condition holds to the bus (without
// blocking). A broadcast event's fast copy reuses the payload built for its durable copy, with a
// new event_id.
func (p *StepPublisher) PublishAfterCommit(ctx context.Context, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) {
	pend := p.take(res)
	ec, pub, ok := p.prepare(seq, res, true)
	if !ok {
		return
	}
	if pend != nil {
		for _, ev := range pend.events {
			p.durable.Add(1)
			p.log.Debug("durable domain event committed", "event_name", ev.EventName, "event_id", ev.EventID,
				"step_uuid", ec.StepUUID(), "queue", queue.DomainEventsQueue(ec.Namespace()))
			p.afterPublish(ctx, pub, ec, ev)
		}
	}
	outcome := ec.Outcome()
	for i, d := range ec.Declarations {
		if !d.Fast() {
			continue
		}
		if !ShouldPublish(d.Condition, outcome) {
			if !d.Durable() { // broadcast skips were counted by PublishDurable
				p.skippedCondition.Add(1)
			}
			continue
		}
		var dec decision
		reused := false
		if d.Durable() && pend != nil {
			dec, reused = pend.decided[i]
		}
		if !reused {
			dec = p.build(ctx, pub, ec, d)
		}
		if dec.skip {
			continue
		}
		ev, err := NewEvent(d.Name, ec, dec.payload, pub.Name(), dec.extra)
		if err != nil {
			p.log.Error("cannot build fast domain event", "event_name", d.Name, "error", err)
			continue
		}
		if p.bus == nil {
			p.fastWithoutBus.Add(1)
			p.log.Debug("no bus configured; fast domain event dropped", "event_name", d.Name, "step_uuid", ec.StepUUID())
			continue
		}
		n := p.bus.Publish(ev)
		p.fast.Add(1)
		p.log.Debug("fast domain event published", "event_name", ev.EventName, "event_id", ev.EventID,
			"step_uuid", ec.StepUUID(), "subscribers", n)
		p.afterPublish(ctx, pub, ec, ev)
	}
}

// NeedsDurable reports whether the step declares an event delivered durably (durable or
// broadcast): only those are written in the completion's transaction (worker.DurableDecider).
func (p *StepPublisher) NeedsDurable(seq protocol.TaskSequenceStep) bool {
	decls, err := ParseDeclarations(seq.StepDefinition.PublishesEvents)
	if err != nil {
		return false // unusable declarations publish nothing (reported after commit)
	}
	for _, d := range decls {
		if d.Durable() {
			return true
		}
	}
	return false
}

// prepare parses the step's declarations and picks its publisher; ok is false when there is
// nothing to publish. It runs in both phases of a completion; only the after-commit one (report)
// logs and counts, so each committed completion is reported once.
func (p *StepPublisher) prepare(seq protocol.TaskSequenceStep, res protocol.StepExecutionResult, report bool) (*StepEventContext, Publisher, bool) {
	if len(seq.StepDefinition.PublishesEvents) == 0 {
		return nil, nil, false
	}
	ec, err := NewStepEventContext(seq, res)
	if err != nil {
		if report {
			p.declarationErrors.Add(1)
			p.log.Error("step has unusable publishes_events; publishing nothing for it", "step_name", seq.WorkflowStep.Name,
				"step_uuid", seq.WorkflowStep.WorkflowStepUUID, "error", err)
		}
		return nil, nil, false
	}
	if len(ec.Declarations) == 0 {
		return nil, nil, false
	}
	pub := p.pubs.ForStep(ec.Declarations)
	var handle bool
	if err := guard(func() error { handle = pub.ShouldHandle(ec.StepName()); return nil }); err != nil {
		p.publisherErrors.Add(1)
		p.log.Error("publisher ShouldHandle panicked; publishing nothing for the step", "publisher", pub.Name(),
			"step_name", ec.StepName(), "error", err)
		return nil, nil, false
	}
	if !handle {
		if report {
			p.stepsDeclined.Add(1)
			p.log.Debug("publisher declined the step", "publisher", pub.Name(), "step_name", ec.StepName())
		}
		return nil, nil, false
	}
	return ec, pub, true
}

// build runs the publisher for one declaration and validates the payload against the schema.
func (p *StepPublisher) build(ctx context.Context, pub Publisher, ec *StepEventContext, d EventDeclaration) decision {
	log := p.log.With("event_name", d.Name, "publisher", pub.Name(), "step_name", ec.StepName(), "step_uuid", ec.StepUUID())
	if h, ok := pub.(BeforePublishHook); ok {
		if err := guard(func() error { h.BeforePublish(ctx, ec, d); return nil }); err != nil {
			log.Error("BeforePublish panicked", "error", err)
		}
	}
	var payload json.RawMessage
	err := guard(func() error {
		var e error
		payload, e = pub.TransformPayload(ctx, ec, d)
		return e
	})
	if errors.Is(err, ErrSkipEvent) {
		p.skippedPublisher.Add(1)
		log.Debug("publisher skipped the event")
		return decision{skip: true}
	}
	if err == nil {
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		} else if !json.Valid(payload) {
			err = errors.New("domainevents: TransformPayload returned invalid JSON")
		}
	}
	if err != nil {
		p.publisherErrors.Add(1)
		log.Warn("publisher could not build the event payload; event skipped", "error", err)
		p.onError(ctx, pub, ec, d, err)
		return decision{skip: true}
	}
	if err := d.ValidatePayload(payload); err != nil {
		p.schemaInvalid.Add(1)
		log.Warn("event payload does not match its declared schema; event skipped", "error", err)
		p.onError(ctx, pub, ec, d, err)
		return decision{skip: true}
	}
	return decision{payload: payload, extra: p.extraMetadata(ctx, pub, ec, d, log)}
}

func (p *StepPublisher) extraMetadata(ctx context.Context, pub Publisher, ec *StepEventContext, d EventDeclaration, log *slog.Logger) map[string]json.RawMessage {
	mp, ok := pub.(MetadataProvider)
	if !ok {
		return nil
	}
	var values map[string]any
	if err := guard(func() error {
		var e error
		values, e = mp.AdditionalMetadata(ctx, ec, d)
		return e
	}); err != nil {
		log.Warn("AdditionalMetadata failed; publishing without it", "error", err)
		return nil
	}
	out := make(map[string]json.RawMessage, len(values))
	for k, v := range values {
		if IsReservedMetadataKey(k) {
			log.Warn("additional metadata cannot replace a standard key; ignored", "key", k)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			log.Warn("additional metadata value is not JSON-encodable; ignored", "key", k, "error", err)
			continue
		}
		out[k] = b
	}
	return out
}

func (p *StepPublisher) onError(ctx context.Context, pub Publisher, ec *StepEventContext, d EventDeclaration, err error) {
	if h, ok := pub.(PublishErrorHook); ok {
		if perr := guard(func() error { h.OnPublishError(ctx, ec, d, err); return nil }); perr != nil {
			p.log.Error("OnPublishError panicked", "publisher", pub.Name(), "error", perr)
		}
	}
}

func (p *StepPublisher) afterPublish(ctx context.Context, pub Publisher, ec *StepEventContext, ev *DomainEvent) {
	if h, ok := pub.(AfterPublishHook); ok {
		if err := guard(func() error { h.AfterPublish(ctx, ec, ev); return nil }); err != nil {
			p.log.Error("AfterPublish panicked", "publisher", pub.Name(), "event_name", ev.EventName, "error", err)
		}
	}
}

func (p *StepPublisher) stash(step uuid.UUID, pend *pendingEvents) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending[step] = pend
	if now := time.Now(); now.Sub(p.lastSweep) > time.Minute {
		p.lastSweep = now
		for id, pe := range p.pending {
			if now.Sub(pe.storedAt) > pendingTTL {
				delete(p.pending, id)
			}
		}
	}
}

// take removes and returns what PublishDurable stored for this very result.
func (p *StepPublisher) take(res protocol.StepExecutionResult) *pendingEvents {
	p.mu.Lock()
	defer p.mu.Unlock()
	pend := p.pending[res.StepUUID]
	if pend == nil {
		return nil
	}
	delete(p.pending, res.StepUUID)
	if !pend.completedAt.Equal(res.Metadata.CompletedAt) {
		return nil // left over from a completion of this step that rolled back
	}
	return pend
}

// StepPublisherStats are a StepPublisher's counters.
type StepPublisherStats struct {
	DurablePublished   int64 // durable envelopes committed with their step's result
	FastPublished      int64 // fast envelopes handed to the bus
	SkippedByCondition int64 // declarations whose condition did not hold
	SkippedByPublisher int64 // TransformPayload returned ErrSkipEvent
	SchemaInvalid      int64 // payloads refused by the declared schema
	PublisherErrors    int64 // publisher errors and panics
	SendErrors         int64 // durable sends that failed (the completion rolled back)
	DeclarationErrors  int64 // steps with unparsable publishes_events
	FastWithoutBus     int64 // fast events dropped because no bus is configured
	StepsDeclined      int64 // steps whose publisher's ShouldHandle returned false
	PendingCompletions int   // completions whose commit has not been reported (yet)
}

// Routed is the number of envelopes published on either path (tasker-core's total_routed).
func (s StepPublisherStats) Routed() int64 { return s.DurablePublished + s.FastPublished }

// Stats copies the counters.
func (p *StepPublisher) Stats() StepPublisherStats {
	p.mu.Lock()
	n := len(p.pending)
	p.mu.Unlock()
	return StepPublisherStats{
		DurablePublished: p.durable.Load(), FastPublished: p.fast.Load(),
		SkippedByCondition: p.skippedCondition.Load(), SkippedByPublisher: p.skippedPublisher.Load(),
		SchemaInvalid: p.schemaInvalid.Load(), PublisherErrors: p.publisherErrors.Load(),
		SendErrors: p.sendErrors.Load(), DeclarationErrors: p.declarationErrors.Load(),
		FastWithoutBus: p.fastWithoutBus.Load(), StepsDeclined: p.stepsDeclined.Load(),
		PendingCompletions: n,
	}
}
