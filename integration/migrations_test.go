package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/state"
)

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

func migCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func migPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := db.Connect(migCtx(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(migCtx(t), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", firstLine(sql), err)
	}
}

func mustScalar[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(migCtx(t), sql, args...).Scan(&v); err != nil {
		t.Fatalf("query %q: %v", firstLine(sql), err)
	}
	return v
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + "..."
	}
	return s
}

func hasPgmqSend(t *testing.T, pool *pgxpool.Pool) bool {
	return mustScalar[bool](t, pool, `SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'pgmq' AND p.proname = 'send')`)
}

// diamond builds one task whose steps form A -> {B, C} -> D and returns the task uuid and the
// step uuids by name. No step has a transition yet (all count as pending).
type diamondFixture struct {
	task  string
	steps map[string]string // "A".."D" -> workflow_step_uuid
}

func buildDiamond(t *testing.T, pool *pgxpool.Pool) diamondFixture {
	t.Helper()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	ns := mustScalar[string](t, pool, `INSERT INTO tasker.task_namespaces (name, created_at, updated_at)
		VALUES ($1, now(), now()) RETURNING task_namespace_uuid::text`, "ns_"+suffix)
	nt := mustScalar[string](t, pool, `INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version, configuration, created_at, updated_at)
		VALUES ($1, 'diamond', '1.0.0', '{}', now(), now()) RETURNING named_task_uuid::text`, ns)
	task := mustScalar[string](t, pool, `INSERT INTO tasker.tasks (named_task_uuid, requested_at, identity_hash, correlation_id, created_at, updated_at)
		VALUES ($1, now(), $2, tasker.uuid_generate_v7(), now(), now()) RETURNING task_uuid::text`, nt, "hash_"+suffix)
	f := diamondFixture{task: task, steps: map[string]string{}}
	for _, name := range []string{"A", "B", "C", "D"} {
		nsUUID := mustScalar[string](t, pool, `INSERT INTO tasker.named_steps (name, created_at, updated_at)
			VALUES ($1, now(), now()) RETURNING named_step_uuid::text`, name+"_"+suffix)
		f.steps[name] = mustScalar[string](t, pool, `INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid, created_at, updated_at)
			VALUES ($1, $2, now(), now()) RETURNING workflow_step_uuid::text`, task, nsUUID)
	}
	for _, e := range [][2]string{{"A", "B"}, {"A", "C"}, {"B", "D"}, {"C", "D"}} {
		mustExec(t, pool, `INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
			VALUES ($1, $2, 'provides', now(), now())`, f.steps[e[0]], f.steps[e[1]])
	}
	return f
}

// stepTransition moves a step to state the way the Rust model does (one transaction: next
// sort_key, clear most_recent, insert the new current row).
func stepTransition(t *testing.T, pool *pgxpool.Pool, step, to string, metadata string) {
	t.Helper()
	ctx := migCtx(t)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var from *string
		if err := tx.QueryRow(ctx, `SELECT to_state FROM tasker.workflow_step_transitions
			WHERE workflow_step_uuid = $1 AND most_recent`, step).Scan(&from); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tasker.workflow_step_transitions SET most_recent = false, updated_at = now()
			WHERE workflow_step_uuid = $1 AND most_recent`, step); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tasker.workflow_step_transitions
			(workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at)
			VALUES ($1, $2, $3, $4::jsonb,
			        (SELECT COALESCE(max(sort_key), 0) + 1 FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1),
			        true, now(), now())`, step, to, from, metadata)
		return err
	})
	if err != nil {
		t.Fatalf("transition %s -> %s: %v", step, to, err)
	}
}

func completeStep(t *testing.T, pool *pgxpool.Pool, step string, results string) {
	t.Helper()
	stepTransition(t, pool, step, "complete", `{}`)
	mustExec(t, pool, `UPDATE tasker.workflow_steps SET processed = true, processed_at = now(), results = $2::jsonb, updated_at = now()
		WHERE workflow_step_uuid = $1`, step, results)
}

type readiness struct {
	State                        string
	DepsOK, RetryOK, Ready       bool
	TotalParents, CompletedParnt int32
}

