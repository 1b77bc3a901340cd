-- Indexes for the orchestrator's sweeps (orchestration/sweep.go, orchestration/dlq.go), so that
-- a sweep reads what may be due instead of every incomplete task. They are optional: tasker-core
-- does not create them, and a database without them (one migrated by tasker-core) gives the
-- sweeps the same results, more slowly. Each is partial, holding only current transitions in
-- the states a sweep looks for, incomplete tasks, or steps in process or waiting out a backoff,
-- and carries the uuid the sweep selects so that it is read without the table.

-- Tasks passing through pending, initializing, enqueuing_steps or evaluating_results, by state
-- and age: stuck tasks, and pending tasks for the readiness sweep.
CREATE INDEX IF NOT EXISTS idx_task_transitions_sweep_transitional
    ON tasker.task_transitions (to_state, created_at) INCLUDE (task_uuid)
    WHERE most_recent AND to_state IN ('pending', 'initializing', 'enqueuing_steps', 'evaluating_results');

-- Tasks waiting or with steps in process, by state and age: staleness candidates.
CREATE INDEX IF NOT EXISTS idx_task_transitions_sweep_waiting
    ON tasker.task_transitions (to_state, created_at) INCLUDE (task_uuid)
    WHERE most_recent AND to_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process');

-- Waiting and active tasks in task_uuid order: the readiness sweep examines them a few hundred
-- at a time, in turn, once there are many.
CREATE INDEX IF NOT EXISTS idx_task_transitions_sweep_active
    ON tasker.task_transitions (task_uuid)
    WHERE most_recent
      AND to_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'evaluating_results', 'steps_in_process');

-- Steps in_progress or with a result for orchestration, by state and age: abandoned steps
-- without last_attempted_at, results without a message.
CREATE INDEX IF NOT EXISTS idx_workflow_step_transitions_sweep_in_flight
    ON tasker.workflow_step_transitions (to_state, created_at) INCLUDE (workflow_step_uuid)
    WHERE most_recent AND to_state IN ('in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration');

-- Steps in process (in_progress) by last attempt: abandoned steps.
CREATE INDEX IF NOT EXISTS idx_workflow_steps_sweep_in_process
    ON tasker.workflow_steps (last_attempted_at) INCLUDE (workflow_step_uuid) WHERE in_process;

-- When a step waiting out a backoff may run again: retries whose backoff elapsed. Steps in
-- process, finished, or without an attempt left (get_step_readiness_status's retry_eligible)
-- are left out.
CREATE INDEX IF NOT EXISTS idx_workflow_steps_sweep_retry_due
    ON tasker.workflow_steps ((last_attempted_at + make_interval(secs => backoff_request_seconds))) INCLUDE (task_uuid)
    WHERE NOT processed AND NOT in_process
      AND backoff_request_seconds IS NOT NULL AND last_attempted_at IS NOT NULL
      AND (COALESCE(attempts, 0) = 0 OR (retryable AND COALESCE(attempts, 0) < COALESCE(max_attempts, 3)));

-- Incomplete tasks by age: the staleness detection's maximum task lifetime.
CREATE INDEX IF NOT EXISTS idx_tasks_sweep_active_created_at
    ON tasker.tasks (created_at) INCLUDE (task_uuid) WHERE NOT complete;
