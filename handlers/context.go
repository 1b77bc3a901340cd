package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// DefaultMaxAttempts is what MaxAttempts reports when the step row has none (tasker-core's
// max_retries() default).
const DefaultMaxAttempts = 3

// StepContext is a handler's view of the hydrated step: task, step row, template definition,
// finished ancestors' results and checkpoint, plus a logger carrying the step's identity.
// It is read-only and safe for concurrent use.
type StepContext struct {
	seq    protocol.TaskSequenceStep
	logger *slog.Logger

	once       sync.Once
	input      map[string]json.RawMessage
	stepInputs map[string]json.RawMessage
	checkpoint map[string]json.RawMessage
}

// ContextOption configures NewStepContext.
type ContextOption func(*StepContext)

// WithLogger sets the base logger (default slog.Default()); the step attributes are added to it.
func WithLogger(l *slog.Logger) ContextOption {
	return func(s *StepContext) {
		if l != nil {
			s.logger = l
		}
	}
}

// NewStepContext wraps a hydrated TaskSequenceStep. The worker builds one per dispatch, and again
// after a checkpoint yield with seq.WorkflowStep.Checkpoint set to the persisted checkpoint.
func NewStepContext(seq protocol.TaskSequenceStep, opts ...ContextOption) *StepContext {
	s := &StepContext{seq: seq, logger: slog.Default()}
	for _, opt := range opts {
		opt(s)
	}
	s.logger = s.logger.With(attrsToAny(LogAttrs(seq))...)
	return s
}

func (s *StepContext) parse() {
	s.once.Do(func() {
		s.input = objectOf(s.seq.Task.Task.Context)
		s.stepInputs = objectOf(s.seq.WorkflowStep.Inputs)
		s.checkpoint = objectOf(s.seq.WorkflowStep.Checkpoint)
	})
}

// objectOf decodes raw as an object; anything else gives nil.
func objectOf(raw json.RawMessage) map[string]json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(t, &m) != nil {
		return nil
	}
	return m
}

// Sequence returns the underlying hydrated data. Do not modify it.
func (s *StepContext) Sequence() *protocol.TaskSequenceStep { return &s.seq }

// Logger returns a logger with task_uuid, step_uuid, correlation_id, step_name and namespace.
func (s *StepContext) Logger() *slog.Logger { return s.logger }

// ---- task ----

// TaskUUID is tasks.task_uuid.
func (s *StepContext) TaskUUID() uuid.UUID { return s.seq.Task.Task.TaskUUID }

// CorrelationID is tasks.correlation_id (the id tasker-core persists and propagates).
func (s *StepContext) CorrelationID() uuid.UUID { return s.seq.Task.Task.CorrelationID }

// ParentCorrelationID is tasks.parent_correlation_id, if set.
func (s *StepContext) ParentCorrelationID() (uuid.UUID, bool) {
	if p := s.seq.Task.Task.ParentCorrelationID; p != nil {
		return *p, true
	}
	return uuid.Nil, false
}

// Namespace is the task's namespace name.
func (s *StepContext) Namespace() string { return s.seq.Task.NamespaceName }

// TaskName is the task template name.
func (s *StepContext) TaskName() string { return s.seq.Task.TaskName }

// TaskVersion is the task template version.
func (s *StepContext) TaskVersion() string { return s.seq.Task.TaskVersion }

// InputData is the task context (the task request's input), raw; nil when the task has none.
func (s *StepContext) InputData() json.RawMessage { return s.seq.Task.Task.Context }

// Input returns one top-level field of the task context.
func (s *StepContext) Input(key string) (json.RawMessage, bool) {
	s.parse()
	v, ok := s.input[key]
	return v, ok
}

// HasInput reports whether the task context has key.
func (s *StepContext) HasInput(key string) bool {
	_, ok := s.Input(key)
	return ok
}

// InputKeys lists the task context's top-level keys, sorted.
func (s *StepContext) InputKeys() []string {
	s.parse()
	return slices.Sorted(maps.Keys(s.input))
}

// ---- step ----

// StepUUID is workflow_steps.workflow_step_uuid.
func (s *StepContext) StepUUID() uuid.UUID { return s.seq.WorkflowStep.WorkflowStepUUID }

// StepName is the step's named_steps.name (for batch workers "<template>_<batch_id>").
func (s *StepContext) StepName() string { return s.seq.WorkflowStep.Name }

