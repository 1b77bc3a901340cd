-- Analytics, task summaries and the PGMQ headers event trigger: the functions tasker-core's
-- orchestrator and API call that 0001-0003 did not provide, with tasker-core's argument types and
-- result columns (tasker-core calls them positionally and maps result columns by name).
--
-- Durations are measured from a row's created_at to the created_at of the step transition that
-- finished it (the step's current transition to complete or error). Timestamps of tasker rows
-- are UTC wall-clock values (timestamp without time zone); comparisons with timestamptz
-- arguments assume the session TimeZone is UTC, as every tasker connection sets it.

-- =============================================================================================
-- get_analytics_metrics
-- =============================================================================================

-- System-wide metrics for the tasks created after since_timestamp (default: the last hour).
--   active_tasks_count       tasks with a step whose current state is not complete, error,
--                            skipped or resolved_manually (any age)
--   total_namespaces_count   namespaces with at least one task
--   unique_task_types_count  distinct template names with at least one task
--   system_health_score      among tasks created in the last hour, those with a complete step
--                            over those with a complete or an error step (3 decimals; 1.0 if none)
--   task_throughput          tasks in the period; completion_count / error_count: those with a
--                            step currently complete / in error
--   completion_rate, error_rate  those counts as a percentage of task_throughput (2 decimals)
--   avg_task_duration        mean over complete steps of the period's tasks of (step finished -
--                            task created), seconds, 3 decimals; avg_step_duration: (step
--                            finished - step created)
--   step_throughput          steps of the period's tasks
CREATE FUNCTION tasker.get_analytics_metrics(
    since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone
) RETURNS TABLE (
    active_tasks_count bigint,
    total_namespaces_count bigint,
    unique_task_types_count bigint,
    system_health_score numeric,
    task_throughput bigint,
    completion_count bigint,
    error_count bigint,
    completion_rate numeric,
    error_rate numeric,
    avg_task_duration numeric,
    avg_step_duration numeric,
    step_throughput bigint,
    analysis_period_start timestamp with time zone,
    calculated_at timestamp with time zone
)
LANGUAGE sql STABLE
AS $fn$
    WITH bounds AS (
        SELECT COALESCE(since_timestamp, now() - interval '1 hour') AS since
    ),
    step_now AS (
        -- every step with its current state and when it entered it
        SELECT ws.workflow_step_uuid, ws.task_uuid, ws.created_at AS step_created,
               cur.to_state, cur.created_at AS entered_at
        FROM tasker.workflow_steps ws
        JOIN tasker.workflow_step_transitions cur
          ON cur.workflow_step_uuid = ws.workflow_step_uuid AND cur.most_recent
    ),
    active AS (
        SELECT count(DISTINCT s.task_uuid) AS n
        FROM step_now s
        WHERE s.to_state NOT IN ('complete', 'error', 'skipped', 'resolved_manually')
    ),
    catalog AS (
        SELECT count(DISTINCT tns.name) AS namespaces, count(DISTINCT nt.name) AS task_types
        FROM tasker.tasks t
        JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    ),
    last_hour AS (
        SELECT count(DISTINCT s.task_uuid) FILTER (WHERE s.to_state = 'complete') AS ok,
               count(DISTINCT s.task_uuid) FILTER (WHERE s.to_state = 'error')    AS failed
        FROM tasker.tasks t
        JOIN step_now s ON s.task_uuid = t.task_uuid
        WHERE t.created_at > now() - interval '1 hour'
    ),
    period AS (
        SELECT count(DISTINCT t.task_uuid) AS tasks,
               count(DISTINCT t.task_uuid) FILTER (WHERE s.to_state = 'complete') AS completed,
               count(DISTINCT t.task_uuid) FILTER (WHERE s.to_state = 'error')    AS failed,
               count(DISTINCT s.workflow_step_uuid) AS steps,
               avg(extract(epoch FROM s.entered_at - t.created_at)) FILTER (WHERE s.to_state = 'complete')
                   AS task_secs,
               avg(extract(epoch FROM s.entered_at - s.step_created)) FILTER (WHERE s.to_state = 'complete')
                   AS step_secs
        FROM tasker.tasks t
        CROSS JOIN bounds b
        LEFT JOIN step_now s ON s.task_uuid = t.task_uuid
        WHERE t.created_at > b.since
    )
    SELECT a.n,
           c.namespaces,
           c.task_types,
           CASE WHEN h.ok + h.failed > 0 THEN round(h.ok::numeric / (h.ok + h.failed), 3) ELSE 1.0 END,
           p.tasks,
           p.completed,
           p.failed,
           CASE WHEN p.tasks > 0 THEN round(p.completed::numeric * 100 / p.tasks, 2) ELSE 0.0 END,
           CASE WHEN p.tasks > 0 THEN round(p.failed::numeric * 100 / p.tasks, 2) ELSE 0.0 END,
           round(COALESCE(p.task_secs, 0), 3),
           round(COALESCE(p.step_secs, 0), 3),
           p.steps,
           b.since,
           now()
    FROM active a, catalog c, last_hour h, period p, bounds b
