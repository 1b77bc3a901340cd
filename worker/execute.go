package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/tracing"
)

// errShutdown is the cancel cause of handlers interrupted by a hard shutdown; their steps are
// reported as retryable worker_shutdown failures at once.
var errShutdown = errors.New("worker shutting down")

// shutdownGrace bounds how long a hard shutdown waits for a cancelled handler to return before
// it reports the step and lets the handler's goroutine go.
const shutdownGrace = 500 * time.Millisecond

// execute runs the claimed step's handler (again after each checkpoint yield), keeps the
// message invisible while it runs, and completes the step with the result.
func (w *Worker) execute(ctx context.Context, c *claim, log *slog.Logger) {
	var res protocol.StepExecutionResult
	ctx, endSpan := tracing.StartStep(ctx, c.headers, tracing.StepAttrs{
		TaskUUID: c.seq.WorkflowStep.TaskUUID, StepUUID: c.seq.WorkflowStep.WorkflowStepUUID,
		CorrelationID: c.seq.Task.Task.CorrelationID, Namespace: c.seq.Task.NamespaceName,
		Handler: c.seq.StepDefinition.Handler.Callable, StepName: c.seq.WorkflowStep.Name, Attempt: int(c.attempt),
	})
	defer func() {
		var err error
		if res.Error != nil && tracing.Enabled() {
			err = errors.New(res.Error.Message)
		}
		endSpan(res.Success, err)
	}()
	stopBeat := w.heartbeat(ctx, c, log)
	defer stopBeat()

	sc := handlers.NewStepContext(c.seq, handlers.WithLogger(w.log))
	h, err := w.resolver.ResolveWithFallback(c.seq.StepDefinition.Handler, c.seq.WorkflowStep.TemplateStepName)
	started := time.Now()
	if err != nil {
		res = handlers.ToExecutionResult(c.seq.WorkflowStep.WorkflowStepUUID, handlers.ErrorResult(err), 0)
	} else {
		for {
			r, interrupted := w.runOnce(ctx, h, sc, c.timeout)
			if interrupted {
				// Hand the step back through the legal path at once (a retryable failure that
				// counts as an attempt, like a timeout) instead of leaving it in_progress until
				// timeout + grace.
				w.metrics.interrupted.Add(1)
				log.Warn("handler interrupted by shutdown; reporting a retryable worker_shutdown failure")
				res = handlers.ToExecutionResult(c.seq.WorkflowStep.WorkflowStepUUID, handlers.WorkerShutdownResult(sc), time.Since(started))
				break
			}
			if !r.IsCheckpointYield() {
				res = handlers.ToExecutionResult(c.seq.WorkflowStep.WorkflowStepUUID, r, time.Since(started))
				break
			}
			y, err := r.Checkpoint.YieldData(c.seq.WorkflowStep.WorkflowStepUUID)
			if err == nil {
				err = w.persistCheckpoint(ctx, c, y)
			}
			if err != nil {
				if errors.Is(err, errLateCompletion) {
					w.metrics.lateRejected.Add(1)
					log.Warn("checkpoint rejected: claim superseded", "error", err)
					return
				}
				res = handlers.ToExecutionResult(c.seq.WorkflowStep.WorkflowStepUUID, handlers.CheckpointErrorResult(err), time.Since(started))
				break
			}
			w.metrics.checkpoints.Add(1)
			// Re-dispatch in process with the new checkpoint; the step stays in_progress and the
			// yield does not count as an attempt (as tasker-core).
			c.seq.WorkflowStep.Checkpoint = mustJSON(y)
			sc = handlers.NewStepContext(c.seq, handlers.WithLogger(w.log))
		}
	}
	res.Metadata.WorkerID = &w.cfg.WorkerID
	if w.hostname != "" {
		res.Metadata.WorkerHostname = &w.hostname
	}
	w.observeHandler(c, res)

	res, err = w.completeRetrying(ctx, c, res, started.Add(c.timeout+w.cfg.StaleGrace), log)
	if err != nil {
		if errors.Is(err, errLateCompletion) {
			w.metrics.lateRejected.Add(1)
			log.Warn("result discarded", "error", err)
			return
		}
		w.metrics.dbErrors.Add(1)
		log.Error("completion failed; the step will be recovered after its timeout", "error", err)
		return
	}
	if res.Success {
		w.metrics.completed.Add(1)
	} else {
		w.metrics.failed.Add(1)
	}
	log.Info("step completed", "step_name", c.seq.WorkflowStep.Name, "success", res.Success,
		"status", res.Status, "attempt", c.attempt, "execution_time_ms", res.Metadata.ExecutionTimeMs)
	if w.events != nil {
		w.events.PublishAfterCommit(context.WithoutCancel(ctx), c.seq, res)
	}
}

// runOnce calls the handler under the step timeout. interrupted is true when a hard shutdown
// cancelled it. A handler that ignores its context past the deadline is reported as timed out;
// its goroutine keeps its pool slot until it returns, so the concurrency bound holds.
func (w *Worker) runOnce(ctx context.Context, h handlers.Handler, sc *handlers.StepContext, timeout time.Duration) (res handlers.Result, interrupted bool) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan handlers.Result, 1)
	go func() { done <- handlers.Run(hctx, h, sc) }()
	select {
	case res = <-done:
	case <-hctx.Done():
		grace := w.cfg.handlerGrace()
		if context.Cause(ctx) == errShutdown {
			grace = shutdownGrace
		}
		select {
		case res = <-done: // returned right at the deadline
		case <-time.After(grace):
			sc.Logger().Warn("handler ignores context cancellation; reporting timeout while it keeps running")
			w.metrics.stuckHandlers.Add(1)
			go func() { <-done; w.metrics.stuckHandlers.Add(-1) }()
			res = handlers.HandlerTimeoutResult(sc, timeout)
		}
	}
	if context.Cause(ctx) == errShutdown {
		return res, true
	}
	if hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil && !res.IsSuccess() {
		// Whatever the handler made of its cancelled context, the step timed out.
		res = handlers.HandlerTimeoutResult(sc, timeout)
	}
	return res, false
}

// heartbeat extends the message's visibility before it lapses while the handler runs, so a
// live step is never redelivered to another worker.
func (w *Worker) heartbeat(ctx context.Context, c *claim, log *slog.Logger) (stop func()) {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	vt := int(w.cfg.VisibilityTimeout / time.Second)
	every := w.cfg.VisibilityTimeout / 3
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-bctx.Done():
				return
			case <-ctx.Done():
				return // hard shutdown: let the message reappear after its timeout
			case <-t.C:
				dbctx, cancel := w.dbCtx(bctx)
				_, ok, err := w.queue.SetVT(dbctx, c.queue, c.msgID, vt)
				cancel()
				if err != nil {
					log.Warn("could not extend message visibility", "error", err)
				} else if !ok {
					log.Warn("message vanished while its step runs")
				}
			}
		}
	}()
	return cancel
}

func (c Config) handlerGrace() time.Duration {
	if c.StepTimeout < 10*time.Second {
		return time.Second
	}
	return 5 * time.Second
}
