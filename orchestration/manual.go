package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// ManualActionType is an operator action on a step (tasker-core's StepManualAction action_type).
type ManualActionType string

// The operator actions of PATCH /v1/tasks/{uuid}/workflow_steps/{step_uuid}.
const (
	// ActionResetForRetry: error → pending with attempts reset to 0 (StepEvent ResetForRetry).
	ActionResetForRetry ManualActionType = "reset_for_retry"
	// ActionResolveManually: any state → resolved_manually, no results (ResolveManually).
	ActionResolveManually ManualActionType = "resolve_manually"
	// ActionCompleteManually: any state → complete with operator results (CompleteManually).
	ActionCompleteManually ManualActionType = "complete_manually"
)

// ManualAction is one operator action. By is the operator (reset_by, resolved_by or
// completed_by). Result and Metadata are complete_manually's completion_data.
type ManualAction struct {
	Type     ManualActionType
	Reason   string
	By       string
	Result   json.RawMessage // any JSON; nil is stored as null
	Metadata json.RawMessage // optional; an object's keys go into metadata.custom
}

// ManualActionError is a manual action the step's state does not allow; Error is tasker-core's
// message ("Cannot manually resolve step: invalid transition from <state> to <Event>").
type ManualActionError struct {
	From  state.StepState
	Event state.StepEventType
}

func (e *ManualActionError) Error() string {
	return fmt.Sprintf("Cannot manually resolve step: invalid transition from %s to %s", e.From, e.Event)
}

// ManualOutcome is what ResolveStep did.
type ManualOutcome struct {
	Step StepView
	// TaskFrom and TaskTo are the task's state before and after (equal when it did not move).
	TaskFrom, TaskTo state.TaskState
}

// stepEvent builds the step event of a, as tasker-core's StepService does: complete_manually
// carries StepExecutionResult::success(step, result, 0, custom) where custom is the operator's
// metadata object (a non-object is kept under "operator_metadata") plus manually_completed,
// completed_by and completion_reason.
func (a ManualAction) stepEvent(stepUUID uuid.UUID) (state.StepEvent, error) {
	switch a.Type {
	case ActionResetForRetry:
		return state.StepEventOf(state.StepEventResetForRetry), nil
	case ActionResolveManually:
		return state.StepEventOf(state.StepEventResolveManually), nil
	case ActionCompleteManually:
		custom := map[string]json.RawMessage{}
		if len(a.Metadata) > 0 && string(a.Metadata) != "null" {
			if err := json.Unmarshal(a.Metadata, &custom); err != nil {
				custom = map[string]json.RawMessage{"operator_metadata": a.Metadata}
			}
		}
		custom["manually_completed"] = json.RawMessage("true")
		by, _ := json.Marshal(a.By)
		reason, _ := json.Marshal(a.Reason)
		custom["completed_by"], custom["completion_reason"] = by, reason
		result := a.Result
		if len(result) == 0 {
			result = json.RawMessage("null")
		}
		data, err := json.Marshal(protocol.Success(stepUUID, result, 0, custom))
		if err != nil {
			return state.StepEvent{}, fmt.Errorf("orchestration: encode manual result: %w", err)
		}
		return state.StepEventWithData(state.StepEventCompleteManually, data), nil
	}
	return state.StepEvent{}, fmt.Errorf("orchestration: unknown manual action %q", a.Type)
}

// ResolveStep applies an operator action to a step of a task in ONE transaction, holding the
// task row lock (taken before the step's, as every orchestrator transaction does):
//
//   - the step moves on tasker-core's event (reset_for_retry only from error; the other two from
//     any state, terminal ones included), *ManualActionError otherwise;
//   - a task in blocked_by_failures with no step left in error and every step complete or
//     resolved_manually moves to resolved_manually on ManualResolution, the one exit tasker-core's
//     task state machine offers; with steps still to run it stays blocked (no legal event leads
//     from blocked_by_failures back to processing; tasker-core does not move the task at all);
//   - a task in any other non-terminal state is advanced at once, as a step result would: newly
//     ready steps are enqueued, a task whose steps are all done completes;
//   - a terminal task is left as it is.
//
// Errors: ErrStepNotFound, ErrStepNotInTask, *ManualActionError (nothing written), or a wrapped
// database error.
func (o *Orchestrator) ResolveStep(ctx context.Context, taskUUID, stepUUID uuid.UUID, a ManualAction) (*ManualOutcome, error) {
	ev, err := a.stepEvent(stepUUID)
	if err != nil {
		return nil, err
	}
	tx, err := o.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := stepOwner(ctx, tx, taskUUID, stepUUID); err != nil {
		return nil, err
	}
	task, err := lockTask(ctx, tx, taskUUID, false)
	if err != nil {
		return nil, err
	}
	out := &ManualOutcome{TaskFrom: task.Head.State, TaskTo: task.Head.State}
	tr, err := state.TransitionStep(ctx, tx, stepUUID, ev, state.TransitionOptions{CorrelationID: task.CorrelationID})
	var ite *state.InvalidTransitionError
	if errors.As(err, &ite) {
		return nil, &ManualActionError{From: state.StepState(ite.From), Event: ev.Type}
	}
	if err != nil {
		return nil, fmt.Errorf("orchestration: %s step %s: %w", a.Type, stepUUID, err)
	}
	log := o.log.With("task_uuid", taskUUID, "step_uuid", stepUUID, "correlation_id", task.CorrelationID)
	switch cur := task.Head.State; {
	case cur.IsTerminal():
	case cur == state.TaskBlockedByFailures:
		steps, err := loadStepStates(ctx, tx, taskUUID)
		if err != nil {
			return nil, err
		}
		if status, _ := executionStatus(steps); status == ExecAllComplete {
			if err := o.moveTask(tx, task, state.TaskEventOf(state.TaskEventManualResolution),
				map[string]any{"resolved_by": a.By, "reason": a.Reason}); err != nil {
				return nil, err
			}
		}
	default:
		if _, err := o.advance(ctx, tx, task, log); err != nil {
			return nil, err
		}
	}
	out.TaskTo = task.Head.State
	if err := o.committedErr(tx.Commit(ctx), task); err != nil {
		return nil, fmt.Errorf("orchestration: commit %s of step %s: %w", a.Type, stepUUID, err)
	}
	log.Info("step resolved by operator", "action", a.Type, "by", a.By, "reason", a.Reason,
		"step_from", tr.From, "step_to", tr.To, "task_from", out.TaskFrom, "task_to", out.TaskTo)
	step, err := o.Step(ctx, taskUUID, stepUUID)
	if err != nil {
		return nil, err
	}
	out.Step = *step
	return out, nil
}