func readinessByStep(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) map[string]readiness {
	t.Helper()
	rows, err := pool.Query(migCtx(t), sql, args...)
	if err != nil {
		t.Fatalf("readiness query: %v", err)
	}
	out := map[string]readiness{}
	for rows.Next() {
		var id string
		var r readiness
		if err := rows.Scan(&id, &r.State, &r.DepsOK, &r.RetryOK, &r.Ready, &r.TotalParents, &r.CompletedParnt); err != nil {
			t.Fatalf("scan readiness: %v", err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("readiness rows: %v", err)
	}
	return out
}

const readinessSQL = `SELECT workflow_step_uuid::text, current_state, dependencies_satisfied, retry_eligible,
	ready_for_execution, total_parents, completed_parents FROM tasker.get_step_readiness_status($1, $2::uuid[])`

// ---------------------------------------------------------------------------------------------
// Up, Status, Check
// ---------------------------------------------------------------------------------------------

func TestMigrationsUpTwiceIsNoop(t *testing.T) {
	url := testdb.NewEmptyURL(t)
	pool := migPool(t, url)
	ctx := migCtx(t)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := migrations.Up(ctx, pool, log); err != nil {
		t.Fatalf("first Up: %v", err)
	}
	first, err := migrations.Status(ctx, pool)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	files, err := migrations.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(files)+1 {
		t.Fatalf("Status has %d versions, want %d (pgmq + %d files): %+v", len(first), len(files)+1, len(files), first)
	}
	if first[0].Version != migrations.PgmqVersion {
		t.Errorf("first version = %s, want %s", first[0].Version, migrations.PgmqVersion)
	}
	switch first[0].Name {
	case migrations.PgmqExtension, migrations.PgmqCompat, migrations.PgmqExisting:
		t.Logf("pgmq provided as %s", first[0].Name)
	default:
		t.Errorf("unexpected pgmq step name %q", first[0].Name)
	}
	for i, f := range files {
		got := first[i+1]
		if got.Version != f.Version || got.Name != f.Name || got.Checksum != f.Checksum {
			t.Errorf("version %d = %+v, want %s_%s %s", i+1, got, f.Version, f.Name, f.Checksum)
		}
	}
	if !strings.Contains(logs.String(), "pgmq") {
		t.Errorf("Up did not log how pgmq was provided; log:\n%s", logs.String())
	}

	logs.Reset()
	if err := migrations.Up(ctx, pool, log); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	second, err := migrations.Status(ctx, pool)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Up changed the recorded versions:\nbefore %+v\nafter  %+v", first, second)
	}
	if strings.Contains(logs.String(), "applied") {
		t.Errorf("second Up applied something:\n%s", logs.String())
	}
}

func TestMigrationsConcurrentUp(t *testing.T) {
	url := testdb.NewEmptyURL(t)
	pools := []*pgxpool.Pool{migPool(t, url), migPool(t, url), migPool(t, url)}
	ctx := migCtx(t)

	var wg sync.WaitGroup
	errs := make([]error, len(pools))
	start := make(chan struct{})
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = migrations.Up(ctx, p, nil)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up #%d: %v", i, err)
		}
	}

	files, _ := migrations.Migrations()
	applied, err := migrations.Status(ctx, pools[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(files)+1 {
		t.Errorf("recorded %d versions, want %d: %+v", len(applied), len(files)+1, applied)
	}
	if n := mustScalar[int64](t, pools[0], `SELECT count(*) FROM pg_class WHERE relname = 'workflow_steps'
		AND relnamespace = 'tasker'::regnamespace`); n != 1 {
		t.Errorf("tasker.workflow_steps exists %d times", n)
	}
	if n := mustScalar[int64](t, pools[0], `SELECT count(*) FROM pg_proc WHERE proname = 'get_step_readiness_status'`); n != 1 {
		t.Errorf("get_step_readiness_status defined %d times", n)
	}
	// The advisory lock must have been released by every migrator.
	if n := mustScalar[int64](t, pools[0], `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = $1`, migrations.LockKey); n != 0 {
		t.Errorf("%d sessions still hold the migration lock", n)
	}
}

func TestMigrationsChecksumChangeRefused(t *testing.T) {
	url := testdb.NewEmptyURL(t)
	pool := migPool(t, url)
	ctx := migCtx(t)
	if err := migrations.Up(ctx, pool, nil); err != nil {
		t.Fatalf("Up: %v", err)
	}
	mustExec(t, pool, `UPDATE `+migrations.Table+` SET checksum = 'edited' WHERE version = '0002'`)
	err := migrations.Up(ctx, pool, nil)
	var ce *migrations.ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Up after checksum change = %v, want *ChecksumError", err)
	}
	if ce.Version != "0002" || ce.Recorded != "edited" {
		t.Errorf("ChecksumError = %+v", ce)
	}
}

func TestMigrationsRefuseUnmanagedTaskerSchema(t *testing.T) {
	url := testdb.NewEmptyURL(t)
	pool := migPool(t, url)
	mustExec(t, pool, `CREATE SCHEMA tasker; CREATE TABLE tasker.workflow_steps (workflow_step_uuid uuid)`)
	err := migrations.Up(migCtx(t), pool, nil)
	if !errors.Is(err, migrations.ErrUnmanagedSchema) {
		t.Fatalf("Up on a foreign tasker schema = %v, want ErrUnmanagedSchema", err)
	}
	if mustScalar[bool](t, pool, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgmq')`) {
		t.Error("Up installed pgmq before refusing")
	}
}

func TestMigrationsCheckAfterUp(t *testing.T) {
	_, pool := testdb.New(t)
	err := migrations.Check(migCtx(t), pool)
	if err == nil {
		return
	}
	var mse *migrations.MissingSchemaError
	if !errors.As(err, &mse) {
		t.Fatalf("Check = %v, want nil or *MissingSchemaError", err)
	}
	// Until migrations/pgmq/compat.sql exists the pgmq objects are legitimately absent; anything
	// else missing is a bug in our schema.
	for _, m := range mse.Missing {
		if !strings.Contains(m, "pgmq") || strings.Contains(m, "tasker.") {
			t.Errorf("Check reports tasker object missing after Up: %s", m)
		}
	}
	if !t.Failed() {
		t.Skipf("tasker schema complete; pgmq objects missing (compat.sql not written yet): %v", mse.Missing)
	}
}

