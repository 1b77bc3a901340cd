package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

func TestStepContextAccessors(t *testing.T) {
	parent := uuid.MustParse("0195b0c2-0000-7000-8000-0000000000ff")
	s := newStep(withDep("linear_step_1", `36`), withDep("other", `{"k":"v"}`), func(seq *protocol.TaskSequenceStep) {
		seq.Task.Task.ParentCorrelationID = &parent
		seq.WorkflowStep.Name = "process_batch_001"
		seq.WorkflowStep.TemplateStepName = "process_batch"
		seq.StepDefinition.Handler.Method = "validate"
		seq.StepDefinition.StepType = protocol.StepTypeBatchWorker
	})
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"TaskUUID", s.TaskUUID(), testTaskUUID},
		{"StepUUID", s.StepUUID(), testStepUUID},
		{"CorrelationID", s.CorrelationID(), testCorrID},
		{"Namespace", s.Namespace(), "rust_e2e_linear"},
		{"TaskName", s.TaskName(), "mathematical_sequence"},
		{"TaskVersion", s.TaskVersion(), "1.0.0"},
		{"StepName", s.StepName(), "process_batch_001"},
		{"TemplateStepName", s.TemplateStepName(), "process_batch"},
		{"Callable", s.Callable(), "linear_step_2"},
		{"Method", s.Method(), "validate"},
		{"Dependencies", s.Dependencies(), []string{"linear_step_1"}},
		{"Timeout", s.Timeout(), 30 * time.Second},
		{"StepType", s.StepType(), protocol.StepTypeBatchWorker},
		{"Retryable", s.Retryable(), true},
		{"DependencyNames", s.DependencyNames(), []string{"linear_step_1", "other"}},
		{"HasDependency", s.HasDependency("other"), true},
		{"HasDependency missing", s.HasDependency("nope"), false},
		{"InputKeys", s.InputKeys(), []string{"customer", "even_number"}},
		{"HasInput", s.HasInput("even_number"), true},
		{"Definition name", s.Definition().Name, "linear_step_2"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if p, ok := s.ParentCorrelationID(); !ok || p != parent {
		t.Errorf("ParentCorrelationID = %v %v", p, ok)
	}
	if _, ok := newStep().ParentCorrelationID(); ok {
		t.Error("no parent expected")
	}
	if v, ok := s.Input("even_number"); !ok || string(v) != "6" {
		t.Errorf("Input = %s %v", v, ok)
	}
	if v, ok := s.Config("factor"); !ok || string(v) != "3" {
		t.Errorf("Config = %s %v", v, ok)
	}
	if r, ok := s.DependencyResult("other"); !ok || !r.Success || r.Status != protocol.StatusCompleted {
		t.Errorf("DependencyResult = %+v %v", r, ok)
	}
	if v, ok := s.DependencyValue("linear_step_1"); !ok || string(v) != "36" {
		t.Errorf("DependencyValue = %s %v", v, ok)
	}
	if _, ok := s.DependencyValue("nope"); ok {
		t.Error("missing dependency reported present")
	}
	if s.Sequence().WorkflowStep.WorkflowStepUUID != testStepUUID || len(s.DependencyResults()) != 2 {
		t.Error("Sequence / DependencyResults")
	}
}

