package handlers

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

const stepID = `"step_uuid":"0195b0c2-0000-7000-8000-000000000010"`

func TestToExecutionResult(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		want string
	}{
		{
			name: "success with custom metadata",
			r:    Success(map[string]any{"order_id": 12345, "validated": true}, map[string]any{"operation": "square"}),
			want: `{` + stepID + `,"success":true,"result":{"order_id":12345,"validated":true},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{"operation":"square"},"error_code":null,"error_type":null,"context":{}},
				"status":"completed","error":null,
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "success with nil value stores {}",
			r:    Success(nil, nil),
			want: `{` + stepID + `,"success":true,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":null,"context":{}},
				"status":"completed","error":null,
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "bare integer output",
			r:    Success(int64(1296), nil),
			want: `{` + stepID + `,"success":true,"result":1296,
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":null,"context":{}},
				"status":"completed","error":null,
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "retryable failure with code, context, status and Retry-After",
			r: Failure("Payment gateway returned 503", ErrorTypeHandler, true,
				WithCode("HTTP_503"), WithContextValue("handler_name", "charge_card"), WithStatusCode(503),
				WithRetryAfter(29500*time.Millisecond)),
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":true,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":"HTTP_503","error_type":"handler_error","context":{"handler_name":"charge_card"}},
				"status":"failed",
				"error":{"message":"Payment gateway returned 503","error_type":"handler_error","backtrace":null,"retryable":true,"status_code":503},
				"orchestration_metadata":{"headers":{"Retry-After":"30"},"error_context":null,
				  "backoff_hint":{"backoff_type":"ServerRequested","delay_seconds":30,"context":null},"custom":{}}}`,
		},
		{
			name: "permanent failure defaults its error type",
			r:    Failure("Invalid payment method", "", false),
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":"permanent_error","context":{}},
				"status":"failed",
				"error":{"message":"Invalid payment method","error_type":"permanent_error","backtrace":null,"retryable":false},
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "system error",
			r:    Failure("corrupt state", "internal", true, AsSystemError(), WithBacktrace([]string{"x"}), WithErrorContext("db")),
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":"internal","context":{}},
				"status":"error",
				"error":{"message":"corrupt state","error_type":"internal","backtrace":["x"],"retryable":false},
				"orchestration_metadata":{"headers":{},"error_context":"db","backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "unencodable output becomes a serialization system error",
			r:    Success(map[string]any{"ch": make(chan int)}, nil),
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":"serialization_error","context":{}},
				"status":"error",
				"error":{"message":"Handler result is not JSON-encodable: json: unsupported type: chan int","error_type":"serialization_error","backtrace":null,"retryable":false},
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "zero result",
			r:    Result{},
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":false,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":"handler_error","context":{}},
				"status":"failed",
				"error":{"message":"Handler returned an empty result","error_type":"handler_error","backtrace":null,"retryable":false},
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
		{
			name: "unpersisted checkpoint yield",
			r:    Yield(100, 100, nil),
			want: `{` + stepID + `,"success":false,"result":{},
				"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":true,"worker_id":null,"worker_hostname":null,
				  "custom":{},"error_code":null,"error_type":"checkpoint_error","context":{}},
				"status":"failed",
				"error":{"message":"Checkpoint yield failed: the worker did not persist the checkpoint","error_type":"checkpoint_error","backtrace":null,"retryable":true},
				"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertJSONEqual(t, resultJSON(t, tc.r), []byte(tc.want))
		})
	}
}

func TestToExecutionResultTimestamps(t *testing.T) {
	before := time.Now().UTC()
	ser := ToExecutionResult(testStepUUID, Success("ok", nil), 250*time.Millisecond)
	if ser.Metadata.CompletedAt.Before(before) || ser.Metadata.CompletedAt.Location() != time.UTC {
		t.Fatalf("completed_at %v", ser.Metadata.CompletedAt)
	}
	if got := ser.Metadata.CompletedAt.Sub(*ser.Metadata.StartedAt); got != 250*time.Millisecond {
		t.Fatalf("started_at is %v before completed_at", got)
	}
	data := mustMarshal(t, ser)
	if !strings.Contains(string(data), `Z","worker_id"`) {
		t.Fatalf("completed_at must be RFC 3339 UTC: %s", data)
	}
}

func TestFailureContextUnencodableValue(t *testing.T) {
	r := Failure("x", "", true, WithContextValue("fn", func() {}), WithContextValue("n", 1))
	ser := ToExecutionResult(testStepUUID, r, 0)
	if string(ser.Metadata.Context["n"]) != "1" || !strings.HasPrefix(string(ser.Metadata.Context["fn"]), `"0x`) {
		t.Fatalf("context: %v", ser.Metadata.Context)
	}
}

func TestWithCopiesMaps(t *testing.T) {
	base := Failure("x", "", true, WithContextValue("a", 1), WithHeader("X", "1"))
	derived := base.With(WithContextValue("b", 2), WithHeader("Y", "2"), WithMetadata(map[string]any{"m": 1}))
	if len(base.Error.Context) != 1 || len(base.Headers) != 1 || base.Metadata != nil {
		t.Fatalf("With modified the original: %+v %+v", base.Error, base.Headers)
	}
	if len(derived.Error.Context) != 2 || len(derived.Headers) != 2 || derived.Metadata["m"] != 1 {
		t.Fatalf("derived: %+v %+v %+v", derived.Error, derived.Headers, derived.Metadata)
	}
	md := map[string]any{"k": 1}
	s := Success(nil, md)
	md["k"] = 2
	if s.Metadata["k"] != 1 {
		t.Fatal("Success must copy metadata")
	}
}

func TestRetryAfterRounding(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Millisecond, "1"}, {2 * time.Minute, "120"},
	}
	for _, tc := range tests {
		r := Failure("x", "", true, WithRetryAfter(tc.d))
		if r.Headers[protocol.RetryAfterHeader] != tc.want {
			t.Errorf("%v: header %q want %q", tc.d, r.Headers[protocol.RetryAfterHeader], tc.want)
		}
	}
	if r := Failure("x", "", true, WithRetryAfter(0)); r.Headers != nil || r.BackoffHint != nil {
		t.Fatal("zero Retry-After must do nothing")
	}
	if got := retryAfterSeconds(time.Duration(math.MaxInt64)); got != math.MaxUint32 {
		t.Fatalf("huge delay: %d", got)
	}
}