func TestMigrationsCheckEmptyDatabase(t *testing.T) {
	pool := migPool(t, testdb.NewEmptyURL(t))
	err := migrations.Check(migCtx(t), pool)
	var mse *migrations.MissingSchemaError
	if !errors.As(err, &mse) {
		t.Fatalf("Check on empty database = %v, want *MissingSchemaError", err)
	}
	for _, want := range []string{"schema tasker", "tasker.workflow_steps", "tasker.tasks",
		"function tasker.get_step_readiness_status", "function tasker.pgmq_send_with_notify",
		"schema pgmq", "function pgmq.send", "unique index tasker.idx_workflow_step_transitions_uuid_most_recent"} {
		found := false
		for _, m := range mse.Missing {
			if m == want {
				found = true
			}
		}
		if !found {
			t.Errorf("Missing does not name %q: %v", want, mse.Missing)
		}
	}
	if !strings.Contains(err.Error(), "tasker migrate") {
		t.Errorf("error does not tell how to fix it: %v", err)
	}
}

func TestMigrationsCheckReportsMissingObjects(t *testing.T) {
	_, pool := testdb.New(t)
	mustExec(t, pool, `ALTER TABLE tasker.workflow_steps DROP COLUMN checkpoint`)
	mustExec(t, pool, `DROP INDEX tasker.idx_task_transitions_uuid_most_recent`)
	err := migrations.Check(migCtx(t), pool)
	var mse *migrations.MissingSchemaError
	if !errors.As(err, &mse) {
		t.Fatalf("Check = %v, want *MissingSchemaError", err)
	}
	want := []string{"tasker.workflow_steps.checkpoint", "unique index tasker.idx_task_transitions_uuid_most_recent"}
	if !reflect.DeepEqual(mse.Missing, want) {
		t.Errorf("Missing = %v, want exactly %v", mse.Missing, want)
	}
}

// ---------------------------------------------------------------------------------------------
// UUID v7
// ---------------------------------------------------------------------------------------------

