package protocol

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Result status strings written by tasker-core's factories. The orchestrator runs decision and
// batch post-processing only for StatusCompleted.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusError     = "error"
)

// StepExecutionResult is the JSON stored in workflow_steps.results and inside the completion
// transition's metadata. Result is any JSON (handler output; {} for failures).
type StepExecutionResult struct {
	StepUUID              uuid.UUID              `json:"step_uuid"`
	Success               bool                   `json:"success"`
	Result                json.RawMessage        `json:"result"`
	Metadata              StepExecutionMetadata  `json:"metadata"`
	Status                string                 `json:"status"`
	Error                 *StepExecutionError    `json:"error"`
	OrchestrationMetadata *OrchestrationMetadata `json:"orchestration_metadata"`
}

// StepExecutionMetadata is StepExecutionResult.metadata. Custom and Context always marshal as
// objects (never null), as serde requires on read.
type StepExecutionMetadata struct {
	ExecutionTimeMs int64                      `json:"execution_time_ms"`
	HandlerVersion  *string                    `json:"handler_version"`
	Retryable       bool                       `json:"retryable"`
	CompletedAt     time.Time                  `json:"completed_at"`
	WorkerID        *string                    `json:"worker_id"`
	WorkerHostname  *string                    `json:"worker_hostname"`
	StartedAt       *time.Time                 `json:"started_at"`
	Custom          map[string]json.RawMessage `json:"custom"`
	ErrorCode       *string                    `json:"error_code"`
	ErrorType       *string                    `json:"error_type"`
	Context         map[string]json.RawMessage `json:"context"`
}

// StepExecutionError is StepExecutionResult.error. StatusCode is omitted when nil and Context
// when empty; Backtrace marshals as null when nil.
type StepExecutionError struct {
	Message    string                     `json:"message"`
	ErrorType  *string                    `json:"error_type"`
	Backtrace  []string                   `json:"backtrace"`
	Retryable  bool                       `json:"retryable"`
	StatusCode *uint16                    `json:"status_code,omitempty"`
	Context    map[string]json.RawMessage `json:"context,omitempty"`
}

// OrchestrationMetadata is StepExecutionResult.orchestration_metadata. Headers and Custom always
// marshal as objects: the Rust struct has no serde defaults, so a missing key fails the parse.
// The orchestrator honours a "Retry-After" header (case-insensitive; integer seconds or an RFC
// 2822 date); BackoffHint is parsed but effectively ignored by it.
type OrchestrationMetadata struct {
	Headers      map[string]string          `json:"headers"`
	ErrorContext *string                    `json:"error_context"`
	BackoffHint  *BackoffHint               `json:"backoff_hint"`
	Custom       map[string]json.RawMessage `json:"custom"`
}

// BackoffHintType is BackoffHint.backoff_type; serialized in PascalCase.
type BackoffHintType string

// Backoff hint types known to tasker-core.
const (
	BackoffServerRequested    BackoffHintType = "ServerRequested"
	BackoffRateLimit          BackoffHintType = "RateLimit"
	BackoffServiceUnavailable BackoffHintType = "ServiceUnavailable"
	BackoffCustom             BackoffHintType = "Custom"
)

// BackoffHint is an explicit backoff request from a handler.
type BackoffHint struct {
	BackoffType  BackoffHintType `json:"backoff_type"`
	DelaySeconds uint32          `json:"delay_seconds"`
	Context      *string         `json:"context"`
}

// RetryAfterHeader is the orchestration_metadata.headers key the orchestrator reads for
// server-requested backoff.
const RetryAfterHeader = "Retry-After"

// now is the clock used by the constructors; tests may replace it.
var now = time.Now

// NewOrchestrationMetadata returns the object tasker-core's factories emit:
// {"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}.
func NewOrchestrationMetadata() *OrchestrationMetadata {
	return &OrchestrationMetadata{Headers: map[string]string{}, Custom: map[string]json.RawMessage{}}
}

func newMetadata(execMs int64, retryable bool) StepExecutionMetadata {
	completed := now().UTC()
	started := completed.Add(-time.Duration(execMs) * time.Millisecond)
	return StepExecutionMetadata{
		ExecutionTimeMs: execMs,
		Retryable:       retryable,
		CompletedAt:     completed,
		StartedAt:       &started,
		Custom:          map[string]json.RawMessage{},
		Context:         map[string]json.RawMessage{},
	}
}

// Success builds a completed result as tasker-core's StepExecutionResult::success does: status
// "completed", metadata.retryable false, error null, default orchestration_metadata. A nil result
// is stored as JSON null; custom (nil allowed) becomes metadata.custom.
func Success(stepUUID uuid.UUID, result json.RawMessage, execMs int64, custom map[string]json.RawMessage) StepExecutionResult {
	md := newMetadata(execMs, false)
	if custom != nil {
		md.Custom = custom
	}
	return StepExecutionResult{
		StepUUID:              stepUUID,
		Success:               true,
		Result:                result,
		Metadata:              md,
		Status:                StatusCompleted,
		OrchestrationMetadata: NewOrchestrationMetadata(),
	}
}