$fn$;

-- =============================================================================================
-- Slowest steps and tasks
-- =============================================================================================

-- Finished steps (current state complete or error) created after since_timestamp (default: the
-- last 24 hours), with their template identity and duration in seconds; filters are exact
-- matches on namespace, template name and version. Zero or negative durations are left out.
CREATE FUNCTION tasker._finished_steps(
    since_timestamp timestamp with time zone,
    namespace_filter text,
    task_name_filter text,
    version_filter text
) RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid uuid,
    namespace_name character varying,
    task_name character varying,
    version character varying,
    step_name character varying,
    final_state character varying,
    duration_seconds numeric,
    attempts integer,
    retryable boolean,
    created_at timestamp without time zone,
    finished_at timestamp without time zone
)
LANGUAGE sql STABLE
AS $fn$
    SELECT ws.workflow_step_uuid, ws.task_uuid,
           tns.name::varchar, nt.name::varchar, nt.version::varchar, ns.name::varchar,
           cur.to_state::varchar,
           extract(epoch FROM cur.created_at - ws.created_at),
           ws.attempts, ws.retryable, ws.created_at, cur.created_at
    FROM tasker.workflow_steps ws
    JOIN tasker.workflow_step_transitions cur
      ON cur.workflow_step_uuid = ws.workflow_step_uuid AND cur.most_recent
     AND cur.to_state IN ('complete', 'error')
    JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
    JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
    JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    WHERE ws.created_at > COALESCE(since_timestamp, now() - interval '24 hours')
      AND (namespace_filter IS NULL OR tns.name = namespace_filter)
      AND (task_name_filter IS NULL OR nt.name = task_name_filter)
      AND (version_filter IS NULL OR nt.version = version_filter)
      AND cur.created_at > ws.created_at
$fn$;

-- Tasks created after since_timestamp (default: the last 24 hours) that have at least one
-- finished step, with their duration (task created -> last step finished, > 0) and step counts.
CREATE FUNCTION tasker._finished_tasks(
    since_timestamp timestamp with time zone,
    namespace_filter text,
    task_name_filter text,
    version_filter text
) RETURNS TABLE (
    task_uuid uuid,
    namespace_name character varying,
    task_name character varying,
    version character varying,
    duration_seconds numeric,
    step_count bigint,
    completed_steps bigint,
    error_steps bigint,
    created_at timestamp without time zone,
    finished_at timestamp without time zone,
    initiator character varying,
    source_system character varying
)
LANGUAGE sql STABLE
AS $fn$
    SELECT x.task_uuid, x.namespace_name, x.task_name, x.version,
           extract(epoch FROM x.finished_at - x.created_at),
           x.step_count, x.completed_steps, x.error_steps,
           x.created_at, x.finished_at, x.initiator, x.source_system
    FROM (
        SELECT t.task_uuid,
               tns.name::varchar AS namespace_name, nt.name::varchar AS task_name,
               nt.version::varchar AS version,
               t.created_at,
               max(cur.created_at) FILTER (WHERE cur.to_state IN ('complete', 'error')) AS finished_at,
               count(ws.workflow_step_uuid) AS step_count,
               count(*) FILTER (WHERE cur.to_state = 'complete') AS completed_steps,
               count(*) FILTER (WHERE cur.to_state = 'error') AS error_steps,
               t.initiator::varchar AS initiator, t.source_system::varchar AS source_system
        FROM tasker.tasks t
        JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
        JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
        LEFT JOIN tasker.workflow_steps ws ON ws.task_uuid = t.task_uuid
        LEFT JOIN tasker.workflow_step_transitions cur
               ON cur.workflow_step_uuid = ws.workflow_step_uuid AND cur.most_recent
        WHERE t.created_at > COALESCE(since_timestamp, now() - interval '24 hours')
          AND (namespace_filter IS NULL OR tns.name = namespace_filter)
          AND (task_name_filter IS NULL OR nt.name = task_name_filter)
          AND (version_filter IS NULL OR nt.version = version_filter)
        GROUP BY t.task_uuid, tns.name, nt.name, nt.version
    ) x
    WHERE x.finished_at > x.created_at
