package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// Kind says what a Result asks the worker to do.
type Kind uint8

// Result kinds. The zero Kind is invalid: a zero Result is reported as a handler error.
const (
	KindInvalid Kind = iota
	KindSuccess
	KindFailure
	KindCheckpointYield
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindSuccess:
		return "success"
	case KindFailure:
		return "failure"
	case KindCheckpointYield:
		return "checkpoint_yield"
	}
	return "invalid"
}

// Result is what a handler returns. Build it with Success, Failure, ErrorResult, Yield or the
// capability helpers; the worker turns it into a protocol.StepExecutionResult with
// ToExecutionResult, or persists Checkpoint and re-dispatches for KindCheckpointYield.
type Result struct {
	Kind Kind
	// Value is the handler output stored as StepExecutionResult.result (success only). It must
	// be JSON-encodable; nil is stored as {}.
	Value any
	// Metadata is stored as metadata.custom.
	Metadata map[string]any
	// Error describes a failure (KindFailure only).
	Error *ErrorInfo
	// Headers go to orchestration_metadata.headers; the orchestrator reads "Retry-After".
	Headers map[string]string
	// BackoffHint goes to orchestration_metadata.backoff_hint.
	BackoffHint *protocol.BackoffHint
	// ErrorContext goes to orchestration_metadata.error_context when non-empty.
	ErrorContext string
	// Checkpoint is the progress to persist (KindCheckpointYield only).
	Checkpoint *CheckpointData
}

// ErrorInfo is the failure part of a Result.
type ErrorInfo struct {
	Message    string
	ErrorType  string
	Code       string // metadata.error_code
	Retryable  bool
	StatusCode int            // error.status_code when > 0
	Context    map[string]any // metadata.context
	Backtrace  []string
	// System marks a system-level error: status "error", never retryable.
	System bool
}

// CheckpointData is a checkpoint yield: where to resume, how many items are done in total, and
// partial aggregates to carry forward. Cursor and AccumulatedResults must be JSON-encodable.
type CheckpointData struct {
	Cursor             any
	ItemsProcessed     uint64
	AccumulatedResults any
}

// YieldData encodes the checkpoint for persistence. A cursor and accumulated results over
// protocol.MaxCheckpointBytes together are refused with an error wrapping a *protocol.SizeError.
func (c *CheckpointData) YieldData(stepUUID uuid.UUID) (protocol.CheckpointYieldData, error) {
	cursor, err := json.Marshal(c.Cursor)
	if err != nil {
		return protocol.CheckpointYieldData{}, fmt.Errorf("handlers: encode checkpoint cursor: %w", err)
	}
	acc, err := json.Marshal(c.AccumulatedResults)
	if err != nil {
		return protocol.CheckpointYieldData{}, fmt.Errorf("handlers: encode accumulated results: %w", err)
	}
	if err := protocol.CheckSize("checkpoint", int64(len(cursor)+len(acc)), protocol.MaxCheckpointBytes); err != nil {
		return protocol.CheckpointYieldData{}, fmt.Errorf("handlers: %w", err)
	}
	return protocol.CheckpointYieldData{StepUUID: stepUUID, Cursor: cursor, ItemsProcessed: c.ItemsProcessed, AccumulatedResults: acc}, nil
}

// Option adjusts a Result; pass options to Success, Failure or Result.With.
type Option func(*Result)

// Success returns a completed result with value as the step output and metadata as
// metadata.custom.
func Success(value any, metadata map[string]any, opts ...Option) Result {
	r := Result{Kind: KindSuccess, Value: value, Metadata: maps.Clone(metadata)}
	return r.With(opts...)
}

// Failure returns a failed result. An empty errorType defaults to retryable_error or
// permanent_error according to retryable.
func Failure(message, errorType string, retryable bool, opts ...Option) Result {
	if errorType == "" {
		errorType = ErrorTypePermanent
		if retryable {
			errorType = ErrorTypeRetryable
		}
	}
	r := Result{Kind: KindFailure, Error: &ErrorInfo{Message: message, ErrorType: errorType, Retryable: retryable}}
	return r.With(opts...)
}

// ErrorResult converts err into a failure using Classify (a *StepError's code, context, status
// code and retry delay are kept).
func ErrorResult(err error) Result {
	se := Classify(err)
	if se == nil {
		return Failure("nil error reported as failure", ErrorTypeHandler, false)
	}
	opts := []Option{WithCode(se.Code), WithContext(se.Context)}
	if se.StatusCode > 0 {
		opts = append(opts, WithStatusCode(se.StatusCode))
	}
	if se.RetryAfter > 0 {
		opts = append(opts, WithRetryAfter(se.RetryAfter))
	}
	return Failure(se.Message, se.ErrorType, se.Retryable, opts...)
}

