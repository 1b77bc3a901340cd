package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// The readiness sweep finds its tasks in two steps. First the tasks that may have a ready step,
// from indexes: those with a retry whose backoff elapsed (idx_workflow_steps_sweep_retry_due),
// those in pending, and readyTurnTasks of the waiting and active ones (waiting_for_dependencies,
// waiting_for_retry, evaluating_results, steps_in_process), the next ones in task_uuid order at
// each sweep, from where the last turn stopped (idx_task_transitions_sweep_active): all of them
// at every sweep while there are no more. Then readyTasksSQL applies the readiness predicate to
// them.
//
// A tasker-go orchestrator never leaves a waiting or active task with a ready pending step (it
// enqueues ready steps in the transaction that makes them ready), so there a step becomes ready
// only when a retry's backoff elapses, which the first source finds at once. The turns catch the
// rest (a Rust orchestrator that crashed between its commits, a retry without a recorded backoff)
// within (waiting and active tasks) / readyTurnTasks sweeps, at a cost per sweep that does not
// grow with them; tasks created together are neighbours in task_uuid order and on disk, so a turn
// reads few pages.
const readyTurnTasks = 256

// readyTurn is where an orchestrator's next readiness turn starts; each turn moves it on.
type readyTurn struct {
	mu    sync.Mutex
	after uuid.UUID
}

// activeTurnSQL lists up to $2 waiting or active tasks after task $1, in task_uuid order.
const activeTurnSQL = `
SELECT tt.task_uuid
  FROM tasker.task_transitions tt
 WHERE tt.most_recent
   AND tt.to_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'evaluating_results', 'steps_in_process')
   AND tt.task_uuid > $1
 ORDER BY tt.task_uuid
 LIMIT $2`

// readyCandidatesSQL lists the tasks with a retry whose backoff elapsed and the tasks that have
// rested in pending for $1 seconds.
const readyCandidatesSQL = `
SELECT ws.task_uuid
  FROM tasker.workflow_steps ws
 WHERE NOT ws.processed AND NOT ws.in_process
   AND ws.backoff_request_seconds IS NOT NULL AND ws.last_attempted_at IS NOT NULL
   AND (COALESCE(ws.attempts, 0) = 0 OR (ws.retryable AND COALESCE(ws.attempts, 0) < COALESCE(ws.max_attempts, 3)))
   AND ws.last_attempted_at + make_interval(secs => ws.backoff_request_seconds) <= now()
UNION
SELECT tt.task_uuid
  FROM tasker.task_transitions tt
 WHERE tt.most_recent AND tt.to_state = 'pending' AND tt.created_at <= now() - make_interval(secs => $1)`

// next returns the waiting and active tasks of the next turn and moves the turn on: after the
// last task it goes on from the first.
func (r *readyTurn) next(ctx context.Context, tx pgx.Tx) ([]uuid.UUID, error) {
	r.mu.Lock()
	after := r.after
	r.mu.Unlock()
	turn, err := collect(ctx, tx, pgx.RowTo[uuid.UUID], activeTurnSQL, after, readyTurnTasks)
	if err != nil {
		return nil, err
	}
	next := uuid.Nil
	switch {
	case len(turn) == readyTurnTasks:
		next = turn[len(turn)-1]
	case after != uuid.Nil:
		more, err := collect(ctx, tx, pgx.RowTo[uuid.UUID], activeTurnSQL, uuid.Nil, readyTurnTasks-len(turn))
		if err != nil {
			return nil, err
		}
		if len(more) > 0 {
			next = more[len(more)-1]
		}
		turn = append(turn, more...)
	}
	r.mu.Lock()
	r.after = next
	r.mu.Unlock()
	return turn, nil
}

// readyTasksSQL keeps the candidates $3 with a step ready to run: a pending step whose parents
// are done, or a waiting_for_retry step whose backoff has elapsed. A cheap EXISTS over the task's
// steps (state, backoff, parents) filters them, so tasks waiting out a long backoff cost little;
// get_step_readiness_status, the authority, confirms. Tasks in evaluating_results,
// steps_in_process or pending must have rested there for $1 seconds (see Config.activeSettle).
// Unlike tasker-core's get_next_ready_tasks, waiting tasks are not dropped after 30/60 minutes in
// state. The subquery fence keeps the authority for the tasks that pass the cheap check.
const readyTasksSQL = `
SELECT x.task_uuid
  FROM (SELECT t.task_uuid, t.priority, t.created_at, tt.to_state
          FROM tasker.tasks t
          JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
         WHERE t.task_uuid = ANY ($3::uuid[])
           AND NOT t.complete
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
        OFFSET 0) x
 WHERE x.to_state = 'pending'
    OR EXISTS (SELECT 1 FROM tasker.get_step_readiness_status(x.task_uuid) r WHERE r.ready_for_execution)
 ORDER BY x.priority DESC, x.created_at
 LIMIT $2`

