package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sourcegraph/conc/pool"

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
	// ReasonNamespaceMismatch: the step's task is in another namespace than the queue's (one
	// spelled differently in case shares the queue's table); the step is left alone.
	ReasonNamespaceMismatch = "namespace_mismatch"
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
	slot    *slot           // the handler slot the step runs in (nil outside the fetcher's dispatch)
}

// claimMsg is a decoded step message and its logger.
type claimMsg struct {
	msg queue.Message
	sm  protocol.StepMessage
	log *slog.Logger
}

// newClaimMsg decodes msg of queue q and gives it a logger naming the message, task and step.
func (w *Worker) newClaimMsg(q string, msg queue.Message) (claimMsg, error) {
	sm, err := protocol.DecodeStepMessage(msg.Body)
	if err != nil {
		return claimMsg{}, err
	}
	log := w.log.With("queue", q, "msg_id", msg.ID, "task_uuid", sm.TaskUUID, "step_uuid", sm.StepUUID, "correlation_id", sm.CorrelationID)
	return claimMsg{msg: msg, sm: sm, log: log}, nil
}

// decode decodes msg; a malformed message is archived and ok is false.
func (w *Worker) decode(ctx context.Context, q string, msg queue.Message) (m claimMsg, ok bool) {
	m, err := w.newClaimMsg(q, msg)
	if err != nil {
		w.metrics.malformed.Add(1)
		w.log.Warn("archiving malformed step message", "queue", q, "msg_id", msg.ID, "error", err, "body", truncateForLog(msg.Body))
		w.archive(ctx, q, msg.ID, ReasonMalformed, err.Error())
		return m, false
	}
	return m, true
}

// process handles one message end to end. It never returns an error: every outcome is either
// committed, archived with a reason, or left for redelivery, and logged.
func (w *Worker) process(ctx context.Context, ns, q string, msg queue.Message, s *slot) {
	m, ok := w.decode(ctx, q, msg)
	if !ok {
		return
	}
	out, err := w.claimFast(ctx, q, []claimMsg{m}, false)
	var fc fastClaim
	if err == nil {
		fc = out[0]
	}
	w.run(ctx, q, m, fc, err, s)
}

// run takes a message on from claimFast's outcome: it executes the claimed step, or decides
// under the row lock (claim) what a message the fast claim did not apply to means.
func (w *Worker) run(ctx context.Context, q string, m claimMsg, fc fastClaim, err error, s *slot) {
	if err == nil {
		err = fc.err
	}
	c := fc.c
	if err == nil && !fc.claimed {
		c, err = w.claim(ctx, q, m.msg, m.sm, m.log)
	}
	if err != nil {
		w.metrics.dbErrors.Add(1)
		m.log.Error("claim failed; message will be redelivered after its visibility timeout", "error", err)
		return
	}
	if c == nil {
		return
	}
	w.metrics.claimed.Add(1)
	c.slot = s
	w.execute(ctx, c, m.log)
}

// claimGroup claims the steps of messages read together with one claimFast, then hands each
// message to the pool (holding the slot the fetcher acquired for it): a claimed step runs its
// handler, any other message takes the slow path. Malformed messages, a second message for a
// step already in the group, and all of them when the group claim fails, are processed one by
// one.
func (w *Worker) claimGroup(ctx context.Context, ns, q string, msgs []queue.Message, p *pool.Pool) {
	group := make([]claimMsg, 0, len(msgs))
	seen := make(map[uuid.UUID]bool, len(msgs))
	for _, msg := range msgs {
		m, err := w.newClaimMsg(q, msg)
		if err != nil || seen[m.sm.StepUUID] {
			w.dispatch(p, func(s *slot) { w.process(ctx, ns, q, msg, s) })
			continue
		}
		seen[m.sm.StepUUID] = true
		group = append(group, m)
	}
	if len(group) == 0 {
		return
	}
	out, err := w.claimFast(ctx, q, group, false)
	if err != nil && len(group) > 1 {
		w.log.Warn("group claim failed; claiming its messages one by one", "queue", q, "messages", len(group), "error", err)
		for _, m := range group {
			w.dispatch(p, func(s *slot) { w.process(ctx, ns, q, m.msg, s) })
		}
		return
	}
	for i, m := range group {
		var fc fastClaim
		if err == nil {
			fc = out[i]
		}
		w.dispatch(p, func(s *slot) { w.run(ctx, q, m, fc, err, s) })
	}
}

