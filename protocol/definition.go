package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// StepType is a template step's "type" (YAML alias "step_type").
type StepType string

// Step types known to tasker-core; the empty value reads as StepTypeStandard.
const (
	StepTypeStandard            StepType = "standard"
	StepTypeDecision            StepType = "decision"
	StepTypeDeferredConvergence StepType = "deferred_convergence"
	StepTypeBatchable           StepType = "batchable"
	StepTypeBatchWorker         StepType = "batch_worker"
)

// Valid reports whether t is one of the known step types (empty counts as standard).
func (t StepType) Valid() bool {
	switch t {
	case "", StepTypeStandard, StepTypeDecision, StepTypeDeferredConvergence, StepTypeBatchable, StepTypeBatchWorker:
		return true
	}
	return false
}

// DefaultMethod is the handler entry point used when handler.method is absent.
const DefaultMethod = "call"

// HandlerDefinition is a template step's handler block. Empty Method and Resolver marshal as
// null; a nil Initialization marshals as {}.
type HandlerDefinition struct {
	Callable       string                     `json:"callable"`
	Method         string                     `json:"method"`
	Resolver       string                     `json:"resolver"`
	Initialization map[string]json.RawMessage `json:"initialization"`
}

// EffectiveMethod returns Method, or "call" when it is empty.
func (h HandlerDefinition) EffectiveMethod() string {
	if h.Method == "" {
		return DefaultMethod
	}
	return h.Method
}

// UsesMethodDispatch reports whether a method other than "call" is requested.
func (h HandlerDefinition) UsesMethodDispatch() bool { return h.EffectiveMethod() != DefaultMethod }

type handlerDefinitionJSON struct {
	Callable       string                     `json:"callable"`
	Method         *string                    `json:"method"`
	Resolver       *string                    `json:"resolver"`
	Initialization map[string]json.RawMessage `json:"initialization"`
}

// MarshalJSON writes the serde shape.
func (h HandlerDefinition) MarshalJSON() ([]byte, error) {
	return json.Marshal(handlerDefinitionJSON{
		Callable:       h.Callable,
		Method:         optString(h.Method),
		Resolver:       optString(h.Resolver),
		Initialization: nonNilRaw(h.Initialization),
	})
}

// UnmarshalJSON reads the serde shape; null method/resolver become "".
func (h *HandlerDefinition) UnmarshalJSON(data []byte) error {
	var j handlerDefinitionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("protocol: handler definition: %w", err)
	}
	*h = HandlerDefinition{Callable: j.Callable, Initialization: j.Initialization}
	if j.Method != nil {
		h.Method = *j.Method
	}
	if j.Resolver != nil {
		h.Resolver = *j.Resolver
	}
	return nil
}

// DefaultRetryJSON is the retry block serde fills in when a template step has none.
const DefaultRetryJSON = `{"retryable":true,"max_attempts":3,"backoff":"exponential","backoff_base_ms":1000,"max_backoff_ms":30000}`

// StepDefinition is the subset of a template step that handlers and hydration need, with the
// remaining blocks kept as raw JSON so a definition round-trips. JSON keys match tasker-core's
// StepDefinition serialization (the full typed template lives in package template).
type StepDefinition struct {
	Name             string
	Description      string // "" marshals as null
	Handler          HandlerDefinition
	StepType         StepType // key "type"; "step_type" accepted on read
	SystemDependency string   // "" marshals as null
	Dependencies     []string // "depends_on" accepted on read
	Retry            json.RawMessage
	TimeoutSeconds   *uint32
	PublishesEvents  json.RawMessage // array of event declarations
	BatchConfig      json.RawMessage
	ResultSchema     json.RawMessage // omitted when nil
	Composition      json.RawMessage // omitted when nil
}

// Timeout returns timeout_seconds as a duration, or 0 when unset.
func (d StepDefinition) Timeout() time.Duration {
	if d.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*d.TimeoutSeconds) * time.Second
}

