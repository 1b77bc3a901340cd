package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
)

// Errors of the step read models and manual resolution (match with errors.Is).
var (
	// ErrStepNotFound: no workflow step has the given uuid.
	ErrStepNotFound = errors.New("orchestration: workflow step not found")
	// ErrStepNotInTask: the step exists but belongs to another task.
	ErrStepNotInTask = errors.New("orchestration: step does not belong to the specified task")
	// ErrInvalidFilter: a TaskFilter value is out of range or unknown. Returned wrapped with a
	// message naming the value.
	ErrInvalidFilter = errors.New("orchestration: invalid task filter")
)

// TaskView is a task as the REST API shows it: the tasks row, its template's identity, its
// current state and its execution context (tasker.get_task_execution_context), and, when read
// alone, its steps (tasker.get_step_readiness_status joined with workflow_steps, in creation
// order). Timestamps are UTC.
type TaskView struct {
	TaskUUID            uuid.UUID
	NamedTaskUUID       uuid.UUID
	Namespace           string
	Name                string
	Version             string
	State               state.TaskState // pending when the task has no transition yet
	Complete            bool
	Priority            int32
	CorrelationID       uuid.UUID
	ParentCorrelationID *uuid.UUID
	Initiator           *string
	SourceSystem        *string
	Reason              *string
	Context             json.RawMessage
	Tags                json.RawMessage
	CreatedAt           time.Time
	UpdatedAt           time.Time
	CompletedAt         *time.Time
	Execution           ExecutionContext
	Steps               []StepView // nil in ListTasks
}

// StepView is one step: a get_step_readiness_status row with its workflow_steps columns.
type StepView struct {
	StepUUID              uuid.UUID
	TaskUUID              uuid.UUID
	NamedStepUUID         uuid.UUID
	Name                  string
	State                 state.StepState
	DependenciesSatisfied bool
	RetryEligible         bool
	ReadyForExecution     bool
	LastFailureAt         *time.Time
	NextRetryAt           *time.Time
	TotalParents          int32
	CompletedParents      int32
	Attempts              int32
	MaxAttempts           int32
	BackoffRequestSeconds *int32
	LastAttemptedAt       *time.Time
	CreatedAt             time.Time
	UpdatedAt             time.Time
	ProcessedAt           *time.Time
	Results               json.RawMessage
}

// TaskFilter selects and pages tasks as tasker-core's GET /v1/tasks query does. Nil filters
// match everything; a non-nil empty string matches only empty values (as tasker-core binds it).
type TaskFilter struct {
	Namespace    *string
	Initiator    *string
	SourceSystem *string
	// Status: "completed" (tasks.complete), "pending" (not complete) as in tasker-core; any
	// other task state name matches tasks currently in that state.
	Status *string
	// Page is 1-based (0 means 1); PerPage is 1..100 (0 means 25).
	Page, PerPage int
}

// TaskPage is one page of tasks, newest first.
type TaskPage struct {
	Tasks   []TaskView
	Total   int64
	Page    int
	PerPage int
}

// Default and largest page sizes of ListTasks.
const (
	DefaultPerPage = 25
	MaxPerPage     = 100
)

const taskViewColumns = `
	t.task_uuid, t.named_task_uuid, tn.name, nt.name, nt.version, t.complete, t.priority,
	t.correlation_id, t.parent_correlation_id, t.initiator, t.source_system, t.reason, t.context,
	t.tags, t.created_at, t.updated_at, t.completed_at,
	c.status, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps, c.failed_steps,
	c.ready_steps, c.execution_status, c.recommended_action, c.completion_percentage::float8,
	c.health_status, c.enqueued_steps`

const taskViewFrom = `
	  FROM tasker.tasks t
	  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
	  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid`

