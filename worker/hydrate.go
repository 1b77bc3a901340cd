package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// errStepNotFound and errTemplateStep are reasons to drop a message: retrying cannot help.
var (
	errStepNotFound  = errors.New("step not found")
	errTemplateStep  = errors.New("template step definition not found")
	errTaskMismatch  = errors.New("message task_uuid does not own the step")
	errTemplateEmpty = errors.New("named task has no template configuration")
)

// stepRow is what the claim reads about a step in one statement.
type stepRow struct {
	seq           protocol.TaskSequenceStep
	current       state.StepState
	head          state.StepHead // the step's most_recent transition (zero when it has none)
	ageSeconds    float64        // since last_attempted_at, by the database clock; -1 when never attempted
	namedTaskUUID uuid.UUID
	templateAt    time.Time
}

// lockStepSQL locks the step row first: in READ COMMITTED a statement that waits for a lock still
// reads with the snapshot it started with, so the state must be read by a later statement.
const lockStepSQL = `SELECT 1 FROM tasker.workflow_steps WHERE workflow_step_uuid = $1 FOR NO KEY UPDATE`

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

// loadStep locks the step and reads it (slow path: the fast claim did not apply).
func loadStep(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID) (*stepRow, error) {
	var one int
	if err := tx.QueryRow(ctx, lockStepSQL, stepUUID).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
		return nil, errStepNotFound
	} else if err != nil {
		return nil, fmt.Errorf("lock step %s: %w", stepUUID, err)
	}
	var (
		cur      *string
		headUUID uuid.NullUUID
		headKey  *int
	)
	r, err := scanStep(tx.QueryRow(ctx, loadStepSQL, stepUUID), &cur, &headUUID, &headKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errStepNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load step %s: %w", stepUUID, err)
	}
	r.current = state.StepPending
	if cur != nil {
		if r.current, err = state.ParseStepState(*cur); err != nil {
			return nil, err
		}
	}
	r.head = state.StepHead{StepUUID: stepUUID, TransitionUUID: headUUID.UUID, State: r.current}
	if headKey != nil {
		r.head.SortKey = *headKey
	}
	return r, nil
}

// scanStep scans stepColumns, then extra.
func scanStep(row pgx.Row, extra ...any) (*stepRow, error) {
	var (
		r                                    stepRow
		ws                                   = &r.seq.WorkflowStep
		task                                 = &r.seq.Task.Task
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
		&wsCreated, &wsUpdated, &r.ageSeconds,
		&task.NamedTaskUUID, &task.Complete, &requestedAt, &task.Initiator, &task.SourceSystem, &task.Reason, &tags,
		&taskContext, &task.IdentityHash, &task.Priority, &taskCreated, &taskUpdate, &task.CorrelationID,
		&task.ParentCorrelationID,
		&r.seq.Task.TaskName, &r.seq.Task.TaskVersion, &r.seq.Task.NamespaceName, &r.templateAt,
	}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	task.TaskUUID = ws.TaskUUID
	task.RequestedAt = protocol.NewNaiveTime(requestedAt)
	task.CreatedAt = protocol.NewNaiveTime(taskCreated)
	task.UpdatedAt = protocol.NewNaiveTime(taskUpdate)
	task.Tags, task.Context = rawOrNil(tags), rawOrNil(taskContext)
	ws.Inputs, ws.Results, ws.Checkpoint = rawOrNil(inputs), rawOrNil(results), rawOrNil(checkpoint)
	ws.CreatedAt, ws.UpdatedAt = protocol.NewNaiveTime(wsCreated), protocol.NewNaiveTime(wsUpdated)
	if processedAt != nil {
		t := protocol.NewNaiveTime(*processedAt)
		ws.ProcessedAt = &t
	}
	if lastAttempted != nil {
		t := protocol.NewNaiveTime(*lastAttempted)
		ws.LastAttemptedAt = &t
	}
	r.namedTaskUUID = task.NamedTaskUUID
	return &r, nil
}

