package state

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
)

// legalStepTransitions is tasker-core's step table (step_state_machine.rs, commit c8733f9),
// written out independently of stepTable.
func legalStepTransitions() []StepTransitionRule {
	rules := []StepTransitionRule{
		{StepPending, StepEventEnqueue, StepEnqueued},
		{StepEnqueued, StepEventStart, StepInProgress},
		{StepPending, StepEventStart, StepInProgress},
		{StepInProgress, StepEventEnqueueForOrchestration, StepEnqueuedForOrchestration},
		{StepInProgress, StepEventEnqueueAsErrorForOrchestration, StepEnqueuedAsErrorForOrchestration},
		{StepEnqueuedForOrchestration, StepEventComplete, StepComplete},
		{StepEnqueuedForOrchestration, StepEventFail, StepError},
		{StepEnqueuedAsErrorForOrchestration, StepEventFail, StepError},
		{StepEnqueuedAsErrorForOrchestration, StepEventComplete, StepComplete},
		{StepInProgress, StepEventComplete, StepComplete},
		{StepInProgress, StepEventFail, StepError},
		{StepPending, StepEventFail, StepError},
		{StepEnqueued, StepEventFail, StepError},
		{StepPending, StepEventCancel, StepCancelled},
		{StepEnqueued, StepEventCancel, StepCancelled},
		{StepInProgress, StepEventCancel, StepCancelled},
		{StepEnqueuedForOrchestration, StepEventCancel, StepCancelled},
		{StepEnqueuedAsErrorForOrchestration, StepEventCancel, StepCancelled},
		{StepError, StepEventCancel, StepCancelled},
		{StepWaitingForRetry, StepEventCancel, StepCancelled},
		{StepError, StepEventRetry, StepPending},
		{StepWaitingForRetry, StepEventRetry, StepPending},
		{StepInProgress, StepEventWaitForRetry, StepWaitingForRetry},
		{StepEnqueued, StepEventWaitForRetry, StepWaitingForRetry},
		{StepPending, StepEventWaitForRetry, StepWaitingForRetry},
		{StepEnqueuedAsErrorForOrchestration, StepEventWaitForRetry, StepWaitingForRetry},
		{StepError, StepEventResetForRetry, StepPending},
	}
	for _, s := range []StepState{StepPending, StepEnqueued, StepInProgress, StepEnqueuedForOrchestration,
		StepEnqueuedAsErrorForOrchestration, StepWaitingForRetry, StepComplete, StepError, StepCancelled,
		StepResolvedManually} {
		rules = append(rules,
			StepTransitionRule{s, StepEventCompleteManually, StepComplete},
			StepTransitionRule{s, StepEventResolveManually, StepResolvedManually})
	}
	return rules
}

// legalTaskTransitions is tasker-core's task table intersected with TransitionGuard.
func legalTaskTransitions() []TaskTransitionRule {
	rules := []TaskTransitionRule{
		{TaskPending, TaskEventStart, TaskInitializing},
		{TaskInitializing, TaskEventReadyStepsFound, TaskEnqueuingSteps},
		{TaskInitializing, TaskEventNoStepsFound, TaskComplete},
		{TaskInitializing, TaskEventNoDependenciesReady, TaskWaitingForDependencies},
		{TaskEnqueuingSteps, TaskEventStepsEnqueued, TaskStepsInProcess},
		{TaskEnqueuingSteps, TaskEventEnqueueFailed, TaskError},
		{TaskStepsInProcess, TaskEventAllStepsCompleted, TaskEvaluatingResults},
		{TaskStepsInProcess, TaskEventStepCompleted, TaskEvaluatingResults},
		{TaskStepsInProcess, TaskEventStepFailed, TaskWaitingForRetry},
		{TaskEvaluatingResults, TaskEventAllStepsSuccessful, TaskComplete},
		{TaskEvaluatingResults, TaskEventReadyStepsFound, TaskEnqueuingSteps},
		{TaskEvaluatingResults, TaskEventNoDependenciesReady, TaskWaitingForDependencies},
		{TaskEvaluatingResults, TaskEventPermanentFailure, TaskBlockedByFailures},
		{TaskWaitingForDependencies, TaskEventDependenciesReady, TaskEvaluatingResults},
		{TaskWaitingForRetry, TaskEventRetryReady, TaskEnqueuingSteps},
		{TaskBlockedByFailures, TaskEventGiveUp, TaskError},
		{TaskBlockedByFailures, TaskEventManualResolution, TaskResolvedManually},
		{TaskStepsInProcess, TaskEventComplete, TaskComplete},
		{TaskStepsInProcess, TaskEventFail, TaskError},
	}
	for _, s := range []TaskState{TaskPending, TaskInitializing, TaskEnqueuingSteps, TaskStepsInProcess,
		TaskEvaluatingResults, TaskWaitingForDependencies, TaskWaitingForRetry, TaskBlockedByFailures} {
		rules = append(rules,
			TaskTransitionRule{s, TaskEventCancel, TaskCancelled},
			TaskTransitionRule{s, TaskEventResolveManually, TaskResolvedManually})
	}
	return rules
}

