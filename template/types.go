// Package template reads, validates and registers task templates in tasker-core's format.
//
// A task template is the YAML document a worker loads at start-up and registers in
// tasker.named_tasks.configuration, where the orchestrator (Go or Rust) reads it back as JSON.
// The Go types mirror tasker-core's TaskTemplate (crates/tasker-shared/src/models/core/
// task_template/mod.rs): the same keys, aliases and defaults, and a JSON form with the same
// fields, nulls and defaults as serde_json::to_value of the Rust struct.
//
// Parse checks the shape of a document (types, enum values, unknown keys); Validate checks what
// the orchestrator relies on (required fields, names, dependencies, cycles, decision and batch
// constraints, event names). LoadDir does both for a directory tree.
package template

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// StepType is a step's kind, the YAML/JSON key `type` (alias `step_type`).
type StepType string

// Step types accepted by tasker-core.
const (
	StepStandard            StepType = "standard"
	StepDecision            StepType = "decision"
	StepDeferredConvergence StepType = "deferred_convergence"
	StepBatchable           StepType = "batchable"
	StepBatchWorker         StepType = "batch_worker"
)

var stepTypes = []string{string(StepStandard), string(StepDecision), string(StepDeferredConvergence), string(StepBatchable), string(StepBatchWorker)}

// CreatedAtInitialization reports whether steps of this type exist from task creation on
// (batch_worker templates and deferred_convergence steps are created later by the orchestrator).
func (s StepType) CreatedAtInitialization() bool {
	return s != StepBatchWorker && s != StepDeferredConvergence
}

// BackoffStrategy is retry.backoff. tasker-core ignores it; the Go orchestrator applies it with
// backoff_base_ms and max_backoff_ms.
type BackoffStrategy string

// Backoff strategies accepted by tasker-core.
const (
	BackoffNone        BackoffStrategy = "none"
	BackoffLinear      BackoffStrategy = "linear"
	BackoffExponential BackoffStrategy = "exponential"
	BackoffFibonacci   BackoffStrategy = "fibonacci"
)

var backoffStrategies = []string{string(BackoffNone), string(BackoffLinear), string(BackoffExponential), string(BackoffFibonacci)}

// FailureStrategy is batch_config.failure_strategy, passed to batch workers.
type FailureStrategy string

// Failure strategies accepted by tasker-core.
const (
	FailureContinueOnFailure FailureStrategy = "continue_on_failure"
	FailureFailFast          FailureStrategy = "fail_fast"
	FailureIsolate           FailureStrategy = "isolate"
)

var failureStrategies = []string{string(FailureContinueOnFailure), string(FailureFailFast), string(FailureIsolate)}

// PublicationCondition is publishes_events[].condition.
type PublicationCondition string

// Publication conditions accepted by tasker-core.
const (
	ConditionSuccess          PublicationCondition = "success"
	ConditionFailure          PublicationCondition = "failure"
	ConditionRetryableFailure PublicationCondition = "retryable_failure"
	ConditionPermanentFailure PublicationCondition = "permanent_failure"
	ConditionAlways           PublicationCondition = "always"
)

var publicationConditions = []string{string(ConditionSuccess), string(ConditionFailure), string(ConditionRetryableFailure), string(ConditionPermanentFailure), string(ConditionAlways)}

// DeliveryMode is publishes_events[].delivery_mode.
type DeliveryMode string

// Delivery modes accepted by tasker-core.
const (
	DeliveryDurable   DeliveryMode = "durable"
	DeliveryFast      DeliveryMode = "fast"
	DeliveryBroadcast DeliveryMode = "broadcast"
)

var deliveryModes = []string{string(DeliveryDurable), string(DeliveryFast), string(DeliveryBroadcast)}

// IdentityStrategy is the named task's deduplication strategy (tasker.identity_strategy enum).
type IdentityStrategy string

