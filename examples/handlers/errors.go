package exhandlers

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/handlers"
)

// Error injection (README "Retry that succeeds", "Retries exhausted", "Permanent failure").

// failNTimes fails retryably while the attempt number is at most initialization.fail_count
// (default 1), then succeeds. The attempt number is workflow_steps.attempts as hydrated, with
// NULL (never claimed) counting as 1, exactly as tasker-core's FailNTimesHandler reads it.
func failNTimes(_ context.Context, step *handlers.StepContext) handlers.Result {
	failCount := configInt(step, "fail_count", 1)
	attempt := int64(1)
	if a := step.Sequence().WorkflowStep.Attempts; a != nil {
		attempt = int64(*a)
	}
	if attempt <= failCount {
		return fail(fmt.Sprintf("Simulated failure on attempt %d (will succeed after %d failures)", attempt, failCount),
			errTypeRetryable, "SIMULATED_FAILURE", true, map[string]any{"attempt": attempt, "fail_until": failCount})
	}
	return handlers.Success(map[string]any{
		"attempts_before_success": attempt,
		"fail_count_configured":   failCount,
		"message":                 "Succeeded after simulated failures",
	}, nil)
}

// permanentError always fails without retry.
func permanentError(_ context.Context, _ *handlers.StepContext) handlers.Result {
	return fail("Invalid payment method: test_invalid_card", errTypePermanent, "INVALID_PAYMENT_METHOD", false,
		map[string]any{
			"error_code":        "INVALID_PAYMENT_METHOD",
			"reason":            "Test failure scenario",
			"card_type":         "test_invalid_card",
			"expected_behavior": "No retries, immediate failure",
		})
}

func errorInjectionHandlers() []entry {
	return []entry{
		{"error_injection.fail_n_times", handlers.HandlerFunc(failNTimes)},
		{"error_injection.permanent_error", handlers.HandlerFunc(permanentError)},
	}
}
