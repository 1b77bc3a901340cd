package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/queue"
)

// Registered identifies the rows a registration wrote or found.
type Registered struct {
	NamespaceUUID uuid.UUID
	NamedTaskUUID uuid.UUID
	// NamedStepUUIDs maps every step name of the template to its (global) named_steps row.
	NamedStepUUIDs map[string]uuid.UUID
	// Created is true when this call inserted the named_tasks row, false when it updated it.
	Created bool
}

// Querier is what Lookup needs: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Register validates t and writes it as tasker-core's worker registry does, plus the step rows
// tasker-core leaves to the orchestrator:
//
//   - task_namespaces: found or created ("Auto-created namespace: <name>"); a namespace that
//     differs only in letter case from an existing namespace (or from the namespace of an
//     existing queue) is refused with a *queue.NameConflictError naming both, since PGMQ would
//     give both one queue table (see queue.CheckNamespace);
//   - named_tasks: inserted (identity_strategy from the template, else 'strict') or, when
//     (namespace, name, version) exists, updated: configuration = the template's full JSON,
//     description when the template has one, identity_strategy when the template sets one;
//   - named_steps: found or created per step name (names are global across templates; an
//     existing row is left as it is);
//   - named_tasks_named_steps: one row per step with default_retryable / default_max_attempts
//     from the step's retry block; rows of steps no longer in the template are removed.
//
// Register is idempotent and safe to run concurrently (from several workers starting at once):
// every insert is ON CONFLICT-guarded, and rows are written in a fixed order (namespace, task,
// steps sorted by name) so concurrent registrations cannot deadlock. tx must use READ
// COMMITTED isolation (PostgreSQL's default), so rows committed by a concurrent registration
// are visible to the statement that follows the conflicting insert. The namespace check holds a
// transaction-level lock on the lower-cased namespace until commit, so a transaction registering
// several templates should register them in namespace order. The caller commits.
func Register(ctx context.Context, tx pgx.Tx, t *TaskTemplate) (Registered, error) {
	if err := t.Validate(); err != nil {
		return Registered{}, err
	}
	cfg, err := json.Marshal(t)
	if err != nil {
		return Registered{}, fmt.Errorf("template: serialize %s: %w", t.Key(), err)
	}
	reg := Registered{NamedStepUUIDs: map[string]uuid.UUID{}}

	if err := queue.CheckNamespace(ctx, tx, t.NamespaceName); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: %w", t.Key(), err)
	}
	// One statement inserts when absent; the next reads the row, which a concurrent
	// registration may have committed between the two.
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.task_namespaces (task_namespace_uuid, name, description, created_at, updated_at)
		VALUES ($1, $2, $3, now(), now())
		ON CONFLICT (name) DO NOTHING`,
		newUUID(), t.NamespaceName, "Auto-created namespace: "+t.NamespaceName); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: namespace: %w", t.Key(), err)
	}
	if err := tx.QueryRow(ctx, `SELECT task_namespace_uuid FROM tasker.task_namespaces WHERE name = $1`,
		t.NamespaceName).Scan(&reg.NamespaceUUID); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: read namespace: %w", t.Key(), err)
	}

	strategy, strategyGiven := string(IdentityStrict), t.IdentityStrategy != ""
	if strategyGiven {
		strategy = string(t.IdentityStrategy)
	}
	if err := tx.QueryRow(ctx, `
		INSERT INTO tasker.named_tasks AS nt
			(named_task_uuid, task_namespace_uuid, name, version, description, configuration,
			 identity_strategy, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now(), now())
		ON CONFLICT (task_namespace_uuid, name, version) DO UPDATE SET
			description = COALESCE(EXCLUDED.description, nt.description),
			configuration = EXCLUDED.configuration,
			identity_strategy = CASE WHEN $8::boolean THEN EXCLUDED.identity_strategy ELSE nt.identity_strategy END,
			updated_at = now()
		RETURNING named_task_uuid, (xmax = 0)`,
		newUUID(), reg.NamespaceUUID, t.Name, t.Version, t.Description, string(cfg), strategy, strategyGiven,
	).Scan(&reg.NamedTaskUUID, &reg.Created); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: named task: %w", t.Key(), err)
	}

	steps := slices.Clone(t.Steps)
	slices.SortFunc(steps, func(a, b StepDefinition) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	names := make([]string, len(steps))
	ids := make([]string, len(steps))
	descs := make([]string, len(steps))
	for i, s := range steps {
		names[i], ids[i] = s.Name, newUUID().String()
		descs[i] = "Auto-created step: " + s.Name
		if s.Description != nil && *s.Description != "" {
			descs[i] = truncate(*s.Description, maxDescriptionLen)
		}
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.named_steps (named_step_uuid, name, description, created_at, updated_at)
		SELECT s.id::uuid, s.name, s.description, now(), now()
		FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS s(id, name, description, ord)
		ORDER BY s.ord
		ON CONFLICT (name) DO NOTHING`, ids, names, descs); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: named steps: %w", t.Key(), err)
	}
	rows, err := tx.Query(ctx, `SELECT name, named_step_uuid FROM tasker.named_steps WHERE name = ANY($1::text[])`, names)
	if err != nil {
		return Registered{}, fmt.Errorf("template: register %s: read named steps: %w", t.Key(), err)
	}
	for rows.Next() {
		var name string
		var id uuid.UUID
		if err := rows.Scan(&name, &id); err != nil {
			rows.Close()
			return Registered{}, fmt.Errorf("template: register %s: read named steps: %w", t.Key(), err)
		}
		reg.NamedStepUUIDs[name] = id
	}
	if err := rows.Err(); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: read named steps: %w", t.Key(), err)
	}
	if len(reg.NamedStepUUIDs) != len(steps) {
		return Registered{}, fmt.Errorf("template: register %s: found %d of %d named steps", t.Key(), len(reg.NamedStepUUIDs), len(steps))
	}

	stepIDs := make([]string, len(steps))
	linkIDs := make([]string, len(steps))
	retryable := make([]bool, len(steps))
	attempts := make([]int32, len(steps))
	for i, s := range steps {
		stepIDs[i] = reg.NamedStepUUIDs[s.Name].String()
		linkIDs[i] = newUUID().String()
		retryable[i] = s.Retry.Retryable
		attempts[i] = int32(s.Retry.MaxAttempts)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.named_tasks_named_steps AS l
			(ntns_uuid, named_task_uuid, named_step_uuid, default_retryable, default_max_attempts, created_at, updated_at)
		SELECT s.id::uuid, $1, s.step::uuid, s.retryable, s.attempts, now(), now()
		FROM unnest($2::text[], $3::text[], $4::boolean[], $5::integer[]) WITH ORDINALITY AS s(id, step, retryable, attempts, ord)
		ORDER BY s.ord
		ON CONFLICT (named_task_uuid, named_step_uuid) DO UPDATE SET
			default_retryable = EXCLUDED.default_retryable,
			default_max_attempts = EXCLUDED.default_max_attempts,
			updated_at = now()
		WHERE (l.default_retryable, l.default_max_attempts)
			IS DISTINCT FROM (EXCLUDED.default_retryable, EXCLUDED.default_max_attempts)`,
		reg.NamedTaskUUID, linkIDs, stepIDs, retryable, attempts); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: step links: %w", t.Key(), err)
	}
	if _, err := tx.Exec(ctx, `
		DELETE FROM tasker.named_tasks_named_steps
		WHERE named_task_uuid = $1 AND named_step_uuid <> ALL($2::text[]::uuid[])`,
		reg.NamedTaskUUID, stepIDs); err != nil {
		return Registered{}, fmt.Errorf("template: register %s: remove stale step links: %w", t.Key(), err)
	}
	return reg, nil
}

// Lookup reads a registered template back from named_tasks.configuration and returns it with
// its named_task_uuid. version "" or "latest" picks the most recently created version, as
// tasker-core's NamedTask::find_latest_by_name_namespace does. A missing named task gives an
// error wrapping ErrTemplateNotFound; a NULL or {} configuration one wrapping ErrNoConfiguration.
// The JSON is read leniently (unknown keys ignored) and not validated, so configurations written
// by tasker-core load as tasker-core loads them.
func Lookup(ctx context.Context, q Querier, namespace, name, version string) (*TaskTemplate, uuid.UUID, error) {
	t, nt, err := LookupNamedTask(ctx, q, namespace, name, version)
	return t, nt.UUID, err
}

// NamedTask is the named_tasks row a lookup resolved.
type NamedTask struct {
	UUID             uuid.UUID
	IdentityStrategy string // named_tasks.identity_strategy
}

// LookupNamedTask is Lookup that also returns the named task's identity strategy.
func LookupNamedTask(ctx context.Context, q Querier, namespace, name, version string) (*TaskTemplate, NamedTask, error) {
	const base = `
		SELECT nt.named_task_uuid, nt.version, nt.configuration, nt.identity_strategy::text
		FROM tasker.named_tasks nt
		JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
		WHERE tn.name = $1 AND nt.name = $2`
	var row pgx.Row
	if version == "" || version == "latest" {
		row = q.QueryRow(ctx, base+` ORDER BY nt.created_at DESC, nt.named_task_uuid DESC LIMIT 1`, namespace, name)
	} else {
		row = q.QueryRow(ctx, base+` AND nt.version = $3`, namespace, name, version)
	}
	var (
		nt  NamedTask
		ver string
		cfg []byte
	)
	key := namespace + "/" + name + "/" + version
	if err := row.Scan(&nt.UUID, &ver, &cfg, &nt.IdentityStrategy); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, NamedTask{}, fmt.Errorf("%w: %s", ErrTemplateNotFound, key)
		}
		return nil, NamedTask{}, fmt.Errorf("template: look up %s: %w", key, err)
	}
	key = namespace + "/" + name + "/" + ver
	var probe any
	if len(cfg) == 0 || json.Unmarshal(cfg, &probe) != nil || probe == nil || isEmptyObject(probe) {
		return nil, nt, fmt.Errorf("%w: %s", ErrNoConfiguration, key)
	}
	t, err := ParseJSON(cfg, "named_tasks "+key)
	if err != nil {
		return nil, nt, fmt.Errorf("template: decode configuration of %s: %w", key, err)
	}
	return t, nt, nil
}

func isEmptyObject(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}

func newUUID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
