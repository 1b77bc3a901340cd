package handlers

import (
	"maps"

	"github.com/tasker-go/tasker/protocol"
)

// Decision is the decision-point capability; embed it in a handler struct. The orchestrator
// reads result.decision_point_outcome from a completed decision step and creates the named
// template steps (plus the convergence steps they lead to).
type Decision struct{}

// DecisionSuccess routes to the named template steps:
// {"decision_point_outcome":{"type":"create_steps","step_names":[...]}, "routing_context":{...}}
// (routing_context only when non-empty).
func DecisionSuccess(steps []string, routingContext map[string]any) Result {
	var fields map[string]any
	if len(routingContext) > 0 {
		fields = map[string]any{"routing_context": routingContext}
	}
	return DecisionWithOutcome(protocol.CreateSteps(steps...), fields)
}

// DecisionWithOutcome returns a success whose output is fields plus decision_point_outcome
// (which cannot be overridden by fields).
func DecisionWithOutcome(outcome protocol.DecisionPointOutcome, fields map[string]any) Result {
	value := make(map[string]any, len(fields)+1)
	maps.Copy(value, fields)
	value[protocol.DecisionOutcomeKey] = outcome
	return Success(value, nil)
}

// SkipBranches is a successful decision that creates no steps:
// {"decision_point_outcome":{"type":"no_branches"},"reason":reason}.
func SkipBranches(reason string) Result {
	return DecisionWithOutcome(protocol.NoBranches(), map[string]any{"reason": reason})
}

// DecisionFailure is a failed decision (error_type decision_error); decisions that cannot be
// made usually reflect bad data, so pass retryable false unless the cause is transient.
func DecisionFailure(message string, retryable bool, opts ...Option) Result {
	return Failure(message, ErrorTypeDecision, retryable, opts...)
}

// DecisionSuccess calls the package-level DecisionSuccess.
func (Decision) DecisionSuccess(steps []string, routingContext map[string]any) Result {
	return DecisionSuccess(steps, routingContext)
}

// DecisionWithOutcome calls the package-level DecisionWithOutcome.
func (Decision) DecisionWithOutcome(outcome protocol.DecisionPointOutcome, fields map[string]any) Result {
	return DecisionWithOutcome(outcome, fields)
}

// SkipBranches calls the package-level SkipBranches.
func (Decision) SkipBranches(reason string) Result { return SkipBranches(reason) }

// DecisionFailure calls the package-level DecisionFailure.
func (Decision) DecisionFailure(message string, retryable bool, opts ...Option) Result {
	return DecisionFailure(message, retryable, opts...)
}
