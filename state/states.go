// Package state holds the step and task state machines shared with tasker-core: the state and
// event names stored in tasker.workflow_step_transitions / tasker.task_transitions, the pure
// transition tables, and the transactional writes that move a step or task from one state to
// the next together with the workflow_steps / tasks flags that mirror the state.
package state

import "fmt"

// StepState is a workflow step state as stored in workflow_step_transitions.to_state.
type StepState string

// Step states (CHECK chk_workflow_step_transitions_to_state).
const (
	StepPending                         StepState = "pending"
	StepEnqueued                        StepState = "enqueued"
	StepInProgress                      StepState = "in_progress"
	StepEnqueuedForOrchestration        StepState = "enqueued_for_orchestration"
	StepEnqueuedAsErrorForOrchestration StepState = "enqueued_as_error_for_orchestration"
	StepWaitingForRetry                 StepState = "waiting_for_retry"
	StepComplete                        StepState = "complete"
	StepError                           StepState = "error"
	StepCancelled                       StepState = "cancelled"
	StepResolvedManually                StepState = "resolved_manually"
)

// StepStates lists every step state in declaration order.
func StepStates() []StepState {
	return []StepState{
		StepPending, StepEnqueued, StepInProgress, StepEnqueuedForOrchestration,
		StepEnqueuedAsErrorForOrchestration, StepWaitingForRetry, StepComplete, StepError,
		StepCancelled, StepResolvedManually,
	}
}

// Valid reports whether s is one of the ten step states.
func (s StepState) Valid() bool {
	switch s {
	case StepPending, StepEnqueued, StepInProgress, StepEnqueuedForOrchestration,
		StepEnqueuedAsErrorForOrchestration, StepWaitingForRetry, StepComplete, StepError,
		StepCancelled, StepResolvedManually:
		return true
	}
	return false
}

// IsTerminal reports whether s is complete, cancelled or resolved_manually. A step in error is
// not terminal: it can still be reset, retried, cancelled or resolved.
func (s StepState) IsTerminal() bool {
	return s == StepComplete || s == StepCancelled || s == StepResolvedManually
}

// IsError reports whether s is error.
func (s StepState) IsError() bool { return s == StepError }

// IsActive reports whether a worker is executing the step (in_progress).
func (s StepState) IsActive() bool { return s == StepInProgress }

// IsInProcessingPipeline reports whether the step is between enqueueing and orchestration's
// verdict: enqueued, in_progress or one of the enqueued_*_for_orchestration states.
func (s StepState) IsInProcessingPipeline() bool {
	switch s {
	case StepEnqueued, StepInProgress, StepEnqueuedForOrchestration, StepEnqueuedAsErrorForOrchestration:
		return true
	}
	return false
}

// IsClaimable reports whether a worker may claim the step with Start (enqueued, or legacy pending).
func (s StepState) IsClaimable() bool { return s == StepEnqueued || s == StepPending }

// SatisfiesDependencies reports whether children of a step in this state may run
// (complete or resolved_manually).
func (s StepState) SatisfiesDependencies() bool {
	return s == StepComplete || s == StepResolvedManually
}

// String returns the database spelling.
func (s StepState) String() string { return string(s) }

// ParseStepState converts a stored to_state / from_state value.
func ParseStepState(v string) (StepState, error) {
	s := StepState(v)
	if !s.Valid() {
		return "", fmt.Errorf("state: invalid step state %q", v)
	}
	return s, nil
}

// TaskState is a task state as stored in task_transitions.to_state.
type TaskState string

// Task states (CHECK chk_task_transitions_to_state).
const (
	TaskPending                TaskState = "pending"
	TaskInitializing           TaskState = "initializing"
	TaskEnqueuingSteps         TaskState = "enqueuing_steps"
	TaskStepsInProcess         TaskState = "steps_in_process"
	TaskEvaluatingResults      TaskState = "evaluating_results"
	TaskWaitingForDependencies TaskState = "waiting_for_dependencies"
	TaskWaitingForRetry        TaskState = "waiting_for_retry"
	TaskBlockedByFailures      TaskState = "blocked_by_failures"
	TaskComplete               TaskState = "complete"
	TaskError                  TaskState = "error"
	TaskCancelled              TaskState = "cancelled"
	TaskResolvedManually       TaskState = "resolved_manually"
)

// TaskStates lists every task state in declaration order.
func TaskStates() []TaskState {
	return []TaskState{
		TaskPending, TaskInitializing, TaskEnqueuingSteps, TaskStepsInProcess,
		TaskEvaluatingResults, TaskWaitingForDependencies, TaskWaitingForRetry,
		TaskBlockedByFailures, TaskComplete, TaskError, TaskCancelled, TaskResolvedManually,
	}
}

// Valid reports whether s is one of the twelve task states.
func (s TaskState) Valid() bool {
	switch s {
	case TaskPending, TaskInitializing, TaskEnqueuingSteps, TaskStepsInProcess,
		TaskEvaluatingResults, TaskWaitingForDependencies, TaskWaitingForRetry,
		TaskBlockedByFailures, TaskComplete, TaskError, TaskCancelled, TaskResolvedManually:
		return true
	}
	return false
}

// IsTerminal reports whether s is complete, error, cancelled or resolved_manually. Unlike steps,
// a task in error is terminal: no event leaves it.
func (s TaskState) IsTerminal() bool {
	switch s {
	case TaskComplete, TaskError, TaskCancelled, TaskResolvedManually:
		return true
	}
	return false
}

// IsActive reports whether orchestration is working on the task right now (initializing,
// enqueuing_steps, steps_in_process, evaluating_results).
func (s TaskState) IsActive() bool {
	switch s {
	case TaskInitializing, TaskEnqueuingSteps, TaskStepsInProcess, TaskEvaluatingResults:
		return true
	}
	return false
}

// IsWaiting reports whether the task waits for something (dependencies, a retry, or an operator
// in blocked_by_failures).
func (s TaskState) IsWaiting() bool {
	switch s {
	case TaskWaitingForDependencies, TaskWaitingForRetry, TaskBlockedByFailures:
		return true
	}
	return false
}

// CanBeProcessed reports whether readiness polling picks up a task in this state (pending and
// the two waiting_for_* states).
func (s TaskState) CanBeProcessed() bool {
	return s == TaskPending || s == TaskWaitingForDependencies || s == TaskWaitingForRetry
}

// String returns the database spelling.
func (s TaskState) String() string { return string(s) }

// ParseTaskState converts a stored to_state / from_state value. Like tasker-core it accepts the
// legacy spelling in_progress as steps_in_process.
func ParseTaskState(v string) (TaskState, error) {
	if v == "in_progress" {
		return TaskStepsInProcess, nil
	}
	s := TaskState(v)
	if !s.Valid() {
		return "", fmt.Errorf("state: invalid task state %q", v)
	}
	return s, nil
}
