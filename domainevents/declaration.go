package domainevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

// Condition is publishes_events[].condition: when a declared event fires.
type Condition = template.PublicationCondition

// Publication conditions (template's values; success is the default).
const (
	ConditionSuccess          = template.ConditionSuccess
	ConditionFailure          = template.ConditionFailure
	ConditionRetryableFailure = template.ConditionRetryableFailure
	ConditionPermanentFailure = template.ConditionPermanentFailure
	ConditionAlways           = template.ConditionAlways
)

// DeliveryMode is publishes_events[].delivery_mode.
type DeliveryMode = template.DeliveryMode

// Delivery modes (durable is the default).
const (
	DeliveryDurable   = template.DeliveryDurable
	DeliveryFast      = template.DeliveryFast
	DeliveryBroadcast = template.DeliveryBroadcast
)

// EventDeclaration is one entry of a step's publishes_events.
type EventDeclaration struct {
	Name         string
	Description  string
	Condition    Condition
	Schema       json.RawMessage // JSON Schema of the business payload; nil accepts anything
	DeliveryMode DeliveryMode
	Publisher    string // registered publisher name; "" for the default publisher
}

// Durable reports whether the event goes to the namespace's domain-event queue.
func (d EventDeclaration) Durable() bool {
	return d.DeliveryMode == DeliveryDurable || d.DeliveryMode == DeliveryBroadcast
}

// Fast reports whether the event goes to the in-process bus.
func (d EventDeclaration) Fast() bool {
	return d.DeliveryMode == DeliveryFast || d.DeliveryMode == DeliveryBroadcast
}

// ParseDeclarations reads StepDefinition.publishes_events (a JSON array; nil, null and []
// mean none), filling tasker-core's defaults: condition success, delivery_mode durable. An
// unknown condition or delivery mode, or a declaration without a name, fails the whole list,
// as it fails tasker-core's template parse.
func ParseDeclarations(raw json.RawMessage) ([]EventDeclaration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var items []struct {
		Name         string          `json:"name"`
		Description  *string         `json:"description"`
		Condition    *string         `json:"condition"`
		Schema       json.RawMessage `json:"schema"`
		DeliveryMode *string         `json:"delivery_mode"`
		Publisher    *string         `json:"publisher"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("domainevents: publishes_events: %w", err)
	}
	out := make([]EventDeclaration, 0, len(items))
	var errs []error
	for i, it := range items {
		d := EventDeclaration{Name: it.Name, Condition: ConditionSuccess, DeliveryMode: DeliveryDurable}
		if it.Description != nil {
			d.Description = *it.Description
		}
		if it.Publisher != nil {
			d.Publisher = *it.Publisher
		}
		if s := bytes.TrimSpace(it.Schema); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
			d.Schema = it.Schema
		}
		if it.Condition != nil {
			d.Condition = Condition(*it.Condition)
		}
		if it.DeliveryMode != nil {
			d.DeliveryMode = DeliveryMode(*it.DeliveryMode)
		}
		if d.Name == "" {
			errs = append(errs, fmt.Errorf("publishes_events[%d]: name is required", i))
		}
		switch d.Condition {
		case ConditionSuccess, ConditionFailure, ConditionRetryableFailure, ConditionPermanentFailure, ConditionAlways:
		default:
			errs = append(errs, fmt.Errorf("publishes_events[%d] %q: unknown condition %q", i, d.Name, d.Condition))
		}
		switch d.DeliveryMode {
		case DeliveryDurable, DeliveryFast, DeliveryBroadcast:
		default:
			errs = append(errs, fmt.Errorf("publishes_events[%d] %q: unknown delivery_mode %q", i, d.Name, d.DeliveryMode))
		}
		out = append(out, d)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("domainevents: %w", errors.Join(errs...))
	}
	return out, nil
}

// Outcome is what a step execution means for publication conditions.
type Outcome struct {
	Succeeded bool
	// Retryable is true for a failure the orchestrator will retry: metadata.retryable is set and
	// the step has attempts left. A failure that is not retryable is permanent.
	Retryable bool
}

// defaultMaxAttempts is what the orchestrator assumes when workflow_steps.max_attempts is NULL.
const defaultMaxAttempts = 3

// OutcomeOf classifies res the way the orchestrator will act on it: success; a retryable
// failure (metadata.retryable and attempts < max_attempts after this execution); or a permanent
// failure. seq.WorkflowStep.Attempts is the count loaded before this execution's claim (as the
// worker hydrates it), so this execution is attempt Attempts+1.
//
// tasker-core evaluates retryable_failure / permanent_failure with no retryability at all, so
// they never fire there; using only metadata.retryable would call the last attempt of a
// retryable error "retryable" although no retry follows.
func OutcomeOf(seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) Outcome {
	if res.Success {
		return Outcome{Succeeded: true}
	}
	if !res.IsRetryable() {
		return Outcome{}
	}
	attempt := int32(1)
	if a := seq.WorkflowStep.Attempts; a != nil {
		attempt = *a + 1
	}
	maxAttempts := int32(defaultMaxAttempts)
	if m := seq.WorkflowStep.MaxAttempts; m != nil {
		maxAttempts = *m
	}
	return Outcome{Retryable: attempt < maxAttempts}
}

// ShouldPublish reports whether an event with condition c fires for outcome o. Unknown
// conditions never fire.
func ShouldPublish(c Condition, o Outcome) bool {
	switch c {
	case ConditionSuccess:
		return o.Succeeded
	case ConditionFailure:
		return !o.Succeeded
	case ConditionRetryableFailure:
		return !o.Succeeded && o.Retryable
	case ConditionPermanentFailure:
		return !o.Succeeded && !o.Retryable
	case ConditionAlways:
		return true
	}
	return false
}

// SchemaError says why a payload does not match its event's schema (or why the schema itself
// is unusable).
type SchemaError struct {
	Event    string
	Invalid  bool // the schema itself is malformed
	Problems []template.Problem
}

// Error lists the problems with their payload paths.
func (e *SchemaError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Path == "" {
			parts[i] = "(payload): " + p.Message
		} else {
			parts[i] = p.String()
		}
	}
	what := "payload does not match the schema"
	if e.Invalid {
		what = "the declared schema is invalid"
	}
	return fmt.Sprintf("domainevents: event %s: %s: %s", e.Event, what, strings.Join(parts, "; "))
}

// ValidatePayload checks payload against the declaration's JSON Schema as
// template.ValidateContext checks a context (full JSON Schema, local $refs only). Each distinct
// schema is compiled once and cached. A declaration without a schema accepts any payload; an
// empty payload is validated as JSON null.
func (d EventDeclaration) ValidatePayload(payload json.RawMessage) error {
	if len(d.Schema) == 0 {
		return nil
	}
	// A throwaway template carrying the event schema reuses ValidateContext; the compiled schema
	// comes from the template package's cache.
	err := template.ValidateContext(&template.TaskTemplate{Name: d.Name, InputSchema: d.Schema}, payload)
	var ce *template.ContextError
	var ve *template.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return &SchemaError{Event: d.Name, Problems: ce.Problems}
	case errors.As(err, &ve):
		return &SchemaError{Event: d.Name, Invalid: true, Problems: ve.Problems}
	default:
		return fmt.Errorf("domainevents: event %s: %w", d.Name, err)
	}
}
