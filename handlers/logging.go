package handlers

import (
	"log/slog"

	"github.com/tasker-go/tasker/protocol"
)

// Logging attribute keys shared by the handler, worker and orchestration logs.
const (
	LogKeyTaskUUID      = "task_uuid"
	LogKeyStepUUID      = "step_uuid"
	LogKeyCorrelationID = "correlation_id"
	LogKeyStepName      = "step_name"
	LogKeyNamespace     = "namespace"
	LogKeyHandler       = "handler"
)

// LogAttrs returns the identity attributes of a hydrated step: task_uuid, step_uuid,
// correlation_id, step_name, namespace and handler (the callable).
func LogAttrs(seq protocol.TaskSequenceStep) []slog.Attr {
	return []slog.Attr{
		slog.String(LogKeyTaskUUID, seq.Task.Task.TaskUUID.String()),
		slog.String(LogKeyStepUUID, seq.WorkflowStep.WorkflowStepUUID.String()),
		slog.String(LogKeyCorrelationID, seq.Task.Task.CorrelationID.String()),
		slog.String(LogKeyStepName, seq.WorkflowStep.Name),
		slog.String(LogKeyNamespace, seq.Task.NamespaceName),
		slog.String(LogKeyHandler, seq.StepDefinition.Handler.Callable),
	}
}

// MessageLogAttrs returns the attributes known from a queue message alone, before hydration.
func MessageLogAttrs(msg protocol.StepMessage) []slog.Attr {
	return []slog.Attr{
		slog.String(LogKeyTaskUUID, msg.TaskUUID.String()),
		slog.String(LogKeyStepUUID, msg.StepUUID.String()),
		slog.String(LogKeyCorrelationID, msg.CorrelationID.String()),
	}
}

// LoggerFor returns base (slog.Default() when nil) with the step's attributes.
func LoggerFor(base *slog.Logger, seq protocol.TaskSequenceStep) *slog.Logger {
	if base == nil {
		base = slog.Default()
	}
	return base.With(attrsToAny(LogAttrs(seq))...)
}

func attrsToAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
