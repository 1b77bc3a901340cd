-- tasker-go migration 0002: the tasker SQL functions, views and triggers that the worker and the
-- orchestration call. Names, argument names and types, result columns and semantics match
-- tasker-core so that either implementation can call them. Bodies are written for tasker-go and
-- qualify every object with its schema, so they work whatever the caller's search_path is.
--
-- Time arithmetic compares naive UTC columns with now(); like tasker-core this assumes the session
-- TimeZone is UTC (db.Connect pins it).
--
-- Deviations from tasker-core (behaviour the Rust code does not depend on):
--   * get_step_readiness_status[_batch]: with a step_uuids filter, a parent outside the filter is
--     still judged by its real state (tasker-core treated such parents as incomplete).
--   * get_next_ready_tasks: no trailing FOR UPDATE SKIP LOCKED. Upstream's clause applied to a CTE
--     and locked nothing; claiming safety comes from the most_recent unique indexes.
--   * create_step_result_audit: reads success/execution_time_ms from the StepEvent's "data"
--     (where the worker puts the StepExecutionResult); see the function's comment.

-- =============================================================================================
-- Step readiness
-- =============================================================================================

-- When a failed step may run again. Orchestration's backoff (backoff_request_seconds stamped
-- together with last_attempted_at) wins; otherwise exponential backoff from the last error
-- transition; NULL when neither applies (no waiting).
CREATE FUNCTION tasker.calculate_step_next_retry_time(
    backoff_request_seconds integer,
    last_attempted_at timestamp without time zone,
    failure_time timestamp without time zone,
    attempts integer,
    p_max_backoff_seconds integer DEFAULT 60,
    p_backoff_multiplier numeric DEFAULT 2.0
) RETURNS timestamp without time zone
LANGUAGE sql STABLE
AS $fn$
    SELECT CASE
        WHEN backoff_request_seconds IS NOT NULL AND last_attempted_at IS NOT NULL
            THEN last_attempted_at + make_interval(secs => backoff_request_seconds)
        WHEN failure_time IS NOT NULL
            THEN failure_time + make_interval(secs => LEAST(
                    power(p_backoff_multiplier, COALESCE(attempts, 1)),
                    p_max_backoff_seconds::numeric)::double precision)
    END
$fn$;

-- The readiness predicate. `retryable` is accepted for signature compatibility only: it is
-- already folded into retry_eligible.
CREATE FUNCTION tasker.evaluate_step_state_readiness(
    current_state text,
    processed boolean,
    in_process boolean,
    dependencies_satisfied boolean,
    retry_eligible boolean,
    retryable boolean,
    next_retry_time timestamp without time zone
) RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT COALESCE(current_state, 'pending') IN ('pending', 'waiting_for_retry')
       AND processed IS NOT TRUE
       AND in_process IS NOT TRUE
       AND dependencies_satisfied
       AND retry_eligible
       AND (next_retry_time IS NULL OR next_retry_time <= now())
$fn$;

-- Readiness of every step of the given tasks (optionally only the given steps).
-- A step without transitions is 'pending'. A parent counts as done when its current state is
-- complete or resolved_manually.
CREATE FUNCTION tasker.get_step_readiness_status_batch(
    input_task_uuids uuid[],
    step_uuids uuid[] DEFAULT NULL::uuid[]
) RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid uuid,
    named_step_uuid uuid,
    name text,
    current_state text,
    dependencies_satisfied boolean,
    retry_eligible boolean,
    ready_for_execution boolean,
    last_failure_at timestamp without time zone,
    next_retry_at timestamp without time zone,
    total_parents integer,
    completed_parents integer,
    attempts integer,
    max_attempts integer,
    backoff_request_seconds integer,
    last_attempted_at timestamp without time zone
)
LANGUAGE sql STABLE
AS $fn$
    WITH step_facts AS (
        SELECT
            ws.workflow_step_uuid,
            ws.task_uuid,
            ws.named_step_uuid,
            ns.name::text                      AS step_name,
            COALESCE(cur.to_state, 'pending')  AS state,
            ws.processed,
            ws.in_process,
            ws.retryable,
            ws.attempts,
            ws.max_attempts,
            ws.backoff_request_seconds,
            ws.last_attempted_at,
            failure.at                         AS failed_at,
            parents.total                      AS parents_total,
            parents.done                       AS parents_done,
            COALESCE(ws.attempts, 0) = 0
                OR (COALESCE(ws.retryable, true)
                    AND COALESCE(ws.attempts, 0) < COALESCE(ws.max_attempts, 3)) AS may_attempt
        FROM tasker.workflow_steps ws
        JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
        LEFT JOIN tasker.workflow_step_transitions cur
               ON cur.workflow_step_uuid = ws.workflow_step_uuid AND cur.most_recent
        CROSS JOIN LATERAL (
            SELECT max(f.created_at) AS at
            FROM tasker.workflow_step_transitions f
            WHERE f.workflow_step_uuid = ws.workflow_step_uuid AND f.to_state = 'error'
        ) failure
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS total,
                   (count(*) FILTER (WHERE pst.to_state IN ('complete', 'resolved_manually')))::integer AS done
            FROM tasker.workflow_step_edges e
            LEFT JOIN tasker.workflow_step_transitions pst
                   ON pst.workflow_step_uuid = e.from_step_uuid AND pst.most_recent
            WHERE e.to_step_uuid = ws.workflow_step_uuid
        ) parents
        WHERE ws.task_uuid = ANY (input_task_uuids)
          AND (step_uuids IS NULL OR ws.workflow_step_uuid = ANY (step_uuids))
    )
    SELECT
        sf.workflow_step_uuid,
        sf.task_uuid,
        sf.named_step_uuid,
        sf.step_name,
        sf.state::text,
        sf.parents_done = sf.parents_total,
        sf.may_attempt,
        tasker.evaluate_step_state_readiness(
            sf.state, sf.processed, sf.in_process, sf.parents_done = sf.parents_total,
            sf.may_attempt, COALESCE(sf.retryable, true), retry.at),
        sf.failed_at,
        retry.at,
        sf.parents_total,
        sf.parents_done,
        COALESCE(sf.attempts, 0),
        COALESCE(sf.max_attempts, 3),
        sf.backoff_request_seconds,
        sf.last_attempted_at
    FROM step_facts sf
    CROSS JOIN LATERAL (
        SELECT tasker.calculate_step_next_retry_time(
            sf.backoff_request_seconds, sf.last_attempted_at, sf.failed_at, sf.attempts) AS at
    ) retry
    ORDER BY sf.task_uuid, sf.workflow_step_uuid
