package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	pgmq "github.com/craigpastro/pgmq-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what the client runs statements on: *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or a
// pgx.Tx (so a send or an acknowledgement can be part of the caller's transaction).
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Message is one queue message.
type Message struct {
	ID         int64
	ReadCount  int // reads so far, including the one that returned this value
	EnqueuedAt time.Time
	VT         time.Time // the message is invisible to readers until VT
	Body       json.RawMessage
	Headers    json.RawMessage // nil when the message has none
}

// Metrics describes one queue at ScrapedAt.
type Metrics struct {
	Queue         string
	Length        int64         // messages in the queue, visible or not
	VisibleLength int64         // messages readable now
	NewestAge     time.Duration // age of the newest message; 0 when empty
	OldestAge     time.Duration // age of the oldest message; 0 when empty
	TotalMessages int64         // messages ever sent to the queue
	ScrapedAt     time.Time
}

// ErrQueueNotFound is wrapped by errors caused by a queue table that does not exist.
var ErrQueueNotFound = errors.New("queue: queue does not exist")

// Client runs PGMQ operations on a database (normally a *pgxpool.Pool).
type Client struct {
	db DBTX
}

// NewClient returns a Client that runs its statements on db.
func NewClient(db DBTX) *Client { return &Client{db: db} }

// on returns q, or the client's database when q is nil.
func (c *Client) on(q DBTX) DBTX {
	if q == nil {
		return c.db
	}
	return q
}

// messageColumns are named explicitly so that both PGMQ row shapes (1.5.1's six columns and the
// seven with last_read_at of newer releases) decode the same way.
const messageColumns = "msg_id, read_ct, enqueued_at, vt, message, headers"

