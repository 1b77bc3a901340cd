package integration

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/orchestration"
)

const fnYAML = `
name: fn_task
namespace_name: fnq
version: 1.0.0
steps:
  - name: alpha
    handler: {callable: fn.alpha}
  - name: beta
    dependencies: [alpha]
    handler: {callable: fn.beta}
`

// fnData is a database with known analytics: three fnq/fn_task@1.0.0 tasks whose steps alpha
// (created with the task) and beta (created 1s after it) finished at fixed offsets from the
// task's creation:
//
//	T1: alpha complete +2s, beta complete +4s
//	T2: alpha complete +6s, beta error +8s (results.error set)
//	T3: untouched (steps_in_process, alpha enqueued)
type fnData struct {
	o          *orchestration.Orchestrator
	t1, t2, t3 *orchestration.CreatedTask
}

func fnSetup(t *testing.T, pool *pgxpool.Pool) fnData {
	t.Helper()
	orchRegister(t, pool, fnYAML)
	o := orchNew(t, pool, nil)
	var d fnData
	d.o = o
	d.t1 = orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 1}`))
	d.t2 = orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 2}`))
	d.t3 = orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 3}`))
	for _, ct := range []*orchestration.CreatedTask{d.t1, d.t2, d.t3} {
		mustExec(t, pool, `UPDATE tasker.workflow_steps ws SET created_at = t.created_at
			FROM tasker.tasks t WHERE t.task_uuid = ws.task_uuid AND ws.workflow_step_uuid = $1`, ct.Steps["alpha"])
		mustExec(t, pool, `UPDATE tasker.workflow_steps ws SET created_at = t.created_at + interval '1 second'
			FROM tasker.tasks t WHERE t.task_uuid = ws.task_uuid AND ws.workflow_step_uuid = $1`, ct.Steps["beta"])
	}
	fnFinish(t, pool, d.t1.Steps["alpha"], "complete", 2)
	fnFinish(t, pool, d.t1.Steps["beta"], "complete", 4)
	fnFinish(t, pool, d.t2.Steps["alpha"], "complete", 6)
	fnFinish(t, pool, d.t2.Steps["beta"], "error", 8)
	mustExec(t, pool, `UPDATE tasker.workflow_steps SET results = '{"success": false, "error": {"error_type": "HandlerError", "retryable": false, "status_code": 503}}'
		WHERE workflow_step_uuid = $1`, d.t2.Steps["beta"])
	return d
}

// fnFinish makes the step's current transition a move to state secs seconds after its task was
// created.
func fnFinish(t *testing.T, pool *pgxpool.Pool, step uuid.UUID, state string, secs int) {
	t.Helper()
	mustExec(t, pool, `WITH old AS (
		UPDATE tasker.workflow_step_transitions SET most_recent = false
		 WHERE workflow_step_uuid = $1 AND most_recent RETURNING to_state, sort_key)
		INSERT INTO tasker.workflow_step_transitions
		       (workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at)
		SELECT $1, $2, (SELECT to_state FROM old),  '{}', COALESCE((SELECT sort_key FROM old), 0) + 1, true,
		       t.created_at + make_interval(secs => $3), now()
		  FROM tasker.workflow_steps ws JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
		 WHERE ws.workflow_step_uuid = $1`, step, state, secs)
}

// fnRows runs sql and returns every row as column -> value text (NULL as nil).
func fnRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []map[string]any {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (map[string]any, error) {
		vals, err := r.Values()
		if err != nil {
			return nil, err
		}
		m := map[string]any{}
		for i, f := range r.FieldDescriptions() {
			m[f.Name] = vals[i]
		}
		return m, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// fnText renders the selected columns of each row as "a|b|c" (NULL as "∅").
func fnText(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		vals, err := r.Values()
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case nil:
				parts[i] = "∅"
			case [16]byte:
				parts[i] = uuid.UUID(x).String()
			default:
				b, _ := json.Marshal(x)
				parts[i] = strings.Trim(string(b), `"`)
			}
		}
		return strings.Join(parts, "|"), err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func fnExpect(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func TestFunctionsSlowestStepsAndTasks(t *testing.T) {
	_, pool := testdb.New(t)
	d := fnSetup(t, pool)
	t1, t2 := d.t1.TaskUUID.String(), d.t2.TaskUUID.String()

	fnExpect(t, "get_slowest_steps", fnText(t, pool, `SELECT task_uuid, step_name, task_name, namespace_name, version,
		duration_seconds::text, attempts, retryable, step_status, completed_at - created_at = duration_seconds * interval '1 second'
		FROM tasker.get_slowest_steps()`), []string{
		t2 + "|alpha|fn_task|fnq|1.0.0|6.000|∅|true|complete|true",
		t1 + "|beta|fn_task|fnq|1.0.0|3.000|∅|true|complete|true",
		t1 + "|alpha|fn_task|fnq|1.0.0|2.000|∅|true|complete|true",
	})
	fnExpect(t, "get_slowest_steps limit 1, filters", fnText(t, pool,
		`SELECT step_name, duration_seconds::text FROM tasker.get_slowest_steps(NULL, 1, 'fnq', 'fn_task', '1.0.0')`),
		[]string{"alpha|6.000"})
	fnExpect(t, "get_slowest_steps other namespace", fnText(t, pool,
		`SELECT step_name FROM tasker.get_slowest_steps(NULL, 10, 'other')`), nil)
	fnExpect(t, "get_slowest_steps since now", fnText(t, pool,
		`SELECT step_name FROM tasker.get_slowest_steps(now() + interval '1 minute')`), nil)

	fnExpect(t, "get_slowest_steps_aggregated", fnText(t, pool, `SELECT namespace_name, task_name, version, step_name,
		average_duration_seconds::text, max_duration_seconds::text, execution_count, error_count, error_rate::text,
		last_executed_at IS NOT NULL FROM tasker.get_slowest_steps_aggregated(NULL, 10, 1)`), []string{
		"fnq|fn_task|1.0.0|beta|5.000|7.000|2|1|0.5000|true",
		"fnq|fn_task|1.0.0|alpha|4.000|6.000|2|0|0.0000|true",
	})
	fnExpect(t, "get_slowest_steps_aggregated default min_executions 5", fnText(t, pool,
		`SELECT step_name FROM tasker.get_slowest_steps_aggregated()`), nil)

	fnExpect(t, "get_slowest_tasks", fnText(t, pool, `SELECT task_uuid, task_name, namespace_name, version,
		duration_seconds::text, step_count, completed_steps, error_steps, initiator, source_system
		FROM tasker.get_slowest_tasks()`), []string{
		t2 + "|fn_task|fnq|1.0.0|8.000|2|1|1|integration-test|test",
		t1 + "|fn_task|fnq|1.0.0|4.000|2|2|0|integration-test|test",
	})
	fnExpect(t, "get_slowest_tasks_aggregated", fnText(t, pool, `SELECT namespace_name, task_name, version,
		average_duration_seconds::text, max_duration_seconds::text, execution_count, average_step_count::text,
		total_error_steps, error_rate::text FROM tasker.get_slowest_tasks_aggregated(NULL, 10, 2)`), []string{
		"fnq|fn_task|1.0.0|6.000|8.000|2|2.00|1|0.5000",
	})
	fnExpect(t, "get_slowest_tasks_aggregated min 3", fnText(t, pool,
		`SELECT task_name FROM tasker.get_slowest_tasks_aggregated(NULL, 10, 3)`), nil)
}

func TestFunctionsAnalyticsMetrics(t *testing.T) {
	_, pool := testdb.New(t)
	fnSetup(t, pool)
	fnExpect(t, "get_analytics_metrics", fnText(t, pool, `SELECT active_tasks_count, total_namespaces_count,
		unique_task_types_count, system_health_score::text, task_throughput, completion_count, error_count,
		completion_rate::text, error_rate::text, avg_task_duration::text, avg_step_duration::text, step_throughput,
		round(extract(epoch FROM calculated_at - analysis_period_start))
		FROM tasker.get_analytics_metrics()`), []string{"1|1|1|0.667|3|2|1|66.67|33.33|4.000|3.667|6|3600"})
	// A period that starts after the tasks were created has no throughput; the health score and
	// the active count do not depend on the period.
	fnExpect(t, "get_analytics_metrics(now)", fnText(t, pool, `SELECT active_tasks_count, system_health_score::text,
		task_throughput, completion_rate::text, avg_task_duration::text, step_throughput
		FROM tasker.get_analytics_metrics(now() + interval '1 second')`), []string{"1|0.667|0|0.0|0.000|0"})
}

func TestFunctionsTaskSummaries(t *testing.T) {
	_, pool := testdb.New(t)
	d := fnSetup(t, pool)
	ctx := context.Background()

	rows := fnRows(t, pool, `SELECT * FROM tasker.get_task_summary($1)`, d.t2.TaskUUID)
	if len(rows) != 1 {
		t.Fatalf("get_task_summary rows = %d", len(rows))
	}
	r := rows[0]
	for k, want := range map[string]any{"task_name": "fn_task", "task_version": "1.0.0", "namespace_name": "fnq",
		"initiator": "integration-test", "source_system": "test", "reason": "orchestration test"} {
		if r[k] != want {
			t.Errorf("%s = %v, want %v", k, r[k], want)
		}
	}
	if got := r["task_uuid"].([16]byte); uuid.UUID(got) != d.t2.TaskUUID {
		t.Errorf("task_uuid = %v", got)
	}
	if got := r["correlation_id"].([16]byte); uuid.UUID(got) != d.t2.CorrelationID {
		t.Errorf("correlation_id = %v, want %v", got, d.t2.CorrelationID)
	}
	steps := r["step_summaries"].([]any)
	if len(steps) != 2 {
		t.Fatalf("step_summaries = %v", steps)
	}
	alpha, beta := steps[0].(map[string]any), steps[1].(map[string]any)
	wantKeys := []string{"attempts", "completed_at", "created_at", "current_state", "dependencies_satisfied",
		"error_retryable", "error_status_code", "error_type", "last_attempted_at", "max_attempts", "name",
		"retry_eligible", "step_uuid"}
	if got := orchKeys(beta); !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("step summary keys = %v, want %v", got, wantKeys)
	}
	if alpha["name"] != "alpha" || alpha["current_state"] != "complete" || alpha["error_type"] != nil ||
		alpha["step_uuid"] != d.t2.Steps["alpha"].String() || alpha["dependencies_satisfied"] != true {
		t.Errorf("alpha summary = %v", alpha)
	}
	if beta["name"] != "beta" || beta["current_state"] != "error" || beta["error_type"] != "HandlerError" ||
		beta["error_retryable"] != false || beta["error_status_code"] != float64(503) {
		t.Errorf("beta summary = %v", beta)
	}
	ec := r["execution_context"].(map[string]any)
	if ec["total_steps"] != float64(2) || ec["completed_steps"] != float64(1) || ec["failed_steps"] != float64(1) ||
		len(ec) != 9 {
		t.Errorf("execution_context = %v", ec)
	}
	if dlq := r["dlq_status"].(map[string]any); !reflect.DeepEqual(dlq, map[string]any{"in_dlq": false, "dlq_reason": nil, "resolution_status": nil}) {
		t.Errorf("dlq_status = %v", dlq)
	}

	var entry *uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT tasker.create_dlq_entry($1, 'fnq', 'fn_task', 'steps_in_process', 45, 30)`,
		d.t2.TaskUUID).Scan(&entry); err != nil || entry == nil {
		t.Fatalf("create_dlq_entry: %v %v", entry, err)
	}
	fnExpect(t, "get_task_summaries order and dlq", fnText(t, pool,
		`SELECT task_uuid, task_status, dlq_status FROM tasker.get_task_summaries($1)`,
		[]uuid.UUID{d.t3.TaskUUID, uuid.New(), d.t2.TaskUUID}), []string{
		d.t3.TaskUUID.String() + `|steps_in_process|{"dlq_reason":null,"in_dlq":false,"resolution_status":null}`,
		d.t2.TaskUUID.String() + `|steps_in_process|{"dlq_reason":"staleness_timeout","in_dlq":true,"resolution_status":"pending"}`,
	})
}

// TestFunctionsTaskerCoreCalls calls the functions exactly as tasker-core's SqlFunctionExecutor
// does (unqualified names on its search_path, its parameter types).
func TestFunctionsTaskerCoreCalls(t *testing.T) {
	_, pool := testdb.New(t)
	d := fnSetup(t, pool)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	mustConnExec := func(sql string) {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustConnExec(`SET search_path TO tasker, public`)
	since := time.Now().Add(-24 * time.Hour)
	calls := []struct {
		sql  string
		args []any
		rows int
	}{
		{"SELECT * FROM get_analytics_metrics($1)", []any{since}, 1},
		{"SELECT * FROM get_analytics_metrics()", nil, 1},
		{"SELECT * FROM get_slowest_steps(NULL::timestamp with time zone, $1, NULL, NULL, NULL)", []any{int32(10)}, 3},
		{"SELECT * FROM get_slowest_tasks(NULL::timestamp with time zone, $1, NULL, NULL, NULL)", []any{int32(10)}, 2},
		{"SELECT * FROM get_slowest_steps_aggregated(NULL::timestamp with time zone, $1, $2, NULL, NULL, NULL)", []any{int32(10), int32(1)}, 2},
		{"SELECT * FROM get_slowest_tasks_aggregated(NULL::timestamp with time zone, $1, $2, NULL, NULL, NULL)", []any{int32(10), int32(1)}, 1},
		{"SELECT * FROM get_task_summary($1)", []any{d.t1.TaskUUID}, 1},
		{"SELECT * FROM get_task_summaries($1::uuid[])", []any{[]uuid.UUID{d.t1.TaskUUID, d.t2.TaskUUID}}, 2},
	}
	for _, c := range calls {
		rows, err := conn.Query(ctx, c.sql, c.args...)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("%s: %v", c.sql, err)
		}
		if n != c.rows {
			t.Errorf("%s: %d rows, want %d", c.sql, n, c.rows)
		}
	}
}

func TestMigrationsCheckReportsWrongSignature(t *testing.T) {
	_, pool := testdb.New(t)
	if err := migrations.Check(migCtx(t), pool); err != nil {
		var mse *migrations.MissingSchemaError
		if !errors.As(err, &mse) || len(mse.Mismatched) > 0 {
			t.Fatalf("Check after Up reports signatures: %v", err)
		}
	}
	mustExec(t, pool, `DROP FUNCTION tasker.get_slowest_steps(timestamptz, integer, text, text, text)`)
	mustExec(t, pool, `CREATE FUNCTION tasker.get_slowest_steps(limit_count integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'`)
	// Same argument types, one result column renamed: callers read columns by name.
	mustExec(t, pool, `DROP FUNCTION tasker.get_task_summary(uuid)`)
	mustExec(t, pool, `CREATE FUNCTION tasker.get_task_summary(input_task_uuid uuid) RETURNS TABLE (uuid uuid) LANGUAGE sql AS 'SELECT $1'`)
	err := migrations.Check(migCtx(t), pool)
	var mse *migrations.MissingSchemaError
	if !errors.As(err, &mse) {
		t.Fatalf("Check = %v, want *MissingSchemaError", err)
	}
	if len(mse.Missing) != 0 {
		t.Errorf("Missing = %v, want none", mse.Missing)
	}
	if len(mse.Mismatched) != 2 ||
		!strings.HasPrefix(mse.Mismatched[0], "function tasker.get_slowest_steps(integer) returns integer; want (timestamp with time zone, integer, text, text, text) returns TABLE(workflow_step_uuid uuid, ") ||
		!strings.HasPrefix(mse.Mismatched[1], "function tasker.get_task_summary(uuid) returns TABLE(uuid uuid); want (uuid) returns TABLE(task_uuid uuid, ") {
		t.Errorf("Mismatched = %q", mse.Mismatched)
	}
	if !strings.Contains(err.Error(), "2 function(s) have a different signature") {
		t.Errorf("error = %v", err)
	}
	// An extra overload with the right signature satisfies the check.
	mustExec(t, pool, `CREATE FUNCTION tasker.get_slowest_steps(
		since_timestamp timestamptz, limit_count integer, namespace_filter text, task_name_filter text, version_filter text)
		RETURNS TABLE (workflow_step_uuid uuid, task_uuid uuid, step_name varchar, task_name varchar,
		namespace_name varchar, version varchar, duration_seconds numeric, attempts integer,
		created_at timestamp, completed_at timestamp, retryable boolean, step_status varchar)
		LANGUAGE sql AS 'SELECT NULL::uuid, NULL::uuid, NULL::varchar, NULL::varchar, NULL::varchar, NULL::varchar, NULL::numeric, NULL::integer, NULL::timestamp, NULL::timestamp, NULL::boolean, NULL::varchar WHERE false'`)
	err = migrations.Check(migCtx(t), pool)
	if !errors.As(err, &mse) || len(mse.Mismatched) != 1 || !strings.Contains(mse.Mismatched[0], "get_task_summary") {
		t.Errorf("after adding the right overload: %v", err)
	}
}

func TestMigrationsPgmqHeadersEventTrigger(t *testing.T) {
	_, pool := testdb.New(t)
	if !mustScalar[bool](t, pool, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`) {
		t.Skip("not a superuser: the event trigger is not installed")
	}
	if got := mustScalar[string](t, pool, `SELECT (evtfoid = 'tasker.pgmq_auto_add_headers_trigger'::regproc)::text || ' ' || evtevent || ' ' || array_to_string(evttags, ',')
		FROM pg_event_trigger WHERE evtname = 'pgmq_headers_compatibility_trigger'`); got != "true ddl_command_end CREATE TABLE" {
		t.Errorf("event trigger = %q", got)
	}
	// A queue table created without headers (an old PGMQ or pgmq-rs) gets the column.
	mustExec(t, pool, `CREATE TABLE pgmq.q_legacy_queue (msg_id bigint PRIMARY KEY, read_ct integer, message jsonb)`)
	if !mustScalar[bool](t, pool, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgmq.q_legacy_queue'::regclass AND attname = 'headers' AND NOT attisdropped)`) {
		t.Error("headers column not added to pgmq.q_legacy_queue")
	}
	// Tables outside pgmq or not named q_* are left alone.
	mustExec(t, pool, `CREATE TABLE pgmq.not_a_queue (id int); CREATE TABLE public.q_other (id int)`)
	if n := mustScalar[int64](t, pool, `SELECT count(*) FROM pg_attribute WHERE attname = 'headers'
		AND attrelid IN ('pgmq.not_a_queue'::regclass, 'public.q_other'::regclass)`); n != 0 {
		t.Errorf("headers added to %d non-queue tables", n)
	}
}
