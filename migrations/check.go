package migrations

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MissingSchemaError lists the objects a database lacks for tasker-go.
type MissingSchemaError struct {
	// Missing holds qualified names: "schema tasker", "tasker.workflow_steps",
	// "tasker.workflow_steps.checkpoint", "function tasker.get_step_readiness_status", ...
	Missing []string
	// Mismatched describes functions that exist under the right name but with none of their
	// overloads having the argument types and result columns tasker-go calls them with:
	// "function tasker.get_slowest_steps(integer) returns integer; want (timestamp with time
	// zone, integer, text, text, text) returns TABLE(...)".
	Mismatched []string
}

func (e *MissingSchemaError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("database is missing %d object(s) tasker-go needs: %s",
			len(e.Missing), strings.Join(e.Missing, ", ")))
	}
	if len(e.Mismatched) > 0 {
		parts = append(parts, fmt.Sprintf("%d function(s) have a different signature than tasker-go needs: %s",
			len(e.Mismatched), strings.Join(e.Mismatched, "; ")))
	}
	return strings.Join(parts, "; ") + "; run `tasker migrate` (or tasker-core's migrations) against it"
}

// RequiredColumns maps every tasker table the worker and orchestration use to the columns they
// read or write.
var RequiredColumns = map[string][]string{
	"task_namespaces": {"task_namespace_uuid", "name", "description", "created_at", "updated_at"},
	"named_tasks": {"named_task_uuid", "task_namespace_uuid", "name", "description", "version",
		"configuration", "created_at", "updated_at", "identity_strategy"},
	"named_steps": {"named_step_uuid", "name", "description", "created_at", "updated_at"},
	"named_tasks_named_steps": {"ntns_uuid", "named_task_uuid", "named_step_uuid", "default_retryable",
		"default_max_attempts", "created_at", "updated_at"},
	"tasks": {"task_uuid", "named_task_uuid", "complete", "requested_at", "completed_at", "initiator",
		"source_system", "reason", "tags", "context", "identity_hash", "created_at", "updated_at",
		"priority", "correlation_id", "parent_correlation_id"},
	"task_transitions": {"task_transition_uuid", "task_uuid", "to_state", "from_state", "metadata",
		"sort_key", "most_recent", "created_at", "updated_at", "processor_uuid", "transition_metadata"},
	"workflow_steps": {"workflow_step_uuid", "task_uuid", "named_step_uuid", "retryable", "max_attempts",
		"in_process", "processed", "processed_at", "attempts", "last_attempted_at",
		"backoff_request_seconds", "inputs", "results", "created_at", "updated_at", "priority", "checkpoint"},
	"workflow_step_edges": {"workflow_step_edge_uuid", "from_step_uuid", "to_step_uuid", "name",
		"created_at", "updated_at"},
	"workflow_step_transitions": {"workflow_step_transition_uuid", "workflow_step_uuid", "to_state",
		"from_state", "metadata", "sort_key", "most_recent", "created_at", "updated_at"},
	"workflow_step_result_audit": {"workflow_step_result_audit_uuid", "workflow_step_uuid",
		"workflow_step_transition_uuid", "task_uuid", "recorded_at", "worker_uuid", "correlation_id",
		"success", "execution_time_ms", "created_at", "updated_at"},
	"tasks_dlq": {"dlq_entry_uuid", "task_uuid", "original_state", "dlq_reason", "dlq_timestamp",
		"resolution_status", "resolution_timestamp", "resolution_notes", "resolved_by", "task_snapshot",
		"metadata", "created_at", "updated_at"},
}

