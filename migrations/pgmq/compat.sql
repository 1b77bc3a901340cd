-- tasker-go: a PGMQ-compatible `pgmq` schema for servers where the pgmq extension is not available.
--
-- Written from PGMQ 1.5.1's documented behaviour (see docs spec schema-and-sql.md §5), not from its
-- source. It reproduces the objects other code depends on: the schema, pgmq.meta, the row types,
-- the per-queue tables pgmq.q_<name> / pgmq.a_<name>, and the public functions with PGMQ's exact
-- parameter names, output column names and overload set (pgmq-rs calls them with named arguments,
-- pgmq-go and tasker's SQL positionally). Partitioned queues (pg_partman) are not supported.
--
-- Safe to apply more than once: every statement is IF NOT EXISTS, CREATE OR REPLACE or guarded.
-- Every queue name reaches dynamic SQL only through pgmq.format_table_name (which rejects anything
-- outside [A-Za-z0-9_]) and format('%I').

CREATE SCHEMA IF NOT EXISTS pgmq;

-- One row per queue. No primary key, like PGMQ; tasker attaches an AFTER INSERT trigger to it.
CREATE TABLE IF NOT EXISTS pgmq.meta (
    queue_name     varchar     UNIQUE NOT NULL,
    is_partitioned boolean     NOT NULL,
    is_unlogged    boolean     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

DO $types$
BEGIN
    -- The 1.5.1 six-column shape; pgmq-go decodes message rows by position.
    IF to_regtype('pgmq.message_record') IS NULL THEN
        CREATE TYPE pgmq.message_record AS (
            msg_id      bigint,
            read_ct     integer,
            enqueued_at timestamptz,
            vt          timestamptz,
            message     jsonb,
            headers     jsonb
        );
    END IF;
    IF to_regtype('pgmq.queue_record') IS NULL THEN
        CREATE TYPE pgmq.queue_record AS (
            queue_name     varchar,
            is_partitioned boolean,
            is_unlogged    boolean,
            created_at     timestamptz
        );
    END IF;
    IF to_regtype('pgmq.metrics_result') IS NULL THEN
        CREATE TYPE pgmq.metrics_result AS (
            queue_name           text,
            queue_length         bigint,
            newest_msg_age_sec   integer,
            oldest_msg_age_sec   integer,
            total_messages       bigint,
            scrape_time          timestamptz,
            queue_visible_length bigint
        );
    END IF;
END
$types$;

-- Monitoring roles may read queue tables, as with the extension.
DO $grants$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_monitor') THEN
        GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
        GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
        GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
        ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
        ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;
    END IF;
END
$grants$;

------------------------------------------------------------------------------------------------
-- Names and locking
------------------------------------------------------------------------------------------------

-- Returns the lower-cased table name '<prefix>_<queue_name>'. Stricter than PGMQ, which only
-- rejects $ ; -- and ': any character outside [A-Za-z0-9_] is refused, so the result is always a
-- plain identifier.
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_]+$' THEN
        RAISE EXCEPTION 'queue name % is invalid: only letters, digits and _ are allowed',
            coalesce(quote_literal(queue_name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END
$fn$;

-- Raises unless queue_name is 1-47 characters of [A-Za-z0-9_]. 47 keeps every derived identifier
-- (archived_at_idx_<name>, q_<name>_msg_id_seq) within PostgreSQL's 63-byte limit.
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_]+$' THEN
        RAISE EXCEPTION 'queue name % is invalid: only letters, digits and _ are allowed',
            coalesce(quote_literal(queue_name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

-- Serialises create and drop of one queue until the end of the calling transaction.
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pg_advisory_xact_lock(hashtext('pgmq.queue_' || queue_name));
$fn$;

------------------------------------------------------------------------------------------------
-- Queue lifecycle
------------------------------------------------------------------------------------------------

-- Shared body of create_non_partitioned and create_unlogged (not part of PGMQ's surface).
CREATE OR REPLACE FUNCTION pgmq._compat_create_queue(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text;
    atable text;
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    qtable := pgmq.format_table_name(queue_name, 'q');
    atable := pgmq.format_table_name(queue_name, 'a');
    PERFORM pgmq.acquire_queue_lock(queue_name);

    EXECUTE format(
        'CREATE %s TABLE IF NOT EXISTS pgmq.%I (
            msg_id      bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct     integer NOT NULL DEFAULT 0,
            enqueued_at timestamptz NOT NULL DEFAULT now(),
            vt          timestamptz NOT NULL,
            message     jsonb,
            headers     jsonb
        )', CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, qtable);

    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id      bigint PRIMARY KEY,
            read_ct     integer NOT NULL DEFAULT 0,
            enqueued_at timestamptz NOT NULL DEFAULT now(),
            archived_at timestamptz NOT NULL DEFAULT now(),
            vt          timestamptz NOT NULL,
            message     jsonb,
            headers     jsonb
        )', atable);

    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable || '_vt_idx', qtable);
    -- PGMQ names this index after the queue name as given (not lower-cased).
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
        'archived_at_idx_' || queue_name, atable);

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (_compat_create_queue.queue_name, false, unlogged)
    ON CONFLICT DO NOTHING;
END
$fn$;

-- Creates queue_name (tables, indexes, meta row); does nothing if it exists.
CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._compat_create_queue(queue_name, false);
$fn$;

-- Like create_non_partitioned but the queue table is UNLOGGED (the archive stays logged).
CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq._compat_create_queue(queue_name, true);
$fn$;

-- Creates queue_name; idempotent.
CREATE OR REPLACE FUNCTION pgmq.create(queue_name text)
RETURNS void
LANGUAGE sql
AS $fn$
    SELECT pgmq.create_non_partitioned(queue_name);
$fn$;

-- Drops the queue and archive tables and the meta row. Returns false if the queue does not exist.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    PERFORM pgmq.acquire_queue_lock(queue_name);
    IF to_regclass(format('pgmq.%I', qtable)) IS NULL THEN
        RAISE NOTICE 'pgmq queue % does not exist', queue_name;
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
    DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
    RETURN true;
END
$fn$;

-- Deletes every message of the queue (not the archive) and returns how many there were.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    n bigint;
BEGIN
    -- Lock first so the count covers exactly the rows TRUNCATE removes.
    EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS EXCLUSIVE MODE', qtable);
    EXECUTE format('SELECT count(*) FROM pgmq.%I', qtable) INTO n;
    EXECUTE format('TRUNCATE pgmq.%I', qtable);
    RETURN n;
END
$fn$;

-- Lists every queue.
CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql
AS $fn$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta m;
$fn$;

------------------------------------------------------------------------------------------------
-- Sending. One plpgsql core per family; the overloads are thin SQL wrappers. The set of overloads
-- is PGMQ's: (q,msg) (q,msg,headers) (q,msg,delay int) (q,msg,delay timestamptz)
-- (q,msg,headers,delay int) and the core (q,msg,headers,delay timestamptz).
------------------------------------------------------------------------------------------------

-- Enqueues msg, visible from delay; returns its msg_id.
CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    USING delay, msg, headers;
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send(queue_name, msg, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, delay);
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

-- Enqueues msgs in array order (ids ascending); headers[i] belongs to msgs[i], missing ones are NULL.
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers)
         SELECT $1, u.m, u.h
         FROM unnest($2::jsonb[], coalesce($3, ARRAY[]::jsonb[])) WITH ORDINALITY AS u(m, h, n)
         WHERE u.n <= coalesce(cardinality($2), 0)
         ORDER BY u.n
         RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    USING delay, msgs, headers;
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send_batch(queue_name, msgs, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay);
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT * FROM pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

------------------------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------------------------

-- Takes up to qty visible messages, oldest msg_id first, skipping rows another reader has locked,
-- hides them for vt seconds and counts the read. conditional ('{}' = none) filters by message @>.
-- Exactly one read overload exists, so pgmq-go's untyped read($1,$2,$3) resolves.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH picked AS (
             SELECT msg_id FROM pgmq.%1$I
             WHERE vt <= clock_timestamp() AND ($3 = ''{}''::jsonb OR message @> $3)
             ORDER BY msg_id ASC
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), updated AS (
             UPDATE pgmq.%1$I q
             SET vt = clock_timestamp() + make_interval(secs => $1), read_ct = q.read_ct + 1
             FROM picked
             WHERE q.msg_id = picked.msg_id
             RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
         )
         SELECT * FROM updated ORDER BY msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    USING vt, qty, coalesce(conditional, '{}'::jsonb);
END
$fn$;

-- read, retried every poll_interval_ms until it returns something or max_poll_seconds have passed.
-- Each attempt is a new statement, so it sees messages committed meanwhile.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
    queue_name text,
    vt integer,
    qty integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
BEGIN
    LOOP
        RETURN QUERY SELECT * FROM pgmq.read(
            read_with_poll.queue_name, read_with_poll.vt, read_with_poll.qty, read_with_poll.conditional);
        IF FOUND OR clock_timestamp() >= deadline THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(poll_interval_ms / 1000.0);
    END LOOP;
END
$fn$;

-- Removes and returns the oldest visible message; read_ct is not incremented.
-- Only the one-argument form exists, so pgmq-go's pop($1) resolves.
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH picked AS (
             SELECT msg_id FROM pgmq.%1$I
             WHERE vt <= clock_timestamp()
             ORDER BY msg_id ASC
             LIMIT 1
             FOR UPDATE SKIP LOCKED
         )
         DELETE FROM pgmq.%1$I q
         USING picked
         WHERE q.msg_id = picked.msg_id
         RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
        pgmq.format_table_name(queue_name, 'q'));