// Identity strategies of the tasker.identity_strategy enum.
const (
	IdentityStrict         IdentityStrategy = "strict"
	IdentityCallerProvided IdentityStrategy = "caller_provided"
	IdentityAlwaysUnique   IdentityStrategy = "always_unique"
)

var identityStrategies = []string{string(IdentityStrict), string(IdentityCallerProvided), string(IdentityAlwaysUnique)}

// TaskTemplate is one task definition: tasker-core's TaskTemplate.
//
// JSON fields follow the Rust serialization exactly, except identity_strategy: tasker-core's
// struct has no such field (its identity-strategy guide documents the YAML key, and the column
// named_tasks.identity_strategy exists). Go reads it from YAML, emits it only when set (Rust
// deserializers ignore unknown keys) and Register writes it to the column.
type TaskTemplate struct {
	Name               string                         `json:"name"`
	NamespaceName      string                         `json:"namespace_name"`
	Version            string                         `json:"version"`
	Description        *string                        `json:"description"`
	Metadata           *TemplateMetadata              `json:"metadata"`
	SystemDependencies SystemDependencies             `json:"system_dependencies"`
	DomainEvents       []DomainEventDefinition        `json:"domain_events"`
	InputSchema        json.RawMessage                `json:"input_schema"`
	Steps              []StepDefinition               `json:"steps"`
	Environments       map[string]EnvironmentOverride `json:"environments"`
	Lifecycle          *LifecycleConfig               `json:"lifecycle"`
	IdentityStrategy   IdentityStrategy               `json:"identity_strategy,omitempty"`

	// Source names where the template was read from (a file path); used in error messages.
	Source string `json:"-"`
}

// TemplateMetadata is documentation only.
type TemplateMetadata struct {
	Author           *string    `json:"author"`
	Tags             []string   `json:"tags"`
	DocumentationURL *string    `json:"documentation_url"`
	CreatedAt        *Timestamp `json:"created_at"`
	UpdatedAt        *Timestamp `json:"updated_at"`
}

// SystemDependencies is documentation only; Primary defaults to "default".
type SystemDependencies struct {
	Primary   string   `json:"primary"`
	Secondary []string `json:"secondary"`
}

// DomainEventDefinition is a task-level event description (documentation only).
type DomainEventDefinition struct {
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Schema      json.RawMessage `json:"schema"`
}

// StepDefinition is one step of a template.
type StepDefinition struct {
	Name             string              `json:"name"`
	Description      *string             `json:"description"`
	Handler          HandlerDefinition   `json:"handler"`
	Type             StepType            `json:"type"`
	SystemDependency *string             `json:"system_dependency"`
	Dependencies     []string            `json:"dependencies"`
	Retry            RetryConfiguration  `json:"retry"`
	TimeoutSeconds   *uint32             `json:"timeout_seconds"`
	PublishesEvents  []EventDeclaration  `json:"publishes_events"`
	BatchConfig      *BatchConfiguration `json:"batch_config"`
	ResultSchema     json.RawMessage     `json:"result_schema,omitempty"`
	Composition      json.RawMessage     `json:"composition,omitempty"`
}

// HandlerDefinition is the address of a step's handler.
type HandlerDefinition struct {
	Callable       string                     `json:"callable"`
	Method         *string                    `json:"method"`
	Resolver       *string                    `json:"resolver"`
	Initialization map[string]json.RawMessage `json:"initialization"`
}

// EffectiveMethod is the method to invoke: Method, or "call" when unset.
func (h HandlerDefinition) EffectiveMethod() string {
	if h.Method == nil {
		return "call"
	}
	return *h.Method
}

// RetryConfiguration is a step's retry block. Retryable and MaxAttempts are copied into
// workflow_steps; the Go orchestrator also applies the backoff fields (tasker-core ignores them).
type RetryConfiguration struct {
	Retryable     bool            `json:"retryable"`
	MaxAttempts   uint32          `json:"max_attempts"`
	Backoff       BackoffStrategy `json:"backoff"`
	BackoffBaseMs *uint64         `json:"backoff_base_ms"`
	MaxBackoffMs  *uint64         `json:"max_backoff_ms"`
}

