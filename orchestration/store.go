package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// taskRow is what orchestration needs to know about a locked task.
type taskRow struct {
	TaskUUID      uuid.UUID
	NamedTaskUUID uuid.UUID
	CorrelationID uuid.UUID
	Namespace     string
	Name          string
	Version       string
	Complete      bool
	// TemplateAt is named_tasks.updated_at: the version of the template the cache must hold.
	TemplateAt time.Time
	// Head is the task's state as the lock holder knows it: read after locking, then moved by
	// every transition the holder makes (moveTask).
	Head state.TaskHead

	hops     []state.TaskHop // moveTask's transitions not written yet, from hopsFrom
	hopsFrom state.TaskHead
	hooked   bool // moveTask registered the hook that writes hops

	dispatched []uuid.UUID    // steps enqueued in this transaction
	notices    queue.Notices  // their messages' notifications, sent once the transaction commits
	expanded   map[string]int // decision/batch outcomes applied in this transaction, by kind (metrics)
}

// lockTask locks the task row (FOR NO KEY UPDATE) so that no other orchestrator works on the
// task until tx ends, and reads the task and its head, in one round trip. With skipLocked it
// returns (nil, nil) when another transaction holds the lock. ErrTaskNotFound when the task does
// not exist.
//
// NO KEY UPDATE rather than UPDATE: it excludes every other orchestrator transaction just the
// same (they all take this lock first), but not the KEY SHARE lock that foreign-key checks take
// when a worker inserts rows referencing the task (the step result audit trigger), so a worker
// completing a step never deadlocks with an orchestrator that holds the task and waits for the
// step. The head is read by a later statement, so that in READ COMMITTED it sees what the
// previous lock holder committed.
func lockTask(ctx context.Context, tx *db.PipeTx, taskUUID uuid.UUID, skipLocked bool) (*taskRow, error) {
	b := &pgx.Batch{}
	l := queueLockTask(b, taskUUID, skipLocked)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return l.result(ctx, tx)
}

// taskLock is lockTask's statements queued on a batch; result reads them once it was sent.
type taskLock struct {
	id         uuid.UUID
	skipLocked bool
	row        taskRow
	locked     bool
	cur        *string
	key        int
}

func queueLockTask(b *pgx.Batch, taskUUID uuid.UUID, skipLocked bool) *taskLock {
	l := &taskLock{id: taskUUID, skipLocked: skipLocked}
	sql := `SELECT t.task_uuid, t.named_task_uuid, t.correlation_id, t.complete, tn.name, nt.name, nt.version, nt.updated_at
	          FROM tasker.tasks t
	          JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
	          JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
	         WHERE t.task_uuid = $1 FOR NO KEY UPDATE OF t`
	if skipLocked {
		sql += ` SKIP LOCKED`
	}
	r := &l.row
	b.Queue(sql, taskUUID).Fn = func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&r.TaskUUID, &r.NamedTaskUUID, &r.CorrelationID, &r.Complete, &r.Namespace, &r.Name, &r.Version, &r.TemplateAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("orchestration: lock task %s: %w", taskUUID, err)
		}
		l.locked = true
		return nil
	}
	b.Queue(`SELECT (SELECT to_state FROM tasker.task_transitions WHERE task_uuid = $1 AND most_recent),
	                (SELECT COALESCE(MAX(sort_key), 0) FROM tasker.task_transitions WHERE task_uuid = $1)`, taskUUID).Fn =
		func(br pgx.BatchResults) error { return br.QueryRow().Scan(&l.cur, &l.key) }
	return l
}

func (l *taskLock) result(ctx context.Context, tx pgx.Tx) (*taskRow, error) {
	if !l.locked {
		if l.skipLocked {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tasker.tasks WHERE task_uuid = $1)`, l.id).Scan(&exists); err != nil {
				return nil, fmt.Errorf("orchestration: check task %s: %w", l.id, err)
			}
			if exists {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, l.id)
	}
	l.row.Head = state.TaskHead{TaskUUID: l.id, State: state.TaskPending, SortKey: l.key}
	if l.cur != nil {
		var err error
		if l.row.Head.State, err = state.ParseTaskState(*l.cur); err != nil {
			return nil, err
		}
	}
	return &l.row, nil
}

// stepRow is a locked workflow step with the columns result processing reads.
type stepRow = state.LockedStep

// lockStep locks a step row and reads it with its head, in one round trip (state.QueueLockStep).
func lockStep(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID) (*stepRow, error) {
	b := &pgx.Batch{}
	l := state.QueueLockStep(b, stepUUID)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return l.Result()
}

// ensureNamedSteps finds or creates the global named_steps rows for names ("Auto-created step:
// <name>"). Missing names are inserted in one sorted statement, so concurrent transactions
// creating overlapping sets wait for each other in one order and cannot deadlock.
func ensureNamedSteps(ctx context.Context, tx pgx.Tx, names []string) (map[string]uuid.UUID, error) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	out := make(map[string]uuid.UUID, len(names))
	read := func() error {
		rows, err := tx.Query(ctx, `SELECT name::text, named_step_uuid FROM tasker.named_steps WHERE name = ANY($1::text[])`, names)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			var id uuid.UUID
			if err := rows.Scan(&n, &id); err != nil {
				rows.Close()
				return err
			}
			out[n] = id
		}
		return rows.Err()
	}
	if err := read(); err != nil {
		return nil, fmt.Errorf("orchestration: read named steps: %w", err)
	}
	var missing, descs []string
	for _, n := range names {
		if _, ok := out[n]; !ok {
			missing = append(missing, n)
			descs = append(descs, truncateRunes("Auto-created step: "+n, 255))
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.named_steps (name, description, created_at, updated_at)
		SELECT s.name, s.description, NOW(), NOW()
		  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(name, description, ord)
		 ORDER BY s.ord
		ON CONFLICT (name) DO NOTHING`, missing, descs); err != nil {
		return nil, fmt.Errorf("orchestration: create named steps: %w", err)
	}
	if err := read(); err != nil {
		return nil, fmt.Errorf("orchestration: read named steps: %w", err)
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("orchestration: named step %q missing after insert", n)
		}
	}
	return out, nil
}

