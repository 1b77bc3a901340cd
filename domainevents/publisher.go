package domainevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// StepEventContext is what a publisher sees of a finished step: the hydrated step, its result
// and its parsed declarations.
type StepEventContext struct {
	Step         protocol.TaskSequenceStep
	Result       protocol.StepExecutionResult
	Declarations []EventDeclaration
}

// NewStepEventContext parses seq's declarations and returns the context.
func NewStepEventContext(seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) (*StepEventContext, error) {
	decls, err := ParseDeclarations(seq.StepDefinition.PublishesEvents)
	if err != nil {
		return nil, err
	}
	return &StepEventContext{Step: seq, Result: res, Declarations: decls}, nil
}

// TaskUUID is the task's uuid.
func (c *StepEventContext) TaskUUID() uuid.UUID { return c.Step.Task.Task.TaskUUID }

// StepUUID is the workflow step's uuid.
func (c *StepEventContext) StepUUID() uuid.UUID { return c.Step.WorkflowStep.WorkflowStepUUID }

// StepName is the workflow step's name.
func (c *StepEventContext) StepName() string { return c.Step.WorkflowStep.Name }

// Namespace is the task's namespace (the durable queue is "<Namespace>_domain_events").
func (c *StepEventContext) Namespace() string { return c.Step.Task.NamespaceName }

// CorrelationID is the task's correlation id.
func (c *StepEventContext) CorrelationID() uuid.UUID { return c.Step.Task.Task.CorrelationID }

// Succeeded reports whether the step succeeded.
func (c *StepEventContext) Succeeded() bool { return c.Result.Success }

// Outcome classifies the result for publication conditions (see OutcomeOf).
func (c *StepEventContext) Outcome() Outcome { return OutcomeOf(c.Step, c.Result) }

// IsEventDeclared reports whether the step declares an event called name.
func (c *StepEventContext) IsEventDeclared(name string) bool {
	return slices.ContainsFunc(c.Declarations, func(d EventDeclaration) bool { return d.Name == name })
}

// ErrSkipEvent, returned by TransformPayload, skips the event quietly (no error hook).
var ErrSkipEvent = errors.New("domainevents: event skipped by publisher")

// Publisher turns a finished step into event payloads. One publisher serves all events of a
// step: the publisher named by the step's first declaration. Its methods run inside the step's
// completion transaction (durable events) or right after it (fast events) and must be quick.
// Panics are recovered and treated as errors.
type Publisher interface {
	// Name is the key templates use in publishes_events[].publisher; it is written as fired_by.
	Name() string
	// ShouldHandle reports whether the publisher publishes for the step; false publishes nothing.
	ShouldHandle(stepName string) bool
	// TransformPayload returns the business payload of decl, validated against decl.Schema
	// afterwards. It is called only when decl's condition holds. ErrSkipEvent skips the event.
	TransformPayload(ctx context.Context, ec *StepEventContext, decl EventDeclaration) (json.RawMessage, error)
}

// MetadataProvider is an optional Publisher extension whose values are added to the envelope's
// metadata (EventMetadata.Extra).
type MetadataProvider interface {
	AdditionalMetadata(ctx context.Context, ec *StepEventContext, decl EventDeclaration) (map[string]any, error)
}

// BeforePublishHook is an optional Publisher extension called once per declaration whose
// condition holds, before its payload is built.
type BeforePublishHook interface {
	BeforePublish(ctx context.Context, ec *StepEventContext, decl EventDeclaration)
}

// AfterPublishHook is an optional Publisher extension called once per published envelope: for a
// durable copy after the completion committed, for a fast copy after the bus accepted it.
type AfterPublishHook interface {
	AfterPublish(ctx context.Context, ec *StepEventContext, ev *DomainEvent)
}

// PublishErrorHook is an optional Publisher extension called when an event could not be
// published: the payload could not be built or failed its schema (*SchemaError), or the
// durable send failed.
type PublishErrorHook interface {
	OnPublishError(ctx context.Context, ec *StepEventContext, decl EventDeclaration, err error)
}

// DefaultPublisherName is the default publisher's name and fired_by value (tasker-core's).
const DefaultPublisherName = "DefaultDomainEventPublisher"

// DefaultPublisher publishes every declared event with the step's result
// (execution_result.result) as payload. Embed it to override only some methods.
type DefaultPublisher struct{}

// Name returns DefaultPublisherName.
func (DefaultPublisher) Name() string { return DefaultPublisherName }

// ShouldHandle returns true.
func (DefaultPublisher) ShouldHandle(string) bool { return true }

