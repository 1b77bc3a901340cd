package worker

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// archive moves a message to the archive with a reason header, outside any other transaction.
func (w *Worker) archive(ctx context.Context, q string, msgID int64, reason, detail string) {
	if err := w.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		return w.archiveTx(ctx, tx, q, msgID, reason, detail)
	}); err != nil {
		w.log.Error("archive failed; message will be redelivered", "queue", q, "msg_id", msgID, "error", err)
	}
}

// archiveCommit archives the message on tx and commits.
func (w *Worker) archiveCommit(ctx context.Context, tx pgx.Tx, q string, msgID int64, reason, detail string) error {
	if err := w.archiveTx(ctx, tx, q, msgID, reason, detail); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// archiveTx records reason in the message's headers and archives it, on tx.
func (w *Worker) archiveTx(ctx context.Context, tx pgx.Tx, q string, msgID int64, reason, detail string) error {
	if _, err := w.queue.ArchiveWithReasonTx(ctx, tx, q, msgID, reason, detail, w.cfg.WorkerID, nil); err != nil {
		return err
	}
	w.metrics.archived.Add(1)
	return nil
}

// Reasons a message is archived without running a handler; they are also written into the
// archived message's headers (key queue.ArchiveReasonHeader) so the archive explains itself.
const (
	ReasonMalformed     = "malformed_message"
	ReasonStepNotFound  = "step_not_found"
	ReasonTaskMismatch  = "task_mismatch"
	ReasonNotClaimable  = "step_not_claimable"
	ReasonNoTemplate    = "template_step_missing"
	ReasonRecoveredStep = "recovered_abandoned_step"
	// ReasonBadDependencies: a claimed step's dependency results cannot be decoded; it is
	// reported as a permanent serialization failure.
	ReasonBadDependencies = "dependency_results_unreadable"
	// ReasonNamespaceMismatch: the step's task is in another namespace than the queue's (one
	// spelled differently in case shares the queue's table); the step is left alone.
	ReasonNamespaceMismatch = "namespace_mismatch"
)