$fn$;

CREATE FUNCTION tasker.get_step_readiness_status(
    input_task_uuid uuid,
    step_uuids uuid[] DEFAULT NULL::uuid[]
) RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid uuid,
    named_step_uuid uuid,
    name text,
    current_state text,
    dependencies_satisfied boolean,
    retry_eligible boolean,
    ready_for_execution boolean,
    last_failure_at timestamp without time zone,
    next_retry_at timestamp without time zone,
    total_parents integer,
    completed_parents integer,
    attempts integer,
    max_attempts integer,
    backoff_request_seconds integer,
    last_attempted_at timestamp without time zone
)
LANGUAGE sql STABLE
AS $fn$
    SELECT * FROM tasker.get_step_readiness_status_batch(ARRAY[input_task_uuid], step_uuids)
$fn$;

-- =============================================================================================
-- DAG helpers
-- =============================================================================================

-- Every ancestor of a step, walking edges upwards: parents at distance 1, grandparents at 2, ...
-- (at most 50). Not deduplicated: in a diamond an ancestor appears once per path, as in
-- tasker-core; callers that build a name -> results map are unaffected.
CREATE FUNCTION tasker.get_step_transitive_dependencies(target_step_uuid uuid)
RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid uuid,
    named_step_uuid uuid,
    step_name character varying,
    results jsonb,
    processed boolean,
    distance integer
)
LANGUAGE sql STABLE
AS $fn$
    WITH RECURSIVE ancestry (step_uuid, distance) AS (
        SELECT e.from_step_uuid, 1
        FROM tasker.workflow_step_edges e
        WHERE e.to_step_uuid = target_step_uuid
        UNION ALL
        SELECT e.from_step_uuid, a.distance + 1
        FROM ancestry a
        JOIN tasker.workflow_step_edges e ON e.to_step_uuid = a.step_uuid
        WHERE a.distance < 50
    )
    SELECT ws.workflow_step_uuid, ws.task_uuid, ws.named_step_uuid, ns.name::varchar,
           ws.results, ws.processed, a.distance
    FROM ancestry a
    JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = a.step_uuid
    JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
    ORDER BY a.distance, ws.workflow_step_uuid
$fn$;

-- Level of each step of a task: roots are 0, every other step is one more than its deepest
-- parent (the longest path from a root).
CREATE FUNCTION tasker.calculate_dependency_levels(input_task_uuid uuid)
RETURNS TABLE (workflow_step_uuid uuid, dependency_level integer)
LANGUAGE sql STABLE
AS $fn$
    WITH RECURSIVE levels (step_uuid, lvl) AS (
        SELECT ws.workflow_step_uuid, 0
        FROM tasker.workflow_steps ws
        WHERE ws.task_uuid = input_task_uuid
          AND NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e
                          WHERE e.to_step_uuid = ws.workflow_step_uuid)
        UNION ALL
        SELECT e.to_step_uuid, l.lvl + 1
        FROM levels l
        JOIN tasker.workflow_step_edges e ON e.from_step_uuid = l.step_uuid
        JOIN tasker.workflow_steps child ON child.workflow_step_uuid = e.to_step_uuid
        WHERE child.task_uuid = input_task_uuid
          AND l.lvl < 1000  -- guard against an (invalid) cycle
    )
    SELECT l.step_uuid, max(l.lvl)::integer AS dependency_level
    FROM levels l
    GROUP BY l.step_uuid
    ORDER BY dependency_level, l.step_uuid
