package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// failWithoutRunning reports res for a step without running a handler (recovery of an abandoned
// step, or a step no template describes): claim it first when it is still claimable, then the
// same completion writes as a handler failure, and archive the message with reason.
func (w *Worker) failWithoutRunning(ctx context.Context, tx pgx.Tx, q string, msgID int64, row *state.StepRow, res protocol.StepExecutionResult, reason string) error {
	head := row.Head
	if row.Current.IsClaimable() {
		tr, err := state.TransitionStep(ctx, tx, head.StepUUID, state.StepEvent{Type: state.StepEventStart},
			state.TransitionOptions{ExpectFrom: []state.StepState{row.Current}, ClaimAttempt: true})
		if err != nil {
			return err
		}
		head = tr.Head()
	}
	b := &pgx.Batch{}
	var notes queue.Notices
	if err := w.queueResult(b, head, row.Seq, res, &notes); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if err := w.archiveTx(ctx, tx, q, msgID, reason, res.Error.Message); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.notify(ctx, &notes)
	return nil
}

// notify sends the notifications of result messages a committed transaction sent (see
// queue.Notices). A failure is logged: the orchestrator's polling finds the messages.
func (w *Worker) notify(ctx context.Context, n *queue.Notices) {
	dbctx, cancel := w.dbCtx(ctx)
	defer cancel()
	if err := w.queue.Notify(dbctx, w.pool, n); err != nil {
		w.log.Warn("step results sent without their notification; the orchestrator will poll for them", "error", err)
	}
}

// queueResult queues the heart of completion on b: the transition from head (the claim) to
// enqueued(_as_error)_for_orchestration with the result in metadata and workflow_steps.results,
// and the message to orchestration_step_results, whose notification notes holds back.
func (w *Worker) queueResult(b *pgx.Batch, head state.StepHead, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult, notes *queue.Notices) error {
	ev, opts, err := w.resultEvent(seq, res)
	if err != nil {
		return err
	}
	if _, err := state.QueueStepTransition(b, head, ev, opts); err != nil {
		return err
	}
	task := seq.Task.Task
	if err := w.queue.QueueSend(b, w.resultsQueue, protocol.StepMessage{
		TaskUUID: task.TaskUUID, StepUUID: res.StepUUID, CorrelationID: task.CorrelationID,
	}, 0, nil, notes); err != nil {
		return fmt.Errorf("notify orchestration: %w", err)
	}
	return nil
}

// resultEvent is the step event that reports res (the result is its data) and the options of
// that transition: from in_progress only, with the worker and correlation ids.
func (w *Worker) resultEvent(seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) (state.StepEvent, state.TransitionOptions, error) {
	data, err := json.Marshal(res)
	if err != nil {
		return state.StepEvent{}, state.TransitionOptions{}, fmt.Errorf("encode result: %w", err)
	}
	ev := state.StepEvent{Type: state.StepEventEnqueueForOrchestration, Data: data}
	if !res.Success {
		ev.Type = state.StepEventEnqueueAsErrorForOrchestration
	}
	return ev, state.TransitionOptions{
		ExpectFrom:    []state.StepState{state.StepInProgress},
		WorkerUUID:    w.workerUUID,
		CorrelationID: seq.Task.Task.CorrelationID,
	}, nil
}

// errLateCompletion means the claim this worker held was superseded (the step was recovered
// and possibly claimed again); the result must not be applied.
var errLateCompletion = errors.New("late completion rejected: the step is no longer held by this claim")

// complete persists res for claim c in ONE transaction: the transition fenced on the claim's
// head, workflow_steps.results, the orchestration notification, the domain events declared
// durable, and the consumed message's deletion (or, with a reason, its archiving). A crash at
// any point leaves either nothing or everything. Without durable events or a reason the
// completion is grouped with others being written at the same time (completeInGroup); otherwise,
// and outside Run, it is written alone (completeAlone). It is the one way a claim ends with a
// result.
func (w *Worker) complete(ctx context.Context, c *claim, res protocol.StepExecutionResult, reason string) error {
	durable := w.durable(c)
	if reason == "" && !durable && w.completions != nil {
		return w.completeInGroup(c, res)
	}
	return w.completeAlone(ctx, c, res, reason)
}

// durable reports whether completing c runs the event publisher's PublishDurable in the
// completion's transaction: as the publisher decides (DurableDecider), else when the step
// declares any event.
func (w *Worker) durable(c *claim) bool {
	if w.events == nil {
		return false
	}
	if d, ok := w.events.(DurableDecider); ok {
		return d.NeedsDurable(c.seq)
	}
	return declaresEvents(c.seq.StepDefinition.PublishesEvents)
}

// declaresEvents reports whether raw (publishes_events) is a non-empty array, or not an array
// at all (the publisher then says what is wrong with it).
func declaresEvents(raw json.RawMessage) bool {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
	}
	return len(items) > 0
}

