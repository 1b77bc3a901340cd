// Command quickstart is the smallest useful tasker-go worker binary: one handler, registered
// under the callable its template names, and a worker consuming its namespace. The README's
// "Writing handlers" section walks through it.
//
//	DATABASE_URL=postgres://... TASKER_TEMPLATE_PATH=examples/templates TASKER_NAMESPACES=rust_e2e_linear \
//	  go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/worker"
)

// square is linear_step_1 of examples/templates/linear_workflow.yaml: it reads the task's
// even_number and returns its square; the next step reads it with DecodeDependency.
func square(ctx context.Context, step *handlers.StepContext) (any, error) {
	n, err := handlers.DecodeInput[int64](step, "even_number")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := handlers.NewRegistry()
	reg.MustRegister("linear_workflow.step_1", handlers.Func(square))
	reg.MustRegister("linear_workflow.step_2", squarePrevious("linear_step_1"))
	reg.MustRegister("linear_workflow.step_3", squarePrevious("linear_step_2"))
	reg.MustRegister("linear_workflow.step_4", squarePrevious("linear_step_3"))

	cfg, err := worker.DefaultConfig().FromEnv(os.Getenv) // DATABASE_URL, TASKER_* variables
	if err != nil {
		slog.Error("bad configuration", "error", err)
		os.Exit(3)
	}
	pool, err := db.Connect(ctx, cfg.DatabaseURL) // search_path=tasker,public, TimeZone=UTC
	if err != nil {
		slog.Error("database", "error", err)
		os.Exit(1)
	}
	defer pool.Close()
	if cfg.TemplatePath != "" {
		_, namespaces, err := worker.LoadAndRegisterTemplates(ctx, pool, cfg.TemplatePath)
		if err != nil {
			slog.Error("templates", "error", err)
			os.Exit(3)
		}
		if len(cfg.Namespaces) == 0 {
			cfg.Namespaces = namespaces
		}
	}
	w, err := worker.New(cfg, pool, reg)
	if err != nil {
		slog.Error("worker", "error", err)
		os.Exit(3)
	}
	if err := w.Run(ctx); err != nil { // returns after a graceful drain on SIGINT/SIGTERM
		slog.Error("worker stopped", "error", err)
		os.Exit(1)
	}
}
