package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

// nsCaseTemplate is a one-step template in namespace ns.
func nsCaseTemplate(t *testing.T, ns string) *template.TaskTemplate {
	t.Helper()
	tmpl, err := template.Parse([]byte(fmt.Sprintf(`
name: case_task
namespace_name: %s
version: 1.0.0
steps:
  - name: case_step
    handler: {callable: nscase.step}
`, ns)), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// nsCaseRegister registers ns's template in a transaction of its own.
func nsCaseRegister(ctx context.Context, pool *pgxpool.Pool, ns string, tmpl *template.TaskTemplate) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := template.Register(ctx, tx, tmpl); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// nsCaseWantConflict checks err is a case conflict that names both namespaces.
func nsCaseWantConflict(t *testing.T, what string, err error, name, existing string) {
	t.Helper()
	var ce *queue.NameConflictError
	switch {
	case err == nil:
		t.Fatalf("%s succeeded; want a conflict with %q", what, existing)
	case !errors.Is(err, queue.ErrNameConflict) || !errors.As(err, &ce):
		t.Fatalf("%s = %v; want a *queue.NameConflictError", what, err)
	case ce.Name != name || ce.Existing != existing:
		t.Errorf("%s: conflict names %q / %q, want %q / %q", what, ce.Name, ce.Existing, name, existing)
	}
	if msg := err.Error(); !strings.Contains(msg, `"`+name+`"`) || !strings.Contains(msg, `"`+existing+`"`) {
		t.Errorf("%s: error %q does not name both %q and %q", what, msg, name, existing)
	}
}

// The reproduction of issue 14 item 2: namespaces that differ only in case share PGMQ's
// lower-cased queue table, so the second one must be refused wherever it would be created.
func TestNamespaceCaseCollisionRefused(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	qc := queue.NewClient(pool)

	if err := nsCaseRegister(ctx, pool, "MyNamespace", nsCaseTemplate(t, "MyNamespace")); err != nil {
		t.Fatalf("register MyNamespace: %v", err)
	}
	if err := qc.EnsureQueue(ctx, queue.WorkerQueue("MyNamespace")); err != nil {
		t.Fatalf("ensure MyNamespace's queue: %v", err)
	}
	// Registering and queue creation of the same namespace stay idempotent.
	if err := nsCaseRegister(ctx, pool, "MyNamespace", nsCaseTemplate(t, "MyNamespace")); err != nil {
		t.Fatalf("re-register MyNamespace: %v", err)
	}
	if err := qc.EnsureQueue(ctx, queue.WorkerQueue("MyNamespace")); err != nil {
		t.Fatalf("re-ensure MyNamespace's queue: %v", err)
	}

	err := nsCaseRegister(ctx, pool, "mynamespace", nsCaseTemplate(t, "mynamespace"))
	nsCaseWantConflict(t, "register mynamespace", err, "mynamespace", "MyNamespace")
	err = qc.EnsureQueue(ctx, queue.WorkerQueue("mynamespace"))
	nsCaseWantConflict(t, "ensure worker_mynamespace_queue", err, "mynamespace", "MyNamespace")
	err = qc.EnsureQueue(ctx, queue.DomainEventsQueue("MYNAMESPACE"))
	nsCaseWantConflict(t, "ensure MYNAMESPACE_domain_events", err, "MYNAMESPACE", "MyNamespace")

	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.meta WHERE lower(queue_name) = 'worker_mynamespace_queue'`); n != 1 {
		t.Errorf("%d pgmq.meta rows fold to worker_mynamespace_queue, want 1", n)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.meta WHERE queue_name = 'worker_MyNamespace_queue'`); n != 1 {
		t.Errorf("the pgmq.meta row of MyNamespace is missing")
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'pgmq' AND lower(table_name) = 'q_worker_mynamespace_queue'`); n != 1 {
		t.Errorf("%d queue tables for the namespace, want 1", n)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM tasker.task_namespaces WHERE lower(name) = 'mynamespace'`); n != 1 {
		t.Errorf("%d task_namespaces rows fold to mynamespace, want 1", n)
	}

	// A queue created first (a worker started before any template) blocks a differently-cased
	// namespace too, and a worker configured with both spellings is refused before it starts.
	if err := qc.EnsureQueue(ctx, queue.WorkerQueue("QueueFirst")); err != nil {
		t.Fatal(err)
	}
	err = nsCaseRegister(ctx, pool, "queuefirst", nsCaseTemplate(t, "queuefirst"))
	nsCaseWantConflict(t, "register queuefirst", err, "queuefirst", "QueueFirst")

	cfg := worker.DefaultConfig()
	cfg.Namespaces = []string{"MyNamespace", "mynamespace"}
	if _, err := worker.New(cfg, pool, handlers.NewRegistry()); err == nil ||
		!strings.Contains(err.Error(), `"MyNamespace"`) || !strings.Contains(err.Error(), `"mynamespace"`) {
		t.Errorf("worker.New with MyNamespace and mynamespace = %v; want an error naming both", err)
	}
	cfg.Namespaces = []string{"mynamespace"}
	w, err := worker.New(cfg, pool, handlers.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	nsCaseWantConflict(t, "start a worker for mynamespace", w.EnsureQueues(ctx), "mynamespace", "MyNamespace")
}

// Two registrations racing with differently-cased namespaces: the second waits for the first
// and then fails; it never commits a second namespace.
func TestNamespaceCaseConcurrentRegistration(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()

	tx1, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := template.Register(ctx, tx1, nsCaseTemplate(t, "RaceNs")); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- nsCaseRegister(ctx, pool, "raceNS", nsCaseTemplate(t, "raceNS")) }()
	select {
	case err := <-second:
		t.Fatalf("second registration finished while the first was uncommitted: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		nsCaseWantConflict(t, "register raceNS", err, "raceNS", "RaceNs")
	case <-time.After(10 * time.Second):
		t.Fatal("second registration still blocked after the first committed")
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM tasker.task_namespaces WHERE lower(name) = 'racens'`); n != 1 {
		t.Errorf("%d task_namespaces rows fold to racens, want 1", n)
	}
}

// A worker for MyNamespace reads pgmq.q_worker_mynamespace_queue. If a message for a step of
// another namespace lands there (here: a namespace and queue created behind tasker-go's back, as
// an older release or a foreign tool could), the worker must not claim or run the step: it
// archives the message with a reason and leaves the step alone.
func TestNamespaceCaseWorkerClaimsOnlyItsNamespace(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()

	if err := nsCaseRegister(ctx, pool, "MyNamespace", nsCaseTemplate(t, "MyNamespace")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	reg := handlers.NewRegistry()
	reg.MustRegister("nscase.step", handlers.Func(func(ctx context.Context, s *handlers.StepContext) (any, error) {
		calls.Add(1)
		return map[string]any{"ran_for": s.Namespace()}, nil
	}))
	wkStart(t, pool, "MyNamespace", reg, nil)
	// The worker checks names when it creates its queues at start; wait until it has all three.
	mine := []string{queue.WorkerQueue("MyNamespace"), queue.DomainEventsQueue("MyNamespace"), queue.DomainEventsDLQ("MyNamespace")}
	waitQueues := time.Now().Add(10 * time.Second)
	for wkCount(t, pool, `SELECT count(*) FROM pgmq.meta WHERE queue_name = ANY($1)`, mine) < len(mine) {
		if time.Now().After(waitQueues) {
			t.Fatal("the worker did not create its queues")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The colliding namespace and its queue, written directly (no tasker-go check runs).
	if _, err := pool.Exec(ctx, `SELECT pgmq.create('worker_mynamespace_queue')`); err != nil {
		t.Fatal(err)
	}
	foreign := newTaskWithSteps(t, pool, "mynamespace", []string{"case_step"}, nil)
	wkTemplate(t, pool, foreign, "nscase.step", 0)
	step := foreign.Step(t, "case_step")
	msgID := wkEnqueue(t, pool, "mynamespace", foreign, "case_step")

	var reason string
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := pool.QueryRow(ctx, `SELECT headers->>'`+queue.ArchiveReasonHeader+`' FROM pgmq.a_worker_mynamespace_queue WHERE msg_id = $1`, msgID).Scan(&reason)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || calls.Load() > 0 || wkStepState(t, pool, step) != state.StepEnqueued {
			t.Fatalf("message not archived (%v); handler calls %d; step %s", err, calls.Load(), wkStepState(t, pool, step))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if reason != "namespace_mismatch" {
		t.Errorf("archive reason = %q, want namespace_mismatch", reason)
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Errorf("the MyNamespace worker ran the mynamespace step %d times", n)
	}
	if s := wkStepState(t, pool, step); s != state.StepEnqueued {
		t.Errorf("foreign step is %s, want it left enqueued", s)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1 AND to_state = 'in_progress'`, step); n != 0 {
		t.Errorf("foreign step was claimed %d times", n)
	}
}

// A claim with TaskNamespace claims only steps whose task is in exactly that namespace: a
// differently-cased namespace is another namespace, and its step is left enqueued.
func TestNamespaceCaseClaimQueryFilters(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "mynamespace", []string{"case_step"}, nil)
	step := f.Step(t, "case_step")
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue("mynamespace")); err != nil {
		t.Fatal(err)
	}
	wkEnqueue(t, pool, "mynamespace", f, "case_step")

	claim := func(ns string) bool {
		t.Helper()
		cl, err := state.ClaimSteps(ctx, pool, []state.StepRef{{StepUUID: step, TaskUUID: f.TaskUUID}},
			state.TransitionOptions{TaskNamespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		return cl.Steps[0] != nil
	}
	if claim("MyNamespace") {
		t.Fatal("a claim for MyNamespace claimed a step of mynamespace")
	}
	if s := wkStepState(t, pool, step); s != state.StepEnqueued {
		t.Fatalf("step is %s after the refused claim, want enqueued", s)
	}
	if !claim("mynamespace") {
		t.Fatal("a claim for the step's own namespace did not claim it")
	}
	if s := wkStepState(t, pool, step); s != state.StepInProgress {
		t.Errorf("step is %s after its claim, want in_progress", s)
	}
}