func TestMigrationsUUIDv7(t *testing.T) {
	_, pool := testdb.New(t)
	if v := mustScalar[string](t, pool, `SELECT provolatile::text FROM pg_proc WHERE oid = 'tasker.uuid_generate_v7()'::regprocedure`); v != "v" {
		t.Fatalf("tasker.uuid_generate_v7 volatility = %q, want v (VOLATILE)", v)
	}
	// Every primary key default uses it (pg_depend links each column default to the function).
	defaults := mustScalar[int64](t, pool, `SELECT count(*) FROM pg_depend d
		JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
		JOIN pg_index i ON i.indrelid = ad.adrelid AND i.indisprimary AND i.indkey[0] = ad.adnum
		WHERE d.refobjid = 'tasker.uuid_generate_v7()'::regprocedure`)
	if defaults != 11 {
		t.Errorf("%d primary keys default to tasker.uuid_generate_v7(), want 11", defaults)
	}

	mustExec(t, pool, `CREATE TABLE public.v7_probe (seq int PRIMARY KEY, id uuid NOT NULL DEFAULT tasker.uuid_generate_v7())`)
	before := time.Now().Add(-2 * time.Second)
	mustExec(t, pool, `INSERT INTO public.v7_probe (seq) SELECT g FROM generate_series(1, 2000) g`)
	after := time.Now().Add(2 * time.Second)

	rows, err := pool.Query(migCtx(t), `SELECT id::text FROM public.v7_probe ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var prev uint64
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate uuid %s at row %d", id, i)
		}
		seen[id] = true
		raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
		if err != nil || len(raw) != 16 {
			t.Fatalf("bad uuid %q", id)
		}
		if raw[6]>>4 != 7 {
			t.Fatalf("uuid %s has version %d", id, raw[6]>>4)
		}
		if raw[8]>>6 != 2 {
			t.Fatalf("uuid %s has variant bits %02b", id, raw[8]>>6)
		}
		var ms uint64
		for _, b := range raw[:6] {
			ms = ms<<8 | uint64(b)
		}
		ts := time.UnixMilli(int64(ms))
		if ts.Before(before) || ts.After(after) {
			t.Fatalf("uuid %s carries time %v, outside [%v, %v]", id, ts, before, after)
		}
		// 48-bit milliseconds plus the 12-bit sub-millisecond fraction (native uuidv7 on
		// PostgreSQL 18 fills these bits the same way).
		stamp := ms<<12 | uint64(raw[6]&0x0f)<<8 | uint64(raw[7])
		if stamp < prev {
			t.Fatalf("row %d: uuid %s is older than the previous row's", i, id)
		}
		prev = stamp
	}
}

// ---------------------------------------------------------------------------------------------
// DAG functions
// ---------------------------------------------------------------------------------------------

func TestMigrationsStepReadinessDiamond(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	a, b, c, d := f.steps["A"], f.steps["B"], f.steps["C"], f.steps["D"]

	r := readinessByStep(t, pool, readinessSQL, f.task, nil)
	if len(r) != 4 {
		t.Fatalf("readiness returned %d rows, want 4", len(r))
	}
	want := map[string]readiness{
		a: {State: "pending", DepsOK: true, RetryOK: true, Ready: true, TotalParents: 0},
		b: {State: "pending", DepsOK: false, RetryOK: true, Ready: false, TotalParents: 1},
		c: {State: "pending", DepsOK: false, RetryOK: true, Ready: false, TotalParents: 1},
		d: {State: "pending", DepsOK: false, RetryOK: true, Ready: false, TotalParents: 2},
	}
	for id, w := range want {
		if r[id] != w {
			t.Errorf("before: step %s = %+v, want %+v", id, r[id], w)
		}
	}
	ctxRow := func() (string, int64, int64) {
		var status string
		var total, ready int64
		if err := pool.QueryRow(migCtx(t), `SELECT execution_status, total_steps, ready_steps
			FROM tasker.get_task_execution_context($1)`, f.task).Scan(&status, &total, &ready); err != nil {
			t.Fatal(err)
		}
		return status, total, ready
	}
	if s, total, ready := ctxRow(); s != "has_ready_steps" || total != 4 || ready != 1 {
		t.Errorf("execution context = %s total=%d ready=%d, want has_ready_steps 4 1", s, total, ready)
	}

	// In flight: A is claimed, nothing else becomes ready.
	stepTransition(t, pool, a, "enqueued", `{}`)
	if s, _, ready := ctxRow(); s != "processing" || ready != 0 {
		t.Errorf("with A enqueued: execution context = %s ready=%d, want processing 0", s, ready)
	}

	completeStep(t, pool, a, `{"value": 1}`)
	r = readinessByStep(t, pool, readinessSQL, f.task, nil)
	if r[a].Ready || r[a].State != "complete" {
		t.Errorf("after A: A = %+v, want complete and not ready", r[a])
	}
	for _, id := range []string{b, c} {
		if w := (readiness{State: "pending", DepsOK: true, RetryOK: true, Ready: true, TotalParents: 1, CompletedParnt: 1}); r[id] != w {
			t.Errorf("after A: child %s = %+v, want %+v", id, r[id], w)
		}
	}
	if r[d].Ready || r[d].DepsOK || r[d].CompletedParnt != 0 {
		t.Errorf("after A: D = %+v, want not ready with 0 completed parents", r[d])
	}

	completeStep(t, pool, b, `{"value": 2}`)
	r = readinessByStep(t, pool, readinessSQL, f.task, nil)
	if r[d].Ready || r[d].CompletedParnt != 1 {
		t.Errorf("after A,B: D = %+v, want not ready with 1 completed parent", r[d])
	}

	completeStep(t, pool, c, `{"value": 3}`)
	// Filtered to D alone: its parents are judged by their real state although they are
	// outside the filter.
	r = readinessByStep(t, pool, readinessSQL, f.task, []string{d})
	if len(r) != 1 || !r[d].Ready || r[d].CompletedParnt != 2 {
		t.Errorf("after A,B,C (filtered): %+v, want only D, ready, 2 completed parents", r)
	}

	completeStep(t, pool, d, `{"value": 4}`)
	if s, total, ready := ctxRow(); s != "all_complete" || total != 4 || ready != 0 {
		t.Errorf("all done: execution context = %s total=%d ready=%d, want all_complete 4 0", s, total, ready)
	}

	rows, err := pool.Query(migCtx(t), `SELECT workflow_step_uuid::text, dependency_level FROM tasker.calculate_dependency_levels($1)`, f.task)
	if err != nil {
		t.Fatal(err)
	}
	levels := map[string]int32{}
	for rows.Next() {
		var id string
		var lvl int32
		if err := rows.Scan(&id, &lvl); err != nil {
			t.Fatal(err)
		}
		levels[id] = lvl
	}
	if want := map[string]int32{a: 0, b: 1, c: 1, d: 2}; !reflect.DeepEqual(levels, want) {
		t.Errorf("dependency levels = %v, want %v", levels, want)
	}
}

func TestMigrationsStepReadinessRetry(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	a := f.steps["A"]

	// A failed once and asked for a 60 s backoff: waiting, not ready.
	stepTransition(t, pool, a, "waiting_for_retry", `{}`)
	mustExec(t, pool, `UPDATE tasker.workflow_steps SET attempts = 1, max_attempts = 3,
		backoff_request_seconds = 60, last_attempted_at = now() WHERE workflow_step_uuid = $1`, a)
	r := readinessByStep(t, pool, readinessSQL, f.task, []string{a})
	if r[a].Ready || !r[a].RetryOK {
		t.Errorf("in backoff: %+v, want retry-eligible but not ready", r[a])
	}
	// Backoff over.
	mustExec(t, pool, `UPDATE tasker.workflow_steps SET last_attempted_at = now() - interval '61 seconds' WHERE workflow_step_uuid = $1`, a)
	if r = readinessByStep(t, pool, readinessSQL, f.task, []string{a}); !r[a].Ready {
		t.Errorf("after backoff: %+v, want ready", r[a])
	}
	// Attempts exhausted.
	mustExec(t, pool, `UPDATE tasker.workflow_steps SET attempts = 3 WHERE workflow_step_uuid = $1`, a)
	if r = readinessByStep(t, pool, readinessSQL, f.task, []string{a}); r[a].Ready || r[a].RetryOK {
		t.Errorf("attempts exhausted: %+v, want not eligible", r[a])
	}
	// An error step blocks the task.
	stepTransition(t, pool, a, "error", `{}`)
	if s := mustScalar[string](t, pool, `SELECT execution_status FROM tasker.get_task_execution_context($1)`, f.task); s != "blocked_by_failures" {
		t.Errorf("execution_status with an error step = %s, want blocked_by_failures", s)
	}
}

func TestMigrationsTransitiveDependenciesDiamond(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	completeStep(t, pool, f.steps["A"], `{"a": 1}`)
	completeStep(t, pool, f.steps["B"], `{"b": 2}`)
	completeStep(t, pool, f.steps["C"], `{"c": 3}`)

	rows, err := pool.Query(migCtx(t), `SELECT workflow_step_uuid::text, task_uuid::text, step_name, results, processed, distance
		FROM tasker.get_step_transitive_dependencies($1)`, f.steps["D"])
	if err != nil {
		t.Fatal(err)
	}
	type dep struct {
		step, task, name string
		results          map[string]int
		processed        bool
		distance         int32
	}
	var deps []dep
	for rows.Next() {
		var d dep
		if err := rows.Scan(&d.step, &d.task, &d.name, &d.results, &d.processed, &d.distance); err != nil {
			t.Fatal(err)
		}
		deps = append(deps, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// B and C at distance 1 (ordered by uuid), then A once per path at distance 2.
	if len(deps) != 4 {
		t.Fatalf("got %d rows, want 4 (B, C, A, A): %+v", len(deps), deps)
	}
	first, second := f.steps["B"], f.steps["C"]
	if second < first {
		first, second = second, first
	}
	wantSteps := []string{first, second, f.steps["A"], f.steps["A"]}
	wantDist := []int32{1, 1, 2, 2}
	for i, d := range deps {
		if d.step != wantSteps[i] || d.distance != wantDist[i] || d.task != f.task || !d.processed {
			t.Errorf("row %d = %+v, want step %s distance %d", i, d, wantSteps[i], wantDist[i])
		}
	}
	if deps[2].results["a"] != 1 || !strings.HasPrefix(deps[2].name, "A_") {
		t.Errorf("ancestor A row = %+v", deps[2])
	}
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.get_step_transitive_dependencies($1)`, f.steps["A"]); n != 0 {
		t.Errorf("root has %d dependencies, want 0", n)
	}
	// The worker's own ancestry read (the function written out) finds the same results by name.
	got, err := state.DependencyResults(migCtx(t), pool, uuid.MustParse(f.steps["D"]))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("DependencyResults of D = %v, want A, B and C", got)
	}
	for _, d := range deps {
		if _, ok := got[d.name]; !ok {
			t.Errorf("DependencyResults of D has no %s; the function lists it", d.name)
		}
	}

	var parents, children []string
	var isRoot, isLeaf bool
	var depth int32
	if err := pool.QueryRow(migCtx(t), `SELECT parent_step_uuids, child_step_uuids, is_root_step, is_leaf_step, min_depth_from_root
		FROM tasker.step_dag_relationships WHERE workflow_step_uuid = $1`, f.steps["D"]).Scan(&parents, &children, &isRoot, &isLeaf, &depth); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parents, []string{first, second}) || len(children) != 0 || isRoot || !isLeaf || depth != 2 {
		t.Errorf("step_dag_relationships(D) = parents %v children %v root %v leaf %v depth %d", parents, children, isRoot, isLeaf, depth)
	}
}

