package protocol

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// countingReader yields 'x' for ever and counts what was read from it.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestSizeError(t *testing.T) {
	err := CheckSize("task request", 52428800, 10485760)
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckSize over the limit = %T %v, want a *SizeError matching ErrTooLarge", err, err)
	}
	if got, want := err.Error(), "task request is 52428800 bytes; the limit is 10485760"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if err := CheckSize("task request", 10485760, 10485760); err != nil {
		t.Errorf("CheckSize at the limit = %v, want nil", err)
	}
	partial := &SizeError{What: "request body", Size: 11, Limit: 10, Partial: true}
	if got, want := partial.Error(), "request body is more than 10 bytes; the limit is 10"; got != want {
		t.Errorf("partial Error() = %q, want %q", got, want)
	}
}

func TestReadLimitedStopsAtLimit(t *testing.T) {
	r := &countingReader{}
	_, err := ReadLimited(r, "stream", 1000)
	var se *SizeError
	if !errors.As(err, &se) || !se.Partial || se.Limit != 1000 {
		t.Fatalf("ReadLimited of an endless stream = %v, want a partial *SizeError", err)
	}
	if r.n > 1001 {
		t.Errorf("read %d bytes of the stream, want at most the limit + 1", r.n)
	}
	if !strings.Contains(err.Error(), "stream is more than 1000 bytes; the limit is 1000") {
		t.Errorf("error %q does not name the limit", err)
	}
	data, err := ReadLimited(io.LimitReader(&countingReader{}, 1000), "stream", 1000)
	if err != nil || len(data) != 1000 {
		t.Errorf("ReadLimited at the limit = %d bytes, %v", len(data), err)
	}
	wantErr := errors.New("boom")
	if _, err := ReadLimited(errReader{wantErr}, "stream", 10); !errors.Is(err, wantErr) || errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadLimited with a failing reader = %v, want the read error", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestDecodeStepMessageRefusesOversized(t *testing.T) {
	msg := map[string]any{"task_uuid": uuid.New(), "step_uuid": uuid.New(), "correlation_id": uuid.New()}
	msg["pad"] = strings.Repeat("p", MaxStepMessageBytes)
	data, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeStepMessage(data)
	var me *MessageError
	var se *SizeError
	if !errors.As(err, &me) || !errors.Is(err, ErrMalformedMessage) || !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("DecodeStepMessage of %d bytes = %T %v, want a malformed *MessageError caused by a *SizeError", len(data), err, err)
	}
	if se.Size != int64(len(data)) || se.Limit != MaxStepMessageBytes {
		t.Errorf("size error %+v, want size %d limit %d", se, len(data), MaxStepMessageBytes)
	}
	// The same message under the limit is valid: only its size was wrong.
	msg["pad"] = "p"
	data, _ = json.Marshal(msg)
	if _, err := DecodeStepMessage(data); err != nil {
		t.Fatalf("a small message with an unknown field: %v", err)
	}
}

func TestPayloadSize(t *testing.T) {
	id := uuid.New()
	ok := Success(id, json.RawMessage(`"abc"`), 1, map[string]json.RawMessage{"k": json.RawMessage(`12`)})
	if got := ok.PayloadSize(); got != 5+1+2 {
		t.Errorf("success payload = %d, want 8 (result, custom key and value)", got)
	}
	fail := Failure(id, "boom", "t", "C", true, 1, map[string]json.RawMessage{"c": json.RawMessage(`"v"`)})
	fail.Error.Backtrace = []string{"line"}
	fail.OrchestrationMetadata.Headers["Retry-After"] = "5"
	// result {} 2, metadata context 1+3, error_code 1, metadata error_type 1, message 4,
	// error.error_type 1, backtrace 4, header 11+1.
	if got := fail.PayloadSize(); got != 2+4+1+1+4+1+4+12 {
		t.Errorf("failure payload = %d, want 29", got)
	}
}