// processHint handles a message a notification carried, without reading the queue: when the
// claim takes the step it also takes the message (hinted claimFast); otherwise nothing was
// written and the message is left to the next read, which deals with whatever it is. It reports
// whether it claimed the step.
func (w *Worker) processHint(ctx context.Context, ns, q string, h queue.Hint, s *slot) bool {
	m, err := w.newClaimMsg(q, queue.Message{ID: h.MsgID, Body: h.Body})
	if err != nil {
		return false // the read archives it
	}
	log := m.log
	out, err := w.claimFast(ctx, q, []claimMsg{m}, true)
	if err == nil {
		w.metrics.reads.Mark(q) // the claim took the message: as good as a read
		err = out[0].err
	}
	switch {
	case err != nil:
		w.metrics.dbErrors.Add(1)
		log.Error("claim from notification failed; the message will be read again", "error", err)
		return out != nil && out[0].claimed
	case !out[0].claimed:
		w.metrics.hintsMissed.Add(1)
	case out[0].c != nil:
		w.metrics.claimed.Add(1)
		w.metrics.hintsClaimed.Add(1)
		out[0].c.slot = s
		w.execute(ctx, out[0].c, log)
	}
	return out[0].claimed
}

// fastClaim is what claimFast did with one message. claimed false means nothing was written:
// the step is not an enqueued step of the message's task, and claim decides under the row lock.
// A claimed step it could not run (no template step, unreadable dependency results) was
// reported failed at once, so c is nil; err is a failure after the claim.
type fastClaim struct {
	c       *claim
	claimed bool
	err     error
}

// claimFast claims the enqueued steps of msgs (distinct steps) in one round trip:
// state.ClaimQuery (which also hydrates them) and their dependency results in one batch,
// committed by the batch's implicit transaction. err means nothing was claimed. hinted says the
// one message came in a notification, not from a read: the same batch then also takes the
// message (its visibility timeout, as a read sets it) if, and only if, the claim succeeded.
func (w *Worker) claimFast(ctx context.Context, q string, msgs []claimMsg, hinted bool) ([]fastClaim, error) {
	dbctx, cancel := w.dbCtx(ctx)
	defer cancel()
	n := len(msgs)
	refs, steps := make([]state.StepRef, n), make([]uuid.UUID, n)
	for i, m := range msgs {
		refs[i], steps[i] = state.StepRef{StepUUID: m.sm.StepUUID, TaskUUID: m.sm.TaskUUID}, m.sm.StepUUID
	}
	// Only steps of the queue's own namespace; the slow path archives any other.
	sql, args, trs, err := state.ClaimQuery(refs, stepColumns, stepJoins, state.TransitionOptions{TaskNamespace: queue.NamespaceOfQueue(q)})
	if err != nil {
		return nil, err
	}
	var (
		rows    = make([]*stepRow, n)
		deps    []map[string]protocol.StepExecutionResult
		depErrs []error
	)
	b := &pgx.Batch{}
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		rs, err := br.Query()
		if err != nil {
			return fmt.Errorf("claim steps: %w", err)
		}
		defer rs.Close()
		for rs.Next() {
			var (
				attempts int32
				sortKey  int
				created  time.Time
				i        int
			)
			row, err := scanStep(rs, &attempts, &sortKey, &created, &i)
			if err != nil {
				return fmt.Errorf("claim steps: %w", err)
			}
			if i < 0 || i >= n {
				return fmt.Errorf("claim steps: row for step %d of %d", i, n)
			}
			rows[i] = row
			trs[i].Attempts, trs[i].SortKey, trs[i].CreatedAt = attempts, sortKey, created
		}
		if err := rs.Err(); err != nil {
			return fmt.Errorf("claim steps: %w", err)
		}
		return nil
	}
	depSQL, depArg := dependencyResultsQuery(steps)
	b.Queue(depSQL, depArg).Fn = func(br pgx.BatchResults) error {
		rs, err := br.Query()
		if err == nil {
			deps, depErrs, err = scanDependencyResults(rs, n)
		}
		if err != nil {
			return fmt.Errorf("load dependency results: %w", err)
		}
		return nil
	}
	if hinted {
		// Gated on the claim's own transition row: set_vt runs only when the claim happened.
		m := &msgs[0]
		b.Queue(`SELECT headers FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)
		          WHERE EXISTS (SELECT 1 FROM tasker.workflow_step_transitions WHERE workflow_step_transition_uuid = $4)`,
			q, m.msg.ID, int(w.cfg.VisibilityTimeout/time.Second), trs[0].UUID).Fn = func(br pgx.BatchResults) error {
			var headers []byte
			err := br.QueryRow().Scan(&headers)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // not claimed, or the message is gone (its completion's delete finds nothing)
			}
			m.msg.Headers = rawOrNil(headers)
			return err
		}
	}
	if err := w.pool.SendBatch(dbctx, b).Close(); err != nil {
		return nil, err
	}
	out := make([]fastClaim, n)
	for i, m := range msgs {
		if rows[i] == nil {
			continue
		}
		rows[i].seq.DependencyResults = deps[i]
		c, err := w.prepareClaim(ctx, dbctx, q, m, rows[i], trs[i], depErrs[i])
		out[i] = fastClaim{c: c, claimed: true, err: err}
	}
	return out, nil
}

