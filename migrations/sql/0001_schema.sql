-- tasker-go migration 0001: schema `tasker`, UUIDv7 generator, enums, tables, constraints,
-- indexes and the DAG view.
--
-- Layout (names, types, nullability, defaults, constraint and index names, column order) follows
-- tasker-core's schema so that tasker-core and tasker-go can share one database. Every object is
-- schema-qualified; nothing here depends on the session search_path.
-- Timestamps are naive (`timestamp without time zone`) holding UTC; created_at/updated_at have no
-- default except on tasks_dlq and workflow_step_result_audit, exactly like tasker-core.

CREATE SCHEMA IF NOT EXISTS tasker;

-- ---------------------------------------------------------------------------------------------
-- UUID v7
-- ---------------------------------------------------------------------------------------------
-- VOLATILE on purpose: an IMMUTABLE or STABLE generator used as a column default is folded to one
-- value for a whole multi-row INSERT ... SELECT, which produces duplicate keys.
-- PostgreSQL 18 ships uuidv7(); older servers get an SQL implementation (RFC 9562 layout):
--   bytes 0-5  unix time in milliseconds, big-endian
--   byte  6    version 7 in the high nibble, then the top 4 bits of a 12-bit sub-millisecond
--              fraction (RFC 9562 "method 3"), so ids from one session sort by creation time
--   byte  7    low 8 bits of that fraction
--   byte  8    variant 0b10 in the top two bits, 6 random bits
--   bytes 9-15 random
DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc
               WHERE proname = 'uuidv7' AND pronamespace = 'pg_catalog'::regnamespace
                 AND pronargs = 0) THEN
        EXECUTE $fn$
            CREATE FUNCTION tasker.uuid_generate_v7() RETURNS uuid
            LANGUAGE sql VOLATILE PARALLEL SAFE
            AS 'SELECT pg_catalog.uuidv7()'
        $fn$;
    ELSE
        EXECUTE $fn$
            CREATE FUNCTION tasker.uuid_generate_v7() RETURNS uuid
            LANGUAGE plpgsql VOLATILE PARALLEL SAFE
            AS $body$
            DECLARE
                micros bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
                millis bigint := micros / 1000;
                frac   int    := ((micros % 1000) * 4096 / 1000)::int;  -- 0 .. 4095
                raw    bytea  := uuid_send(gen_random_uuid());           -- 16 bytes, 122 random bits
            BEGIN
                raw := overlay(raw PLACING substring(int8send(millis) FROM 3 FOR 6) FROM 1 FOR 6);
                raw := set_byte(raw, 6, 112 | (frac >> 8));              -- 0x70 | high 4 bits
                raw := set_byte(raw, 7, frac & 255);
                raw := set_byte(raw, 8, 128 | (get_byte(raw, 8) & 63));  -- variant 10xxxxxx
                RETURN encode(raw, 'hex')::uuid;
            END
            $body$
        $fn$;
    END IF;
END
$do$;

COMMENT ON FUNCTION tasker.uuid_generate_v7() IS
    'Time-ordered UUID version 7 (VOLATILE). Native uuidv7() on PostgreSQL 18+, SQL otherwise.';

-- ---------------------------------------------------------------------------------------------
-- Enums
-- ---------------------------------------------------------------------------------------------
CREATE TYPE tasker.dlq_reason AS ENUM (
    'staleness_timeout', 'max_retries_exceeded', 'dependency_cycle_detected',
    'worker_unavailable', 'manual_dlq'
);

CREATE TYPE tasker.dlq_resolution_status AS ENUM (
    'pending', 'manually_resolved', 'permanently_failed', 'cancelled'
);

CREATE TYPE tasker.identity_strategy AS ENUM ('strict', 'caller_provided', 'always_unique');

-- ---------------------------------------------------------------------------------------------
-- Templates: namespaces, named tasks, named steps
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tasker.task_namespaces (
    task_namespace_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    name                varchar(64)                    NOT NULL,
    description         varchar(255),
    created_at          timestamp(6) without time zone NOT NULL,
    updated_at          timestamp(6) without time zone NOT NULL,
    CONSTRAINT task_namespaces_pkey PRIMARY KEY (task_namespace_uuid),
    -- tasker-core carries two identical unique constraints on name; both are kept for parity.
    CONSTRAINT task_namespaces_name_key UNIQUE (name),
    CONSTRAINT task_namespaces_name_unique UNIQUE (name)
);