// TemplateStepName is the template step this step was created from (equals StepName for
// template steps).
func (s *StepContext) TemplateStepName() string {
	if s.seq.WorkflowStep.TemplateStepName != "" {
		return s.seq.WorkflowStep.TemplateStepName
	}
	return s.seq.WorkflowStep.Name
}

// Attempts is workflow_steps.attempts as loaded before this claim: 0 on the first execution,
// 1 on the second, and so on. Checkpoint re-dispatches do not increase it.
func (s *StepContext) Attempts() int {
	if a := s.seq.WorkflowStep.Attempts; a != nil {
		return int(*a)
	}
	return 0
}

// MaxAttempts is workflow_steps.max_attempts (3 when unset); it counts executions.
func (s *StepContext) MaxAttempts() int {
	if m := s.seq.WorkflowStep.MaxAttempts; m != nil {
		return int(*m)
	}
	return DefaultMaxAttempts
}

// RetryCount is tasker-core's retry_count(): the pre-claim attempts value.
func (s *StepContext) RetryCount() int { return s.Attempts() }

// MaxRetries is tasker-core's max_retries(): MaxAttempts.
func (s *StepContext) MaxRetries() int { return s.MaxAttempts() }

// IsRetry reports whether an earlier attempt was made (attempts > 0).
func (s *StepContext) IsRetry() bool { return s.Attempts() > 0 }

// IsLastRetry reports whether this is the last permitted attempt (attempts >= max_attempts−1).
func (s *StepContext) IsLastRetry() bool {
	last := s.MaxAttempts() - 1
	if last < 0 {
		last = 0
	}
	return s.Attempts() >= last
}

// Retryable is the template-derived workflow_steps.retryable flag.
func (s *StepContext) Retryable() bool { return s.seq.WorkflowStep.Retryable }

// StepInputs is workflow_steps.inputs, raw (the template's handler.initialization, plus the
// cursor and batch metadata for batch workers); nil when empty.
func (s *StepContext) StepInputs() json.RawMessage { return s.seq.WorkflowStep.Inputs }

// StepInput returns one top-level field of the step inputs.
func (s *StepContext) StepInput(key string) (json.RawMessage, bool) {
	s.parse()
	v, ok := s.stepInputs[key]
	return v, ok
}

// PreviousResult is the result stored by the previous attempt (workflow_steps.results), if any.
func (s *StepContext) PreviousResult() (protocol.StepExecutionResult, bool) {
	raw := s.seq.WorkflowStep.Results
	if len(raw) == 0 {
		return protocol.StepExecutionResult{}, false
	}
	var r protocol.StepExecutionResult
	if json.Unmarshal(raw, &r) != nil {
		return protocol.StepExecutionResult{}, false
	}
	return r, true
}

// ---- step definition ----

// Definition is the template step definition.
func (s *StepContext) Definition() protocol.StepDefinition { return s.seq.StepDefinition }

// Callable is handler.callable, the handler lookup key.
func (s *StepContext) Callable() string { return s.seq.StepDefinition.Handler.Callable }

// Method is handler.method, or "call".
func (s *StepContext) Method() string { return s.seq.StepDefinition.Handler.EffectiveMethod() }

// Initialization is handler.initialization. Do not modify it.
func (s *StepContext) Initialization() map[string]json.RawMessage {
	return s.seq.StepDefinition.Handler.Initialization
}

// Config returns one handler.initialization entry (tasker-core's get_config).
func (s *StepContext) Config(key string) (json.RawMessage, bool) {
	v, ok := s.seq.StepDefinition.Handler.Initialization[key]
	return v, ok
}

// Dependencies are the template step's declared dependencies.
func (s *StepContext) Dependencies() []string {
	return slices.Clone(s.seq.StepDefinition.Dependencies)
}

// Timeout is the template's timeout_seconds, or 0 when unset.
func (s *StepContext) Timeout() time.Duration { return s.seq.StepDefinition.Timeout() }

// StepType is the template step type (standard when unset).
func (s *StepContext) StepType() protocol.StepType { return s.seq.StepDefinition.EffectiveStepType() }

// ---- dependency results ----

// DependencyResult returns the full StepExecutionResult of a finished ancestor step (any depth,
// keyed by step name).
func (s *StepContext) DependencyResult(name string) (protocol.StepExecutionResult, bool) {
	r, ok := s.seq.DependencyResults[name]
	return r, ok
}