// RequiredFunctions are the functions in schema tasker that tasker-go calls. Each must exist;
// those listed in FunctionSignatures must also have that signature.
var RequiredFunctions = []string{
	"get_step_readiness_status", "get_step_readiness_status_batch", "calculate_step_next_retry_time",
	"evaluate_step_state_readiness", "get_step_transitive_dependencies", "calculate_dependency_levels",
	"get_task_execution_context", "get_task_execution_contexts_batch", "get_next_ready_tasks",
	"get_next_ready_task", "get_task_ready_info", "get_current_task_state", "transition_task_state_atomic",
	"find_stuck_tasks", "set_step_backoff_atomic", "calculate_staleness_threshold",
	"get_stale_tasks_for_dlq", "create_dlq_entry", "transition_stale_task_to_error",
	"detect_and_transition_stale_tasks", "create_step_result_audit", "update_updated_at_column",
	"get_system_health_counts", "extract_queue_namespace", "pgmq_payload_size_threshold",
	"pgmq_send_with_notify", "pgmq_read_specific_message", "get_analytics_metrics",
	"get_slowest_steps", "get_slowest_steps_aggregated", "get_slowest_tasks",
	"get_slowest_tasks_aggregated", "get_task_summary", "get_task_summaries",
}

// FunctionSignature is what a function must look like to be called the way tasker-go and
// tasker-core call it: positional argument types (as oidvectortypes prints them) and the result
// (as pg_get_function_result prints it; for RETURNS TABLE the column names matter too, since
// callers read columns by name).
type FunctionSignature struct {
	Args   string
	Result string
}

func (s FunctionSignature) String() string { return "(" + s.Args + ") returns " + s.Result }

// table renders RETURNS TABLE columns the way pg_get_function_result does.
func table(cols ...string) string { return "TABLE(" + strings.Join(cols, ", ") + ")" }

// taskSummaryColumns are the result columns of get_task_summary and get_task_summaries (one row
// per task, the same shape).
var taskSummaryColumns = table(
	"task_uuid uuid",
	"named_task_uuid uuid",
	"task_name text",
	"task_version text",
	"namespace_name text",
	"task_status text",
	"created_at timestamp with time zone",
	"updated_at timestamp with time zone",
	"completed_at timestamp with time zone",
	"initiator text",
	"source_system text",
	"reason text",
	"correlation_id uuid",
	"template_configuration jsonb",
	"step_summaries jsonb",
	"execution_context jsonb",
	"dlq_status jsonb")