$fn$;

-- The limit_count slowest completed steps (current state complete), slowest first.
CREATE FUNCTION tasker.get_slowest_steps(
    since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
    limit_count integer DEFAULT 10,
    namespace_filter text DEFAULT NULL::text,
    task_name_filter text DEFAULT NULL::text,
    version_filter text DEFAULT NULL::text
) RETURNS TABLE (
    workflow_step_uuid uuid,
    task_uuid uuid,
    step_name character varying,
    task_name character varying,
    namespace_name character varying,
    version character varying,
    duration_seconds numeric,
    attempts integer,
    created_at timestamp without time zone,
    completed_at timestamp without time zone,
    retryable boolean,
    step_status character varying
)
LANGUAGE sql STABLE
AS $fn$
    SELECT f.workflow_step_uuid, f.task_uuid, f.step_name, f.task_name, f.namespace_name, f.version,
           round(f.duration_seconds, 3), f.attempts, f.created_at, f.finished_at, f.retryable, f.final_state
    FROM tasker._finished_steps(since_timestamp, namespace_filter, task_name_filter, version_filter) f
    WHERE f.final_state = 'complete'
    ORDER BY f.duration_seconds DESC
    LIMIT limit_count
$fn$;

-- The limit_count slowest tasks with a finished step, slowest first; completed_at is when their
-- last step finished.
CREATE FUNCTION tasker.get_slowest_tasks(
    since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
    limit_count integer DEFAULT 10,
    namespace_filter text DEFAULT NULL::text,
    task_name_filter text DEFAULT NULL::text,
    version_filter text DEFAULT NULL::text
) RETURNS TABLE (
    task_uuid uuid,
    task_name character varying,
    namespace_name character varying,
    version character varying,
    duration_seconds numeric,
    step_count bigint,
    completed_steps bigint,
    error_steps bigint,
    created_at timestamp without time zone,
    completed_at timestamp without time zone,
    initiator character varying,
    source_system character varying
)
LANGUAGE sql STABLE
AS $fn$
    SELECT f.task_uuid, f.task_name, f.namespace_name, f.version, round(f.duration_seconds, 3),
           f.step_count, f.completed_steps, f.error_steps, f.created_at, f.finished_at,
           f.initiator, f.source_system
    FROM tasker._finished_tasks(since_timestamp, namespace_filter, task_name_filter, version_filter) f
    ORDER BY f.duration_seconds DESC
    LIMIT limit_count
$fn$;

-- Finished steps grouped by (namespace, template, version, step name) - step names are unique
-- only within a template - for groups of at least min_executions, slowest average first.
-- error_rate is the share of the group's executions that ended in error (4 decimals).
CREATE FUNCTION tasker.get_slowest_steps_aggregated(
    since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
    limit_count integer DEFAULT 10,
    min_executions integer DEFAULT 5,
    namespace_filter text DEFAULT NULL::text,
    task_name_filter text DEFAULT NULL::text,
    version_filter text DEFAULT NULL::text
) RETURNS TABLE (
    namespace_name character varying,
    task_name character varying,
    version character varying,
    step_name character varying,
    average_duration_seconds numeric,
    max_duration_seconds numeric,
    execution_count bigint,
    error_count bigint,
    error_rate numeric,
    last_executed_at timestamp without time zone
)
LANGUAGE sql STABLE
AS $fn$
    SELECT f.namespace_name, f.task_name, f.version, f.step_name,
           round(avg(f.duration_seconds), 3),
           round(max(f.duration_seconds), 3),
           count(*),
           count(*) FILTER (WHERE f.final_state = 'error'),
           round(count(*) FILTER (WHERE f.final_state = 'error')::numeric / count(*), 4),
           max(f.finished_at)
    FROM tasker._finished_steps(since_timestamp, namespace_filter, task_name_filter, version_filter) f
    GROUP BY f.namespace_name, f.task_name, f.version, f.step_name
    HAVING count(*) >= min_executions
    ORDER BY avg(f.duration_seconds) DESC
    LIMIT limit_count
