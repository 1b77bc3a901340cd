package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
)

// StepRow is a step as a worker's claim reads it: hydrated for its handler (Seq, without the
// step definition and dependency results, which come from the template and DependencyResults),
// with its state and head.
type StepRow struct {
	Seq     protocol.TaskSequenceStep
	Current StepState
	Head    StepHead // the step's most_recent transition (zero when it has none)
	// AgeSeconds is the time since last_attempted_at by the database clock; -1 when never
	// attempted.
	AgeSeconds    float64
	NamedTaskUUID uuid.UUID
	// TemplateAt is named_tasks.updated_at: the version of the template the step belongs to.
	TemplateAt time.Time
}

// stepColumns and stepJoins hydrate a step row aliased ws: the step, its task, names and the
// template's version (named_tasks.updated_at); scanStep reads them.
const (
	stepColumns = `ws.workflow_step_uuid, ws.task_uuid, ws.named_step_uuid, ns.name,
       COALESCE(ws.inputs->>'__template_step_name', ns.name),
       ws.retryable, ws.max_attempts, ws.in_process, ws.processed, ws.processed_at, ws.attempts,
       ws.last_attempted_at, ws.backoff_request_seconds, ws.inputs, ws.results, ws.checkpoint,
       ws.created_at, ws.updated_at,
       COALESCE(EXTRACT(EPOCH FROM (timezone('UTC', clock_timestamp()) - ws.last_attempted_at))::float8, -1),
       t.named_task_uuid, t.complete, t.requested_at, t.initiator, t.source_system, t.reason, t.tags,
       t.context, t.identity_hash, t.priority, t.created_at, t.updated_at, t.correlation_id,
       t.parent_correlation_id,
       nt.name, nt.version, tn.name, nt.updated_at`
	stepJoins = `
  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
  JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid`
)

// loadStepSQL reads the step with its head transition once the row is locked, so the claim
// decision and the transitions it leads to see one consistent state.
const loadStepSQL = `SELECT ` + stepColumns + `, h.to_state, h.workflow_step_transition_uuid, h.sort_key
  FROM tasker.workflow_steps ws` + stepJoins + `
  LEFT JOIN LATERAL (SELECT tr.to_state, tr.workflow_step_transition_uuid, tr.sort_key
                       FROM tasker.workflow_step_transitions tr
                      WHERE tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.most_recent
                      ORDER BY tr.sort_key DESC LIMIT 1) h ON true
 WHERE ws.workflow_step_uuid = $1`

// LoadStep locks the step row (FOR NO KEY UPDATE, until tx ends) and then reads it hydrated with
// its head: a statement that waited for the lock still reads with the snapshot it started with
// in READ COMMITTED, so the read is a second statement. ErrStepNotFound when there is no such
// step.
func LoadStep(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID) (*StepRow, error) {
	var one int
	if err := tx.QueryRow(ctx, lockStepSQL, stepUUID).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	} else if err != nil {
		return nil, fmt.Errorf("state: lock step %s: %w", stepUUID, err)
	}
	var (
		cur      *string
		headUUID uuid.NullUUID
		headKey  *int
	)
	r, err := scanStep(tx.QueryRow(ctx, loadStepSQL, stepUUID), &cur, &headUUID, &headKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, stepUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("state: load step %s: %w", stepUUID, err)
	}
	r.Current = StepPending
	if cur != nil {
		if r.Current, err = ParseStepState(*cur); err != nil {
			return nil, err
		}
	}
	r.Head = StepHead{StepUUID: stepUUID, TransitionUUID: headUUID.UUID, State: r.Current}
	if headKey != nil {
		r.Head.SortKey = *headKey
	}
	return r, nil
}

