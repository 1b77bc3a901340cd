package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// These benchmarks cover the worker's pure-Go work between the claim and the completion
// transactions (everything but the database round trips, which tasker-bench measures).

func benchSeq() protocol.TaskSequenceStep {
	var seq protocol.TaskSequenceStep
	seq.Task.Task.TaskUUID = uuid.New()
	seq.Task.Task.CorrelationID = uuid.New()
	seq.Task.Task.Context = json.RawMessage(`{"even_number":6}`)
	seq.Task.NamespaceName, seq.Task.TaskName, seq.Task.TaskVersion = "rust_e2e_linear", "mathematical_sequence", "1.0.0"
	seq.WorkflowStep.WorkflowStepUUID = uuid.New()
	seq.WorkflowStep.TaskUUID = seq.Task.Task.TaskUUID
	seq.WorkflowStep.Name, seq.WorkflowStep.TemplateStepName = "linear_step_2", "linear_step_2"
	seq.DependencyResults = map[string]protocol.StepExecutionResult{
		"linear_step_1": protocol.Success(uuid.New(), json.RawMessage(`36`), 1, nil),
	}
	seq.StepDefinition = protocol.StepDefinition{Name: "linear_step_2", Handler: protocol.HandlerDefinition{Callable: "bench.square"}}
	return seq
}

// BenchmarkExecuteInMemory is execute() without its database transaction: build the step
// context, resolve the handler, run it under its timeout, convert and encode the result, and
// record the handler metrics.
func BenchmarkExecuteInMemory(b *testing.B) {
	reg := handlers.NewRegistry()
	if err := reg.RegisterFunc("bench.square", func(_ context.Context, step *handlers.StepContext) handlers.Result {
		raw, ok := step.DependencyValue("linear_step_1")
		if !ok {
			return handlers.Failure("missing dependency", handlers.ErrorTypeHandler, false)
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return handlers.ErrorResult(err)
		}
		return handlers.Success(n*n, nil)
	}); err != nil {
		b.Fatal(err)
	}
	w := &Worker{cfg: DefaultConfig(), resolver: reg, log: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	w.metrics.init(nil)
	c := &claim{seq: benchSeq(), timeout: 30 * time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sc := handlers.NewStepContext(c.seq, handlers.WithLogger(w.log))
		h, err := w.resolver.ResolveWithFallback(c.seq.StepDefinition.Handler, c.seq.WorkflowStep.TemplateStepName)
		if err != nil {
			b.Fatal(err)
		}
		started := time.Now()
		r, _ := w.runOnce(ctx, h, sc, c.timeout)
		res := handlers.ToExecutionResult(c.seq.WorkflowStep.WorkflowStepUUID, r, time.Since(started))
		res.Metadata.WorkerID = &w.cfg.WorkerID
		w.observeHandler(c, res)
		if _, err := json.Marshal(res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessLoggers is the per-message logger set-up of process() (two With calls on a
// text handler), which runs whatever the log level.
func BenchmarkProcessLoggers(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker_id", "worker_x")
	sm := protocol.StepMessage{TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New()}
	b.ReportAllocs()
	for b.Loop() {
		l := log.With("queue", "worker_rust_e2e_linear_queue", "msg_id", int64(42))
		_ = l.With("task_uuid", sm.TaskUUID, "step_uuid", sm.StepUUID, "correlation_id", sm.CorrelationID)
	}
}