$fn$;

-- Tasks with a finished step grouped by template (namespace, name, version) for groups of at
-- least min_executions, slowest average first. error_rate is total_error_steps per task
-- (tasker-core's definition; it can exceed 1).
CREATE FUNCTION tasker.get_slowest_tasks_aggregated(
    since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
    limit_count integer DEFAULT 10,
    min_executions integer DEFAULT 5,
    namespace_filter text DEFAULT NULL::text,
    task_name_filter text DEFAULT NULL::text,
    version_filter text DEFAULT NULL::text
) RETURNS TABLE (
    namespace_name character varying,
    task_name character varying,
    version character varying,
    average_duration_seconds numeric,
    max_duration_seconds numeric,
    execution_count bigint,
    average_step_count numeric,
    total_error_steps bigint,
    error_rate numeric,
    last_executed_at timestamp without time zone
)
LANGUAGE sql STABLE
AS $fn$
    SELECT f.namespace_name, f.task_name, f.version,
           round(avg(f.duration_seconds), 3),
           round(max(f.duration_seconds), 3),
           count(*),
           round(avg(f.step_count), 2),
           sum(f.error_steps)::bigint,
           round(sum(f.error_steps)::numeric / count(*), 4),
           max(f.finished_at)
    FROM tasker._finished_tasks(since_timestamp, namespace_filter, task_name_filter, version_filter) f
    GROUP BY f.namespace_name, f.task_name, f.version
    HAVING count(*) >= min_executions
    ORDER BY avg(f.duration_seconds) DESC
    LIMIT limit_count
$fn$;

-- =============================================================================================
-- Task summaries
-- =============================================================================================

-- One row per existing task of input_task_uuids (in input order): template identity, status and
-- timestamps, the template configuration, and three JSON documents:
--   step_summaries    array, oldest step first, of {step_uuid, name, current_state, created_at,
--                     completed_at (processed_at), last_attempted_at, attempts, max_attempts,
--                     dependencies_satisfied, retry_eligible, error_type, error_retryable,
--                     error_status_code}; the error fields come from results.error (error_type,
--                     or type as tasker-core reads it) and are null when absent or mistyped
--   execution_context {total_steps, pending_steps, in_progress_steps, completed_steps,
--                     failed_steps, completion_percentage, health_status, execution_status,
--                     recommended_action} from get_task_execution_contexts_batch
--   dlq_status        {in_dlq, dlq_reason, resolution_status} of the task's pending DLQ entry,
--                     or in_dlq false and nulls
CREATE FUNCTION tasker.get_task_summaries(input_task_uuids uuid[])
RETURNS TABLE (
    task_uuid uuid,
    named_task_uuid uuid,
    task_name text,
    task_version text,
    namespace_name text,
    task_status text,
    created_at timestamp with time zone,
    updated_at timestamp with time zone,
    completed_at timestamp with time zone,
    initiator text,
    source_system text,
    reason text,
    correlation_id uuid,
    template_configuration jsonb,
    step_summaries jsonb,
    execution_context jsonb,
    dlq_status jsonb
)
LANGUAGE sql STABLE
AS $fn$
    SELECT t.task_uuid, t.named_task_uuid, nt.name::text, nt.version::text, tns.name::text,
           ec.status,
           t.created_at::timestamptz, t.updated_at::timestamptz, t.completed_at::timestamptz,
           t.initiator::text, t.source_system::text, t.reason::text, t.correlation_id,
           nt.configuration,
           COALESCE(steps.summaries, '[]'::jsonb),
           jsonb_build_object(
               'total_steps', ec.total_steps,
               'pending_steps', ec.pending_steps,
               'in_progress_steps', ec.in_progress_steps,
               'completed_steps', ec.completed_steps,
               'failed_steps', ec.failed_steps,
               'completion_percentage', ec.completion_percentage,
               'health_status', ec.health_status,
               'execution_status', ec.execution_status,
               'recommended_action', ec.recommended_action),
           COALESCE(dlq.status, jsonb_build_object('in_dlq', false, 'dlq_reason', NULL, 'resolution_status', NULL))
    FROM unnest(input_task_uuids) WITH ORDINALITY AS input(id, pos)
    JOIN tasker.tasks t ON t.task_uuid = input.id
    JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid
    JOIN tasker.get_task_execution_contexts_batch(input_task_uuids) ec ON ec.task_uuid = t.task_uuid
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_object(
                   'step_uuid', r.workflow_step_uuid,
                   'name', r.name,
                   'current_state', r.current_state,
                   'created_at', ws.created_at,
                   'completed_at', ws.processed_at,
                   'last_attempted_at', ws.last_attempted_at,
                   'attempts', r.attempts,
                   'max_attempts', r.max_attempts,
                   'dependencies_satisfied', r.dependencies_satisfied,
                   'retry_eligible', r.retry_eligible,
                   'error_type', COALESCE(err.e ->> 'error_type', err.e ->> 'type'),
                   'error_retryable', CASE WHEN jsonb_typeof(err.e -> 'retryable') = 'boolean'
                                           THEN (err.e ->> 'retryable')::boolean END,
                   'error_status_code', CASE WHEN jsonb_typeof(err.e -> 'status_code') = 'number'
                                             THEN (err.e ->> 'status_code')::numeric::integer END)
                   ORDER BY ws.created_at, ws.workflow_step_uuid) AS summaries
        FROM tasker.get_step_readiness_status(t.task_uuid, NULL) r
        JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = r.workflow_step_uuid
        CROSS JOIN LATERAL (
            SELECT CASE WHEN jsonb_typeof(ws.results -> 'error') = 'object' THEN ws.results -> 'error' END AS e
        ) err
    ) steps ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_build_object('in_dlq', true,
                                  'dlq_reason', d.dlq_reason::text,
                                  'resolution_status', d.resolution_status::text) AS status
        FROM tasker.tasks_dlq d
        WHERE d.task_uuid = t.task_uuid AND d.resolution_status = 'pending'
        ORDER BY d.created_at DESC
        LIMIT 1
    ) dlq ON true
    ORDER BY input.pos