// ---------------------------------------------------------------------------------------------
// Task state, staleness, audit
// ---------------------------------------------------------------------------------------------

func TestMigrationsTaskStateFunctions(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	mustExec(t, pool, `INSERT INTO tasker.task_transitions (task_uuid, to_state, sort_key, most_recent, metadata, created_at, updated_at)
		VALUES ($1, 'pending', 1, true, '{"initial_state":"pending"}', now(), now())`, f.task)

	ready := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.get_next_ready_tasks(5) WHERE task_uuid = $1`, f.task)
	if ready != 1 {
		t.Errorf("pending task not discovered by get_next_ready_tasks")
	}
	if n := mustScalar[int64](t, pool, `SELECT ready_steps_count FROM tasker.get_task_ready_info($1)`, f.task); n != 1 {
		t.Errorf("get_task_ready_info ready_steps_count = %d, want 1", n)
	}

	cas := `SELECT tasker.transition_task_state_atomic($1, 'pending', 'initializing', tasker.uuid_generate_v7(), '{"by":"test"}')`
	if !mustScalar[bool](t, pool, cas, f.task) {
		t.Fatal("first CAS pending->initializing returned false")
	}
	if mustScalar[bool](t, pool, cas, f.task) {
		t.Error("second identical CAS returned true")
	}
	if s := mustScalar[string](t, pool, `SELECT tasker.get_current_task_state($1)`, f.task); s != "initializing" {
		t.Errorf("current state = %s, want initializing", s)
	}
	if m := mustScalar[string](t, pool, `SELECT transition_metadata->>'by' FROM tasker.task_transitions WHERE task_uuid = $1 AND most_recent`, f.task); m != "test" {
		t.Errorf("transition_metadata not written: %q", m)
	}
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $1`, f.task); n != 2 {
		t.Errorf("%d task transitions, want 2", n)
	}
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.get_next_ready_tasks(5) WHERE task_uuid = $1`, f.task); n != 0 {
		t.Error("initializing task still discovered")
	}

	// Concurrent CAS from the same state: exactly one wins.
	const racers = 8
	var wg sync.WaitGroup
	wins := make([]bool, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pool.QueryRow(migCtx(t), `SELECT tasker.transition_task_state_atomic($1, 'initializing', 'enqueuing_steps', NULL)`, f.task).Scan(&wins[i])
		}()
	}
	wg.Wait()
	won := 0
	for i := range racers {
		if errs[i] != nil {
			t.Errorf("racer %d: %v", i, errs[i])
		}
		if wins[i] {
			won++
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent CAS calls succeeded, want 1", won)
	}
}

func TestMigrationsStalenessDetection(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	mustExec(t, pool, `INSERT INTO tasker.task_transitions (task_uuid, to_state, sort_key, most_recent, created_at, updated_at)
		VALUES ($1, 'steps_in_process', 1, true, now() - interval '2 hours', now() - interval '2 hours')`, f.task)

	var action string
	var moved, ok bool
	if err := pool.QueryRow(migCtx(t), `SELECT action_taken, moved_to_dlq, transition_success
		FROM tasker.detect_and_transition_stale_tasks(true, 10, 60, 30, 30, 24) WHERE task_uuid = $1`, f.task).Scan(&action, &moved, &ok); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if action != "would_transition_to_dlq_and_error" || moved || ok {
		t.Errorf("dry run = %s %v %v", action, moved, ok)
	}
	if s := mustScalar[string](t, pool, `SELECT tasker.get_current_task_state($1)`, f.task); s != "steps_in_process" {
		t.Errorf("dry run changed state to %s", s)
	}

	if err := pool.QueryRow(migCtx(t), `SELECT action_taken, moved_to_dlq, transition_success
		FROM tasker.detect_and_transition_stale_tasks(false, 10, 60, 30, 30, 24) WHERE task_uuid = $1`, f.task).Scan(&action, &moved, &ok); err != nil {
		t.Fatalf("real run: %v", err)
	}
	if action != "transitioned_to_dlq_and_error" || !moved || !ok {
		t.Errorf("real run = %s %v %v", action, moved, ok)
	}
	if s := mustScalar[string](t, pool, `SELECT tasker.get_current_task_state($1)`, f.task); s != "error" {
		t.Errorf("state after staleness = %s, want error", s)
	}
	var reason, snapNS string
	if err := pool.QueryRow(migCtx(t), `SELECT dlq_reason::text, task_snapshot->>'namespace' FROM tasker.tasks_dlq WHERE task_uuid = $1`, f.task).Scan(&reason, &snapNS); err != nil {
		t.Fatal(err)
	}
	if reason != "staleness_timeout" || !strings.HasPrefix(snapNS, "ns_") {
		t.Errorf("dlq entry = %s %s", reason, snapNS)
	}
	// A second entry for the same task is refused quietly.
	if v := mustScalar[*string](t, pool, `SELECT tasker.create_dlq_entry($1, 'x', 'y', 'error', 1, 1)::text`, f.task); v != nil {
		t.Errorf("second pending DLQ entry created: %s", *v)
	}
	// updated_at trigger.
	mustExec(t, pool, `UPDATE tasker.tasks_dlq SET updated_at = '2000-01-01', resolution_notes = 'n' WHERE task_uuid = $1`, f.task)
	if y := mustScalar[float64](t, pool, `SELECT extract(year FROM updated_at) FROM tasker.tasks_dlq WHERE task_uuid = $1`, f.task); y == 2000 {
		t.Error("update_dlq_updated_at trigger did not refresh updated_at")
	}
}

func TestMigrationsResultAuditTrigger(t *testing.T) {
	_, pool := testdb.New(t)
	f := buildDiamond(t, pool)
	worker := mustScalar[string](t, pool, `SELECT tasker.uuid_generate_v7()::text`)
	corr := mustScalar[string](t, pool, `SELECT correlation_id::text FROM tasker.tasks WHERE task_uuid = $1`, f.task)

	metadata := func(eventType string, success bool, millis int, workerUUID string) string {
		event, _ := json.Marshal(map[string]any{"type": eventType, "data": map[string]any{
			"step_uuid": f.steps["A"], "success": success, "result": map[string]any{},
			"metadata": map[string]any{"execution_time_ms": millis}}})
		m, _ := json.Marshal(map[string]any{"event": string(event), "timestamp": time.Now().UTC().Format(time.RFC3339),
			"worker_uuid": workerUUID, "correlation_id": corr})
		return string(m)
	}

	stepTransition(t, pool, f.steps["A"], "in_progress", `{"event":"{\"type\":\"Start\"}"}`)
	stepTransition(t, pool, f.steps["A"], "enqueued_for_orchestration", metadata("EnqueueForOrchestration", true, 42, worker))
	// A failure recorded with a worker id that is not a uuid.
	stepTransition(t, pool, f.steps["B"], "in_progress", `{}`)
	stepTransition(t, pool, f.steps["B"], "enqueued_as_error_for_orchestration", metadata("EnqueueAsErrorForOrchestration", false, 7, "worker_not-a-uuid"))

	type audit struct {
		task    string
		worker  *string
		corr    *string
		success bool
		millis  *int64
	}
	get := func(step string) audit {
		var a audit
		if err := pool.QueryRow(migCtx(t), `SELECT task_uuid::text, worker_uuid::text, correlation_id::text, success, execution_time_ms
			FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = $1`, step).Scan(&a.task, &a.worker, &a.corr, &a.success, &a.millis); err != nil {
			t.Fatalf("audit row for %s: %v", step, err)
		}
		return a
	}
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.workflow_step_result_audit`); n != 2 {
		t.Errorf("%d audit rows, want 2 (only result transitions are audited)", n)
	}
	a := get(f.steps["A"])
	if a.task != f.task || a.worker == nil || *a.worker != worker || a.corr == nil || *a.corr != corr || !a.success || a.millis == nil || *a.millis != 42 {
		t.Errorf("audit A = %+v", a)
	}
	b := get(f.steps["B"])
	if b.worker != nil || b.success || b.millis == nil || *b.millis != 7 {
		t.Errorf("audit B = %+v", b)
	}
}

