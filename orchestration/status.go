package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
)

// Cancel cancels a task in ONE transaction, as tasker-core's DELETE /v1/tasks/{uuid}: every step
// not in a terminal state (error included) gets Cancel, then the task gets Cancel. Invariant: a
// cancelled task has no step left that a worker could claim or orchestration could enqueue
// (messages still queued for its steps are archived by workers as not claimable; a handler
// still running has its result rejected by the worker's claim fence). It returns the number of
// steps cancelled; ErrTaskNotFound, or ErrTaskTerminal when the task already finished.
func (o *Orchestrator) Cancel(ctx context.Context, taskUUID uuid.UUID) (int, error) {
	tx, err := o.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := lockTask(ctx, tx, taskUUID, false); err != nil {
		return 0, err
	}
	cur, err := state.CurrentTaskState(ctx, tx, taskUUID)
	if err != nil {
		return 0, err
	}
	if cur.IsTerminal() {
		return 0, fmt.Errorf("%w: task %s is %s", ErrTaskTerminal, taskUUID, cur)
	}
	rows, err := tx.Query(ctx, `
		SELECT ws.workflow_step_uuid
		  FROM tasker.workflow_steps ws
		  LEFT JOIN tasker.workflow_step_transitions st
		         ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
		 WHERE ws.task_uuid = $1
		   AND COALESCE(st.to_state, 'pending') NOT IN ('complete', 'cancelled', 'resolved_manually')
		 ORDER BY ws.workflow_step_uuid`, taskUUID)
	if err != nil {
		return 0, fmt.Errorf("orchestration: list steps to cancel: %w", err)
	}
	steps, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, fmt.Errorf("orchestration: list steps to cancel: %w", err)
	}
	for _, s := range steps {
		if _, err := state.TransitionStep(ctx, tx, s, state.StepEventOf(state.StepEventCancel), state.TransitionOptions{}); err != nil {
			return 0, fmt.Errorf("orchestration: cancel step %s: %w", s, err)
		}
	}
	if _, err := state.TransitionTask(ctx, tx, taskUUID, state.TaskEventOf(state.TaskEventCancel), state.TaskTransitionOptions{
		ExpectFrom: []state.TaskState{cur}, ProcessorUUID: o.cfg.ProcessorUUID,
	}); err != nil {
		return 0, fmt.Errorf("orchestration: cancel task %s: %w", taskUUID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	o.metrics.countFinalized(state.TaskCancelled)
	o.log.Info("task cancelled", "task_uuid", taskUUID, "from", cur, "steps_cancelled", len(steps))
	return len(steps), nil
}

// TaskStatus is the read model of one task for the CLI and APIs.
type TaskStatus struct {
	TaskUUID            uuid.UUID        `json:"task_uuid"`
	Namespace           string           `json:"namespace"`
	Name                string           `json:"name"`
	Version             string           `json:"version"`
	State               state.TaskState  `json:"status"`
	Complete            bool             `json:"complete"`
	Priority            int32            `json:"priority"`
	CorrelationID       uuid.UUID        `json:"correlation_id"`
	ParentCorrelationID *uuid.UUID       `json:"parent_correlation_id"`
	Initiator           *string          `json:"initiator"`
	SourceSystem        *string          `json:"source_system"`
	Reason              *string          `json:"reason"`
	Context             json.RawMessage  `json:"context"`
	Tags                json.RawMessage  `json:"tags"`
	IdentityHash        string           `json:"identity_hash"`
	RequestedAt         time.Time        `json:"requested_at"`
	CreatedAt           time.Time        `json:"created_at"`
	UpdatedAt           time.Time        `json:"updated_at"`
	CompletedAt         *time.Time       `json:"completed_at"`
	Execution           ExecutionContext `json:"execution"`
	Steps               []StepStatus     `json:"steps"`
}

// StepStatus is one step of a TaskStatus.
//
// Retryable says whether the step may still run again after a failure: the template allows
// retries (workflow_steps.retryable), the step is not in a final state (complete, error,
// cancelled, resolved_manually), attempts are left, and its stored failure, if any, is
// retryable; a step in error is never retryable here. ErrorRetryable and ErrorMessage come from
// the failure stored in workflow_steps.results (metadata.retryable, error.message; null and
// empty without one). NextRetryAt is set only in waiting_for_retry (the readiness function
// computes a time for failed steps too, which nothing acts on).
type StepStatus struct {
	StepUUID              uuid.UUID       `json:"workflow_step_uuid"`
	Name                  string          `json:"name"`
	State                 state.StepState `json:"current_state"`
	Attempts              int             `json:"attempts"`
	MaxAttempts           int             `json:"max_attempts"`
	Retryable             bool            `json:"retryable"`
	ErrorRetryable        *bool           `json:"error_retryable"`
	ErrorMessage          string          `json:"error_message,omitempty"`
	InProcess             bool            `json:"in_process"`
	Processed             bool            `json:"processed"`
	DependenciesSatisfied bool            `json:"dependencies_satisfied"`
	ReadyForExecution     bool            `json:"ready_for_execution"`
	BackoffRequestSeconds *int            `json:"backoff_request_seconds"`
	NextRetryAt           *time.Time      `json:"next_retry_at"`
	LastAttemptedAt       *time.Time      `json:"last_attempted_at"`
	ProcessedAt           *time.Time      `json:"processed_at"`
	CreatedAt             time.Time       `json:"created_at"`
	UpdatedAt             time.Time       `json:"updated_at"`
	Inputs                json.RawMessage `json:"inputs"`
	Results               json.RawMessage `json:"results"`
}

// TaskStatus reads a task, its execution context (tasker.get_task_execution_context) and its
// steps (with tasker.get_step_readiness_status), in one read-only snapshot. ErrTaskNotFound if
// there is no such task. Timestamps are UTC.
func (o *Orchestrator) TaskStatus(ctx context.Context, taskUUID uuid.UUID) (*TaskStatus, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	var (
		ts       TaskStatus
		cur      *string
		ctxJSON  []byte
		tagsJSON []byte
	)
	err = tx.QueryRow(ctx, `
		SELECT t.task_uuid, tn.name, nt.name, nt.version, t.complete, t.priority, t.correlation_id,
		       t.parent_correlation_id, t.initiator, t.source_system, t.reason, t.context, t.tags,
		       t.identity_hash, t.requested_at, t.created_at, t.updated_at, t.completed_at,
		       (SELECT tt.to_state FROM tasker.task_transitions tt WHERE tt.task_uuid = t.task_uuid AND tt.most_recent)
		  FROM tasker.tasks t
		  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
		  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
		 WHERE t.task_uuid = $1`, taskUUID).Scan(
		&ts.TaskUUID, &ts.Namespace, &ts.Name, &ts.Version, &ts.Complete, &ts.Priority, &ts.CorrelationID,
		&ts.ParentCorrelationID, &ts.Initiator, &ts.SourceSystem, &ts.Reason, &ctxJSON, &tagsJSON,
		&ts.IdentityHash, &ts.RequestedAt, &ts.CreatedAt, &ts.UpdatedAt, &ts.CompletedAt, &cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("orchestration: read task %s: %w", taskUUID, err)
	}
	ts.State = state.TaskPending
	if cur != nil {
		ts.State = state.TaskState(*cur)
	}
	ts.Context, ts.Tags = state.RawOrNil(ctxJSON), state.RawOrNil(tagsJSON)
	if ts.Execution, err = loadExecutionContext(ctx, tx, taskUUID); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `
		SELECT r.workflow_step_uuid, r.name, r.current_state, COALESCE(ws.attempts, 0), r.max_attempts,
		       ws.retryable, ws.in_process, ws.processed, r.dependencies_satisfied, r.ready_for_execution,
		       ws.backoff_request_seconds, r.next_retry_at, ws.last_attempted_at, ws.processed_at,
		       ws.created_at, ws.updated_at, ws.inputs, ws.results
		  FROM tasker.get_step_readiness_status($1) r
		  JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = r.workflow_step_uuid
		 ORDER BY ws.created_at, r.workflow_step_uuid`, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("orchestration: read steps of %s: %w", taskUUID, err)
	}
	ts.Steps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (StepStatus, error) {
		var (
			s               StepStatus
			st              string
			attempts, maxA  int32
			backoff         *int32
			inputs, results []byte
		)
		err := r.Scan(&s.StepUUID, &s.Name, &st, &attempts, &maxA, &s.Retryable, &s.InProcess, &s.Processed,
			&s.DependenciesSatisfied, &s.ReadyForExecution, &backoff, &s.NextRetryAt, &s.LastAttemptedAt,
			&s.ProcessedAt, &s.CreatedAt, &s.UpdatedAt, &inputs, &results)
		s.State, s.Attempts, s.MaxAttempts = state.StepState(st), int(attempts), int(maxA)
		if backoff != nil {
			b := int(*backoff)
			s.BackoffRequestSeconds = &b
		}
		s.Inputs, s.Results = state.RawOrNil(inputs), state.RawOrNil(results)
		s.applyRetryOutlook()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: read steps of %s: %w", taskUUID, err)
	}
	return &ts, nil
}