// loadDependencyResults returns the results of finished ancestors keyed by step name, as
// tasker-core's get_results_map does (the farther duplicate wins; unfinished ones are skipped).
func loadDependencyResults(ctx context.Context, tx pgx.Tx, stepUUID uuid.UUID) (map[string]protocol.StepExecutionResult, error) {
	sql, arg := dependencyResultsQuery([]uuid.UUID{stepUUID})
	rows, err := tx.Query(ctx, sql, arg)
	if err != nil {
		return nil, fmt.Errorf("load dependency results: %w", err)
	}
	deps, errs, err := scanDependencyResults(rows, 1)
	if err != nil {
		return nil, fmt.Errorf("load dependency results: %w", err)
	}
	return deps[0], errs[0]
}

// dependencyResultsQuery reads the finished ancestors of each of steps, by the step's index in
// steps, nearest first. One step has a query of its own: PostgreSQL plans the array form anew
// at every call (0.4 ms here), since its generic plan, unaware of the array's length, looks
// costlier than a custom one.
func dependencyResultsQuery(steps []uuid.UUID) (sql string, arg any) {
	if len(steps) == 1 {
		return `SELECT 0, step_name, results FROM tasker.get_step_transitive_dependencies($1)
		 WHERE processed AND results IS NOT NULL ORDER BY distance, workflow_step_uuid`, steps[0]
	}
	return `SELECT i.ord - 1, d.step_name, d.results
	  FROM unnest($1::uuid[]) WITH ORDINALITY AS i(step_uuid, ord),
	       LATERAL tasker.get_step_transitive_dependencies(i.step_uuid) d
	 WHERE d.processed AND d.results IS NOT NULL
	 ORDER BY i.ord, d.distance, d.workflow_step_uuid`, steps
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

// templateCache keeps the step definitions of each named task, keyed by its uuid and refreshed
// when named_tasks.updated_at moves (a re-registration).
type templateCache struct {
	mu sync.Mutex
	m  map[uuid.UUID]cachedTemplate
}

type cachedTemplate struct {
	at    time.Time
	steps map[string]protocol.StepDefinition
}

// stepDefinition finds the template step named name for the named task, reading
// named_tasks.configuration only when the cache is cold or stale.
func (c *templateCache) stepDefinition(ctx context.Context, q state.Querier, namedTask uuid.UUID, at time.Time, name string) (protocol.StepDefinition, error) {
	c.mu.Lock()
	ct, ok := c.m[namedTask]
	c.mu.Unlock()
	if !ok || !ct.at.Equal(at) {
		var cfg []byte
		if err := q.QueryRow(ctx, `SELECT configuration FROM tasker.named_tasks WHERE named_task_uuid = $1`, namedTask).Scan(&cfg); err != nil {
			return protocol.StepDefinition{}, fmt.Errorf("load template: %w", err)
		}
		var tmpl struct {
			Steps []protocol.StepDefinition `json:"steps"`
		}
		if len(cfg) == 0 || string(cfg) == "{}" || string(cfg) == "null" {
			return protocol.StepDefinition{}, errTemplateEmpty
		}
		if err := json.Unmarshal(cfg, &tmpl); err != nil {
			return protocol.StepDefinition{}, fmt.Errorf("decode template configuration: %w", err)
		}
		ct = cachedTemplate{at: at, steps: make(map[string]protocol.StepDefinition, len(tmpl.Steps))}
		for _, s := range tmpl.Steps {
			ct.steps[s.Name] = s
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[uuid.UUID]cachedTemplate{}
		}
		c.m[namedTask] = ct
		c.mu.Unlock()
	}
	def, ok := ct.steps[name]
	if !ok {
		return protocol.StepDefinition{}, fmt.Errorf("%w: %q", errTemplateStep, name)
	}
	return def, nil
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return json.RawMessage(b)
}
