package bench

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/template"
)

// The single-step template the worker-only measurements run: one step whose handler does
// nothing but return an empty success.
const (
	noopNamespace = "bench"
	noopTaskName  = "noop_step"
	noopStepName  = "bench_noop"
	noopCallable  = "bench.noop"
	noopTemplate  = `name: noop_step
namespace_name: bench
version: 1.0.0
description: "tasker-bench: one step with a no-op handler"
steps:
  - name: bench_noop
    handler:
      callable: bench.noop
    dependencies: []
    retry:
      retryable: true
      max_attempts: 3
    timeout_seconds: 30
`
)

// noopRegistry is a handler registry holding only the no-op handler.
func noopRegistry() (*handlers.Registry, error) {
	reg := handlers.NewRegistry()
	err := reg.RegisterFunc(noopCallable, func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(nil, nil)
	})
	return reg, err
}

// noopRows identifies the registered no-op template.
type noopRows struct {
	namedTask uuid.UUID
	namedStep uuid.UUID
}

// registerNoop registers the no-op template the way a worker does at start.
func registerNoop(ctx context.Context, pool *pgxpool.Pool) (noopRows, error) {
	t, err := template.Parse([]byte(noopTemplate), "tasker-bench noop template")
	if err != nil {
		return noopRows{}, err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return noopRows{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	reg, err := template.Register(ctx, tx, t)
	if err != nil {
		return noopRows{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return noopRows{}, err
	}
	return noopRows{namedTask: reg.NamedTaskUUID, namedStep: reg.NamedStepUUIDs[noopStepName]}, nil
}

// feedSQL writes n single-step tasks as the orchestrator leaves them after the first dispatch
// (task row, step row, step transitions pending → enqueued) and sends one worker message per step,
// in one statement. Task transitions are not written: the worker never reads them.
const feedSQL = `
WITH t AS (
    INSERT INTO tasker.tasks (named_task_uuid, complete, requested_at, initiator, source_system, reason,
                              tags, context, identity_hash, priority, correlation_id, created_at, updated_at)
    SELECT $1, false, now(), 'tasker-bench', 'tasker-bench', 'worker-only benchmark', '[]'::jsonb, '{}'::jsonb,
           gen_random_uuid()::text, 0, tasker.uuid_generate_v7(), now(), now()
      FROM generate_series(1, $3::int)
    RETURNING task_uuid, correlation_id
), s AS (
    INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
                                       created_at, updated_at)
    SELECT t.task_uuid, $2, true, 3, false, false, now(), now() FROM t
    RETURNING workflow_step_uuid, task_uuid
), tr AS (
    INSERT INTO tasker.workflow_step_transitions (workflow_step_uuid, to_state, from_state, metadata, sort_key,
                                                  most_recent, created_at, updated_at)
    SELECT s.workflow_step_uuid, x.to_state, x.from_state, '{}'::jsonb, x.sort_key, x.sort_key = 2, now(), now()
      FROM s CROSS JOIN (VALUES ('pending', NULL, 1), ('enqueued', 'pending', 2)) AS x (to_state, from_state, sort_key)
), m AS (
    SELECT array_agg(jsonb_build_object('task_uuid', s.task_uuid, 'step_uuid', s.workflow_step_uuid,
                                        'correlation_id', t.correlation_id) ORDER BY s.workflow_step_uuid) AS msgs
      FROM s JOIN t USING (task_uuid)
)
SELECT count(*) FROM m, LATERAL pgmq.send_batch($4::text, m.msgs)`

// feedNoopTasks enqueues n no-op tasks for the worker in chunks of chunk.
func feedNoopTasks(ctx context.Context, pool *pgxpool.Pool, rows noopRows, n, chunk int) error {
	q := queue.WorkerQueue(noopNamespace)
	if err := queue.NewClient(pool).EnsureQueue(ctx, q); err != nil {
		return err
	}
	for done := 0; done < n; {
		k := min(chunk, n-done)
		var sent int64
		if err := pool.QueryRow(ctx, feedSQL, rows.namedTask, rows.namedStep, k, q).Scan(&sent); err != nil {
			return fmt.Errorf("bench: feed tasks: %w", err)
		}
		if sent != int64(k) {
			return fmt.Errorf("bench: feed tasks: sent %d messages for %d tasks", sent, k)
		}
		done += k
	}
	return nil
}