func scanTaskView(r pgx.Row) (TaskView, error) {
	var (
		v             TaskView
		ctxJSON, tags []byte
		st            string
	)
	ec := &v.Execution
	err := r.Scan(&v.TaskUUID, &v.NamedTaskUUID, &v.Namespace, &v.Name, &v.Version, &v.Complete, &v.Priority,
		&v.CorrelationID, &v.ParentCorrelationID, &v.Initiator, &v.SourceSystem, &v.Reason, &ctxJSON,
		&tags, &v.CreatedAt, &v.UpdatedAt, &v.CompletedAt,
		&st, &ec.TotalSteps, &ec.PendingSteps, &ec.InProgressSteps, &ec.CompletedSteps, &ec.FailedSteps,
		&ec.ReadySteps, &ec.ExecutionStatus, &ec.RecommendedAction, &ec.CompletionPercentage,
		&ec.HealthStatus, &ec.EnqueuedSteps)
	ec.TaskUUID, ec.NamedTaskUUID, ec.Status = v.TaskUUID, v.NamedTaskUUID, st
	v.State = state.TaskState(st)
	v.Context, v.Tags = state.RawOrNil(ctxJSON), state.RawOrNil(tags)
	return v, err
}

// Task reads one task with its execution context and steps, in one read-only snapshot.
// ErrTaskNotFound if there is no such task.
func (o *Orchestrator) Task(ctx context.Context, taskUUID uuid.UUID) (*TaskView, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	v, err := scanTaskView(tx.QueryRow(ctx, `SELECT `+taskViewColumns+taskViewFrom+`
		  CROSS JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) c
		 WHERE t.task_uuid = $1`, taskUUID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("orchestration: read task %s: %w", taskUUID, err)
	}
	if v.Steps, err = readSteps(ctx, tx, taskUUID, nil); err != nil {
		return nil, err
	}
	return &v, nil
}

// ListTasks returns the page of tasks f selects, newest first (created_at, then task_uuid,
// descending), with their execution contexts and without steps, and the number of tasks f
// matches. A page past the end is empty. Errors wrap ErrInvalidFilter for a page size outside
// 1..100 (after defaulting) or an unknown status.
func (o *Orchestrator) ListTasks(ctx context.Context, f TaskFilter) (*TaskPage, error) {
	if f.Page == 0 {
		f.Page = 1
	}
	if f.PerPage == 0 {
		f.PerPage = DefaultPerPage
	}
	if f.Page < 1 {
		return nil, fmt.Errorf("%w: page must be >= 1", ErrInvalidFilter)
	}
	if f.PerPage < 1 || f.PerPage > MaxPerPage {
		return nil, fmt.Errorf("%w: per_page must be between 1 and %d", ErrInvalidFilter, MaxPerPage)
	}
	var (
		conds []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Namespace != nil {
		add("tn.name = $%d", *f.Namespace)
	}
	if f.Status != nil {
		switch s := *f.Status; {
		case s == "completed":
			conds = append(conds, "t.complete")
		case s == "pending":
			conds = append(conds, "NOT t.complete")
		case state.TaskState(s).Valid():
			add(`COALESCE((SELECT tt.to_state FROM tasker.task_transitions tt
			               WHERE tt.task_uuid = t.task_uuid AND tt.most_recent), 'pending') = $%d`, s)
		default:
			return nil, fmt.Errorf("%w: unknown status %q (completed, pending, or a task state)", ErrInvalidFilter, s)
		}
	}
	if f.Initiator != nil {
		add("t.initiator = $%d", *f.Initiator)
	}
	if f.SourceSystem != nil {
		add("t.source_system = $%d", *f.SourceSystem)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}

	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	page := &TaskPage{Page: f.Page, PerPage: f.PerPage, Tasks: []TaskView{}}
	if err := tx.QueryRow(ctx, `SELECT count(*)`+taskViewFrom+where, args...).Scan(&page.Total); err != nil {
		return nil, fmt.Errorf("orchestration: count tasks: %w", err)
	}
	n := len(args)
	args = append(args, f.PerPage, (f.Page-1)*f.PerPage)
	rows, err := tx.Query(ctx, fmt.Sprintf(`
		WITH page AS (
		    SELECT t.task_uuid, t.created_at`+taskViewFrom+where+`
		     ORDER BY t.created_at DESC, t.task_uuid DESC
		     LIMIT $%d OFFSET $%d)
		SELECT `+taskViewColumns+taskViewFrom+`
		  JOIN page p ON p.task_uuid = t.task_uuid
		  JOIN tasker.get_task_execution_contexts_batch(ARRAY(SELECT task_uuid FROM page)) c
		    ON c.task_uuid = t.task_uuid
		 ORDER BY p.created_at DESC, p.task_uuid DESC`, n+1, n+2), args...)
	if err != nil {
		return nil, fmt.Errorf("orchestration: list tasks: %w", err)
	}
	if page.Tasks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TaskView, error) { return scanTaskView(r) }); err != nil {
		return nil, fmt.Errorf("orchestration: list tasks: %w", err)
	}
	return page, nil
}

