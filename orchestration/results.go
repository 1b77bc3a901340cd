package orchestration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// Reasons written to the headers of result messages archived without effect.
const (
	reasonMalformed        = "malformed_message"
	reasonTaskNotFound     = "task_not_found"
	reasonStepNotFound     = "step_not_found"
	reasonTaskMismatch     = "task_mismatch"
	reasonDuplicate        = "duplicate_result"
	reasonProcessingFailed = "processing_failed"
)

// ResultOutcome says what processing a step result did.
type ResultOutcome string

// Result outcomes.
const (
	OutcomeCompleted   ResultOutcome = "completed"         // step → complete
	OutcomeRetry       ResultOutcome = "waiting_for_retry" // step → waiting_for_retry
	OutcomeFailed      ResultOutcome = "failed"            // step → error
	OutcomeDuplicate   ResultOutcome = "duplicate"         // step was not awaiting orchestration; nothing changed
	OutcomeMalformed   ResultOutcome = "malformed"         // message unusable; archived
	OutcomeUnknownStep ResultOutcome = "unknown_step"      // task or step missing, or not matching; archived
	OutcomeTaken       ResultOutcome = "taken"             // taken from its notification, but consumed elsewhere; nothing done
)

// ProcessResultMessage handles one orchestration_step_results message in ONE transaction:
// decode it, lock the task row, apply the step's result (backoff, step transition, decision or
// batch expansion), coordinate the task (finalize it or enqueue what became ready), and archive
// the message. Invariant: a step's result is applied at most once (the step must still be in
// enqueued_*_for_orchestration under the task lock, and the transition to complete /
// waiting_for_retry / error moves it out of those states in the same commit that archives the
// message), so duplicate deliveries and concurrent orchestrators are no-ops. An error leaves
// everything as it was (the message becomes visible again after its visibility timeout).
func (o *Orchestrator) ProcessResultMessage(ctx context.Context, msg queue.Message) error {
	_, err := o.processResultMessage(ctx, msg, false)
	return err
}