// FunctionSignatures are tasker-core's signatures (read from a database migrated by
// tasker-core's migrations) of the functions in RequiredFunctions.
var FunctionSignatures = map[string]FunctionSignature{
	"get_step_readiness_status": {Args: "uuid, uuid[]", Result: table(
		"workflow_step_uuid uuid",
		"task_uuid uuid",
		"named_step_uuid uuid",
		"name text",
		"current_state text",
		"dependencies_satisfied boolean",
		"retry_eligible boolean",
		"ready_for_execution boolean",
		"last_failure_at timestamp without time zone",
		"next_retry_at timestamp without time zone",
		"total_parents integer",
		"completed_parents integer",
		"attempts integer",
		"max_attempts integer",
		"backoff_request_seconds integer",
		"last_attempted_at timestamp without time zone")},
	"get_step_readiness_status_batch": {Args: "uuid[], uuid[]", Result: table(
		"workflow_step_uuid uuid",
		"task_uuid uuid",
		"named_step_uuid uuid",
		"name text",
		"current_state text",
		"dependencies_satisfied boolean",
		"retry_eligible boolean",
		"ready_for_execution boolean",
		"last_failure_at timestamp without time zone",
		"next_retry_at timestamp without time zone",
		"total_parents integer",
		"completed_parents integer",
		"attempts integer",
		"max_attempts integer",
		"backoff_request_seconds integer",
		"last_attempted_at timestamp without time zone")},
	"calculate_step_next_retry_time": {Args: "integer, timestamp without time zone, timestamp without time zone, integer, integer, numeric", Result: "timestamp without time zone"},
	"evaluate_step_state_readiness":  {Args: "text, boolean, boolean, boolean, boolean, boolean, timestamp without time zone", Result: "boolean"},
	"get_step_transitive_dependencies": {Args: "uuid", Result: table(
		"workflow_step_uuid uuid",
		"task_uuid uuid",
		"named_step_uuid uuid",
		"step_name character varying",
		"results jsonb",
		"processed boolean",
		"distance integer")},
	"calculate_dependency_levels": {Args: "uuid", Result: table(
		"workflow_step_uuid uuid",
		"dependency_level integer")},
	"get_task_execution_context": {Args: "uuid", Result: table(
		"task_uuid uuid",
		"named_task_uuid uuid",
		"status text",
		"total_steps bigint",
		"pending_steps bigint",
		"in_progress_steps bigint",
		"completed_steps bigint",
		"failed_steps bigint",
		"ready_steps bigint",
		"execution_status text",
		"recommended_action text",
		"completion_percentage numeric",
		"health_status text",
		"enqueued_steps bigint")},
	"get_task_execution_contexts_batch": {Args: "uuid[]", Result: table(
		"task_uuid uuid",
		"named_task_uuid uuid",
		"status text",
		"total_steps bigint",
		"pending_steps bigint",
		"in_progress_steps bigint",
		"completed_steps bigint",
		"failed_steps bigint",
		"ready_steps bigint",
		"execution_status text",
		"recommended_action text",
		"completion_percentage numeric",
		"health_status text",
		"enqueued_steps bigint")},
	"get_next_ready_tasks": {Args: "integer", Result: table(
		"task_uuid uuid",
		"task_name character varying",
		"priority integer",
		"namespace_name character varying",
		"ready_steps_count bigint",
		"computed_priority numeric",
		"current_state character varying")},
	"get_next_ready_task": {Args: "", Result: table(
		"task_uuid uuid",
		"task_name character varying",
		"priority integer",
		"namespace_name character varying",
		"ready_steps_count bigint",
		"computed_priority numeric",
		"current_state character varying")},
	"get_task_ready_info": {Args: "uuid", Result: table(
		"task_uuid uuid",
		"task_name character varying",
		"priority integer",
		"namespace_name character varying",
		"ready_steps_count bigint",
		"computed_priority numeric",
		"current_state character varying")},
	"get_current_task_state":       {Args: "uuid", Result: "character varying"},
	"transition_task_state_atomic": {Args: "uuid, character varying, character varying, uuid, jsonb", Result: "boolean"},
	"find_stuck_tasks": {Args: "integer", Result: table(
		"task_uuid uuid",
		"current_state character varying",
		"processor_uuid uuid",
		"stuck_duration_minutes integer")},
	"set_step_backoff_atomic":       {Args: "uuid, integer", Result: "boolean"},
	"calculate_staleness_threshold": {Args: "character varying, jsonb, integer, integer, integer", Result: "integer"},
	"get_stale_tasks_for_dlq": {Args: "integer, integer, integer, integer, integer", Result: table(
		"task_uuid uuid",
		"namespace_name character varying",
		"task_name character varying",
		"current_state character varying",
		"time_in_state_minutes numeric",
		"threshold_minutes integer",
		"task_age_minutes numeric")},
	"create_dlq_entry":               {Args: "uuid, character varying, character varying, character varying, integer, integer, character varying", Result: "uuid"},
	"transition_stale_task_to_error": {Args: "uuid, character varying, character varying, character varying", Result: "boolean"},
	"detect_and_transition_stale_tasks": {Args: "boolean, integer, integer, integer, integer, integer", Result: table(
		"task_uuid uuid",
		"namespace_name character varying",
		"task_name character varying",
		"current_state character varying",
		"time_in_state_minutes integer",
		"staleness_threshold_minutes integer",
		"action_taken character varying",
		"moved_to_dlq boolean",
		"transition_success boolean")},
	"create_step_result_audit": {Args: "", Result: "trigger"},
	"update_updated_at_column": {Args: "", Result: "trigger"},
	"get_system_health_counts": {Args: "", Result: table(
		"pending_tasks bigint",
		"initializing_tasks bigint",
		"enqueuing_steps_tasks bigint",
		"steps_in_process_tasks bigint",
		"evaluating_results_tasks bigint",
		"waiting_for_dependencies_tasks bigint",
		"waiting_for_retry_tasks bigint",
		"blocked_by_failures_tasks bigint",
		"complete_tasks bigint",
		"error_tasks bigint",
		"cancelled_tasks bigint",
		"resolved_manually_tasks bigint",
		"total_tasks bigint",
		"pending_steps bigint",
		"enqueued_steps bigint",
		"in_progress_steps bigint",
		"enqueued_for_orchestration_steps bigint",
		"enqueued_as_error_for_orchestration_steps bigint",
		"waiting_for_retry_steps bigint",
		"complete_steps bigint",
		"error_steps bigint",
		"cancelled_steps bigint",
		"resolved_manually_steps bigint",
		"total_steps bigint")},
	"extract_queue_namespace":     {Args: "text", Result: "text"},
	"pgmq_payload_size_threshold": {Args: "", Result: "integer"},
	"pgmq_send_with_notify":       {Args: "text, jsonb, integer", Result: "bigint"},
	"pgmq_read_specific_message": {Args: "text, bigint, integer", Result: table(
		"msg_id bigint",
		"read_ct integer",
		"enqueued_at timestamp with time zone",
		"vt timestamp with time zone",
		"message jsonb")},
	"get_analytics_metrics": {Args: "timestamp with time zone", Result: table(
		"active_tasks_count bigint",
		"total_namespaces_count bigint",
		"unique_task_types_count bigint",
		"system_health_score numeric",
		"task_throughput bigint",
		"completion_count bigint",
		"error_count bigint",
		"completion_rate numeric",
		"error_rate numeric",
		"avg_task_duration numeric",
		"avg_step_duration numeric",
		"step_throughput bigint",
		"analysis_period_start timestamp with time zone",
		"calculated_at timestamp with time zone")},
	"get_slowest_steps": {Args: "timestamp with time zone, integer, text, text, text", Result: table(
		"workflow_step_uuid uuid",
		"task_uuid uuid",
		"step_name character varying",
		"task_name character varying",
		"namespace_name character varying",
		"version character varying",
		"duration_seconds numeric",
		"attempts integer",
		"created_at timestamp without time zone",
		"completed_at timestamp without time zone",
		"retryable boolean",
		"step_status character varying")},
	"get_slowest_steps_aggregated": {Args: "timestamp with time zone, integer, integer, text, text, text", Result: table(
		"namespace_name character varying",
		"task_name character varying",
		"version character varying",
		"step_name character varying",
		"average_duration_seconds numeric",
		"max_duration_seconds numeric",
		"execution_count bigint",
		"error_count bigint",
		"error_rate numeric",
		"last_executed_at timestamp without time zone")},
	"get_slowest_tasks": {Args: "timestamp with time zone, integer, text, text, text", Result: table(
		"task_uuid uuid",
		"task_name character varying",
		"namespace_name character varying",
		"version character varying",
		"duration_seconds numeric",
		"step_count bigint",
		"completed_steps bigint",
		"error_steps bigint",
		"created_at timestamp without time zone",
		"completed_at timestamp without time zone",
		"initiator character varying",
		"source_system character varying")},
	"get_slowest_tasks_aggregated": {Args: "timestamp with time zone, integer, integer, text, text, text", Result: table(
		"namespace_name character varying",
		"task_name character varying",
		"version character varying",
		"average_duration_seconds numeric",
		"max_duration_seconds numeric",
		"execution_count bigint",
		"average_step_count numeric",
		"total_error_steps bigint",
		"error_rate numeric",
		"last_executed_at timestamp without time zone")},
	"get_task_summary":   {Args: "uuid", Result: taskSummaryColumns},
	"get_task_summaries": {Args: "uuid[]", Result: taskSummaryColumns},
}