// readSteps reads the task's steps (only those in only, when not nil), in creation order.
func readSteps(ctx context.Context, q pgx.Tx, taskUUID uuid.UUID, only []uuid.UUID) ([]StepView, error) {
	rows, err := q.Query(ctx, `
		SELECT r.workflow_step_uuid, r.task_uuid, r.named_step_uuid, r.name, r.current_state,
		       r.dependencies_satisfied, r.retry_eligible, r.ready_for_execution, r.last_failure_at,
		       r.next_retry_at, r.total_parents, r.completed_parents, r.attempts, r.max_attempts,
		       r.backoff_request_seconds, r.last_attempted_at, ws.created_at, ws.updated_at,
		       ws.processed_at, ws.results
		  FROM tasker.get_step_readiness_status($1, $2) r
		  JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = r.workflow_step_uuid
		 ORDER BY ws.created_at, r.workflow_step_uuid`, taskUUID, only)
	if err != nil {
		return nil, fmt.Errorf("orchestration: read steps of %s: %w", taskUUID, err)
	}
	steps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StepView, error) {
		var (
			s       StepView
			st      string
			results []byte
		)
		err := r.Scan(&s.StepUUID, &s.TaskUUID, &s.NamedStepUUID, &s.Name, &st,
			&s.DependenciesSatisfied, &s.RetryEligible, &s.ReadyForExecution, &s.LastFailureAt,
			&s.NextRetryAt, &s.TotalParents, &s.CompletedParents, &s.Attempts, &s.MaxAttempts,
			&s.BackoffRequestSeconds, &s.LastAttemptedAt, &s.CreatedAt, &s.UpdatedAt,
			&s.ProcessedAt, &results)
		s.State, s.Results = state.StepState(st), state.RawOrNil(results)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: read steps of %s: %w", taskUUID, err)
	}
	return steps, nil
}

// TaskSteps returns the task's steps in creation order. ErrTaskNotFound if there is no such
// task.
func (o *Orchestrator) TaskSteps(ctx context.Context, taskUUID uuid.UUID) ([]StepView, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tasker.tasks WHERE task_uuid = $1)`, taskUUID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("orchestration: read task %s: %w", taskUUID, err)
	}
	if !exists {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	return readSteps(ctx, tx, taskUUID, nil)
}

// stepOwner returns the task of stepUUID: ErrStepNotFound if there is no such step,
// ErrStepNotInTask if it is not taskUUID.
func stepOwner(ctx context.Context, q pgx.Tx, taskUUID, stepUUID uuid.UUID) error {
	var owner uuid.UUID
	err := q.QueryRow(ctx, `SELECT task_uuid FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, stepUUID).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	if err != nil {
		return fmt.Errorf("orchestration: read step %s: %w", stepUUID, err)
	}
	if owner != taskUUID {
		return fmt.Errorf("%w: step %s, task %s", ErrStepNotInTask, stepUUID, taskUUID)
	}
	return nil
}

// Step returns one step of a task: ErrStepNotFound if there is no such step, ErrStepNotInTask if
// it belongs to another task.
func (o *Orchestrator) Step(ctx context.Context, taskUUID, stepUUID uuid.UUID) (*StepView, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	return readStep(ctx, tx, taskUUID, stepUUID)
}

func readStep(ctx context.Context, tx pgx.Tx, taskUUID, stepUUID uuid.UUID) (*StepView, error) {
	if err := stepOwner(ctx, tx, taskUUID, stepUUID); err != nil {
		return nil, err
	}
	steps, err := readSteps(ctx, tx, taskUUID, []uuid.UUID{stepUUID})
	if err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	return &steps[0], nil
}

