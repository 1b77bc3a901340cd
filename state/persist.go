package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/protocol"
)

// Names of the partial unique indexes that allow one most_recent transition per entity.
const (
	stepMostRecentIndex = "idx_workflow_step_transitions_uuid_most_recent"
	taskMostRecentIndex = "idx_task_transitions_uuid_most_recent"
)

// Querier runs one query returning one row; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Lister runs a query returning rows; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Lister interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// TransitionOptions tune TransitionStep.
type TransitionOptions struct {
	// ExpectFrom, if not empty, lists the states the caller requires the step to be in; any
	// other current state gives *InvalidTransitionError even when the event would be allowed.
	ExpectFrom []StepState
	// WorkerUUID, if not zero, is added to the metadata as "worker_uuid" (worker-side transitions).
	WorkerUUID uuid.UUID
	// CorrelationID, if not zero, is added to the metadata as "correlation_id".
	CorrelationID uuid.UUID
	// Timestamp is the metadata "timestamp"; zero means now.
	Timestamp time.Time
	// DependenciesChecked says the caller has checked, under locks that keep it true until
	// commit, that every parent is complete or resolved_manually (orchestration's readiness read
	// under the task row lock); QueueStepTransition then accepts pending → enqueued.
	DependenciesChecked bool
	// ClaimAttempt, on entering in_progress, also sets attempts = COALESCE(attempts,0)+1 and
	// last_attempted_at = now (UTC) in the same row update as in_process: a worker's claim.
	// The new attempts value is returned in StepTransition.Attempts.
	ClaimAttempt bool
	// TaskNamespace, if set, limits ClaimQuery to steps whose task is in exactly this namespace
	// (task_namespaces.name, compared case-sensitively); other steps are left as they are.
	TaskNamespace string
}

// TaskTransitionOptions tune TransitionTask.
type TaskTransitionOptions struct {
	// ExpectFrom, if not empty, lists the states the caller requires the task to be in.
	ExpectFrom []TaskState
	// ProcessorUUID, if not zero, is written to task_transitions.processor_uuid (audit only).
	ProcessorUUID uuid.UUID
	// Metadata holds extra keys for task_transitions.metadata (e.g. "atomic_finalization": true);
	// "event" and "timestamp" are always ours.
	Metadata map[string]any
	// Timestamp is the metadata "timestamp"; zero means now.
	Timestamp time.Time
}

// StepTransition is one row of tasker.workflow_step_transitions.
type StepTransition struct {
	UUID       uuid.UUID // workflow_step_transition_uuid
	StepUUID   uuid.UUID
	From       StepState // "" when from_state is NULL (the initial row)
	To         StepState
	SortKey    int
	MostRecent bool
	Metadata   json.RawMessage
	CreatedAt  time.Time
	// Attempts is workflow_steps.attempts after a ClaimAttempt transition (0 otherwise).
	Attempts int32
}

// TaskTransition is one row of tasker.task_transitions.
type TaskTransition struct {
	UUID          uuid.UUID // task_transition_uuid
	TaskUUID      uuid.UUID
	From          TaskState // "" when from_state is NULL (the initial row)
	To            TaskState
	SortKey       int
	MostRecent    bool
	ProcessorUUID uuid.UUID // zero when NULL
	Metadata      json.RawMessage
	CreatedAt     time.Time
}

