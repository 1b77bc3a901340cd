// Package protocol holds the wire types that tasker-go exchanges with tasker-core: queue messages,
// the StepExecutionResult persisted in workflow_steps.results, decision and batch outcomes, batch
// worker inputs, checkpoints, and the TaskSequenceStep a handler is hydrated from.
//
// Every type marshals to the JSON that tasker-core's serde serializes (same keys, same null-versus-
// omitted rules), so values written by Go can be read by the Rust orchestrator and worker and vice
// versa. Decoding is lenient like serde's defaults; DecodeStepExecutionResultStrict additionally
// rejects what the Rust orchestrator would refuse to parse.
//
// The package has no database or network dependency.
package protocol