// StepAuditRecord is a tasker.workflow_step_result_audit row with its transition and step name.
type StepAuditRecord struct {
	AuditUUID       uuid.UUID
	StepUUID        uuid.UUID
	TransitionUUID  uuid.UUID
	TaskUUID        uuid.UUID
	RecordedAt      time.Time
	WorkerUUID      *uuid.UUID
	CorrelationID   *uuid.UUID
	Success         bool
	ExecutionTimeMs *int64
	StepName        string
	FromState       *string
	ToState         string
	// Event is the transition's metadata "event" (the step event as JSON text), nil without one.
	Event *string
}

// StepAudit returns the step's result audit records, newest first (tasker-core's order):
// ErrStepNotFound if there is no such step, ErrStepNotInTask if it belongs to another task.
func (o *Orchestrator) StepAudit(ctx context.Context, taskUUID, stepUUID uuid.UUID) ([]StepAuditRecord, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if err := stepOwner(ctx, tx, taskUUID, stepUUID); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `
		SELECT a.workflow_step_result_audit_uuid, a.workflow_step_uuid, a.workflow_step_transition_uuid,
		       a.task_uuid, a.recorded_at, a.worker_uuid, a.correlation_id, a.success, a.execution_time_ms,
		       ns.name, tr.from_state, tr.to_state, tr.metadata->>'event'
		  FROM tasker.workflow_step_result_audit a
		  JOIN tasker.workflow_step_transitions tr ON tr.workflow_step_transition_uuid = a.workflow_step_transition_uuid
		  JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = a.workflow_step_uuid
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		 WHERE a.workflow_step_uuid = $1
		 ORDER BY a.recorded_at DESC, a.workflow_step_result_audit_uuid DESC`, stepUUID)
	if err != nil {
		return nil, fmt.Errorf("orchestration: audit of step %s: %w", stepUUID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StepAuditRecord, error) {
		var a StepAuditRecord
		err := r.Scan(&a.AuditUUID, &a.StepUUID, &a.TransitionUUID, &a.TaskUUID, &a.RecordedAt, &a.WorkerUUID,
			&a.CorrelationID, &a.Success, &a.ExecutionTimeMs, &a.StepName, &a.FromState, &a.ToState, &a.Event)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: audit of step %s: %w", stepUUID, err)
	}
	return out, nil
}

// TaskSummary is what tasker-core's get_task_summary function returns for one task: the task
// with its execution context and steps, its template's configuration and its pending DLQ entry.
type TaskSummary struct {
	Task TaskView
	// TemplateConfiguration is named_tasks.configuration (nil when absent).
	TemplateConfiguration json.RawMessage
	// InDLQ says whether the task has a DLQ entry whose resolution_status is pending;
	// DLQReason and DLQResolution are that entry's.
	InDLQ         bool
	DLQReason     *string
	DLQResolution *string
}

// TaskSummary reads a task's summary in one read-only snapshot. ErrTaskNotFound if there is no
// such task.
func (o *Orchestrator) TaskSummary(ctx context.Context, taskUUID uuid.UUID) (*TaskSummary, error) {
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	v, err := scanTaskView(tx.QueryRow(ctx, `SELECT `+taskViewColumns+taskViewFrom+`
		  CROSS JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) c
		 WHERE t.task_uuid = $1`, taskUUID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("orchestration: read task %s: %w", taskUUID, err)
	}
	s := &TaskSummary{Task: v}
	if s.Task.Steps, err = readSteps(ctx, tx, taskUUID, nil); err != nil {
		return nil, err
	}
	var cfg []byte
	if err := tx.QueryRow(ctx, `SELECT configuration FROM tasker.named_tasks WHERE named_task_uuid = $1`,
		v.NamedTaskUUID).Scan(&cfg); err != nil {
		return nil, fmt.Errorf("orchestration: read template of %s: %w", taskUUID, err)
	}
	s.TemplateConfiguration = state.RawOrNil(cfg)
	err = tx.QueryRow(ctx, `
		SELECT dlq_reason::text, resolution_status::text FROM tasker.tasks_dlq
		 WHERE task_uuid = $1 AND resolution_status = 'pending'
		 ORDER BY dlq_timestamp DESC LIMIT 1`, taskUUID).Scan(&s.DLQReason, &s.DLQResolution)
	switch {
	case err == nil:
		s.InDLQ = true
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("orchestration: read dlq entry of %s: %w", taskUUID, err)
	}
	return s, nil
}