func TestErrorResult(t *testing.T) {
	r := ErrorResult(RetryableError("gateway timeout").WithCode("GW").WithContext("attempt", 2).WithRetryAfter(5 * time.Second).WithStatusCode(504))
	assertJSONEqual(t, resultJSON(t, r), []byte(`{`+stepID+`,"success":false,"result":{},
		"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":true,"worker_id":null,"worker_hostname":null,
		  "custom":{},"error_code":"GW","error_type":"retryable_error","context":{"attempt":2}},
		"status":"failed",
		"error":{"message":"gateway timeout","error_type":"retryable_error","backtrace":null,"retryable":true,"status_code":504},
		"orchestration_metadata":{"headers":{"Retry-After":"5"},"error_context":null,
		  "backoff_hint":{"backoff_type":"ServerRequested","delay_seconds":5,"context":null},"custom":{}}}`))
	if nr := ErrorResult(nil); nr.Kind != KindFailure || nr.Retryable() {
		t.Fatalf("ErrorResult(nil) = %+v", nr)
	}
}

func TestYieldData(t *testing.T) {
	r := Yield(map[string]any{"page": 3}, 75, map[string]any{"running_total": 2850})
	if !r.IsCheckpointYield() || r.IsSuccess() || r.IsFailure() || r.Retryable() {
		t.Fatalf("kind predicates: %+v", r)
	}
	d, err := r.Checkpoint.YieldData(testStepUUID)
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, mustMarshal(t, d), []byte(`{`+stepID+`,"cursor":{"page":3},"items_processed":75,"accumulated_results":{"running_total":2850}}`))
	if d2, _ := Yield(10, 10, nil).Checkpoint.YieldData(testStepUUID); string(d2.AccumulatedResults) != "null" {
		t.Fatalf("nil accumulated: %s", d2.AccumulatedResults)
	}
	if _, err := Yield(make(chan int), 1, nil).Checkpoint.YieldData(testStepUUID); err == nil {
		t.Fatal("unencodable cursor must fail")
	}
}

func TestWorkerFailureHelpers(t *testing.T) {
	step := newStep()
	assertJSONEqual(t, resultJSON(t, HandlerTimeoutResult(step, 30*time.Second)), []byte(`{`+stepID+`,"success":false,"result":{},
		"metadata":{"execution_time_ms":1500,"handler_version":null,"retryable":true,"worker_id":null,"worker_hostname":null,
		  "custom":{},"error_code":null,"error_type":"handler_timeout",
		  "context":{"handler_name":"linear_step_2","task_uuid":"`+testTaskUUID.String()+`","timeout_ms":30000}},
		"status":"failed",
		"error":{"message":"Handler timed out after 30000ms","error_type":"handler_timeout","backtrace":null,"retryable":true},
		"orchestration_metadata":{"headers":{},"error_context":null,"backoff_hint":null,"custom":{}}}`))
	cr := CheckpointErrorResult(errors.New("connection lost"))
	if cr.Error.Message != "Checkpoint yield failed: connection lost" || cr.Error.ErrorType != ErrorTypeCheckpoint || !cr.Retryable() {
		t.Fatalf("checkpoint error: %+v", cr.Error)
	}
	nf := ErrorResult(&NotFoundError{Callable: "missing_handler"})
	if nf.Error.Message != "Handler not found: missing_handler" || nf.Error.ErrorType != ErrorTypeHandlerNotFound || nf.Retryable() {
		t.Fatalf("not found: %+v", nf.Error)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindInvalid: "invalid", KindSuccess: "success", KindFailure: "failure", KindCheckpointYield: "checkpoint_yield"} {
		if k.String() != want {
			t.Errorf("%d: %s", k, k.String())
		}
	}
	var v json.RawMessage = []byte(`{"a":1}`)
	if got := string(outputJSON(t, Success(v, nil))); got != `{"a":1}` {
		t.Fatalf("raw output: %s", got)
	}
}
