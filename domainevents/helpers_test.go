package domainevents

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

func ptr[T any](v T) *T { return &v }

// sampleStep returns a hydrated step of namespace "payments" whose definition declares events
// (a JSON array); attempts is the pre-claim count (nil: first execution), max the step's limit.
func sampleStep(t *testing.T, events string, attempts *int32, max int32) protocol.TaskSequenceStep {
	t.Helper()
	now := protocol.NewNaiveTime(time.Date(2026, 3, 21, 21, 16, 8, 123456000, time.UTC))
	task := uuid.Must(uuid.NewV7())
	return protocol.TaskSequenceStep{
		Task: protocol.TaskForOrchestration{
			Task: protocol.Task{
				TaskUUID: task, NamedTaskUUID: uuid.Must(uuid.NewV7()), RequestedAt: now,
				Context: json.RawMessage(`{"order_id":"o-1"}`), IdentityHash: "h", Priority: 0,
				CreatedAt: now, UpdatedAt: now, CorrelationID: uuid.Must(uuid.NewV7()),
			},
			TaskName: "checkout", TaskVersion: "1.0.0", NamespaceName: "payments",
		},
		WorkflowStep: protocol.WorkflowStepWithName{
			WorkflowStepUUID: uuid.Must(uuid.NewV7()), TaskUUID: task, NamedStepUUID: uuid.Must(uuid.NewV7()),
			Name: "process_payment", TemplateStepName: "process_payment", Retryable: true,
			MaxAttempts: &max, Attempts: attempts, CreatedAt: now, UpdatedAt: now,
		},
		DependencyResults: map[string]protocol.StepExecutionResult{},
		StepDefinition: protocol.StepDefinition{
			Name:            "process_payment",
			Handler:         protocol.HandlerDefinition{Callable: "payments.process"},
			PublishesEvents: json.RawMessage(events),
		},
	}
}

func successResult(step protocol.TaskSequenceStep, result string) protocol.StepExecutionResult {
	return protocol.Success(step.WorkflowStep.WorkflowStepUUID, json.RawMessage(result), 12, nil)
}

func failureResult(step protocol.TaskSequenceStep, retryable bool) protocol.StepExecutionResult {
	return protocol.Failure(step.WorkflowStep.WorkflowStepUUID, "card declined", "PaymentError", "DECLINED", retryable, 12, nil)
}