// ReadinessSweep enqueues the ready steps of tasks that no step result will wake: retries whose
// backoff elapsed, and tasks waiting for dependencies. Each task is handled in its own
// transaction that locks it with SKIP LOCKED, so concurrent orchestrators split the work and
// never enqueue a step twice: waiting_for_dependencies → evaluating_results
// (DependenciesReady) → enqueuing_steps (ReadyStepsFound(n)) → steps_in_process
// (StepsEnqueued), with the step transitions and worker messages in the same commit. It returns
// how many tasks it advanced.
func (o *Orchestrator) ReadinessSweep(ctx context.Context) (int, error) {
	ids, err := o.findReadyTasks(ctx)
	if err != nil {
		return 0, fmt.Errorf("orchestration: find ready tasks: %w", err)
	}
	return o.advanceAll(ctx, ids, "readiness"), nil
}

// findReadyTasks runs the readiness sweep's queries (see readyTurnTasks).
func (o *Orchestrator) findReadyTasks(ctx context.Context) ([]uuid.UUID, error) {
	settle := o.cfg.activeSettle().Seconds()
	var ready []uuid.UUID
	err := o.sweepSearch(ctx, func(ctx context.Context, tx pgx.Tx) error {
		turn, err := o.turn.next(ctx, tx)
		if err != nil {
			return err
		}
		cands, err := collect(ctx, tx, pgx.RowTo[uuid.UUID], readyCandidatesSQL, settle)
		if err != nil {
			return err
		}
		if cands = append(cands, turn...); len(cands) == 0 {
			return nil
		}
		ready, err = collect(ctx, tx, pgx.RowTo[uuid.UUID], readyTasksSQL, settle, o.cfg.SweepBatchSize, cands)
		return err
	})
	return ready, err
}

// sweepSearch runs fn, a sweep's search queries, in a read-only transaction without JIT or
// parallel workers, bounded by sweepCtx. The sweeps' statements run on generic plans
// (db.RuntimeParams), whose estimates cannot tell the few current transitions in a state from the
// many old ones: PostgreSQL would otherwise compile, or start workers for, a search that reads a
// few index entries, each for tens of milliseconds.
func (o *Orchestrator) sweepSearch(ctx context.Context, fn func(context.Context, pgx.Tx) error) error {
	ctx, cancel := o.sweepCtx(ctx)
	defer cancel()
	return pgx.BeginTxFunc(ctx, o.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
			return err
		}
		return fn(ctx, tx)
	})
}

// collect runs sql on tx and scans its rows with scan.
func collect[T any](ctx context.Context, tx pgx.Tx, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// searchTaskIDs runs sql, a sweep's search for task uuids, with sweepSearch.
func (o *Orchestrator) searchTaskIDs(ctx context.Context, sql string, args ...any) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := o.sweepSearch(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		ids, err = collect(ctx, tx, pgx.RowTo[uuid.UUID], sql, args...)
		return err
	})
	return ids, err
}

// advanceAll advances each task in its own transaction; source names the sweep in logs. It
// returns how many tasks changed state.
func (o *Orchestrator) advanceAll(ctx context.Context, ids []uuid.UUID, source string) int {
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
	return n
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
	n, err := o.RecoverAbandonedSteps(ctx)
	rep.AbandonedSteps = n
	errs = append(errs, err)
	n, err = o.RecoverStuckTasks(ctx)
	rep.StuckTasks = n
	errs = append(errs, err)
	n, err = o.RecoverOrphanResults(ctx)
	rep.OrphanResults = n
	errs = append(errs, err)
	errs = append(errs, o.staleSweep(ctx))
	return rep, errors.Join(errs...)
}

// abandonedStepsSQL finds in_progress steps of incomplete tasks whose last attempt
// (last_attempted_at, else the in_progress transition) is older than $1 seconds, oldest first.
// The candidates come from two indexes: steps in process attempted before the cutoff
// (idx_workflow_steps_sweep_in_process; a step in_progress is in process), and in_progress
// transitions written before it (idx_workflow_step_transitions_sweep_in_flight), for steps with
// no last_attempted_at; each is then checked on its own.
const abandonedStepsSQL = `
WITH cutoff AS MATERIALIZED (
    SELECT timezone('UTC', clock_timestamp()) - make_interval(secs => $1) AS at
)
SELECT x.workflow_step_uuid, x.task_uuid, x.named_task_uuid, x.template_step
  FROM (SELECT ws.workflow_step_uuid
          FROM tasker.workflow_steps ws
         WHERE ws.in_process AND ws.last_attempted_at < (SELECT at FROM cutoff)
        UNION
        SELECT st.workflow_step_uuid
          FROM tasker.workflow_step_transitions st
         WHERE st.most_recent AND st.to_state = 'in_progress' AND st.created_at < (SELECT at FROM cutoff)) c
 CROSS JOIN LATERAL (
       SELECT ws.workflow_step_uuid, ws.task_uuid, t.named_task_uuid,
              COALESCE(ws.inputs->>'__template_step_name', ns.name::text) AS template_step,
              COALESCE(ws.last_attempted_at, st.created_at) AS attempted
         FROM tasker.workflow_steps ws
         JOIN tasker.workflow_step_transitions st
           ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent AND st.to_state = 'in_progress'
         JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
         JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
        WHERE ws.workflow_step_uuid = c.workflow_step_uuid
          AND NOT t.complete
          AND COALESCE(ws.last_attempted_at, st.created_at) < (SELECT at FROM cutoff)
       OFFSET 0) x
 ORDER BY x.attempted
 LIMIT $2`