// EnsureQueue creates queue if it does not exist (pgmq.create is idempotent). It refuses, with a
// *NameConflictError naming both, a queue (or the namespace of a worker or domain-event queue)
// that differs only in letter case from one in use: PGMQ would give both one table. The check
// and the creation run in one transaction (a savepoint when the client runs on a transaction).
func (c *Client) EnsureQueue(ctx context.Context, queue string) error {
	if err := ValidateName(queue); err != nil {
		return err
	}
	b, ok := c.db.(interface {
		Begin(ctx context.Context) (pgx.Tx, error)
	})
	if !ok {
		return createQueue(ctx, c.db, queue)
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		return opErr("create", queue, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := createQueue(ctx, tx, queue); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return opErr("create", queue, err)
	}
	return nil
}

func createQueue(ctx context.Context, tx DBTX, queue string) error {
	if err := checkQueue(ctx, tx, queue); err != nil {
		return opErr("create", queue, err)
	}
	if err := pgmq.CreateQueue(ctx, tx, queue); err != nil {
		return opErr("create", queue, err)
	}
	return nil
}

// EnsureQueues creates every queue that does not exist yet.
func (c *Client) EnsureQueues(ctx context.Context, queues ...string) error {
	for _, q := range queues {
		if err := c.EnsureQueue(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// DropQueue drops queue and its archive; false if it did not exist.
func (c *Client) DropQueue(ctx context.Context, queue string) (bool, error) {
	if err := ValidateName(queue); err != nil {
		return false, err
	}
	var dropped bool
	if err := c.db.QueryRow(ctx, "SELECT pgmq.drop_queue($1::text)", queue).Scan(&dropped); err != nil {
		return false, opErr("drop", queue, err)
	}
	return dropped, nil
}

// Send enqueues body (JSON-encoded unless it is json.RawMessage or []byte holding JSON) on q, or
// on the client's database when q is nil, visible after delaySeconds. No notification is sent.
func (c *Client) Send(ctx context.Context, q DBTX, queue string, body any, delaySeconds int) (int64, error) {
	raw, err := prepareSend(queue, body, delaySeconds)
	if err != nil {
		return 0, err
	}
	id, err := pgmq.SendWithDelay(ctx, c.on(q), queue, raw, delaySeconds)
	if err != nil {
		return 0, opErr("send", queue, err)
	}
	return id, nil
}

// SendWithNotify enqueues body and notifies NotifyChannel(NamespaceOfQueue(queue)) and
// GlobalNotifyChannel as tasker.pgmq_send_with_notify does. Inside a transaction the
// notifications are delivered at commit, together with the message becoming readable.
func (c *Client) SendWithNotify(ctx context.Context, q DBTX, queue string, body any, delaySeconds int) (int64, error) {
	raw, err := prepareSend(queue, body, delaySeconds)
	if err != nil {
		return 0, err
	}
	var id int64
	ns := NamespaceOfQueue(queue)
	err = c.on(q).QueryRow(ctx, statementsFor(queue).sendNotify, raw, delaySeconds, queue, NotifyChannel(ns), ns).Scan(&id, nil, nil)
	if err != nil {
		return 0, opErr("send with notify", queue, err)
	}
	return id, nil
}

// SendBatch enqueues bodies in order and returns their ids (ascending). No notification is sent.
func (c *Client) SendBatch(ctx context.Context, q DBTX, queue string, bodies []any, delaySeconds int) ([]int64, error) {
	raws, err := prepareBatch(queue, bodies, delaySeconds)
	if err != nil {
		return nil, err
	}
	ids, err := queryIDs(ctx, c.on(q), "SELECT * FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer)",
		queue, raws, delaySeconds)
	if err != nil {
		return nil, opErr("send batch", queue, err)
	}
	return ids, nil
}

// SendBatchWithNotify enqueues bodies through tasker.pgmq_send_batch_with_notify (one batch_ready
// notification). tasker's SQL truncates a long batch notification into invalid JSON; the Listener
// reports that as EventUnparsable.
func (c *Client) SendBatchWithNotify(ctx context.Context, q DBTX, queue string, bodies []any, delaySeconds int) ([]int64, error) {
	raws, err := prepareBatch(queue, bodies, delaySeconds)
	if err != nil {
		return nil, err
	}
	ids, err := queryIDs(ctx, c.on(q),
		"SELECT * FROM tasker.pgmq_send_batch_with_notify($1::text, $2::jsonb[], $3::integer)",
		queue, raws, delaySeconds)
	if err != nil {
		return nil, opErr("send batch with notify", queue, err)
	}
	return ids, nil
}

// Read takes up to qty visible messages (oldest first), hiding them for vtSeconds. Concurrent
// readers never get the same message while it is hidden.
func (c *Client) Read(ctx context.Context, queue string, vtSeconds, qty int) ([]Message, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	sql := statementsFor(queue).readTx
	if _, ok := c.db.(*pgxpool.Pool); ok {
		sql = statementsFor(queue).read
	}
	// Planned at every call, with the queue's current size: a plan kept from when the queue was
	// short (a generic plan, see db.RuntimeParams) may scan and sort the whole queue to find the
	// oldest visible messages; measured, a 100,000-message backlog drained at a quarter speed.
	msgs, err := queryMessages(ctx, c.db, sql, pgx.QueryExecModeExec, vtSeconds, qty)
	if err != nil {
		return nil, opErr("read", queue, err)
	}
	return msgs, nil
}

// ReadWithPoll is Read retried inside the server every pollInterval until a message arrives or
// maxWait has passed. It holds a connection for up to maxWait; prefer a Waker with Read.
func (c *Client) ReadWithPoll(ctx context.Context, queue string, vtSeconds, qty int, maxWait, pollInterval time.Duration) ([]Message, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	maxSec := int(math.Ceil(maxWait.Seconds()))
	intervalMS := max(1, int(pollInterval.Milliseconds()))
	msgs, err := queryMessages(ctx, c.db,
		"SELECT "+messageColumns+" FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer)",
		queue, vtSeconds, qty, maxSec, intervalMS)
	if err != nil {
		return nil, opErr("read with poll", queue, err)
	}
	return msgs, nil
}

// ReadSpecific reads one message by id, as pgmq.read would (hide for vtSeconds, count the read),
// for signal-only notifications. ok is false when the message is gone, hidden, or locked by a
// concurrent reader. Unlike tasker.pgmq_read_specific_message it returns headers, uses
// clock_timestamp() like pgmq.read, and never waits for a row lock.
func (c *Client) ReadSpecific(ctx context.Context, queue string, msgID int64, vtSeconds int) (msg Message, ok bool, err error) {
	if err := ValidateName(queue); err != nil {
		return Message{}, false, err
	}
	table := pgx.Identifier{"pgmq", "q_" + strings.ToLower(queue)}.Sanitize()
	sql := `WITH picked AS (
	            SELECT msg_id FROM ` + table + `
	            WHERE msg_id = $1 AND vt <= clock_timestamp()
	            FOR UPDATE SKIP LOCKED
	        )
	        UPDATE ` + table + ` q
	        SET vt = clock_timestamp() + make_interval(secs => $2::integer), read_ct = q.read_ct + 1
	        FROM picked WHERE q.msg_id = picked.msg_id
	        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers`
	msgs, err := queryMessages(ctx, c.db, sql, msgID, vtSeconds)
	if err != nil {
		return Message{}, false, opErr("read message", queue, err)
	}
	if len(msgs) == 0 {
		return Message{}, false, nil
	}
	return msgs[0], true, nil
}

// SetVT makes a message visible vtSeconds from now (0: at once; use it to extend a lease or to
// give a message back). ok is false if the message does not exist.
func (c *Client) SetVT(ctx context.Context, queue string, msgID int64, vtSeconds int) (msg Message, ok bool, err error) {
	if err := ValidateName(queue); err != nil {
		return Message{}, false, err
	}
	msgs, err := queryMessages(ctx, c.db,
		"SELECT "+messageColumns+" FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)", queue, msgID, vtSeconds)
	if err != nil {
		return Message{}, false, opErr("set vt", queue, err)
	}
	if len(msgs) == 0 {
		return Message{}, false, nil
	}
	return msgs[0], true, nil
}

// Delete removes a message for good; false if it was not there.
func (c *Client) Delete(ctx context.Context, queue string, msgID int64) (bool, error) {
	return c.DeleteTx(ctx, c.db, queue, msgID)
}

// DeleteTx is Delete on tx.
func (c *Client) DeleteTx(ctx context.Context, tx DBTX, queue string, msgID int64) (bool, error) {
	if err := ValidateName(queue); err != nil {
		return false, err
	}
	var ok bool
	if err := c.on(tx).QueryRow(ctx, statementsFor(queue).del, msgID).Scan(&ok); err != nil {
		return false, opErr("delete", queue, err)
	}
	return ok, nil
}

// DeleteBatch removes messages for good and returns the ids that were there.
func (c *Client) DeleteBatch(ctx context.Context, queue string, msgIDs []int64) ([]int64, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	ids, err := queryIDs(ctx, c.db, "SELECT pgmq.delete($1::text, $2::bigint[])", queue, msgIDs)
	if err != nil {
		return nil, opErr("delete batch", queue, err)
	}
	return ids, nil
}

// Archive moves a message to the queue's archive table (pgmq.a_<queue>) whatever its visibility;
// false if it was not there.
func (c *Client) Archive(ctx context.Context, queue string, msgID int64) (bool, error) {
	return c.ArchiveTx(ctx, c.db, queue, msgID)
}

// ArchiveTx is Archive on tx, so the acknowledgement commits or rolls back with the caller's
// state change.
func (c *Client) ArchiveTx(ctx context.Context, tx DBTX, queue string, msgID int64) (bool, error) {
	if err := ValidateName(queue); err != nil {
		return false, err
	}
	var ok bool
	if err := c.on(tx).QueryRow(ctx, statementsFor(queue).archive, msgID).Scan(&ok); err != nil {
		return false, opErr("archive", queue, err)
	}
	return ok, nil
}

// ArchiveBatch archives messages and returns the ids that were moved.
func (c *Client) ArchiveBatch(ctx context.Context, queue string, msgIDs []int64) ([]int64, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	ids, err := queryIDs(ctx, c.db, "SELECT pgmq.archive($1::text, $2::bigint[])", queue, msgIDs)
	if err != nil {
		return nil, opErr("archive batch", queue, err)
	}
	return ids, nil
}

// Purge deletes every message of the queue (the archive is kept) and returns how many there were.
func (c *Client) Purge(ctx context.Context, queue string) (int64, error) {
	if err := ValidateName(queue); err != nil {
		return 0, err
	}
	var n int64
	if err := c.db.QueryRow(ctx, "SELECT pgmq.purge_queue($1::text)", queue).Scan(&n); err != nil {
		return 0, opErr("purge", queue, err)
	}
	return n, nil
}

const metricsColumns = "queue_name, queue_length, queue_visible_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time"

// Metrics reports the queue's length, message ages and total sent.
func (c *Client) Metrics(ctx context.Context, queue string) (Metrics, error) {
	if err := ValidateName(queue); err != nil {
		return Metrics{}, err
	}
	rows, err := c.db.Query(ctx, "SELECT "+metricsColumns+" FROM pgmq.metrics($1::text)", queue)
	if err != nil {
		return Metrics{}, opErr("metrics", queue, err)
	}
	ms, err := pgx.CollectRows(rows, scanMetrics)
	if err != nil {
		return Metrics{}, opErr("metrics", queue, err)
	}
	if len(ms) != 1 {
		return Metrics{}, opErr("metrics", queue, fmt.Errorf("got %d rows", len(ms)))
	}
	return ms[0], nil
}

// MetricsAll reports Metrics for every queue.
func (c *Client) MetricsAll(ctx context.Context) ([]Metrics, error) {
	rows, err := c.db.Query(ctx, "SELECT "+metricsColumns+" FROM pgmq.metrics_all()")
	if err != nil {
		return nil, fmt.Errorf("queue: metrics_all: %w", err)
	}
	ms, err := pgx.CollectRows(rows, scanMetrics)
	if err != nil {
		return nil, fmt.Errorf("queue: metrics_all: %w", err)
	}
	return ms, nil
}

func scanMetrics(row pgx.CollectableRow) (Metrics, error) {
	var m Metrics
	var newest, oldest *int32
	if err := row.Scan(&m.Queue, &m.Length, &m.VisibleLength, &newest, &oldest, &m.TotalMessages, &m.ScrapedAt); err != nil {
		return Metrics{}, err
	}
	if newest != nil {
		m.NewestAge = time.Duration(*newest) * time.Second
	}
	if oldest != nil {
		m.OldestAge = time.Duration(*oldest) * time.Second
	}
	return m, nil
}

func queryMessages(ctx context.Context, db DBTX, sql string, args ...any) ([]Message, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Message, error) {
		var m Message
		var readCt int32
		if err := row.Scan(&m.ID, &readCt, &m.EnqueuedAt, &m.VT, &m.Body, &m.Headers); err != nil {
			return Message{}, err
		}
		m.ReadCount = int(readCt)
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	// pgmq.read does not promise an order; callers get FIFO.
	slices.SortFunc(msgs, func(a, b Message) int { return cmp.Compare(a.ID, b.ID) })
	return msgs, nil
}

func queryIDs(ctx context.Context, db DBTX, sql string, args ...any) ([]int64, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func prepareSend(queue string, body any, delaySeconds int) (json.RawMessage, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	if delaySeconds < 0 {
		return nil, fmt.Errorf("queue: send to %s: negative delay %d", queue, delaySeconds)
	}
	return encodeBody(body)
}

func prepareBatch(queue string, bodies []any, delaySeconds int) ([]json.RawMessage, error) {
	if err := ValidateName(queue); err != nil {
		return nil, err
	}
	if delaySeconds < 0 {
		return nil, fmt.Errorf("queue: send to %s: negative delay %d", queue, delaySeconds)
	}
	raws := make([]json.RawMessage, len(bodies))
	for i, b := range bodies {
		raw, err := encodeBody(b)
		if err != nil {
			return nil, fmt.Errorf("queue: batch message %d: %w", i, err)
		}
		raws[i] = raw
	}
	return raws, nil
}

// encodeBody passes JSON bytes through (after checking them) and marshals anything else.
func encodeBody(body any) (json.RawMessage, error) {
	switch b := body.(type) {
	case json.RawMessage:
		return checkJSON(b)
	case []byte:
		return checkJSON(b)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("queue: encode message: %w", err)
	}
	return raw, nil
}

func checkJSON(b []byte) (json.RawMessage, error) {
	if !json.Valid(b) {
		return nil, errors.New("queue: message is not valid JSON")
	}
	return json.RawMessage(b), nil
}

// opErr wraps err with the operation and queue, adding ErrQueueNotFound for a missing table.
func opErr(op, queue string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("queue: %s %s: %w: %w", op, queue, ErrQueueNotFound, err)
	}
	return fmt.Errorf("queue: %s %s: %w", op, queue, err)
}
