package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/tracing"
)

// errShutdown is the cancel cause of handlers interrupted by a hard shutdown; their steps are
// left in_progress and their messages reappear after the visibility timeout.
var errShutdown = errors.New("worker shutting down")

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
				w.metrics.interrupted.Add(1)
				log.Warn("handler interrupted by shutdown; the step will be recovered after its timeout")
				return
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

	res, err = w.completeRetrying(ctx, c, res, log)
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

// completeRetrying completes the step, retrying for a few seconds when the database is briefly
// unreachable (the fence makes a retry after an ambiguous commit harmless). A result the
// database refuses as data (U+0000 in jsonb, a value over a limit) is replaced, once, by a
// non-retryable serialization error saying why, so the real cause reaches orchestration instead of
// the step being recovered as a dead worker's after its timeout.
func (w *Worker) completeRetrying(ctx context.Context, c *claim, res protocol.StepExecutionResult, log *slog.Logger) (protocol.StepExecutionResult, error) {
	deadline := time.Now().Add(10 * time.Second)
	backoff := 100 * time.Millisecond
	replaced := false
	for {
		err := w.complete(ctx, c, res)
		var pgErr *pgconn.PgError
		switch {
		case err == nil || errors.Is(err, errLateCompletion):
			return res, err
		case !replaced && errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54")):
			log.Error("the database refused the step's result; reporting a serialization error instead", "error", err)
			replaced = true
			res = protocol.SystemError(res.StepUUID, "Step result could not be stored: "+pgErr.Message,
				handlers.ErrorTypeSerialization, nil, res.Metadata.ExecutionTimeMs, nil)
			res.Metadata.WorkerID = &w.cfg.WorkerID
			continue
		case errors.As(err, &pgErr) || time.Now().After(deadline):
			return res, err // a server-side error other than data: retrying will not help
		}
		log.Warn("completion failed; retrying", "error", err, "in", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 2*time.Second)
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
		select {
		case res = <-done: // returned right at the deadline
		case <-time.After(w.cfg.handlerGrace()):
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
				if _, ok, err := w.queue.SetVT(bctx, c.queue, c.msgID, vt); err != nil {
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