func TestRetrySemantics(t *testing.T) {
	// attempts is the pre-claim value; max_attempts counts executions (tasker-core types/base.rs).
	tests := []struct {
		attempts, max          *int32
		retryCount, maxRetries int
		isRetry, isLast        bool
	}{
		{nil, nil, 0, 3, false, false},
		{i32(0), i32(3), 0, 3, false, false},
		{i32(1), i32(3), 1, 3, true, false},
		{i32(2), i32(3), 2, 3, true, true},
		{i32(5), i32(3), 5, 3, true, true},
		{nil, i32(1), 0, 1, false, true},
		{nil, i32(0), 0, 0, false, true},
	}
	for _, tc := range tests {
		s := newStep(withAttempts(tc.attempts, tc.max))
		if s.RetryCount() != tc.retryCount || s.Attempts() != tc.retryCount || s.MaxRetries() != tc.maxRetries || s.MaxAttempts() != tc.maxRetries ||
			s.IsRetry() != tc.isRetry || s.IsLastRetry() != tc.isLast {
			t.Errorf("attempts=%v max=%v: retry_count=%d max=%d is_retry=%v is_last=%v", deref(tc.attempts), deref(tc.max),
				s.RetryCount(), s.MaxRetries(), s.IsRetry(), s.IsLastRetry())
		}
	}
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestDecodeHelpers(t *testing.T) {
	type customer struct {
		ID    int    `json:"id"`
		Email string `json:"email"`
	}
	s := newStep(withDep("validate_order", `{"order_total":209.97,"customer":{"id":7}}`), withDep("bare", `36`),
		withInputs(`{"operation":"sum","cursor":{"batch_id":"001"}}`))

	if n, err := DecodeContextField[int](s, "even_number"); err != nil || n != 6 {
		t.Fatalf("DecodeContextField = %v %v", n, err)
	}
	if c, err := DecodeContextField[customer](s, "customer"); err != nil || c.Email != "a@b.c" {
		t.Fatalf("DecodeContextField struct = %v %v", c, err)
	}
	if ContextFieldOr(s, "missing", 42) != 42 || ContextFieldOr(s, "even_number", 0) != 6 {
		t.Fatal("ContextFieldOr")
	}
	whole, err := DecodeContext[map[string]any](s)
	if err != nil || whole["even_number"] != float64(6) {
		t.Fatalf("DecodeContext = %v %v", whole, err)
	}
	inputs, err := DecodeStepInputs[struct{ Operation string }](s)
	if err != nil || inputs.Operation != "sum" {
		t.Fatalf("DecodeStepInputs = %v %v", inputs, err)
	}
	if f, err := DecodeConfig[float64](s, "factor"); err != nil || f != 3 {
		t.Fatalf("DecodeConfig = %v %v", f, err)
	}
	if ConfigOr(s, "nope", "d") != "d" {
		t.Fatal("ConfigOr")
	}
	if n, err := DecodeDependency[int64](s, "bare"); err != nil || n != 36 {
		t.Fatalf("DecodeDependency = %v %v", n, err)
	}
	if total, err := DecodeDependencyField[float64](s, "validate_order", "order_total"); err != nil || total != 209.97 {
		t.Fatalf("DecodeDependencyField = %v %v", total, err)
	}
	if id, err := DecodeDependencyField[int](s, "validate_order", "customer", "id"); err != nil || id != 7 {
		t.Fatalf("nested DecodeDependencyField = %v %v", id, err)
	}

	errCases := []struct {
		name      string
		err       error
		code      string
		retryable bool
		errorType string
	}{
		{"missing input", second(DecodeContextField[int](s, "nope")), "MISSING_CONTEXT_FIELD", false, ErrorTypeValidation},
		{"mistyped input", second(DecodeContextField[int](s, "customer")), "INVALID_CONTEXT_FIELD", false, ErrorTypeValidation},
		{"missing config", second(DecodeConfig[int](s, "nope")), "MISSING_CONFIG", false, ErrorTypePermanent},
		{"missing dependency", second(DecodeDependency[int](s, "nope")), "MISSING_DEPENDENCY", true, ErrorTypeRetryable},
		{"mistyped dependency", second(DecodeDependency[string](s, "bare")), "INVALID_DEPENDENCY_RESULT", false, ErrorTypePermanent},
		{"missing dependency field", second(DecodeDependencyField[int](s, "validate_order", "nope")), "MISSING_DEPENDENCY_FIELD", false, ErrorTypePermanent},
		{"path through a scalar", second(DecodeDependencyField[int](s, "bare", "x")), "MISSING_DEPENDENCY_FIELD", false, ErrorTypePermanent},
		{"mistyped inputs", second(DecodeStepInputs[[]int](s)), "INVALID_STEP_INPUTS", false, ErrorTypePermanent},
		{"mistyped inputs field", second(DecodeStepInputs[struct{ Operation int }](s)), "INVALID_STEP_INPUTS", false, ErrorTypePermanent},
		{"context not an object", second(DecodeContext[[]int](s)), "INVALID_CONTEXT", false, ErrorTypeValidation},
		{"mistyped context field", second(DecodeContext[struct {
			Customer struct{ ID string } `json:"customer"`
		}](s)), "INVALID_CONTEXT_FIELD", false, ErrorTypeValidation},
	}
	for _, tc := range errCases {
		var se *StepError
		if !errors.As(tc.err, &se) || se.Code != tc.code || se.Retryable != tc.retryable || se.ErrorType != tc.errorType {
			t.Errorf("%s: %#v", tc.name, tc.err)
		}
	}
	if se := Classify(errCases[len(errCases)-1].err); se.Context["field"] != "customer.ID" || !strings.Contains(se.Message, `"customer.ID"`) {
		t.Errorf("the mistyped context field must be named: %q %v", se.Message, se.Context)
	}
}

func second[T any](_ T, err error) error { return err }

func TestCheckpointAccessors(t *testing.T) {
	tests := []struct {
		name       string
		checkpoint string
		has        bool
		cursor     string
		items      uint64
		acc        string
	}{
		{"none", "", false, "", 0, ""},
		{"persisted record", `{"cursor":50,"items_processed":50,"timestamp":"2026-03-21T00:00:00Z","accumulated_results":{"running_total":1275},"history":[{"cursor":50,"timestamp":"2026-03-21T00:00:00+00:00"}]}`,
			true, "50", 50, `{"running_total":1275}`},
		{"in-process yield data", `{"step_uuid":"` + testStepUUID.String() + `","cursor":{"page":2},"items_processed":40,"accumulated_results":null}`,
			true, `{"page":2}`, 40, ""},
		{"null cursor", `{"cursor":null,"items_processed":0}`, false, "null", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s *StepContext
			if tc.checkpoint == "" {
				s = newStep()
			} else {
				s = newStep(withCheckpoint(tc.checkpoint))
			}
			if s.HasCheckpoint() != tc.has || s.CheckpointItemsProcessed() != tc.items {
				t.Fatalf("has=%v items=%d", s.HasCheckpoint(), s.CheckpointItemsProcessed())
			}
			c, _ := s.CheckpointCursor()
			if string(c) != tc.cursor {
				t.Fatalf("cursor %s", c)
			}
			acc, ok := s.AccumulatedResults()
			if string(acc) != tc.acc || ok != (tc.acc != "") {
				t.Fatalf("accumulated %s %v", acc, ok)
			}
		})
	}
	s := newStep(withCheckpoint(`{"cursor":75,"items_processed":75,"accumulated_results":{"sum":10}}`))
	if pos, ok, err := DecodeCheckpointCursor[int](s); !ok || err != nil || pos != 75 {
		t.Fatalf("DecodeCheckpointCursor = %v %v %v", pos, ok, err)
	}
	type acc struct{ Sum int }
	if a, ok, err := DecodeAccumulatedResults[acc](s); !ok || err != nil || a.Sum != 10 {
		t.Fatalf("DecodeAccumulatedResults = %v %v %v", a, ok, err)
	}
	if _, ok, err := DecodeCheckpointCursor[int](newStep()); ok || err != nil {
		t.Fatal("no checkpoint expected")
	}
	if _, ok, err := DecodeCheckpointCursor[string](s); !ok || err == nil {
		t.Fatal("mistyped cursor must fail")
	}
}

