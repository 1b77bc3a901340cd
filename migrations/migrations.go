// Package migrations installs and upgrades the tasker schema (and PGMQ, or our compatible
// pgmq schema where the extension is not available).
//
// Up applies, in order: step 0 "pgmq" (the pgmq extension when the server offers it, otherwise
// the embedded compat schema pgmq/compat.sql), then the embedded sql/NNNN_name.sql files sorted
// by name. Applied steps are recorded in public.tasker_go_migrations; each step runs in its own
// transaction together with its record, and a session advisory lock serialises concurrent
// migrators. Check verifies that a database (ours or one migrated by tasker-core) has what
// tasker-go needs.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

//go:embed pgmq/compat.sql
var compatSQL string

// LockKey is the pg_advisory_lock key held while migrating ("tasker-go migrations").
const LockKey int64 = 0x7461736b6d696772

// Table is the table that records applied versions.
const Table = "public.tasker_go_migrations"

// PgmqVersion is the version recorded for step 0 (PGMQ installation).
const PgmqVersion = "0000"

// Names recorded for step 0, depending on how PGMQ was provided.
const (
	PgmqExtension = "pgmq_extension" // CREATE EXTENSION pgmq
	PgmqCompat    = "pgmq_compat"    // the embedded pgmq/compat.sql
	PgmqExisting  = "pgmq_existing"  // a pgmq schema that was already there (not an extension)
)

// extensionChecksum is recorded for PGMQ steps that did not run an embedded file.
const extensionChecksum = "-"

// ErrUnmanagedSchema is returned by Up when schema tasker already holds tables that tasker-go
// did not create (for example a database migrated by tasker-core). Use Check on such databases.
var ErrUnmanagedSchema = errors.New("migrations: schema tasker exists but was not created by tasker-go migrations; run Check instead of Up, or migrate it with the tool that created it")

// ChecksumError reports an applied migration whose embedded file has changed since.
type ChecksumError struct {
	Version, Name      string
	Recorded, Embedded string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("migrations: %s_%s was applied with checksum %s but the embedded file now has %s; applied migrations must not be edited (add a new one)",
		e.Version, e.Name, short(e.Recorded), short(e.Embedded))
}