// RecoverAbandonedSteps is the recovery sweep's pass over abandoned steps (see RecoverySweep);
// it returns how many it recovered.
func (o *Orchestrator) RecoverAbandonedSteps(ctx context.Context) (int, error) {
	type cand struct {
		step, task, namedTask uuid.UUID
		templateStep          string
	}
	var cands []cand
	err := o.sweepSearch(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		cands, err = collect(ctx, tx, func(r pgx.CollectableRow) (cand, error) {
			var c cand
			err := r.Scan(&c.step, &c.task, &c.namedTask, &c.templateStep)
			return c, err
		}, abandonedStepsSQL, o.cfg.StaleGrace.Seconds(), o.cfg.SweepBatchSize)
		return err
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

// stuckTasksSQL finds incomplete tasks that have rested in pending, initializing,
// enqueuing_steps, or evaluating_results with no step in flight, for $1 seconds, oldest first.
// The candidates come from idx_task_transitions_sweep_transitional; each is then checked on its
// own (the OFFSET 0 keeps the planner, which cannot tell current transitions from old ones in its
// statistics, from scanning every task instead).
const stuckTasksSQL = `
SELECT c.task_uuid
  FROM (SELECT tt.task_uuid, tt.to_state, tt.created_at
          FROM tasker.task_transitions tt
         WHERE tt.most_recent
           AND tt.to_state IN ('pending', 'initializing', 'enqueuing_steps', 'evaluating_results')
           AND tt.created_at < now() - make_interval(secs => $1)) c
 CROSS JOIN LATERAL (
       SELECT 1
         FROM tasker.tasks t
        WHERE t.task_uuid = c.task_uuid AND NOT t.complete
          AND (c.to_state <> 'evaluating_results'
               OR NOT EXISTS (SELECT 1
                                FROM tasker.workflow_steps ws
                                JOIN tasker.workflow_step_transitions st
                                  ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
                               WHERE ws.task_uuid = t.task_uuid
                                 AND st.to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                                     'enqueued_as_error_for_orchestration')))
       OFFSET 0) ok
 ORDER BY c.created_at
 LIMIT $2`

// RecoverStuckTasks is the recovery sweep's pass over stuck tasks (see RecoverySweep); it
// returns how many it advanced.
func (o *Orchestrator) RecoverStuckTasks(ctx context.Context) (int, error) {
	ids, err := o.searchTaskIDs(ctx, stuckTasksSQL, o.cfg.StuckThreshold.Seconds(), o.cfg.SweepBatchSize)
	if err != nil {
		return 0, fmt.Errorf("orchestration: find stuck tasks: %w", err)
	}
	return o.advanceAll(ctx, ids, "recovery"), nil
}

// orphanResultsSQL finds steps that have rested in enqueued_*_for_orchestration for $1 seconds,
// oldest first (idx_workflow_step_transitions_sweep_in_flight).
const orphanResultsSQL = `
SELECT c.workflow_step_uuid, ws.task_uuid
  FROM (SELECT st.workflow_step_uuid, st.created_at
          FROM tasker.workflow_step_transitions st
         WHERE st.most_recent
           AND st.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
           AND st.created_at < now() - make_interval(secs => $1)
         ORDER BY st.created_at
         LIMIT $2) c
  JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = c.workflow_step_uuid
 ORDER BY c.created_at`

// RecoverOrphanResults is the recovery sweep's pass over orphan results (see RecoverySweep); it
// returns how many it processed.
func (o *Orchestrator) RecoverOrphanResults(ctx context.Context) (int, error) {
	type cand struct{ step, task uuid.UUID }
	var cands []cand
	err := o.sweepSearch(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		cands, err = collect(ctx, tx, func(r pgx.CollectableRow) (cand, error) {
			var c cand
			err := r.Scan(&c.step, &c.task)
			return c, err
		}, orphanResultsSQL, o.cfg.StuckThreshold.Seconds(), o.cfg.SweepBatchSize)
		return err
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
