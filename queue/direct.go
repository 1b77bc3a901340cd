package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// The hot operations (send, notify, read, take by id, delete, archive) run as plain
// statements on the queue's tables, pgmq.q_<queue> and pgmq.a_<queue>, instead of through
// PGMQ's functions: those build their SQL with format() and EXECUTE it, so PostgreSQL parses
// and plans it again at every call, while a statement naming the table is prepared once per
// connection. Measured on one connection of a durable server: a send through pgmq.send costs
// 130 µs more server CPU than the same INSERT, pgmq.read of one message 560 µs. The tables'
// layout (msg_id, read_ct, enqueued_at, vt, message, headers; the archive adds archived_at) is
// PGMQ's from 1.5 on, which tasker-core requires; the rest of PGMQ (create, batches, metrics) still
// goes through its functions. A statement reads and locks like the function it replaces; the
// test TestQueueDirectStatementsMatchFunctions holds them to the functions' rows and payloads.

// queueStatements are the statements of one queue.
type queueStatements struct {
	sendNotify string // $1 message, $2 delay seconds, $3 queue name, $4 namespace channel, $5 namespace
	send       string // $1 message, $2 delay seconds
	notify     string // $1 msg_ids, $2 their delays, then as sendNotify
	read       string // $1 vt seconds, $2 qty; in a transaction of its own
	readTx     string // read, in the caller's transaction
	del        string // $1 msg_id
	archive    string // $1 msg_id
}

var (
	statementCache sync.Map // queue name → *queueStatements
	takeCache      sync.Map // takeKey → SQL
)

type takeKey struct{ queue, cond string }

// takeSQL sets the visibility timeout of message $1 of queue to $2 seconds from now when cond
// (on $3; empty: always) holds, returning whether it did and the message's headers.
func takeSQL(queue, cond string) string {
	k := takeKey{queue, cond}
	if s, ok := takeCache.Load(k); ok {
		return s.(string)
	}
	where := ""
	if cond != "" {
		where = " AND (" + cond + ")"
	}
	s := `WITH t AS (UPDATE ` + pgx.Identifier{"pgmq", "q_" + strings.ToLower(queue)}.Sanitize() + `
	                SET vt = clock_timestamp() + make_interval(secs => $2::integer)
	              WHERE msg_id = $1::bigint` + where + ` RETURNING headers)
	SELECT count(*) > 0, max(headers::text)::jsonb FROM t`
	takeCache.Store(k, s)
	return s
}

// statementsFor returns the statements of queue, a name ValidateName accepted.
func statementsFor(queue string) *queueStatements {
	if s, ok := statementCache.Load(queue); ok {
		return s.(*queueStatements)
	}
	q := pgx.Identifier{"pgmq", "q_" + strings.ToLower(queue)}.Sanitize()
	a := pgx.Identifier{"pgmq", "a_" + strings.ToLower(queue)}.Sanitize()
	s := &queueStatements{
		sendNotify: sendNotifySQL(q),
		send: `INSERT INTO ` + q + ` (vt, message)
		       VALUES (clock_timestamp() + make_interval(secs => $2::integer), $1::jsonb) RETURNING msg_id`,
		notify: notifySQL(q),
		// pgmq.read: the oldest visible messages, skipping those another reader has locked.
		// Run on a pool, the read commits without waiting for its WAL flush (set_config local to
		// its own transaction): a read lost in a crash only makes its messages visible again
		// before their visibility timeout, as a consumer's crash does, and any later durable
		// commit flushes it. On a connection or transaction of the caller's, readTx.
		read: `WITH s AS (SELECT set_config('synchronous_commit', 'off', true)),
		       c AS (SELECT t.msg_id FROM ` + q + ` t, s WHERE t.vt <= clock_timestamp()
		                 ORDER BY t.msg_id LIMIT $2::integer FOR UPDATE OF t SKIP LOCKED)
		       UPDATE ` + q + ` m SET vt = clock_timestamp() + make_interval(secs => $1::integer), read_ct = m.read_ct + 1
		         FROM c WHERE m.msg_id = c.msg_id
		       RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers`,
		readTx: `WITH c AS (SELECT msg_id FROM ` + q + ` WHERE vt <= clock_timestamp()
		                 ORDER BY msg_id LIMIT $2::integer FOR UPDATE SKIP LOCKED)
		       UPDATE ` + q + ` m SET vt = clock_timestamp() + make_interval(secs => $1::integer), read_ct = m.read_ct + 1
		         FROM c WHERE m.msg_id = c.msg_id
		       RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers`,
		del: `WITH d AS (DELETE FROM ` + q + ` WHERE msg_id = $1::bigint RETURNING 1) SELECT count(*) > 0 FROM d`,
		archive: `WITH m AS (DELETE FROM ` + q + ` WHERE msg_id = $1::bigint
		                     RETURNING msg_id, vt, read_ct, enqueued_at, message, headers),
		          a AS (INSERT INTO ` + a + ` (msg_id, vt, read_ct, enqueued_at, message, headers)
		                SELECT msg_id, vt, read_ct, enqueued_at, message, headers FROM m RETURNING 1)
		          SELECT count(*) > 0 FROM a`,
	}
	actual, _ := statementCache.LoadOrStore(queue, s)
	return actual.(*queueStatements)
}

// notifySQL notifies the messages $1 (sent with delays $2) of table as sendNotifySQL does; the
// payload's ready_at is the message's enqueued_at, its sender's now(). Each message is looked up
// by its key in a subquery the planner cannot flatten, so the one generic plan of the statement
// stays an index lookup however long the queue grows.
func notifySQL(table string) string {
	return `WITH s AS (
    SELECT m.msg_id, m.message, m.enqueued_at AS ready_at, i.delay
      FROM unnest($1::bigint[], $2::integer[]) AS i(msg_id, delay)
      JOIN LATERAL (SELECT msg_id, message, enqueued_at FROM ` + table + `
                     WHERE msg_id = i.msg_id OFFSET 0) m ON true),
` + payloadSQL("s") + `
SELECT count(pg_notify($4::text, payload)) + count(pg_notify('` + GlobalNotifyChannel + `', payload)) FROM f`
}