// ---------------------------------------------------------------------------------------------
// PGMQ notification helpers
// ---------------------------------------------------------------------------------------------

type notifyPayload struct {
	EventType      string          `json:"event_type"`
	MsgID          int64           `json:"msg_id"`
	MsgIDs         []int64         `json:"msg_ids"`
	QueueName      string          `json:"queue_name"`
	Namespace      string          `json:"namespace"`
	Message        json.RawMessage `json:"message"`
	ReadyAt        time.Time       `json:"ready_at"`
	CreatedAt      time.Time       `json:"created_at"`
	DelaySeconds   *int            `json:"delay_seconds"`
	PayloadOmitted bool            `json:"payload_omitted"`
	MessageCount   int             `json:"message_count"`
	MsgIDsOmitted  bool            `json:"msg_ids_omitted"`
}

func listen(t *testing.T, url string, channels ...string) *pgx.Conn {
	t.Helper()
	conn, err := db.ConnectOne(migCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	for _, ch := range channels {
		if _, err := conn.Exec(migCtx(t), "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			t.Fatalf("LISTEN %s: %v", ch, err)
		}
	}
	return conn
}

func nextNotification(t *testing.T, conn *pgx.Conn) (string, notifyPayload, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	var p notifyPayload
	if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
		t.Fatalf("notification on %s is not valid JSON (%v): %.200s", n.Channel, err, n.Payload)
	}
	return n.Channel, p, n.Payload
}

