package orchestration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// Execution statuses of tasker.get_task_execution_context.
const (
	ExecHasReadySteps          = "has_ready_steps"
	ExecProcessing             = "processing"
	ExecBlockedByFailures      = "blocked_by_failures"
	ExecAllComplete            = "all_complete"
	ExecWaitingForDependencies = "waiting_for_dependencies"
)

// blockedMessage is the PermanentFailure payload of tasker-core's finalizer.
const blockedMessage = "Steps in error state"

// ExecutionContext is a row of tasker.get_task_execution_context.
type ExecutionContext struct {
	TaskUUID             uuid.UUID `json:"task_uuid"`
	NamedTaskUUID        uuid.UUID `json:"named_task_uuid"`
	Status               string    `json:"status"`
	TotalSteps           int64     `json:"total_steps"`
	PendingSteps         int64     `json:"pending_steps"`
	InProgressSteps      int64     `json:"in_progress_steps"`
	CompletedSteps       int64     `json:"completed_steps"`
	FailedSteps          int64     `json:"failed_steps"`
	ReadySteps           int64     `json:"ready_steps"`
	ExecutionStatus      string    `json:"execution_status"`
	RecommendedAction    string    `json:"recommended_action"`
	CompletionPercentage float64   `json:"completion_percentage"`
	HealthStatus         string    `json:"health_status"`
	EnqueuedSteps        int64     `json:"enqueued_steps"`
}