// processResultMessage is ProcessResultMessage; hinted says msg came in its notification, not
// from a read: the first round trip then also takes the message (sets its visibility timeout,
// after the task and step locks, so the lock order stays task, step, message), and a message
// already gone means another consumer has it.
func (o *Orchestrator) processResultMessage(ctx context.Context, msg queue.Message, hinted bool) (ResultOutcome, error) {
	log := o.log.With("msg_id", msg.ID)
	tx, err := o.begin(ctx) // BEGIN is sent with the first statement
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit

	sm, decodeErr := protocol.DecodeStepMessage(msg.Body)
	if decodeErr != nil {
		log.Warn("archiving malformed step result message", "error", decodeErr, "body", truncateBytes(msg.Body, 256))
		if err := o.archiveTx(ctx, tx, msg.ID, reasonMalformed, decodeErr.Error()); err != nil {
			return "", err
		}
		return OutcomeMalformed, tx.Commit(ctx)
	}
	log = log.With("task_uuid", sm.TaskUUID, "step_uuid", sm.StepUUID, "correlation_id", sm.CorrelationID)

	// BEGIN, the task lock and the step lock (in that order, as everywhere), one round trip.
	b := &pgx.Batch{}
	tl := queueLockTask(b, sm.TaskUUID, false)
	sl := state.QueueLockStep(b, sm.StepUUID)
	taken := true
	if hinted {
		if err := o.queue.QueueTake(b, queue.StepResultsQueue, msg.ID, int(o.cfg.VisibilityTimeout/time.Second), &taken); err != nil {
			return "", err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return "", err
	}
	if !taken {
		return OutcomeTaken, nil // rolled back: nothing was written
	}
	task, err := tl.result(ctx, tx)
	if errors.Is(err, ErrTaskNotFound) {
		log.Warn("archiving step result for an unknown task")
		if err := o.archiveTx(ctx, tx, msg.ID, reasonTaskNotFound, err.Error()); err != nil {
			return "", err
		}
		return OutcomeUnknownStep, tx.Commit(ctx)
	}
	if err != nil {
		return "", err
	}
	var outcome ResultOutcome
	step, err := sl.Result()
	if err == nil {
		outcome, err = o.applyResult(ctx, tx, task, step, log)
	}
	var reason, detail string
	switch {
	case errors.Is(err, state.ErrStepNotFound):
		reason, detail, outcome = reasonStepNotFound, err.Error(), OutcomeUnknownStep
	case errors.Is(err, errTaskMismatch):
		reason, detail, outcome = reasonTaskMismatch, err.Error(), OutcomeUnknownStep
	case err != nil:
		return "", err
	case outcome == OutcomeDuplicate:
		reason, detail = reasonDuplicate, "step is not awaiting orchestration"
	}
	if reason != "" {
		log.Info("archiving step result without effect", "reason", reason, "detail", detail)
		err = o.archiveTx(ctx, tx, msg.ID, reason, detail)
	} else {
		err = o.queue.QueueArchive(tx.Pending(), queue.StepResultsQueue, msg.ID, nil) // sent with COMMIT
	}
	if err != nil {
		return "", err
	}
	if err := o.committedErr(tx.Commit(ctx), task); err != nil {
		return "", err
	}
	return outcome, nil
}

var errTaskMismatch = errors.New("orchestration: step does not belong to the message's task")

// applyResult applies the result stored in workflow_steps.results of a locked step awaiting
// orchestration (tasker-core's message_handler order, §5.3) and coordinates the task, on tx,
// which holds the task lock. A step in any other state is a duplicate and nothing is done.
func (o *Orchestrator) applyResult(ctx context.Context, tx *db.PipeTx, task *taskRow, step *stepRow, log *slog.Logger) (ResultOutcome, error) {
	stepUUID := step.StepUUID
	if step.TaskUUID != task.TaskUUID {
		return "", fmt.Errorf("%w: step %s belongs to task %s", errTaskMismatch, stepUUID, step.TaskUUID)
	}
	log = log.With("step_name", step.Name)
	if step.State != state.StepEnqueuedForOrchestration && step.State != state.StepEnqueuedAsErrorForOrchestration {
		log.Debug("step result already processed", "state", step.State)
		return OutcomeDuplicate, nil
	}

	res, parseErr := decodeResults(step.Results)
	errMsg := "unknown error"
	if parseErr != nil {
		errMsg = parseErr.Error()
		log.Warn("step results cannot be parsed; treating them as a permanent failure", "error", parseErr)
	} else if res.Error != nil && res.Error.Message != "" {
		errMsg = res.Error.Message
	}

	var (
		ev      state.StepEvent
		outcome ResultOutcome
	)
	switch {
	case step.State == state.StepEnqueuedForOrchestration && parseErr == nil && res.Success:
		ev, outcome = state.StepEventWithData(state.StepEventComplete, step.Results), OutcomeCompleted
	case step.State == state.StepEnqueuedForOrchestration:
		ev, outcome = state.StepEventWithMessage(state.StepEventFail, "Step failed: "+errMsg), OutcomeFailed
	case parseErr == nil && res.Metadata.Retryable && step.Attempts < step.MaxAttempts && step.Retryable:
		// Retry needs the handler's metadata.retryable, attempts left, and (unlike tasker-core,
		// which leaves such steps stuck in waiting_for_retry) the template's retryable flag,
		// which the SQL readiness check also requires.
		ev, outcome = state.StepEventWithMessage(state.StepEventWaitForRetry, errMsg+" - retryable"), OutcomeRetry
	default:
		ev, outcome = state.StepEventWithMessage(state.StepEventFail, errMsg), OutcomeFailed
	}

	if outcome == OutcomeRetry {
		// Always written for a retry, even without orchestration_metadata (tasker-core writes
		// nothing then, and the step is retried at once or with a stale delay).
		var headers map[string]string
		if res.OrchestrationMetadata != nil {
			headers = res.OrchestrationMetadata.Headers
		}
		policy := o.stepBackoffPolicy(ctx, tx, task, step, log)
		delay, kind := retryDelay(o.cfg.Backoff, policy, step.Attempts, headers, time.Now(), o.jitter)
		secs, earlier := storedBackoff(delay)
		tx.Pending().Queue(`UPDATE tasker.workflow_steps
			SET backoff_request_seconds = $2, last_attempted_at = NOW() - make_interval(secs => $3), updated_at = NOW()
			WHERE workflow_step_uuid = $1`, stepUUID, secs, earlier.Seconds()).Fn = func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("orchestration: write backoff of step %s: %w", stepUUID, err)
			}
			return nil
		}
		log = log.With("backoff", delay, "backoff_kind", kind)
	}
	if _, err := state.QueueStepTransition(tx.Pending(), step.Head, ev, state.TransitionOptions{
		ExpectFrom: []state.StepState{step.State}, CorrelationID: task.CorrelationID,
	}); err != nil {
		return "", fmt.Errorf("orchestration: step %s %s: %w", stepUUID, ev.Type, err)
	}
	log.Info("step result applied", "outcome", outcome, "attempts", step.Attempts, "max_attempts", step.MaxAttempts)

	if outcome == OutcomeCompleted && res.NormalizedStatus() == protocol.StatusCompleted {
		if err := o.expand(ctx, tx, task, step, res, log); err != nil {
			return "", err
		}
	}
	if err := o.coordinate(ctx, tx, task, stepUUID, log); err != nil {
		return "", err
	}
	return outcome, nil
}

