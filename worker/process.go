package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// Reasons a message is archived without running a handler; they are also written into the
// archived message's headers (key ArchiveReasonHeader) so the archive explains itself.
const (
	ReasonMalformed     = "malformed_message"
	ReasonStepNotFound  = "step_not_found"
	ReasonTaskMismatch  = "task_mismatch"
	ReasonNotClaimable  = "step_not_claimable"
	ReasonNoTemplate    = "template_step_missing"
	ReasonRecoveredStep = "recovered_abandoned_step"
	// ReasonBadDependencies: a claimed step's dependency results cannot be decoded; it is
	// reported as a permanent serialization failure.
	ReasonBadDependencies = "dependency_results_unreadable"
)

// ArchiveReasonHeader is the header key holding why the worker archived a message.
const ArchiveReasonHeader = "x-tasker-archive-reason"

// claim is a step this worker owns: it moved the step to in_progress with attempts = attempt.
type claim struct {
	queue   string
	msgID   int64
	attempt int32          // attempts after the claim
	head    state.StepHead // the in_progress transition the claim wrote: the fencing token for completion
	seq     protocol.TaskSequenceStep
	timeout time.Duration
	headers json.RawMessage // the message's PGMQ headers (W3C trace context)
}

// process handles one message end to end. It never returns an error: every outcome is either
// committed, archived with a reason, or left for redelivery, and logged.
func (w *Worker) process(ctx context.Context, ns, q string, msg queue.Message) {
	log := w.log.With("queue", q, "msg_id", msg.ID)
	sm, err := protocol.DecodeStepMessage(msg.Body)
	if err != nil {
		w.metrics.malformed.Add(1)
		log.Warn("archiving malformed step message", "error", err, "body", truncateForLog(msg.Body))
		w.archive(ctx, q, msg.ID, ReasonMalformed, err.Error())
		return
	}
	log = log.With("task_uuid", sm.TaskUUID, "step_uuid", sm.StepUUID, "correlation_id", sm.CorrelationID)

	c, claimed, err := w.claimFast(ctx, q, msg, sm, false, log)
	if err == nil && !claimed {
		c, err = w.claim(ctx, q, msg, sm, log)
	}
	if err != nil {
		w.metrics.dbErrors.Add(1)
		log.Error("claim failed; message will be redelivered after its visibility timeout", "error", err)
		return
	}
	if c == nil {
		return
	}
	w.metrics.claimed.Add(1)
	w.execute(ctx, c, log)
}

// processHint handles a message a notification carried, without reading the queue: when the
// claim takes the step it also takes the message (hinted claimFast); otherwise nothing was
// written and the message is left to the next read, which deals with whatever it is. It reports
// whether it claimed the step.
func (w *Worker) processHint(ctx context.Context, ns, q string, h queue.Hint) bool {
	sm, err := protocol.DecodeStepMessage(h.Body)
	if err != nil {
		return false // the read archives it
	}
	log := w.log.With("queue", q, "msg_id", h.MsgID, "task_uuid", sm.TaskUUID, "step_uuid", sm.StepUUID, "correlation_id", sm.CorrelationID)
	c, claimed, err := w.claimFast(ctx, q, queue.Message{ID: h.MsgID, Body: h.Body}, sm, true, log)
	switch {
	case err != nil:
		w.metrics.dbErrors.Add(1)
		log.Error("claim from notification failed; the message will be read again", "error", err)
	case !claimed:
		w.metrics.hintsMissed.Add(1)
	case c != nil:
		w.metrics.claimed.Add(1)
		w.metrics.hintsClaimed.Add(1)
		w.execute(ctx, c, log)
	}
	return claimed
}