$fn$;

-- =============================================================================================
-- Task execution context
-- =============================================================================================

-- Step statistics and the next action for each task. Every step in 'error' blocks its task
-- (retryable failures go to waiting_for_retry instead). Tasks without steps still get a row.
CREATE FUNCTION tasker.get_task_execution_contexts_batch(input_task_uuids uuid[])
RETURNS TABLE (
    task_uuid uuid,
    named_task_uuid uuid,
    status text,
    total_steps bigint,
    pending_steps bigint,
    in_progress_steps bigint,
    completed_steps bigint,
    failed_steps bigint,
    ready_steps bigint,
    execution_status text,
    recommended_action text,
    completion_percentage numeric,
    health_status text,
    enqueued_steps bigint
)
LANGUAGE sql STABLE
AS $fn$
    WITH per_task AS (
        SELECT r.task_uuid,
               count(*)                                                       AS total,
               count(*) FILTER (WHERE r.current_state = 'pending')            AS pending,
               count(*) FILTER (WHERE r.current_state = 'in_progress')        AS in_progress,
               count(*) FILTER (WHERE r.current_state = 'enqueued')           AS enqueued,
               count(*) FILTER (WHERE r.current_state IN ('enqueued_for_orchestration',
                                                          'enqueued_as_error_for_orchestration')) AS awaiting_orchestration,
               count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
               count(*) FILTER (WHERE r.current_state = 'error')              AS failed,
               count(*) FILTER (WHERE r.ready_for_execution)                  AS ready
        FROM tasker.get_step_readiness_status_batch(input_task_uuids) r
        GROUP BY r.task_uuid
    )
    SELECT
        t.task_uuid,
        t.named_task_uuid,
        COALESCE(cur.to_state, 'pending')::text,
        n.total, n.pending, n.in_progress, n.completed, n.failed, n.ready,
        CASE
            WHEN n.failed > 0 THEN 'blocked_by_failures'
            WHEN n.ready > 0 THEN 'has_ready_steps'
            WHEN n.in_progress + n.enqueued + n.awaiting > 0 THEN 'processing'
            WHEN n.total > 0 AND n.completed = n.total THEN 'all_complete'
            ELSE 'waiting_for_dependencies'
        END,
        CASE
            WHEN n.failed > 0 THEN 'handle_failures'
            WHEN n.ready > 0 THEN 'execute_ready_steps'
            WHEN n.in_progress + n.enqueued + n.awaiting > 0 THEN 'wait_for_completion'
            WHEN n.total > 0 AND n.completed = n.total THEN 'finalize_task'
            ELSE 'wait_for_dependencies'
        END,
        CASE WHEN n.total = 0 THEN 0.0
             ELSE round(n.completed::numeric / n.total::numeric * 100, 2)
        END,
        -- tasker-core also names 'recovering' and 'unknown'; neither is reachable because every
        -- failed step also blocks.
        CASE
            WHEN n.failed > 0 THEN 'blocked'
            ELSE 'healthy'
        END,
        n.enqueued + n.awaiting
    FROM tasker.tasks t
    LEFT JOIN tasker.task_transitions cur ON cur.task_uuid = t.task_uuid AND cur.most_recent
    LEFT JOIN per_task p ON p.task_uuid = t.task_uuid
    CROSS JOIN LATERAL (
        SELECT COALESCE(p.total, 0)       AS total,
               COALESCE(p.pending, 0)     AS pending,
               COALESCE(p.in_progress, 0) AS in_progress,
               COALESCE(p.enqueued, 0)    AS enqueued,
               COALESCE(p.awaiting_orchestration, 0) AS awaiting,
               COALESCE(p.completed, 0)   AS completed,
               COALESCE(p.failed, 0)      AS failed,
               COALESCE(p.ready, 0)       AS ready
    ) n
    WHERE t.task_uuid = ANY (input_task_uuids)
$fn$;

CREATE FUNCTION tasker.get_task_execution_context(input_task_uuid uuid)
RETURNS TABLE (
    task_uuid uuid,
    named_task_uuid uuid,
    status text,
    total_steps bigint,
    pending_steps bigint,
    in_progress_steps bigint,
    completed_steps bigint,
    failed_steps bigint,
    ready_steps bigint,
    execution_status text,
    recommended_action text,
    completion_percentage numeric,
    health_status text,
    enqueued_steps bigint
)
LANGUAGE sql STABLE
AS $fn$
    SELECT * FROM tasker.get_task_execution_contexts_batch(ARRAY[input_task_uuid])
$fn$;

-- =============================================================================================
-- Task discovery
-- =============================================================================================

