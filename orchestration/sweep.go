package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// readyTasksSQL finds tasks with a step ready to run: a pending step whose parents are done, or
// a waiting_for_retry step whose backoff has elapsed. A cheap EXISTS over the task's steps (state,
// backoff, parents) filters the candidates, so tasks waiting out a long backoff cost little;
// get_step_readiness_status, the authority, confirms. Tasks in evaluating_results, steps_in_process or
// pending must have rested there for $1 seconds (see Config.activeSettle). Unlike tasker-core's
// get_next_ready_tasks, waiting tasks are not dropped after 30/60 minutes in state.
const readyTasksSQL = `
SELECT t.task_uuid
  FROM tasker.tasks t
  JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
 WHERE NOT t.complete
   AND (tt.to_state IN ('waiting_for_dependencies', 'waiting_for_retry')
        OR (tt.to_state IN ('evaluating_results', 'steps_in_process', 'pending')
            AND tt.created_at <= now() - make_interval(secs => $1)))
   AND EXISTS (SELECT 1
                 FROM tasker.workflow_steps ws
                 LEFT JOIN tasker.workflow_step_transitions st
                        ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
                WHERE ws.task_uuid = t.task_uuid AND NOT ws.processed AND NOT ws.in_process
                  AND (COALESCE(st.to_state, 'pending') = 'pending'
                       OR (st.to_state = 'waiting_for_retry'
                           AND (ws.backoff_request_seconds IS NULL OR ws.last_attempted_at IS NULL
                                OR ws.last_attempted_at + make_interval(secs => ws.backoff_request_seconds) <= now())))
                  AND NOT EXISTS (SELECT 1
                                    FROM tasker.workflow_step_edges e
                                    LEFT JOIN tasker.workflow_step_transitions pst
                                           ON pst.workflow_step_uuid = e.from_step_uuid AND pst.most_recent
                                   WHERE e.to_step_uuid = ws.workflow_step_uuid
                                     AND COALESCE(pst.to_state, 'pending') NOT IN ('complete', 'resolved_manually')))
   AND (tt.to_state = 'pending'
        OR EXISTS (SELECT 1 FROM tasker.get_step_readiness_status(t.task_uuid) r WHERE r.ready_for_execution))
 ORDER BY t.priority DESC, t.created_at
 LIMIT $2`

// ReadinessSweep enqueues the ready steps of tasks that no step result will wake: retries whose
// backoff elapsed, and tasks waiting for dependencies. Each task is handled in its own
// transaction that locks it with SKIP LOCKED, so concurrent orchestrators split the work and
// never enqueue a step twice: waiting_for_dependencies → evaluating_results
// (DependenciesReady) → enqueuing_steps (ReadyStepsFound(n)) → steps_in_process
// (StepsEnqueued), with the step transitions and worker messages in the same commit. It returns
// how many tasks it advanced.
func (o *Orchestrator) ReadinessSweep(ctx context.Context) (int, error) {
	return o.advanceFound(ctx, readyTasksSQL, o.cfg.activeSettle().Seconds(), "readiness", "ready tasks")
}

