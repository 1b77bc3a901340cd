package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// Backlog classes: the states BuildBacklog leaves linear-workflow tasks in. Each class is one
// prototype task driven there by the code that does so in production (CreateTask, the worker's
// claim, its result write, result processing), cloned row for row with set-based SQL.
const (
	// Not due: step 1 enqueued, waiting for a worker; task steps_in_process.
	BacklogEnqueued = "enqueued"
	// Not due: step 1 in_progress, claimed just now; task steps_in_process.
	BacklogRunning = "running"
	// Not due: step 1 failed just now asking Retry-After 600s: the step waits for its retry, the
	// task waits for dependencies.
	BacklogRetryWait = "retry_wait"
	// Due for the readiness sweep: as retry_wait, 20 minutes ago (the backoff elapsed).
	BacklogReady = "ready"
	// Due for the recovery sweep (stuck tasks): step 1 complete, task left in enqueuing_steps 20
	// minutes ago by an orchestrator that crashed before enqueueing step 2.
	BacklogStuck = "stuck"
	// Due for the recovery sweep (abandoned steps): step 1 in_progress for 20 minutes.
	BacklogAbandoned = "abandoned"
	// Due for the recovery sweep (orphan results): step 1's result written 20 minutes ago and
	// no result message.
	BacklogOrphan = "orphan"
	// Due for the staleness detection: as enqueued, for 40 minutes (threshold 30).
	BacklogStale = "stale"
	// History, not active: the four steps ran and the task completed.
	BacklogCompleted = "completed"
)

// dueAge is how long ago the due classes (other than stale) reached their state; staleAge is the
// stale class's. Both are past the thresholds BacklogConfig sets and below the 30-minute
// staleness thresholds, except staleAge.
const (
	dueAge      = 20 * time.Minute
	staleAge    = 40 * time.Minute
	historyAge  = 2 * time.Hour
	retryAfterS = 600
)

// BacklogConfig sets the thresholds the backlog is built for: StaleGrace and StuckThreshold of 5
// minutes (the fresh classes, written over up to a few minutes, stay below them; the due ones
// are 20 minutes old), the default staleness thresholds.
func BacklogConfig(c *orchestration.Config) {
	c.StaleGrace = 5 * time.Minute
	c.StuckThreshold = 5 * time.Minute
	c.Staleness = orchestration.StalenessConfig{}
}

// BacklogSpec sizes a backlog.
type BacklogSpec struct {
	// Active is the number of incomplete tasks in all.
	Active int
	// Completed is the number of completed tasks (history) beside them.
	Completed int
	// Due is the number of tasks of each due class.
	Due int
	// RetryPercent and RunningPercent are the shares of retry_wait and running tasks; the rest
	// (after the due ones) are enqueued.
	RetryPercent, RunningPercent int
}

// counts returns the number of tasks of each class.
func (s BacklogSpec) counts() (map[string]int, error) {
	c := map[string]int{
		BacklogReady: s.Due, BacklogStuck: s.Due, BacklogAbandoned: s.Due, BacklogOrphan: s.Due, BacklogStale: s.Due,
		BacklogRetryWait: s.Active * s.RetryPercent / 100, BacklogRunning: s.Active * s.RunningPercent / 100,
	}
	rest := s.Active
	for _, n := range c {
		rest -= n
	}
	if rest < 1 {
		return nil, fmt.Errorf("bench: backlog of %d tasks is too small for its due and retry/running shares", s.Active)
	}
	c[BacklogEnqueued] = rest
	c[BacklogCompleted] = s.Completed
	return c, nil
}

// Backlog is what BuildBacklog wrote.
type Backlog struct {
	// Tasks lists the tasks of each class (prototypes included).
	Tasks map[string][]uuid.UUID
	// Build is how long writing it took.
	Build time.Duration
}

// backlogClasses is the order classes are written: the aged ones first.
var backlogClasses = []string{BacklogCompleted, BacklogStale, BacklogReady, BacklogStuck, BacklogAbandoned,
	BacklogOrphan, BacklogRetryWait, BacklogEnqueued, BacklogRunning}