-- The readiness poller's query. Candidates: tasks whose current state is pending (always),
-- waiting_for_dependencies (at most 60 min in state) or waiting_for_retry (at most 30 min).
-- computed_priority: under 1 h in state, priority + 0.1 per hour of task age; under 24 h,
-- priority decays with exp(-t / 12 h); older, 0.1. The best p_limit * 10 candidates are checked
-- with get_task_execution_context; pending tasks, and others with ready steps, are returned.
-- This is discovery, not a claim: nothing is locked.
CREATE FUNCTION tasker.get_next_ready_tasks(p_limit integer DEFAULT 5)
RETURNS TABLE (
    task_uuid uuid,
    task_name character varying,
    priority integer,
    namespace_name character varying,
    ready_steps_count bigint,
    computed_priority numeric,
    current_state character varying
)
LANGUAGE sql STABLE
AS $fn$
    WITH candidates AS (
        SELECT t.task_uuid, nt.name AS task_name, t.priority, tns.name AS namespace_name,
               cur.to_state AS current_state, t.created_at AS task_created_at,
               CASE
                   WHEN age.in_state_s < 3600
                       THEN t.priority + age.task_s / 3600 * 0.1
                   WHEN age.in_state_s < 86400
                       THEN t.priority * exp(-age.in_state_s / 43200)
                   ELSE 0.1
               END::numeric AS computed_priority
        FROM tasker.task_transitions cur
        JOIN tasker.tasks t ON t.task_uuid = cur.task_uuid
        JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
        CROSS JOIN LATERAL (
            SELECT extract(epoch FROM now() - cur.created_at)::numeric AS in_state_s,
                   extract(epoch FROM now() - t.created_at)::numeric   AS task_s
        ) age
        WHERE cur.most_recent
          AND (cur.to_state = 'pending'
               OR (cur.to_state = 'waiting_for_dependencies' AND age.in_state_s <= 60 * 60)
               OR (cur.to_state = 'waiting_for_retry' AND age.in_state_s <= 30 * 60))
        ORDER BY computed_priority DESC, t.created_at ASC
        LIMIT p_limit * 10
    )
    SELECT c.task_uuid, c.task_name, c.priority, c.namespace_name,
           COALESCE(ctx.ready_steps, 0), c.computed_priority, c.current_state
    FROM candidates c
    CROSS JOIN LATERAL tasker.get_task_execution_context(c.task_uuid) ctx
    WHERE c.current_state = 'pending' OR ctx.execution_status = 'has_ready_steps'
    ORDER BY c.computed_priority DESC, c.task_created_at ASC
    LIMIT p_limit
$fn$;

CREATE FUNCTION tasker.get_next_ready_task()
RETURNS TABLE (
    task_uuid uuid,
    task_name character varying,
    priority integer,
    namespace_name character varying,
    ready_steps_count bigint,
    computed_priority numeric,
    current_state character varying
)
LANGUAGE sql STABLE
AS $fn$
    SELECT * FROM tasker.get_next_ready_tasks(1)
$fn$;

-- Same shape as get_next_ready_tasks for one task, whatever its state;
-- computed_priority = priority + 0.1 per hour of task age. No row if the task has no transition.
CREATE FUNCTION tasker.get_task_ready_info(p_task_uuid uuid)
RETURNS TABLE (
    task_uuid uuid,
    task_name character varying,
    priority integer,
    namespace_name character varying,
    ready_steps_count bigint,
    computed_priority numeric,
    current_state character varying
)
LANGUAGE sql STABLE
AS $fn$
    SELECT t.task_uuid, nt.name, t.priority, tns.name,
           COALESCE(ctx.ready_steps, 0),
           (t.priority + extract(epoch FROM now() - t.created_at)::numeric / 3600 * 0.1)::numeric,
           cur.to_state
    FROM tasker.tasks t
    JOIN tasker.task_transitions cur ON cur.task_uuid = t.task_uuid AND cur.most_recent
    JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    CROSS JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) ctx
    WHERE t.task_uuid = p_task_uuid
$fn$;

-- =============================================================================================
-- Task state
-- =============================================================================================

-- The to_state of the task's current transition, NULL when it has none.
CREATE FUNCTION tasker.get_current_task_state(p_task_uuid uuid)
RETURNS character varying
LANGUAGE sql STABLE
AS $fn$
    SELECT tt.to_state FROM tasker.task_transitions tt
    WHERE tt.task_uuid = p_task_uuid AND tt.most_recent
$fn$;

-- Compare-and-swap task transition: moves the task to p_to_state only if its current state is
-- p_from_state. Returns whether a transition row was written. processor_uuid is recorded for
-- audit; the metadata goes to transition_metadata (the Rust model writes `metadata` instead).
CREATE FUNCTION tasker.transition_task_state_atomic(
    p_task_uuid uuid,
    p_from_state character varying,
    p_to_state character varying,
    p_processor_uuid uuid,
    p_metadata jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_current  varchar;
    v_next_key integer;
BEGIN
    -- Invariant: at most one most_recent row per task. Locking the current row serialises
    -- concurrent callers; a loser re-reads after the winner commits, finds no most_recent row
    -- matching (the old one was cleared) and returns false.
    SELECT tt.to_state INTO v_current
    FROM tasker.task_transitions tt
    WHERE tt.task_uuid = p_task_uuid AND tt.most_recent
    FOR UPDATE;

    IF NOT FOUND OR v_current IS DISTINCT FROM p_from_state THEN
        RETURN false;
    END IF;

    SELECT COALESCE(max(tt.sort_key), 0) + 1 INTO v_next_key
    FROM tasker.task_transitions tt
    WHERE tt.task_uuid = p_task_uuid;

    UPDATE tasker.task_transitions tt
    SET most_recent = false, updated_at = now()
    WHERE tt.task_uuid = p_task_uuid AND tt.most_recent;

    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, processor_uuid, transition_metadata,
         sort_key, most_recent, created_at, updated_at)
    VALUES
        (p_task_uuid, p_from_state, p_to_state, p_processor_uuid, COALESCE(p_metadata, '{}'::jsonb),
         v_next_key, true, now(), now());

    RETURN true;