func loadExecutionContext(ctx context.Context, q pgx.Tx, taskUUID uuid.UUID) (ExecutionContext, error) {
	var ec ExecutionContext
	err := q.QueryRow(ctx, `
		SELECT task_uuid, named_task_uuid, status, total_steps, pending_steps, in_progress_steps,
		       completed_steps, failed_steps, ready_steps, execution_status, recommended_action,
		       completion_percentage::float8, health_status, enqueued_steps
		  FROM tasker.get_task_execution_context($1)`, taskUUID).Scan(
		&ec.TaskUUID, &ec.NamedTaskUUID, &ec.Status, &ec.TotalSteps, &ec.PendingSteps, &ec.InProgressSteps,
		&ec.CompletedSteps, &ec.FailedSteps, &ec.ReadySteps, &ec.ExecutionStatus, &ec.RecommendedAction,
		&ec.CompletionPercentage, &ec.HealthStatus, &ec.EnqueuedSteps)
	if errors.Is(err, pgx.ErrNoRows) {
		return ec, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if err != nil {
		return ec, fmt.Errorf("orchestration: execution context of %s: %w", taskUUID, err)
	}
	return ec, nil
}

// readyStep is a row of get_step_readiness_status, with the step's head.
type readyStep struct {
	StepUUID uuid.UUID
	Name     string
	State    state.StepState
	Ready    bool // ready_for_execution
	Head     state.StepHead
}

// stepStatesSQL is get_step_readiness_status's current_state and ready_for_execution for every
// step of task $1, with the step's head, written out for this one use: a step without
// transitions is pending; it is ready when pending or waiting_for_retry, neither processed nor in
// process, every parent complete or resolved_manually, allowed another attempt (none yet, or
// retryable with attempts below max_attempts; defaults true and 3) and past its retry time (the
// orchestrator's backoff from last_attempted_at, else 2^attempts seconds, at most 60, from its
// last error). The function computes every column for every step; this reads the parents'
// heads and the last error only where a step could be ready. Every lookup of a transition is a
// correlated subquery the planner cannot turn into a join, so the statement's one generic plan
// (db.RuntimeParams), even one made while the tables were small, reads by index: a join's plan
// made then hashed all most_recent transitions at every call as the tables grew.
const stepStatesSQL = `
SELECT ws.workflow_step_uuid, COALESCE(ws.inputs->>'__template_step_name', ns.name::text),
       COALESCE(h.to_state, 'pending'), h.workflow_step_transition_uuid, COALESCE(h.sort_key, 0),
       COALESCE(h.to_state, 'pending') IN ('pending', 'waiting_for_retry')
       AND ws.processed IS NOT TRUE AND ws.in_process IS NOT TRUE
       AND (COALESCE(ws.attempts, 0) = 0
            OR (COALESCE(ws.retryable, true) AND COALESCE(ws.attempts, 0) < COALESCE(ws.max_attempts, 3)))
       AND NOT EXISTS (SELECT 1
                         FROM tasker.workflow_step_edges e
                        WHERE e.to_step_uuid = ws.workflow_step_uuid
                          AND COALESCE((SELECT p.to_state FROM tasker.workflow_step_transitions p
                                         WHERE p.workflow_step_uuid = e.from_step_uuid AND p.most_recent), 'pending')
                              NOT IN ('complete', 'resolved_manually'))
       AND COALESCE(
             CASE WHEN ws.backoff_request_seconds IS NOT NULL AND ws.last_attempted_at IS NOT NULL
                  THEN ws.last_attempted_at + make_interval(secs => ws.backoff_request_seconds)
                  ELSE (SELECT max(f.created_at) FROM tasker.workflow_step_transitions f
                         WHERE f.workflow_step_uuid = ws.workflow_step_uuid AND f.to_state = 'error')
                       + make_interval(secs => LEAST(power(2.0, COALESCE(ws.attempts, 1)), 60)::double precision)
             END <= now(), true)
  FROM tasker.workflow_steps ws
  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
  LEFT JOIN LATERAL (SELECT * FROM tasker.workflow_step_transitions
                      WHERE workflow_step_uuid = ws.workflow_step_uuid AND most_recent OFFSET 0) h ON true
 WHERE ws.task_uuid = $1
 ORDER BY ws.workflow_step_uuid`

// loadStepStates reads every step of the task with its readiness and head (stepStatesSQL):
// what advance decides on (executionStatus) and the steps it dispatches.
func loadStepStates(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID) ([]readyStep, error) {
	rows, err := tx.Query(ctx, stepStatesSQL, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("orchestration: step readiness of %s: %w", taskUUID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (readyStep, error) {
		var (
			s  readyStep
			st string
			id uuid.NullUUID
		)
		err := r.Scan(&s.StepUUID, &s.Name, &st, &id, &s.Head.SortKey, &s.Ready)
		s.State = state.StepState(st)
		s.Head.StepUUID, s.Head.TransitionUUID, s.Head.State = s.StepUUID, id.UUID, s.State
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: step readiness of %s: %w", taskUUID, err)
	}
	return out, nil
}

// readyOnly keeps the steps ready for execution.
func readyOnly(steps []readyStep) []readyStep {
	out := make([]readyStep, 0, len(steps))
	for _, s := range steps {
		if s.Ready {
			out = append(out, s)
		}
	}
	return out
}

// executionStatus is get_task_execution_context's execution_status computed from the task's step
// rows, and its ready step count: failures block; then ready steps; then steps in flight
// (enqueued, in progress or awaiting orchestration) mean processing; all complete (or resolved
// manually) is all_complete; anything else waits for dependencies.
func executionStatus(steps []readyStep) (status string, ready int) {
	var failed, inFlight, completed int
	for _, s := range steps {
		switch s.State {
		case state.StepError:
			failed++
		case state.StepEnqueued, state.StepInProgress, state.StepEnqueuedForOrchestration, state.StepEnqueuedAsErrorForOrchestration:
			inFlight++
		case state.StepComplete, state.StepResolvedManually:
			completed++
		}
		if s.Ready {
			ready++
		}
	}
	switch {
	case failed > 0:
		return ExecBlockedByFailures, ready
	case ready > 0:
		return ExecHasReadySteps, ready
	case inFlight > 0:
		return ExecProcessing, ready
	case len(steps) > 0 && completed == len(steps):
		return ExecAllComplete, ready
	default:
		return ExecWaitingForDependencies, ready
	}
}

// maxAdvanceHops bounds the transitions advance applies in one call; the state graph reaches a
// resting state in far fewer, so hitting it means a bug.
const maxAdvanceHops = 12

// advance drives a locked task from its current state towards a resting state, as tasker-core's
// TaskFinalizer and StepEnqueuer StateHandlers do, deciding on the execution status
// (executionStatus: get_task_execution_context's, from one read of the step rows):
//
//	pending                  → initializing (Start)
//	initializing             ready: → enqueuing_steps (ReadyStepsFound(n)); all complete: → complete
//	                         (NoStepsFound); in flight: → enqueuing_steps (ReadyStepsFound(0));
//	                         otherwise → waiting_for_dependencies (NoDependenciesReady)
//	enqueuing_steps          enqueue the ready steps, → steps_in_process (StepsEnqueued(uuids))
//	steps_in_process         in flight: rest; ready retry: → waiting_for_retry (StepFailed(step));
//	                         ready pending: enqueue them and rest; otherwise → evaluating_results
//	                         (AllStepsCompleted)
//	evaluating_results       ready: → enqueuing_steps (ReadyStepsFound(n)); all complete: → complete
//	                         (AllStepsSuccessful); failures: → blocked_by_failures
//	                         (PermanentFailure("Steps in error state")); waiting: →
//	                         waiting_for_dependencies (NoDependenciesReady); in flight: rest
//	waiting_for_dependencies ready / complete / failures: → evaluating_results (DependenciesReady)
//	waiting_for_retry        anything but waiting: → enqueuing_steps (RetryReady)
//	blocked_by_failures, terminal states: rest
//
// With steps still in flight a task rests in evaluating_results, as tasker-core leaves it (no
// legal event leads from evaluating_results back to steps_in_process except through
// enqueuing_steps, which would record a misleading ReadyStepsFound(0)); the next result, or the
// readiness sweep once a retry is due, finalizes it. blocked_by_failures is a resting state:
// there is no automatic GiveUp (an operator resolves or cancels), as in tasker-core.
//
// It runs on the caller's transaction, which holds the task row lock; it returns the state it
// left the task in.
func (o *Orchestrator) advance(ctx context.Context, tx *db.PipeTx, task *taskRow, log *slog.Logger) (state.TaskState, error) {
	final := map[string]any{"atomic_finalization": true}
	var steps []readyStep // valid until steps change
	for range maxAdvanceHops {
		cur := task.Head.State
		if cur.IsTerminal() || cur == state.TaskBlockedByFailures {
			return cur, nil
		}
		if steps == nil {
			var err error
			if steps, err = loadStepStates(ctx, tx, task.TaskUUID); err != nil {
				return "", err
			}
		}
		status, readyCount := executionStatus(steps)
		var err error
		switch cur {
		case state.TaskPending:
			err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventStart), nil)
		case state.TaskInitializing:
			switch status {
			case ExecHasReadySteps:
				err = o.moveTask(tx, task, state.ReadyStepsFound(uint32(readyCount)), nil)
			case ExecAllComplete:
				err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventNoStepsFound), final)
			case ExecProcessing:
				err = o.moveTask(tx, task, state.ReadyStepsFound(0), nil)
			default:
				err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventNoDependenciesReady), nil)
			}
		case state.TaskEnqueuingSteps:
			ids, err := o.enqueueReadySteps(ctx, tx, task, readyOnly(steps), log)
			if err == nil {
				err = o.moveTask(tx, task, state.StepsEnqueued(ids), nil)
			}
			if err != nil {
				return "", err
			}
			if len(ids) > 0 {
				return task.Head.State, nil // the steps just enqueued are in flight
			}
			steps = nil
		case state.TaskStepsInProcess:
			switch status {
			case ExecProcessing:
				return cur, nil
			case ExecHasReadySteps:
				ready := readyOnly(steps)
				retry := uuid.Nil
				for _, s := range ready {
					if s.State == state.StepWaitingForRetry {
						retry = s.StepUUID
						break
					}
				}
				if retry != uuid.Nil {
					err = o.moveTask(tx, task, state.TaskEvent{Type: state.TaskEventStepFailed, StepUUID: retry}, nil)
				} else {
					// Pending steps became ready while others run: the task already is in
					// steps_in_process, the state these steps lead to, so enqueue them in place.
					_, err = o.enqueueReadySteps(ctx, tx, task, ready, log)
					if err == nil {
						return cur, nil
					}
				}
			default:
				err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventAllStepsCompleted), nil)
			}
		case state.TaskEvaluatingResults:
			switch status {
			case ExecHasReadySteps:
				err = o.moveTask(tx, task, state.ReadyStepsFound(uint32(readyCount)), nil)
			case ExecAllComplete:
				err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventAllStepsSuccessful), final)
			case ExecBlockedByFailures:
				err = o.moveTask(tx, task, state.TaskEventWithMessage(state.TaskEventPermanentFailure, blockedMessage), final)
			case ExecWaitingForDependencies:
				if err := o.moveTask(tx, task, state.TaskEventOf(state.TaskEventNoDependenciesReady), nil); err != nil {
					return "", err
				}
				return task.Head.State, nil
			default:
				return cur, nil
			}
		case state.TaskWaitingForDependencies:
			if status == ExecWaitingForDependencies || status == ExecProcessing {
				return cur, nil
			}
			err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventDependenciesReady), nil)
		case state.TaskWaitingForRetry:
			if status == ExecWaitingForDependencies || status == ExecProcessing {
				return cur, nil
			}
			err = o.moveTask(tx, task, state.TaskEventOf(state.TaskEventRetryReady), nil)
		default:
			return cur, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("orchestration: task %s did not settle within %d transitions", task.TaskUUID, maxAdvanceHops)
}

