package handlertest_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/handlers/handlertest"
)

const pricing = "testdata/pricing.yaml"

type order struct {
	Total int64 `json:"total"`
}

// discount is pricing.apply_discount: load_order's total less handler.initialization percent.
var discount = handlers.Func(func(ctx context.Context, step *handlers.StepContext) (any, error) {
	o, err := handlers.DecodeDependency[order](step, "load_order")
	if err != nil {
		return nil, err
	}
	pct, err := handlers.DecodeConfig[int64](step, "percent")
	if err != nil {
		return nil, err
	}
	return map[string]any{"total": o.Total * (100 - pct) / 100, "attempt": step.Attempts(), "customer": handlers.ContextFieldOr(step, "customer", "")}, nil
})

func TestFromTemplateFile(t *testing.T) {
	step := handlertest.FromTemplateFile(pricing, "apply_discount").
		Context(map[string]any{"customer": "c-7"}).
		Dependency("load_order", order{Total: 250}).
		Build(t)
	if step.TaskName() != "price_order" || step.TaskVersion() != "2.1.0" || step.Namespace() != "handlertest" {
		t.Errorf("task %s %s %s", step.TaskName(), step.TaskVersion(), step.Namespace())
	}
	if step.Callable() != "pricing.apply_discount" || step.StepName() != "apply_discount" || step.Timeout() != 12*time.Second {
		t.Errorf("definition %s %s %v", step.Callable(), step.StepName(), step.Timeout())
	}
	if step.Retryable() || step.MaxAttempts() != 1 || step.Attempts() != 0 {
		t.Errorf("retry: retryable %v max %d attempts %d", step.Retryable(), step.MaxAttempts(), step.Attempts())
	}
	// As the orchestrator creates a template step, its inputs are handler.initialization.
	if in, ok := step.StepInput("percent"); !ok || string(in) != "10" {
		t.Errorf("step inputs %s", step.StepInputs())
	}
	if deps := step.Dependencies(); len(deps) != 1 || deps[0] != "load_order" {
		t.Errorf("dependencies %v", deps)
	}
}

func TestRunAndDecodeOutput(t *testing.T) {
	out := handlertest.FromTemplateFile(pricing, "apply_discount").
		Context(json.RawMessage(`{"customer":"c-7"}`)).
		Dependency("load_order", json.RawMessage(`{"total":250}`)).
		Attempts(2).
		Run(t, discount)
	got := handlertest.DecodeOutput[struct {
		Total    int64
		Attempt  int
		Customer string
	}](out)
	if got.Total != 225 || got.Attempt != 2 || got.Customer != "c-7" {
		t.Fatalf("output %+v", got)
	}
}

func TestFailureAssertions(t *testing.T) {
	// No load_order result: DecodeDependency's retryable MISSING_DEPENDENCY.
	out := handlertest.FromTemplateFile(pricing, "apply_discount").Run(t, discount).
		RequireFailure(handlers.ErrorTypeRetryable, true).
		RequireCode("MISSING_DEPENDENCY")
	if !strings.Contains(out.Execution.Error.Message, "load_order") {
		t.Errorf("message %q", out.Execution.Error.Message)
	}

	typed := handlers.Typed(func(ctx context.Context, step *handlers.StepContext, in order) (any, error) { return in.Total, nil })
	bad := handlertest.NewStep("typed").Context(map[string]any{"total": "lots"}).Run(t, typed).
		RequireFailure(handlers.ErrorTypeValidation, false).
		RequireCode("INVALID_CONTEXT_FIELD")
	if field := handlertest.ErrorContext[string](bad, "field"); field != "total" {
		t.Errorf("field %q", field)
	}

	panics := handlers.Func(func(context.Context, *handlers.StepContext) (any, error) { panic("boom") })
	handlertest.NewStep("panics").Run(t, panics).RequireFailure(handlers.ErrorTypeHandlerPanic, false)
}

func TestRunRegisteredResolvesLikeTheWorker(t *testing.T) {
	reg := handlers.NewRegistry()
	reg.MustRegister("pricing.apply_discount", discount)
	out := handlertest.FromTemplateFile(pricing, "apply_discount").Dependency("load_order", order{Total: 100}).RunRegistered(t, reg)
	if got := handlertest.DecodeOutput[order](out); got.Total != 90 {
		t.Fatalf("total %d", got.Total)
	}
	// A batch worker named "<template step>_<id>" whose callable is unregistered falls back to
	// the template step name, as the worker does.
	reg.MustRegister("fallback_step", handlers.Func(func(_ context.Context, s *handlers.StepContext) (any, error) { return s.StepName(), nil }))
	out = handlertest.NewStep("fallback_step").Name("fallback_step_001").Initialization(map[string]any{"x": 1}).Config("y", 2).RunRegistered(t, reg)
	if got := handlertest.DecodeOutput[string](out); got != "fallback_step_001" {
		t.Fatalf("step name %q", got)
	}
}