// Yield returns a checkpoint yield: the worker persists the checkpoint and runs the handler again
// with it (StepContext.CheckpointCursor etc.), without completing the step or using an attempt.
func Yield(cursor any, itemsProcessed uint64, accumulated any) Result {
	return Result{Kind: KindCheckpointYield, Checkpoint: &CheckpointData{Cursor: cursor, ItemsProcessed: itemsProcessed, AccumulatedResults: accumulated}}
}

// With returns a copy of r with opts applied (maps are copied, never shared with r).
func (r Result) With(opts ...Option) Result {
	r.Metadata = maps.Clone(r.Metadata)
	r.Headers = maps.Clone(r.Headers)
	if r.Error != nil {
		e := *r.Error
		e.Context = maps.Clone(e.Context)
		r.Error = &e
	}
	for _, opt := range opts {
		opt(&r)
	}
	return r
}

// IsSuccess reports KindSuccess.
func (r Result) IsSuccess() bool { return r.Kind == KindSuccess }

// IsFailure reports KindFailure.
func (r Result) IsFailure() bool { return r.Kind == KindFailure }

// IsCheckpointYield reports KindCheckpointYield.
func (r Result) IsCheckpointYield() bool { return r.Kind == KindCheckpointYield }

// Retryable reports whether a failure may be retried (false for other kinds).
func (r Result) Retryable() bool { return r.Kind == KindFailure && r.Error != nil && r.Error.Retryable }

// WithCode sets the failure's error code (metadata.error_code).
func WithCode(code string) Option {
	return func(r *Result) {
		if r.Error != nil && code != "" {
			r.Error.Code = code
		}
	}
}

// WithContext merges entries into the failure's context.
func WithContext(ctx map[string]any) Option {
	return func(r *Result) {
		if r.Error == nil || len(ctx) == 0 {
			return
		}
		if r.Error.Context == nil {
			r.Error.Context = map[string]any{}
		}
		maps.Copy(r.Error.Context, ctx)
	}
}

// WithContextValue adds one entry to the failure's context.
func WithContextValue(key string, value any) Option {
	return WithContext(map[string]any{key: value})
}

// WithStatusCode sets error.status_code (e.g. an upstream HTTP status).
func WithStatusCode(code int) Option {
	return func(r *Result) {
		if r.Error != nil {
			r.Error.StatusCode = code
		}
	}
}

// WithBacktrace sets error.backtrace.
func WithBacktrace(lines []string) Option {
	return func(r *Result) {
		if r.Error != nil {
			r.Error.Backtrace = lines
		}
	}
}

// AsSystemError marks a failure as a system error (status "error", not retryable).
func AsSystemError() Option {
	return func(r *Result) {
		if r.Error != nil {
			r.Error.System = true
			r.Error.Retryable = false
		}
	}
}

// WithMetadata merges entries into metadata.custom.
func WithMetadata(md map[string]any) Option {
	return func(r *Result) {
		if len(md) == 0 {
			return
		}
		if r.Metadata == nil {
			r.Metadata = map[string]any{}
		}
		maps.Copy(r.Metadata, md)
	}
}

// WithHeader sets an orchestration_metadata.headers entry.
func WithHeader(key, value string) Option {
	return func(r *Result) {
		if r.Headers == nil {
			r.Headers = map[string]string{}
		}
		r.Headers[key] = value
	}
}

// WithRetryAfter asks the orchestrator to wait d before retrying: it sets the Retry-After header
// (whole seconds, rounded up) that tasker-core's backoff calculator honours, and a
// ServerRequested backoff hint. d <= 0 does nothing.
func WithRetryAfter(d time.Duration) Option {
	return func(r *Result) {
		if d <= 0 {
			return
		}
		secs := retryAfterSeconds(d)
		WithHeader(protocol.RetryAfterHeader, strconv.FormatUint(uint64(secs), 10))(r)
		if r.BackoffHint == nil {
			r.BackoffHint = &protocol.BackoffHint{BackoffType: protocol.BackoffServerRequested, DelaySeconds: secs}
		}
	}
}

// WithBackoffHint sets orchestration_metadata.backoff_hint.
func WithBackoffHint(hint protocol.BackoffHint) Option {
	return func(r *Result) { r.BackoffHint = &hint }
}

// WithErrorContext sets orchestration_metadata.error_context.
func WithErrorContext(s string) Option {
	return func(r *Result) { r.ErrorContext = s }
}

func retryAfterSeconds(d time.Duration) uint32 {
	secs := math.Ceil(d.Seconds())
	if secs > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(secs)
}