// prepareClaim completes a fast claim: the step definition from the template, the timeout. A
// step it cannot run (no template step, unreadable dependency results) is reported failed at
// once and c is nil; so is a step whose template could not be read (it is recovered after its
// timeout).
func (w *Worker) prepareClaim(ctx, dbctx context.Context, q string, m claimMsg, row *stepRow, tr *state.StepTransition, depErr error) (*claim, error) {
	c := &claim{queue: q, msgID: m.msg.ID, attempt: tr.Attempts, head: tr.Head(), seq: row.seq, headers: m.msg.Headers}
	def, err := w.templates.stepDefinition(dbctx, w.pool, row.namedTaskUUID, row.templateAt, row.seq.WorkflowStep.TemplateStepName)
	c.seq.StepDefinition = def
	var res protocol.StepExecutionResult
	var reason string
	switch {
	case errors.Is(err, errTemplateStep) || errors.Is(err, errTemplateEmpty):
		m.log.Error("no template step definition for step", "error", err)
		res = protocol.Failure(m.sm.StepUUID, "Step definition not found: "+err.Error(), handlers.ErrorTypeHandlerNotFound, "", false, 0, nil)
		reason = ReasonNoTemplate
	case err != nil:
		w.metrics.dbErrors.Add(1)
		m.log.Error("step claimed but its template could not be read; it will be recovered after its timeout", "error", err)
		return nil, nil
	case depErr != nil:
		m.log.Error("dependency results cannot be decoded", "error", depErr)
		res = protocol.Failure(m.sm.StepUUID, "Dependency results cannot be decoded: "+depErr.Error(), handlers.ErrorTypeSerialization, "", false, 0, nil)
		reason = ReasonBadDependencies
	}
	if reason != "" {
		return nil, w.finish(ctx, c, res, reason)
	}
	c.timeout = w.stepTimeout(def)
	return c, nil
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
	dbctx, cancel := w.dbCtx(ctx)
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
	if ns := queue.NamespaceOfQueue(q); row.seq.Task.NamespaceName != ns {
		log.Warn("archiving message for a step of another namespace", "step_namespace", row.seq.Task.NamespaceName)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNamespaceMismatch,
			fmt.Sprintf("the step's task is in namespace %q, not %q", row.seq.Task.NamespaceName, ns))
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
	ev, opts, err := w.resultEvent(seq, res)
	if err != nil {
		return err
	}
	if _, err := state.QueueStepTransition(b, head, ev, opts); err != nil {
		return err
	}
	task := seq.Task.Task
	if err := w.queue.QueueSendWithNotify(b, w.resultsQueue, protocol.StepMessage{
		TaskUUID: task.TaskUUID, StepUUID: res.StepUUID, CorrelationID: task.CorrelationID,
	}, 0, nil); err != nil {
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

// complete persists the handler's result and deletes the consumed message.
func (w *Worker) complete(ctx context.Context, c *claim, res protocol.StepExecutionResult) error {
	return w.finish(ctx, c, res, "")
}

// finish persists res for claim c in ONE transaction: the transition fenced on the claim's head,
// workflow_steps.results, the orchestration notification, the domain events declared durable,
// and the consumed message's deletion (or, with a reason, its archiving). A crash at any point
// leaves either nothing or everything. Without durable events or a reason the completion is
// grouped with others being written at the same time (completeGrouped); otherwise, and outside
// Run, it is written alone (finishOne).
func (w *Worker) finish(ctx context.Context, c *claim, res protocol.StepExecutionResult, reason string) error {
	durable := w.durable(c)
	if reason == "" && !durable && w.completions != nil {
		return w.completeGrouped(c, res)
	}
	return w.finishOne(ctx, c, res, reason)
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

// finishOne is finish for one completion: the transition queued by state.QueueStepTransition
// with the other writes; without durable events or a reason it is one round trip, since a batch
// sent outside a transaction commits as a whole.
func (w *Worker) finishOne(ctx context.Context, c *claim, res protocol.StepExecutionResult, reason string) error {
	b := &pgx.Batch{}
	if err := w.queueResult(b, c.head, c.seq, res); err != nil {
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
		return fenced(w.pool.SendBatch(dbctx, b).Close())
	}
	return w.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
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
func (w *Worker) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	dbctx, cancel := w.dbCtx(ctx)
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
	dbctx, cancel := w.dbCtx(ctx)
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
	if err := w.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
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
