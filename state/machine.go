package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Entity names used in errors.
const (
	EntityStep = "step"
	EntityTask = "task"
)

// InvalidTransitionError says that an event is not allowed from an entity's current state (or
// that the current state is not one the caller expected). Nothing was written.
type InvalidTransitionError struct {
	Entity   string    // EntityStep or EntityTask
	ID       uuid.UUID // step or task uuid; zero from the pure functions
	From     string    // current state
	Event    string    // event type name
	Expected []string  // states the caller required (TransitionOptions.ExpectFrom), if any
}

// Error describes the refused transition.
func (e *InvalidTransitionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state: invalid %s transition from %q on %s", e.Entity, e.From, e.Event)
	if e.ID != uuid.Nil {
		fmt.Fprintf(&b, " (%s %s)", e.Entity, e.ID)
	}
	if len(e.Expected) > 0 {
		fmt.Fprintf(&b, ": expected current state in %v", e.Expected)
	}
	return b.String()
}

// GuardError says that a transition allowed by the table was refused by a guard: today only
// "dependencies met" (every parent complete or resolved_manually) for pending→enqueued and the
// legacy pending→in_progress. Nothing was written.
type GuardError struct {
	Entity string
	ID     uuid.UUID
	From   string
	Event  string
	Reason string
}

// Error describes the refused transition and the guard's reason.
func (e *GuardError) Error() string {
	return fmt.Sprintf("state: %s %s: %s from %q refused: %s", e.Entity, e.ID, e.Event, e.From, e.Reason)
}

// Sentinel errors of the persistence functions.
var (
	// ErrStepNotFound: no workflow_steps row has the given uuid.
	ErrStepNotFound = errors.New("state: workflow step not found")
	// ErrTaskNotFound: no tasks row has the given uuid.
	ErrTaskNotFound = errors.New("state: task not found")
	// ErrConcurrentTransition: the insert hit the "one most_recent row" unique index because a
	// writer that does not take the row lock (e.g. tasker-core) moved the entity concurrently.
	// The transaction is aborted; roll back and re-read.
	ErrConcurrentTransition = errors.New("state: concurrent transition")
)

// IsRejected reports whether err means "the transition did not happen because of the entity's
// state" (invalid transition, guard refusal or a lost race), as opposed to an infrastructure
// failure. A worker's claim maps these to "not claimed".
func IsRejected(err error) bool {
	var ite *InvalidTransitionError
	var ge *GuardError
	return errors.As(err, &ite) || errors.As(err, &ge) || errors.Is(err, ErrConcurrentTransition)
}

type stepEdge struct {
	from StepState
	ev   StepEventType
}

// stepTable is tasker-core's step_state_machine.rs determine_target_state, written out.
var stepTable = func() map[stepEdge]StepState {
	t := map[stepEdge]StepState{
		{StepPending, StepEventEnqueue}: StepEnqueued,
		{StepEnqueued, StepEventStart}:  StepInProgress,
		{StepPending, StepEventStart}:   StepInProgress, // legacy claim path

		{StepInProgress, StepEventEnqueueForOrchestration}:        StepEnqueuedForOrchestration,
		{StepInProgress, StepEventEnqueueAsErrorForOrchestration}: StepEnqueuedAsErrorForOrchestration,

		{StepEnqueuedForOrchestration, StepEventComplete}:        StepComplete,
		{StepEnqueuedForOrchestration, StepEventFail}:            StepError,
		{StepEnqueuedAsErrorForOrchestration, StepEventFail}:     StepError,
		{StepEnqueuedAsErrorForOrchestration, StepEventComplete}: StepComplete,
		{StepInProgress, StepEventComplete}:                      StepComplete, // legacy direct path

		{StepInProgress, StepEventFail}: StepError,
		{StepPending, StepEventFail}:    StepError,
		{StepEnqueued, StepEventFail}:   StepError,

		{StepPending, StepEventCancel}:                         StepCancelled,
		{StepEnqueued, StepEventCancel}:                        StepCancelled,
		{StepInProgress, StepEventCancel}:                      StepCancelled,
		{StepEnqueuedForOrchestration, StepEventCancel}:        StepCancelled,
		{StepEnqueuedAsErrorForOrchestration, StepEventCancel}: StepCancelled,
		{StepError, StepEventCancel}:                           StepCancelled,
		{StepWaitingForRetry, StepEventCancel}:                 StepCancelled,

		{StepError, StepEventRetry}:           StepPending,
		{StepWaitingForRetry, StepEventRetry}: StepPending,

		{StepInProgress, StepEventWaitForRetry}:                      StepWaitingForRetry,
		{StepEnqueued, StepEventWaitForRetry}:                        StepWaitingForRetry,
		{StepPending, StepEventWaitForRetry}:                         StepWaitingForRetry,
		{StepEnqueuedAsErrorForOrchestration, StepEventWaitForRetry}: StepWaitingForRetry,

		{StepError, StepEventResetForRetry}: StepPending,
	}
	// Operator actions accepted from every state, terminal ones included.
	for _, s := range StepStates() {
		t[stepEdge{s, StepEventCompleteManually}] = StepComplete
		t[stepEdge{s, StepEventResolveManually}] = StepResolvedManually
	}
	return t
}()