// ToExecutionResult converts a handler Result into the StepExecutionResult the worker persists,
// with execution_time_ms = elapsed. Values that cannot be JSON-encoded turn a success into a
// serialization_error system error; failure context values that cannot be encoded are stored as
// their fmt text. A result whose payload (StepExecutionResult.PayloadSize) is over
// protocol.MaxStepResultBytes is replaced by a serialization_error system error (never
// retryable: the handler would return it again) naming the size and the limit. A zero Result
// and a checkpoint yield (which the worker must persist instead) become non-retryable
// handler_error / retryable checkpoint_error failures.
func ToExecutionResult(stepUUID uuid.UUID, r Result, elapsed time.Duration) protocol.StepExecutionResult {
	execMs := elapsed.Milliseconds()
	var out protocol.StepExecutionResult
	switch r.Kind {
	case KindSuccess:
		value := r.Value
		if value == nil {
			value = map[string]any{}
		}
		data, err := json.Marshal(value)
		if err != nil {
			return protocol.SystemError(stepUUID, "Handler result is not JSON-encodable: "+err.Error(), ErrorTypeSerialization, nil, execMs, nil)
		}
		custom, err := encodeMap(r.Metadata, true)
		if err != nil {
			return protocol.SystemError(stepUUID, "Handler metadata is not JSON-encodable: "+err.Error(), ErrorTypeSerialization, nil, execMs, nil)
		}
		out = protocol.Success(stepUUID, data, execMs, custom)
	case KindFailure:
		e := r.Error
		if e == nil {
			e = &ErrorInfo{Message: "handler returned a failure without error details", ErrorType: ErrorTypeHandler}
		}
		ctx, _ := encodeMap(e.Context, false)
		if e.System {
			out = protocol.SystemError(stepUUID, e.Message, e.ErrorType, e.Backtrace, execMs, ctx)
			out.Metadata.ErrorCode = optString(e.Code)
		} else {
			out = protocol.Failure(stepUUID, e.Message, e.ErrorType, e.Code, e.Retryable, execMs, ctx)
			out.Error.Backtrace = e.Backtrace
		}
		if e.StatusCode > 0 && e.StatusCode <= math.MaxUint16 {
			code := uint16(e.StatusCode)
			out.Error.StatusCode = &code
		}
		custom, _ := encodeMap(r.Metadata, false)
		out.Metadata.Custom = custom
	case KindCheckpointYield:
		return protocol.Failure(stepUUID, "Checkpoint yield failed: the worker did not persist the checkpoint", ErrorTypeCheckpoint, "", true, execMs, nil)
	default:
		return protocol.Failure(stepUUID, "Handler returned an empty result", ErrorTypeHandler, "", false, execMs, nil)
	}
	om := out.EnsureOrchestrationMetadata()
	maps.Copy(om.Headers, r.Headers)
	if r.BackoffHint != nil {
		hint := *r.BackoffHint
		om.BackoffHint = &hint
	}
	if r.ErrorContext != "" {
		ec := r.ErrorContext
		om.ErrorContext = &ec
	}
	if err := protocol.CheckSize("step result", out.PayloadSize(), protocol.MaxStepResultBytes); err != nil {
		return protocol.SystemError(stepUUID, "Handler result is too large: "+err.Error(), ErrorTypeSerialization, nil, execMs, nil)
	}
	return out
}

// encodeMap encodes each value; with strict it fails on the first bad value, otherwise it stores
// the value's fmt text instead.
func encodeMap(m map[string]any, strict bool) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		data, err := json.Marshal(v)
		if err != nil {
			if strict {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			data, _ = json.Marshal(fmt.Sprint(v))
		}
		out[k] = data
	}
	return out, nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// HandlerTimeoutResult is the failure for a handler that exceeded its time limit, as tasker-core
// reports it: "Handler timed out after <ms>ms", handler_timeout, retryable.
func HandlerTimeoutResult(step *StepContext, timeout time.Duration) Result {
	ms := timeout.Milliseconds()
	return Failure(fmt.Sprintf("Handler timed out after %dms", ms), ErrorTypeHandlerTimeout, true,
		WithContext(step.failureContext()), WithContextValue("timeout_ms", ms))
}

// WorkerShutdownResult is the failure for a handler cancelled because its worker shut down
// before it finished: "Worker shut down before the handler finished", worker_shutdown,
// retryable, so orchestration retries the step within its max_attempts.
func WorkerShutdownResult(step *StepContext) Result {
	return Failure("Worker shut down before the handler finished", ErrorTypeWorkerShutdown, true,
		WithContext(step.failureContext()))
}

// CheckpointErrorResult is the failure for a checkpoint the worker could not persist or
// re-dispatch: "Checkpoint yield failed: <err>", checkpoint_error, retryable unless err is
// protocol.ErrTooLarge (the handler would yield the same oversized checkpoint again).
func CheckpointErrorResult(err error) Result {
	return Failure("Checkpoint yield failed: "+err.Error(), ErrorTypeCheckpoint, !errors.Is(err, protocol.ErrTooLarge))
}