END
$fn$;

-- Tasks whose current transition is an active orchestration state older than the timeout.
CREATE FUNCTION tasker.find_stuck_tasks(p_timeout_minutes integer DEFAULT 10)
RETURNS TABLE (
    task_uuid uuid,
    current_state character varying,
    processor_uuid uuid,
    stuck_duration_minutes integer
)
LANGUAGE sql STABLE
AS $fn$
    SELECT tt.task_uuid, tt.to_state, tt.processor_uuid,
           (extract(epoch FROM now() - tt.created_at)::integer / 60)
    FROM tasker.task_transitions tt
    WHERE tt.most_recent
      AND tt.to_state IN ('initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results')
      AND tt.created_at < now() - make_interval(mins => p_timeout_minutes)
$fn$;

-- Records an orchestration backoff for a step; returns whether the step exists.
CREATE FUNCTION tasker.set_step_backoff_atomic(p_step_uuid uuid, p_backoff_seconds integer)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    UPDATE tasker.workflow_steps
    SET backoff_request_seconds = p_backoff_seconds,
        last_attempted_at = now(),
        updated_at = now()
    WHERE workflow_step_uuid = p_step_uuid;
    RETURN FOUND;
END
$fn$;

-- =============================================================================================
-- Staleness and DLQ
-- =============================================================================================

-- Minutes a task may stay in a state before it counts as stale: the template's
-- configuration.lifecycle override, else the given default; 1440 for states not watched.
CREATE FUNCTION tasker.calculate_staleness_threshold(
    p_task_state character varying,
    p_template_config jsonb,
    p_default_waiting_deps integer DEFAULT 60,
    p_default_waiting_retry integer DEFAULT 30,
    p_default_steps_process integer DEFAULT 30
) RETURNS integer
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT CASE p_task_state
        WHEN 'waiting_for_dependencies' THEN COALESCE(
            (p_template_config -> 'lifecycle' ->> 'max_waiting_for_dependencies_minutes')::integer,
            p_default_waiting_deps)
        WHEN 'waiting_for_retry' THEN COALESCE(
            (p_template_config -> 'lifecycle' ->> 'max_waiting_for_retry_minutes')::integer,
            p_default_waiting_retry)
        WHEN 'steps_in_process' THEN COALESCE(
            (p_template_config -> 'lifecycle' ->> 'max_steps_in_process_minutes')::integer,
            p_default_steps_process)
        ELSE 1440
    END
$fn$;

-- Incomplete tasks with their template and current state.
CREATE VIEW tasker.v_task_state_analysis AS
SELECT
    t.task_uuid,
    t.correlation_id,
    tns.name                 AS namespace_name,
    tns.task_namespace_uuid  AS namespace_uuid,
    nt.name                  AS task_name,
    nt.named_task_uuid,
    nt.configuration         AS template_config,
    cur.to_state             AS current_state,
    cur.created_at           AS state_entered_at,
    extract(epoch FROM now() - cur.created_at) / 60::numeric AS time_in_state_minutes,
    extract(epoch FROM now() - t.created_at) / 60::numeric   AS task_age_minutes,
    t.priority,
    t.complete
FROM tasker.tasks t
JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
JOIN tasker.task_transitions cur ON cur.task_uuid = t.task_uuid AND cur.most_recent = true
WHERE t.complete = false;

-- Health of tasks in the states the staleness detector watches: stale at the threshold,
-- warning from 80% of it.
CREATE VIEW tasker.v_task_staleness_monitoring AS
SELECT
    a.task_uuid,
    a.namespace_name,
    a.task_name,
    a.current_state,
    a.time_in_state_minutes,
    a.task_age_minutes,
    th.minutes AS staleness_threshold_minutes,
    CASE
        WHEN a.time_in_state_minutes >= th.minutes THEN 'stale'
        WHEN a.time_in_state_minutes >= th.minutes * 0.8 THEN 'warning'
        ELSE 'healthy'
    END AS health_status,
    a.priority
FROM tasker.v_task_state_analysis a
CROSS JOIN LATERAL (
    SELECT tasker.calculate_staleness_threshold(a.current_state, a.template_config, 60, 30, 30) AS minutes
) th
WHERE a.current_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process');

