package handlers

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"syscall"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// Standard error_type values, for handler authors (defined in protocol, see there).
const (
	ErrorTypePermanent       = protocol.ErrorTypePermanent
	ErrorTypeRetryable       = protocol.ErrorTypeRetryable
	ErrorTypeValidation      = protocol.ErrorTypeValidation
	ErrorTypeTimeout         = protocol.ErrorTypeTimeout
	ErrorTypeHandler         = protocol.ErrorTypeHandler
	ErrorTypeHandlerNotFound = protocol.ErrorTypeHandlerNotFound
	ErrorTypeHandlerPanic    = protocol.ErrorTypeHandlerPanic
	ErrorTypeHandlerTimeout  = protocol.ErrorTypeHandlerTimeout
	ErrorTypeCheckpoint      = protocol.ErrorTypeCheckpoint
	ErrorTypeNetwork         = protocol.ErrorTypeNetwork
	ErrorTypeDecision        = protocol.ErrorTypeDecision
	ErrorTypeSerialization   = protocol.ErrorTypeSerialization
	ErrorTypeWorkerShutdown  = protocol.ErrorTypeWorkerShutdown
)

// StepError is an error a handler returns to control how its failure is reported: message,
// error_type, retryability, error code (metadata.error_code), context (metadata.context), an
// optional server-requested retry delay and HTTP status code.
type StepError struct {
	Message    string
	ErrorType  string
	Retryable  bool
	Code       string
	Context    map[string]any
	RetryAfter time.Duration
	StatusCode int
	Err        error // optional cause
}

// Error returns the message, with the cause appended when both are set.
func (e *StepError) Error() string {
	switch {
	case e.Message != "" && e.Err != nil:
		return e.Message + ": " + e.Err.Error()
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	}
	return e.ErrorType
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// PermanentError is a non-retryable failure (error_type permanent_error).
func PermanentError(message string) *StepError {
	return &StepError{Message: message, ErrorType: ErrorTypePermanent}
}

// RetryableError is a retryable failure (error_type retryable_error).
func RetryableError(message string) *StepError {
	return &StepError{Message: message, ErrorType: ErrorTypeRetryable, Retryable: true}
}

// ValidationError is a non-retryable input failure (error_type validation_error).
func ValidationError(message string) *StepError {
	return &StepError{Message: message, ErrorType: ErrorTypeValidation}
}

// TimeoutError is a retryable timeout (error_type timeout).
func TimeoutError(message string) *StepError {
	return &StepError{Message: message, ErrorType: ErrorTypeTimeout, Retryable: true}
}

// WithCode sets the error code and returns e.
func (e *StepError) WithCode(code string) *StepError {
	e.Code = code
	return e
}

// WithContext adds one metadata.context entry and returns e.
func (e *StepError) WithContext(key string, value any) *StepError {
	if e.Context == nil {
		e.Context = map[string]any{}
	}
	e.Context[key] = value
	return e
}

// WithRetryAfter sets a server-requested retry delay and returns e.
func (e *StepError) WithRetryAfter(d time.Duration) *StepError {
	e.RetryAfter = d
	return e
}

// WithStatusCode sets error.status_code and returns e.
func (e *StepError) WithStatusCode(code int) *StepError {
	e.StatusCode = code
	return e
}

// Wrap sets the cause and returns e.
func (e *StepError) Wrap(err error) *StepError {
	e.Err = err
	return e
}

// RetryableReporter may be implemented by any error to state its own retryability; Classify
// honours it for errors that are not *StepError.
type RetryableReporter interface {
	Retryable() bool
}

// Classify maps any error to a *StepError (a new value; err is never modified):
//   - a *StepError anywhere in the chain keeps its fields (the message becomes err.Error() when
//     the error was wrapped with more text; an empty ErrorType is derived from Retryable);
//   - *NotFoundError → handler_not_found, not retryable;
//   - context.DeadlineExceeded and net.Error timeouts → timeout, retryable;
//   - connection refused/reset/aborted, broken pipe, unreachable hosts, unexpected EOF and other
//     *net.OpError → network_error, retryable;
//   - an error implementing RetryableReporter → handler_error with its own retryability;
//   - anything else (context.Canceled included) → handler_error, retryable, as tasker-core does.
//
// Classify(nil) returns nil.
func Classify(err error) *StepError {
	if err == nil {
		return nil
	}
	var se *StepError
	if errors.As(err, &se) {
		out := *se
		out.Context = maps.Clone(se.Context)
		if err != error(se) {
			out.Message = err.Error()
		} else if out.Message == "" {
			out.Message = se.Error()
		}
		if out.ErrorType == "" {
			out.ErrorType = ErrorTypePermanent
			if out.Retryable {
				out.ErrorType = ErrorTypeRetryable
			}
		}
		return &out
	}
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return &StepError{Message: nf.Error(), ErrorType: ErrorTypeHandlerNotFound, Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &StepError{Message: err.Error(), ErrorType: ErrorTypeTimeout, Retryable: true, Err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &StepError{Message: err.Error(), ErrorType: ErrorTypeTimeout, Retryable: true, Err: err}
	}
	if isNetworkError(err) {
		return &StepError{Message: err.Error(), ErrorType: ErrorTypeNetwork, Retryable: true, Err: err}
	}
	var rr RetryableReporter
	if errors.As(err, &rr) {
		return &StepError{Message: err.Error(), ErrorType: ErrorTypeHandler, Retryable: rr.Retryable(), Err: err}
	}
	return &StepError{Message: err.Error(), ErrorType: ErrorTypeHandler, Retryable: true, Err: err}
}

func isNetworkError(err error) bool {
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, io.ErrUnexpectedEOF,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) && (dns.IsTemporary || dns.IsTimeout)
}
