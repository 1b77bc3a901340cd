package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Size limits of what enters tasker-go, checked on the byte length before anything is decoded,
// so an oversized input costs a length comparison, not a parse.
const (
	// MaxTaskRequestBytes bounds an encoded task request (an HTTP body, a request file) and the
	// raw JSON of a task's context: 2 MiB. tasker-core's web API takes POST /v1/tasks through
	// axum's Json extractor, whose default body limit is 2 MB, and its validate_jsonb_input
	// refuses a context over 1 MiB serialized; the extra MiB leaves room for indentation.
	MaxTaskRequestBytes = 2 << 20
	// MaxStepMessageBytes bounds a message on worker_<ns>_queue or orchestration_step_results:
	// 64 KiB. The message is three UUIDs (about 130 bytes; the result travels in
	// workflow_steps.results, never in the message), so anything near this is not a step message.
	MaxStepMessageBytes = 64 << 10
	// MaxStepResultBytes bounds what a handler returns (result value, metadata, error details
	// and headers, as JSON): 10 MiB. The result is written twice per completion (the results
	// column and the transition's metadata) and read again by every dependent step.
	MaxStepResultBytes = 10 << 20
	// MaxCheckpointBytes bounds a checkpoint yield's cursor plus accumulated results, as JSON:
	// 10 MiB, the same as a result, since the accumulated results end up in one.
	MaxCheckpointBytes = 10 << 20
)

// ErrTooLarge is wrapped by every *SizeError (match with errors.Is).
var ErrTooLarge = errors.New("too large")

// SizeError reports an input refused for its size; none of it was decoded.
type SizeError struct {
	What  string // what was refused, e.g. "task request"
	Size  int64  // its size in bytes; with Partial, the bytes read before giving up
	Limit int64
	// Partial is set when the input is a stream that was not read to its end (Size is then
	// Limit+1, a lower bound).
	Partial bool
}

// Error names the input, its size and the limit.
func (e *SizeError) Error() string {
	if e.Partial {
		return fmt.Sprintf("%s is more than %d bytes; the limit is %d", e.What, e.Limit, e.Limit)
	}
	return fmt.Sprintf("%s is %d bytes; the limit is %d", e.What, e.Size, e.Limit)
}

// Unwrap returns ErrTooLarge.
func (e *SizeError) Unwrap() error { return ErrTooLarge }

// CheckSize returns a *SizeError naming what when size exceeds limit, and nil otherwise.
func CheckSize(what string, size, limit int64) error {
	if size > limit {
		return &SizeError{What: what, Size: size, Limit: limit}
	}
	return nil
}

// ReadLimited reads r to its end unless it holds more than limit bytes: it never reads more
// than limit+1 bytes, and then returns a *SizeError (Partial) naming what. Other read errors are
// returned wrapped.
func ReadLimited(r io.Reader, what string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, &SizeError{What: what, Size: int64(len(data)), Limit: limit, Partial: true}
	}
	return data, nil
}

// PayloadSize is the size in bytes of r's variable parts, the ones a handler fills: the result,
// metadata custom and context, error message, type, code, backtrace and context, and
// orchestration headers, error context and custom (raw JSON as is, strings unescaped, without
// the keys and punctuation of the fixed fields). It is what MaxStepResultBytes bounds, measured
// without encoding r.
func (r StepExecutionResult) PayloadSize() int64 {
	n := int64(len(r.Result)) + rawMapSize(r.Metadata.Custom) + rawMapSize(r.Metadata.Context) +
		strPtrSize(r.Metadata.ErrorCode) + strPtrSize(r.Metadata.ErrorType)
	if e := r.Error; e != nil {
		n += int64(len(e.Message)) + strPtrSize(e.ErrorType) + rawMapSize(e.Context)
		for _, line := range e.Backtrace {
			n += int64(len(line))
		}
	}
	if om := r.OrchestrationMetadata; om != nil {
		n += strPtrSize(om.ErrorContext) + rawMapSize(om.Custom)
		for k, v := range om.Headers {
			n += int64(len(k) + len(v))
		}
		if om.BackoffHint != nil {
			n += strPtrSize(om.BackoffHint.Context)
		}
	}
	return n
}

func rawMapSize(m map[string]json.RawMessage) int64 {
	var n int64
	for k, v := range m {
		n += int64(len(k) + len(v))
	}
	return n
}

func strPtrSize(s *string) int64 {
	if s == nil {
		return 0
	}
	return int64(len(*s))
}
