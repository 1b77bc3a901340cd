// Package handlers is the step handler API of tasker-go: the Handler interface, the StepContext a
// handler reads its task, step, definition, dependency results and checkpoint from, the Result it
// returns, error classification, the handler registry with its resolver chain and method dispatch,
// and composable capabilities (API, Decision, Batchable, Checkpoint) to embed in handler structs.
//
// A minimal handler:
//
//	reg := handlers.NewRegistry()
//	reg.MustRegister("linear_step_2", handlers.Func(func(ctx context.Context, s *handlers.StepContext) (any, error) {
//		prev, err := handlers.DecodeDependency[int64](s, "linear_step_1")
//		if err != nil {
//			return nil, err
//		}
//		return prev * prev, nil
//	}))
//
// Typed and TypedWithInputs adapt functions that take the task context (and step inputs) decoded
// into the author's structs; package handlertest runs handlers in unit tests.
//
// The worker resolves the handler from the step definition, runs it with Run (which turns panics
// into failures), and converts the Result with ToExecutionResult into the StepExecutionResult
// tasker-core's orchestrator reads. The package has no database dependency.
package handlers
