package handlertest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// Resolver finds a step's handler as the worker does; *handlers.Registry satisfies it.
type Resolver interface {
	ResolveWithFallback(def protocol.HandlerDefinition, fallbacks ...string) (handlers.Handler, error)
}

// Outcome is one run of a handler.
type Outcome struct {
	// Result is what the handler returned (a panic is a handler_panic failure).
	Result handlers.Result
	// Execution is the StepExecutionResult the worker would persist for Result; zero for a
	// checkpoint yield, which the worker persists as a checkpoint instead.
	Execution protocol.StepExecutionResult

	tb      testing.TB
	step    *Step
	handler handlers.Handler
}

// Run builds the step and runs h on it with handlers.Run, under tb.Context().
func (s *Step) Run(tb testing.TB, h handlers.Handler) *Outcome {
	tb.Helper()
	sc := s.Build(tb)
	o := &Outcome{tb: tb, step: s, handler: h, Result: handlers.Run(tb.Context(), h, sc)}
	if !o.Result.IsCheckpointYield() {
		o.Execution = handlers.ToExecutionResult(sc.StepUUID(), o.Result, 0)
	}
	return o
}

// RunRegistered resolves the step's handler from r as the worker does (handler.callable and
// method, then the template step name) and runs it; it fails tb when r has none.
func (s *Step) RunRegistered(tb testing.TB, r Resolver) *Outcome {
	tb.Helper()
	h, err := r.ResolveWithFallback(s.seq.StepDefinition.Handler, s.seq.WorkflowStep.TemplateStepName)
	if err != nil {
		tb.Fatalf("handlertest: resolve %s: %v", s.seq.StepDefinition.Handler.Callable, err)
	}
	return s.Run(tb, h)
}

// describe summarizes the outcome for failure messages.
func (o *Outcome) describe() string {
	r := o.Result
	switch {
	case r.IsFailure() && r.Error != nil:
		return fmt.Sprintf("failure %s (code %q, retryable %v): %s", r.Error.ErrorType, r.Error.Code, r.Error.Retryable, r.Error.Message)
	case r.IsSuccess() && !o.Execution.Success && o.Execution.Error != nil:
		return "success that cannot be stored: " + o.Execution.Error.Message
	case r.IsSuccess():
		return fmt.Sprintf("success %s", o.Execution.Result)
	}
	return r.Kind.String()
}

// RequireSuccess fails the test unless the handler succeeded with a storable result, and
// returns the stored output (StepExecutionResult.result) as JSON.
func (o *Outcome) RequireSuccess() json.RawMessage {
	o.tb.Helper()
	if !o.Result.IsSuccess() || !o.Execution.Success {
		o.tb.Fatalf("handlertest: want success, got %s", o.describe())
	}
	return o.Execution.Result
}

// DecodeOutput is RequireSuccess, decoded into T.
func DecodeOutput[T any](o *Outcome) T {
	o.tb.Helper()
	var v T
	out := o.RequireSuccess()
	if err := json.Unmarshal(out, &v); err != nil {
		o.tb.Fatalf("handlertest: decode output %s into %T: %v", out, v, err)
	}
	return v
}

// RequireFailure fails the test unless the step failed with errorType and the retryability the
// orchestrator reads (metadata.retryable and error.retryable). It returns o for RequireCode.
func (o *Outcome) RequireFailure(errorType string, retryable bool) *Outcome {
	o.tb.Helper()
	ex := o.Execution
	if !o.Result.IsFailure() || ex.Success || ex.Error == nil {
		o.tb.Fatalf("handlertest: want failure %s, got %s", errorType, o.describe())
	}
	if got := deref(ex.Error.ErrorType); got != errorType {
		o.tb.Errorf("handlertest: error_type = %q, want %q (%s)", got, errorType, o.describe())
	}
	if ex.Metadata.Retryable != retryable || ex.Error.Retryable != retryable {
		o.tb.Errorf("handlertest: retryable = %v (error.retryable %v), want %v (%s)", ex.Metadata.Retryable, ex.Error.Retryable, retryable, o.describe())
	}
	return o
}

// RequireCode fails the test unless the step failed with metadata.error_code code.
func (o *Outcome) RequireCode(code string) *Outcome {
	o.tb.Helper()
	if o.Execution.Success || o.Execution.Error == nil {
		o.tb.Fatalf("handlertest: want failure code %q, got %s", code, o.describe())
	}
	if got := deref(o.Execution.Metadata.ErrorCode); got != code {
		o.tb.Errorf("handlertest: error_code = %q, want %q (%s)", got, code, o.describe())
	}
	return o
}

// ErrorContext decodes the failure's metadata.context entry key into T, failing the test when
// it is absent.
func ErrorContext[T any](o *Outcome, key string) T {
	o.tb.Helper()
	var v T
	raw, ok := o.Execution.Metadata.Context[key]
	if !ok {
		o.tb.Fatalf("handlertest: no error context %q in %s", key, o.describe())
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		o.tb.Fatalf("handlertest: error context %q = %s: %v", key, raw, err)
	}
	return v
}

// RequireYield fails the test unless the handler yielded a checkpoint, and returns it.
func (o *Outcome) RequireYield() *handlers.CheckpointData {
	o.tb.Helper()
	if !o.Result.IsCheckpointYield() || o.Result.Checkpoint == nil {
		o.tb.Fatalf("handlertest: want a checkpoint yield, got %s", o.describe())
	}
	return o.Result.Checkpoint
}

// Resume runs the handler again after a checkpoint yield with the checkpoint the worker would
// persist and hand it (the step is otherwise unchanged: a yield is not an attempt).
func (o *Outcome) Resume() *Outcome {
	o.tb.Helper()
	cp := o.RequireYield()
	y, err := cp.YieldData(o.step.seq.WorkflowStep.WorkflowStepUUID)
	if err != nil {
		o.tb.Fatalf("handlertest: checkpoint: %v", err)
	}
	next := *o.step
	next.Checkpoint(y)
	return next.Run(o.tb, o.handler)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
