package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sourcegraph/conc/pool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

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
	// The claim commits without waiting for its WAL flush: lost in a crash, the step is back in
	// enqueued with its message (whose read is lost too) and runs again, as after a worker's
	// crash; the completion's durable commit flushes the claim before it.
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	// Only steps of the queue's own namespace; the slow path archives any other.
	cl, err := state.QueueClaim(b, refs, state.TransitionOptions{TaskNamespace: queue.NamespaceOfQueue(q)})
	if err != nil {
		return nil, err
	}
	deps := state.QueueDependencyResults(b, steps)
	trs := cl.Transitions
	var hintHeaders []byte
	if hinted {
		// Gated on the claim's own transition row: set_vt runs only when the claim happened.
		// Not taken: not claimed, or the message is gone (its completion's delete finds nothing).
		if err := w.queue.QueueTakeIf(b, q, msgs[0].msg.ID, int(w.cfg.VisibilityTimeout/time.Second),
			state.TransitionExistsSQL, trs[0].UUID, nil, &hintHeaders); err != nil {
			return nil, err
		}
	}
	if err := w.pool.SendBatch(dbctx, b).Close(); err != nil {
		return nil, err
	}
	if hinted {
		msgs[0].msg.Headers = state.RawOrNil(hintHeaders)
	}
	out := make([]fastClaim, n)
	for i, m := range msgs {
		row := cl.Steps[i]
		if row == nil {
			continue
		}
		row.Seq.DependencyResults = deps.Results[i]
		c, err := w.prepareClaim(ctx, dbctx, q, m, row, trs[i], deps.Errs[i])
		out[i] = fastClaim{c: c, claimed: true, err: err}
	}
	return out, nil
}

// prepareClaim completes a fast claim: the step definition from the template, the timeout. A
// step it cannot run (no template step, unreadable dependency results) is reported failed at
// once and c is nil; so is a step whose template could not be read (it is recovered after its
// timeout).
func (w *Worker) prepareClaim(ctx, dbctx context.Context, q string, m claimMsg, row *state.StepRow, tr *state.StepTransition, depErr error) (*claim, error) {
	c := &claim{queue: q, msgID: m.msg.ID, attempt: tr.Attempts, head: tr.Head(), seq: row.Seq, headers: m.msg.Headers}
	def, err := w.templates.StepDefinition(dbctx, w.pool, row.NamedTaskUUID, row.TemplateAt, row.Seq.WorkflowStep.TemplateStepName)
	c.seq.StepDefinition = def
	var res protocol.StepExecutionResult
	var reason string
	switch {
	case noDefinition(err):
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
		return nil, w.complete(ctx, c, res, reason)
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

	row, err := state.LoadStep(dbctx, tx, sm.StepUUID)
	switch {
	case errors.Is(err, state.ErrStepNotFound):
		log.Warn("archiving message for unknown step")
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonStepNotFound, "no workflow step "+sm.StepUUID.String())
	case err != nil:
		return nil, err
	}
	if row.Seq.WorkflowStep.TaskUUID != sm.TaskUUID {
		log.Warn("archiving message whose task_uuid does not own the step", "step_task_uuid", row.Seq.WorkflowStep.TaskUUID)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonTaskMismatch, errTaskMismatch.Error())
	}
	if ns := queue.NamespaceOfQueue(q); row.Seq.Task.NamespaceName != ns {
		log.Warn("archiving message for a step of another namespace", "step_namespace", row.Seq.Task.NamespaceName)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNamespaceMismatch,
			fmt.Sprintf("the step's task is in namespace %q, not %q", row.Seq.Task.NamespaceName, ns))
	}
	def, err := w.templates.StepDefinition(dbctx, tx, row.NamedTaskUUID, row.TemplateAt, row.Seq.WorkflowStep.TemplateStepName)
	if noDefinition(err) {
		// The step exists but its template does not describe it; no worker can run it. Report a
		// permanent failure through the normal path when claimable, so the task does not hang.
		log.Error("no template step definition for step", "error", err)
		if row.Current.IsClaimable() {
			return nil, w.failWithoutRunning(dbctx, tx, q, msg.ID, row, protocol.Failure(sm.StepUUID,
				"Step definition not found: "+err.Error(), handlers.ErrorTypeHandlerNotFound, "", false, 0, nil), ReasonNoTemplate)
		}
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNoTemplate, err.Error())
	}
	if err != nil {
		return nil, err
	}
	row.Seq.StepDefinition = def
	timeout := w.stepTimeout(def)

	age := time.Duration(row.AgeSeconds * float64(time.Second)) // negative: never attempted
	switch decideClaim(row.Current, age, timeout, w.cfg.StaleGrace) {
	case actClaim:
		// below
	case actLeave:
		log.Debug("step is in progress on a live worker; leaving the message", "age_s", row.AgeSeconds)
		w.metrics.inProgressElsewhere.Add(1)
		return nil, nil
	case actRecover:
		limit := timeout + w.cfg.StaleGrace
		w.metrics.recovered.Add(1)
		log.Warn("step abandoned in_progress by a dead worker; reporting a retryable timeout to orchestration",
			"age_s", row.AgeSeconds, "limit", limit)
		res := protocol.Failure(sm.StepUUID,
			fmt.Sprintf("Step abandoned in progress: no result within %s (timeout %s + grace %s); the worker is presumed dead",
				limit, timeout, w.cfg.StaleGrace),
			handlers.ErrorTypeHandlerTimeout, "", true, 0, map[string]json.RawMessage{
				"recovered_by": mustJSON(w.cfg.WorkerID),
				"age_seconds":  mustJSON(row.AgeSeconds),
			})
		return nil, w.failWithoutRunning(dbctx, tx, q, msg.ID, row, res, ReasonRecoveredStep)
	case actArchive:
		w.metrics.duplicates.Add(1)
		log.Info("archiving message for a step that is not claimable", "state", row.Current)
		return nil, w.archiveCommit(dbctx, tx, q, msg.ID, ReasonNotClaimable, "step is "+string(row.Current))
	}

	deps, err := state.DependencyResults(dbctx, tx, sm.StepUUID)
	if err != nil {
		return nil, err
	}
	row.Seq.DependencyResults = deps
	tr, err := state.TransitionStep(dbctx, tx, sm.StepUUID, state.StepEvent{Type: state.StepEventStart},
		state.TransitionOptions{ExpectFrom: []state.StepState{row.Current}, ClaimAttempt: true})
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
	return &claim{queue: q, msgID: msg.ID, attempt: tr.Attempts, head: tr.Head(), seq: row.Seq, timeout: timeout, headers: msg.Headers}, nil
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