// moveTask moves task.Head on ev, from the head the lock holder knows. The transition is written
// with the commit, together with the task's other hops in the transaction (one statement for all
// of them: state.QueueTaskTransitions): nothing in an orchestrator transaction reads the task's
// transitions after locking it, its state is task.Head.
func (o *Orchestrator) moveTask(tx *db.PipeTx, task *taskRow, ev state.TaskEvent, meta map[string]any) error {
	to, err := state.NextTaskState(task.Head.State, ev)
	if err != nil {
		return fmt.Errorf("orchestration: task %s %s: %w", task.TaskUUID, ev,
			&state.InvalidTransitionError{Entity: state.EntityTask, ID: task.TaskUUID, From: string(task.Head.State), Event: string(ev.Type)})
	}
	if len(task.hops) == 0 {
		task.hopsFrom = task.Head
		if !task.hooked {
			task.hooked = true
			tx.OnCommit(func(b *pgx.Batch) error {
				if len(task.hops) == 0 {
					return nil
				}
				_, err := state.QueueTaskTransitions(b, task.hopsFrom, task.hops)
				task.hops = nil
				return err
			})
		}
	}
	task.hops = append(task.hops, state.TaskHop{Event: ev, Opts: state.TaskTransitionOptions{
		ProcessorUUID: o.cfg.ProcessorUUID, Metadata: meta,
	}})
	task.Head = state.TaskHead{TaskUUID: task.TaskUUID, State: to, SortKey: task.Head.SortKey + 1}
	return nil
}