// scanStep scans stepColumns, then extra.
func scanStep(row pgx.Row, extra ...any) (*StepRow, error) {
	var (
		r                                    StepRow
		ws                                   = &r.Seq.WorkflowStep
		task                                 = &r.Seq.Task.Task
		processedAt, lastAttempted           *time.Time
		wsCreated, wsUpdated                 time.Time
		requestedAt, taskCreated, taskUpdate time.Time
		inputs, results, checkpoint          []byte
		tags, taskContext                    []byte
	)
	dest := append([]any{
		&ws.WorkflowStepUUID, &ws.TaskUUID, &ws.NamedStepUUID, &ws.Name, &ws.TemplateStepName,
		&ws.Retryable, &ws.MaxAttempts, &ws.InProcess, &ws.Processed, &processedAt, &ws.Attempts,
		&lastAttempted, &ws.BackoffRequestSeconds, &inputs, &results, &checkpoint,
		&wsCreated, &wsUpdated, &r.AgeSeconds,
		&task.NamedTaskUUID, &task.Complete, &requestedAt, &task.Initiator, &task.SourceSystem, &task.Reason, &tags,
		&taskContext, &task.IdentityHash, &task.Priority, &taskCreated, &taskUpdate, &task.CorrelationID,
		&task.ParentCorrelationID,
		&r.Seq.Task.TaskName, &r.Seq.Task.TaskVersion, &r.Seq.Task.NamespaceName, &r.TemplateAt,
	}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	task.TaskUUID = ws.TaskUUID
	task.RequestedAt = protocol.NewNaiveTime(requestedAt)
	task.CreatedAt = protocol.NewNaiveTime(taskCreated)
	task.UpdatedAt = protocol.NewNaiveTime(taskUpdate)
	task.Tags, task.Context = RawOrNil(tags), RawOrNil(taskContext)
	ws.Inputs, ws.Results, ws.Checkpoint = RawOrNil(inputs), RawOrNil(results), RawOrNil(checkpoint)
	ws.CreatedAt, ws.UpdatedAt = protocol.NewNaiveTime(wsCreated), protocol.NewNaiveTime(wsUpdated)
	if processedAt != nil {
		t := protocol.NewNaiveTime(*processedAt)
		ws.ProcessedAt = &t
	}
	if lastAttempted != nil {
		t := protocol.NewNaiveTime(*lastAttempted)
		ws.LastAttemptedAt = &t
	}
	r.NamedTaskUUID = task.NamedTaskUUID
	return &r, nil
}

// DependencyResults returns the results of stepUUID's finished ancestors keyed by step name,
// as tasker-core's get_results_map does (the farther duplicate wins; unfinished ones are
// skipped).
func DependencyResults(ctx context.Context, q Lister, stepUUID uuid.UUID) (map[string]protocol.StepExecutionResult, error) {
	sql, arg := dependencyResultsQuery([]uuid.UUID{stepUUID})
	rows, err := q.Query(ctx, sql, arg)
	if err != nil {
		return nil, fmt.Errorf("state: load dependency results: %w", err)
	}
	deps, errs, err := scanDependencyResults(rows, 1)
	if err != nil {
		return nil, fmt.Errorf("state: load dependency results: %w", err)
	}
	return deps[0], errs[0]
}

// dependencyResultsQuery reads the finished ancestors of each of steps, by the step's index in
// steps, nearest first: tasker.get_step_transitive_dependencies (up to 50 generations, an
// ancestor reached by two paths listed twice) for all of them in one statement. Written out
// rather than called per step: a recursive SQL function is not inlined, so PostgreSQL plans
// its body again at every call, for every step (the largest share of the server's CPU in a
// burst, sampled from pg_stat_activity). Each lookup is a LATERAL subquery the planner cannot
// flatten (OFFSET 0): the statement's one generic plan (db.RuntimeParams) then follows the
// edge and step indexes whatever the tables' size, where the plain joins' generic plan hashed
// whole tables (it overestimates a recursive CTE's rows).
func dependencyResultsQuery(steps []uuid.UUID) (sql string, arg any) {
	return `WITH RECURSIVE ancestry (ord, step_uuid, distance) AS (
	    SELECT i.ord, p.from_step_uuid, 1
	      FROM unnest($1::uuid[]) WITH ORDINALITY AS i(step_uuid, ord)
	     CROSS JOIN LATERAL (SELECT e.from_step_uuid FROM tasker.workflow_step_edges e
	                          WHERE e.to_step_uuid = i.step_uuid OFFSET 0) p
	    UNION ALL
	    SELECT a.ord, p.from_step_uuid, a.distance + 1
	      FROM ancestry a
	     CROSS JOIN LATERAL (SELECT e.from_step_uuid FROM tasker.workflow_step_edges e
	                          WHERE e.to_step_uuid = a.step_uuid OFFSET 0) p
	     WHERE a.distance < 50)
	SELECT a.ord - 1, s.name, s.results
	  FROM ancestry a
	 CROSS JOIN LATERAL (SELECT ns.name::text AS name, ws.results, ws.workflow_step_uuid
	                       FROM tasker.workflow_steps ws
	                       JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
	                      WHERE ws.workflow_step_uuid = a.step_uuid AND ws.processed AND ws.results IS NOT NULL
	                     OFFSET 0) s
	 ORDER BY a.ord, a.distance, s.workflow_step_uuid`, steps
}

// scanDependencyResults reads dependencyResultsQuery's rows for n steps: deps[i] are step i's results by
// name; errs[i] says why they could not be decoded. err is a failure to read the rows.
func scanDependencyResults(rows pgx.Rows, n int) (deps []map[string]protocol.StepExecutionResult, errs []error, err error) {
	defer rows.Close()
	deps, errs = make([]map[string]protocol.StepExecutionResult, n), make([]error, n)
	for i := range deps {
		deps[i] = map[string]protocol.StepExecutionResult{}
	}
	for rows.Next() {
		var (
			i    int
			name string
			raw  []byte
		)
		if err := rows.Scan(&i, &name, &raw); err != nil {
			return nil, nil, err
		}
		if i < 0 || i >= n {
			return nil, nil, fmt.Errorf("dependency row for step %d of %d", i, n)
		}
		var res protocol.StepExecutionResult
		if err := json.Unmarshal(raw, &res); err != nil {
			errs[i] = fmt.Errorf("dependency %q has malformed results: %w", name, err)
			continue
		}
		deps[i][name] = res
	}
	return deps, errs, rows.Err()
}

// Dependencies is what a dependency read queued by QueueDependencyResults found, filled in
// when its batch has run: Results[i] are steps[i]'s by name, Errs[i] says why they could not be
// decoded.
type Dependencies struct {
	Results []map[string]protocol.StepExecutionResult
	Errs    []error
}

// QueueDependencyResults queues on b the read of the finished ancestors' results of each of
// steps.
func QueueDependencyResults(b *pgx.Batch, steps []uuid.UUID) *Dependencies {
	d := &Dependencies{}
	sql, arg := dependencyResultsQuery(steps)
	b.Queue(sql, arg).Fn = func(br pgx.BatchResults) error {
		rs, err := br.Query()
		if err == nil {
			d.Results, d.Errs, err = scanDependencyResults(rs, len(steps))
		}
		if err != nil {
			return fmt.Errorf("state: load dependency results: %w", err)
		}
		return nil
	}
	return d
}

// RawOrNil is b as raw JSON, nil for no value or JSON null.
func RawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return json.RawMessage(b)
}