// NextStepState returns the state a step in from moves to on ev, or *InvalidTransitionError.
// It applies the transition table only; the "dependencies met" guard needs the database and is
// checked by TransitionStep.
func NextStepState(from StepState, ev StepEvent) (StepState, error) {
	if to, ok := stepTable[stepEdge{from, ev.Type}]; ok {
		return to, nil
	}
	return "", &InvalidTransitionError{Entity: EntityStep, From: string(from), Event: string(ev.Type)}
}

// StepTransitionRule is one legal (from, event) → to entry of the step table.
type StepTransitionRule struct {
	From  StepState
	Event StepEventType
	To    StepState
}

// StepTransitionTable lists every legal step transition, ordered by from state then event.
func StepTransitionTable() []StepTransitionRule {
	var out []StepTransitionRule
	for _, s := range StepStates() {
		for _, e := range StepEventTypes() {
			if to, ok := stepTable[stepEdge{s, e}]; ok {
				out = append(out, StepTransitionRule{s, e, to})
			}
		}
	}
	return out
}

// stepNeedsDependencies reports whether the transition is guarded by "all parents complete or
// resolved_manually" (tasker-core's StepDependenciesMetGuard). The other guards tasker-core
// runs (StepNotInProgressGuard, StepCanBeRetriedGuard) re-check the current state and are
// implied by the table under the row lock.
func stepNeedsDependencies(from StepState, ev StepEventType) bool {
	return from == StepPending && (ev == StepEventEnqueue || ev == StepEventStart)
}

type taskEdge struct {
	from TaskState
	ev   TaskEventType
}

// taskTable is tasker-core's task determine_target_state intersected with
// TransitionGuard::can_transition (the state machine applies both), so it lists what tasker-core
// actually lets through. Notably no event leaves a terminal state: the legacy Error+Reset→pending
// entry of determine_target_state is refused by the guard, as is ResolveManually from a terminal
// state.
var taskTable = func() map[taskEdge]TaskState {
	t := map[taskEdge]TaskState{
		{TaskPending, TaskEventStart}: TaskInitializing,

		{TaskInitializing, TaskEventReadyStepsFound}:     TaskEnqueuingSteps,
		{TaskInitializing, TaskEventNoStepsFound}:        TaskComplete,
		{TaskInitializing, TaskEventNoDependenciesReady}: TaskWaitingForDependencies,

		{TaskEnqueuingSteps, TaskEventStepsEnqueued}: TaskStepsInProcess,
		{TaskEnqueuingSteps, TaskEventEnqueueFailed}: TaskError,

		{TaskStepsInProcess, TaskEventAllStepsCompleted}: TaskEvaluatingResults,
		{TaskStepsInProcess, TaskEventStepCompleted}:     TaskEvaluatingResults,
		{TaskStepsInProcess, TaskEventStepFailed}:        TaskWaitingForRetry,

		{TaskEvaluatingResults, TaskEventAllStepsSuccessful}:  TaskComplete,
		{TaskEvaluatingResults, TaskEventReadyStepsFound}:     TaskEnqueuingSteps,
		{TaskEvaluatingResults, TaskEventNoDependenciesReady}: TaskWaitingForDependencies,
		{TaskEvaluatingResults, TaskEventPermanentFailure}:    TaskBlockedByFailures,

		{TaskWaitingForDependencies, TaskEventDependenciesReady}: TaskEvaluatingResults,
		{TaskWaitingForRetry, TaskEventRetryReady}:               TaskEnqueuingSteps,
		{TaskBlockedByFailures, TaskEventGiveUp}:                 TaskError,
		{TaskBlockedByFailures, TaskEventManualResolution}:       TaskResolvedManually,

		// legacy
		{TaskStepsInProcess, TaskEventComplete}: TaskComplete,
		{TaskStepsInProcess, TaskEventFail}:     TaskError,
	}
	for _, s := range TaskStates() {
		if s.IsTerminal() {
			continue
		}
		t[taskEdge{s, TaskEventCancel}] = TaskCancelled
		t[taskEdge{s, TaskEventResolveManually}] = TaskResolvedManually
	}
	return t
}()

// NextTaskState returns the state a task in from moves to on ev, or *InvalidTransitionError.
func NextTaskState(from TaskState, ev TaskEvent) (TaskState, error) {
	if to, ok := taskTable[taskEdge{from, ev.Type}]; ok {
		return to, nil
	}
	return "", &InvalidTransitionError{Entity: EntityTask, From: string(from), Event: string(ev.Type)}
}

// TaskTransitionRule is one legal (from, event) → to entry of the task table.
type TaskTransitionRule struct {
	From  TaskState
	Event TaskEventType
	To    TaskState
}

// TaskTransitionTable lists every legal task transition, ordered by from state then event.
func TaskTransitionTable() []TaskTransitionRule {
	var out []TaskTransitionRule
	for _, s := range TaskStates() {
		for _, e := range TaskEventTypes() {
			if to, ok := taskTable[taskEdge{s, e}]; ok {
				out = append(out, TaskTransitionRule{s, e, to})
			}
		}
	}
	return out
}

func stateStrings[S ~string](states []S) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}

func expectOK[S comparable](expected []S, current S) bool {
	return len(expected) == 0 || slices.Contains(expected, current)
}
