package orchestration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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

// readyStep is a row of get_step_readiness_status with ready_for_execution.
type readyStep struct {
	StepUUID uuid.UUID
	Name     string
	State    state.StepState
}

func loadReadySteps(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID) ([]readyStep, error) {
	rows, err := tx.Query(ctx, `
		SELECT workflow_step_uuid, name, current_state
		  FROM tasker.get_step_readiness_status($1)
		 WHERE ready_for_execution
		 ORDER BY workflow_step_uuid`, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("orchestration: step readiness of %s: %w", taskUUID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (readyStep, error) {
		var s readyStep
		var st string
		err := r.Scan(&s.StepUUID, &s.Name, &st)
		s.State = state.StepState(st)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: step readiness of %s: %w", taskUUID, err)
	}
	return out, nil
}

// maxAdvanceHops bounds the transitions advance applies in one call; the state graph reaches a
// resting state in far fewer, so hitting it means a bug.
const maxAdvanceHops = 12

// advance drives a locked task from its current state towards a resting state, as tasker-core's
// TaskFinalizer and StepEnqueuer StateHandlers do, using get_task_execution_context:
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
func (o *Orchestrator) advance(ctx context.Context, tx pgx.Tx, task *taskRow, log *slog.Logger) (state.TaskState, error) {
	move := func(ev state.TaskEvent, from state.TaskState, meta map[string]any) error {
		_, err := state.TransitionTask(ctx, tx, task.TaskUUID, ev, state.TaskTransitionOptions{
			ExpectFrom: []state.TaskState{from}, ProcessorUUID: o.cfg.ProcessorUUID, Metadata: meta,
		})
		if err != nil {
			return fmt.Errorf("orchestration: task %s %s: %w", task.TaskUUID, ev, err)
		}
		return nil
	}
	final := map[string]any{"atomic_finalization": true}
	for range maxAdvanceHops {
		cur, err := state.CurrentTaskState(ctx, tx, task.TaskUUID)
		if err != nil {
			return "", err
		}
		if cur.IsTerminal() || cur == state.TaskBlockedByFailures {
			return cur, nil
		}
		ec, err := loadExecutionContext(ctx, tx, task.TaskUUID)
		if err != nil {
			return "", err
		}
		status := ec.ExecutionStatus
		switch cur {
		case state.TaskPending:
			err = move(state.TaskEventOf(state.TaskEventStart), cur, nil)
		case state.TaskInitializing:
			switch status {
			case ExecHasReadySteps:
				err = move(state.ReadyStepsFound(uint32(ec.ReadySteps)), cur, nil)
			case ExecAllComplete:
				err = move(state.TaskEventOf(state.TaskEventNoStepsFound), cur, final)
			case ExecProcessing:
				err = move(state.ReadyStepsFound(0), cur, nil)
			default:
				err = move(state.TaskEventOf(state.TaskEventNoDependenciesReady), cur, nil)
			}
		case state.TaskEnqueuingSteps:
			var ids []uuid.UUID
			if ids, err = o.enqueueReadySteps(ctx, tx, task, log); err == nil {
				err = move(state.StepsEnqueued(ids), cur, nil)
			}
		case state.TaskStepsInProcess:
			switch status {
			case ExecProcessing:
				return cur, nil
			case ExecHasReadySteps:
				ready, err := loadReadySteps(ctx, tx, task.TaskUUID)
				if err != nil {
					return "", err
				}
				retry := uuid.Nil
				for _, s := range ready {
					if s.State == state.StepWaitingForRetry {
						retry = s.StepUUID
						break
					}
				}
				if retry != uuid.Nil {
					err = move(state.TaskEvent{Type: state.TaskEventStepFailed, StepUUID: retry}, cur, nil)
				} else {
					// Pending steps became ready while others run: the task already is in
					// steps_in_process, the state these steps lead to, so enqueue them in place.
					_, err = o.enqueueReadySteps(ctx, tx, task, log)
					if err == nil {
						return cur, nil
					}
				}
			default:
				err = move(state.TaskEventOf(state.TaskEventAllStepsCompleted), cur, nil)
			}
		case state.TaskEvaluatingResults:
			switch status {
			case ExecHasReadySteps:
				err = move(state.ReadyStepsFound(uint32(ec.ReadySteps)), cur, nil)
			case ExecAllComplete:
				err = move(state.TaskEventOf(state.TaskEventAllStepsSuccessful), cur, final)
			case ExecBlockedByFailures:
				err = move(state.TaskEventWithMessage(state.TaskEventPermanentFailure, blockedMessage), cur, final)
			case ExecWaitingForDependencies:
				err = move(state.TaskEventOf(state.TaskEventNoDependenciesReady), cur, nil)
				if err == nil {
					return state.TaskWaitingForDependencies, nil
				}
			default:
				return cur, nil
			}
		case state.TaskWaitingForDependencies:
			if status == ExecWaitingForDependencies || status == ExecProcessing {
				return cur, nil
			}
			err = move(state.TaskEventOf(state.TaskEventDependenciesReady), cur, nil)
		case state.TaskWaitingForRetry:
			if status == ExecWaitingForDependencies || status == ExecProcessing {
				return cur, nil
			}
			err = move(state.TaskEventOf(state.TaskEventRetryReady), cur, nil)
		default:
			return cur, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("orchestration: task %s did not settle within %d transitions", task.TaskUUID, maxAdvanceHops)
}

// enqueueReadySteps dispatches every step of the task that get_step_readiness_status reports
// ready: waiting_for_retry → pending (Retry), pending → enqueued (Enqueue, guarded by "all
// parents complete"), then the three-uuid message to worker_<namespace>_queue with
// pgmq_send_with_notify. Everything is on tx, so the transitions and the messages commit
// together: a worker can never read a message for a step that is not yet enqueued, and a
// rolled-back enqueue leaves no message behind. A step that cannot be moved (a concurrent
// writer got there first) is skipped with a warning, as tasker-core does.
func (o *Orchestrator) enqueueReadySteps(ctx context.Context, tx pgx.Tx, task *taskRow, log *slog.Logger) ([]uuid.UUID, error) {
	ready, err := loadReadySteps(ctx, tx, task.TaskUUID)
	if err != nil {
		return nil, err
	}
	if len(ready) == 0 {
		return []uuid.UUID{}, nil
	}
	q := queue.WorkerQueue(task.Namespace)
	if err := o.ensureQueue(ctx, q); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, 0, len(ready))
	for _, s := range ready {
		if s.State == state.StepWaitingForRetry {
			if _, err := state.TransitionStep(ctx, tx, s.StepUUID, state.StepEventOf(state.StepEventRetry),
				state.TransitionOptions{ExpectFrom: []state.StepState{state.StepWaitingForRetry}}); err != nil {
				if skipRejected(err) {
					log.Warn("step not retried: state changed", "step_uuid", s.StepUUID, "step_name", s.Name, "error", err)
					continue
				}
				return nil, err
			}
		}
		if _, err := state.TransitionStep(ctx, tx, s.StepUUID, state.StepEventOf(state.StepEventEnqueue),
			state.TransitionOptions{ExpectFrom: []state.StepState{state.StepPending}}); err != nil {
			if skipRejected(err) {
				log.Warn("step not enqueued: state changed or dependencies unmet", "step_uuid", s.StepUUID, "step_name", s.Name, "error", err)
				continue
			}
			return nil, err
		}
		if _, err := o.queue.SendWithNotify(ctx, tx, q, protocol.StepMessage{
			TaskUUID: task.TaskUUID, StepUUID: s.StepUUID, CorrelationID: task.CorrelationID,
		}, 0); err != nil {
			return nil, fmt.Errorf("orchestration: dispatch step %s: %w", s.StepUUID, err)
		}
		ids = append(ids, s.StepUUID)
	}
	if len(ids) > 0 {
		log.Debug("steps enqueued", "queue", q, "count", len(ids))
	}
	return ids, nil
}

// skipRejected reports a refused step transition that left the transaction usable (an invalid
// transition or a guard refusal; a lost race on the unique index aborts the transaction and is
// returned instead).
func skipRejected(err error) bool {
	var ite *state.InvalidTransitionError
	var ge *state.GuardError
	return errors.As(err, &ite) || errors.As(err, &ge)
}