func TestMigrationsExtractQueueNamespace(t *testing.T) {
	_, pool := testdb.New(t)
	for in, want := range map[string]string{
		"orchestration_step_results": "orchestration",
		"worker_fulfillment_queue":   "fulfillment",
		"worker_a_b_queue":           "a_b",
		"fulfillment_queue":          "fulfillment",
		"something_else":             "default",
		"9lives_queue":               "default",
	} {
		if got := mustScalar[string](t, pool, `SELECT tasker.extract_queue_namespace($1)`, in); got != want {
			t.Errorf("extract_queue_namespace(%q) = %q, want %q", in, got, want)
		}
	}
	if got := mustScalar[int32](t, pool, `SELECT tasker.pgmq_payload_size_threshold()`); got != 7000 {
		t.Errorf("pgmq_payload_size_threshold = %d", got)
	}
}

func TestMigrationsPgmqSendWithNotify(t *testing.T) {
	url, pool := testdb.New(t)
	if !hasPgmqSend(t, pool) {
		t.Skip("pgmq.send does not exist yet (migrations/pgmq/compat.sql not written and no pgmq extension); notify test skipped")
	}
	const queue = "worker_fulfillment_queue"

	created := listen(t, url, "pgmq_queue_created")
	mustExec(t, pool, `SELECT pgmq.create($1)`, queue)
	if ch, p, _ := nextNotification(t, created); ch != "pgmq_queue_created" || p.EventType != "queue_created" ||
		p.QueueName != queue || p.Namespace != "fulfillment" || p.CreatedAt.IsZero() {
		t.Errorf("queue_created notification = %s %+v", ch, p)
	}

	conn := listen(t, url, "pgmq_message_ready.fulfillment", "pgmq_message_ready")
	msg := `{"task_uuid":"0190c5c2-0000-7000-8000-000000000001","step_uuid":"0190c5c2-0000-7000-8000-000000000002","correlation_id":"0190c5c2-0000-7000-8000-000000000003"}`
	sent := time.Now()
	id := mustScalar[int64](t, pool, `SELECT tasker.pgmq_send_with_notify($1, $2::jsonb, 0)`, queue, msg)

	seen := map[string]bool{}
	for range 2 {
		ch, p, raw := nextNotification(t, conn)
		seen[ch] = true
		if p.EventType != "message_with_payload" || p.MsgID != id || p.QueueName != queue || p.Namespace != "fulfillment" ||
			p.DelaySeconds == nil || *p.DelaySeconds != 0 {
			t.Errorf("%s payload = %s", ch, raw)
		}
		var got, want map[string]any
		_ = json.Unmarshal(p.Message, &got)
		_ = json.Unmarshal([]byte(msg), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s message = %s, want %s", ch, p.Message, msg)
		}
		if p.ReadyAt.Before(sent.Add(-5*time.Second)) || p.ReadyAt.After(time.Now().Add(5*time.Second)) {
			t.Errorf("%s ready_at = %v", ch, p.ReadyAt)
		}
	}
	if !seen["pgmq_message_ready.fulfillment"] || !seen["pgmq_message_ready"] {
		t.Errorf("notified channels %v, want the namespace and the global channel", seen)
	}

	// A large message travels as a signal and is fetched with pgmq_read_specific_message.
	big := `{"blob":"` + strings.Repeat("x", 8000) + `"}`
	bigID := mustScalar[int64](t, pool, `SELECT tasker.pgmq_send_with_notify($1, $2::jsonb)`, queue, big)
	_, p, raw := nextNotification(t, conn)
	if p.EventType != "message_ready" || p.MsgID != bigID || !p.PayloadOmitted || p.Message != nil {
		t.Errorf("large message payload = %.300s", raw)
	}
	_, _, _ = nextNotification(t, conn) // global copy

	var readID int64
	var readCt int32
	var body string
	if err := pool.QueryRow(migCtx(t), `SELECT msg_id, read_ct, message::text FROM tasker.pgmq_read_specific_message($1, $2, 30)`, queue, bigID).Scan(&readID, &readCt, &body); err != nil {
		t.Fatalf("pgmq_read_specific_message: %v", err)
	}
	if readID != bigID || readCt != 1 || !strings.Contains(body, "xxxx") {
		t.Errorf("read specific = %d %d", readID, readCt)
	}
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.pgmq_read_specific_message($1, $2, 30)`, queue, bigID); n != 0 {
		t.Error("an invisible message was read again")
	}
	if !mustScalar[bool](t, pool, `SELECT tasker.pgmq_extend_vt_specific_message($1, $2, 120)`, queue, bigID) {
		t.Error("extend_vt of an existing message returned false")
	}
	if !mustScalar[bool](t, pool, `SELECT tasker.pgmq_delete_specific_message($1, $2)`, queue, bigID) {
		t.Error("delete of an existing message returned false")
	}
	if mustScalar[bool](t, pool, `SELECT tasker.pgmq_delete_specific_message($1, $2)`, queue, bigID) {
		t.Error("second delete returned true")
	}
	if _, err := pool.Exec(migCtx(t), `SELECT * FROM tasker.pgmq_read_specific_message('bad; drop table x', 1)`); err == nil ||
		!strings.Contains(err.Error(), "Invalid queue name") {
		t.Errorf("bad queue name accepted: %v", err)
	}
	if _, err := pool.Exec(migCtx(t), `SELECT tasker.pgmq_delete_specific_message('no_such_queue', 1)`); err == nil ||
		!strings.Contains(err.Error(), "Queue does not exist") {
		t.Errorf("missing queue accepted: %v", err)
	}
}

func TestMigrationsPgmqSendBatchWithNotify(t *testing.T) {
	url, pool := testdb.New(t)
	if !hasPgmqSend(t, pool) {
		t.Skip("pgmq.send does not exist yet (migrations/pgmq/compat.sql not written and no pgmq extension); notify test skipped")
	}
	const queue = "orchestration_step_results"
	mustExec(t, pool, `SELECT pgmq.create($1)`, queue)
	conn := listen(t, url, "pgmq_message_ready.orchestration")

	rows, err := pool.Query(migCtx(t), `SELECT * FROM tasker.pgmq_send_batch_with_notify($1, ARRAY['{"n":1}','{"n":2}','{"n":3}']::jsonb[])`, queue)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	_, p, raw := nextNotification(t, conn)
	if p.EventType != "batch_ready" || !reflect.DeepEqual(p.MsgIDs, ids) || p.MessageCount != 3 || p.MsgIDsOmitted {
		t.Errorf("batch payload = %s (ids %v)", raw, ids)
	}

	// So many ids that the list would not fit: still valid JSON, ids omitted, count kept.
	n := mustScalar[int64](t, pool, `SELECT count(*) FROM tasker.pgmq_send_batch_with_notify($1,
		(SELECT array_agg(jsonb_build_object('n', g)) FROM generate_series(1, 2000) g))`, queue)
	_, p, raw = nextNotification(t, conn)
	if n != 2000 || p.EventType != "batch_ready" || !p.MsgIDsOmitted || len(p.MsgIDs) != 0 || p.MessageCount != 2000 || len(raw) > 8000 {
		t.Errorf("large batch: sent %d, payload %.300s", n, raw)
	}
}