// DefaultRetry is the retry block a step gets when it has none.
func DefaultRetry() RetryConfiguration {
	base, maxB := uint64(1000), uint64(30000)
	return RetryConfiguration{Retryable: true, MaxAttempts: 3, Backoff: BackoffExponential, BackoffBaseMs: &base, MaxBackoffMs: &maxB}
}

// EventDeclaration is a domain event a step publishes (worker-protocol §9.1).
type EventDeclaration struct {
	Name         string               `json:"name"`
	Description  string               `json:"description"`
	Condition    PublicationCondition `json:"condition"`
	Schema       json.RawMessage      `json:"schema"`
	DeliveryMode DeliveryMode         `json:"delivery_mode"`
	Publisher    *string              `json:"publisher"`
}

// BatchConfiguration is batch_config, read by the orchestrator from the batch_worker step.
type BatchConfiguration struct {
	BatchSize       uint32          `json:"batch_size"`
	Parallelism     uint32          `json:"parallelism"`
	CursorField     string          `json:"cursor_field"`
	WorkerTemplate  string          `json:"worker_template"`
	FailureStrategy FailureStrategy `json:"failure_strategy"`
}

// EnvironmentOverride holds step overrides for one environment.
type EnvironmentOverride struct {
	Steps []StepOverride `json:"steps"`
}

// StepOverride changes one step (or every step, Name "ALL") in an environment.
type StepOverride struct {
	Name           string              `json:"name"`
	Handler        *HandlerOverride    `json:"handler"`
	TimeoutSeconds *uint32             `json:"timeout_seconds"`
	Retry          *RetryConfiguration `json:"retry"`
}

// HandlerOverride merges Initialization into the step's handler initialization.
// A nil map means "not given" (JSON null).
type HandlerOverride struct {
	Initialization map[string]json.RawMessage `json:"initialization"`
}

// LifecycleConfig holds per-template staleness thresholds (read by the staleness SQL).
type LifecycleConfig struct {
	MaxDurationMinutes               *int32 `json:"max_duration_minutes"`
	MaxWaitingForDependenciesMinutes *int32 `json:"max_waiting_for_dependencies_minutes"`
	MaxWaitingForRetryMinutes        *int32 `json:"max_waiting_for_retry_minutes"`
	MaxStepsInProcessMinutes         *int32 `json:"max_steps_in_process_minutes"`
	StalenessAction                  string `json:"staleness_action"`
	AutoFailOnTimeout                *bool  `json:"auto_fail_on_timeout"`
	AutoDLQOnTimeout                 *bool  `json:"auto_dlq_on_timeout"`
}

// Timestamp is a UTC instant serialized the way chrono serializes DateTime<Utc>
// (RFC 3339, "Z", fraction of 0, 3, 6 or 9 digits).
type Timestamp struct{ time.Time }

// MarshalJSON writes the chrono form.
func (t Timestamp) MarshalJSON() ([]byte, error) { return json.Marshal(protocol.UTCZ(t.Time)) }

// UnmarshalJSON reads an RFC 3339 timestamp and converts it to UTC.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := parseTimestamp(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

func parseTimestamp(s string) (time.Time, error) {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 timestamp: %q", s)
	}
	return v.UTC(), nil
}

// Key is namespace/name/version, the identity of a template.
func (t *TaskTemplate) Key() string {
	return t.NamespaceName + "/" + t.Name + "/" + t.Version
}

// Step returns the step called name, or nil.
func (t *TaskTemplate) Step(name string) *StepDefinition {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}

// JSON returns the configuration JSON stored in named_tasks.configuration.
func (t *TaskTemplate) JSON() (json.RawMessage, error) {
	return json.Marshal(t)
}