CREATE TABLE tasker.named_tasks (
    named_task_uuid     uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_namespace_uuid uuid                           NOT NULL,
    name                varchar(64)                    NOT NULL,
    description         varchar(255),
    version             varchar(16)                    NOT NULL DEFAULT '0.1.0',
    configuration       jsonb                                   DEFAULT '{}'::jsonb,
    created_at          timestamp(6) without time zone NOT NULL,
    updated_at          timestamp(6) without time zone NOT NULL,
    identity_strategy   tasker.identity_strategy       NOT NULL DEFAULT 'strict',
    CONSTRAINT named_tasks_pkey PRIMARY KEY (named_task_uuid),
    CONSTRAINT named_tasks_namespace_name_version_unique UNIQUE (task_namespace_uuid, name, version),
    CONSTRAINT named_tasks_task_namespace_uuid_fkey FOREIGN KEY (task_namespace_uuid)
        REFERENCES tasker.task_namespaces (task_namespace_uuid)
);

CREATE TABLE tasker.named_steps (
    named_step_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    name            varchar(128)                   NOT NULL,
    description     varchar(255),
    created_at      timestamp(6) without time zone NOT NULL,
    updated_at      timestamp(6) without time zone NOT NULL,
    CONSTRAINT named_steps_pkey PRIMARY KEY (named_step_uuid),
    -- Step names are global across namespaces and templates.
    CONSTRAINT named_steps_name_unique UNIQUE (name)
);

CREATE TABLE tasker.named_tasks_named_steps (
    ntns_uuid            uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    named_task_uuid      uuid                           NOT NULL,
    named_step_uuid      uuid                           NOT NULL,
    default_retryable    boolean                        NOT NULL DEFAULT true,
    default_max_attempts integer                        NOT NULL DEFAULT 3,
    created_at           timestamp(6) without time zone NOT NULL,
    updated_at           timestamp(6) without time zone NOT NULL,
    CONSTRAINT named_tasks_named_steps_pkey PRIMARY KEY (ntns_uuid),
    CONSTRAINT named_tasks_named_steps_unique UNIQUE (named_task_uuid, named_step_uuid),
    CONSTRAINT named_tasks_named_steps_named_task_uuid_fkey FOREIGN KEY (named_task_uuid)
        REFERENCES tasker.named_tasks (named_task_uuid),
    CONSTRAINT named_tasks_named_steps_named_step_uuid_fkey FOREIGN KEY (named_step_uuid)
        REFERENCES tasker.named_steps (named_step_uuid)
);

-- ---------------------------------------------------------------------------------------------
-- Tasks and task transitions
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tasker.tasks (
    task_uuid             uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    named_task_uuid       uuid                           NOT NULL,
    complete              boolean                        NOT NULL DEFAULT false,
    requested_at          timestamp without time zone    NOT NULL,
    completed_at          timestamp without time zone,
    initiator             varchar(128),
    source_system         varchar(128),
    reason                varchar(128),
    tags                  jsonb,
    context               jsonb,
    identity_hash         varchar(128)                   NOT NULL,
    created_at            timestamp(6) without time zone NOT NULL,
    updated_at            timestamp(6) without time zone NOT NULL,
    priority              integer                        NOT NULL DEFAULT 0,
    correlation_id        uuid                           NOT NULL,  -- supplied by the application
    parent_correlation_id uuid,
    CONSTRAINT tasks_pkey PRIMARY KEY (task_uuid),
    CONSTRAINT tasks_named_task_uuid_fkey FOREIGN KEY (named_task_uuid)
        REFERENCES tasker.named_tasks (named_task_uuid)
);

CREATE TABLE tasker.task_transitions (
    task_transition_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid            uuid                           NOT NULL,
    to_state             varchar                        NOT NULL,
    from_state           varchar,
    metadata             jsonb                                   DEFAULT '{}'::jsonb,
    sort_key             integer                        NOT NULL,
    most_recent          boolean                        NOT NULL DEFAULT false,
    created_at           timestamp(6) without time zone NOT NULL,
    updated_at           timestamp(6) without time zone NOT NULL,
    processor_uuid       uuid,
    transition_metadata  jsonb                                   DEFAULT '{}'::jsonb,
    CONSTRAINT task_transitions_pkey PRIMARY KEY (task_transition_uuid),
    CONSTRAINT task_transitions_task_uuid_fkey FOREIGN KEY (task_uuid)
        REFERENCES tasker.tasks (task_uuid),
    CONSTRAINT chk_task_transitions_to_state CHECK (to_state IN (
        'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT chk_task_transitions_from_state CHECK (from_state IS NULL OR from_state IN (
        'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
        'complete', 'error', 'cancelled', 'resolved_manually'))
);