func TestYieldAndResume(t *testing.T) {
	// Counts to 3 one checkpoint at a time, summing in the accumulated results.
	counter := handlers.HandlerFunc(func(ctx context.Context, step *handlers.StepContext) handlers.Result {
		n, _, err := handlers.DecodeCheckpointCursor[int](step)
		if err != nil {
			return handlers.ErrorResult(err)
		}
		sum, _, _ := handlers.DecodeAccumulatedResults[int](step)
		if n == 3 {
			return handlers.Success(map[string]int{"sum": sum, "items": int(step.CheckpointItemsProcessed())}, nil)
		}
		return handlers.Yield(n+1, uint64(n+1), sum+n+1)
	})
	out := handlertest.NewStep("counter").Run(t, counter)
	if cp := out.RequireYield(); cp.Cursor != 1 {
		t.Fatalf("first yield %+v", cp)
	}
	out = out.Resume().Resume().Resume()
	if got := handlertest.DecodeOutput[map[string]int](out); got["sum"] != 6 || got["items"] != 3 {
		t.Fatalf("resumed to %v", got)
	}
}

// fakeTB records fatal failures instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed []string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Context() context.Context          { return context.Background() }
func (f *fakeTB) Fatal(args ...any)                 { f.failed = append(f.failed, "fatal"); panic(f) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = append(f.failed, format); panic(f) }
func (f *fakeTB) Errorf(format string, args ...any) { f.failed = append(f.failed, format) }

// fails reports whether fn failed tb.
func fails(fn func(tb testing.TB)) (failed bool) {
	tb := &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != tb {
			panic(r)
		}
		failed = len(tb.failed) > 0
	}()
	fn(tb)
	return false
}

func TestAssertionsFail(t *testing.T) {
	ok := handlers.Func(func(context.Context, *handlers.StepContext) (any, error) { return 1, nil })
	perm := handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.PermanentError("no").WithCode("NO")
	})
	unstorable := handlers.Func(func(context.Context, *handlers.StepContext) (any, error) { return func() {}, nil })
	for name, fn := range map[string]func(tb testing.TB){
		"success wanted, failure got": func(tb testing.TB) { handlertest.NewStep("s").Run(tb, perm).RequireSuccess() },
		"unstorable output":           func(tb testing.TB) { handlertest.NewStep("s").Run(tb, unstorable).RequireSuccess() },
		"failure wanted, success got": func(tb testing.TB) {
			handlertest.NewStep("s").Run(tb, ok).RequireFailure(handlers.ErrorTypePermanent, false)
		},
		"wrong retryability": func(tb testing.TB) {
			handlertest.NewStep("s").Run(tb, perm).RequireFailure(handlers.ErrorTypePermanent, true)
		},
		"wrong error type": func(tb testing.TB) {
			handlertest.NewStep("s").Run(tb, perm).RequireFailure(handlers.ErrorTypeValidation, false)
		},
		"wrong code":                   func(tb testing.TB) { handlertest.NewStep("s").Run(tb, perm).RequireCode("YES") },
		"output of another type":       func(tb testing.TB) { handlertest.DecodeOutput[string](handlertest.NewStep("s").Run(tb, ok)) },
		"no yield":                     func(tb testing.TB) { handlertest.NewStep("s").Run(tb, ok).RequireYield() },
		"unknown template step":        func(tb testing.TB) { handlertest.FromTemplateFile(pricing, "nope").Build(tb) },
		"missing template file":        func(tb testing.TB) { handlertest.FromTemplateFile("testdata/none.yaml", "x").Build(tb) },
		"unencodable context":          func(tb testing.TB) { handlertest.NewStep("s").Context(make(chan int)).Build(tb) },
		"initialization not an object": func(tb testing.TB) { handlertest.NewStep("s").Initialization([]int{1}).Build(tb) },
		"unregistered handler":         func(tb testing.TB) { handlertest.NewStep("s").RunRegistered(tb, handlers.NewRegistry()) },
	} {
		if !fails(fn) {
			t.Errorf("%s: the assertion passed", name)
		}
	}
	if fails(func(tb testing.TB) {
		handlertest.NewStep("s").Run(tb, perm).RequireFailure(handlers.ErrorTypePermanent, false).RequireCode("NO")
	}) {
		t.Error("a matching failure was reported as a mismatch")
	}
}