// BuildBacklog registers the linear example workflow (examples/templates under sourceDir) and
// writes spec's backlog of active tasks with o (whose configuration should have BacklogConfig's
// thresholds), then vacuums and analyzes the tables as autovacuum would have.
func BuildBacklog(ctx context.Context, pool *pgxpool.Pool, o *orchestration.Orchestrator, sourceDir string, spec BacklogSpec) (*Backlog, error) {
	start := time.Now()
	counts, err := spec.counts()
	if err != nil {
		return nil, err
	}
	wl := workloads(sourceDir)[WorkflowLinear]
	tmpl, err := template.LoadFile(filepath.Join(sourceDir, "examples", "templates", wl.file))
	if err != nil {
		return nil, fmt.Errorf("bench: load %s: %w", wl.file, err)
	}
	if err := registerTemplate(ctx, pool, tmpl); err != nil {
		return nil, err
	}
	b := &Backlog{Tasks: map[string][]uuid.UUID{}}
	for _, class := range backlogClasses {
		if counts[class] == 0 {
			continue
		}
		proto, err := prototype(ctx, pool, o, wl, class)
		if err != nil {
			return nil, fmt.Errorf("bench: %s prototype: %w", class, err)
		}
		age := time.Duration(0)
		switch class {
		case BacklogCompleted:
			age = historyAge
		case BacklogStale:
			age = staleAge
		case BacklogReady, BacklogStuck, BacklogAbandoned, BacklogOrphan:
			age = dueAge
		}
		ids, err := cloneTask(ctx, pool, proto, counts[class]-1, age)
		if err != nil {
			return nil, fmt.Errorf("bench: clone %s tasks: %w", class, err)
		}
		if age > 0 {
			// The prototype itself was written just now: age it like its clones.
			if err := ageTask(ctx, pool, proto, age); err != nil {
				return nil, err
			}
		}
		b.Tasks[class] = append([]uuid.UUID{proto}, ids...)
	}
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE, PARALLEL 0) tasker.tasks, tasker.task_transitions, tasker.workflow_steps,
		tasker.workflow_step_edges, tasker.workflow_step_transitions, tasker.workflow_step_result_audit`); err != nil {
		return nil, fmt.Errorf("bench: vacuum: %w", err)
	}
	b.Build = time.Since(start)
	return b, nil
}

func registerTemplate(ctx context.Context, pool *pgxpool.Pool, t *template.TaskTemplate) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := template.Register(ctx, tx, t); err != nil {
		return fmt.Errorf("bench: register %s: %w", t.Key(), err)
	}
	return tx.Commit(ctx)
}

// prototype creates one task of wl and drives it into class's state.
func prototype(ctx context.Context, pool *pgxpool.Pool, o *orchestration.Orchestrator, wl workload, class string) (uuid.UUID, error) {
	key := uuid.NewString()
	ct, err := o.CreateTask(ctx, orchestration.TaskRequest{
		Namespace: wl.namespace, Name: wl.name, Version: wl.version, Context: wl.context,
		Initiator: "tasker-bench", SourceSystem: "tasker-bench", Reason: "sweep backlog", IdempotencyKey: &key,
	})
	if err != nil {
		return uuid.Nil, err
	}
	if len(ct.EnqueuedSteps) != 1 {
		return uuid.Nil, fmt.Errorf("created task enqueued %d steps, want 1", len(ct.EnqueuedSteps))
	}
	step := ct.EnqueuedSteps[0]
	// The worker's message is consumed as a worker would; clones have none.
	wq := queue.WorkerQueue(wl.namespace)
	if err := deleteStepMessage(ctx, pool, wq, step); err != nil {
		return uuid.Nil, err
	}
	if class == BacklogEnqueued || class == BacklogStale {
		return ct.TaskUUID, nil
	}
	if class == BacklogCompleted {
		return ct.TaskUUID, runToCompletion(ctx, pool, o, wq, ct.TaskUUID, ct.CorrelationID, step)
	}
	worker := uuid.Must(uuid.NewV7())
	opts := state.TransitionOptions{WorkerUUID: worker, CorrelationID: ct.CorrelationID}
	claim, err := state.ClaimSteps(ctx, pool, []state.StepRef{{StepUUID: step, TaskUUID: ct.TaskUUID}}, opts)
	if err != nil {
		return uuid.Nil, err
	}
	if claim.Steps[0] == nil {
		return uuid.Nil, fmt.Errorf("step %s not claimed", step)
	}
	if class == BacklogRunning || class == BacklogAbandoned {
		return ct.TaskUUID, nil
	}
	var res protocol.StepExecutionResult
	ev := state.StepEventEnqueueForOrchestration
	switch class {
	case BacklogRetryWait, BacklogReady:
		res = protocol.Failure(step, "upstream rate limit", "RateLimited", "", true, 5, nil)
		res.OrchestrationMetadata.Headers[protocol.RetryAfterHeader] = fmt.Sprint(retryAfterS)
		ev = state.StepEventEnqueueAsErrorForOrchestration
	default:
		res = protocol.Success(step, json.RawMessage(`{"result":36}`), 5, nil)
	}
	data, err := json.Marshal(res)
	if err != nil {
		return uuid.Nil, err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	opts.ExpectFrom = []state.StepState{state.StepInProgress}
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventWithData(ev, data), opts); err != nil {
		return uuid.Nil, err
	}
	send := class == BacklogRetryWait || class == BacklogReady
	if send {
		if _, err := queue.NewClient(pool).SendWithNotify(ctx, tx, queue.StepResultsQueue,
			protocol.StepMessage{TaskUUID: ct.TaskUUID, StepUUID: step, CorrelationID: ct.CorrelationID}, 0); err != nil {
			return uuid.Nil, err
		}
	}
	if class == BacklogStuck {
		// An orchestrator processed the result and crashed before enqueueing step 2, between
		// tasker-core's separate commits.
		if _, err := state.TransitionStep(ctx, tx, step, state.StepEventWithData(state.StepEventComplete, nil),
			state.TransitionOptions{CorrelationID: ct.CorrelationID}); err != nil {
			return uuid.Nil, err
		}
		for _, ev := range []state.TaskEvent{state.StepCompleted(step), state.ReadyStepsFound(1)} {
			if _, err := state.TransitionTask(ctx, tx, ct.TaskUUID, ev, state.TaskTransitionOptions{ProcessorUUID: o.Config().ProcessorUUID}); err != nil {
				return uuid.Nil, err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return uuid.Nil, err
	}
	if send {
		msgs, err := queue.NewClient(pool).Read(ctx, queue.StepResultsQueue, 30, 1)
		if err != nil {
			return uuid.Nil, err
		}
		if len(msgs) != 1 {
			return uuid.Nil, fmt.Errorf("%d result messages, want 1", len(msgs))
		}
		if err := o.ProcessResultMessage(ctx, msgs[0]); err != nil {
			return uuid.Nil, err
		}
		var st string
		if err := pool.QueryRow(ctx, `SELECT to_state FROM tasker.workflow_step_transitions
			WHERE workflow_step_uuid = $1 AND most_recent`, step).Scan(&st); err != nil {
			return uuid.Nil, err
		}
		if st != string(state.StepWaitingForRetry) {
			return uuid.Nil, fmt.Errorf("failed step is %s, want waiting_for_retry", st)
		}
	}
	return ct.TaskUUID, nil
}

// runToCompletion plays worker for task's steps, starting with the enqueued step, and has o
// process each result, until the task is complete.
func runToCompletion(ctx context.Context, pool *pgxpool.Pool, o *orchestration.Orchestrator, wq string, task, corr, step uuid.UUID) error {
	qc := queue.NewClient(pool)
	for range 10 {
		opts := state.TransitionOptions{WorkerUUID: uuid.Must(uuid.NewV7()), CorrelationID: corr}
		claim, err := state.ClaimSteps(ctx, pool, []state.StepRef{{StepUUID: step, TaskUUID: task}}, opts)
		if err != nil {
			return err
		}
		if claim.Steps[0] == nil {
			return fmt.Errorf("step %s not claimed", step)
		}
		data, err := json.Marshal(protocol.Success(step, json.RawMessage(`{"result":36}`), 5, nil))
		if err != nil {
			return err
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		opts.ExpectFrom = []state.StepState{state.StepInProgress}
		_, err = state.TransitionStep(ctx, tx, step, state.StepEventWithData(state.StepEventEnqueueForOrchestration, data), opts)
		if err == nil {
			_, err = qc.SendWithNotify(ctx, tx, queue.StepResultsQueue, protocol.StepMessage{TaskUUID: task, StepUUID: step, CorrelationID: corr}, 0)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		msgs, err := qc.Read(ctx, queue.StepResultsQueue, 30, 1)
		if err != nil {
			return err
		}
		if len(msgs) != 1 {
			return fmt.Errorf("%d result messages, want 1", len(msgs))
		}
		if err := o.ProcessResultMessage(ctx, msgs[0]); err != nil {
			return err
		}
		var complete bool
		var next *uuid.UUID
		if err := pool.QueryRow(ctx, `SELECT t.complete,
			       (SELECT ws.workflow_step_uuid FROM tasker.workflow_steps ws
			          JOIN tasker.workflow_step_transitions st ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
			         WHERE ws.task_uuid = t.task_uuid AND st.to_state = 'enqueued' LIMIT 1)
			  FROM tasker.tasks t WHERE t.task_uuid = $1`, task).Scan(&complete, &next); err != nil {
			return err
		}
		if complete {
			return nil
		}
		if next == nil {
			return fmt.Errorf("task %s is neither complete nor has an enqueued step", task)
		}
		step = *next
		if err := deleteStepMessage(ctx, pool, wq, step); err != nil {
			return err
		}
	}
	return fmt.Errorf("task %s did not complete", task)
}

// deleteStepMessage deletes the message for step from worker queue wq.
func deleteStepMessage(ctx context.Context, pool *pgxpool.Pool, wq string, step uuid.UUID) error {
	_, err := pool.Exec(ctx, `DELETE FROM `+pgx.Identifier{"pgmq", "q_" + wq}.Sanitize()+` WHERE message->>'step_uuid' = $1`, step.String())
	return err
}

// cloneTask copies task proto n times, every row CreateTask and the later transitions wrote for
// it (task, steps, edges, task and step transitions; result audit rows follow from the step
// transitions' trigger), with new uuids (replaced in the JSON columns too) and every timestamp
// moved so that the clone's state is age old. Worker messages are not copied.
func cloneTask(ctx context.Context, pool *pgxpool.Pool, proto uuid.UUID, n int, age time.Duration) ([]uuid.UUID, error) {
	var corr uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT correlation_id FROM tasker.tasks WHERE task_uuid = $1`, proto).Scan(&corr); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1 ORDER BY workflow_step_uuid`, proto)
	if err != nil {
		return nil, err
	}
	steps, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	sql := cloneSQL(proto, corr, steps)
	var out []uuid.UUID
	const chunk = 5000
	for done := 0; done < n; {
		k := min(chunk, n-done)
		rows, err := pool.Query(ctx, sql, k, age.Seconds())
		if err != nil {
			return nil, err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return nil, err
		}
		if len(ids) != k {
			return nil, fmt.Errorf("cloned %d tasks, want %d", len(ids), k)
		}
		out = append(out, ids...)
		done += k
	}
	return out, nil
}

// cloneSQL builds the statement that clones proto $1 times, aged $2 seconds.
func cloneSQL(proto, corr uuid.UUID, steps []uuid.UUID) string {
	// sub replaces the prototype's uuids in a JSON column's text with the clone's.
	sub := func(col string) string {
		e := "replace(replace(" + col + "::text, '" + proto.String() + "', n.task_uuid::text), '" + corr.String() + "', n.corr::text)"
		for i, s := range steps {
			e = fmt.Sprintf("replace(%s, '%s', n.steps[%d]::text)", e, s, i+1)
		}
		return "(" + e + ")::jsonb"
	}
	var m, news []string
	for i, s := range steps {
		m = append(m, fmt.Sprintf("('%s'::uuid, %d)", s, i+1))
		news = append(news, "tasker.uuid_generate_v7()")
	}
	p := "'" + proto.String() + "'::uuid"
	return `