// MarshalJSON writes the template as tasker-core serializes it: every field present, absent
// options as null, empty lists as [] and empty maps as {}.
func (t TaskTemplate) MarshalJSON() ([]byte, error) {
	type plain TaskTemplate
	p := plain(t)
	if p.DomainEvents == nil {
		p.DomainEvents = []DomainEventDefinition{}
	}
	if p.Steps == nil {
		p.Steps = []StepDefinition{}
	}
	if p.Environments == nil {
		p.Environments = map[string]EnvironmentOverride{}
	}
	return json.Marshal(p)
}

// UnmarshalJSON reads configuration JSON with tasker-core's defaults and aliases. Unknown keys
// are ignored (as serde does), so configurations written by newer tasker-core versions load.
func (t *TaskTemplate) UnmarshalJSON(b []byte) error {
	v, err := ParseJSON(b, "")
	if err != nil {
		return err
	}
	*t = *v
	return nil
}

// MarshalJSON fills the defaults tasker-core always writes.
func (s StepDefinition) MarshalJSON() ([]byte, error) {
	type plain StepDefinition
	p := plain(s)
	if p.Type == "" {
		p.Type = StepStandard
	}
	if p.Dependencies == nil {
		p.Dependencies = []string{}
	}
	if p.PublishesEvents == nil {
		p.PublishesEvents = []EventDeclaration{}
	}
	return json.Marshal(p)
}

// MarshalJSON writes initialization as {} when empty.
func (h HandlerDefinition) MarshalJSON() ([]byte, error) {
	type plain HandlerDefinition
	p := plain(h)
	if p.Initialization == nil {
		p.Initialization = map[string]json.RawMessage{}
	}
	return json.Marshal(p)
}

// MarshalJSON writes an unset backoff as exponential (the Rust default).
func (r RetryConfiguration) MarshalJSON() ([]byte, error) {
	type plain RetryConfiguration
	p := plain(r)
	if p.Backoff == "" {
		p.Backoff = BackoffExponential
	}
	return json.Marshal(p)
}

// MarshalJSON fills condition and delivery mode defaults.
func (e EventDeclaration) MarshalJSON() ([]byte, error) {
	type plain EventDeclaration
	p := plain(e)
	if p.Condition == "" {
		p.Condition = ConditionSuccess
	}
	if p.DeliveryMode == "" {
		p.DeliveryMode = DeliveryDurable
	}
	return json.Marshal(p)
}

// MarshalJSON fills the failure strategy default.
func (b BatchConfiguration) MarshalJSON() ([]byte, error) {
	type plain BatchConfiguration
	p := plain(b)
	if p.FailureStrategy == "" {
		p.FailureStrategy = FailureContinueOnFailure
	}
	return json.Marshal(p)
}

// MarshalJSON writes steps as [] when empty.
func (e EnvironmentOverride) MarshalJSON() ([]byte, error) {
	type plain EnvironmentOverride
	p := plain(e)
	if p.Steps == nil {
		p.Steps = []StepOverride{}
	}
	return json.Marshal(p)
}

// MarshalJSON writes tags as [] when empty.
func (m TemplateMetadata) MarshalJSON() ([]byte, error) {
	type plain TemplateMetadata
	p := plain(m)
	if p.Tags == nil {
		p.Tags = []string{}
	}
	return json.Marshal(p)
}

// MarshalJSON fills primary ("default") and secondary ([]).
func (s SystemDependencies) MarshalJSON() ([]byte, error) {
	type plain SystemDependencies
	p := plain(s)
	if p.Primary == "" {
		p.Primary = "default"
	}
	if p.Secondary == nil {
		p.Secondary = []string{}
	}
	return json.Marshal(p)
}

// MarshalJSON fills staleness_action ("dlq").
func (l LifecycleConfig) MarshalJSON() ([]byte, error) {
	type plain LifecycleConfig
	p := plain(l)
	if p.StalenessAction == "" {
		p.StalenessAction = "dlq"
	}
	return json.Marshal(p)
}