// completeAlone is complete for one completion: the transition queued by state.QueueStepTransition
// with the other writes; without durable events or a reason it is one round trip, since a batch
// sent outside a transaction commits as a whole.
func (w *Worker) completeAlone(ctx context.Context, c *claim, res protocol.StepExecutionResult, reason string) error {
	b := &pgx.Batch{}
	var notes queue.Notices
	if err := w.queueResult(b, c.head, c.seq, res, &notes); err != nil {
		return err
	}
	if reason == "" {
		if err := w.queue.QueueDelete(b, c.queue, c.msgID, nil); err != nil {
			return err
		}
	}
	durable := w.durable(c)
	if reason == "" && !durable {
		dbctx, cancel := w.dbCtx(ctx)
		defer cancel()
		if err := w.pool.SendBatch(dbctx, b).Close(); err != nil {
			return fenced(err)
		}
		w.notify(ctx, &notes)
		return nil
	}
	err := w.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fenced(err)
		}
		if durable {
			if err := w.events.PublishDurable(ctx, tx, c.seq, res); err != nil {
				return fmt.Errorf("durable domain events: %w", err)
			}
		}
		if reason != "" {
			return w.archiveTx(ctx, tx, c.queue, c.msgID, reason, res.Error.Message)
		}
		return nil
	})
	if err == nil {
		w.notify(ctx, &notes)
	}
	return err
}

// fenced turns a lost fence (the claim's head was superseded) into errLateCompletion.
func fenced(err error) error {
	if errors.Is(err, state.ErrConcurrentTransition) {
		return fmt.Errorf("%w: %w", errLateCompletion, err)
	}
	return err
}

// inTx runs fn in a transaction that commits when fn succeeds. It is detached from ctx's
// cancellation (a shutdown must not tear a completion in half) and bounded by timeout.
func (w *Worker) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	dbctx, cancel := w.dbCtx(ctx)
	defer cancel()
	return pgx.BeginFunc(dbctx, w.pool, func(tx pgx.Tx) error { return fn(dbctx, tx) })
}

// persistCheckpoint stores a yield's progress (appending the cursor to history) while this
// claim still holds the step.
func (w *Worker) persistCheckpoint(ctx context.Context, c *claim, y protocol.CheckpointYieldData) error {
	rec, err := json.Marshal(y.ToRecord(time.Now()))
	if err != nil {
		return err
	}
	cursor := y.Cursor
	if len(cursor) == 0 {
		cursor = json.RawMessage("null")
	}
	dbctx, cancel := w.dbCtx(ctx)
	defer cancel()
	held, err := state.SaveCheckpoint(dbctx, w.pool, c.head, rec, cursor)
	if err == nil && !held {
		err = errLateCompletion
	}
	return err
}

// minCompletionRetry is how long a completion is retried at least while the database is
// unreachable.
const minCompletionRetry = 10 * time.Second

// completeRetrying completes the step. While the database is unreachable or restarting it
// retries, until recoverAt (when the step counts as abandoned and others may recover it; the
// heartbeat keeps its message hidden meanwhile) but for at least minCompletionRetry, and for
// no more than minCompletionRetry once the worker is shutting down; the fence
// makes a retry after an ambiguous commit harmless. A result the database refuses as data
// (U+0000 in jsonb, a value over a limit) is replaced, once, by a non-retryable serialization
// error saying why, so the real cause reaches orchestration instead of the step being recovered
// as a dead worker's after its timeout.
func (w *Worker) completeRetrying(ctx context.Context, c *claim, res protocol.StepExecutionResult, recoverAt time.Time, log *slog.Logger) (protocol.StepExecutionResult, error) {
	least := time.Now().Add(minCompletionRetry)
	deadline := recoverAt
	if deadline.Before(least) {
		deadline = least
	}
	backoff := 100 * time.Millisecond
	replaced := false
	for {
		err := w.complete(ctx, c, res, "")
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
		case !retryableDBError(err) || time.Now().After(deadline) || (ctx.Err() != nil && time.Now().After(least)):
			return res, err
		}
		log.Warn("completion failed; retrying", "error", err, "in", backoff)
		// Not ctx: a completion in flight when shutdown starts still deserves its retries.
		sleep(context.WithoutCancel(ctx), backoff)
		backoff = min(backoff*2, 2*time.Second)
	}
}

// retryableDBError reports errors after which the same statement may succeed later: no answer
// from the server (a network error, a call deadline, a closed connection), or a server that is
// shutting down, starting up, out of connections or resources (classes 08, 53, 57), or a
// transaction that lost a race (40001, 40P01). Any other server error is about the statement.
func retryableDBError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	switch pgErr.Code[:2] {
	case "08", "53", "57":
		return true
	}
	return pgErr.Code == "40001" || pgErr.Code == "40P01"
}
