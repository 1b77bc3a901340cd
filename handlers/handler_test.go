package handlers

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestFuncAdapter(t *testing.T) {
	tests := []struct {
		name      string
		f         func(context.Context, *StepContext) (any, error)
		kind      Kind
		output    string
		errorType string
		retryable bool
	}{
		{"value", func(context.Context, *StepContext) (any, error) { return map[string]int{"n": 36}, nil }, KindSuccess, `{"n":36}`, "", false},
		{"nil value", func(context.Context, *StepContext) (any, error) { return nil, nil }, KindSuccess, `{}`, "", false},
		{"result passthrough", func(context.Context, *StepContext) (any, error) { return SkipBranches("nothing"), nil }, KindSuccess,
			`{"decision_point_outcome":{"type":"no_branches"},"reason":"nothing"}`, "", false},
		{"result pointer passthrough", func(context.Context, *StepContext) (any, error) { r := Success(1, nil); return &r, nil }, KindSuccess, `1`, "", false},
		{"yield passthrough", func(context.Context, *StepContext) (any, error) { return Yield(5, 5, nil), nil }, KindCheckpointYield, "", "", false},
		{"classified error", func(context.Context, *StepContext) (any, error) { return nil, ValidationError("odd number") }, KindFailure, "", ErrorTypeValidation, false},
		{"error wins over value", func(context.Context, *StepContext) (any, error) { return 1, errors.New("boom") }, KindFailure, "", ErrorTypeHandler, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Func(tc.f).Call(context.Background(), newStep())
			if r.Kind != tc.kind {
				t.Fatalf("kind %v want %v", r.Kind, tc.kind)
			}
			switch tc.kind {
			case KindSuccess:
				assertJSONEqual(t, outputJSON(t, r), []byte(tc.output))
			case KindFailure:
				if r.Error.ErrorType != tc.errorType || r.Error.Retryable != tc.retryable {
					t.Fatalf("error %+v", r.Error)
				}
			}
		})
	}
}

func TestRunRecoversPanics(t *testing.T) {
	step := newStep()
	r := Run(context.Background(), HandlerFunc(func(context.Context, *StepContext) Result {
		var m map[string]int
		m["boom"]++ // nil map write
		return Success(nil, nil)
	}), step)
	if r.Kind != KindFailure || r.Retryable() {
		t.Fatalf("panic result: %+v", r)
	}
	if r.Error.Message != "Handler panicked: assignment to entry in nil map" || r.Error.ErrorType != ErrorTypeHandlerPanic {
		t.Fatalf("message/type: %q %q", r.Error.Message, r.Error.ErrorType)
	}
	if r.Error.Context["handler_name"] != "linear_step_2" || r.Error.Context["task_uuid"] != testTaskUUID.String() {
		t.Fatalf("context: %v", r.Error.Context)
	}
	if len(r.Error.Backtrace) == 0 || len(r.Error.Backtrace) > maxBacktraceLines || !strings.Contains(strings.Join(r.Error.Backtrace, "\n"), "goroutine") {
		t.Fatalf("backtrace: %v", r.Error.Backtrace)
	}
	ser := ToExecutionResult(testStepUUID, r, 0)
	if ser.Status != "failed" || ser.Metadata.Retryable || ser.Error.Retryable || *ser.Metadata.ErrorType != ErrorTypeHandlerPanic {
		t.Fatalf("execution result: %+v", ser)
	}

	r = Run(context.Background(), HandlerFunc(func(context.Context, *StepContext) Result { panic(errors.New("custom")) }), step)
	if r.Error.Message != "Handler panicked: custom" {
		t.Fatalf("error panic: %q", r.Error.Message)
	}
	r = Run(context.Background(), HandlerFunc(func(context.Context, *StepContext) Result { return Success(7, nil) }), step)
	if !r.IsSuccess() || r.Value != 7 {
		t.Fatalf("normal result: %+v", r)
	}
	if r = Run(context.Background(), nil, step); r.Error == nil || r.Error.ErrorType != ErrorTypeHandlerNotFound {
		t.Fatalf("nil handler: %+v", r)
	}
}

func TestRunPassesContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Run(ctx, Func(func(ctx context.Context, _ *StepContext) (any, error) { return nil, ctx.Err() }), newStep())
	if r.Error == nil || r.Error.Message != "context canceled" || !r.Retryable() {
		t.Fatalf("canceled: %+v", r.Error)
	}
}

func TestMethodSet(t *testing.T) {
	ms := MethodSet{
		"call":     func(context.Context, *StepContext) Result { return Success("call", nil) },
		"validate": func(context.Context, *StepContext) Result { return Success("validate", nil) },
	}
	if r := ms.Call(context.Background(), newStep()); r.Value != "call" {
		t.Fatalf("Call: %+v", r)
	}
	if _, ok := ms.Methods()["validate"]; !ok {
		t.Fatal("Methods")
	}
	noCall := MethodSet{"validate": ms["validate"]}
	if r := noCall.Call(context.Background(), newStep()); r.Error == nil || r.Error.ErrorType != ErrorTypeHandlerNotFound ||
		r.Error.Message != "Handler method not found: linear_step_2#call" {
		t.Fatalf("missing call: %+v", r.Error)
	}
}
