package exhandlers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/handlers/handlertest"
	"github.com/tasker-go/tasker/protocol"
)

// fixedNow is the clock every test runs with (a Friday, so business-day arithmetic is visible).
var fixedNow = time.Date(2026, 3, 20, 15, 4, 5, 0, time.UTC)

func init() { now = func() time.Time { return fixedNow } }

// stepOpt configures a hand-built step.
type stepOpt func(*handlertest.Step)

// withContext sets the task context (JSON).
func withContext(js string) stepOpt {
	return func(s *handlertest.Step) { s.Context(json.RawMessage(js)) }
}

// withDep adds a completed ancestor with the given result JSON.
func withDep(name, resultJSON string) stepOpt {
	return func(s *handlertest.Step) { s.Dependency(name, json.RawMessage(resultJSON)) }
}

// withInit sets handler.initialization (a JSON object).
func withInit(js string) stepOpt {
	return func(s *handlertest.Step) { s.Initialization(json.RawMessage(js)) }
}

// withInputs sets workflow_steps.inputs (JSON).
func withInputs(js string) stepOpt {
	return func(s *handlertest.Step) { s.Inputs(json.RawMessage(js)) }
}

// withAttempts sets workflow_steps.attempts as hydrated (nil = never claimed).
func withAttempts(a *int32) stepOpt {
	return func(s *handlertest.Step) {
		if a != nil {
			s.Attempts(*a)
		}
	}
}

// withName sets the step name.
func withName(name string) stepOpt {
	return func(s *handlertest.Step) { s.Name(name) }
}

var stepUUIDSeed = uuid.MustParse("0195b6a0-0000-7000-8000-000000000001")

// testRegistry is a registry with every example handler.
func testRegistry(t *testing.T) *handlers.Registry {
	t.Helper()
	r := handlers.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// call runs the handler Register maps callable to on a hand-built step named callable.
func call(t *testing.T, callable string, opts ...stepOpt) handlers.Result {
	t.Helper()
	step := handlertest.NewStep(callable).StepUUID(stepUUIDSeed)
	for _, o := range opts {
		o(step)
	}
	return step.RunRegistered(t, testRegistry(t)).Result
}

// output is a successful result's output as JSON; it fails the test for any other result.
func output(t *testing.T, r handlers.Result) json.RawMessage {
	t.Helper()
	if !r.IsSuccess() {
		msg := ""
		if r.Error != nil {
			msg = r.Error.Message + " (" + r.Error.Code + ")"
		}
		t.Fatalf("want success, got %s: %s", r.Kind, msg)
	}
	data, err := json.Marshal(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decoded decodes JSON with json.Number, so numbers compare by their exact text.
func decoded(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// assertJSON compares JSON documents structurally, numbers by exact text.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	if !reflect.DeepEqual(decoded(t, got), decoded(t, []byte(want))) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

// path returns the value at a key path inside JSON (numbers as json.Number).
func path(t *testing.T, data []byte, keys ...string) any {
	t.Helper()
	v := decoded(t, data)
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q in %s", keys, k, data)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("%v: no key %q in %s", keys, k, data)
		}
	}
	return v
}

// num is the exact JSON text of a number at a key path.
func num(t *testing.T, data []byte, keys ...string) string {
	t.Helper()
	n, ok := path(t, data, keys...).(json.Number)
	if !ok {
		t.Fatalf("%v is not a number in %s", keys, data)
	}
	return string(n)
}

// assertFailure checks a failure's error_code, error_type and retryability, as the
// StepExecutionResult the worker would persist reports them.
func assertFailure(t *testing.T, r handlers.Result, code, errorType string, retryable bool) protocol.StepExecutionResult {
	t.Helper()
	if !r.IsFailure() {
		t.Fatalf("want failure %s, got %s (%v)", code, r.Kind, r.Value)
	}
	ser := handlers.ToExecutionResult(stepUUIDSeed, r, 0)
	if ser.Success || ser.Status != protocol.StatusFailed {
		t.Fatalf("execution result: success=%v status=%q", ser.Success, ser.Status)
	}
	if ser.Metadata.ErrorCode == nil || *ser.Metadata.ErrorCode != code {
		t.Errorf("error_code = %v, want %s", ptrString(ser.Metadata.ErrorCode), code)
	}
	if ser.Error == nil || ser.Error.ErrorType == nil || *ser.Error.ErrorType != errorType {
		t.Errorf("error_type = %v, want %s", ser.Error, errorType)
	}
	if ser.Metadata.Retryable != retryable || ser.Error.Retryable != retryable {
		t.Errorf("retryable = %v/%v, want %v", ser.Metadata.Retryable, ser.Error.Retryable, retryable)
	}
	return ser
}

// mustMarshal encodes v as JSON.
func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func ptrString(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func int32p(v int32) *int32 { return &v }