// Applied is one row of the migrations table.
type Applied struct {
	Version   string
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// Migration is one embedded tasker SQL file.
type Migration struct {
	Version  string // "0001"
	Name     string // "schema"
	SQL      string
	Checksum string // hex sha256 of SQL
}

// Migrations lists the embedded tasker SQL files in the order Up applies them (after step 0).
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(sqlFiles, "sql")
	if err != nil {
		return nil, fmt.Errorf("migrations: read embedded files: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		version, name, err := parseFileName(e.Name())
		if err != nil {
			return nil, err
		}
		body, err := sqlFiles.ReadFile(path.Join("sql", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: read %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: version, Name: name, SQL: string(body), Checksum: checksum(string(body))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations: two files share version %s", out[i].Version)
		}
	}
	return out, nil
}

// parseFileName splits "0001_schema.sql" into ("0001", "schema").
func parseFileName(file string) (version, name string, err error) {
	base := strings.TrimSuffix(file, ".sql")
	version, name, ok := strings.Cut(base, "_")
	if !ok || version == "" || name == "" || strings.Trim(version, "0123456789") != "" {
		return "", "", fmt.Errorf("migrations: file %q is not named NNNN_name.sql", file)
	}
	if version == PgmqVersion {
		return "", "", fmt.Errorf("migrations: file %q uses version %s, reserved for pgmq", file, PgmqVersion)
	}
	return version, name, nil
}

func checksum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// Up applies every pending migration. It is safe to run concurrently from several processes
// (they serialise on LockKey) and a second run is a no-op. It refuses to run when an applied
// file's checksum changed (*ChecksumError) or when schema tasker was created by someone else
// (ErrUnmanagedSchema).
func Up(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	files, err := Migrations()
	if err != nil {
		return err
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrations: acquire connection: %w", err)
	}
	defer conn.Release()

	// Waiting for a concurrent migrator and building indexes on a large database may take
	// longer than the statement and lock bounds set for every connection (db.Session).
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0; SET lock_timeout = 0"); err != nil {
		return fmt.Errorf("migrations: lift statement bounds: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", LockKey); err != nil {
		return fmt.Errorf("migrations: take advisory lock: %w", err)
	}
	defer func() {
		// The lock is per session: release it even if ctx is already done, and if that fails
		// close the connection, which releases it too.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", LockKey)
		if err == nil {
			_, err = conn.Exec(uctx, "RESET statement_timeout; RESET lock_timeout")
		}
		if err != nil {
			log.Warn("migrations: advisory unlock failed; closing the connection", "err", err)
			_ = conn.Conn().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+Table+` (
		version    text PRIMARY KEY,
		name       text NOT NULL,
		checksum   text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrations: create %s: %w", Table, err)
	}

	applied, err := readApplied(ctx, conn.Conn())
	if err != nil {
		return err
	}
	byVersion := make(map[string]Applied, len(applied))
	for _, a := range applied {
		byVersion[a.Version] = a
	}

	// Verify before changing anything.
	for _, f := range files {
		if a, ok := byVersion[f.Version]; ok && a.Checksum != f.Checksum {
			return &ChecksumError{Version: f.Version, Name: f.Name, Recorded: a.Checksum, Embedded: f.Checksum}
		}
	}
	if a, ok := byVersion[PgmqVersion]; ok && a.Name == PgmqCompat && a.Checksum != checksum(compatSQL) {
		return &ChecksumError{Version: PgmqVersion, Name: a.Name, Recorded: a.Checksum, Embedded: checksum(compatSQL)}
	}
	if len(files) > 0 {
		if _, ok := byVersion[files[0].Version]; !ok {
			var exists bool
			if err := conn.QueryRow(ctx, "SELECT to_regclass('tasker.workflow_steps') IS NOT NULL").Scan(&exists); err != nil {
				return fmt.Errorf("migrations: inspect schema tasker: %w", err)
			}
			if exists {
				return ErrUnmanagedSchema
			}
		}
	}

	pending := 0
	if _, ok := byVersion[PgmqVersion]; !ok {
		if err := installPgmq(ctx, conn.Conn(), log); err != nil {
			return err
		}
		pending++
	}
	for _, f := range files {
		if _, ok := byVersion[f.Version]; ok {
			continue
		}
		start := time.Now()
		if err := applyOne(ctx, conn.Conn(), f.Version, f.Name, f.Checksum, f.SQL); err != nil {
			return err
		}
		pending++
		log.Info("migrations: applied", "version", f.Version, "name", f.Name, "duration", time.Since(start).Round(time.Millisecond))
	}
	if err := ensureQueueCreatedTrigger(ctx, conn.Conn(), log); err != nil {
		return err
	}
	if pending == 0 {
		log.Debug("migrations: database is up to date")
	}
	return nil
}

// installPgmq provides schema pgmq (step 0) and records how.
func installPgmq(ctx context.Context, conn *pgx.Conn, log *slog.Logger) error {
	var installed, available, metaExists bool
	err := conn.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq'),
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq'),
		to_regclass('pgmq.meta') IS NOT NULL`).Scan(&installed, &available, &metaExists)
	if err != nil {
		return fmt.Errorf("migrations: inspect pgmq: %w", err)
	}
	switch {
	case installed || available:
		if err := applyOne(ctx, conn, PgmqVersion, PgmqExtension, extensionChecksum, "CREATE EXTENSION IF NOT EXISTS pgmq"); err != nil {
			return err
		}
		log.Info("migrations: pgmq provided by the pgmq extension", "already_installed", installed)
	case metaExists:
		if err := applyOne(ctx, conn, PgmqVersion, PgmqExisting, extensionChecksum, ""); err != nil {
			return err
		}
		log.Info("migrations: pgmq schema already present (not an extension); left as is")
	default:
		if err := applyOne(ctx, conn, PgmqVersion, PgmqCompat, checksum(compatSQL), compatSQL); err != nil {
			return err
		}
		log.Info("migrations: pgmq extension not available; applied tasker-go's compatible pgmq schema")
	}
	return nil
}

// applyOne runs one migration and records it in the same transaction, so a step is either
// fully applied and recorded or not at all.
func applyOne(ctx context.Context, conn *pgx.Conn, version, name, sum, sql string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrations: begin %s_%s: %w", version, name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if strings.TrimSpace(sql) != "" {
		// No arguments: pgx uses the simple protocol, which accepts many statements.
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("migrations: apply %s_%s: %w", version, name, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+Table+` (version, name, checksum) VALUES ($1, $2, $3)`, version, name, sum); err != nil {
		return fmt.Errorf("migrations: record %s_%s: %w", version, name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrations: commit %s_%s: %w", version, name, err)
	}
	return nil
}

// ensureQueueCreatedTrigger attaches tasker.pgmq_notify_queue_created to pgmq.meta when both
// exist and the trigger is missing (PGMQ installed after migration 0003, for example).
func ensureQueueCreatedTrigger(ctx context.Context, conn *pgx.Conn, log *slog.Logger) error {
	var needed bool
	err := conn.QueryRow(ctx, `SELECT to_regclass('pgmq.meta') IS NOT NULL
		AND to_regprocedure('tasker.pgmq_notify_queue_created()') IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM pg_trigger
		                WHERE tgrelid = to_regclass('pgmq.meta') AND tgname = 'pgmq_queue_created_trigger')`).Scan(&needed)
	if err != nil {
		return fmt.Errorf("migrations: inspect pgmq.meta trigger: %w", err)
	}
	if !needed {
		return nil
	}
	if _, err := conn.Exec(ctx, `CREATE TRIGGER pgmq_queue_created_trigger AFTER INSERT ON pgmq.meta
		FOR EACH ROW EXECUTE FUNCTION tasker.pgmq_notify_queue_created()`); err != nil {
		return fmt.Errorf("migrations: create pgmq_queue_created_trigger: %w", err)
	}
	log.Info("migrations: attached pgmq_queue_created_trigger to pgmq.meta")
	return nil
}

// Status lists the applied versions in order; empty when nothing was ever applied.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: acquire connection: %w", err)
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", Table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrations: inspect %s: %w", Table, err)
	}
	if !exists {
		return nil, nil
	}
	return readApplied(ctx, conn.Conn())
}

func readApplied(ctx context.Context, conn *pgx.Conn) ([]Applied, error) {
	rows, err := conn.Query(ctx, `SELECT version, name, checksum, applied_at FROM `+Table+` ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("migrations: read %s: %w", Table, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
		var a Applied
		err := r.Scan(&a.Version, &a.Name, &a.Checksum, &a.AppliedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("migrations: read %s: %w", Table, err)
	}
	return out, nil
}
