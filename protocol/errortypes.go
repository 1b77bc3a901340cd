package protocol

// Standard error_type values of a failed StepExecutionResult. The first five are tasker-core's
// documented handler set; the handler_* and checkpoint_error values are the ones its runtime
// writes for synthetic failures; worker_shutdown is tasker-go's (a step handed back by a worker
// that shut down before its handler finished; retryable).
const (
	ErrorTypePermanent       = "permanent_error"
	ErrorTypeRetryable       = "retryable_error"
	ErrorTypeValidation      = "validation_error"
	ErrorTypeTimeout         = "timeout"
	ErrorTypeHandler         = "handler_error"
	ErrorTypeHandlerNotFound = "handler_not_found"
	ErrorTypeHandlerPanic    = "handler_panic"
	ErrorTypeHandlerTimeout  = "handler_timeout"
	ErrorTypeCheckpoint      = "checkpoint_error"
	ErrorTypeNetwork         = "network_error"
	ErrorTypeDecision        = "decision_error"
	ErrorTypeSerialization   = "serialization_error"
	ErrorTypeWorkerShutdown  = "worker_shutdown"
)
