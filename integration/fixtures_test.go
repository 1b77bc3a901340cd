package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// taskFixture holds the rows newTaskWithSteps created.
type taskFixture struct {
	NamespaceUUID uuid.UUID
	NamedTaskUUID uuid.UUID
	TaskUUID      uuid.UUID
	CorrelationID uuid.UUID
	StepNames     []string             // in the order given
	Steps         map[string]uuid.UUID // workflow_step_uuid by step name
	NamedSteps    map[string]uuid.UUID // named_step_uuid by step name
}

// Step returns the workflow_step_uuid of the named step, failing the test if there is none.
func (f taskFixture) Step(t testing.TB, name string) uuid.UUID {
	t.Helper()
	id, ok := f.Steps[name]
	if !ok {
		t.Fatalf("fixture has no step %q", name)
	}
	return id
}

// newTaskWithSteps writes, by hand and in one transaction, a task of namespace with one
// workflow step per name and the given parent→child edges ({from, to}, name 'provides').
// The namespace, the named task "<namespace>_task" v0.1.0 and the named steps are found or
// created, so several fixtures can share one database. No transition rows are written: task and
// steps are implicitly pending (see initTransitions for tasker-core's initial rows).
func newTaskWithSteps(t testing.TB, pool *pgxpool.Pool, namespace string, stepNames []string, edges [][2]string) taskFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("fixture: begin: %v", err)
	}
	defer tx.Rollback(ctx)

	f := taskFixture{
		StepNames:  append([]string(nil), stepNames...),
		Steps:      map[string]uuid.UUID{},
		NamedSteps: map[string]uuid.UUID{},
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("fixture: %s: %v", what, err)
		}
	}
	must("namespace", tx.QueryRow(ctx, `
		INSERT INTO tasker.task_namespaces (task_namespace_uuid, name, description, created_at, updated_at)
		VALUES ($1, $2, 'test fixture', NOW(), NOW())
		ON CONFLICT (name) DO UPDATE SET updated_at = EXCLUDED.updated_at
		RETURNING task_namespace_uuid`, newV7(t), namespace).Scan(&f.NamespaceUUID))
	must("named task", tx.QueryRow(ctx, `
		INSERT INTO tasker.named_tasks (named_task_uuid, task_namespace_uuid, name, version, configuration, created_at, updated_at)
		VALUES ($1, $2, $3, '0.1.0', '{}'::jsonb, NOW(), NOW())
		ON CONFLICT (task_namespace_uuid, name, version) DO UPDATE SET updated_at = EXCLUDED.updated_at
		RETURNING named_task_uuid`, newV7(t), f.NamespaceUUID, namespace+"_task").Scan(&f.NamedTaskUUID))
	f.TaskUUID, f.CorrelationID = newV7(t), newV7(t)
	_, err = tx.Exec(ctx, `
		INSERT INTO tasker.tasks (task_uuid, named_task_uuid, complete, requested_at, identity_hash,
		                          context, correlation_id, created_at, updated_at)
		VALUES ($1, $2, false, NOW(), $3, '{}'::jsonb, $4, NOW(), NOW())`,
		f.TaskUUID, f.NamedTaskUUID, randomHex(t, 16), f.CorrelationID)
	must("task", err)
	for _, name := range stepNames {
		var ns uuid.UUID
		must("named step "+name, tx.QueryRow(ctx, `
			INSERT INTO tasker.named_steps (named_step_uuid, name, description, created_at, updated_at)
			VALUES ($1, $2, 'test fixture', NOW(), NOW())
			ON CONFLICT (name) DO UPDATE SET updated_at = EXCLUDED.updated_at
			RETURNING named_step_uuid`, newV7(t), name).Scan(&ns))
		ws := newV7(t)
		_, err := tx.Exec(ctx, `
			INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, retryable,
			                                   max_attempts, in_process, processed, created_at, updated_at)
			VALUES ($1, $2, $3, true, 3, false, false, NOW(), NOW())`, ws, f.TaskUUID, ns)
		must("workflow step "+name, err)
		f.NamedSteps[name], f.Steps[name] = ns, ws
	}
	for _, e := range edges {
		from, ok1 := f.Steps[e[0]]
		to, ok2 := f.Steps[e[1]]
		if !ok1 || !ok2 {
			t.Fatalf("fixture: edge %v names an unknown step", e)
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO tasker.workflow_step_edges (workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at)
			VALUES ($1, $2, $3, 'provides', NOW(), NOW())`, newV7(t), from, to)
		must("edge", err)
	}
	must("commit", tx.Commit(ctx))
	return f
}

// initTransitions writes tasker-core's initial rows for the fixture: one task transition and one
// transition per step, each to_state 'pending', from_state NULL, sort_key 1,
// metadata {"initial_state":"pending","from_service":"task_initializer"}.
func initTransitions(t testing.TB, pool *pgxpool.Pool, f taskFixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("fixture: begin: %v", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `
		INSERT INTO tasker.task_transitions (task_transition_uuid, task_uuid, to_state, from_state, metadata,
		                                     sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, 'pending', NULL, '{"initial_state":"pending","from_service":"task_initializer"}', 1, true, NOW(), NOW())`,
		newV7(t), f.TaskUUID); err != nil {
		t.Fatalf("fixture: initial task transition: %v", err)
	}
	for _, name := range f.StepNames {
		if _, err := tx.Exec(ctx, `
			INSERT INTO tasker.workflow_step_transitions (workflow_step_transition_uuid, workflow_step_uuid, to_state,
			                                              from_state, metadata, sort_key, most_recent, created_at, updated_at)
			VALUES ($1, $2, 'pending', NULL, '{"initial_state":"pending","from_service":"task_initializer"}', 1, true, NOW(), NOW())`,
			newV7(t), f.Steps[name]); err != nil {
			t.Fatalf("fixture: initial step transition: %v", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("fixture: commit: %v", err)
	}
}

func newV7(t testing.TB) uuid.UUID {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatalf("uuid v7: %v", err)
	}
	return id
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// runInBackground runs run (a worker's, orchestrator's or consumer's Run) until the test ends or
// the returned stop is called; stop cancels its context, waits for it to return and reports an
// error it returned, naming it what.
func runInBackground(t testing.TB, what string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s.Run: %v", what, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