-- DLQ entries per reason.
CREATE VIEW tasker.v_dlq_dashboard AS
SELECT
    d.dlq_reason,
    count(*) AS total_entries,
    count(*) FILTER (WHERE d.resolution_status = 'pending')            AS pending,
    count(*) FILTER (WHERE d.resolution_status = 'manually_resolved')  AS manually_resolved,
    count(*) FILTER (WHERE d.resolution_status = 'permanently_failed') AS permanent_failures,
    count(*) FILTER (WHERE d.resolution_status = 'cancelled')          AS cancelled,
    min(d.dlq_timestamp) AS oldest_entry,
    max(d.dlq_timestamp) AS newest_entry,
    avg(extract(epoch FROM COALESCE(d.resolution_timestamp::timestamptz, now()) - d.dlq_timestamp::timestamptz)
        / 60::numeric) AS avg_resolution_time_minutes
FROM tasker.tasks_dlq d
GROUP BY d.dlq_reason;

-- Open DLQ entries, most urgent first (reason weight plus minutes waiting).
CREATE VIEW tasker.v_dlq_investigation_queue AS
SELECT
    d.dlq_entry_uuid,
    d.task_uuid,
    d.original_state,
    d.dlq_reason,
    d.dlq_timestamp,
    w.minutes_in_dlq,
    d.task_snapshot ->> 'namespace'     AS namespace_name,
    d.task_snapshot ->> 'task_name'     AS task_name,
    d.task_snapshot ->> 'current_state' AS current_state,
    (d.metadata ->> 'time_in_state_minutes')::integer AS time_in_state_minutes,
    w.weight::numeric + w.minutes_in_dlq AS priority_score
FROM tasker.tasks_dlq d
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM now() - d.dlq_timestamp::timestamptz) / 60::numeric AS minutes_in_dlq,
           CASE d.dlq_reason
               WHEN 'dependency_cycle_detected' THEN 1000
               WHEN 'max_retries_exceeded' THEN 500
               WHEN 'staleness_timeout' THEN 100
               WHEN 'worker_unavailable' THEN 50
               ELSE 10
           END AS weight
) w
WHERE d.resolution_status = 'pending'
ORDER BY w.weight::numeric + w.minutes_in_dlq DESC;

-- Tasks in a watched state that reached their threshold or the maximum task lifetime and have
-- no open DLQ entry; longest in state first.
CREATE FUNCTION tasker.get_stale_tasks_for_dlq(
    p_default_waiting_deps integer DEFAULT 60,
    p_default_waiting_retry integer DEFAULT 30,
    p_default_steps_process integer DEFAULT 30,
    p_max_lifetime_hours integer DEFAULT 24,
    p_batch_size integer DEFAULT 100
) RETURNS TABLE (
    task_uuid uuid,
    namespace_name character varying,
    task_name character varying,
    current_state character varying,
    time_in_state_minutes numeric,
    threshold_minutes integer,
    task_age_minutes numeric
)
LANGUAGE sql STABLE
AS $fn$
    SELECT a.task_uuid, a.namespace_name, a.task_name, a.current_state,
           a.time_in_state_minutes, th.minutes, a.task_age_minutes
    FROM tasker.v_task_state_analysis a
    CROSS JOIN LATERAL (
        SELECT tasker.calculate_staleness_threshold(a.current_state, a.template_config,
                   p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process) AS minutes
    ) th
    WHERE a.current_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process')
      AND NOT EXISTS (SELECT 1 FROM tasker.tasks_dlq d
                      WHERE d.task_uuid = a.task_uuid AND d.resolution_status = 'pending')
      AND (a.time_in_state_minutes >= th.minutes
           OR a.task_age_minutes >= p_max_lifetime_hours * 60)
    ORDER BY a.time_in_state_minutes DESC
    LIMIT p_batch_size
$fn$;

-- Opens a DLQ investigation for a task with a snapshot of it. Returns the new entry's uuid, or
-- NULL when the task already has an open entry or anything fails (a WARNING is raised instead
-- of an error so the caller's transaction survives).
CREATE FUNCTION tasker.create_dlq_entry(
    p_task_uuid uuid,
    p_namespace_name character varying,
    p_task_name character varying,
    p_current_state character varying,
    p_time_in_state_minutes integer,
    p_threshold_minutes integer,
    p_dlq_reason character varying DEFAULT 'staleness_timeout'::character varying
) RETURNS uuid
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_entry uuid;
BEGIN
    INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot, metadata)
    SELECT t.task_uuid,
           p_current_state,
           p_dlq_reason::tasker.dlq_reason,
           jsonb_build_object(
               'task_uuid', t.task_uuid,
               'namespace', p_namespace_name,
               'task_name', p_task_name,
               'current_state', p_current_state,
               'time_in_state_minutes', p_time_in_state_minutes,
               'threshold_minutes', p_threshold_minutes,
               'snapshot_timestamp', now(),
               'task_details', jsonb_build_object(
                   'correlation_id', t.correlation_id,
                   'priority', t.priority,
                   'requested_at', t.requested_at,
                   'created_at', t.created_at)),
           jsonb_build_object(
               'detection_method', 'automatic_staleness',
               'time_in_state_minutes', p_time_in_state_minutes,
               'threshold_minutes', p_threshold_minutes)
    FROM tasker.tasks t
    WHERE t.task_uuid = p_task_uuid
    ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
    RETURNING dlq_entry_uuid INTO v_entry;

    RETURN v_entry;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'tasker: could not create DLQ entry for task %: %', p_task_uuid, SQLERRM;
    RETURN NULL;