// decodeResults parses workflow_steps.results strictly, as tasker-core's serde does.
func decodeResults(raw []byte) (protocol.StepExecutionResult, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return protocol.StepExecutionResult{}, errors.New("step has no results")
	}
	res, err := protocol.DecodeStepExecutionResultStrict(raw)
	if err != nil {
		return protocol.StepExecutionResult{}, fmt.Errorf("unparsable step result: %w", err)
	}
	return res, nil
}

// coordinate is tasker-core's TaskCoordinator after a step result: a task in steps_in_process
// moves to evaluating_results (StepCompleted(step), for failures too); then the task is advanced
// (finalized, or its newly ready steps enqueued). States a Go orchestrator never leaves visible
// (pending, initializing, enqueuing_steps: another orchestrator is mid-way or crashed there) are
// left alone for the recovery sweep; blocked_by_failures and terminal states are resting.
func (o *Orchestrator) coordinate(ctx context.Context, tx *db.PipeTx, task *taskRow, stepUUID uuid.UUID, log *slog.Logger) error {
	switch cur := task.Head.State; cur {
	case state.TaskStepsInProcess:
		if err := o.moveTask(tx, task, state.StepCompleted(stepUUID), nil); err != nil {
			return err
		}
	case state.TaskEvaluatingResults, state.TaskWaitingForDependencies, state.TaskWaitingForRetry:
	default:
		log.Debug("task not coordinated after step result", "task_state", cur)
		return nil
	}
	to, err := o.advance(ctx, tx, task, log)
	if err != nil {
		return err
	}
	if to.IsTerminal() || to == state.TaskBlockedByFailures {
		log.Info("task finalized", "task_state", to)
	}
	return nil
}

// expand runs decision-point and batch processing for a step that completed with status
// "completed". A decision or batch outcome that contradicts the template (ExpansionError,
// CycleError) is logged and its partial writes rolled back (a savepoint), as tasker-core logs
// and ignores it; database errors fail the whole result so it is retried.
func (o *Orchestrator) expand(ctx context.Context, tx *db.PipeTx, task *taskRow, step *stepRow, res protocol.StepExecutionResult, log *slog.Logger) error {
	tmpl := o.templates.Cached(task.NamedTaskUUID, task.TemplateAt)
	if tmpl == nil {
		var err error
		if tmpl, err = o.templates.Get(ctx, tx, task.NamedTaskUUID); err != nil {
			log.Warn("no template for decision/batch processing", "error", err)
			return nil
		}
	}
	def := tmpl.Step(step.Name)
	if def == nil {
		def = tmpl.Step(step.TemplateStepName)
	}
	if def == nil || (def.Type != template.StepDecision && def.Type != template.StepBatchable) {
		return nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	var created []string
	if def.Type == template.StepDecision {
		created, err = o.expandDecision(ctx, sp, task, tmpl, def, step, res)
	} else {
		created, err = o.expandBatch(ctx, sp, task, tmpl, def, step, res)
	}
	var ee *ExpansionError
	var ce *CycleError
	if errors.As(err, &ee) || errors.As(err, &ce) {
		log.Warn("outcome not applied", "error", err)
		return sp.Rollback(ctx)
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	if len(created) > 0 {
		log.Info("steps created from outcome", "step_type", def.Type, "steps", created)
	}
	task.noteExpansion(def.Type)
	return sp.Commit(ctx)
}

// archiveTx records why a result message is archived in its headers, then archives it, on tx.
func (o *Orchestrator) archiveTx(ctx context.Context, tx pgx.Tx, msgID int64, reason, detail string) error {
	_, err := o.queue.ArchiveWithReasonTx(ctx, tx, queue.StepResultsQueue, msgID, reason, detail, o.cfg.ProcessorUUID.String(), nil)
	return err
}

// archiveAlone archives a message with a reason in its own transaction.
func (o *Orchestrator) archiveAlone(ctx context.Context, msgID int64, reason, detail string) {
	tx, err := o.begin(ctx)
	if err == nil {
		if err = o.archiveTx(ctx, tx, msgID, reason, detail); err == nil {
			err = tx.Commit(ctx)
		}
		_ = tx.Rollback(ctx)
	}
	if err != nil {
		o.log.Error("archive failed", "msg_id", msgID, "error", err)
		o.metrics.countError(ErrKindResultArchive)
	}
}

func truncateBytes(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