func TestNextStepStateLegal(t *testing.T) {
	for _, r := range legalStepTransitions() {
		t.Run(fmt.Sprintf("%s/%s", r.From, r.Event), func(t *testing.T) {
			got, err := NextStepState(r.From, StepEventOf(r.Event))
			if err != nil {
				t.Fatalf("NextStepState(%s, %s): %v", r.From, r.Event, err)
			}
			if got != r.To {
				t.Fatalf("NextStepState(%s, %s) = %s, want %s", r.From, r.Event, got, r.To)
			}
		})
	}
}

// Every (state, event) pair outside the legal list is rejected with *InvalidTransitionError.
func TestNextStepStateIllegalExhaustive(t *testing.T) {
	legal := map[[2]string]bool{}
	for _, r := range legalStepTransitions() {
		legal[[2]string{string(r.From), string(r.Event)}] = true
	}
	rejected := 0
	for _, s := range StepStates() {
		for _, e := range StepEventTypes() {
			if legal[[2]string{string(s), string(e)}] {
				continue
			}
			got, err := NextStepState(s, StepEventOf(e))
			var ite *InvalidTransitionError
			if !errors.As(err, &ite) {
				t.Errorf("NextStepState(%s, %s) = %q, %v; want *InvalidTransitionError", s, e, got, err)
				continue
			}
			if ite.Entity != EntityStep || ite.From != string(s) || ite.Event != string(e) || got != "" {
				t.Errorf("NextStepState(%s, %s) error = %+v", s, e, ite)
			}
			rejected++
		}
	}
	if want := 10*12 - len(legalStepTransitions()); rejected != want {
		t.Fatalf("rejected %d pairs, want %d", rejected, want)
	}
}

func TestNextStepStateSampleIllegal(t *testing.T) {
	cases := []struct {
		from StepState
		ev   StepEventType
	}{
		{StepEnqueued, StepEventEnqueue},        // double enqueue
		{StepInProgress, StepEventStart},        // double claim
		{StepComplete, StepEventStart},          // terminal
		{StepCancelled, StepEventCancel},        // terminal
		{StepEnqueued, StepEventComplete},       // skip the worker
		{StepError, StepEventStart},             // must be reset first
		{StepWaitingForRetry, StepEventEnqueue}, // must Retry to pending first
		{StepPending, StepEventEnqueueForOrchestration},
		{StepEnqueuedForOrchestration, StepEventWaitForRetry},
		{StepPending, StepEventResetForRetry},
		{StepState("bogus"), StepEventStart},
		{StepPending, StepEventType("Bogus")},
	}
	for _, c := range cases {
		if got, err := NextStepState(c.from, StepEventOf(c.ev)); err == nil {
			t.Errorf("NextStepState(%s, %s) = %s, want error", c.from, c.ev, got)
		} else if !IsRejected(err) {
			t.Errorf("NextStepState(%s, %s): IsRejected(%v) = false", c.from, c.ev, err)
		}
	}
}

