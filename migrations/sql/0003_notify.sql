-- tasker-go migration 0003: tasker's additions on top of PGMQ: send wrappers that also
-- pg_notify, the queue-created trigger on pgmq.meta, and helpers that address one message.
-- Names, arguments, channels and payloads match tasker-core's notification contract.
--
-- PGMQ itself (the extension, or our compatible pgmq schema) is installed before this file runs.
-- plpgsql bodies referring to pgmq.* are only resolved when called.
--
-- Channels: 'pgmq_message_ready.<namespace>' and the global 'pgmq_message_ready' for every send;
-- 'pgmq_queue_created' when a row is added to pgmq.meta. No event trigger, no superuser needed.
--
-- Deviations from tasker-core:
--   * pgmq_send_batch_with_notify never truncates its payload into invalid JSON; see below.
--   * pgmq_delete_specific_message / pgmq_extend_vt_specific_message work (tasker-core's looked
--     for a table named after the queue instead of q_<queue> and always raised).
--   * pgmq_read_specific_message uses clock_timestamp() (as PGMQ's own read does) and also sets
--     last_read_at where the queue table has that column (PGMQ >= 1.8).
--   * queue names given to the helpers that run dynamic SQL are lower-cased the way PGMQ names its
--     tables, checked against [a-zA-Z0-9_] and quoted with %I.

-- Namespace of a queue, which names its notification channel:
--   orchestration*         -> 'orchestration'
--   worker_<ns>_queue      -> <ns>           (worker_a_b_queue -> a_b)
--   <letter><word>_queue   -> the part before _queue
--   anything else          -> 'default'
CREATE FUNCTION tasker.extract_queue_namespace(queue_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN queue_name ~ '^orchestration' THEN 'orchestration'
        WHEN queue_name ~ '^worker_.*_queue$'
            THEN COALESCE(substring(queue_name FROM '^worker_(.+?)_queue$'), 'worker')
        WHEN queue_name ~ '^[a-zA-Z][a-zA-Z0-9_]*_queue$'
            THEN substring(queue_name FROM '^([a-zA-Z][a-zA-Z0-9_]*)_queue$')
        ELSE 'default'
    END
$fn$;

-- Messages whose JSON text is shorter than this travel inside the notification.
CREATE FUNCTION tasker.pgmq_payload_size_threshold() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$ SELECT 7000 $fn$;

-- Internal: validates a queue name ([a-zA-Z0-9_] only) and returns its PGMQ table,
-- pgmq.q_<lower(name)>, quoted for use in dynamic SQL. Raises if the queue does not exist.
CREATE FUNCTION tasker._pgmq_queue_table(queue_name text) RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_table text;
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[a-zA-Z0-9_]+$' THEN
        RAISE EXCEPTION 'Invalid queue name: %', queue_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_table := format('pgmq.%I', 'q_' || lower(queue_name));
    IF to_regclass(v_table) IS NULL THEN
        RAISE EXCEPTION 'Queue does not exist: %', queue_name USING ERRCODE = 'undefined_table';
    END IF;
    RETURN v_table;
END
$fn$;

-- Sends a message with pgmq.send and notifies, in the caller's transaction (listeners see the
-- notification only after commit, when the message is visible too).
-- Payload: {"event_type":"message_with_payload", msg_id, queue_name, namespace, message, ready_at,
-- delay_seconds} when the message text is under the threshold, otherwise the signal
-- {"event_type":"message_ready", msg_id, queue_name, namespace, ready_at, delay_seconds,
-- payload_omitted: true}; if even that would exceed 7800 characters (pg_notify's limit is 8000
-- bytes) the signal drops delay_seconds and adds truncated: true.
CREATE FUNCTION tasker.pgmq_send_with_notify(
    queue_name text,
    message jsonb,
    delay_seconds integer DEFAULT 0
) RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_msg_id    bigint;
    v_namespace text := tasker.extract_queue_namespace(queue_name);
    v_payload   text;
BEGIN
    SELECT sent INTO v_msg_id FROM pgmq.send(queue_name, message, delay_seconds) AS sent;

    IF length(message::text) < tasker.pgmq_payload_size_threshold() THEN
        v_payload := json_build_object(
            'event_type', 'message_with_payload',
            'msg_id', v_msg_id,
            'queue_name', queue_name,
            'namespace', v_namespace,
            'message', message,
            'ready_at', now(),
            'delay_seconds', delay_seconds)::text;
    ELSE
        v_payload := json_build_object(
            'event_type', 'message_ready',
            'msg_id', v_msg_id,
            'queue_name', queue_name,
            'namespace', v_namespace,
            'ready_at', now(),
            'delay_seconds', delay_seconds,
            'payload_omitted', true)::text;
    END IF;

    IF length(v_payload) > 7800 THEN
        v_payload := json_build_object(
            'event_type', 'message_ready',
            'msg_id', v_msg_id,
            'queue_name', queue_name,
            'namespace', v_namespace,
            'ready_at', now(),
            'payload_omitted', true,
            'truncated', true)::text;
    END IF;

    PERFORM pg_notify('pgmq_message_ready.' || v_namespace, v_payload);
    PERFORM pg_notify('pgmq_message_ready', v_payload);
    RETURN v_msg_id;
END
$fn$;

-- Sends several messages with pgmq.send_batch and emits one notification
-- {"event_type":"batch_ready", msg_ids, queue_name, namespace, message_count, ready_at,
-- delay_seconds} on the same two channels. When the id list would push the payload over 7800
-- characters, the notification stays valid JSON: msg_ids becomes [] and msg_ids_omitted: true is
-- added (message_count keeps the real count); consumers then read the queue. tasker-core instead
-- cut the text and appended '...}', producing invalid JSON. No notification for an empty batch.
CREATE FUNCTION tasker.pgmq_send_batch_with_notify(
    queue_name text,
    messages jsonb[],
    delay_seconds integer DEFAULT 0
) RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_ids       bigint[];
    v_namespace text := tasker.extract_queue_namespace(queue_name);
    v_payload   text;
BEGIN
    SELECT COALESCE(array_agg(sent ORDER BY sent), '{}') INTO v_ids
    FROM pgmq.send_batch(queue_name, messages, delay_seconds) AS sent;

    IF cardinality(v_ids) > 0 THEN
        v_payload := json_build_object(
            'event_type', 'batch_ready',
            'msg_ids', v_ids,
            'queue_name', queue_name,
            'namespace', v_namespace,
            'message_count', cardinality(v_ids),
            'ready_at', now(),
            'delay_seconds', delay_seconds)::text;

        IF length(v_payload) > 7800 THEN
            v_payload := json_build_object(
                'event_type', 'batch_ready',
                'msg_ids', '[]'::json,
                'queue_name', queue_name,
                'namespace', v_namespace,
                'message_count', cardinality(v_ids),
                'ready_at', now(),
                'delay_seconds', delay_seconds,
                'msg_ids_omitted', true)::text;
        END IF;

        PERFORM pg_notify('pgmq_message_ready.' || v_namespace, v_payload);
        PERFORM pg_notify('pgmq_message_ready', v_payload);
    END IF;

    RETURN QUERY SELECT unnest(v_ids);
END
$fn$;

-- Trigger function on pgmq.meta: announces a new queue on channel 'pgmq_queue_created' with
-- {"event_type":"queue_created", queue_name, namespace, created_at}.
CREATE FUNCTION tasker.pgmq_notify_queue_created() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pg_notify('pgmq_queue_created', json_build_object(
        'event_type', 'queue_created',
        'queue_name', NEW.queue_name,
        'namespace', tasker.extract_queue_namespace(NEW.queue_name),
        'created_at', now())::text);
    RETURN NEW;
END
$fn$;

-- Attach it when pgmq.meta exists (it does once PGMQ or the compat schema is installed; the Go
-- migrator re-checks after every run so a later PGMQ install still gets the trigger).
DO $do$
BEGIN
    IF to_regclass('pgmq.meta') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS pgmq_queue_created_trigger ON pgmq.meta;
        CREATE TRIGGER pgmq_queue_created_trigger
            AFTER INSERT ON pgmq.meta
            FOR EACH ROW EXECUTE FUNCTION tasker.pgmq_notify_queue_created();
    END IF;
END
$do$;

-- Reads one message by id if it is visible, hiding it for vt_seconds and counting the read
-- (the claim is exclusive: a concurrent reader finds it invisible). No row when the message is
-- missing, invisible or archived. Used after a signal-only notification.
CREATE FUNCTION tasker.pgmq_read_specific_message(
    queue_name text,
    target_msg_id bigint,
    vt_seconds integer DEFAULT 30
) RETURNS TABLE (
    msg_id bigint,
    read_ct integer,
    enqueued_at timestamp with time zone,
    vt timestamp with time zone,
    message jsonb
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_table     text := tasker._pgmq_queue_table(queue_name);
    v_last_read boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = v_table::regclass AND a.attname = 'last_read_at' AND NOT a.attisdropped)
    INTO v_last_read;

    RETURN QUERY EXECUTE format(
        'UPDATE %s AS q
            SET vt = clock_timestamp() + make_interval(secs => $2),
                read_ct = q.read_ct + 1%s
          WHERE q.msg_id = $1 AND q.vt <= clock_timestamp()
      RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message',
        v_table,
        CASE WHEN v_last_read THEN ', last_read_at = clock_timestamp()' ELSE '' END)
    USING target_msg_id, vt_seconds;
END
$fn$;

-- Deletes one message by id (whatever its visibility); returns whether it existed.
CREATE FUNCTION tasker.pgmq_delete_specific_message(
    queue_name text,
    target_msg_id bigint
) RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_table text := tasker._pgmq_queue_table(queue_name);
    v_count integer;
BEGIN
    EXECUTE format('DELETE FROM %s WHERE msg_id = $1', v_table) USING target_msg_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count > 0;
END
$fn$;

-- Keeps a message hidden for additional_vt_seconds more: the new vt is counted from the current
-- vt, or from now if that has already passed (so an expired lease is renewed, not left visible).
-- Returns whether the message exists.
CREATE FUNCTION tasker.pgmq_extend_vt_specific_message(
    queue_name text,
    target_msg_id bigint,
    additional_vt_seconds integer DEFAULT 30
) RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_table text := tasker._pgmq_queue_table(queue_name);
    v_count integer;
BEGIN
    EXECUTE format(
        'UPDATE %s SET vt = GREATEST(vt, clock_timestamp()) + make_interval(secs => $2) WHERE msg_id = $1',
        v_table)
    USING target_msg_id, additional_vt_seconds;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count > 0;
END
$fn$;

-- Adds the headers column PGMQ >= 1.5 has to a queue table created by an older PGMQ.
-- tasker-core calls this from an event trigger (superuser only); tasker-go does not install one,
-- the function is kept so callers can run it explicitly.
CREATE FUNCTION tasker.pgmq_ensure_headers_column(queue_name text) RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_table text := tasker._pgmq_queue_table(queue_name);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = v_table::regclass AND a.attname = 'headers' AND NOT a.attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN headers jsonb', v_table);
    END IF;
END
$fn$;
