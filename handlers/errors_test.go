package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

type selfClassified struct{ retry bool }

func (e selfClassified) Error() string   { return "self classified" }
func (e selfClassified) Retryable() bool { return e.retry }

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		errorType string
		retryable bool
		message   string
		code      string
	}{
		{"permanent", PermanentError("bad data").WithCode("BAD"), ErrorTypePermanent, false, "bad data", "BAD"},
		{"retryable", RetryableError("try later"), ErrorTypeRetryable, true, "try later", ""},
		{"validation", ValidationError("amount missing").WithCode("MISSING_AMOUNT"), ErrorTypeValidation, false, "amount missing", "MISSING_AMOUNT"},
		{"timeout constructor", TimeoutError("slow upstream"), ErrorTypeTimeout, true, "slow upstream", ""},
		{"wrapped step error keeps fields, takes outer text", fmt.Errorf("charging card: %w", PermanentError("declined").WithCode("CARD_DECLINED")), ErrorTypePermanent, false, "charging card: declined", "CARD_DECLINED"},
		{"custom error type kept", &StepError{Message: "payment failed", ErrorType: "payment_error", Retryable: true}, "payment_error", true, "payment failed", ""},
		{"empty error type derived", &StepError{Message: "m", Retryable: true}, ErrorTypeRetryable, true, "m", ""},
		{"deadline exceeded", context.DeadlineExceeded, ErrorTypeTimeout, true, "context deadline exceeded", ""},
		{"wrapped deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), ErrorTypeTimeout, true, "query: context deadline exceeded", ""},
		{"net timeout", &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}, ErrorTypeTimeout, true, "read tcp: i/o timeout", ""},
		{"os deadline", os.ErrDeadlineExceeded, ErrorTypeTimeout, true, os.ErrDeadlineExceeded.Error(), ""},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ErrorTypeNetwork, true, "dial tcp: connect: connection refused", ""},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), ErrorTypeNetwork, true, "read: connection reset by peer", ""},
		{"unexpected eof", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), ErrorTypeNetwork, true, "body: unexpected EOF", ""},
		{"temporary dns", &net.DNSError{Err: "server misbehaving", Name: "api.example", IsTemporary: true}, ErrorTypeNetwork, true, "lookup api.example: server misbehaving", ""},
		{"self-classified permanent", selfClassified{retry: false}, ErrorTypeHandler, false, "self classified", ""},
		{"self-classified retryable", selfClassified{retry: true}, ErrorTypeHandler, true, "self classified", ""},
		{"not found", &NotFoundError{Callable: "x"}, ErrorTypeHandlerNotFound, false, "Handler not found: x", ""},
		{"canceled", context.Canceled, ErrorTypeHandler, true, "context canceled", ""},
		{"unknown", errors.New("something odd"), ErrorTypeHandler, true, "something odd", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			se := Classify(tc.err)
			if se.ErrorType != tc.errorType || se.Retryable != tc.retryable || se.Message != tc.message || se.Code != tc.code {
				t.Fatalf("got type=%q retryable=%v message=%q code=%q", se.ErrorType, se.Retryable, se.Message, se.Code)
			}
		})
	}
	if Classify(nil) != nil {
		t.Fatal("Classify(nil) must be nil")
	}
}

func TestClassifyDoesNotMutate(t *testing.T) {
	orig := &StepError{Message: "m", Context: map[string]any{"a": 1}}
	got := Classify(orig)
	got.Context["b"] = 2
	got.Message = "changed"
	if len(orig.Context) != 1 || orig.Message != "m" || orig.ErrorType != "" {
		t.Fatalf("original modified: %+v", orig)
	}
}

func TestStepErrorText(t *testing.T) {
	cause := errors.New("eof")
	tests := []struct {
		err  *StepError
		want string
	}{
		{PermanentError("bad"), "bad"},
		{PermanentError("bad").Wrap(cause), "bad: eof"},
		{&StepError{Err: cause}, "eof"},
		{&StepError{ErrorType: "x"}, "x"},
	}
	for _, tc := range tests {
		if tc.err.Error() != tc.want {
			t.Errorf("%+v: %q", tc.err, tc.err.Error())
		}
	}
	if !errors.Is(PermanentError("bad").Wrap(cause), cause) {
		t.Fatal("Unwrap must expose the cause")
	}
	e := TimeoutError("t").WithRetryAfter(3 * time.Second).WithStatusCode(504)
	if e.RetryAfter != 3*time.Second || e.StatusCode != 504 {
		t.Fatalf("%+v", e)
	}
}