// advanceFound advances, each in its own transaction, the tasks sql finds ($1: seconds, $2:
// limit); source names the sweep in logs and what the tasks in errors.
func (o *Orchestrator) advanceFound(ctx context.Context, sql string, seconds float64, source, what string) (int, error) {
	ids, err := o.queryTaskIDs(ctx, sql, seconds, o.cfg.SweepBatchSize)
	if err != nil {
		return 0, fmt.Errorf("orchestration: find %s: %w", what, err)
	}
	n := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		ok, err := o.advanceTask(ctx, id, source)
		if err != nil {
			o.log.Error(source+": task not advanced", "task_uuid", id, "error", err)
			o.metrics.countError(ErrKindTaskAdvance)
			continue
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// advanceTask locks one task (skipping it if another transaction holds it) and advances it, in
// one transaction. It reports whether the task changed state.
func (o *Orchestrator) advanceTask(ctx context.Context, taskUUID uuid.UUID, why string) (bool, error) {
	wctx, cancel := o.dbCtx(ctx)
	defer cancel()
	tx, err := o.begin(wctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit
	task, err := lockTask(wctx, tx, taskUUID, true)
	if err != nil || task == nil {
		return false, err
	}
	from := task.Head.State
	log := o.log.With("task_uuid", taskUUID, "sweep", why)
	to, err := o.advance(wctx, tx, task, log)
	if err != nil {
		return false, err
	}
	if err := o.committedErr(tx.Commit(wctx), task); err != nil {
		return false, err
	}
	if to != from {
		log.Info("task advanced", "from", from, "to", to)
	}
	return to != from, nil
}

func (o *Orchestrator) queryTaskIDs(ctx context.Context, sql string, args ...any) ([]uuid.UUID, error) {
	ctx, cancel := o.sweepCtx(ctx)
	defer cancel()
	rows, err := o.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// RecoveryReport counts what one recovery sweep repaired.
type RecoveryReport struct {
	AbandonedSteps int // in_progress steps of dead workers reported as retryable timeouts
	StuckTasks     int // tasks re-evaluated after resting too long in an active state
	OrphanResults  int // step results processed without a queue message
}

// RecoverySweep repairs what tasker-core leaves to its staleness detector (which only moves such
// tasks to error after 30+ minutes) or does not cover at all:
//
//   - Abandoned steps: a step in_progress whose last_attempted_at + timeout (template
//     timeout_seconds, else DefaultStepTimeout) + StaleGrace has passed belongs to a dead
//     worker. It is moved in_progress → enqueued_as_error_for_orchestration with a retryable
//     handler_timeout failure (the shape the worker itself writes when it finds such a step on
//     redelivery) and processed at once like any result, so it is retried within max_attempts.
//     The worker's own recovery and this one both lock the step and require in_progress, so
//     exactly one of them applies; a late result from the presumed-dead worker is rejected by
//     the worker's claim fence.
//   - Stuck tasks: a task resting in pending, initializing, enqueuing_steps, or evaluating_results
//     with nothing in flight, for StuckThreshold (an orchestrator, e.g. a Rust one, crashed
//     between its separate commits), is re-evaluated and driven on.
//   - Orphan results: a step in enqueued_*_for_orchestration for StuckThreshold with no message
//     in orchestration_step_results (its sender crashed before sending, or the message was
//     archived after failing repeatedly) is processed directly.
func (o *Orchestrator) RecoverySweep(ctx context.Context) (RecoveryReport, error) {
	var rep RecoveryReport
	if err := o.EnsureQueues(ctx); err != nil {
		return rep, err
	}
	var errs []error
	n, err := o.recoverAbandonedSteps(ctx)
	rep.AbandonedSteps = n
	errs = append(errs, err)
	n, err = o.recoverStuckTasks(ctx)
	rep.StuckTasks = n
	errs = append(errs, err)
	n, err = o.recoverOrphanResults(ctx)
	rep.OrphanResults = n
	errs = append(errs, err)
	errs = append(errs, o.staleSweep(ctx))
	return rep, errors.Join(errs...)
}

const abandonedStepsSQL = `
SELECT ws.workflow_step_uuid, ws.task_uuid, t.named_task_uuid,
       COALESCE(ws.inputs->>'__template_step_name', ns.name::text)
  FROM tasker.workflow_steps ws
  JOIN tasker.workflow_step_transitions st
    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent AND st.to_state = 'in_progress'
  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
  JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
 WHERE NOT t.complete
   AND COALESCE(ws.last_attempted_at, st.created_at) < timezone('UTC', clock_timestamp()) - make_interval(secs => $1)
 ORDER BY COALESCE(ws.last_attempted_at, st.created_at)
 LIMIT $2`

func (o *Orchestrator) recoverAbandonedSteps(ctx context.Context) (int, error) {
	qctx, cancel := o.sweepCtx(ctx)
	defer cancel()
	rows, err := o.pool.Query(qctx, abandonedStepsSQL, o.cfg.StaleGrace.Seconds(), o.cfg.SweepBatchSize)
	if err != nil {
		return 0, fmt.Errorf("orchestration: find abandoned steps: %w", err)
	}
	type cand struct {
		step, task, namedTask uuid.UUID
		templateStep          string
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		err := r.Scan(&c.step, &c.task, &c.namedTask, &c.templateStep)
		return c, err
	})
	if err != nil {
		return 0, fmt.Errorf("orchestration: find abandoned steps: %w", err)
	}
	n := 0
	for _, c := range cands {
		if ctx.Err() != nil {
			break
		}
		timeout := o.cfg.DefaultStepTimeout
		tctx, tcancel := o.dbCtx(ctx)
		tmpl, err := o.templates.Get(tctx, o.pool, c.namedTask)
		tcancel()
		if err == nil {
			if def := tmpl.Step(c.templateStep); def != nil && def.TimeoutSeconds != nil && *def.TimeoutSeconds > 0 {
				timeout = time.Duration(*def.TimeoutSeconds) * time.Second
			}
		}
		ok, err := o.recoverAbandonedStep(ctx, c.task, c.step, timeout)
		if err != nil {
			o.log.Error("recovery: abandoned step not recovered", "step_uuid", c.step, "error", err)
			o.metrics.countError(ErrKindStepRecovery)
			continue
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// recoverAbandonedStep reports a retryable timeout for one in_progress step and processes it, in
// one transaction holding the task and step locks. It re-checks the state and age under the
// locks and does nothing if the step moved on or is not old enough.
func (o *Orchestrator) recoverAbandonedStep(ctx context.Context, taskUUID, stepUUID uuid.UUID, timeout time.Duration) (bool, error) {
	wctx, cancel := o.dbCtx(ctx)
	defer cancel()
	tx, err := o.begin(wctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit
	task, err := lockTask(wctx, tx, taskUUID, true)
	if err != nil || task == nil {
		return false, err
	}
	step, err := lockStep(wctx, tx, stepUUID)
	if err != nil {
		return false, err
	}
	limit := timeout + o.cfg.StaleGrace
	if step.State != state.StepInProgress || step.TaskUUID != taskUUID ||
		(step.AgeSeconds >= 0 && time.Duration(step.AgeSeconds*float64(time.Second)) < limit) {
		return false, nil
	}
	log := o.log.With("task_uuid", taskUUID, "step_uuid", stepUUID, "step_name", step.Name, "sweep", "recovery")
	log.Warn("step abandoned in_progress by a dead worker; reporting a retryable timeout",
		"age_s", step.AgeSeconds, "limit", limit, "attempts", step.Attempts)
	res := protocol.Failure(stepUUID,
		fmt.Sprintf("Step abandoned in progress: no result within %s (timeout %s + grace %s); the worker is presumed dead",
			limit, timeout, o.cfg.StaleGrace),
		protocol.ErrorTypeHandlerTimeout, "", true, 0, map[string]json.RawMessage{
			"recovered_by": mustJSON("orchestrator_" + o.cfg.ProcessorUUID.String()),
			"age_seconds":  mustJSON(step.AgeSeconds),
		})
	data, err := json.Marshal(res)
	if err != nil {
		return false, err
	}
	if _, err := state.TransitionStep(wctx, tx, stepUUID,
		state.StepEventWithData(state.StepEventEnqueueAsErrorForOrchestration, data),
		state.TransitionOptions{ExpectFrom: []state.StepState{state.StepInProgress}, CorrelationID: task.CorrelationID}); err != nil {
		if skipRejected(err) {
			return false, nil
		}
		return false, err
	}
	if step, err = lockStep(wctx, tx, stepUUID); err != nil {
		return false, err
	}
	if _, err := o.applyResult(wctx, tx, task, step, log); err != nil {
		return false, err
	}
	return true, o.committedErr(tx.Commit(wctx), task)
}

const stuckTasksSQL = `
SELECT t.task_uuid
  FROM tasker.tasks t
  JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
 WHERE NOT t.complete
   AND tt.to_state IN ('pending', 'initializing', 'enqueuing_steps', 'evaluating_results')
   AND tt.created_at < now() - make_interval(secs => $1)
   AND (tt.to_state <> 'evaluating_results'
        OR NOT EXISTS (SELECT 1
                         FROM tasker.workflow_steps ws
                         JOIN tasker.workflow_step_transitions st
                           ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
                        WHERE ws.task_uuid = t.task_uuid
                          AND st.to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                              'enqueued_as_error_for_orchestration')))
 ORDER BY tt.created_at
 LIMIT $2`

func (o *Orchestrator) recoverStuckTasks(ctx context.Context) (int, error) {
	return o.advanceFound(ctx, stuckTasksSQL, o.cfg.StuckThreshold.Seconds(), "recovery", "stuck tasks")
}

const orphanResultsSQL = `
SELECT ws.workflow_step_uuid, ws.task_uuid
  FROM tasker.workflow_steps ws
  JOIN tasker.workflow_step_transitions st
    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
 WHERE st.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
   AND st.created_at < now() - make_interval(secs => $1)
 ORDER BY st.created_at
 LIMIT $2`

func (o *Orchestrator) recoverOrphanResults(ctx context.Context) (int, error) {
	qctx, cancel := o.sweepCtx(ctx)
	defer cancel()
	rows, err := o.pool.Query(qctx, orphanResultsSQL, o.cfg.StuckThreshold.Seconds(), o.cfg.SweepBatchSize)
	if err != nil {
		return 0, fmt.Errorf("orchestration: find orphan results: %w", err)
	}
	type cand struct{ step, task uuid.UUID }
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		err := r.Scan(&c.step, &c.task)
		return c, err
	})
	if err != nil {
		return 0, fmt.Errorf("orchestration: find orphan results: %w", err)
	}
	table := pgx.Identifier{"pgmq", "q_" + queue.StepResultsQueue}.Sanitize()
	n := 0
	for _, c := range cands {
		if ctx.Err() != nil {
			break
		}
		ok, err := o.recoverOrphanResult(ctx, c.task, c.step, table)
		if err != nil {
			o.log.Error("recovery: orphan result not processed", "step_uuid", c.step, "error", err)
			o.metrics.countError(ErrKindOrphanResult)
			continue
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (o *Orchestrator) recoverOrphanResult(ctx context.Context, taskUUID, stepUUID uuid.UUID, table string) (bool, error) {
	wctx, cancel := o.dbCtx(ctx)
	defer cancel()
	tx, err := o.begin(wctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit
	task, err := lockTask(wctx, tx, taskUUID, true)
	if err != nil || task == nil {
		return false, err
	}
	var pending bool
	if err := tx.QueryRow(wctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE message->>'step_uuid' = $1)`,
		stepUUID.String()).Scan(&pending); err != nil {
		return false, fmt.Errorf("orchestration: look for result message: %w", err)
	}
	if pending {
		return false, nil // the consumer will process it
	}
	log := o.log.With("task_uuid", taskUUID, "step_uuid", stepUUID, "sweep", "recovery")
	step, err := lockStep(wctx, tx, stepUUID)
	if err != nil {
		return false, err
	}
	outcome, err := o.applyResult(wctx, tx, task, step, log)
	if err != nil {
		return false, err
	}
	if outcome == OutcomeDuplicate {
		return false, nil
	}
	log.Warn("processed a step result that had no queue message", "outcome", outcome)
	return true, o.committedErr(tx.Commit(wctx), task)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