func TestStepTransitionTableMatches(t *testing.T) {
	got := StepTransitionTable()
	want := legalStepTransitions()
	if len(got) != len(want) {
		t.Fatalf("StepTransitionTable has %d rules, want %d", len(got), len(want))
	}
	set := map[StepTransitionRule]bool{}
	for _, r := range want {
		set[r] = true
	}
	for _, r := range got {
		if !set[r] {
			t.Errorf("unexpected rule %+v", r)
		}
	}
}

func TestNextTaskStateLegal(t *testing.T) {
	for _, r := range legalTaskTransitions() {
		t.Run(fmt.Sprintf("%s/%s", r.From, r.Event), func(t *testing.T) {
			got, err := NextTaskState(r.From, TaskEventOf(r.Event))
			if err != nil {
				t.Fatalf("NextTaskState(%s, %s): %v", r.From, r.Event, err)
			}
			if got != r.To {
				t.Fatalf("NextTaskState(%s, %s) = %s, want %s", r.From, r.Event, got, r.To)
			}
		})
	}
}

func TestNextTaskStateIllegalExhaustive(t *testing.T) {
	legal := map[[2]string]bool{}
	for _, r := range legalTaskTransitions() {
		legal[[2]string{string(r.From), string(r.Event)}] = true
	}
	rejected := 0
	for _, s := range TaskStates() {
		for _, e := range TaskEventTypes() {
			if legal[[2]string{string(s), string(e)}] {
				continue
			}
			_, err := NextTaskState(s, TaskEventOf(e))
			var ite *InvalidTransitionError
			if !errors.As(err, &ite) || ite.Entity != EntityTask || ite.From != string(s) || ite.Event != string(e) {
				t.Errorf("NextTaskState(%s, %s) err = %v; want *InvalidTransitionError", s, e, err)
				continue
			}
			rejected++
		}
	}
	if want := 12*22 - len(legalTaskTransitions()); rejected != want {
		t.Fatalf("rejected %d pairs, want %d", rejected, want)
	}
}

func TestNextTaskStateSampleIllegal(t *testing.T) {
	cases := []struct {
		from TaskState
		ev   TaskEventType
	}{
		{TaskError, TaskEventReset},              // refused by tasker-core's guard: error is terminal
		{TaskComplete, TaskEventResolveManually}, // terminal
		{TaskComplete, TaskEventCancel},
		{TaskError, TaskEventCancel},
		{TaskPending, TaskEventReadyStepsFound}, // must Start first
		{TaskInitializing, TaskEventStart},
		{TaskStepsInProcess, TaskEventStart},
		{TaskEvaluatingResults, TaskEventStepCompleted},
		{TaskBlockedByFailures, TaskEventAllStepsSuccessful},
		{TaskStepsInProcess, TaskEventTimeout},
		{TaskStepsInProcess, TaskEventProcessorCrashed},
	}
	for _, c := range cases {
		if got, err := NextTaskState(c.from, TaskEventOf(c.ev)); err == nil {
			t.Errorf("NextTaskState(%s, %s) = %s, want error", c.from, c.ev, got)
		}
	}
}

func TestTaskTransitionTableMatches(t *testing.T) {
	got := TaskTransitionTable()
	want := legalTaskTransitions()
	if len(got) != len(want) {
		t.Fatalf("TaskTransitionTable has %d rules, want %d", len(got), len(want))
	}
	set := map[TaskTransitionRule]bool{}
	for _, r := range want {
		set[r] = true
	}
	for _, r := range got {
		if !set[r] {
			t.Errorf("unexpected rule %+v", r)
		}
	}
}