-- ---------------------------------------------------------------------------------------------
-- Workflow steps, edges, step transitions
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tasker.workflow_steps (
    workflow_step_uuid      uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid               uuid                           NOT NULL,
    named_step_uuid         uuid                           NOT NULL,
    retryable               boolean                        NOT NULL DEFAULT true,
    max_attempts            integer                                 DEFAULT 3,
    in_process              boolean                        NOT NULL DEFAULT false,
    processed               boolean                        NOT NULL DEFAULT false,
    processed_at            timestamp without time zone,
    attempts                integer,                       -- NULL means 0
    last_attempted_at       timestamp without time zone,
    backoff_request_seconds integer,
    inputs                  jsonb,
    results                 jsonb,
    created_at              timestamp(6) without time zone NOT NULL,
    updated_at              timestamp(6) without time zone NOT NULL,
    priority                integer                        NOT NULL DEFAULT 0,
    checkpoint              jsonb,
    CONSTRAINT workflow_steps_pkey PRIMARY KEY (workflow_step_uuid),
    CONSTRAINT uq_workflow_step_task_named_step UNIQUE (task_uuid, named_step_uuid),
    CONSTRAINT workflow_steps_task_uuid_fkey FOREIGN KEY (task_uuid)
        REFERENCES tasker.tasks (task_uuid),
    CONSTRAINT workflow_steps_named_step_uuid_fkey FOREIGN KEY (named_step_uuid)
        REFERENCES tasker.named_steps (named_step_uuid)
);

COMMENT ON COLUMN tasker.workflow_steps.checkpoint IS
    'Handler checkpoint for resumable batch steps: {cursor, items_processed, timestamp, accumulated_results, history}';

-- Edges point from the parent (from_step_uuid) to the child (to_step_uuid).
CREATE TABLE tasker.workflow_step_edges (
    workflow_step_edge_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    from_step_uuid          uuid                           NOT NULL,
    to_step_uuid            uuid                           NOT NULL,
    name                    varchar                        NOT NULL,
    created_at              timestamp(6) without time zone NOT NULL,
    updated_at              timestamp(6) without time zone NOT NULL,
    CONSTRAINT workflow_step_edges_pkey PRIMARY KEY (workflow_step_edge_uuid),
    CONSTRAINT unique_edge_per_step_pair UNIQUE (from_step_uuid, to_step_uuid, name),
    CONSTRAINT workflow_step_edges_from_step_uuid_fkey FOREIGN KEY (from_step_uuid)
        REFERENCES tasker.workflow_steps (workflow_step_uuid),
    CONSTRAINT workflow_step_edges_to_step_uuid_fkey FOREIGN KEY (to_step_uuid)
        REFERENCES tasker.workflow_steps (workflow_step_uuid)
);