// claimFast claims an enqueued step in one round trip: state.ClaimQuery (which also hydrates the
// step) and the dependency results in one batch, committed by the batch's implicit transaction.
// claimed is false, with nothing written, for anything but an enqueued step of the message's
// task; claim then decides under the row lock. A claimed step it cannot run (no template step,
// unreadable dependency results) is reported failed at once, so c is nil with claimed true.
// hinted says msg came in a notification, not from a read: the same batch then also takes the
// message (its visibility timeout, as a read sets it) if, and only if, the claim succeeded.
func (w *Worker) claimFast(ctx context.Context, q string, msg queue.Message, sm protocol.StepMessage, hinted bool, log *slog.Logger) (c *claim, claimed bool, err error) {
	dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.VisibilityTimeout)
	defer cancel()
	sql, args, tr, err := state.ClaimQuery(sm.StepUUID, sm.TaskUUID, stepColumns, stepJoins, state.TransitionOptions{})
	if err != nil {
		return nil, false, err
	}
	var (
		row    *stepRow
		deps   map[string]protocol.StepExecutionResult
		depErr error
	)
	b := &pgx.Batch{}
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		var err error
		row, err = scanStep(br.QueryRow(), &tr.Attempts, &tr.SortKey, &tr.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim step %s: %w", sm.StepUUID, err)
		}
		claimed = true
		return nil
	}
	b.Queue(dependencyResultsSQL, sm.StepUUID).Fn = func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("load dependency results: %w", err)
		}
		deps, depErr = scanDependencyResults(rows)
		return nil
	}
	if hinted {
		// Gated on the claim's own transition row: set_vt runs only when the claim happened.
		b.Queue(`SELECT headers FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)
		          WHERE EXISTS (SELECT 1 FROM tasker.workflow_step_transitions WHERE workflow_step_transition_uuid = $4)`,
			q, msg.ID, int(w.cfg.VisibilityTimeout/time.Second), tr.UUID).Fn = func(br pgx.BatchResults) error {
			var headers []byte
			err := br.QueryRow().Scan(&headers)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // not claimed, or the message is gone (its completion's delete finds nothing)
			}
			msg.Headers = rawOrNil(headers)
			return err
		}
	}
	if err := w.pool.SendBatch(dbctx, b).Close(); err != nil || !claimed {
		return nil, false, err
	}
	row.seq.DependencyResults = deps
	c = &claim{queue: q, msgID: msg.ID, attempt: tr.Attempts, head: tr.Head(), seq: row.seq, headers: msg.Headers}
	def, err := w.templates.stepDefinition(dbctx, w.pool, row.namedTaskUUID, row.templateAt, row.seq.WorkflowStep.TemplateStepName)
	c.seq.StepDefinition = def
	var res protocol.StepExecutionResult
	var reason string
	switch {
	case errors.Is(err, errTemplateStep) || errors.Is(err, errTemplateEmpty):
		log.Error("no template step definition for step", "error", err)
		res = protocol.Failure(sm.StepUUID, "Step definition not found: "+err.Error(), handlers.ErrorTypeHandlerNotFound, "", false, 0, nil)
		reason = ReasonNoTemplate
	case err != nil:
		w.metrics.dbErrors.Add(1)
		log.Error("step claimed but its template could not be read; it will be recovered after its timeout", "error", err)
		return nil, true, nil
	case depErr != nil:
		log.Error("dependency results cannot be decoded", "error", depErr)
		res = protocol.Failure(sm.StepUUID, "Dependency results cannot be decoded: "+depErr.Error(), handlers.ErrorTypeSerialization, "", false, 0, nil)
		reason = ReasonBadDependencies
	}
	if reason != "" {
		return nil, true, w.finish(ctx, c, res, reason)
	}
	c.timeout = w.stepTimeout(def)
	return c, true, nil
}