WITH n AS (
    SELECT tasker.uuid_generate_v7() AS task_uuid, tasker.uuid_generate_v7() AS corr, ARRAY[` + strings.Join(news, ", ") + `] AS steps
      FROM generate_series(1, $1::int)
), m (old, i) AS (VALUES ` + strings.Join(m, ", ") + `
), o AS (
    SELECT timezone('UTC', now()) - p.created_at - make_interval(secs => $2::float8) AS d FROM tasker.tasks p WHERE p.task_uuid = ` + p + `
), t AS (
    INSERT INTO tasker.tasks (task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system,
                              reason, tags, context, identity_hash, created_at, updated_at, priority, correlation_id,
                              parent_correlation_id)
    SELECT n.task_uuid, p.named_task_uuid, p.complete, p.requested_at + o.d, p.completed_at + o.d, p.initiator,
           p.source_system, p.reason, p.tags, p.context, encode(sha256(convert_to(n.task_uuid::text, 'UTF8')), 'hex'),
           p.created_at + o.d, p.updated_at + o.d, p.priority, n.corr, p.parent_correlation_id
      FROM n, o, tasker.tasks p WHERE p.task_uuid = ` + p + `
    RETURNING task_uuid
), s AS (
    INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process,
                                       processed, processed_at, attempts, last_attempted_at, backoff_request_seconds,
                                       inputs, results, created_at, updated_at, priority, checkpoint)
    SELECT n.steps[m.i], n.task_uuid, ws.named_step_uuid, ws.retryable, ws.max_attempts, ws.in_process, ws.processed,
           ws.processed_at + o.d, ws.attempts, ws.last_attempted_at + o.d, ws.backoff_request_seconds, ws.inputs,
           ` + sub("ws.results") + `, ws.created_at + o.d, ws.updated_at + o.d, ws.priority, ws.checkpoint
      FROM n, o, m JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = m.old
), e AS (
    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
    SELECT n.steps[mf.i], n.steps[mt.i], e.name, e.created_at + o.d, e.updated_at + o.d
      FROM n, o, tasker.workflow_step_edges e
      JOIN m mf ON mf.old = e.from_step_uuid
      JOIN m mt ON mt.old = e.to_step_uuid
), tt AS (
    INSERT INTO tasker.task_transitions (task_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at,
                                         updated_at, processor_uuid, transition_metadata)
    SELECT n.task_uuid, x.to_state, x.from_state, ` + sub("x.metadata") + `, x.sort_key, x.most_recent,
           x.created_at + o.d, x.updated_at + o.d, x.processor_uuid, ` + sub("x.transition_metadata") + `
      FROM n, o, tasker.task_transitions x WHERE x.task_uuid = ` + p + `
), st AS (
    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent,
                                                  created_at, updated_at)
    SELECT n.steps[m.i], x.to_state, x.from_state, ` + sub("x.metadata") + `, x.sort_key, x.most_recent,
           x.created_at + o.d, x.updated_at + o.d
      FROM n, o, m JOIN tasker.workflow_step_transitions x ON x.workflow_step_uuid = m.old
)
SELECT task_uuid FROM t`
}

// ageTask moves every timestamp of one task's rows back so that its state is age old.
func ageTask(ctx context.Context, pool *pgxpool.Pool, task uuid.UUID, age time.Duration) error {
	_, err := pool.Exec(ctx, `
