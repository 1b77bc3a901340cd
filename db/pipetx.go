package db

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PipeTx is a transaction that spends no round trip of its own: BEGIN travels with its first
// statement, writes queued on Pending travel with the next statement it runs, and COMMIT with
// the last of them. A queued statement's error (returned by its QueuedQuery.Fn) surfaces from
// that next call, and the transaction is then aborted, as it would be had the statement run on
// its own. A PipeTx holds a connection of its pool from BeginPipe until Commit or Rollback, and
// is not safe for concurrent use.
type PipeTx struct {
	conn     *pgxpool.Conn
	tx       pgx.Tx // nil until BEGIN was sent
	pending  *pgx.Batch
	ended    bool
	onCommit []func(b *pgx.Batch) error
	after    []func()
}

// ErrPipeTxEnded is returned by a PipeTx used after Commit or Rollback.
var ErrPipeTxEnded = errors.New("db: transaction already ended")

// BeginPipe takes a connection from pool for a transaction whose BEGIN is sent with its first
// statement.
func BeginPipe(ctx context.Context, pool *pgxpool.Pool) (*PipeTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &PipeTx{conn: conn}, nil
}

// Pending is the batch of statements waiting for the next round trip.
func (t *PipeTx) Pending() *pgx.Batch {
	if t.pending == nil {
		t.pending = &pgx.Batch{}
	}
	return t.pending
}

// OnCommit registers fn to queue, just before COMMIT, writes it held back until then (to
// coalesce them: several transitions of one row in one statement, say). An error aborts the
// commit and rolls the transaction back.
func (t *PipeTx) OnCommit(fn func(b *pgx.Batch) error) { t.onCommit = append(t.onCommit, fn) }

// AfterCommit registers fn to run once the transaction has committed (after its connection went
// back to the pool); it does not run on rollback or a failed commit.
func (t *PipeTx) AfterCommit(fn func()) { t.after = append(t.after, fn) }

// Flush sends the waiting statements (and BEGIN, if not sent yet) now.
func (t *PipeTx) Flush(ctx context.Context) error {
	if t.tx != nil && (t.pending == nil || t.pending.Len() == 0) {
		return nil
	}
	return t.SendBatch(ctx, &pgx.Batch{}).Close()
}

// SendBatch sends BEGIN if not sent yet, the waiting statements and then b's, in one round
// trip; the results of all but b's are read (their Fn run) before returning b's.
func (t *PipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.ended {
		return failedBatch{ErrPipeTxEnded}
	}
	all := &pgx.Batch{}
	begin := t.tx == nil
	if begin {
		all.BeginTx(pgx.TxOptions{})
	}
	if t.pending != nil {
		all.QueuedQueries = append(all.QueuedQueries, t.pending.QueuedQueries...)
		t.pending = nil
	}
	ahead := len(all.QueuedQueries)
	if ahead == 0 {
		return t.tx.SendBatch(ctx, b)
	}
	all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
	var br pgx.BatchResults
	if begin {
		br = t.conn.SendBatch(ctx, all)
		t.tx = br.Tx()
	} else {
		br = t.tx.SendBatch(ctx, all)
	}
	for _, qq := range all.QueuedQueries[:ahead] {
		var err error
		if qq.Fn != nil {
			err = qq.Fn(br)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			_ = br.Close()
			return failedBatch{err}
		}
	}
	return br
}

// Exec runs sql in one round trip with whatever waits.
func (t *PipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	ct, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return ct, err
}

// Query runs sql in one round trip with whatever waits.
func (t *PipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow runs sql in one round trip with whatever waits.
func (t *PipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	return batchRow{t.SendBatch(ctx, b)}
}

// Begin starts a savepoint after sending whatever waits.
func (t *PipeTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.Flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Begin(ctx)
}

// Commit sends whatever waits with COMMIT, in one round trip, and returns the connection.
func (t *PipeTx) Commit(ctx context.Context) error {
	if t.ended {
		return ErrPipeTxEnded
	}
	for _, fn := range t.onCommit {
		if err := fn(t.Pending()); err != nil {
			_ = t.Rollback(ctx)
			return err
		}
	}
	if t.tx == nil && (t.pending == nil || t.pending.Len() == 0) {
		t.end()
		return nil
	}
	var tag pgconn.CommandTag
	t.Pending().Queue("commit").Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	if err := t.Flush(ctx); err != nil {
		_ = t.Rollback(ctx)
		return err
	}
	t.end()
	if tag.String() == "ROLLBACK" { // COMMIT of a transaction that had failed
		return pgx.ErrTxCommitRollback
	}
	for _, fn := range t.after {
		fn()
	}
	return nil
}

// Rollback drops whatever waits, rolls back if BEGIN was sent, and returns the connection. It
// does nothing after Commit.
func (t *PipeTx) Rollback(ctx context.Context) error {
	if t.ended {
		return nil
	}
	t.pending = nil
	var err error
	if t.tx != nil {
		err = t.tx.Rollback(ctx)
	}
	t.end()
	return err
}

func (t *PipeTx) end() {
	t.ended = true
	t.conn.Release() // a connection left inside a transaction is closed by the pool
}

// CopyFrom runs COPY FROM in the transaction after whatever waits.
func (t *PipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.Flush(ctx); err != nil {
		return 0, err
	}
	return t.tx.CopyFrom(ctx, table, cols, src)
}

// LargeObjects is the transaction's large object API; BEGIN must have been sent (Flush).
func (t *PipeTx) LargeObjects() pgx.LargeObjects { return t.tx.LargeObjects() }

// Prepare prepares a statement on the transaction's connection.
func (t *PipeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Conn().Prepare(ctx, name, sql)
}

// Conn is the transaction's connection.
func (t *PipeTx) Conn() *pgx.Conn { return t.conn.Conn() }

var _ pgx.Tx = (*PipeTx)(nil)

// batchRow is the last result of a batch; scanning it closes the batch.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// batchRows are the last result of a batch; closing them, or reading past the last row as pgx
// rows close themselves, closes the batch.
type batchRows struct {
	pgx.Rows
	br       pgx.BatchResults
	closeErr error
	closed   bool
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.closeErr = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.closeErr
}

// failedBatch reports err for every result.
type failedBatch struct{ err error }

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return nil, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return errRow{f.err} }
func (f failedBatch) Close() error                     { return f.err }
func (f failedBatch) Tx() pgx.Tx                       { return nil }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
