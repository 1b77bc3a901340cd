package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var goldenStep = uuid.MustParse("0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a11")

// fixClock pins the constructors' clock for one test.
func fixClock(t *testing.T, at time.Time) {
	t.Helper()
	prev := now
	now = func() time.Time { return at }
	t.Cleanup(func() { now = prev })
}

func TestSuccessMatchesGolden(t *testing.T) {
	fixClock(t, time.Date(2026, 3, 21, 21, 16, 8, 123456789, time.UTC))
	r := Success(goldenStep, json.RawMessage(`{"order_id": 12345, "validated": true}`), 42, nil)
	assertJSONEqual(t, mustMarshal(t, r), golden(t, "result_success.json"))
}

func TestFailureMatchesGolden(t *testing.T) {
	fixClock(t, time.Date(2026, 3, 21, 22, 16, 9, 623456789, time.FixedZone("X", 3600)))
	ctx := map[string]json.RawMessage{
		"handler_name": json.RawMessage(`"charge_card"`),
		"task_uuid":    json.RawMessage(`"0195…"`),
	}
	r := Failure(goldenStep, "Payment gateway returned 503", "handler_error", "HTTP_503", true, 1500, ctx)
	r.EnsureOrchestrationMetadata().Headers[RetryAfterHeader] = "30"
	assertJSONEqual(t, mustMarshal(t, r), golden(t, "result_failure_retry_after.json"))
	if !r.IsRetryable() || !r.Error.Retryable {
		t.Fatal("retryable must be mirrored in metadata and error")
	}
}

func TestSystemErrorShape(t *testing.T) {
	fixClock(t, time.Date(2026, 3, 21, 0, 0, 1, 0, time.UTC))
	r := SystemError(goldenStep, "boom", "FFI_SERIALIZATION_ERROR", []string{"a.go:1", "b.go:2"}, 1000, nil)
	want := `{"step_uuid":"` + goldenStep.String() + `","success":false,"result":{},
	 "metadata":{"execution_time_ms":1000,"handler_version":null,"retryable":false,
	   "completed_at":"2026-03-21T00:00:01Z","worker_id":null,"worker_hostname":null,
	   "started_at":"2026-03-21T00:00:00Z","custom":{},"error_code":null,
	   "error_type":"FFI_SERIALIZATION_ERROR","context":{}},
	 "status":"error",
	 "error":{"message":"boom","error_type":"FFI_SERIALIZATION_ERROR","backtrace":["a.go:1","b.go:2"],"retryable":false},
	 "orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`
	assertJSONEqual(t, mustMarshal(t, r), []byte(want))
}