func TestPreviousResult(t *testing.T) {
	prev := ToExecutionResult(testStepUUID, Failure("x", "", true, WithContextValue("checkpoint_progress", 50)), 0)
	s := newStep(func(seq *protocol.TaskSequenceStep) { seq.WorkflowStep.Results = mustMarshal(t, prev) })
	r, ok := s.PreviousResult()
	if !ok || r.Success || string(r.Metadata.Context["checkpoint_progress"]) != "50" {
		t.Fatalf("PreviousResult = %+v %v", r, ok)
	}
	if _, ok := newStep().PreviousResult(); ok {
		t.Fatal("no previous result expected")
	}
}

func TestLoggerCarriesStepAttrs(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil))
	s := NewStepContext(newSeq(), WithLogger(base))
	s.Logger().Info("hello")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		LogKeyTaskUUID: testTaskUUID.String(), LogKeyStepUUID: testStepUUID.String(), LogKeyCorrelationID: testCorrID.String(),
		LogKeyStepName: "linear_step_2", LogKeyNamespace: "rust_e2e_linear", LogKeyHandler: "linear_step_2",
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
	buf.Reset()
	LoggerFor(base, newSeq()).Info("x")
	if !strings.Contains(buf.String(), `"step_uuid":"`+testStepUUID.String()) {
		t.Fatalf("LoggerFor: %s", buf.String())
	}
	attrs := MessageLogAttrs(protocol.StepMessage{TaskUUID: testTaskUUID, StepUUID: testStepUUID, CorrelationID: testCorrID})
	if len(attrs) != 3 || attrs[2].Key != LogKeyCorrelationID {
		t.Fatalf("MessageLogAttrs: %v", attrs)
	}
	if got := len(s.LogAttrs()); got != 6 {
		t.Fatalf("LogAttrs: %d", got)
	}
}

func TestStepContextConcurrentReads(t *testing.T) {
	s := newStep(withCheckpoint(`{"cursor":1}`))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if !s.HasCheckpoint() || !s.HasInput("even_number") {
				t.Error("concurrent read")
			}
		})
	}
	wg.Wait()
}