// TransitionStep moves a step on ev inside the caller's transaction and applies the
// workflow_steps flag updates that belong to the new state.
//
// Invariant kept (with the caller's commit): a step has exactly one most_recent transition, its
// to_state is the step's state, sort_keys run 1..n without gaps, each row's from_state is the
// previous row's to_state, and workflow_steps.in_process/processed/processed_at/results agree
// with the state. The step row is locked (FOR NO KEY UPDATE) before the current state is read,
// so concurrent transitions of one step serialize and a loser sees the winner's state (and gets
// *InvalidTransitionError) instead of racing on the unique index. NO KEY UPDATE rather than
// FOR UPDATE: it excludes every other transition of ours just the same, but not the FOR KEY
// SHARE lock a foreign-key check takes, so a writer that does not lock the step (tasker-core
// inserting a transition row) cannot deadlock with us; it meets us on the unique index instead
// (ErrConcurrentTransition). Run it in READ COMMITTED (the default): under REPEATABLE READ a
// loser gets a serialization failure instead.
//
// Errors: ErrStepNotFound, *InvalidTransitionError, *GuardError (before anything is written, so
// the transaction stays usable), ErrConcurrentTransition (transaction aborted), or a wrapped
// database error.
func TransitionStep(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID, ev StepEvent, opts TransitionOptions) (*StepTransition, error) {
	if !ev.Type.Valid() {
		return nil, fmt.Errorf("state: unknown step event type %q", ev.Type)
	}
	// The head is read by a second statement after the lock (pipelined in one round trip): in
	// READ COMMITTED its snapshot includes whatever the previous lock holder committed.
	found, cur, maxKey, err := lockAndReadHead(ctx, tx, lockStepSQL, stepHeadSQL, stepUUID)
	if err != nil {
		return nil, fmt.Errorf("state: lock and read step %s: %w", stepUUID, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	from := StepPending
	if cur != nil {
		if from, err = ParseStepState(*cur); err != nil {
			return nil, err
		}
	}
	if !expectOK(opts.ExpectFrom, from) {
		return nil, &InvalidTransitionError{Entity: EntityStep, ID: stepUUID, From: string(from),
			Event: string(ev.Type), Expected: stateStrings(opts.ExpectFrom)}
	}
	to, err := NextStepState(from, ev)
	if err != nil {
		return nil, &InvalidTransitionError{Entity: EntityStep, ID: stepUUID, From: string(from), Event: string(ev.Type)}
	}
	if stepNeedsDependencies(from, ev.Type) {
		// Parents' states are read without locking them: "complete or resolved_manually" is
		// never left except towards the other of the two, so a satisfied check stays true.
		var unmet int64
		if err := tx.QueryRow(ctx, `
			SELECT count(*)
			  FROM tasker.workflow_step_edges e
			  LEFT JOIN tasker.workflow_step_transitions p
			    ON p.workflow_step_uuid = e.from_step_uuid AND p.most_recent
			 WHERE e.to_step_uuid = $1
			   AND (p.to_state IS NULL OR p.to_state NOT IN ('complete', 'resolved_manually'))`,
			stepUUID).Scan(&unmet); err != nil {
			return nil, fmt.Errorf("state: check step %s dependencies: %w", stepUUID, err)
		}
		if unmet > 0 {
			return nil, &GuardError{Entity: EntityStep, ID: stepUUID, From: string(from), Event: string(ev.Type),
				Reason: fmt.Sprintf("%d unmet dependencies", unmet)}
		}
	}

	head := StepHead{StepUUID: stepUUID, State: from, SortKey: maxKey}
	tr, err := newStepTransition(head, to, ev, opts)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	queueStepWrites(b, head, tr, ev, opts)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return tr, nil
}

const (
	lockStepSQL = `SELECT 1 FROM tasker.workflow_steps WHERE workflow_step_uuid = $1 FOR NO KEY UPDATE`
	stepHeadSQL = `
		SELECT (SELECT to_state FROM tasker.workflow_step_transitions
		         WHERE workflow_step_uuid = $1 AND most_recent ORDER BY sort_key DESC LIMIT 1),
		       (SELECT COALESCE(MAX(sort_key), 0) FROM tasker.workflow_step_transitions
		         WHERE workflow_step_uuid = $1)`
	insertStepTransitionSQL = `
		INSERT INTO tasker.workflow_step_transitions
		       (workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata,
		        sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5::jsonb, $6, true, NOW(), NOW())
		RETURNING created_at`
	lockTaskSQL = `SELECT 1 FROM tasker.tasks WHERE task_uuid = $1 FOR NO KEY UPDATE`
	taskHeadSQL = `
		SELECT (SELECT to_state FROM tasker.task_transitions
		         WHERE task_uuid = $1 AND most_recent ORDER BY sort_key DESC LIMIT 1),
		       (SELECT COALESCE(MAX(sort_key), 0) FROM tasker.task_transitions WHERE task_uuid = $1)`
	insertTaskTransitionSQL = `
		INSERT INTO tasker.task_transitions
		       (task_transition_uuid, task_uuid, to_state, from_state, processor_uuid, metadata,
		        sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6::jsonb, $7, true, NOW(), NOW())
		RETURNING created_at`
)

// lockAndReadHead locks the row with lockSQL and reads its transition head with headSQL, in one
// round trip. found is false when the row does not exist.
func lockAndReadHead(ctx context.Context, tx pgx.Tx, lockSQL, headSQL string, id uuid.UUID) (found bool, cur *string, maxKey int, err error) {
	b := &pgx.Batch{}
	b.Queue(lockSQL, id)
	b.Queue(headSQL, id)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	var one int
	switch err := br.QueryRow().Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil, 0, br.Close()
	case err != nil:
		return false, nil, 0, err
	}
	if err := br.QueryRow().Scan(&cur, &maxKey); err != nil {
		return false, nil, 0, err
	}
	return true, cur, maxKey, br.Close()
}

// stepActionSQL is the workflow_steps update for entering to, mirroring tasker-core's UpdateStepResultsAction and ResetAttemptsAction.
// Differences, on purpose: a result event without data (None) leaves results as they are
// instead of writing JSON null, and entering waiting_for_retry clears in_process (tasker-core
// leaves it, which would keep a step that went in_progress→waiting_for_retry from ever being
// ready again).
func stepActionSQL(stepUUID uuid.UUID, from, to StepState, ev StepEvent) (sql string, args []any) {
	args = []any{stepUUID}
	results := ev.Results()
	switch to {
	case StepInProgress:
		sql = `UPDATE tasker.workflow_steps SET in_process = true, updated_at = NOW() WHERE workflow_step_uuid = $1`
	case StepEnqueuedForOrchestration, StepEnqueuedAsErrorForOrchestration:
		sql = `UPDATE tasker.workflow_steps SET in_process = false, results = COALESCE($2::jsonb, results), updated_at = NOW()
		        WHERE workflow_step_uuid = $1`
		args = append(args, nullableJSON(results))
	case StepComplete:
		sql = `UPDATE tasker.workflow_steps
		          SET processed = true, in_process = false, processed_at = NOW(),
		              results = COALESCE($2::jsonb, results), updated_at = NOW()
		        WHERE workflow_step_uuid = $1`
		args = append(args, nullableJSON(results))
	case StepError, StepWaitingForRetry:
		sql = `UPDATE tasker.workflow_steps SET in_process = false, updated_at = NOW() WHERE workflow_step_uuid = $1`
	case StepCancelled, StepResolvedManually:
		sql = `UPDATE tasker.workflow_steps
		          SET in_process = false, processed = true, processed_at = NOW(), updated_at = NOW()
		        WHERE workflow_step_uuid = $1`
	case StepPending:
		if from == StepError && ev.Type == StepEventResetForRetry {
			sql = `UPDATE tasker.workflow_steps SET attempts = 0, updated_at = NOW() WHERE workflow_step_uuid = $1`
		}
	}
	return sql, args
}

// InitStepState writes the first transition of a step that has none: to_state pending,
// from_state NULL, sort_key 1, as task initialization does. metadata nil means tasker-core's
// {"initial_state":"pending","from_service":"task_initializer"}. A step that already has a
// transition gives *InvalidTransitionError with Event "initial".
//
// Invariant kept: the first transition row of a step is unique and most_recent (step row locked).
func InitStepState(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID, metadata map[string]any) (*StepTransition, error) {
	found, cur, maxKey, err := lockAndReadHead(ctx, tx, lockStepSQL, stepHeadSQL, stepUUID)
	if err != nil {
		return nil, fmt.Errorf("state: lock and read step %s: %w", stepUUID, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	if maxKey > 0 {
		from := ""
		if cur != nil {
			from = *cur
		}
		return nil, &InvalidTransitionError{Entity: EntityStep, ID: stepUUID, From: from, Event: "initial"}
	}
	b := &pgx.Batch{}
	tr, err := QueueInitialStepTransition(b, stepUUID, metadata)
	if err != nil {
		return nil, err
	}
	return tr, tx.SendBatch(ctx, b).Close()
}

// TransitionTask moves a task on ev inside the caller's transaction. Entering complete also sets
// tasks.complete = true and completed_at = NOW().
//
// Invariant kept (with the caller's commit): a task has exactly one most_recent transition, its
// to_state is the task's state, sort_keys run 1..n without gaps, and tasks.complete is true once
// the state is complete. The tasks row is locked (FOR NO KEY UPDATE, see TransitionStep) before
// the state is read, so concurrent transitions serialize; the loser gets *InvalidTransitionError. The metadata is
// {"event": <Rust Debug form of ev>, "timestamp": <RFC 3339>, ...opts.Metadata}.
//
// Errors: ErrTaskNotFound, *InvalidTransitionError (nothing written), ErrConcurrentTransition
// (transaction aborted), or a wrapped database error.
func TransitionTask(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID, ev TaskEvent, opts TaskTransitionOptions) (*TaskTransition, error) {
	if !ev.Type.Valid() {
		return nil, fmt.Errorf("state: unknown task event type %q", ev.Type)
	}
	found, cur, maxKey, err := lockAndReadHead(ctx, tx, lockTaskSQL, taskHeadSQL, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("state: lock and read task %s: %w", taskUUID, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	from := TaskPending
	if cur != nil {
		if from, err = ParseTaskState(*cur); err != nil {
			return nil, err
		}
	}
	b := &pgx.Batch{}
	tr, err := QueueTaskTransition(b, TaskHead{TaskUUID: taskUUID, State: from, SortKey: maxKey}, ev, opts)
	if err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return tr, nil
}

// TaskHead is a task's most_recent transition as the holder of the task row lock knows it.
type TaskHead struct {
	TaskUUID uuid.UUID
	State    TaskState
	SortKey  int
}

// Head is the TaskHead this transition made.
func (t *TaskTransition) Head() TaskHead {
	return TaskHead{TaskUUID: t.TaskUUID, State: t.To, SortKey: t.SortKey}
}

// QueueTaskTransition queues on b the writes that move a task from head on ev (retire the head,
// insert the new one, mark completion), reading nothing: the caller holds the task row lock and
// knows the head (the state it read after locking, or the last transition it made).
//
// Invariant kept: as TransitionTask, provided the caller holds the task row lock since it learnt
// head (task transitions are only written under that lock; a stale head is not detected here).
func QueueTaskTransition(b *pgx.Batch, head TaskHead, ev TaskEvent, opts TaskTransitionOptions) (*TaskTransition, error) {
	trs, err := QueueTaskTransitions(b, head, []TaskHop{{Event: ev, Opts: opts}})
	if err != nil {
		return nil, err
	}
	return trs[0], nil
}

// TaskHop is one transition of QueueTaskTransitions.
type TaskHop struct {
	Event TaskEvent
	Opts  TaskTransitionOptions
}

// QueueTaskTransitions is QueueTaskTransition for several hops in a row, written as one retire
// and one multi-row insert (only the last row most_recent): what a chain of QueueTaskTransition
// calls writes, in two statements instead of two per hop.
func QueueTaskTransitions(b *pgx.Batch, head TaskHead, hops []TaskHop) ([]*TaskTransition, error) {
	if len(hops) == 0 {
		return nil, nil
	}
	taskUUID := head.TaskUUID
	trs := make([]*TaskTransition, len(hops))
	var sql strings.Builder
	sql.WriteString(`INSERT INTO tasker.task_transitions
	       (task_transition_uuid, task_uuid, to_state, from_state, processor_uuid, metadata,
	        sort_key, most_recent, created_at, updated_at) VALUES `)
	args := make([]any, 0, 8*len(hops))
	cur := head
	for i, h := range hops {
		ev, opts := h.Event, h.Opts
		if !ev.Type.Valid() {
			return nil, fmt.Errorf("state: unknown task event type %q", ev.Type)
		}
		if !expectOK(opts.ExpectFrom, cur.State) {
			return nil, &InvalidTransitionError{Entity: EntityTask, ID: taskUUID, From: string(cur.State),
				Event: string(ev.Type), Expected: stateStrings(opts.ExpectFrom)}
		}
		to, err := NextTaskState(cur.State, ev)
		if err != nil {
			return nil, &InvalidTransitionError{Entity: EntityTask, ID: taskUUID, From: string(cur.State), Event: string(ev.Type)}
		}
		meta := make(map[string]any, len(opts.Metadata)+2)
		for k, v := range opts.Metadata {
			meta[k] = v
		}
		meta["event"] = ev.String()
		meta["timestamp"] = rfc3339(opts.Timestamp)
		metaJSON, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("state: encode task transition metadata: %w", err)
		}
		id, err := newTransitionID()
		if err != nil {
			return nil, err
		}
		last := i == len(hops)-1
		trs[i] = &TaskTransition{UUID: id, TaskUUID: taskUUID, From: cur.State, To: to, SortKey: cur.SortKey + 1,
			MostRecent: last, ProcessorUUID: opts.ProcessorUUID, Metadata: metaJSON}
		if i > 0 {
			sql.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&sql, "($%d, $%d, $%d, NULLIF($%d, ''), $%d, $%d::jsonb, $%d, $%d, NOW(), NOW())",
			n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
		args = append(args, id, taskUUID, string(to), string(cur.State), nullableUUID(opts.ProcessorUUID),
			string(metaJSON), cur.SortKey+1, last)
		cur = trs[i].Head()
	}
	sql.WriteString(" RETURNING created_at")
	b.Queue(`UPDATE tasker.task_transitions SET most_recent = false, updated_at = NOW()
		 WHERE task_uuid = $1 AND most_recent`, taskUUID).Fn = wrapExec("retire task %s transition", taskUUID)
	b.Queue(sql.String(), args...).Fn = func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err == nil {
			for i := 0; rows.Next() && err == nil; i++ {
				if i < len(trs) {
					err = rows.Scan(&trs[i].CreatedAt)
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		return insertErr(err, taskMostRecentIndex, "task", taskUUID)
	}
	if cur.State == TaskComplete {
		b.Queue(`UPDATE tasker.tasks SET complete = true, completed_at = NOW(), updated_at = NOW()
			 WHERE task_uuid = $1`, taskUUID).Fn = wrapExec("mark task %s complete", taskUUID)
	}
	return trs, nil
}

// InitTaskState writes the first transition of a task that has none: to_state pending,
// from_state NULL, sort_key 1. metadata nil means tasker-core's
// {"initial_state":"pending","from_service":"task_initializer"}.
//
// Invariant kept: the first transition row of a task is unique and most_recent (task row locked).
func InitTaskState(ctx context.Context, tx pgx.Tx, taskUUID, processorUUID uuid.UUID, metadata map[string]any) (*TaskTransition, error) {
	found, cur, maxKey, err := lockAndReadHead(ctx, tx, lockTaskSQL, taskHeadSQL, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("state: lock and read task %s: %w", taskUUID, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if maxKey > 0 {
		from := ""
		if cur != nil {
			from = *cur
		}
		return nil, &InvalidTransitionError{Entity: EntityTask, ID: taskUUID, From: from, Event: "initial"}
	}
	b := &pgx.Batch{}
	tr, err := QueueInitialTaskTransition(b, taskUUID, processorUUID, metadata)
	if err != nil {
		return nil, err
	}
	return tr, tx.SendBatch(ctx, b).Close()
}

// CurrentStepState returns the step's state: the to_state of its most_recent transition, or
// pending when it has none. ErrStepNotFound if the step does not exist.
func CurrentStepState(ctx context.Context, q Querier, stepUUID uuid.UUID) (StepState, error) {
	var cur *string
	err := q.QueryRow(ctx, `
		SELECT t.to_state
		  FROM tasker.workflow_steps ws
		  LEFT JOIN LATERAL (SELECT to_state FROM tasker.workflow_step_transitions
		                      WHERE workflow_step_uuid = ws.workflow_step_uuid AND most_recent
		                      ORDER BY sort_key DESC LIMIT 1) t ON true
		 WHERE ws.workflow_step_uuid = $1`, stepUUID).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	if err != nil {
		return "", fmt.Errorf("state: read step %s state: %w", stepUUID, err)
	}
	if cur == nil {
		return StepPending, nil
	}
	return ParseStepState(*cur)
}

// CurrentTaskState returns the task's state: the to_state of its most_recent transition, or
// pending when it has none. ErrTaskNotFound if the task does not exist.
func CurrentTaskState(ctx context.Context, q Querier, taskUUID uuid.UUID) (TaskState, error) {
	var cur *string
	err := q.QueryRow(ctx, `
		SELECT t.to_state
		  FROM tasker.tasks tk
		  LEFT JOIN LATERAL (SELECT to_state FROM tasker.task_transitions
		                      WHERE task_uuid = tk.task_uuid AND most_recent
		                      ORDER BY sort_key DESC LIMIT 1) t ON true
		 WHERE tk.task_uuid = $1`, taskUUID).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: %s", ErrTaskNotFound, taskUUID)
	}
	if err != nil {
		return "", fmt.Errorf("state: read task %s state: %w", taskUUID, err)
	}
	if cur == nil {
		return TaskPending, nil
	}
	return ParseTaskState(*cur)
}

// StepTransitions returns a step's transitions ordered by sort_key.
func StepTransitions(ctx context.Context, q Lister, stepUUID uuid.UUID) ([]StepTransition, error) {
	rows, err := q.Query(ctx, `
		SELECT workflow_step_transition_uuid, workflow_step_uuid, COALESCE(from_state, ''), to_state,
		       sort_key, most_recent, COALESCE(metadata, '{}'::jsonb)::text, created_at
		  FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1 ORDER BY sort_key`, stepUUID)
	if err != nil {
		return nil, fmt.Errorf("state: list step %s transitions: %w", stepUUID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StepTransition, error) {
		var (
			t        StepTransition
			from, to string
			meta     string
		)
		err := r.Scan(&t.UUID, &t.StepUUID, &from, &to, &t.SortKey, &t.MostRecent, &meta, &t.CreatedAt)
		t.From, t.To, t.Metadata = StepState(from), StepState(to), json.RawMessage(meta)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: list step %s transitions: %w", stepUUID, err)
	}
	return out, nil
}

// TaskTransitions returns a task's transitions ordered by sort_key.
func TaskTransitions(ctx context.Context, q Lister, taskUUID uuid.UUID) ([]TaskTransition, error) {
	rows, err := q.Query(ctx, `
		SELECT task_transition_uuid, task_uuid, COALESCE(from_state, ''), to_state, sort_key, most_recent,
		       processor_uuid, COALESCE(metadata, '{}'::jsonb)::text, created_at
		  FROM tasker.task_transitions WHERE task_uuid = $1 ORDER BY sort_key`, taskUUID)
	if err != nil {
		return nil, fmt.Errorf("state: list task %s transitions: %w", taskUUID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TaskTransition, error) {
		var (
			t         TaskTransition
			from, to  string
			processor uuid.NullUUID
			meta      string
		)
		err := r.Scan(&t.UUID, &t.TaskUUID, &from, &to, &t.SortKey, &t.MostRecent, &processor, &meta, &t.CreatedAt)
		t.From, t.To, t.Metadata = TaskState(from), TaskState(to), json.RawMessage(meta)
		if processor.Valid {
			t.ProcessorUUID = processor.UUID
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: list task %s transitions: %w", taskUUID, err)
	}
	return out, nil
}

func initialMetadata(m map[string]any) ([]byte, error) {
	if m == nil {
		m = map[string]any{"initial_state": "pending", "from_service": "task_initializer"}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("state: encode initial transition metadata: %w", err)
	}
	return b, nil
}

// insertErr maps the error of a transition insert: a second most_recent row is
// ErrConcurrentTransition.
func insertErr(err error, mostRecentIndex, entity string, id uuid.UUID) error {
	switch {
	case err == nil:
		return nil
	case isUniqueViolation(err, mostRecentIndex):
		return fmt.Errorf("%w: %s %s: %w", ErrConcurrentTransition, entity, id, err)
	default:
		return fmt.Errorf("state: insert %s %s transition: %w", entity, id, err)
	}
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

func nullableJSON(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func nullableUUID(u uuid.UUID) any {
	if u == uuid.Nil {
		return nil
	}
	return u
}

// rfc3339 formats t (zero: now) as chrono's to_rfc3339 does (protocol.RFC3339).
func rfc3339(t time.Time) string {
	if t.IsZero() {
		t = time.Now()
	}
	return protocol.RFC3339(t)
}
