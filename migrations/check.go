package migrations

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MissingSchemaError lists the objects a database lacks for tasker-go.
type MissingSchemaError struct {
	// Missing holds qualified names: "schema tasker", "tasker.workflow_steps",
	// "tasker.workflow_steps.checkpoint", "function tasker.get_step_readiness_status", ...
	Missing []string
}

func (e *MissingSchemaError) Error() string {
	return fmt.Sprintf("database is missing %d object(s) tasker-go needs: %s; run `tasker migrate` (or tasker-core's migrations) against it",
		len(e.Missing), strings.Join(e.Missing, ", "))
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

// RequiredFunctions are the functions in schema tasker that tasker-go calls (checked by name).
var RequiredFunctions = []string{
	"get_step_readiness_status", "get_step_readiness_status_batch", "calculate_step_next_retry_time",
	"evaluate_step_state_readiness", "get_step_transitive_dependencies", "calculate_dependency_levels",
	"get_task_execution_context", "get_task_execution_contexts_batch", "get_next_ready_tasks",
	"get_next_ready_task", "get_task_ready_info", "get_current_task_state", "transition_task_state_atomic",
	"find_stuck_tasks", "set_step_backoff_atomic", "calculate_staleness_threshold",
	"get_stale_tasks_for_dlq", "create_dlq_entry", "transition_stale_task_to_error",
	"detect_and_transition_stale_tasks", "create_step_result_audit", "update_updated_at_column",
	"get_system_health_counts", "extract_queue_namespace", "pgmq_payload_size_threshold",
	"pgmq_send_with_notify", "pgmq_read_specific_message",
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
// with its tables, columns, functions and the unique most_recent indexes, and schema pgmq with its core functions and meta
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
	for _, f := range RequiredFunctions {
		if !funcs["tasker."+f] {
			missing = append(missing, "function tasker."+f)
		}
	}
	if !pgmqSchema {
		missing = append(missing, "schema pgmq")
	}
	if !pgmqMeta {
		missing = append(missing, "pgmq.meta")
	}
	for _, f := range RequiredPgmqFunctions {
		if !funcs["pgmq."+f] {
			missing = append(missing, "function pgmq."+f)
		}
	}

	if len(missing) > 0 {
		return &MissingSchemaError{Missing: missing}
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

// existingFunctions returns the set of "schema.name" for functions in schemas tasker and pgmq.
func existingFunctions(ctx context.Context, pool *pgxpool.Pool) (map[string]bool, error) {
	rows, err := pool.Query(ctx, `SELECT DISTINCT n.nspname || '.' || p.proname
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname IN ('tasker', 'pgmq')`)
	if err != nil {
		return nil, fmt.Errorf("migrations: check functions: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("migrations: check functions: %w", err)
		}
		out[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: check functions: %w", err)
	}
	return out, nil
}