END
$fn$;

------------------------------------------------------------------------------------------------
-- Acknowledging and visibility
------------------------------------------------------------------------------------------------

-- Moves one message to pgmq.a_<queue> (archived_at = now()) whatever its visibility.
-- Returns whether it was there. Delete and insert are one statement, so the move is atomic.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    moved bigint;
BEGIN
    EXECUTE format(
        'WITH gone AS (
             DELETE FROM pgmq.%I WHERE msg_id = $1
             RETURNING msg_id, vt, read_ct, enqueued_at, message, headers
         )
         INSERT INTO pgmq.%I (msg_id, vt, read_ct, enqueued_at, message, headers)
         SELECT msg_id, vt, read_ct, enqueued_at, message, headers FROM gone
         RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
    INTO moved
    USING msg_id;
    RETURN moved IS NOT NULL;
END
$fn$;

-- Archives several messages; returns the ids that were moved.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH gone AS (
             DELETE FROM pgmq.%I WHERE msg_id = ANY($1)
             RETURNING msg_id, vt, read_ct, enqueued_at, message, headers
         )
         INSERT INTO pgmq.%I (msg_id, vt, read_ct, enqueued_at, message, headers)
         SELECT msg_id, vt, read_ct, enqueued_at, message, headers FROM gone
         RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
    USING msg_ids;