$fn$;

-- get_task_summaries for one task.
CREATE FUNCTION tasker.get_task_summary(input_task_uuid uuid)
RETURNS TABLE (
    task_uuid uuid,
    named_task_uuid uuid,
    task_name text,
    task_version text,
    namespace_name text,
    task_status text,
    created_at timestamp with time zone,
    updated_at timestamp with time zone,
    completed_at timestamp with time zone,
    initiator text,
    source_system text,
    reason text,
    correlation_id uuid,
    template_configuration jsonb,
    step_summaries jsonb,
    execution_context jsonb,
    dlq_status jsonb
)
LANGUAGE sql STABLE
AS $fn$
    SELECT * FROM tasker.get_task_summaries(ARRAY[input_task_uuid])
$fn$;

-- =============================================================================================
-- PGMQ headers compatibility
-- =============================================================================================

-- Event trigger function: gives every table created in schema pgmq whose name starts with q_
-- (a queue) the headers jsonb column PGMQ >= 1.5 reads, when the code that created it (an older
-- PGMQ, pgmq-rs) left it out. A failure is reported as a WARNING so queue creation never fails
-- because of it.
CREATE FUNCTION tasker.pgmq_auto_add_headers_trigger() RETURNS event_trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN
        SELECT c.objid
        FROM pg_event_trigger_ddl_commands() c
        WHERE c.command_tag = 'CREATE TABLE' AND c.object_type = 'table' AND c.schema_name = 'pgmq'
    LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class k
                                  WHERE k.oid = cmd.objid AND k.relname LIKE 'q\_%');
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = cmd.objid AND a.attname = 'headers' AND NOT a.attisdropped);
        BEGIN
            EXECUTE format('ALTER TABLE %s ADD COLUMN headers jsonb', cmd.objid::regclass);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'tasker: could not add headers to %: %', cmd.objid::regclass, SQLERRM;
        END;
    END LOOP;
END
$fn$;

-- Event triggers need a superuser. Without one the function above is still installed and
-- tasker.pgmq_ensure_headers_column can be called explicitly.
DO $do$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'pgmq_headers_compatibility_trigger') THEN
            CREATE EVENT TRIGGER pgmq_headers_compatibility_trigger
                ON ddl_command_end
                WHEN TAG IN ('CREATE TABLE')
                EXECUTE FUNCTION tasker.pgmq_auto_add_headers_trigger();
        END IF;
    ELSE
        RAISE NOTICE 'tasker: not a superuser; pgmq_headers_compatibility_trigger not installed';
    END IF;
END
$do$;