CREATE TABLE tasker.workflow_step_transitions (
    workflow_step_transition_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    workflow_step_uuid            uuid                           NOT NULL,
    to_state                      varchar                        NOT NULL,
    from_state                    varchar,
    metadata                      jsonb                                   DEFAULT '{}'::jsonb,
    sort_key                      integer                        NOT NULL,
    most_recent                   boolean                        NOT NULL DEFAULT false,
    created_at                    timestamp(6) without time zone NOT NULL,
    updated_at                    timestamp(6) without time zone NOT NULL,
    CONSTRAINT workflow_step_transitions_pkey PRIMARY KEY (workflow_step_transition_uuid),
    CONSTRAINT workflow_step_transitions_workflow_step_uuid_fkey FOREIGN KEY (workflow_step_uuid)
        REFERENCES tasker.workflow_steps (workflow_step_uuid),
    CONSTRAINT chk_workflow_step_transitions_to_state CHECK (to_state IN (
        'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
        'enqueued_as_error_for_orchestration', 'waiting_for_retry',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT chk_workflow_step_transitions_from_state CHECK (from_state IS NULL OR from_state IN (
        'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
        'enqueued_as_error_for_orchestration', 'waiting_for_retry',
        'complete', 'error', 'cancelled', 'resolved_manually'))
);

-- Written only by the trigger trg_step_result_audit (migration 0002).
CREATE TABLE tasker.workflow_step_result_audit (
    workflow_step_result_audit_uuid uuid                           NOT NULL DEFAULT tasker.uuid_generate_v7(),
    workflow_step_uuid              uuid                           NOT NULL,
    workflow_step_transition_uuid   uuid                           NOT NULL,
    task_uuid                       uuid                           NOT NULL,
    recorded_at                     timestamp(6) without time zone NOT NULL DEFAULT now(),
    worker_uuid                     uuid,
    correlation_id                  uuid,
    success                         boolean                        NOT NULL,
    execution_time_ms               bigint,
    created_at                      timestamp(6) without time zone NOT NULL DEFAULT now(),
    updated_at                      timestamp(6) without time zone NOT NULL DEFAULT now(),
    CONSTRAINT workflow_step_result_audit_pkey PRIMARY KEY (workflow_step_result_audit_uuid),
    CONSTRAINT uq_audit_step_transition UNIQUE (workflow_step_uuid, workflow_step_transition_uuid),
    CONSTRAINT workflow_step_result_audit_workflow_step_uuid_fkey FOREIGN KEY (workflow_step_uuid)
        REFERENCES tasker.workflow_steps (workflow_step_uuid),
    CONSTRAINT workflow_step_result_audit_step_transition_uuid_fkey FOREIGN KEY (workflow_step_transition_uuid)
        REFERENCES tasker.workflow_step_transitions (workflow_step_transition_uuid),
    CONSTRAINT workflow_step_result_audit_task_uuid_fkey FOREIGN KEY (task_uuid)
        REFERENCES tasker.tasks (task_uuid)
);

-- ---------------------------------------------------------------------------------------------
-- Dead letter queue (an investigation log; nothing is requeued from it)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tasker.tasks_dlq (
    dlq_entry_uuid       uuid                         NOT NULL DEFAULT tasker.uuid_generate_v7(),
    task_uuid            uuid                         NOT NULL,
    original_state       varchar(50)                  NOT NULL,
    dlq_reason           tasker.dlq_reason            NOT NULL,
    dlq_timestamp        timestamp without time zone  NOT NULL DEFAULT now(),
    resolution_status    tasker.dlq_resolution_status NOT NULL DEFAULT 'pending',
    resolution_timestamp timestamp without time zone,
    resolution_notes     text,
    resolved_by          varchar(255),
    task_snapshot        jsonb                        NOT NULL,
    metadata             jsonb,
    created_at           timestamp without time zone  NOT NULL DEFAULT now(),
    updated_at           timestamp without time zone  NOT NULL DEFAULT now(),
    CONSTRAINT tasks_dlq_pkey PRIMARY KEY (dlq_entry_uuid),
    CONSTRAINT tasks_dlq_task_uuid_fkey FOREIGN KEY (task_uuid) REFERENCES tasker.tasks (task_uuid)
);

-- ---------------------------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------------------------
CREATE INDEX idx_task_namespaces_name ON tasker.task_namespaces (name);

CREATE INDEX idx_named_tasks_namespace_uuid ON tasker.named_tasks (task_namespace_uuid);
CREATE INDEX idx_named_tasks_lifecycle_config ON tasker.named_tasks
    USING gin ((configuration -> 'lifecycle')) WHERE (configuration -> 'lifecycle') IS NOT NULL;
CREATE INDEX idx_named_tasks_identity_strategy ON tasker.named_tasks (identity_strategy);

-- Task deduplication (identity strategies) relies on this index being unique.
CREATE UNIQUE INDEX idx_tasks_identity_hash ON tasker.tasks (identity_hash);
CREATE INDEX idx_tasks_complete ON tasker.tasks (complete);
CREATE INDEX idx_tasks_completed_at ON tasker.tasks (completed_at);
CREATE INDEX idx_tasks_named_task_uuid ON tasker.tasks (named_task_uuid);
CREATE INDEX idx_tasks_priority ON tasker.tasks (priority);
CREATE INDEX idx_tasks_requested_at ON tasker.tasks (requested_at);
CREATE INDEX idx_tasks_source_system ON tasker.tasks (source_system);
CREATE INDEX idx_tasks_correlation_id ON tasker.tasks (correlation_id);
CREATE INDEX idx_tasks_correlation_hierarchy ON tasker.tasks (parent_correlation_id, correlation_id)
    WHERE parent_correlation_id IS NOT NULL;
CREATE INDEX idx_tasks_parent_correlation_id ON tasker.tasks (parent_correlation_id)
    WHERE parent_correlation_id IS NOT NULL;
CREATE INDEX idx_tasks_tags_gin ON tasker.tasks USING gin (tags);
CREATE INDEX idx_tasks_tags_gin_path ON tasker.tasks USING gin (tags jsonb_path_ops);
CREATE INDEX idx_tasks_active_with_priority_covering ON tasker.tasks (complete, priority, task_uuid)
    INCLUDE (named_task_uuid, requested_at) WHERE complete = false;
CREATE INDEX idx_tasks_uuid_temporal ON tasker.tasks (task_uuid, created_at);

-- At most one current transition per task: the guard against concurrent task transitions.
CREATE UNIQUE INDEX idx_task_transitions_uuid_most_recent ON tasker.task_transitions (task_uuid, most_recent)
    WHERE most_recent = true;
CREATE INDEX idx_task_transitions_state_lookup ON tasker.task_transitions (task_uuid, to_state, most_recent)
    WHERE most_recent = true;
CREATE INDEX idx_task_transitions_most_recent ON tasker.task_transitions (most_recent)
    WHERE most_recent = true;
CREATE INDEX idx_task_transitions_timeout ON tasker.task_transitions ((transition_metadata ->> 'timeout_at'))
    WHERE most_recent = true;
CREATE INDEX idx_task_transitions_processor ON tasker.task_transitions (processor_uuid)
    WHERE processor_uuid IS NOT NULL;
CREATE INDEX idx_task_transitions_uuid_sort_key ON tasker.task_transitions (task_uuid, sort_key);
CREATE INDEX idx_task_transitions_uuid_temporal ON tasker.task_transitions (task_transition_uuid, created_at);
CREATE INDEX idx_task_transitions_task_uuid ON tasker.task_transitions (task_uuid);

CREATE INDEX idx_workflow_steps_task_uuid ON tasker.workflow_steps (task_uuid);
CREATE INDEX idx_workflow_steps_named_step_uuid ON tasker.workflow_steps (named_step_uuid);
CREATE INDEX idx_workflow_steps_processed_at ON tasker.workflow_steps (processed_at);
CREATE INDEX idx_workflow_steps_processing_status ON tasker.workflow_steps (task_uuid, processed, in_process);
CREATE INDEX idx_workflow_steps_ready_covering ON tasker.workflow_steps (task_uuid, processed, in_process)
    INCLUDE (workflow_step_uuid, attempts, max_attempts, retryable) WHERE processed = false;
CREATE INDEX idx_workflow_steps_task_readiness ON tasker.workflow_steps (task_uuid, processed, workflow_step_uuid)
    WHERE processed = false;
CREATE INDEX idx_workflow_steps_active_operations ON tasker.workflow_steps (workflow_step_uuid, task_uuid)
    WHERE processed = false OR processed IS NULL;
CREATE INDEX idx_workflow_steps_task_grouping_active ON tasker.workflow_steps (task_uuid, workflow_step_uuid)
    WHERE processed = false OR processed IS NULL;
CREATE INDEX idx_workflow_steps_retry_logic ON tasker.workflow_steps (attempts, max_attempts, retryable);
CREATE INDEX idx_workflow_steps_retry_status ON tasker.workflow_steps (attempts, max_attempts);
CREATE INDEX idx_workflow_steps_task_covering ON tasker.workflow_steps (task_uuid)
    INCLUDE (workflow_step_uuid, processed, in_process, attempts, max_attempts);
CREATE INDEX idx_workflow_steps_transitive_deps ON tasker.workflow_steps (workflow_step_uuid, named_step_uuid)
    INCLUDE (task_uuid, processed);
CREATE INDEX idx_workflow_steps_checkpoint_cursor ON tasker.workflow_steps ((checkpoint ->> 'cursor'))
    WHERE checkpoint IS NOT NULL;
CREATE INDEX idx_workflow_steps_checkpoint_exists ON tasker.workflow_steps (workflow_step_uuid)
    WHERE checkpoint IS NOT NULL;

CREATE INDEX idx_workflow_step_edges_from_step ON tasker.workflow_step_edges (from_step_uuid);
CREATE INDEX idx_workflow_step_edges_to_step ON tasker.workflow_step_edges (to_step_uuid);
CREATE INDEX idx_workflow_step_edges_from_step_name ON tasker.workflow_step_edges (from_step_uuid, name);

-- At most one current transition per step: a second concurrent claim fails on this index.
CREATE UNIQUE INDEX idx_workflow_step_transitions_uuid_most_recent
    ON tasker.workflow_step_transitions (workflow_step_uuid, most_recent) WHERE most_recent = true;
CREATE INDEX idx_workflow_step_transitions_state_lookup
    ON tasker.workflow_step_transitions (workflow_step_uuid, to_state, most_recent) WHERE most_recent = true;
CREATE INDEX idx_workflow_step_transitions_most_recent
    ON tasker.workflow_step_transitions (most_recent) WHERE most_recent = true;
CREATE INDEX idx_workflow_step_transitions_step_uuid ON tasker.workflow_step_transitions (workflow_step_uuid);
CREATE INDEX idx_workflow_step_transitions_uuid_sort_key
    ON tasker.workflow_step_transitions (workflow_step_uuid, sort_key);
CREATE INDEX idx_workflow_step_transitions_uuid_temporal
    ON tasker.workflow_step_transitions (workflow_step_transition_uuid, created_at);

CREATE INDEX idx_audit_step_uuid ON tasker.workflow_step_result_audit (workflow_step_uuid);
CREATE INDEX idx_audit_task_uuid ON tasker.workflow_step_result_audit (task_uuid);
CREATE INDEX idx_audit_recorded_at ON tasker.workflow_step_result_audit (recorded_at);
CREATE INDEX idx_audit_success ON tasker.workflow_step_result_audit (success);
CREATE INDEX idx_audit_correlation_id ON tasker.workflow_step_result_audit (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX idx_audit_worker_uuid ON tasker.workflow_step_result_audit (worker_uuid)
    WHERE worker_uuid IS NOT NULL;

-- At most one open investigation per task (create_dlq_entry relies on it for ON CONFLICT).
CREATE UNIQUE INDEX idx_dlq_unique_pending_task ON tasker.tasks_dlq (task_uuid)
    WHERE resolution_status = 'pending';
CREATE INDEX idx_dlq_reason ON tasker.tasks_dlq (dlq_reason);
CREATE INDEX idx_dlq_resolution_status ON tasker.tasks_dlq (resolution_status, dlq_timestamp);
CREATE INDEX idx_dlq_task_lookup ON tasker.tasks_dlq (task_uuid);
CREATE INDEX idx_dlq_timestamp ON tasker.tasks_dlq (dlq_timestamp DESC);

-- ---------------------------------------------------------------------------------------------
-- step_dag_relationships: one row per step with its parents, children and depth.
-- min_depth_from_root is the shortest distance from any parentless step (walk capped at 50).
-- ---------------------------------------------------------------------------------------------
CREATE VIEW tasker.step_dag_relationships AS
WITH RECURSIVE depth_walk (workflow_step_uuid, depth) AS (
    SELECT s.workflow_step_uuid, 0
    FROM tasker.workflow_steps s
    WHERE NOT EXISTS (SELECT 1 FROM tasker.workflow_step_edges e WHERE e.to_step_uuid = s.workflow_step_uuid)
    UNION ALL
    SELECT e.to_step_uuid, w.depth + 1
    FROM depth_walk w
    JOIN tasker.workflow_step_edges e ON e.from_step_uuid = w.workflow_step_uuid
    WHERE w.depth < 50
)
SELECT
    ws.workflow_step_uuid,
    ws.task_uuid,
    ws.named_step_uuid,
    COALESCE(up.uuids, '[]'::jsonb)   AS parent_step_uuids,
    COALESCE(down.uuids, '[]'::jsonb) AS child_step_uuids,
    COALESCE(up.n, 0::bigint)         AS parent_count,
    COALESCE(down.n, 0::bigint)       AS child_count,
    COALESCE(up.n, 0) = 0             AS is_root_step,
    COALESCE(down.n, 0) = 0           AS is_leaf_step,
    depth.min_depth                   AS min_depth_from_root
FROM tasker.workflow_steps ws
LEFT JOIN (
    SELECT e.to_step_uuid AS step, jsonb_agg(e.from_step_uuid ORDER BY e.from_step_uuid) AS uuids, count(*) AS n
    FROM tasker.workflow_step_edges e GROUP BY e.to_step_uuid
) up ON up.step = ws.workflow_step_uuid
LEFT JOIN (
    SELECT e.from_step_uuid AS step, jsonb_agg(e.to_step_uuid ORDER BY e.to_step_uuid) AS uuids, count(*) AS n
    FROM tasker.workflow_step_edges e GROUP BY e.from_step_uuid
) down ON down.step = ws.workflow_step_uuid
LEFT JOIN (
    SELECT w.workflow_step_uuid AS step, min(w.depth) AS min_depth
    FROM depth_walk w GROUP BY w.workflow_step_uuid
) depth ON depth.step = ws.workflow_step_uuid;