END
$fn$;

-- Deletes one message for good; returns whether it was there.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    gone bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1 RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    INTO gone
    USING msg_id;
    RETURN gone IS NOT NULL;
END
$fn$;

-- Deletes several messages; returns the ids that were deleted.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    USING msg_ids;
END
$fn$;

-- Makes the message visible vt seconds from now (0 = at once), whatever its current vt.
-- Returns the updated row, or nothing if the message does not exist.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'UPDATE pgmq.%I SET vt = clock_timestamp() + make_interval(secs => $2)
         WHERE msg_id = $1
         RETURNING msg_id, read_ct, enqueued_at, vt, message, headers',
        pgmq.format_table_name(queue_name, 'q'))
    USING msg_id, vt;
END
$fn$;

------------------------------------------------------------------------------------------------
-- Metrics
------------------------------------------------------------------------------------------------

-- Length, visible length, newest/oldest message age in seconds (NULL when empty) and the number of
-- messages ever sent (the msg_id sequence's last value).
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    result pgmq.metrics_result;
BEGIN
    EXECUTE format(
        'SELECT $1::text,
                count(*)::bigint,
                extract(epoch FROM now() - max(enqueued_at))::integer,
                extract(epoch FROM now() - min(enqueued_at))::integer,
                (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgmq.%I s)::bigint,
                now(),
                count(*) FILTER (WHERE vt <= now())::bigint
         FROM pgmq.%I',
        qtable || '_msg_id_seq', qtable)
    INTO result
    USING queue_name;
    RETURN result;
END
$fn$;

-- metrics() for every queue in pgmq.meta.
CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
        RETURN NEXT pgmq.metrics(name);
    END LOOP;
END
$fn$;