// RequiredIndexes are tasker indexes whose uniqueness tasker-go relies on for correctness
// (one current transition per step / per task: the claim and transition guards).
var RequiredIndexes = []string{
	"idx_workflow_step_transitions_uuid_most_recent",
	"idx_task_transitions_uuid_most_recent",
}

// RequiredPgmqFunctions are the PGMQ functions (schema pgmq) tasker-go calls.
var RequiredPgmqFunctions = []string{"create", "send", "read", "archive", "delete", "set_vt"}

// Check verifies that the database behind pool has everything tasker-go needs: schema tasker
// with its tables, columns, functions (with FunctionSignatures' argument types and result
// columns) and the unique most_recent indexes, and schema pgmq with its core functions and meta
// table. It changes nothing. The database may have been migrated by tasker-go or by
// tasker-core. A shortfall is reported as *MissingSchemaError listing every missing object.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	var missing []string

	var taskerSchema, pgmqSchema, pgmqMeta bool
	err := pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tasker'),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgmq'),
		to_regclass('pgmq.meta') IS NOT NULL`).Scan(&taskerSchema, &pgmqSchema, &pgmqMeta)
	if err != nil {
		return fmt.Errorf("migrations: check schemas: %w", err)
	}

	if !taskerSchema {
		missing = append(missing, "schema tasker")
	}
	cols, err := existingColumns(ctx, pool)
	if err != nil {
		return err
	}
	tables := make([]string, 0, len(RequiredColumns))
	for t := range RequiredColumns {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		have, ok := cols[t]
		if !ok {
			missing = append(missing, "tasker."+t)
			continue
		}
		for _, c := range RequiredColumns[t] {
			if !have[c] {
				missing = append(missing, "tasker."+t+"."+c)
			}
		}
	}

	for _, idx := range RequiredIndexes {
		var unique bool
		err := pool.QueryRow(ctx, `SELECT COALESCE((SELECT i.indisunique FROM pg_index i
			WHERE i.indexrelid = to_regclass('tasker.' || $1::text)), false)`, idx).Scan(&unique)
		if err != nil {
			return fmt.Errorf("migrations: check index %s: %w", idx, err)
		}
		if !unique {
			missing = append(missing, "unique index tasker."+idx)
		}
	}

	funcs, err := existingFunctions(ctx, pool)
	if err != nil {
		return err
	}
	var mismatched []string
	for _, f := range RequiredFunctions {
		have := funcs["tasker."+f]
		want, checked := FunctionSignatures[f]
		switch {
		case len(have) == 0:
			missing = append(missing, "function tasker."+f)
		case checked && !slices.Contains(have, want):
			got := make([]string, len(have))
			for i, h := range have {
				got[i] = h.String()
			}
			mismatched = append(mismatched, fmt.Sprintf("function tasker.%s%s; want %s",
				f, strings.Join(got, " | "), want))
		}
	}
	if !pgmqSchema {
		missing = append(missing, "schema pgmq")
	}
	if !pgmqMeta {
		missing = append(missing, "pgmq.meta")
	}
	for _, f := range RequiredPgmqFunctions {
		if len(funcs["pgmq."+f]) == 0 {
			missing = append(missing, "function pgmq."+f)
		}
	}

	if len(missing) > 0 || len(mismatched) > 0 {
		return &MissingSchemaError{Missing: missing, Mismatched: mismatched}
	}
	return nil
}

// existingColumns returns table -> column set for the tables of schema tasker.
func existingColumns(ctx context.Context, pool *pgxpool.Pool) (map[string]map[string]bool, error) {
	rows, err := pool.Query(ctx, `SELECT c.relname, a.attname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = 'tasker' AND c.relkind IN ('r', 'p')`)
	if err != nil {
		return nil, fmt.Errorf("migrations: check columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			return nil, fmt.Errorf("migrations: check columns: %w", err)
		}
		if out[table] == nil {
			out[table] = map[string]bool{}
		}
		out[table][column] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: check columns: %w", err)
	}
	return out, nil
}

// existingFunctions returns "schema.name" -> the signatures of its overloads, for the
// functions in schemas tasker and pgmq.
func existingFunctions(ctx context.Context, pool *pgxpool.Pool) (map[string][]FunctionSignature, error) {
	rows, err := pool.Query(ctx, `SELECT n.nspname || '.' || p.proname,
		       oidvectortypes(p.proargtypes), COALESCE(pg_get_function_result(p.oid), '')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname IN ('tasker', 'pgmq')`)
	if err != nil {
		return nil, fmt.Errorf("migrations: check functions: %w", err)
	}
	defer rows.Close()
	out := map[string][]FunctionSignature{}
	for rows.Next() {
		var name string
		var sig FunctionSignature
		if err := rows.Scan(&name, &sig.Args, &sig.Result); err != nil {
			return nil, fmt.Errorf("migrations: check functions: %w", err)
		}
		out[name] = append(out[name], sig)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: check functions: %w", err)
	}
	return out, nil
}