// newStep describes a workflow step to find or create.
type newStep struct {
	Name        string
	Retryable   bool
	MaxAttempts uint32
	Inputs      map[string]json.RawMessage // empty: inputs NULL
}

func stepFromDefinition(def *template.StepDefinition) newStep {
	return newStep{Name: def.Name, Retryable: def.Retry.Retryable, MaxAttempts: def.Retry.MaxAttempts, Inputs: def.Handler.Initialization}
}

// createSteps finds or creates the workflow steps of a task (unique per task and named step,
// so repeating it is harmless) and returns their uuids by name. No transition rows are written:
// a step without transitions reads as pending.
func createSteps(ctx context.Context, tx pgx.Tx, taskUUID uuid.UUID, steps []newStep) (map[string]uuid.UUID, error) {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Name
	}
	named, err := ensureNamedSteps(ctx, tx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uuid.UUID, len(steps))
	for _, s := range steps {
		inputs, err := stepInputs(s)
		if err != nil {
			return nil, err
		}
		var id uuid.UUID
		err = tx.QueryRow(ctx, `
			INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid, retryable, max_attempts,
			                                   in_process, processed, inputs, created_at, updated_at)
			VALUES ($1, $2, $3, $4, false, false, $5::jsonb, NOW(), NOW())
			ON CONFLICT ON CONSTRAINT uq_workflow_step_task_named_step DO NOTHING
			RETURNING workflow_step_uuid`,
			taskUUID, named[s.Name], s.Retryable, int32(min(s.MaxAttempts, 1<<31-1)), inputs).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `SELECT workflow_step_uuid FROM tasker.workflow_steps
				WHERE task_uuid = $1 AND named_step_uuid = $2`, taskUUID, named[s.Name]).Scan(&id)
		}
		if err != nil {
			return nil, fmt.Errorf("orchestration: create step %q: %w", s.Name, err)
		}
		out[s.Name] = id
	}
	return out, nil
}

// Edge names written by tasker-core.
const (
	edgeProvides            = "provides"
	edgeBatchDependency     = "batch_dependency"
	edgeWorkerToConvergence = "worker_to_convergence"
)

// queueNewStep queues the insert of a step of a task created in this transaction (so no
// conflict is possible), with its uuid chosen here.
func queueNewStep(b *pgx.Batch, taskUUID, namedStep uuid.UUID, s newStep) (uuid.UUID, error) {
	inputs, err := stepInputs(s)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.Nil, err
	}
	b.Queue(`INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, retryable,
	                                          max_attempts, in_process, processed, inputs, created_at, updated_at)
	         VALUES ($1, $2, $3, $4, $5, false, false, $6::jsonb, NOW(), NOW())`,
		id, taskUUID, namedStep, s.Retryable, int32(min(s.MaxAttempts, 1<<31-1)), inputs).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("orchestration: create step %q: %w", s.Name, err)
		}
		return nil
	}
	return id, nil
}

// queueEdge queues the insert of an edge between steps created in this transaction, whose
// acyclicity the caller checked.
func queueEdge(b *pgx.Batch, from, to uuid.UUID, name, fromName, toName string) {
	b.Queue(`INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
	         VALUES ($1, $2, $3, NOW(), NOW())`, from, to, name).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("orchestration: create edge %s -> %s: %w", fromName, toName, err)
		}
		return nil
	}
}

func stepInputs(s newStep) (any, error) {
	if len(s.Inputs) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(s.Inputs)
	if err != nil {
		return nil, fmt.Errorf("orchestration: encode inputs of step %q: %w", s.Name, err)
	}
	return string(b), nil
}

// addEdge inserts the edge from → to (parent → child). With checkCycle it first refuses a
// self-edge or an edge whose child already reaches its parent (*CycleError, nothing written).
// An existing identical edge is left as it is.
func addEdge(ctx context.Context, tx pgx.Tx, from, to uuid.UUID, name, fromName, toName string, checkCycle bool) error {
	if checkCycle {
		if from == to {
			return &CycleError{From: fromName, To: toName, FromUUID: from, ToUUID: to}
		}
		var cycle bool
		if err := tx.QueryRow(ctx, `
			WITH RECURSIVE reach (step_uuid) AS (
			    SELECT e.to_step_uuid FROM tasker.workflow_step_edges e WHERE e.from_step_uuid = $1
			    UNION
			    SELECT e.to_step_uuid FROM tasker.workflow_step_edges e JOIN reach r ON e.from_step_uuid = r.step_uuid
			)
			SELECT EXISTS (SELECT 1 FROM reach WHERE step_uuid = $2)`, to, from).Scan(&cycle); err != nil {
			return fmt.Errorf("orchestration: cycle check %s -> %s: %w", fromName, toName, err)
		}
		if cycle {
			return &CycleError{From: fromName, To: toName, FromUUID: from, ToUUID: to}
		}
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
		VALUES ($1, $2, $3, NOW(), NOW())
		ON CONFLICT ON CONSTRAINT unique_edge_per_step_pair DO NOTHING`, from, to, name); err != nil {
		return fmt.Errorf("orchestration: create edge %s -> %s: %w", fromName, toName, err)
	}
	return nil
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