// claim is the slow path, for messages the fast claim did not apply to; it decides what to do
// under the step row lock, in one transaction:
//   - enqueued (or legacy pending): move to in_progress, attempts+1, hydrate; the message stays
//     (invisible, extended while the handler runs) until completion deletes it;
//   - in_progress past its timeout plus grace: the previous owner is gone, so report a retryable
//     timeout failure to orchestration through the legal path and archive the message;
//   - in_progress within its timeout: another live worker owns it; leave the message alone;
//   - anything else, or a step that does not exist: archive the message with the reason.
//
// Invariant: a step is in_progress for exactly one claim (the in_progress transition it wrote),
// and only the holder of that claim can complete it.
func (w *Worker) claim(ctx context.Context, q string, msg queue.Message, sm protocol.StepMessage, log *slog.Logger) (*claim, error) {
	dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.VisibilityTimeout)
	defer cancel()
	tx, err := w.pool.Begin(dbctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(dbctx) //nolint:errcheck // no-op after commit

	row, err := loadStep(dbctx, tx, sm.StepUUID)
	switch {
	case errors.Is(err, errStepNotFound):
		log.Warn("archiving message for unknown step")
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonStepNotFound, "no workflow step "+sm.StepUUID.String())
	case err != nil:
		return nil, err
	}
	if row.seq.WorkflowStep.TaskUUID != sm.TaskUUID {
		log.Warn("archiving message whose task_uuid does not own the step", "step_task_uuid", row.seq.WorkflowStep.TaskUUID)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonTaskMismatch, errTaskMismatch.Error())
	}
	def, err := w.templates.stepDefinition(dbctx, tx, row.namedTaskUUID, row.templateAt, row.seq.WorkflowStep.TemplateStepName)
	if errors.Is(err, errTemplateStep) || errors.Is(err, errTemplateEmpty) {
		// The step exists but its template does not describe it; no worker can run it. Report a
		// permanent failure through the normal path when claimable, so the task does not hang.
		log.Error("no template step definition for step", "error", err)
		if row.current.IsClaimable() {
			return nil, w.failWithoutRunning(dbctx, tx, q, msg.ID, row, protocol.Failure(sm.StepUUID,
				"Step definition not found: "+err.Error(), handlers.ErrorTypeHandlerNotFound, "", false, 0, nil), ReasonNoTemplate)
		}
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNoTemplate, err.Error())
	}
	if err != nil {
		return nil, err
	}
	row.seq.StepDefinition = def
	timeout := w.stepTimeout(def)

	switch {
	case row.current.IsClaimable():
		// handled below
	case row.current == state.StepInProgress:
		limit := timeout + w.cfg.StaleGrace
		if row.ageSeconds >= 0 && time.Duration(row.ageSeconds*float64(time.Second)) < limit {
			log.Debug("step is in progress on a live worker; leaving the message", "age_s", row.ageSeconds)
			w.metrics.inProgressElsewhere.Add(1)
			return nil, nil
		}
		w.metrics.recovered.Add(1)
		log.Warn("step abandoned in_progress by a dead worker; reporting a retryable timeout to orchestration",
			"age_s", row.ageSeconds, "limit", limit)
		res := protocol.Failure(sm.StepUUID,
			fmt.Sprintf("Step abandoned in progress: no result within %s (timeout %s + grace %s); the worker is presumed dead",
				limit, timeout, w.cfg.StaleGrace),
			handlers.ErrorTypeHandlerTimeout, "", true, 0, map[string]json.RawMessage{
				"recovered_by": mustJSON(w.cfg.WorkerID),
				"age_seconds":  mustJSON(row.ageSeconds),
			})
		return nil, w.failWithoutRunning(dbctx, tx, q, msg.ID, row, res, ReasonRecoveredStep)
	default:
		w.metrics.duplicates.Add(1)
		log.Info("archiving message for a step that is not claimable", "state", row.current)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNotClaimable, "step is "+string(row.current))
	}

	deps, err := loadDependencyResults(dbctx, tx, sm.StepUUID)
	if err != nil {
		return nil, err
	}
	row.seq.DependencyResults = deps
	tr, err := state.TransitionStep(dbctx, tx, sm.StepUUID, state.StepEvent{Type: state.StepEventStart},
		state.TransitionOptions{ExpectFrom: []state.StepState{row.current}, ClaimAttempt: true})
	var guard *state.GuardError
	if errors.As(err, &guard) {
		// A legacy claim of a pending step whose parents are not done: not runnable now, and the
		// orchestrator sends a fresh message when it enqueues the step. Nothing was written.
		w.metrics.duplicates.Add(1)
		log.Info("archiving message for a pending step with unmet dependencies", "reason", guard.Reason)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNotClaimable, guard.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("claim transition: %w", err)
	}
	if err := tx.Commit(dbctx); err != nil {
		return nil, err
	}
	return &claim{queue: q, msgID: msg.ID, attempt: tr.Attempts, head: tr.Head(), seq: row.seq, timeout: timeout, headers: msg.Headers}, nil
}

