// Command quickstart is the smallest useful tasker-go worker binary: the linear workflow's
// handlers, registered under the callables its template names, and worker.Main consuming its
// namespace. The README's "Writing handlers" section walks through it.
//
//	DATABASE_URL=postgres://... TASKER_TEMPLATE_PATH=examples/templates TASKER_NAMESPACES=rust_e2e_linear \
//	  go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/worker"
)

// square is linear_step_1 of examples/templates/linear_workflow.yaml: it reads the task's
// even_number and returns its square; the next step reads it with DecodeDependency.
func square(ctx context.Context, step *handlers.StepContext) (any, error) {
	n, err := handlers.DecodeContextField[int64](step, "even_number")
	if err != nil {
		return nil, handlers.ValidationError("even_number is required").Wrap(err)
	}
	if n%2 != 0 {
		return nil, handlers.ValidationError("even_number must be even").WithCode("VALIDATION_ERROR")
	}
	return squareInt64(n)
}

// squareInt64 is n², or a permanent error when it does not fit in int64: a wrapped number is
// never reported as success (examples/handlers computes these steps exactly with math/big).
func squareInt64(n int64) (int64, error) {
	const maxRoot = 3037000499 // floor(sqrt(2^63 - 1))
	if n > maxRoot || n < -maxRoot {
		return 0, handlers.PermanentError(fmt.Sprintf("%d squared does not fit in 64 bits", n)).WithCode("INTEGER_OVERFLOW")
	}
	return n * n, nil
}

// squarePrevious is linear_step_2..4: the square of the previous step's result.
func squarePrevious(previous string) handlers.Handler {
	return handlers.Func(func(ctx context.Context, step *handlers.StepContext) (any, error) {
		v, err := handlers.DecodeDependency[int64](step, previous)
		if err != nil {
			return nil, err // a missing dependency is a retryable error
		}
		return squareInt64(v)
	})
}

func main() {
	reg := handlers.NewRegistry()
	reg.MustRegister("linear_workflow.step_1", handlers.Func(square)) // the template's handler.callable
	reg.MustRegister("linear_workflow.step_2", squarePrevious("linear_step_1"))
	reg.MustRegister("linear_workflow.step_3", squarePrevious("linear_step_2"))
	reg.MustRegister("linear_workflow.step_4", squarePrevious("linear_step_3"))
	// DATABASE_URL and the TASKER_* variables configure it; TASKER_TEMPLATE_PATH registers the
	// templates (worker.WithTemplates). It runs until SIGINT or SIGTERM, then drains gracefully.
	os.Exit(worker.Main(reg))
}
