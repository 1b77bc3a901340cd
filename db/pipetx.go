package db

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PipeTx is a transaction whose writes can wait: statements queued on Pending travel with the
// next statement the transaction runs, or with its commit, in one round trip. A queued
// statement's error (returned by its QueuedQuery.Fn) surfaces from that next call, and the
// transaction is then aborted, as it would be had the statement run on its own.
type PipeTx struct {
	pgx.Tx
	pending *pgx.Batch
	release func() // returns BeginPipe's connection to its pool once the transaction ends
}

// NewPipeTx wraps tx.
func NewPipeTx(tx pgx.Tx) *PipeTx { return &PipeTx{Tx: tx} }

// Pending is the batch of statements waiting for the next round trip.
func (t *PipeTx) Pending() *pgx.Batch {
	if t.pending == nil {
		t.pending = &pgx.Batch{}
	}
	return t.pending
}

// Flush sends the waiting statements now.
func (t *PipeTx) Flush(ctx context.Context) error {
	if t.pending == nil || t.pending.Len() == 0 {
		return nil
	}
	return t.SendBatch(ctx, &pgx.Batch{}).Close()
}

// SendBatch sends the waiting statements and then b's, in one round trip; the waiting ones'
// results are read (their Fn run) before the returned results, which are b's alone.
func (t *PipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	p := t.pending
	if p == nil || p.Len() == 0 {
		return t.Tx.SendBatch(ctx, b)
	}
	t.pending = nil
	n := len(p.QueuedQueries)
	all := &pgx.Batch{QueuedQueries: append(p.QueuedQueries, b.QueuedQueries...)}
	br := t.Tx.SendBatch(ctx, all)
	for _, qq := range all.QueuedQueries[:n] {
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

// Exec runs sql after the waiting statements, in one round trip.
func (t *PipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.pending == nil || t.pending.Len() == 0 {
		return t.Tx.Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b)
	ct, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return ct, err
}

// Query runs sql after the waiting statements, in one round trip.
func (t *PipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.pending == nil || t.pending.Len() == 0 {
		return t.Tx.Query(ctx, sql, args...)
	}
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

// QueryRow runs sql after the waiting statements, in one round trip.
func (t *PipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.pending == nil || t.pending.Len() == 0 {
		return t.Tx.QueryRow(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	return batchRow{t.SendBatch(ctx, b)}
}

// Begin starts a savepoint after sending the waiting statements.
func (t *PipeTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.Flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

// Commit sends the waiting statements, then commits.
func (t *PipeTx) Commit(ctx context.Context) error {
	defer t.done()
	if err := t.Flush(ctx); err != nil {
		_ = t.Tx.Rollback(ctx)
		return err
	}
	return t.Tx.Commit(ctx)
}

// Rollback drops the waiting statements and rolls back.
func (t *PipeTx) Rollback(ctx context.Context) error {
	defer t.done()
	t.pending = nil
	return t.Tx.Rollback(ctx)
}

func (t *PipeTx) done() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

// batchRow is the last result of a batch; scanning it closes the batch.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// batchRows are the last result of a batch; closing them closes the batch.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r *batchRows) Close() {
	r.Rows.Close()
	_ = r.br.Close()
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

// BeginPipe begins a transaction on a connection of pool with BEGIN sent together with b's
// statements, one round trip for both, and reads b's results (running their Fn) before
// returning. The connection returns to the pool when the transaction ends. If a statement of b
// fails, the transaction is rolled back and that error returned.
func BeginPipe(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) (*PipeTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	all := &pgx.Batch{}
	all.BeginTx(pgx.TxOptions{})
	all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
	br := conn.SendBatch(ctx, all)
	tx := br.Tx()
	if err := br.Close(); err != nil {
		if tx != nil {
			_ = tx.Rollback(ctx)
		}
		conn.Release()
		return nil, err
	}
	return &PipeTx{Tx: tx, release: conn.Release}, nil
}