// DependencyValue returns just the ancestor's handler output (its "result"), the value the next
// handler usually wants.
func (s *StepContext) DependencyValue(name string) (json.RawMessage, bool) {
	r, ok := s.seq.DependencyResults[name]
	if !ok {
		return nil, false
	}
	if len(r.Result) == 0 {
		return json.RawMessage(`null`), true
	}
	return r.Result, true
}

// HasDependency reports whether a finished ancestor named name exists.
func (s *StepContext) HasDependency(name string) bool {
	_, ok := s.seq.DependencyResults[name]
	return ok
}

// DependencyNames lists the ancestors with results, sorted.
func (s *StepContext) DependencyNames() []string {
	return slices.Sorted(maps.Keys(s.seq.DependencyResults))
}

// DependencyResults returns the whole map. Do not modify it.
func (s *StepContext) DependencyResults() map[string]protocol.StepExecutionResult {
	return s.seq.DependencyResults
}

// ---- checkpoint ----

// Checkpoint is workflow_steps.checkpoint, raw (a CheckpointRecord, or the CheckpointYieldData
// injected on an in-process re-dispatch); nil when there is none.
func (s *StepContext) Checkpoint() json.RawMessage { return s.seq.WorkflowStep.Checkpoint }

// HasCheckpoint reports whether a checkpoint with a non-null cursor exists.
func (s *StepContext) HasCheckpoint() bool {
	c, ok := s.CheckpointCursor()
	return ok && !bytes.Equal(bytes.TrimSpace(c), []byte("null"))
}

// CheckpointCursor is the checkpoint's cursor, raw.
func (s *StepContext) CheckpointCursor() (json.RawMessage, bool) {
	s.parse()
	v, ok := s.checkpoint["cursor"]
	return v, ok
}

// CheckpointItemsProcessed is the checkpoint's cumulative items_processed (0 without one).
func (s *StepContext) CheckpointItemsProcessed() uint64 {
	s.parse()
	var n uint64
	if v, ok := s.checkpoint["items_processed"]; ok {
		_ = json.Unmarshal(v, &n)
	}
	return n
}

// AccumulatedResults is the checkpoint's accumulated_results, raw; false when absent or null.
func (s *StepContext) AccumulatedResults() (json.RawMessage, bool) {
	s.parse()
	v, ok := s.checkpoint["accumulated_results"]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil, false
	}
	return v, true
}

// LogAttrs returns the step's logging attributes.
func (s *StepContext) LogAttrs() []slog.Attr { return LogAttrs(s.seq) }

func (s *StepContext) failureContext() map[string]any {
	return map[string]any{"handler_name": s.Callable(), "task_uuid": s.TaskUUID().String()}
}

// ---- generic decoders ----

// DecodeContextField decodes one task context field (tasker-core's get_input). A missing field
// is a ValidationError coded MISSING_CONTEXT_FIELD; a mistyped one INVALID_CONTEXT_FIELD.
func DecodeContextField[T any](s *StepContext, key string) (T, error) {
	var v T
	raw, ok := s.Input(key)
	if !ok {
		return v, ValidationError(fmt.Sprintf("missing input field %q", key)).WithCode("MISSING_CONTEXT_FIELD")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, ValidationError(fmt.Sprintf("invalid input field %q", key)).WithCode("INVALID_CONTEXT_FIELD").Wrap(err)
	}
	return v, nil
}

// ContextFieldOr decodes one task context field, or returns def when it is missing or mistyped.
func ContextFieldOr[T any](s *StepContext, key string, def T) T {
	v, err := DecodeContextField[T](s, key)
	if err != nil {
		return def
	}
	return v
}

// DecodeContext decodes the whole task context into T; a task without one decodes as {}. A
// mismatch is a ValidationError naming the field: INVALID_CONTEXT_FIELD with context "field"
// when the decoder names one, INVALID_CONTEXT otherwise.
func DecodeContext[T any](s *StepContext) (T, error) {
	var v T
	if err := decodeObject(s.InputData(), &v); err != nil {
		return v, decodeError(ValidationError, "task context", "INVALID_CONTEXT", "INVALID_CONTEXT_FIELD", err)
	}
	return v, nil
}

// DecodeStepInputs decodes the step inputs (workflow_steps.inputs) into T; empty inputs decode as
// {}. A mismatch is a PermanentError coded INVALID_STEP_INPUTS, naming the field (message and
// context "field") when the decoder names one.
func DecodeStepInputs[T any](s *StepContext) (T, error) {
	var v T
	if err := decodeObject(s.StepInputs(), &v); err != nil {
		return v, decodeError(PermanentError, "step inputs", "INVALID_STEP_INPUTS", "INVALID_STEP_INPUTS", err)
	}
	return v, nil
}