END
$fn$;

-- Moves a stale task to 'error' (compare-and-swap from p_current_state); false on mismatch or
-- on any error.
CREATE FUNCTION tasker.transition_stale_task_to_error(
    p_task_uuid uuid,
    p_current_state character varying,
    p_namespace_name character varying,
    p_task_name character varying
) RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN tasker.transition_task_state_atomic(
        p_task_uuid, p_current_state, 'error', NULL,
        jsonb_build_object('reason', 'staleness_timeout',
                           'namespace', p_namespace_name,
                           'task_name', p_task_name,
                           'detected_at', now()));
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'tasker: could not move stale task % to error: %', p_task_uuid, SQLERRM;
    RETURN false;
END
$fn$;

-- The staleness detector: finds stale tasks once, then (unless p_dry_run) opens a DLQ entry and
-- moves each to 'error'. One row per task with what was done.
CREATE FUNCTION tasker.detect_and_transition_stale_tasks(
    p_dry_run boolean DEFAULT true,
    p_batch_size integer DEFAULT 100,
    p_default_waiting_deps_threshold integer DEFAULT 60,
    p_default_waiting_retry_threshold integer DEFAULT 30,
    p_default_steps_in_process_threshold integer DEFAULT 30,
    p_default_task_max_lifetime_hours integer DEFAULT 24
) RETURNS TABLE (
    task_uuid uuid,
    namespace_name character varying,
    task_name character varying,
    current_state character varying,
    time_in_state_minutes integer,
    staleness_threshold_minutes integer,
    action_taken character varying,
    moved_to_dlq boolean,
    transition_success boolean
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    stale   record;
    v_entry uuid;
    v_moved boolean;
BEGIN
    FOR stale IN
        SELECT * FROM tasker.get_stale_tasks_for_dlq(
            p_default_waiting_deps_threshold, p_default_waiting_retry_threshold,
            p_default_steps_in_process_threshold, p_default_task_max_lifetime_hours, p_batch_size)
    LOOP
        task_uuid := stale.task_uuid;
        namespace_name := stale.namespace_name;
        task_name := stale.task_name;
        current_state := stale.current_state;
        time_in_state_minutes := stale.time_in_state_minutes::integer;
        staleness_threshold_minutes := stale.threshold_minutes;

        IF p_dry_run THEN
            action_taken := 'would_transition_to_dlq_and_error';
            moved_to_dlq := false;
            transition_success := false;
        ELSE
            v_entry := tasker.create_dlq_entry(
                stale.task_uuid, stale.namespace_name, stale.task_name, stale.current_state,
                stale.time_in_state_minutes::integer, stale.threshold_minutes, 'staleness_timeout');
            v_moved := COALESCE(tasker.transition_stale_task_to_error(
                stale.task_uuid, stale.current_state, stale.namespace_name, stale.task_name), false);
            moved_to_dlq := v_entry IS NOT NULL;
            transition_success := v_moved;
            action_taken := CASE
                WHEN v_entry IS NOT NULL AND v_moved THEN 'transitioned_to_dlq_and_error'
                WHEN v_entry IS NOT NULL THEN 'moved_to_dlq_only'
                WHEN v_moved THEN 'transitioned_to_error_only'
                ELSE 'transition_failed'
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- =============================================================================================
-- Triggers
-- =============================================================================================

-- Audit row for every worker result transition (to enqueued_for_orchestration or
-- enqueued_as_error_for_orchestration).
--
-- DEVIATION from tasker-core (deliberate, documented): the worker stores the StepEvent in
-- metadata.event as a JSON *string* of the form {"type": ..., "data": <StepExecutionResult>}.
-- tasker-core read `success` and `metadata.execution_time_ms` from the event's top level, where
-- they never are, so its audit always fell back to the state and lost execution_time_ms. Here
-- they are read from event.data first, then from the top level (older shape); the event may be a
-- JSON string or an object. If success is still unknown it is derived from the state.
CREATE FUNCTION tasker.create_step_result_audit() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    uuid_re   constant text := '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$';
    v_event   jsonb;
    v_result  jsonb;
    v_success boolean;
    v_millis  bigint;
    v_worker  text := NEW.metadata ->> 'worker_uuid';
    v_corr    text := NEW.metadata ->> 'correlation_id';
BEGIN
    IF NEW.to_state NOT IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration') THEN
        RETURN NULL;
    END IF;

    BEGIN
        v_event := CASE jsonb_typeof(NEW.metadata -> 'event')
                       WHEN 'string' THEN (NEW.metadata ->> 'event')::jsonb
                       WHEN 'object' THEN NEW.metadata -> 'event'
                   END;
        v_result := CASE WHEN jsonb_typeof(v_event -> 'data') = 'object' THEN v_event -> 'data'
                         ELSE v_event END;
        IF jsonb_typeof(v_result -> 'success') = 'boolean' THEN
            v_success := (v_result ->> 'success')::boolean;
        END IF;
        IF jsonb_typeof(v_result -> 'metadata' -> 'execution_time_ms') = 'number' THEN
            v_millis := round((v_result -> 'metadata' ->> 'execution_time_ms')::numeric)::bigint;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        v_success := NULL;
        v_millis := NULL;
    END;

    INSERT INTO tasker.workflow_step_result_audit
        (workflow_step_uuid, workflow_step_transition_uuid, task_uuid,
         worker_uuid, correlation_id, success, execution_time_ms)
    SELECT NEW.workflow_step_uuid, NEW.workflow_step_transition_uuid, ws.task_uuid,
           CASE WHEN v_worker ~ uuid_re THEN v_worker::uuid END,
           CASE WHEN v_corr ~ uuid_re THEN v_corr::uuid END,
           COALESCE(v_success, NEW.to_state = 'enqueued_for_orchestration'),
           v_millis
    FROM tasker.workflow_steps ws
    WHERE ws.workflow_step_uuid = NEW.workflow_step_uuid;

    RETURN NULL;
END
$fn$;

CREATE TRIGGER trg_step_result_audit
    AFTER INSERT ON tasker.workflow_step_transitions
    FOR EACH ROW EXECUTE FUNCTION tasker.create_step_result_audit();

CREATE FUNCTION tasker.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    NEW.updated_at := CURRENT_TIMESTAMP;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER update_dlq_updated_at
    BEFORE UPDATE ON tasker.tasks_dlq
    FOR EACH ROW EXECUTE FUNCTION tasker.update_updated_at_column();

-- =============================================================================================
-- Health
-- =============================================================================================

-- Tasks per current task state and steps per current step state. Rows without any transition
-- count only in the totals.
CREATE FUNCTION tasker.get_system_health_counts()
RETURNS TABLE (
    pending_tasks bigint,
    initializing_tasks bigint,
    enqueuing_steps_tasks bigint,
    steps_in_process_tasks bigint,
    evaluating_results_tasks bigint,
    waiting_for_dependencies_tasks bigint,
    waiting_for_retry_tasks bigint,
    blocked_by_failures_tasks bigint,
    complete_tasks bigint,
    error_tasks bigint,
    cancelled_tasks bigint,
    resolved_manually_tasks bigint,
    total_tasks bigint,
    pending_steps bigint,
    enqueued_steps bigint,
    in_progress_steps bigint,
    enqueued_for_orchestration_steps bigint,
    enqueued_as_error_for_orchestration_steps bigint,
    waiting_for_retry_steps bigint,
    complete_steps bigint,
    error_steps bigint,
    cancelled_steps bigint,
    resolved_manually_steps bigint,
    total_steps bigint
)
LANGUAGE sql STABLE
AS $fn$
    SELECT tc.*, sc.*
    FROM (
        SELECT
            count(*) FILTER (WHERE s = 'pending'),
            count(*) FILTER (WHERE s = 'initializing'),
            count(*) FILTER (WHERE s = 'enqueuing_steps'),
            count(*) FILTER (WHERE s = 'steps_in_process'),
            count(*) FILTER (WHERE s = 'evaluating_results'),
            count(*) FILTER (WHERE s = 'waiting_for_dependencies'),
            count(*) FILTER (WHERE s = 'waiting_for_retry'),
            count(*) FILTER (WHERE s = 'blocked_by_failures'),
            count(*) FILTER (WHERE s = 'complete'),
            count(*) FILTER (WHERE s = 'error'),
            count(*) FILTER (WHERE s = 'cancelled'),
            count(*) FILTER (WHERE s = 'resolved_manually'),
            count(*)
        FROM (SELECT tt.to_state AS s
              FROM tasker.tasks t
              LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent) x
    ) tc
    CROSS JOIN (
        SELECT
            count(*) FILTER (WHERE s = 'pending'),
            count(*) FILTER (WHERE s = 'enqueued'),
            count(*) FILTER (WHERE s = 'in_progress'),
            count(*) FILTER (WHERE s = 'enqueued_for_orchestration'),
            count(*) FILTER (WHERE s = 'enqueued_as_error_for_orchestration'),
            count(*) FILTER (WHERE s = 'waiting_for_retry'),
            count(*) FILTER (WHERE s = 'complete'),
            count(*) FILTER (WHERE s = 'error'),
            count(*) FILTER (WHERE s = 'cancelled'),
            count(*) FILTER (WHERE s = 'resolved_manually'),
            count(*)
        FROM (SELECT wst.to_state AS s
              FROM tasker.workflow_steps ws
              LEFT JOIN tasker.workflow_step_transitions wst
                     ON wst.workflow_step_uuid = ws.workflow_step_uuid AND wst.most_recent) y
    ) sc
$fn$;