// failWithoutRunning reports res for a step without running a handler (recovery of an abandoned
// step, or a step no template describes): claim it first when it is still claimable, then the
// same completion writes as a handler failure, and archive the message with reason.
func (w *Worker) failWithoutRunning(ctx context.Context, tx pgx.Tx, q string, msgID int64, row *stepRow, res protocol.StepExecutionResult, reason string) error {
	head := row.head
	if row.current.IsClaimable() {
		tr, err := state.TransitionStep(ctx, tx, head.StepUUID, state.StepEvent{Type: state.StepEventStart},
			state.TransitionOptions{ExpectFrom: []state.StepState{row.current}, ClaimAttempt: true})
		if err != nil {
			return err
		}
		head = tr.Head()
	}
	b := &pgx.Batch{}
	if err := w.queueResult(b, head, row.seq, res); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if err := w.archiveTx(ctx, tx, q, msgID, reason, res.Error.Message); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// queueResult queues the heart of completion on b: the transition from head (the claim) to
// enqueued(_as_error)_for_orchestration with the result in metadata and workflow_steps.results,
// and the message to orchestration_step_results.
func (w *Worker) queueResult(b *pgx.Batch, head state.StepHead, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	ev := state.StepEvent{Type: state.StepEventEnqueueForOrchestration, Data: data}
	if !res.Success {
		ev.Type = state.StepEventEnqueueAsErrorForOrchestration
	}
	task := seq.Task.Task
	if _, err := state.QueueStepTransition(b, head, ev, state.TransitionOptions{
		ExpectFrom:    []state.StepState{state.StepInProgress},
		WorkerUUID:    w.workerUUID,
		CorrelationID: task.CorrelationID,
	}); err != nil {
		return err
	}
	if err := w.queue.QueueSendWithNotify(b, w.resultsQueue, protocol.StepMessage{
		TaskUUID: task.TaskUUID, StepUUID: res.StepUUID, CorrelationID: task.CorrelationID,
	}, 0, nil); err != nil {
		return fmt.Errorf("notify orchestration: %w", err)
	}
	return nil
}

// errLateCompletion means the claim this worker held was superseded (the step was recovered
// and possibly claimed again); the result must not be applied.
var errLateCompletion = errors.New("late completion rejected: the step is no longer held by this claim")

// complete persists the handler's result and deletes the consumed message.
func (w *Worker) complete(ctx context.Context, c *claim, res protocol.StepExecutionResult) error {
	return w.finish(ctx, c, res, "")
}

// finish persists res for claim c in ONE transaction: the transition fenced on the claim's head
// (state.QueueStepTransition), workflow_steps.results, the orchestration notification, the
// domain events declared durable, and the consumed message's deletion (or, with a reason, its
// archiving). A crash at any point leaves either nothing or everything. Without durable events
// or a reason it is one round trip: a batch sent outside a transaction commits as a whole.
func (w *Worker) finish(ctx context.Context, c *claim, res protocol.StepExecutionResult, reason string) error {
	b := &pgx.Batch{}
	if err := w.queueResult(b, c.head, c.seq, res); err != nil {
		return err
	}
	if reason == "" {
		if err := w.queue.QueueDelete(b, c.queue, c.msgID, nil); err != nil {
			return err
		}
	}
	durable := w.events != nil && len(c.seq.StepDefinition.PublishesEvents) > 0
	if reason == "" && !durable {
		dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return fenced(w.pool.SendBatch(dbctx, b).Close())
	}
	return w.inTx(ctx, 30*time.Second, func(ctx context.Context, tx pgx.Tx) error {
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
func (w *Worker) inTx(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, tx pgx.Tx) error) error {
	dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	tx, err := w.pool.Begin(dbctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(dbctx) //nolint:errcheck // no-op after commit
	if err := fn(dbctx, tx); err != nil {
		return err
	}
	return tx.Commit(dbctx)
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
	// The step row lock comes first, so the check below reads after any transition that held it.
	b := &pgx.Batch{}
	b.Queue(lockStepSQL, c.head.StepUUID)
	var ct pgconn.CommandTag
	b.Queue(`UPDATE tasker.workflow_steps
	   SET checkpoint = jsonb_set($2::jsonb, '{history}',
	         COALESCE(checkpoint->'history', '[]'::jsonb)
	           || jsonb_build_array(jsonb_build_object('cursor', $3::jsonb, 'timestamp', to_jsonb(now())))),
	       updated_at = NOW()
	 WHERE workflow_step_uuid = $1
	   AND EXISTS (SELECT 1 FROM tasker.workflow_step_transitions
	                WHERE workflow_step_transition_uuid = $4 AND most_recent)`,
		c.head.StepUUID, rec, []byte(cursor), c.head.TransitionUUID).Exec(func(tag pgconn.CommandTag) error {
		ct = tag
		return nil
	})
	dbctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.pool.SendBatch(dbctx, b).Close(); err != nil {
		return err
	}
	if ct.RowsAffected() == 0 {
		return errLateCompletion
	}
	return nil
}

// archive moves a message to the archive with a reason header, outside any other transaction.
func (w *Worker) archive(ctx context.Context, q string, msgID int64, reason, detail string) {
	if err := w.inTx(ctx, 10*time.Second, func(ctx context.Context, tx pgx.Tx) error {
		return w.archiveTx(ctx, tx, q, msgID, reason, detail)
	}); err != nil {
		w.log.Error("archive failed; message will be redelivered", "queue", q, "msg_id", msgID, "error", err)
	}
}

// archiveCommit archives the message on tx and commits.
func (w *Worker) archiveCommit(ctx context.Context, tx pgx.Tx, q string, msgID int64, reason, detail string) error {
	if err := w.archiveTx(ctx, tx, q, msgID, reason, detail); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// archiveTx records reason in the message's headers and archives it, on tx.
func (w *Worker) archiveTx(ctx context.Context, tx pgx.Tx, q string, msgID int64, reason, detail string) error {
	if err := w.queue.AnnotateTx(ctx, tx, q, msgID, map[string]string{
		ArchiveReasonHeader:          reason,
		ArchiveReasonHeader + "-why": detail,
		"x-tasker-archived-by":       w.cfg.WorkerID,
	}); err != nil {
		return err
	}
	if _, err := w.queue.ArchiveTx(ctx, tx, q, msgID); err != nil {
		return err
	}
	w.metrics.archived.Add(1)
	return nil
}

func (w *Worker) stepTimeout(def protocol.StepDefinition) time.Duration {
	if d := def.Timeout(); d > 0 {
		return d
	}
	return w.cfg.StepTimeout
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func truncateForLog(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