// decodeObject unmarshals raw into dst, reading empty input as {}.
func decodeObject(raw json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage(`{}`)
	}
	return json.Unmarshal(raw, dst)
}

// decodeError describes a failed decode of what: a mistyped field is named in the message and
// in the "field" context entry, with fieldCode; anything else gets code.
func decodeError(kind func(string) *StepError, what, code, fieldCode string, err error) *StepError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return kind(fmt.Sprintf("invalid %s field %q: want %s, got JSON %s", what, te.Field, te.Type, te.Value)).
			WithCode(fieldCode).WithContext("field", te.Field).Wrap(err)
	}
	return kind("invalid " + what).WithCode(code).Wrap(err)
}

// DecodeConfig decodes one handler.initialization entry (tasker-core's get_config). Missing or
// mistyped configuration is a PermanentError (MISSING_CONFIG / INVALID_CONFIG).
func DecodeConfig[T any](s *StepContext, key string) (T, error) {
	var v T
	raw, ok := s.Config(key)
	if !ok {
		return v, PermanentError(fmt.Sprintf("missing handler config %q", key)).WithCode("MISSING_CONFIG")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, PermanentError(fmt.Sprintf("invalid handler config %q", key)).WithCode("INVALID_CONFIG").Wrap(err)
	}
	return v, nil
}

// ConfigOr decodes one handler.initialization entry, or returns def when missing or mistyped.
func ConfigOr[T any](s *StepContext, key string, def T) T {
	v, err := DecodeConfig[T](s, key)
	if err != nil {
		return def
	}
	return v
}

// DecodeDependency decodes an ancestor's output (its "result"). A missing ancestor is a
// RetryableError coded MISSING_DEPENDENCY (as tasker-core's examples report it); an output of
// the wrong shape is a PermanentError coded INVALID_DEPENDENCY_RESULT.
func DecodeDependency[T any](s *StepContext, name string) (T, error) {
	var v T
	raw, ok := s.DependencyValue(name)
	if !ok {
		return v, RetryableError(fmt.Sprintf("missing dependency result %q", name)).WithCode("MISSING_DEPENDENCY")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, PermanentError(fmt.Sprintf("invalid dependency result %q", name)).WithCode("INVALID_DEPENDENCY_RESULT").Wrap(err)
	}
	return v, nil
}

// DecodeDependencyField decodes the value at path inside an ancestor's output (tasker-core's
// get_dependency_field), with DecodeDependency's error conventions; a missing path element is a
// PermanentError coded MISSING_DEPENDENCY_FIELD.
func DecodeDependencyField[T any](s *StepContext, name string, path ...string) (T, error) {
	var v T
	raw, ok := s.DependencyValue(name)
	if !ok {
		return v, RetryableError(fmt.Sprintf("missing dependency result %q", name)).WithCode("MISSING_DEPENDENCY")
	}
	for _, key := range path {
		obj := objectOf(raw)
		next, ok := obj[key]
		if !ok {
			return v, PermanentError(fmt.Sprintf("dependency %q has no field %q", name, key)).WithCode("MISSING_DEPENDENCY_FIELD")
		}
		raw = next
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, PermanentError(fmt.Sprintf("invalid dependency field %q in %q", path, name)).WithCode("INVALID_DEPENDENCY_RESULT").Wrap(err)
	}
	return v, nil
}

// DecodeCheckpointCursor decodes the checkpoint cursor; ok is false when there is no checkpoint.
func DecodeCheckpointCursor[T any](s *StepContext) (v T, ok bool, err error) {
	if !s.HasCheckpoint() {
		return v, false, nil
	}
	raw, _ := s.CheckpointCursor()
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, true, PermanentError("invalid checkpoint cursor").WithCode("INVALID_CHECKPOINT").Wrap(err)
	}
	return v, true, nil
}

// DecodeAccumulatedResults decodes the checkpoint's accumulated_results; ok is false when absent.
func DecodeAccumulatedResults[T any](s *StepContext) (v T, ok bool, err error) {
	raw, ok := s.AccumulatedResults()
	if !ok {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, true, PermanentError("invalid checkpoint accumulated_results").WithCode("INVALID_CHECKPOINT").Wrap(err)
	}
	return v, true, nil
}
