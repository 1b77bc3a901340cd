package integration

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
)

// PipeTx: queued writes commit with the transaction; a queued write's failure surfaces from the
// next call and nothing of the transaction survives; reading rows to the end (as pgx rows close
// themselves) frees the connection for the next statement; the connection returns to the pool.
func TestPipeTx(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE pipetx_t (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pipetx_t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Writes only: BEGIN, the inserts and COMMIT in one batch.
	tx, err := db.BeginPipe(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tx.Pending().Queue(`INSERT INTO pipetx_t VALUES ($1, 'a')`, i)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("Rollback after Commit: %v", err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d rows after commit, want 3", n)
	}

	// A queued write fails: the next read reports it, and the transaction leaves nothing.
	tx, err = db.BeginPipe(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Pending().Queue(`INSERT INTO pipetx_t VALUES (10, 'b')`)
	tx.Pending().Queue(`INSERT INTO pipetx_t VALUES (1, 'duplicate')`)
	var n int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM pipetx_t`).Scan(&n)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("read after a failing queued insert: %v, want unique violation", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d rows after the failed transaction, want 3", n)
	}

	// Rows read to the end free the connection; queued writes are visible to later reads.
	tx, err = db.BeginPipe(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Pending().Queue(`UPDATE pipetx_t SET v = 'c' WHERE id = 0`)
	rows, err := tx.Query(ctx, `SELECT id, v FROM pipetx_t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for rows.Next() {
		var id int
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		if id == 0 {
			first = v
		}
	}
	if err := rows.Err(); err != nil || first != "c" {
		t.Fatalf("rows: first %q, err %v", first, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM pipetx_t WHERE id = 2`); err != nil {
		t.Fatalf("statement after rows read to the end: %v", err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ctx, `DELETE FROM pipetx_t`); err != nil {
		t.Fatal(err)
	}
	if err := sp.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows, want 2 (savepoint rolled back)", n)
	}

	// Unused and ended transactions give their connection back.
	tx, err = db.BeginPipe(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&n); !errors.Is(err, db.ErrPipeTxEnded) {
		t.Errorf("use after Rollback: %v, want ErrPipeTxEnded", err)
	}
	if got := pool.Stat().AcquiredConns(); got != 0 {
		t.Errorf("%d connections still acquired", got)
	}
	var _ pgx.Tx = tx
}