// EffectiveStepType returns StepType, or standard when it is empty.
func (d StepDefinition) EffectiveStepType() StepType {
	if d.StepType == "" {
		return StepTypeStandard
	}
	return d.StepType
}

type stepDefinitionJSON struct {
	Name             string            `json:"name"`
	Description      *string           `json:"description"`
	Handler          HandlerDefinition `json:"handler"`
	StepType         StepType          `json:"type"`
	SystemDependency *string           `json:"system_dependency"`
	Dependencies     []string          `json:"dependencies"`
	Retry            json.RawMessage   `json:"retry"`
	TimeoutSeconds   *uint32           `json:"timeout_seconds"`
	PublishesEvents  json.RawMessage   `json:"publishes_events"`
	BatchConfig      json.RawMessage   `json:"batch_config"`
	ResultSchema     json.RawMessage   `json:"result_schema,omitempty"`
	Composition      json.RawMessage   `json:"composition,omitempty"`
}

// MarshalJSON writes the shape serde_json::to_value(StepDefinition) produces, filling defaults
// (type standard, dependencies [], default retry, publishes_events [], batch_config null).
func (d StepDefinition) MarshalJSON() ([]byte, error) {
	j := stepDefinitionJSON{
		Name:             d.Name,
		Description:      optString(d.Description),
		Handler:          d.Handler,
		StepType:         d.EffectiveStepType(),
		SystemDependency: optString(d.SystemDependency),
		Dependencies:     d.Dependencies,
		Retry:            d.Retry,
		TimeoutSeconds:   d.TimeoutSeconds,
		PublishesEvents:  d.PublishesEvents,
		BatchConfig:      orNull(d.BatchConfig),
		ResultSchema:     d.ResultSchema,
		Composition:      d.Composition,
	}
	if j.Dependencies == nil {
		j.Dependencies = []string{}
	}
	if len(j.Retry) == 0 {
		j.Retry = json.RawMessage(DefaultRetryJSON)
	}
	if len(j.PublishesEvents) == 0 || isNull(j.PublishesEvents) {
		j.PublishesEvents = json.RawMessage(`[]`)
	}
	if isNull(j.ResultSchema) {
		j.ResultSchema = nil
	}
	if isNull(j.Composition) {
		j.Composition = nil
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the serde shape, accepting the aliases step_type and depends_on.
func (d *StepDefinition) UnmarshalJSON(data []byte) error {
	var j struct {
		stepDefinitionJSON
		StepTypeAlias *StepType `json:"step_type"`
		DependsOn     []string  `json:"depends_on"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("protocol: step definition: %w", err)
	}
	out := StepDefinition{
		Name:            j.Name,
		Handler:         j.Handler,
		StepType:        j.StepType,
		Dependencies:    j.Dependencies,
		Retry:           nullToNil(j.Retry),
		TimeoutSeconds:  j.TimeoutSeconds,
		PublishesEvents: nullToNil(j.PublishesEvents),
		BatchConfig:     nullToNil(j.BatchConfig),
		ResultSchema:    nullToNil(j.ResultSchema),
		Composition:     nullToNil(j.Composition),
	}
	if j.Description != nil {
		out.Description = *j.Description
	}
	if j.SystemDependency != nil {
		out.SystemDependency = *j.SystemDependency
	}
	if out.StepType == "" && j.StepTypeAlias != nil {
		out.StepType = *j.StepTypeAlias
	}
	if out.Dependencies == nil && j.DependsOn != nil {
		out.Dependencies = j.DependsOn
	}
	if !out.StepType.Valid() {
		return fmt.Errorf("protocol: step definition %q: unknown step type %q", out.Name, out.StepType)
	}
	*d = out
	return nil
}

func nullToNil(v json.RawMessage) json.RawMessage {
	if len(v) == 0 || isNull(v) {
		return nil
	}
	return v
}