WITH o AS (
    SELECT p.created_at - (timezone('UTC', now()) - make_interval(secs => $2::float8)) AS d
      FROM tasker.tasks p WHERE p.task_uuid = $1
), t AS (
    UPDATE tasker.tasks SET requested_at = requested_at - o.d, created_at = created_at - o.d, updated_at = updated_at - o.d
      FROM o WHERE task_uuid = $1
), s AS (
    UPDATE tasker.workflow_steps SET processed_at = processed_at - o.d, last_attempted_at = last_attempted_at - o.d,
           created_at = created_at - o.d, updated_at = updated_at - o.d
      FROM o WHERE task_uuid = $1
), e AS (
    UPDATE tasker.workflow_step_edges SET created_at = created_at - o.d, updated_at = updated_at - o.d
      FROM o WHERE from_step_uuid IN (SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1)
), tt AS (
    UPDATE tasker.task_transitions SET created_at = created_at - o.d, updated_at = updated_at - o.d
      FROM o WHERE task_uuid = $1
)
UPDATE tasker.workflow_step_transitions SET created_at = created_at - o.d, updated_at = updated_at - o.d
  FROM o WHERE workflow_step_uuid IN (SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1)`,
		task, age.Seconds())
	if err != nil {
		return fmt.Errorf("bench: age task %s: %w", task, err)
	}
	return nil
}

// sweepFn is one timed sweep: it returns how many tasks or steps it acted on.
type sweepFn struct {
	name, label string
	run         func(context.Context, *orchestration.Orchestrator) (int, error)
}

// sweeps lists the sweeps the sweep phase times, in the order it runs them.
var sweeps = []sweepFn{
	{"readiness", "readiness sweep (ReadinessSweep)", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		return o.ReadinessSweep(ctx)
	}},
	{"abandoned", "recovery: abandoned steps", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		return o.RecoverAbandonedSteps(ctx)
	}},
	{"stuck", "recovery: stuck tasks", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		return o.RecoverStuckTasks(ctx)
	}},
	{"orphan", "recovery: orphan results", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		return o.RecoverOrphanResults(ctx)
	}},
	{"stale", "staleness detection (DetectStaleTasks)", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		found, err := o.DetectStaleTasks(ctx, o.Config().Staleness)
		return len(found), err
	}},
	{"recovery", "whole recovery sweep (RecoverySweep)", func(ctx context.Context, o *orchestration.Orchestrator) (int, error) {
		rep, err := o.RecoverySweep(ctx)
		return rep.AbandonedSteps + rep.StuckTasks + rep.OrphanResults, err
	}},
}

// sweepSizes are the backlogs the sweep phase measures.
func sweepSizes(quick bool) []int {
	if quick {
		return []int{1000, 10_000}
	}
	return []int{1000, 10_000, 100_000}
}

func sizeLabel(n int) string {
	if n > 0 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// runSweeps measures every sweep on a backlog of each size (10 tasks of each due class, 5%
// waiting for a retry, 20% running, the rest waiting for a worker; as many completed tasks
// beside them, a tenth with --quick), each in a fresh database: three calls of each sweep (the
// first acts on the due tasks, the others find nothing left to do), recorded as
// sweep.<name>.ms@<size>; the recorder keeps their median.
func runSweeps(ctx context.Context, srv *server, cfg Config, rec *recorder, out io.Writer, log *slog.Logger) error {
	for _, n := range sweepSizes(cfg.Quick) {
		if err := measureSweeps(ctx, srv, cfg, rec, out, log, n); err != nil {
			return fmt.Errorf("sweep %s: %w", sizeLabel(n), err)
		}
	}
	return nil
}

func measureSweeps(ctx context.Context, srv *server, cfg Config, rec *recorder, out io.Writer, log *slog.Logger, n int) error {
	ctx, cancel := context.WithTimeout(ctx, max(cfg.Timeout, 20*time.Minute))
	defer cancel()
	label := "sweep_" + sizeLabel(n)
	rec.add("0. machine", "machine.loadavg1."+label, "load average (1 min) before "+label, "load", loadAverage1())
	d, err := srv.freshDatabase(ctx, label)
	if err != nil {
		return err
	}
	defer d.drop()
	pool, err := d.pool(ctx, 8, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	ocfg := orchestration.Config{}
	BacklogConfig(&ocfg)
	o, err := orchestration.New(ocfg, pool, orchestration.WithLogger(log))
	if err != nil {
		return err
	}
	spec := BacklogSpec{Active: n, Completed: n, Due: 10, RetryPercent: 5, RunningPercent: 20}
	if cfg.Quick {
		spec.Completed = n / 10
	}
	b, err := BuildBacklog(ctx, pool, o, cfg.SourceDir, spec)
	if err != nil {
		return err
	}
	const sec = "5. sweeps on a backlog of active tasks"
	var found []string
	for _, s := range sweeps {
		var ms []float64
		acted := 0
		for range 3 {
			began := time.Now()
			k, err := s.run(ctx, o)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			ms = append(ms, float64(time.Since(began))/1e6)
			acted += k
		}
		for _, v := range ms {
			rec.add(sec, "sweep."+s.name+".ms@"+sizeLabel(n), fmt.Sprintf("%s, %s active + %s completed tasks (median of 3 calls)",
				s.label, sizeLabel(n), sizeLabel(spec.Completed)), "ms", v)
		}
		slices.Sort(ms)
		found = append(found, fmt.Sprintf("%s %.1f ms (acted on %d)", s.name, ms[1], acted))
	}
	fmt.Fprintf(out, "  sweeps on %s active + %s completed tasks (built in %s): %s\n", sizeLabel(n), sizeLabel(spec.Completed),
		b.Build.Round(time.Second), strings.Join(found, "; "))
	return nil
}