// sendNotifySQL inserts a message into table and notifies the namespace's channel and the global
// one as tasker.pgmq_send_with_notify does. Notifications are delivered at commit.
func sendNotifySQL(table string) string {
	return `WITH m AS (
    INSERT INTO ` + table + ` (vt, message)
    VALUES (clock_timestamp() + make_interval(secs => $2::integer), $1::jsonb)
    RETURNING msg_id, message, now() AS ready_at, $2::integer AS delay),
` + payloadSQL("m") + `
SELECT msg_id, pg_notify($4::text, payload), pg_notify('` + GlobalNotifyChannel + `', payload) FROM f`
}

// payloadSQL is the CTEs p and f that turn the rows (msg_id, message, ready_at, delay) of src
// into f(msg_id, payload), the payload tasker.pgmq_send_with_notify sends ($3 queue name, $5
// namespace): the message itself when its text is shorter than 7,000 characters
// ("message_with_payload"), else "message_ready" with payload_omitted; a payload longer than
// 7,800 characters is replaced by the short form with truncated: true.
func payloadSQL(src string) string {
	return `p AS (
    SELECT msg_id, ready_at, CASE WHEN length(message::text) < 7000
        THEN json_build_object('event_type', 'message_with_payload', 'msg_id', msg_id, 'queue_name', $3::text,
                               'namespace', $5::text, 'message', message, 'ready_at', ready_at,
                               'delay_seconds', delay)::text
        ELSE json_build_object('event_type', 'message_ready', 'msg_id', msg_id, 'queue_name', $3::text,
                               'namespace', $5::text, 'ready_at', ready_at, 'delay_seconds', delay,
                               'payload_omitted', true)::text
        END AS payload
      FROM ` + src + `),
f AS (
    SELECT msg_id, CASE WHEN length(payload) > 7800
        THEN json_build_object('event_type', 'message_ready', 'msg_id', msg_id, 'queue_name', $3::text,
                               'namespace', $5::text, 'ready_at', ready_at, 'payload_omitted', true,
                               'truncated', true)::text
        ELSE payload END AS payload
      FROM p ORDER BY msg_id)`
}

// Notices are the notifications of messages sent inside a transaction, held back until it has
// committed. PostgreSQL serializes the commits of all transactions that NOTIFY, on one lock held
// across the commit's WAL flush, so on a durable server every such commit waits for the
// previous one's fsync: measured on a linear burst, most busy backends sat in "Lock: object" at
// commit. A transaction that only notifies writes no WAL and holds that lock for microseconds.
// A message whose notice is lost (the process died between the two) is found by the readers'
// polling, as any message sent while no one listened.
type Notices struct {
	queues []string
	ids    []int64
	delays []int32
}

// Len is the number of held-back notices.
func (n *Notices) Len() int { return len(n.ids) }

func (n *Notices) add(queue string, id int64, delaySeconds int) {
	n.queues = append(n.queues, queue)
	n.ids = append(n.ids, id)
	n.delays = append(n.delays, int32(delaySeconds))
}

// AddSent records a message sent without its notification (for one sent by a statement of
// another package, e.g. a group completion).
func (n *Notices) AddSent(queue string, id int64) { n.add(queue, id, 0) }

// QueueSend queues on b the insert of body into queue, visible after delaySeconds, without a
// notification: once the transaction commits, Notify sends the one tasker.pgmq_send_with_notify
// would have sent. id, when not nil, receives the message's id.
func (c *Client) QueueSend(b *pgx.Batch, queue string, body any, delaySeconds int, id *int64, n *Notices) error {
	raw, err := prepareSend(queue, body, delaySeconds)
	if err != nil {
		return err
	}
	b.Queue(statementsFor(queue).send, raw, delaySeconds).Fn = func(br pgx.BatchResults) error {
		var got int64
		if err := br.QueryRow().Scan(&got); err != nil {
			return opErr("send", queue, err)
		}
		if id != nil {
			*id = got
		}
		n.add(queue, got, delaySeconds)
		return nil
	}
	return nil
}

// Batcher runs a batch of statements: *pgxpool.Pool, *pgx.Conn, pgx.Tx.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Notify sends the held-back notices, in one round trip on db, with
// the payloads tasker.pgmq_send_with_notify sends, built from the messages' rows (ready_at is
// the message's enqueued_at, the sending transaction's now() as in the function). A message
// already consumed is not announced. It clears n.
func (c *Client) Notify(ctx context.Context, db Batcher, n *Notices) error {
	if n == nil || n.Len() == 0 {
		return nil
	}
	byQueue := map[string][]int{}
	var order []string
	for i, q := range n.queues {
		if _, ok := byQueue[q]; !ok {
			order = append(order, q)
		}
		byQueue[q] = append(byQueue[q], i)
	}
	b := &pgx.Batch{}
	for _, queue := range order {
		idx := byQueue[queue]
		ids, delays := make([]int64, len(idx)), make([]int32, len(idx))
		for j, i := range idx {
			ids[j], delays[j] = n.ids[i], n.delays[i]
		}
		ns := NamespaceOfQueue(queue)
		b.Queue(statementsFor(queue).notify, ids, delays, queue, NotifyChannel(ns), ns)
	}
	n.queues, n.ids, n.delays = n.queues[:0], n.ids[:0], n.delays[:0]
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("queue: notify: %w", err)
	}
	return nil
}
