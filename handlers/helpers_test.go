package handlers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

var (
	testTaskUUID = uuid.MustParse("0195b0c2-0000-7000-8000-000000000001")
	testStepUUID = uuid.MustParse("0195b0c2-0000-7000-8000-000000000010")
	testCorrID   = uuid.MustParse("0195b0c2-0000-7000-8000-000000000003")
)

// seqOpt adjusts a test TaskSequenceStep.
type seqOpt func(*protocol.TaskSequenceStep)

func withTaskContext(js string) seqOpt {
	return func(s *protocol.TaskSequenceStep) { s.Task.Task.Context = json.RawMessage(js) }
}

func withInputs(js string) seqOpt {
	return func(s *protocol.TaskSequenceStep) { s.WorkflowStep.Inputs = json.RawMessage(js) }
}

func withCheckpoint(js string) seqOpt {
	return func(s *protocol.TaskSequenceStep) { s.WorkflowStep.Checkpoint = json.RawMessage(js) }
}

func withAttempts(attempts, max *int32) seqOpt {
	return func(s *protocol.TaskSequenceStep) {
		s.WorkflowStep.Attempts = attempts
		s.WorkflowStep.MaxAttempts = max
	}
}

func withDep(name, result string) seqOpt {
	return func(s *protocol.TaskSequenceStep) {
		if s.DependencyResults == nil {
			s.DependencyResults = map[string]protocol.StepExecutionResult{}
		}
		s.DependencyResults[name] = protocol.Success(uuid.New(), json.RawMessage(result), 1, nil)
	}
}

func withHandler(def protocol.HandlerDefinition) seqOpt {
	return func(s *protocol.TaskSequenceStep) { s.StepDefinition.Handler = def }
}

func i32(v int32) *int32 { return &v }

func newSeq(opts ...seqOpt) protocol.TaskSequenceStep {
	timeout := uint32(30)
	seq := protocol.TaskSequenceStep{
		Task: protocol.TaskForOrchestration{
			Task: protocol.Task{
				TaskUUID:      testTaskUUID,
				CorrelationID: testCorrID,
				Context:       json.RawMessage(`{"even_number":6,"customer":{"id":7,"email":"a@b.c"}}`),
				CreatedAt:     protocol.NewNaiveTime(time.Date(2026, 3, 21, 0, 0, 0, 0, time.UTC)),
			},
			TaskName:      "mathematical_sequence",
			TaskVersion:   "1.0.0",
			NamespaceName: "rust_e2e_linear",
		},
		WorkflowStep: protocol.WorkflowStepWithName{
			WorkflowStepUUID: testStepUUID,
			TaskUUID:         testTaskUUID,
			Name:             "linear_step_2",
			TemplateStepName: "linear_step_2",
			Retryable:        true,
		},
		StepDefinition: protocol.StepDefinition{
			Name:           "linear_step_2",
			Handler:        protocol.HandlerDefinition{Callable: "linear_step_2", Initialization: map[string]json.RawMessage{"factor": json.RawMessage(`3`)}},
			Dependencies:   []string{"linear_step_1"},
			TimeoutSeconds: &timeout,
		},
	}
	for _, opt := range opts {
		opt(&seq)
	}
	return seq
}

func newStep(opts ...seqOpt) *StepContext { return NewStepContext(newSeq(opts...)) }

func decodeAny(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

func assertJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	if !reflect.DeepEqual(decodeAny(t, got), decodeAny(t, want)) {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return data
}

// resultJSON converts r and returns the parts of the StepExecutionResult that do not depend on
// the clock, as JSON: everything but metadata.completed_at / started_at.
func resultJSON(t *testing.T, r Result) []byte {
	t.Helper()
	ser := ToExecutionResult(testStepUUID, r, 1500*time.Millisecond)
	data := mustMarshal(t, ser)
	if _, err := protocol.DecodeStepExecutionResultStrict(data); err != nil {
		t.Fatalf("result is not acceptable to tasker-core: %v\n%s", err, data)
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	md := m["metadata"].(map[string]any)
	delete(md, "completed_at")
	delete(md, "started_at")
	return mustMarshal(t, m)
}

// outputJSON is the "result" member of the converted result.
func outputJSON(t *testing.T, r Result) []byte {
	t.Helper()
	ser := ToExecutionResult(testStepUUID, r, time.Millisecond)
	if !ser.Success {
		t.Fatalf("not a success: %+v", ser.Error)
	}
	return ser.Result
}
