package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// exampleSeq is what the worker hydrates for linear_step_2 after linear_step_1 returned 36.
func exampleSeq(def protocol.HandlerDefinition) protocol.TaskSequenceStep {
	return protocol.TaskSequenceStep{
		Task: protocol.TaskForOrchestration{
			Task:          protocol.Task{TaskUUID: uuid.New(), Context: json.RawMessage(`{"even_number":6,"amount":3000}`)},
			NamespaceName: "rust_e2e_linear", TaskName: "mathematical_sequence", TaskVersion: "1.0.0",
		},
		WorkflowStep: protocol.WorkflowStepWithName{WorkflowStepUUID: uuid.New(), Name: "linear_step_2"},
		DependencyResults: map[string]protocol.StepExecutionResult{
			"linear_step_1": protocol.Success(uuid.New(), json.RawMessage(`36`), 1, nil),
		},
		StepDefinition: protocol.StepDefinition{Name: "linear_step_2", Handler: def},
	}
}

// A handler that squares its parent's result, written with the error-returning adapter.
func ExampleFunc() {
	reg := handlers.NewRegistry()
	reg.MustRegister("linear_step_2", handlers.Func(func(ctx context.Context, s *handlers.StepContext) (any, error) {
		prev, err := handlers.DecodeDependency[int64](s, "linear_step_1")
		if err != nil {
			return nil, err
		}
		return prev * prev, nil
	}))

	def := protocol.HandlerDefinition{Callable: "linear_step_2"}
	h, err := reg.Resolve(def)
	if err != nil {
		panic(err)
	}
	step := handlers.NewStepContext(exampleSeq(def))
	res := handlers.ToExecutionResult(step.StepUUID(), handlers.Run(context.Background(), h, step), 3*time.Millisecond)
	fmt.Println(res.Status, string(res.Result))
	// Output: completed 1296
}

// routingDecision embeds the Decision capability, like tasker-core's approval router.
type routingDecision struct{ handlers.Decision }

func (d routingDecision) Call(_ context.Context, s *handlers.StepContext) handlers.Result {
	amount, err := handlers.DecodeContextField[int64](s, "amount")
	if err != nil {
		return handlers.ErrorResult(err)
	}
	switch {
	case amount < 1000:
		return d.DecisionSuccess([]string{"auto_approve"}, nil)
	case amount < 5000:
		return d.DecisionSuccess([]string{"manager_approval"}, map[string]any{"route_type": "manager_only"})
	}
	return d.DecisionSuccess([]string{"manager_approval", "finance_review"}, nil)
}

func ExampleDecision() {
	def := protocol.HandlerDefinition{Callable: "routing_decision"}
	step := handlers.NewStepContext(exampleSeq(def))
	res := handlers.ToExecutionResult(step.StepUUID(), routingDecision{}.Call(context.Background(), step), 0)
	fmt.Println(string(res.Result))
	// Output: {"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval"]},"routing_context":{"route_type":"manager_only"}}
}

func ExampleCreateCursorRanges() {
	for _, c := range handlers.CreateCursorRanges(1000, 300, 0) {
		fmt.Println(c.BatchID, string(c.StartCursor), string(c.EndCursor), c.BatchSize)
	}
	// Output:
	// 001 0 300 300
	// 002 300 600 300
	// 003 600 900 300
	// 004 900 1000 100
}

// Method dispatch: one callable, several entry points chosen by handler.method.
func ExampleRegistry_Resolve() {
	reg := handlers.NewRegistry()
	reg.MustRegister("resolver_tests_multi_method", handlers.MethodSet{
		"call":     func(context.Context, *handlers.StepContext) handlers.Result { return handlers.Success("call", nil) },
		"validate": func(context.Context, *handlers.StepContext) handlers.Result { return handlers.Success("validate", nil) },
	})
	for _, method := range []string{"", "validate", "refund"} {
		def := protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: method}
		h, err := reg.Resolve(def)
		if err != nil {
			fmt.Println(handlers.ErrorResult(err).Error.ErrorType, err)
			continue
		}
		fmt.Println(h.Call(context.Background(), handlers.NewStepContext(exampleSeq(def))).Value)
	}
	// Output:
	// call
	// validate
	// handler_not_found Handler method not found: resolver_tests_multi_method#refund
}

// A retryable failure asking the orchestrator to wait before retrying.
func ExampleWithRetryAfter() {
	r := handlers.Failure("rate limited by payment gateway", "", true,
		handlers.WithCode("HTTP_429"), handlers.WithRetryAfter(30*time.Second))
	res := handlers.ToExecutionResult(uuid.New(), r, 0)
	fmt.Println(res.Status, res.Metadata.Retryable, res.Error.Retryable, *res.Metadata.ErrorType,
		res.OrchestrationMetadata.Headers["Retry-After"], res.OrchestrationMetadata.BackoffHint.BackoffType)
	// Output: failed true true retryable_error 30 ServerRequested
}