// applyRetryOutlook sets Retryable, ErrorRetryable, ErrorMessage and NextRetryAt as StepStatus
// documents them; Retryable holds workflow_steps.retryable when it is called.
func (s *StepStatus) applyRetryOutlook() {
	var stored struct {
		Success  bool `json:"success"`
		Metadata struct {
			Retryable bool `json:"retryable"`
		} `json:"metadata"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if len(s.Results) > 0 && json.Unmarshal(s.Results, &stored) == nil && !stored.Success && stored.Error != nil {
		r := stored.Metadata.Retryable
		s.ErrorRetryable, s.ErrorMessage = &r, stored.Error.Message
	}
	final := s.State == state.StepComplete || s.State == state.StepError ||
		s.State == state.StepCancelled || s.State == state.StepResolvedManually
	s.Retryable = s.Retryable && !final && (s.ErrorRetryable == nil || *s.ErrorRetryable) &&
		(s.Attempts == 0 || s.Attempts < s.MaxAttempts)
	if s.State != state.StepWaitingForRetry {
		s.NextRetryAt = nil
	}
}

// ApplyRetryOutlook sets Retryable, ErrorRetryable, ErrorMessage and NextRetryAt from State,
// Attempts, MaxAttempts, Results and Retryable (the template's retryable flag), as TaskStatus
// does; for a StepStatus built from another source (the CLI's remote mode reads the REST API).
func (s *StepStatus) ApplyRetryOutlook() { s.applyRetryOutlook() }

// Step returns the step called name, or nil.
func (t *TaskStatus) Step(name string) *StepStatus {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}