// TransformPayload returns execution_result.result (null when absent).
func (DefaultPublisher) TransformPayload(_ context.Context, ec *StepEventContext, _ EventDeclaration) (json.RawMessage, error) {
	if len(ec.Result.Result) == 0 {
		return json.RawMessage("null"), nil
	}
	return ec.Result.Result, nil
}

// NewPublisher returns a Publisher called name whose payloads come from transform and that
// handles the given steps (every step when none are given).
func NewPublisher(name string, transform func(ctx context.Context, ec *StepEventContext, decl EventDeclaration) (json.RawMessage, error), steps ...string) Publisher {
	return &funcPublisher{name: name, transform: transform, steps: steps}
}

type funcPublisher struct {
	name      string
	transform func(ctx context.Context, ec *StepEventContext, decl EventDeclaration) (json.RawMessage, error)
	steps     []string
}

func (p *funcPublisher) Name() string { return p.name }

func (p *funcPublisher) ShouldHandle(step string) bool {
	return len(p.steps) == 0 || slices.Contains(p.steps, step)
}

func (p *funcPublisher) TransformPayload(ctx context.Context, ec *StepEventContext, d EventDeclaration) (json.RawMessage, error) {
	return p.transform(ctx, ec, d)
}

// PublisherRegistry maps publisher names to publishers. Lookups of unknown names fall back to
// the default publisher with a warning (logged once per name), as tasker-core's get_or_default.
type PublisherRegistry struct {
	mu     sync.RWMutex
	byName map[string]Publisher
	def    Publisher
	log    *slog.Logger
	warned map[string]bool
}

// NewPublisherRegistry returns a registry whose default is DefaultPublisher; log may be nil.
func NewPublisherRegistry(log *slog.Logger) *PublisherRegistry {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &PublisherRegistry{byName: map[string]Publisher{}, def: DefaultPublisher{}, log: log, warned: map[string]bool{}}
}

// Register adds p under p.Name(); the name must be non-empty and not taken.
func (r *PublisherRegistry) Register(p Publisher) error {
	if p == nil || p.Name() == "" {
		return errors.New("domainevents: a publisher needs a name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[p.Name()]; dup {
		return fmt.Errorf("domainevents: publisher %q is already registered", p.Name())
	}
	r.byName[p.Name()] = p
	return nil
}

// MustRegister is Register that panics on error (for init-time wiring).
func (r *PublisherRegistry) MustRegister(p Publisher) {
	if err := r.Register(p); err != nil {
		panic(err)
	}
}

// SetDefault replaces the default publisher.
func (r *PublisherRegistry) SetDefault(p Publisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.def = p
}

// Default returns the default publisher.
func (r *PublisherRegistry) Default() Publisher {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.def
}

// Get returns the publisher registered as name.
func (r *PublisherRegistry) Get(name string) (Publisher, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byName[name]
	return p, ok
}

// GetOrDefault returns the publisher registered as name, or the default one for "", "default"
// and unknown names (with a warning the first time an unknown name is seen).
func (r *PublisherRegistry) GetOrDefault(name string) Publisher {
	if name == "" || name == "default" {
		return r.Default()
	}
	if p, ok := r.Get(name); ok {
		return p
	}
	r.mu.Lock()
	first := !r.warned[name]
	r.warned[name] = true
	def := r.def
	r.mu.Unlock()
	if first {
		r.log.Warn("domain event publisher not registered; using the default publisher", "publisher", name, "default", def.Name())
	}
	return def
}

// ForStep returns the publisher for a step's declarations: the first declaration's publisher
// (tasker-core uses only that one for the whole step), or the default.
func (r *PublisherRegistry) ForStep(decls []EventDeclaration) Publisher {
	if len(decls) == 0 {
		return r.Default()
	}
	return r.GetOrDefault(decls[0].Publisher)
}

// Names lists the registered publisher names, sorted.
func (r *PublisherRegistry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MissingPublishersError lists publisher names templates reference but nobody registered.
type MissingPublishersError struct {
	Missing, Registered []string
}

// Error names the missing and the registered publishers.
func (e *MissingPublishersError) Error() string {
	return fmt.Sprintf("domainevents: publishers not registered: %v (registered: %v)", e.Missing, e.Registered)
}

// ValidateRequired checks that every name (e.g. collected from templates' publishes_events) is
// registered, so a typo fails at start-up instead of silently using the default publisher.
// "" and "default" always pass.
func (r *PublisherRegistry) ValidateRequired(names ...string) error {
	var missing []string
	for _, n := range names {
		if n == "" || n == "default" {
			continue
		}
		if _, ok := r.Get(n); !ok && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &MissingPublishersError{Missing: missing, Registered: r.Names()}
}
