package handlers

// Checkpoint is the checkpoint/yield capability; embed it in long-running batch workers. A
// handler that has done a chunk of work returns Yield(...); the worker persists the checkpoint
// to workflow_steps.checkpoint and calls the handler again, whose StepContext then reports the
// checkpoint (HasCheckpoint, CheckpointCursor, CheckpointItemsProcessed, AccumulatedResults).
// The step stays in progress and the yield does not consume an attempt. After a real failure,
// the retry also starts from the persisted checkpoint.
type Checkpoint struct{}

// Yield calls the package-level Yield.
func (Checkpoint) Yield(cursor any, itemsProcessed uint64, accumulated any) Result {
	return Yield(cursor, itemsProcessed, accumulated)
}