func TestNullVersusOmitted(t *testing.T) {
	code := uint16(503)
	tests := []struct {
		name   string
		err    StepExecutionError
		want   string
		absent []string
	}{
		{
			name:   "status_code and context omitted",
			err:    StepExecutionError{Message: "m", Retryable: true},
			want:   `{"message":"m","error_type":null,"backtrace":null,"retryable":true}`,
			absent: []string{"status_code", "context"},
		},
		{
			name:   "empty context omitted",
			err:    StepExecutionError{Message: "m", Context: map[string]json.RawMessage{}},
			want:   `{"message":"m","error_type":null,"backtrace":null,"retryable":false}`,
			absent: []string{"context"},
		},
		{
			name: "status_code and context present",
			err:  StepExecutionError{Message: "m", StatusCode: &code, Context: map[string]json.RawMessage{"k": json.RawMessage(`1`)}},
			want: `{"message":"m","error_type":null,"backtrace":null,"retryable":false,"status_code":503,"context":{"k":1}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := mustMarshal(t, tc.err)
			assertJSONEqual(t, data, []byte(tc.want))
			keys := objectKeys(t, data)
			for _, k := range tc.absent {
				if _, ok := keys[k]; ok {
					t.Fatalf("%s must be omitted: %s", k, data)
				}
			}
		})
	}

	// Zero-value structs still write the objects serde requires.
	md := mustMarshal(t, StepExecutionMetadata{})
	if keys := objectKeys(t, md); string(keys["custom"]) != "{}" || string(keys["context"]) != "{}" || string(keys["started_at"]) != "null" {
		t.Fatalf("metadata zero value: %s", md)
	}
	om := mustMarshal(t, OrchestrationMetadata{})
	assertJSONEqual(t, om, []byte(`{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}`))
	res := mustMarshal(t, StepExecutionResult{})
	if keys := objectKeys(t, res); string(keys["result"]) != "null" || string(keys["error"]) != "null" || string(keys["orchestration_metadata"]) != "null" {
		t.Fatalf("result zero value: %s", res)
	}
}

func TestBackoffHintJSON(t *testing.T) {
	ctx := "rate limited"
	om := NewOrchestrationMetadata()
	om.BackoffHint = &BackoffHint{BackoffType: BackoffRateLimit, DelaySeconds: 12, Context: &ctx}
	assertJSONEqual(t, mustMarshal(t, om), []byte(`{"headers":{},"error_context":null,
		"backoff_hint":{"backoff_type":"RateLimit","delay_seconds":12,"context":"rate limited"},"custom":{}}`))
}

func TestTimestampsAreUTC(t *testing.T) {
	fixClock(t, time.Date(2026, 3, 21, 23, 0, 0, 500_000_000, time.FixedZone("CET", 3600)))
	r := Success(goldenStep, nil, 250, map[string]json.RawMessage{"k": json.RawMessage(`"v"`)})
	keys := objectKeys(t, mustMarshal(t, r))
	md := objectKeys(t, keys["metadata"])
	if string(md["completed_at"]) != `"2026-03-21T22:00:00.500Z"` || string(md["started_at"]) != `"2026-03-21T22:00:00.250Z"` {
		t.Fatalf("timestamps: completed_at=%s started_at=%s", md["completed_at"], md["started_at"])
	}
	if string(keys["result"]) != "null" || string(md["custom"]) != `{"k":"v"}` {
		t.Fatalf("result/custom: %s %s", keys["result"], md["custom"])
	}
}

func TestGoldenRoundTrip(t *testing.T) {
	for _, name := range []string{"result_success.json", "result_failure_retry_after.json"} {
		t.Run(name, func(t *testing.T) {
			data := golden(t, name)
			r, err := DecodeStepExecutionResultStrict(data)
			if err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			assertJSONEqual(t, mustMarshal(t, r), data)
		})
	}
	r, err := DecodeStepExecutionResultStrict(golden(t, "result_failure_retry_after.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Success || !r.IsRetryable() || *r.Metadata.ErrorCode != "HTTP_503" || r.OrchestrationMetadata.Headers["Retry-After"] != "30" ||
		r.Metadata.ExecutionTimeMs != 1500 || r.NormalizedStatus() != StatusFailed {
		t.Fatalf("decoded fields: %+v", r)
	}
}

func TestNormalizedStatus(t *testing.T) {
	tests := []struct {
		r    StepExecutionResult
		want string
	}{
		{StepExecutionResult{Success: true}, StatusCompleted},
		{StepExecutionResult{Success: false}, StatusFailed},
		{StepExecutionResult{Success: false, Status: "retryable_error"}, "retryable_error"},
		{StepExecutionResult{Success: true, Status: StatusError}, StatusError},
	}
	for _, tc := range tests {
		if got := tc.r.NormalizedStatus(); got != tc.want {
			t.Errorf("%+v: got %q want %q", tc.r, got, tc.want)
		}
	}
}

func TestSetRetryableMirrors(t *testing.T) {
	r := Failure(goldenStep, "m", "", "", false, 0, nil)
	r.SetRetryable(true)
	if !r.Metadata.Retryable || !r.Error.Retryable {
		t.Fatal("SetRetryable must set both flags")
	}
	if r.Metadata.ErrorType != nil || r.Error.ErrorType != nil || r.Metadata.ErrorCode != nil {
		t.Fatal("empty errorType/errorCode must be null")
	}
}

func TestStrictDecodeRejects(t *testing.T) {
	base := string(golden(t, "result_success.json"))
	replace := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("golden lacks %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	tests := []struct {
		name string
		in   string
		path string
	}{
		{"error without retryable", replace(`"error": null`, `"error": {"message": "x"}`), "error"},
		{"error without message", replace(`"error": null`, `"error": {"retryable": true}`), "error"},
		{"error null context", replace(`"error": null`, `"error": {"message": "x", "retryable": true, "context": null}`), "error.context"},
		{"error status_code too big", replace(`"error": null`, `"error": {"message": "x", "retryable": true, "status_code": 70000}`), "error.status_code"},
		{"error backtrace not strings", replace(`"error": null`, `"error": {"message": "x", "retryable": true, "backtrace": [1]}`), "error.backtrace[0]"},
		{"orchestration metadata without headers", replace(`{"headers": {}, "error_context"`, `{"error_context"`), "orchestration_metadata"},
		{"orchestration metadata without custom", replace(`"backoff_hint": null, "custom": {}}`, `"backoff_hint": null}`), "orchestration_metadata"},
		{"header not a string", replace(`{"headers": {}`, `{"headers": {"Retry-After": 30}`), "orchestration_metadata.headers.Retry-After"},
		{"bad backoff type", replace(`"backoff_hint": null`, `"backoff_hint": {"backoff_type": "server_requested", "delay_seconds": 1}`), "orchestration_metadata.backoff_hint.backoff_type"},
		{"backoff without delay", replace(`"backoff_hint": null`, `"backoff_hint": {"backoff_type": "Custom"}`), "orchestration_metadata.backoff_hint"},
		{"success as string", replace(`"success": true`, `"success": "true"`), "success"},
		{"float execution time", replace(`"execution_time_ms": 42`, `"execution_time_ms": 42.5`), "metadata.execution_time_ms"},
		{"null custom", replace(`"custom": {}, "error_code"`, `"custom": null, "error_code"`), "metadata.custom"},
		{"bad completed_at", replace(`"2026-03-21T21:16:08.123456789Z"`, `"yesterday"`), "metadata.completed_at"},
		{"null metadata", replace(`"metadata": {`, `"metadata": null, "x": {`), "metadata"},
		{"null status", replace(`"status": "completed"`, `"status": null`), "status"},
		{"bad step uuid", replace(`"0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a11"`, `"nope"`), "step_uuid"},
		{"not an object", `[]`, "$"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeStepExecutionResultStrict([]byte(tc.in))
			var fe *ResultFormatError
			if !errors.As(err, &fe) {
				t.Fatalf("want *ResultFormatError, got %v", err)
			}
			if fe.Path != tc.path {
				t.Fatalf("path = %q, want %q (%v)", fe.Path, tc.path, err)
			}
		})
	}
}

func TestStrictDecodeAcceptsOtherWorkersShapes(t *testing.T) {
	// What the Python worker stores: non-standard status, null orchestration_metadata, a worker id,
	// and a minimal object relying on serde defaults.
	for _, in := range []string{
		`{"step_uuid":"` + goldenStep.String() + `","success":false,"status":"retryable_error","result":{},
		  "metadata":{"execution_time_ms":0,"retryable":true,"completed_at":"2026-03-21T21:16:08+00:00","worker_id":"python-worker-001","custom":{},"context":{}},
		  "error":{"message":"x","retryable":true,"error_type":"temporary_error"},"orchestration_metadata":null}`,
		`{"success":true}`,
	} {
		r, err := DecodeStepExecutionResultStrict([]byte(in))
		if err != nil {
			t.Fatalf("strict decode rejected %s: %v", in, err)
		}
		if r.OrchestrationMetadata != nil {
			t.Fatal("null orchestration_metadata must stay nil")
		}
	}
}