func TestNoTaskEventLeavesTerminalState(t *testing.T) {
	for _, s := range TaskStates() {
		if !s.IsTerminal() {
			continue
		}
		for _, e := range TaskEventTypes() {
			if _, err := NextTaskState(s, TaskEventOf(e)); err == nil {
				t.Errorf("%s left terminal state %s", e, s)
			}
		}
	}
}

func TestStatePredicates(t *testing.T) {
	terminalSteps := map[StepState]bool{StepComplete: true, StepCancelled: true, StepResolvedManually: true}
	for _, s := range StepStates() {
		if !s.Valid() {
			t.Errorf("%s not Valid", s)
		}
		if s.IsTerminal() != terminalSteps[s] {
			t.Errorf("step %s IsTerminal = %v", s, s.IsTerminal())
		}
		if p, err := ParseStepState(string(s)); err != nil || p != s {
			t.Errorf("ParseStepState(%s) = %s, %v", s, p, err)
		}
	}
	if StepError.IsTerminal() || !StepError.IsError() {
		t.Error("step error must be non-terminal and IsError")
	}
	if !StepEnqueued.IsClaimable() || !StepPending.IsClaimable() || StepInProgress.IsClaimable() {
		t.Error("IsClaimable wrong")
	}
	if !StepComplete.SatisfiesDependencies() || !StepResolvedManually.SatisfiesDependencies() || StepCancelled.SatisfiesDependencies() {
		t.Error("SatisfiesDependencies wrong")
	}
	if _, err := ParseStepState("steps_in_process"); err == nil {
		t.Error("ParseStepState accepted a task state")
	}

	terminalTasks := map[TaskState]bool{TaskComplete: true, TaskError: true, TaskCancelled: true, TaskResolvedManually: true}
	active := map[TaskState]bool{TaskInitializing: true, TaskEnqueuingSteps: true, TaskStepsInProcess: true, TaskEvaluatingResults: true}
	waiting := map[TaskState]bool{TaskWaitingForDependencies: true, TaskWaitingForRetry: true, TaskBlockedByFailures: true}
	for _, s := range TaskStates() {
		if s.IsTerminal() != terminalTasks[s] || s.IsActive() != active[s] || s.IsWaiting() != waiting[s] {
			t.Errorf("task %s predicates: terminal=%v active=%v waiting=%v", s, s.IsTerminal(), s.IsActive(), s.IsWaiting())
		}
		if p, err := ParseTaskState(string(s)); err != nil || p != s {
			t.Errorf("ParseTaskState(%s) = %s, %v", s, p, err)
		}
	}
	if p, err := ParseTaskState("in_progress"); err != nil || p != TaskStepsInProcess {
		t.Errorf("legacy in_progress parsed as %s, %v", p, err)
	}
	if _, err := ParseTaskState("enqueued"); err == nil {
		t.Error("ParseTaskState accepted a step state")
	}
}

func TestInvalidTransitionErrorMessage(t *testing.T) {
	id := uuid.MustParse("01960000-0000-7000-8000-000000000001")
	err := &InvalidTransitionError{Entity: EntityStep, ID: id, From: "in_progress", Event: "Start",
		Expected: []string{"enqueued", "pending"}}
	want := `state: invalid step transition from "in_progress" on Start (step 01960000-0000-7000-8000-000000000001): expected current state in [enqueued pending]`
	if err.Error() != want {
		t.Fatalf("Error() = %q\nwant     %q", err.Error(), want)
	}
	wrapped := fmt.Errorf("claim: %w", err)
	if !IsRejected(wrapped) {
		t.Error("IsRejected(wrapped InvalidTransitionError) = false")
	}
	if !IsRejected(fmt.Errorf("x: %w", ErrConcurrentTransition)) || !IsRejected(&GuardError{}) {
		t.Error("IsRejected misses ErrConcurrentTransition or GuardError")
	}
	if IsRejected(ErrStepNotFound) || IsRejected(errors.New("connection reset")) {
		t.Error("IsRejected accepts infrastructure errors")
	}
}