// Failure builds a failed result as tasker-core's StepExecutionResult::failure does: status
// "failed", result {}, retryable mirrored in metadata.retryable and error.retryable, errorType in
// error.error_type and metadata.error_type, errorCode in metadata.error_code, context in
// metadata.context. Empty errorType / errorCode are written as null. Note the argument order
// (errorType before errorCode) differs from the Rust factory.
func Failure(stepUUID uuid.UUID, message, errorType, errorCode string, retryable bool, execMs int64, context map[string]json.RawMessage) StepExecutionResult {
	md := newMetadata(execMs, retryable)
	md.ErrorCode = optString(errorCode)
	md.ErrorType = optString(errorType)
	if context != nil {
		md.Context = context
	}
	return StepExecutionResult{
		StepUUID: stepUUID,
		Success:  false,
		Result:   json.RawMessage(`{}`),
		Metadata: md,
		Status:   StatusFailed,
		Error: &StepExecutionError{
			Message:   message,
			ErrorType: optString(errorType),
			Retryable: retryable,
		},
		OrchestrationMetadata: NewOrchestrationMetadata(),
	}
}

// SystemError builds a system-level error result as tasker-core's StepExecutionResult::error
// does: status "error", never retryable, optional backtrace.
func SystemError(stepUUID uuid.UUID, message, errorType string, backtrace []string, execMs int64, context map[string]json.RawMessage) StepExecutionResult {
	md := newMetadata(execMs, false)
	md.ErrorType = optString(errorType)
	if context != nil {
		md.Context = context
	}
	return StepExecutionResult{
		StepUUID: stepUUID,
		Success:  false,
		Result:   json.RawMessage(`{}`),
		Metadata: md,
		Status:   StatusError,
		Error: &StepExecutionError{
			Message:   message,
			ErrorType: optString(errorType),
			Backtrace: backtrace,
			Retryable: false,
		},
		OrchestrationMetadata: NewOrchestrationMetadata(),
	}
}

// NormalizedStatus returns Status, or "completed"/"failed" from Success when Status is empty.
func (r StepExecutionResult) NormalizedStatus() string {
	if r.Status != "" {
		return r.Status
	}
	if r.Success {
		return StatusCompleted
	}
	return StatusFailed
}

// IsRetryable reports metadata.retryable, the only flag the orchestrator consults for retries.
func (r StepExecutionResult) IsRetryable() bool { return r.Metadata.Retryable }

// SetRetryable sets metadata.retryable and, when an error object is present, error.retryable.
func (r *StepExecutionResult) SetRetryable(retryable bool) {
	r.Metadata.Retryable = retryable
	if r.Error != nil {
		r.Error.Retryable = retryable
	}
}

// EnsureOrchestrationMetadata returns r.OrchestrationMetadata, creating the default object first
// when it is nil.
func (r *StepExecutionResult) EnsureOrchestrationMetadata() *OrchestrationMetadata {
	if r.OrchestrationMetadata == nil {
		r.OrchestrationMetadata = NewOrchestrationMetadata()
	}
	if r.OrchestrationMetadata.Headers == nil {
		r.OrchestrationMetadata.Headers = map[string]string{}
	}
	if r.OrchestrationMetadata.Custom == nil {
		r.OrchestrationMetadata.Custom = map[string]json.RawMessage{}
	}
	return r.OrchestrationMetadata
}

// MarshalJSON writes JSON null for a nil Result.
func (r StepExecutionResult) MarshalJSON() ([]byte, error) {
	type plain StepExecutionResult
	p := plain(r)
	if len(p.Result) == 0 {
		p.Result = json.RawMessage(`null`)
	}
	return json.Marshal(p)
}

// MarshalJSON writes custom and context as objects even when nil, and timestamps in UTC the way
// chrono does (0, 3, 6 or 9 fraction digits, "Z").
func (m StepExecutionMetadata) MarshalJSON() ([]byte, error) {
	var started *UTCTime
	if m.StartedAt != nil {
		s := UTCTime(*m.StartedAt)
		started = &s
	}
	return json.Marshal(struct {
		ExecutionTimeMs int64                      `json:"execution_time_ms"`
		HandlerVersion  *string                    `json:"handler_version"`
		Retryable       bool                       `json:"retryable"`
		CompletedAt     UTCTime                    `json:"completed_at"`
		WorkerID        *string                    `json:"worker_id"`
		WorkerHostname  *string                    `json:"worker_hostname"`
		StartedAt       *UTCTime                   `json:"started_at"`
		Custom          map[string]json.RawMessage `json:"custom"`
		ErrorCode       *string                    `json:"error_code"`
		ErrorType       *string                    `json:"error_type"`
		Context         map[string]json.RawMessage `json:"context"`
	}{
		m.ExecutionTimeMs, m.HandlerVersion, m.Retryable, UTCTime(m.CompletedAt), m.WorkerID, m.WorkerHostname,
		started, nonNilRaw(m.Custom), m.ErrorCode, m.ErrorType, nonNilRaw(m.Context),
	})
}

// UTCTime marshals a time the way chrono serializes DateTime<Utc>:
// "2026-03-21T21:16:08.123Z" (converted to UTC; 0, 3, 6 or 9 fraction digits).
type UTCTime time.Time

// MarshalJSON writes the chrono form.
func (t UTCTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(NewNaiveTime(time.Time(t)).String() + "Z")
}

// MarshalJSON writes headers and custom as objects even when nil.
func (m OrchestrationMetadata) MarshalJSON() ([]byte, error) {
	type plain OrchestrationMetadata
	p := plain(m)
	if p.Headers == nil {
		p.Headers = map[string]string{}
	}
	p.Custom = nonNilRaw(p.Custom)
	return json.Marshal(p)
}

func nonNilRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return map[string]json.RawMessage{}
	}
	return m
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