// enqueueReadySteps dispatches the steps get_step_readiness_status reported ready (read by the
// caller in this transaction): waiting_for_retry → pending (Retry), pending →
// enqueued (Enqueue; the readiness read under the task lock is the dependency check), then the
// three-uuid message to worker_<namespace>_queue (notified once tx commits). All of it is queued
// on tx, so the transitions and the messages commit together: a worker can never read a message
// for a step that is not yet enqueued, and a rolled-back enqueue leaves no message behind. Each
// transition is fenced on the head the readiness read returned; a step moved meanwhile aborts
// the transaction (ErrConcurrentTransition) and the work is retried.
func (o *Orchestrator) enqueueReadySteps(ctx context.Context, tx *db.PipeTx, task *taskRow, ready []readyStep, log *slog.Logger) ([]uuid.UUID, error) {
	if len(ready) == 0 {
		return []uuid.UUID{}, nil
	}
	q := queue.WorkerQueue(task.Namespace)
	if err := o.ensureQueue(ctx, q); err != nil {
		return nil, err
	}
	b := tx.Pending()
	ids := make([]uuid.UUID, 0, len(ready))
	for _, s := range ready {
		head := s.Head
		if s.State == state.StepWaitingForRetry {
			tr, err := state.QueueStepTransition(b, head, state.StepEventOf(state.StepEventRetry),
				state.TransitionOptions{ExpectFrom: []state.StepState{state.StepWaitingForRetry}})
			if err != nil {
				if skipRejected(err) {
					log.Warn("step not retried: state changed", "step_uuid", s.StepUUID, "step_name", s.Name, "error", err)
					continue
				}
				return nil, err
			}
			head = tr.Head()
		}
		if _, err := state.QueueStepTransition(b, head, state.StepEventOf(state.StepEventEnqueue),
			state.TransitionOptions{ExpectFrom: []state.StepState{state.StepPending}, DependenciesChecked: true}); err != nil {
			if skipRejected(err) {
				log.Warn("step not enqueued: state changed", "step_uuid", s.StepUUID, "step_name", s.Name, "error", err)
				continue
			}
			return nil, err
		}
		if err := o.queue.QueueSend(b, q, protocol.StepMessage{
			TaskUUID: task.TaskUUID, StepUUID: s.StepUUID, CorrelationID: task.CorrelationID,
		}, 0, nil, &task.notices); err != nil {
			return nil, fmt.Errorf("orchestration: dispatch step %s: %w", s.StepUUID, err)
		}
		ids = append(ids, s.StepUUID)
	}
	if len(ids) > 0 {
		log.Debug("steps enqueued", "queue", q, "count", len(ids))
		if len(task.dispatched) == 0 {
			tx.AfterCommit(func() { o.notify(&task.notices, log) })
		}
	}
	task.dispatched = append(task.dispatched, ids...)
	return ids, nil
}

// notify sends the notifications of the step messages a committed transaction sent (see
// queue.Notices). A failure is logged: the workers' polling finds the messages.
func (o *Orchestrator) notify(n *queue.Notices, log *slog.Logger) {
	ctx, cancel := o.dbCtx(context.Background())
	defer cancel()
	if err := o.queue.Notify(ctx, o.pool, n); err != nil {
		log.Warn("step messages sent without their notification; workers will poll for them", "error", err)
	}
}

// skipRejected reports a refused step transition that left the transaction usable (an invalid
// transition or a guard refusal; a lost race on the unique index aborts the transaction and is
// returned instead).
func skipRejected(err error) bool {
	var ite *state.InvalidTransitionError
	var ge *state.GuardError
	return errors.As(err, &ite) || errors.As(err, &ge)
}

// ExecutionStatusOf is the execution status, and ready step count, that the orchestrator decides
// on for a task: computed from get_step_readiness_status in one read, and equal to
// get_task_execution_context's execution_status and ready_steps.
func ExecutionStatusOf(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID) (status string, ready int, err error) {
	steps, err := loadStepStates(ctx, tx, taskUUID)
	if err != nil {
		return "", 0, err
	}
	status, ready = executionStatus(steps)
	return status, ready, nil
}
