package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

// ---- helpers (prefixed orch) ----

func orchLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("TASKER_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// orchRegister parses a YAML template and registers it, as a worker does at start.
func orchRegister(t *testing.T, pool *pgxpool.Pool, yaml string) *template.TaskTemplate {
	t.Helper()
	tmpl, err := template.Parse([]byte(yaml), t.Name())
	if err != nil {
		t.Fatalf("parse template: %v", err)
	}
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := template.Register(ctx, tx, tmpl); err != nil {
		t.Fatalf("register template: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// orchNew returns an orchestrator with test-speed intervals and a deterministic backoff
// (base 1s, ×2, max 10s, no jitter).
func orchNew(t *testing.T, pool *pgxpool.Pool, mod func(*orchestration.Config)) *orchestration.Orchestrator {
	t.Helper()
	cfg := orchestration.Config{
		PollInterval:      100 * time.Millisecond,
		ReadinessInterval: 100 * time.Millisecond,
		RecoveryInterval:  200 * time.Millisecond,
		VisibilityTimeout: 5 * time.Second,
		Backoff: orchestration.BackoffConfig{Base: time.Second, Max: 10 * time.Second, Multiplier: 2,
			JitterPercent: orchestration.NoJitter},
	}
	if mod != nil {
		mod(&cfg)
	}
	o, err := orchestration.New(cfg, pool, orchestration.WithLogger(orchLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// orchRun runs o until the test ends (or the returned stop is called).
func orchRun(t *testing.T, o *orchestration.Orchestrator) (stop func()) {
	t.Helper()
	return runInBackground(t, "orchestrator", o.Run)
}

// orchWorker runs a Go worker for ns with reg until the test ends.
func orchWorker(t *testing.T, pool *pgxpool.Pool, ns string, reg *handlers.Registry) {
	t.Helper()
	wkStartResolver(t, pool, []string{ns}, reg, func(c *worker.Config) {
		c.PollInterval = 50 * time.Millisecond
		c.VisibilityTimeout = 5 * time.Second
		c.ShutdownTimeout = 5 * time.Second
	})
}

func orchRequest(ns, name string, ctxJSON string) orchestration.TaskRequest {
	return orchestration.TaskRequest{
		Namespace: ns, Name: name, Version: "1.0.0", Context: json.RawMessage(ctxJSON),
		Initiator: "integration-test", SourceSystem: "test", Reason: "orchestration test",
		Tags: []string{"integration-test"}, Priority: 5,
	}
}

func orchCreate(t *testing.T, o *orchestration.Orchestrator, req orchestration.TaskRequest) *orchestration.CreatedTask {
	t.Helper()
	ct, err := o.CreateTask(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	return ct
}

// orchWaitTask polls until the task reaches one of want, failing the test after within.
func orchWaitTask(t *testing.T, pool *pgxpool.Pool, task uuid.UUID, within time.Duration, want ...state.TaskState) state.TaskState {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := state.CurrentTaskState(context.Background(), pool, task)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(want, got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after %s, want %v\ntransitions: %v", task, got, within, want, orchTaskTrail(t, pool, task))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func orchWaitStep(t *testing.T, pool *pgxpool.Pool, step uuid.UUID, within time.Duration, want state.StepState) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := state.CurrentStepState(context.Background(), pool, step)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s is %s after %s, want %s", step, got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// orchTaskTrail returns "to_state:event" for each task transition, in order.
func orchTaskTrail(t *testing.T, pool *pgxpool.Pool, task uuid.UUID) []string {
	t.Helper()
	trs, err := state.TaskTransitions(context.Background(), pool, task)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(trs))
	for i, tr := range trs {
		var meta map[string]any
		_ = json.Unmarshal(tr.Metadata, &meta)
		ev, _ := meta["event"].(string)
		out[i] = string(tr.To) + ":" + ev
	}
	return out
}

func orchStepTrail(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) []string {
	t.Helper()
	trs, err := state.StepTransitions(context.Background(), pool, step)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(trs))
	for i, tr := range trs {
		out[i] = string(tr.To)
	}
	return out
}

func orchScalar[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", orchFirstLine(sql), err)
	}
	return v
}

func orchFirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i > 0 {
		return s[:i]
	}
	return s
}

// orchCounts counts the rows task creation writes, to prove a refused request wrote nothing.
func orchCounts(t *testing.T, pool *pgxpool.Pool, ns string) [6]int {
	t.Helper()
	var out [6]int
	for i, sql := range []string{
		`SELECT count(*) FROM tasker.tasks`,
		`SELECT count(*) FROM tasker.workflow_steps`,
		`SELECT count(*) FROM tasker.workflow_step_edges`,
		`SELECT count(*) FROM tasker.task_transitions`,
		`SELECT count(*) FROM tasker.workflow_step_transitions`,
		`SELECT count(*) FROM pgmq.q_worker_` + ns + `_queue`,
	} {
		out[i] = int(orchScalar[int64](t, pool, sql))
	}
	return out
}

// orchStepResults decodes workflow_steps.results of a step.
func orchStepResults(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) protocol.StepExecutionResult {
	t.Helper()
	raw := orchScalar[[]byte](t, pool, `SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step)
	var r protocol.StepExecutionResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("results of %s: %v", step, err)
	}
	return r
}

// orchStepsByName maps step name → workflow_step_uuid for a task.
func orchStepsByName(t *testing.T, pool *pgxpool.Pool, task uuid.UUID) map[string]uuid.UUID {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT ns.name::text, ws.workflow_step_uuid FROM tasker.workflow_steps ws
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		 WHERE ws.task_uuid = $1`, task)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uuid.UUID{}
	for rows.Next() {
		var n string
		var id uuid.UUID
		if err := rows.Scan(&n, &id); err != nil {
			t.Fatal(err)
		}
		out[n] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// orchEdges returns "from->to:name" for a task's edges, sorted.
func orchEdges(t *testing.T, pool *pgxpool.Pool, task uuid.UUID) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT fn.name::text, tn.name::text, e.name::text
		  FROM tasker.workflow_step_edges e
		  JOIN tasker.workflow_steps f ON f.workflow_step_uuid = e.from_step_uuid
		  JOIN tasker.named_steps fn ON fn.named_step_uuid = f.named_step_uuid
		  JOIN tasker.workflow_steps s ON s.workflow_step_uuid = e.to_step_uuid
		  JOIN tasker.named_steps tn ON tn.named_step_uuid = s.named_step_uuid
		 WHERE f.task_uuid = $1`, task)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var a, b, n string
		if err := rows.Scan(&a, &b, &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, a+"->"+b+":"+n)
	}
	sort.Strings(out)
	return out
}

func orchKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// orchSimulateWorker does what a worker does with a step: claim it (enqueued → in_progress,
// attempts+1) and write res (→ enqueued_*_for_orchestration), and, if send, notify
// orchestration_step_results — all in one transaction, like the Go worker.
func orchSimulateWorker(t *testing.T, pool *pgxpool.Pool, task, step, corr uuid.UUID, res protocol.StepExecutionResult, send bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventStart),
		state.TransitionOptions{ExpectFrom: []state.StepState{state.StepEnqueued}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = COALESCE(attempts, 0) + 1,
		last_attempted_at = timezone('UTC', clock_timestamp()) WHERE workflow_step_uuid = $1`, step); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(res)
	ev := state.StepEventEnqueueForOrchestration
	if !res.Success {
		ev = state.StepEventEnqueueAsErrorForOrchestration
	}
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventWithData(ev, data),
		state.TransitionOptions{ExpectFrom: []state.StepState{state.StepInProgress}, CorrelationID: corr}); err != nil {
		t.Fatal(err)
	}
	if send {
		if _, err := queue.NewClient(pool).SendWithNotify(ctx, tx, queue.StepResultsQueue,
			protocol.StepMessage{TaskUUID: task, StepUUID: step, CorrelationID: corr}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// ---- templates ----

const orchCreateYAML = `
name: create_rows
namespace_name: orch_create
version: 1.0.0
input_schema:
  type: object
  required: [n]
  properties:
    n: {type: integer, minimum: 1}
steps:
  - name: oc_a
    handler:
      callable: orch.a
      initialization: {factor: 3, label: first}
  - name: oc_b
    dependencies: [oc_a]
    handler: {callable: orch.b}
    retry: {retryable: false, max_attempts: 1}
  - name: oc_c
    dependencies: [oc_a, oc_b]
    handler: {callable: orch.c}
    retry: {retryable: true, max_attempts: 7}
  - name: oc_analyze
    type: batchable
    handler:
      callable: orch.analyze
      initialization: {worker_template_name: oc_work}
  - name: oc_work
    type: batch_worker
    dependencies: [oc_analyze]
    handler: {callable: orch.work}
    batch_config: {batch_size: 10, parallelism: 2, cursor_field: id, worker_template: oc_work}
  - name: oc_merge
    type: deferred_convergence
    dependencies: [oc_work]
    handler: {callable: orch.merge}
`

// ---- tests ----

func TestOrchestrationCreateTaskRows(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchCreateYAML)
	o := orchNew(t, pool, nil)

	corr := uuid.Must(uuid.NewV7())
	parent := uuid.Must(uuid.NewV7())
	req := orchRequest("orch_create", "create_rows", `{"n": 4, "b": {"y": 1, "x": [1, 2]}}`)
	req.CorrelationID, req.ParentCorrelationID = &corr, &parent
	req.Tags = []string{"x", "y"}
	ct := orchCreate(t, o, req)

	if ct.State != state.TaskStepsInProcess || ct.CorrelationID != corr || ct.Version != "1.0.0" {
		t.Fatalf("created: %+v", ct)
	}
	if got := orchKeys(ct.Steps); !slices.Equal(got, []string{"oc_a", "oc_analyze", "oc_b", "oc_c"}) {
		t.Fatalf("initial steps %v: batch_worker and deferred_convergence must not be created", got)
	}
	if len(ct.EnqueuedSteps) != 2 || !slices.Contains(ct.EnqueuedSteps, ct.Steps["oc_a"]) || !slices.Contains(ct.EnqueuedSteps, ct.Steps["oc_analyze"]) {
		t.Fatalf("enqueued %v, want the two roots", ct.EnqueuedSteps)
	}

	// tasks row
	var (
		complete                            bool
		initiator, source, reason, identity string
		tags, taskCtx                       string
		priority                            int32
		gotCorr                             uuid.UUID
		gotParent                           *uuid.UUID
		completedAt                         *time.Time
	)
	if err := pool.QueryRow(ctx, `SELECT complete, initiator, source_system, reason, identity_hash, tags::text, context::text,
		priority, correlation_id, parent_correlation_id, completed_at FROM tasker.tasks WHERE task_uuid = $1`, ct.TaskUUID).Scan(
		&complete, &initiator, &source, &reason, &identity, &tags, &taskCtx, &priority, &gotCorr, &gotParent, &completedAt); err != nil {
		t.Fatal(err)
	}
	if complete || initiator != "integration-test" || source != "test" || reason != "orchestration test" ||
		identity != ct.IdentityHash || len(identity) != 64 || tags != `["x", "y"]` || priority != 5 ||
		gotCorr != corr || gotParent == nil || *gotParent != parent || completedAt != nil {
		t.Fatalf("task row: complete=%v initiator=%q source=%q reason=%q identity=%q tags=%s priority=%d corr=%s parent=%v completed_at=%v",
			complete, initiator, source, reason, identity, tags, priority, gotCorr, gotParent, completedAt)
	}
	if taskCtx != `{"b": {"x": [1, 2], "y": 1}, "n": 4}` {
		t.Fatalf("context %s", taskCtx)
	}

	// workflow steps: retry settings and inputs from the template; attempts NULL.
	type wsRow struct {
		retryable        bool
		maxAttempts      int32
		inputs           *string
		attempts         *int32
		inProc, processd bool
	}
	for name, want := range map[string]wsRow{
		"oc_a":       {true, 3, orchPtr(`{"label": "first", "factor": 3}`), nil, false, false},
		"oc_b":       {false, 1, nil, nil, false, false},
		"oc_c":       {true, 7, nil, nil, false, false},
		"oc_analyze": {true, 3, orchPtr(`{"worker_template_name": "oc_work"}`), nil, false, false},
	} {
		var got wsRow
		if err := pool.QueryRow(ctx, `SELECT retryable, max_attempts, inputs::text, attempts, in_process, processed
			FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, ct.Steps[name]).Scan(
			&got.retryable, &got.maxAttempts, &got.inputs, &got.attempts, &got.inProc, &got.processd); err != nil {
			t.Fatal(err)
		}
		if got.retryable != want.retryable || got.maxAttempts != want.maxAttempts || got.attempts != nil ||
			got.inProc || got.processd || (want.inputs == nil) != (got.inputs == nil) ||
			(want.inputs != nil && !orchJSONEqual(*want.inputs, *got.inputs)) {
			t.Errorf("step %s: got %+v (inputs %v), want %+v (inputs %v)", name, got, orchDeref(got.inputs), want, orchDeref(want.inputs))
		}
	}
	if got := orchEdges(t, pool, ct.TaskUUID); !slices.Equal(got, []string{
		"oc_a->oc_b:provides", "oc_a->oc_c:provides", "oc_b->oc_c:provides"}) {
		t.Fatalf("edges %v", got)
	}

	// task transitions: tasker-core's order and events, with our processor uuid.
	trs, err := state.TaskTransitions(ctx, pool, ct.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	wantTask := []string{"pending:", "initializing:Start", "enqueuing_steps:ReadyStepsFound(2)",
		"steps_in_process:StepsEnqueued([" + orchUUIDList(ct.EnqueuedSteps) + "])"}
	if got := orchTaskTrail(t, pool, ct.TaskUUID); !slices.Equal(got, wantTask) {
		t.Fatalf("task trail %v, want %v", got, wantTask)
	}
	for i, tr := range trs {
		if tr.SortKey != i+1 || tr.ProcessorUUID != o.Config().ProcessorUUID || tr.MostRecent != (i == len(trs)-1) {
			t.Errorf("task transition %d: sort_key %d processor %s most_recent %v", i, tr.SortKey, tr.ProcessorUUID, tr.MostRecent)
		}
	}
	if trs[0].From != "" || !orchJSONEqual(string(trs[0].Metadata), `{"initial_state":"pending","from_service":"task_initializer"}`) {
		t.Fatalf("initial task transition: from %q metadata %s", trs[0].From, trs[0].Metadata)
	}
	for name, id := range ct.Steps {
		want := []string{"pending"}
		if slices.Contains(ct.EnqueuedSteps, id) {
			want = []string{"pending", "enqueued"}
		}
		if got := orchStepTrail(t, pool, id); !slices.Equal(got, want) {
			t.Errorf("step %s trail %v, want %v", name, got, want)
		}
		strs, _ := state.StepTransitions(ctx, pool, id)
		if !orchJSONEqual(string(strs[0].Metadata), `{"initial_state":"pending","from_service":"task_initializer"}`) {
			t.Errorf("step %s initial metadata %s", name, strs[0].Metadata)
		}
	}

	// worker messages: exactly the three uuids.
	msgs, err := queue.NewClient(pool).Read(ctx, queue.WorkerQueue("orch_create"), 30, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d worker messages, want 2", len(msgs))
	}
	var sent []uuid.UUID
	for _, m := range msgs {
		var body map[string]string
		if err := json.Unmarshal(m.Body, &body); err != nil {
			t.Fatal(err)
		}
		if len(body) != 3 || body["task_uuid"] != ct.TaskUUID.String() || body["correlation_id"] != corr.String() {
			t.Fatalf("message body %s", m.Body)
		}
		sent = append(sent, uuid.MustParse(body["step_uuid"]))
	}
	slices.SortFunc(sent, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(sent, ct.EnqueuedSteps) {
		t.Fatalf("messages for %v, want %v", sent, ct.EnqueuedSteps)
	}

	st, err := o.TaskStatus(ctx, ct.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != state.TaskStepsInProcess || st.Execution.TotalSteps != 4 || st.Execution.EnqueuedSteps != 2 ||
		st.Execution.ExecutionStatus != orchestration.ExecProcessing || len(st.Steps) != 4 || st.Step("oc_b").MaxAttempts != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestOrchestrationCreateTaskRejects(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchCreateYAML)
	o := orchNew(t, pool, nil)
	orchCreate(t, o, orchRequest("orch_create", "create_rows", `{"n": 4, "z": {"b": 1, "a": 2}}`))
	before := orchCounts(t, pool, "orch_create")

	// Same context with keys reordered: same identity.
	_, err := o.CreateTask(ctx, orchRequest("orch_create", "create_rows", `{"z": {"a": 2, "b": 1}, "n": 4}`))
	var dup *orchestration.DuplicateTaskError
	if !errors.Is(err, orchestration.ErrDuplicateTask) || !errors.As(err, &dup) {
		t.Fatalf("duplicate: got %v", err)
	}

	// Schema violation names the field.
	_, err = o.CreateTask(ctx, orchRequest("orch_create", "create_rows", `{"n": "four"}`))
	var ve *orchestration.ValidationError
	if !errors.Is(err, orchestration.ErrInvalidRequest) || !errors.As(err, &ve) || !slices.Contains(ve.Fields(), "context.n") {
		t.Fatalf("schema violation: got %v", err)
	}
	var ce *template.ContextError
	if !errors.As(err, &ce) {
		t.Fatalf("schema violation does not wrap *template.ContextError: %v", err)
	}
	_, err = o.CreateTask(ctx, orchRequest("orch_create", "create_rows", `{"n": 0}`))
	if !errors.As(err, &ve) || !slices.Contains(ve.Fields(), "context.n") {
		t.Fatalf("minimum: got %v", err)
	}
	_, err = o.CreateTask(ctx, orchRequest("orch_create", "create_rows", `{"m": 1}`))
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "n") {
		t.Fatalf("required: got %v", err)
	}

	// tasker-core's JSON limits.
	deep := `{"n": 1, "d": ` + strings.Repeat(`{"a":`, 10) + "1" + strings.Repeat("}", 10) + `}`
	_, err = o.CreateTask(ctx, orchRequest("orch_create", "create_rows", deep))
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "nesting too deep") || !strings.HasPrefix(ve.Fields()[0], "context.d.a") {
		t.Fatalf("depth: got %v", err)
	}
	long := `{"n": 1, "s": "` + strings.Repeat("x", 10001) + `"}`
	if _, err = o.CreateTask(ctx, orchRequest("orch_create", "create_rows", long)); !errors.As(err, &ve) || ve.Fields()[0] != "context.s" {
		t.Fatalf("long string: got %v", err)
	}
	bad := orchRequest("orch_create", "create_rows", `{"n": 1}`)
	bad.Priority = 101
	if _, err = o.CreateTask(ctx, bad); !errors.As(err, &ve) || ve.Fields()[0] != "priority" {
		t.Fatalf("priority: got %v", err)
	}

	// Unknown template.
	_, err = o.CreateTask(ctx, orchRequest("orch_create", "no_such_task", `{"n": 1}`))
	var nf *orchestration.TemplateNotFoundError
	if !errors.Is(err, orchestration.ErrTemplateNotFound) || !errors.As(err, &nf) ||
		nf.Namespace != "orch_create" || nf.Name != "no_such_task" || nf.Version != "1.0.0" ||
		!strings.Contains(err.Error(), "orch_create/no_such_task/1.0.0") {
		t.Fatalf("unknown template: got %v", err)
	}
	r := orchRequest("orch_create", "create_rows", `{"n": 1}`)
	r.Version = "9.9.9"
	if _, err = o.CreateTask(ctx, r); !errors.Is(err, orchestration.ErrTemplateNotFound) {
		t.Fatalf("unknown version: got %v", err)
	}

	if after := orchCounts(t, pool, "orch_create"); after != before {
		t.Fatalf("refused requests wrote rows: before %v after %v", before, after)
	}

	// An idempotency key replaces the context in the identity.
	key := "order-42"
	k1 := orchRequest("orch_create", "create_rows", `{"n": 1}`)
	k1.IdempotencyKey = &key
	orchCreate(t, o, k1)
	k2 := orchRequest("orch_create", "create_rows", `{"n": 2}`)
	k2.IdempotencyKey = &key
	if _, err := o.CreateTask(ctx, k2); !errors.Is(err, orchestration.ErrDuplicateTask) {
		t.Fatalf("same idempotency key: got %v", err)
	}
	// "latest" resolves the version.
	latest := orchRequest("orch_create", "create_rows", `{"n": 3}`)
	latest.Version = ""
	if ct := orchCreate(t, o, latest); ct.Version != "1.0.0" {
		t.Fatalf("latest version resolved to %q", ct.Version)
	}
}

const orchLinearYAML = `
name: linear
namespace_name: orch_linear
version: 1.0.0
steps:
  - name: ol_step_1
    handler: {callable: orch.square}
  - name: ol_step_2
    dependencies: [ol_step_1]
    handler: {callable: orch.square}
  - name: ol_step_3
    dependencies: [ol_step_2]
    handler: {callable: orch.square}
`

// orchSquare squares the previous step's result (or the context's n for the first step).
func orchSquare(prev map[string]string) handlers.Handler {
	return handlers.Func(func(ctx context.Context, s *handlers.StepContext) (any, error) {
		var n int64
		var err error
		if p := prev[s.StepName()]; p != "" {
			n, err = handlers.DecodeDependencyField[int64](s, p, "value")
		} else {
			n, err = handlers.DecodeContextField[int64](s, "n")
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"value": n * n}, nil
	})
}

// orchLinearSetup registers the linear template and returns a registry with its handler.
func orchLinearSetup(t *testing.T, pool *pgxpool.Pool) *handlers.Registry {
	t.Helper()
	orchRegister(t, pool, orchLinearYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.square", orchSquare(map[string]string{"ol_step_2": "ol_step_1", "ol_step_3": "ol_step_2"}))
	return reg
}

func TestOrchestrationLinearWorkflowCompletes(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	reg := orchLinearSetup(t, pool)
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("orch_linear", "linear", `{"n": 2}`))
	orchWorker(t, pool, "orch_linear", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, ct.TaskUUID, 20*time.Second, state.TaskComplete)

	s1, s2, s3 := ct.Steps["ol_step_1"], ct.Steps["ol_step_2"], ct.Steps["ol_step_3"]
	want := []string{
		"pending:", "initializing:Start",
		"enqueuing_steps:ReadyStepsFound(1)", "steps_in_process:StepsEnqueued([" + s1.String() + "])",
		"evaluating_results:StepCompleted(" + s1.String() + ")",
		"enqueuing_steps:ReadyStepsFound(1)", "steps_in_process:StepsEnqueued([" + s2.String() + "])",
		"evaluating_results:StepCompleted(" + s2.String() + ")",
		"enqueuing_steps:ReadyStepsFound(1)", "steps_in_process:StepsEnqueued([" + s3.String() + "])",
		"evaluating_results:StepCompleted(" + s3.String() + ")",
		"complete:AllStepsSuccessful",
	}
	if got := orchTaskTrail(t, pool, ct.TaskUUID); !slices.Equal(got, want) {
		t.Fatalf("task trail\n got %v\nwant %v", got, want)
	}
	for _, s := range []uuid.UUID{s1, s2, s3} {
		if got := orchStepTrail(t, pool, s); !slices.Equal(got, []string{"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}) {
			t.Errorf("step %s trail %v", s, got)
		}
		if n := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1 AND processed AND NOT in_process AND processed_at IS NOT NULL`, s); n != 1 {
			t.Errorf("step %s attempts %d", s, n)
		}
	}
	var value int64
	if err := json.Unmarshal(orchStepResults(t, pool, s3).Result, &struct {
		Value *int64 `json:"value"`
	}{&value}); err != nil || value != 256 {
		t.Fatalf("final value %d (%v), want 2^8 = 256", value, err)
	}
	if !orchScalar[bool](t, pool, `SELECT complete AND completed_at IS NOT NULL FROM tasker.tasks WHERE task_uuid = $1`, ct.TaskUUID) {
		t.Fatal("tasks.complete / completed_at not set")
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.a_orchestration_step_results`); n != 3 {
		t.Fatalf("%d archived result messages, want 3", n)
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 0 {
		t.Fatalf("%d result messages left", n)
	}
	st, err := o.TaskStatus(ctx, ct.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Execution.ExecutionStatus != orchestration.ExecAllComplete || st.Execution.CompletionPercentage != 100 || !st.Complete {
		t.Fatalf("status %+v", st.Execution)
	}
}

const orchRetryYAML = `
name: retry
namespace_name: orch_retry
version: 1.0.0
steps:
  - name: or_flaky
    handler: {callable: orch.flaky}
    retry: {retryable: true, max_attempts: 3}
`

func TestOrchestrationRetryThenSuccess(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchRetryYAML)
	var (
		mu       sync.Mutex
		backoffs []*int32 // backoff_request_seconds seen at each execution
		calls    atomic.Int32
	)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.flaky", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		var b *int32
		_ = pool.QueryRow(ctx, `SELECT backoff_request_seconds FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, s.StepUUID()).Scan(&b)
		mu.Lock()
		backoffs = append(backoffs, b)
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			return handlers.ErrorResult(handlers.RetryableError("transient glitch"))
		case 2:
			// Exponential would be 1s × 2^2 = 4s; the server asks for 1s.
			return handlers.ErrorResult(handlers.RetryableError("rate limited").WithRetryAfter(time.Second))
		}
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("orch_retry", "retry", `{}`))
	orchWorker(t, pool, "orch_retry", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, ct.TaskUUID, 30*time.Second, state.TaskComplete)

	step := ct.Steps["or_flaky"]
	mu.Lock()
	defer mu.Unlock()
	if len(backoffs) != 3 || backoffs[0] != nil || backoffs[1] == nil || *backoffs[1] != 2 || backoffs[2] == nil || *backoffs[2] != 1 {
		t.Fatalf("backoff_request_seconds at each execution: %v, want [nil 2 1] (2 = 1s×2^1 after attempt 1; 1 = Retry-After)", orchDerefAll(backoffs))
	}
	wantTrail := []string{"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "waiting_for_retry",
		"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "waiting_for_retry",
		"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}
	if got := orchStepTrail(t, pool, step); !slices.Equal(got, wantTrail) {
		t.Fatalf("step trail %v", got)
	}
	if n := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step); n != 3 {
		t.Fatalf("attempts %d, want 3", n)
	}
	trs, _ := state.StepTransitions(ctx, pool, step)
	var ev state.StepEvent
	var meta map[string]string
	_ = json.Unmarshal(trs[4].Metadata, &meta)
	if err := json.Unmarshal([]byte(meta["event"]), &ev); err != nil || ev.Type != state.StepEventWaitForRetry || ev.Message != "transient glitch - retryable" {
		t.Fatalf("WaitForRetry event %+v (%v)", ev, err)
	}
	// The retries waited for their backoff: Retry (→ pending) no sooner than backoff after the
	// failure was processed (last_attempted_at = that moment).
	gap1 := trs[5].CreatedAt.Sub(trs[4].CreatedAt)
	gap2 := trs[10].CreatedAt.Sub(trs[9].CreatedAt)
	if gap1 < 2*time.Second || gap2 < time.Second || gap2 >= 4*time.Second {
		t.Fatalf("retry gaps %s and %s, want >= 2s and in [1s, 4s)", gap1, gap2)
	}
	trail := orchTaskTrail(t, pool, ct.TaskUUID)
	waits := 0
	for _, s := range trail {
		if s == "waiting_for_dependencies:NoDependenciesReady" {
			waits++
		}
	}
	if waits != 2 || trail[len(trail)-1] != "complete:AllStepsSuccessful" || !slices.Contains(trail, "evaluating_results:DependenciesReady") {
		t.Fatalf("task trail %v", trail)
	}
}

const orchExhaustYAML = `
name: exhaust
namespace_name: orch_exhaust
version: 1.0.0
steps:
  - name: oe_always_fail
    handler: {callable: orch.always_fail}
    retry: {retryable: true, max_attempts: 2}
`

func TestOrchestrationRetryExhaustion(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, orchExhaustYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.always_fail", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.RetryableError("still broken").WithCode("SIMULATED_FAILURE")
	}))
	o := orchNew(t, pool, func(c *orchestration.Config) { c.Backoff.Multiplier = 1 }) // 1s per retry
	ct := orchCreate(t, o, orchRequest("orch_exhaust", "exhaust", `{}`))
	orchWorker(t, pool, "orch_exhaust", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, ct.TaskUUID, 20*time.Second, state.TaskBlockedByFailures)
	step := ct.Steps["oe_always_fail"]
	want := []string{"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "waiting_for_retry",
		"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "error"}
	if got := orchStepTrail(t, pool, step); !slices.Equal(got, want) {
		t.Fatalf("step trail %v", got)
	}
	if n := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step); n != 2 {
		t.Fatalf("attempts %d, want max_attempts 2", n)
	}
	if b := orchScalar[int32](t, pool, `SELECT backoff_request_seconds FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step); b != 1 {
		t.Fatalf("backoff_request_seconds %d, want 1 (base 1s × 1^1)", b)
	}
	trail := orchTaskTrail(t, pool, ct.TaskUUID)
	if trail[len(trail)-1] != `blocked_by_failures:PermanentFailure("Steps in error state")` {
		t.Fatalf("task trail %v", trail)
	}
}

const orchFailYAML = `
name: fail
namespace_name: orch_fail
version: 1.0.0
steps:
  - name: of_boom
    handler: {callable: orch.boom}
  - name: of_no_retry
    handler: {callable: orch.glitch}
    retry: {retryable: false, max_attempts: 3}
  - name: of_after
    dependencies: [of_boom, of_no_retry]
    handler: {callable: orch.boom}
`

func TestOrchestrationPermanentFailureBlocksTask(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, orchFailYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.boom", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.PermanentError("card declined").WithCode("DECLINED")
	}))
	// The handler says retryable, the template says retryable: false: the template wins (no
	// step parked forever in waiting_for_retry).
	reg.MustRegister("orch.glitch", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.RetryableError("glitch")
	}))
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("orch_fail", "fail", `{}`))
	orchWorker(t, pool, "orch_fail", reg)
	orchRun(t, o)
	orchWaitStep(t, pool, ct.Steps["of_boom"], 20*time.Second, state.StepError)
	orchWaitStep(t, pool, ct.Steps["of_no_retry"], 20*time.Second, state.StepError)
	orchWaitTask(t, pool, ct.TaskUUID, 5*time.Second, state.TaskBlockedByFailures)
	time.Sleep(500 * time.Millisecond) // nothing else may happen (no GiveUp, no retry)

	want := []string{"pending:", "initializing:Start", "enqueuing_steps:ReadyStepsFound(2)",
		"steps_in_process:StepsEnqueued([" + orchUUIDList([]uuid.UUID{ct.Steps["of_boom"], ct.Steps["of_no_retry"]}) + "])"}
	got := orchTaskTrail(t, pool, ct.TaskUUID)
	if len(got) != 6 || !slices.Equal(got[:4], want) || !strings.HasPrefix(got[4], "evaluating_results:StepCompleted(") ||
		got[5] != `blocked_by_failures:PermanentFailure("Steps in error state")` {
		t.Fatalf("task trail %v", got)
	}
	for _, name := range []string{"of_boom", "of_no_retry"} {
		s := ct.Steps[name]
		if trail := orchStepTrail(t, pool, s); !slices.Equal(trail, []string{"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "error"}) {
			t.Errorf("%s trail %v", name, trail)
		}
		if n := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, s); n != 1 {
			t.Errorf("%s attempts %d, want 1", name, n)
		}
	}
	if trail := orchStepTrail(t, pool, ct.Steps["of_after"]); !slices.Equal(trail, []string{"pending"}) {
		t.Errorf("dependent step trail %v", trail)
	}
	if orchScalar[bool](t, pool, `SELECT complete FROM tasker.tasks WHERE task_uuid = $1`, ct.TaskUUID) {
		t.Fatal("blocked task marked complete")
	}
}

const orchDecisionYAML = `
name: approval_routing
namespace_name: orch_decision
version: 1.0.0
steps:
  - name: od_validate
    handler: {callable: orch.validate}
  - name: od_routing
    type: decision
    dependencies: [od_validate]
    handler: {callable: orch.route}
  - name: od_finalize
    type: deferred_convergence
    dependencies: [od_auto, od_manager, od_finance]
    handler: {callable: orch.finalize}
  - name: od_auto
    dependencies: [od_routing]
    handler: {callable: orch.approve, initialization: {approval_type: automatic}}
  - name: od_manager
    dependencies: [od_routing]
    handler: {callable: orch.approve, initialization: {approval_type: manager}}
  - name: od_finance
    dependencies: [od_routing]
    handler: {callable: orch.approve, initialization: {approval_type: finance}}
`

func TestOrchestrationDecisionPoint(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, orchDecisionYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.validate", handlers.Func(func(_ context.Context, s *handlers.StepContext) (any, error) {
		amount, err := handlers.DecodeContextField[int64](s, "amount")
		return map[string]any{"amount": amount}, err
	}))
	reg.MustRegister("orch.route", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		amount, err := handlers.DecodeDependencyField[int64](s, "od_validate", "amount")
		switch {
		case err != nil:
			return handlers.ErrorResult(err)
		case amount < 1000:
			return handlers.DecisionSuccess([]string{"od_auto"}, map[string]any{"route": "auto"})
		case amount < 5000:
			return handlers.DecisionSuccess([]string{"od_manager"}, nil)
		}
		return handlers.DecisionSuccess([]string{"od_manager", "od_finance"}, nil)
	}))
	reg.MustRegister("orch.approve", handlers.Func(func(_ context.Context, s *handlers.StepContext) (any, error) {
		typ, err := handlers.DecodeConfig[string](s, "approval_type")
		return map[string]any{"approved": true, "approval_type": typ}, err
	}))
	reg.MustRegister("orch.finalize", handlers.Func(func(_ context.Context, s *handlers.StepContext) (any, error) {
		var chain []string
		for _, d := range []string{"od_auto", "od_manager", "od_finance"} {
			if typ, err := handlers.DecodeDependencyField[string](s, d, "approval_type"); err == nil {
				chain = append(chain, typ)
			}
		}
		sort.Strings(chain)
		return map[string]any{"approval_chain": chain}, nil
	}))
	o := orchNew(t, pool, nil)
	small := orchCreate(t, o, orchRequest("orch_decision", "approval_routing", `{"amount": 500}`))
	large := orchCreate(t, o, orchRequest("orch_decision", "approval_routing", `{"amount": 10000}`))
	if got := orchKeys(small.Steps); !slices.Equal(got, []string{"od_routing", "od_validate"}) {
		t.Fatalf("steps at creation %v, want only the steps above the decision", got)
	}
	orchWorker(t, pool, "orch_decision", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, small.TaskUUID, 20*time.Second, state.TaskComplete)
	orchWaitTask(t, pool, large.TaskUUID, 20*time.Second, state.TaskComplete)

	cases := []struct {
		task  *orchestration.CreatedTask
		steps []string
		edges []string
		chain string
	}{
		{small, []string{"od_auto", "od_finalize", "od_routing", "od_validate"}, []string{
			"od_auto->od_finalize:provides", "od_routing->od_auto:provides", "od_validate->od_routing:provides"}, `["automatic"]`},
		{large, []string{"od_finalize", "od_finance", "od_manager", "od_routing", "od_validate"}, []string{
			"od_finance->od_finalize:provides", "od_manager->od_finalize:provides", "od_routing->od_finance:provides",
			"od_routing->od_manager:provides", "od_validate->od_routing:provides"}, `["finance","manager"]`},
	}
	for _, c := range cases {
		steps := orchStepsByName(t, pool, c.task.TaskUUID)
		if got := orchKeys(steps); !slices.Equal(got, c.steps) {
			t.Errorf("steps %v, want %v", got, c.steps)
			continue
		}
		if got := orchEdges(t, pool, c.task.TaskUUID); !slices.Equal(got, c.edges) {
			t.Errorf("edges %v, want %v", got, c.edges)
		}
		for name, id := range steps {
			if got := orchStepTrail(t, pool, id); got[len(got)-1] != "complete" {
				t.Errorf("step %s trail %v", name, got)
			}
			// Steps created by the decision have no initial transition row (they read as
			// pending, as tasker-core creates them); their first row leaves pending.
			if _, initial := c.task.Steps[name]; !initial {
				trs, _ := state.StepTransitions(context.Background(), pool, id)
				if trs[0].From != state.StepPending || trs[0].To != state.StepEnqueued || trs[0].SortKey != 1 {
					t.Errorf("dynamic step %s first transition %+v", name, trs[0])
				}
			}
		}
		fin := orchStepResults(t, pool, steps["od_finalize"])
		var out struct {
			Chain json.RawMessage `json:"approval_chain"`
		}
		if err := json.Unmarshal(fin.Result, &out); err != nil || !orchJSONEqual(string(out.Chain), c.chain) {
			t.Errorf("approval chain %s, want %s", out.Chain, c.chain)
		}
		if trail := orchTaskTrail(t, pool, c.task.TaskUUID); trail[len(trail)-1] != "complete:AllStepsSuccessful" {
			t.Errorf("task trail %v", trail)
		}
	}
}

const orchBatchYAML = `
name: batch
namespace_name: orch_batch
version: 1.0.0
steps:
  - name: ob_analyze
    type: batchable
    handler:
      callable: orch.analyze
      initialization: {batch_size: 2, worker_template_name: ob_process}
  - name: ob_process
    type: batch_worker
    dependencies: [ob_analyze]
    handler:
      callable: orch.process
      initialization: {operation: sum}
    retry: {retryable: true, max_attempts: 4}
    batch_config: {batch_size: 2, parallelism: 5, cursor_field: id, worker_template: ob_process, failure_strategy: fail_fast}
  - name: ob_aggregate
    type: deferred_convergence
    dependencies: [ob_process]
    handler: {callable: orch.aggregate}
`

func TestOrchestrationBatchProcessing(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, orchBatchYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.analyze", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		n := handlers.ContextFieldOr[int](s, "n", 0)
		size := handlers.ConfigOr[int](s, "batch_size", 1)
		if n == 0 {
			return handlers.NoBatchesResult("empty_dataset", map[string]any{"n": n})
		}
		return handlers.BatchAnalyzerSuccess("ob_process", handlers.CreateCursorRanges(n, size, 0), uint64(n), nil)
	}))
	reg.MustRegister("orch.process", handlers.HandlerFunc(func(_ context.Context, s *handlers.StepContext) handlers.Result {
		if r, ok := handlers.HandleNoOpWorker(s); ok {
			return r
		}
		bc, err := handlers.BatchContext(s)
		if err != nil {
			return handlers.ErrorResult(err)
		}
		start, end, err := bc.Range()
		if err != nil {
			return handlers.ErrorResult(err)
		}
		var sum int64
		for i := start; i < end; i++ {
			sum += i
		}
		return handlers.Success(map[string]any{"sum": sum, "processed_count": end - start}, nil)
	}))
	reg.MustRegister("orch.aggregate", handlers.Func(func(_ context.Context, s *handlers.StepContext) (any, error) {
		var total, workers int64
		for _, name := range s.DependencyNames() {
			if !strings.HasPrefix(name, "ob_process_") {
				continue
			}
			workers++
			if v, err := handlers.DecodeDependencyField[int64](s, name, "sum"); err == nil {
				total += v
			}
		}
		return map[string]any{"total": total, "workers": workers}, nil
	}))
	o := orchNew(t, pool, nil)
	full := orchCreate(t, o, orchRequest("orch_batch", "batch", `{"n": 5}`))
	empty := orchCreate(t, o, orchRequest("orch_batch", "batch", `{"n": 0}`))
	if got := orchKeys(full.Steps); !slices.Equal(got, []string{"ob_analyze"}) {
		t.Fatalf("steps at creation %v", got)
	}
	orchWorker(t, pool, "orch_batch", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, full.TaskUUID, 20*time.Second, state.TaskComplete)
	orchWaitTask(t, pool, empty.TaskUUID, 20*time.Second, state.TaskComplete)

	type inputs struct {
		Cursor        protocol.CursorConfig  `json:"cursor"`
		BatchMetadata protocol.BatchMetadata `json:"batch_metadata"`
		IsNoOp        bool                   `json:"is_no_op"`
		Template      string                 `json:"__template_step_name"`
		Operation     string                 `json:"operation"`
	}
	readInputs := func(step uuid.UUID) (inputs, int32, bool) {
		var raw []byte
		var maxA int32
		var retryable bool
		if err := pool.QueryRow(context.Background(), `SELECT inputs, max_attempts, retryable FROM tasker.workflow_steps
			WHERE workflow_step_uuid = $1`, step).Scan(&raw, &maxA, &retryable); err != nil {
			t.Fatal(err)
		}
		var in inputs
		if err := json.Unmarshal(raw, &in); err != nil {
			t.Fatal(err)
		}
		return in, maxA, retryable
	}

	steps := orchStepsByName(t, pool, full.TaskUUID)
	if got := orchKeys(steps); !slices.Equal(got, []string{"ob_aggregate", "ob_analyze", "ob_process_001", "ob_process_002", "ob_process_003"}) {
		t.Fatalf("steps %v", got)
	}
	ranges := map[string][2]string{"001": {"0", "2"}, "002": {"2", "4"}, "003": {"4", "5"}}
	for id, r := range ranges {
		in, maxA, retryable := readInputs(steps["ob_process_"+id])
		if in.Cursor.BatchID != id || string(in.Cursor.StartCursor) != r[0] || string(in.Cursor.EndCursor) != r[1] ||
			in.BatchMetadata.CursorField != "id" || in.BatchMetadata.FailureStrategy != protocol.FailFast ||
			in.IsNoOp || in.Template != "ob_process" || in.Operation != "sum" || maxA != 4 || !retryable {
			t.Errorf("worker %s inputs %+v max_attempts %d retryable %v", id, in, maxA, retryable)
		}
	}
	wantEdges := []string{
		"ob_analyze->ob_process_001:batch_dependency", "ob_analyze->ob_process_002:batch_dependency",
		"ob_analyze->ob_process_003:batch_dependency",
		"ob_process_001->ob_aggregate:worker_to_convergence", "ob_process_002->ob_aggregate:worker_to_convergence",
		"ob_process_003->ob_aggregate:worker_to_convergence",
	}
	if got := orchEdges(t, pool, full.TaskUUID); !slices.Equal(got, wantEdges) {
		t.Fatalf("edges %v", got)
	}
	var agg struct{ Total, Workers int64 }
	if err := json.Unmarshal(orchStepResults(t, pool, steps["ob_aggregate"]).Result, &agg); err != nil || agg.Total != 10 || agg.Workers != 3 {
		t.Fatalf("aggregate %+v (%v), want total 0+1+2+3+4 = 10 over 3 workers", agg, err)
	}

	steps = orchStepsByName(t, pool, empty.TaskUUID)
	if got := orchKeys(steps); !slices.Equal(got, []string{"ob_aggregate", "ob_analyze", "ob_process_000"}) {
		t.Fatalf("no_batches steps %v", got)
	}
	in, _, _ := readInputs(steps["ob_process_000"])
	if !in.IsNoOp || in.Cursor.BatchID != "000" || string(in.Cursor.StartCursor) != "0" || string(in.Cursor.EndCursor) != "0" ||
		in.Cursor.BatchSize != 0 || in.Template != "ob_process" {
		t.Fatalf("placeholder inputs %+v", in)
	}
	if got := orchEdges(t, pool, empty.TaskUUID); !slices.Equal(got, []string{
		"ob_analyze->ob_process_000:batch_dependency", "ob_process_000->ob_aggregate:worker_to_convergence"}) {
		t.Fatalf("no_batches edges %v", got)
	}
}

const orchDiamondYAML = `
name: diamond
namespace_name: orch_multi
version: 1.0.0
steps:
  - name: om_start
    handler: {callable: orch.ok}
  - name: om_left
    dependencies: [om_start]
    handler: {callable: orch.ok}
  - name: om_right
    dependencies: [om_start]
    handler: {callable: orch.ok}
  - name: om_end
    dependencies: [om_left, om_right]
    handler: {callable: orch.ok}
`

func TestOrchestrationTwoOrchestratorsNeverDoubleApply(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchDiamondYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.ok", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return map[string]any{"ok": true}, nil
	}))
	o1 := orchNew(t, pool, nil)
	o2 := orchNew(t, pool, func(c *orchestration.Config) { c.ResultBatchSize = 3 })

	// 1. The same message processed by both at once: applied exactly once.
	ct := orchCreate(t, o1, orchRequest("orch_multi", "diamond", `{"run": "direct"}`))
	start := ct.Steps["om_start"]
	orchSimulateWorker(t, pool, ct.TaskUUID, start, ct.CorrelationID,
		protocol.Success(start, json.RawMessage(`{"ok":true}`), 1, nil), true)
	msgs, err := queue.NewClient(pool).Read(ctx, queue.StepResultsQueue, 30, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("result messages %d (%v)", len(msgs), err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, o := range []*orchestration.Orchestrator{o1, o2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = o.ProcessResultMessage(ctx, msgs[0])
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("ProcessResultMessage: %v", errs)
	}
	if got := orchStepTrail(t, pool, start); !slices.Equal(got, []string{"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}) {
		t.Fatalf("start trail %v", got)
	}
	trail := orchTaskTrail(t, pool, ct.TaskUUID)
	if len(trail) != 7 || trail[4] != "evaluating_results:StepCompleted("+start.String()+")" ||
		trail[5] != "enqueuing_steps:ReadyStepsFound(2)" || !strings.HasPrefix(trail[6], "steps_in_process:StepsEnqueued([") {
		t.Fatalf("task trail after double processing %v", trail)
	}
	for _, s := range []string{"om_left", "om_right"} {
		if got := orchStepTrail(t, pool, ct.Steps[s]); !slices.Equal(got, []string{"pending", "enqueued"}) {
			t.Fatalf("%s trail %v (enqueued more than once?)", s, got)
		}
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.q_worker_orch_multi_queue WHERE message->>'task_uuid' = $1`, ct.TaskUUID.String()); n != 3 {
		t.Fatalf("%d worker messages for the task, want 3 (start, left, right)", n)
	}

	// 2. Many tasks, two orchestrators and two workers running together.
	const tasks = 12
	var created []*orchestration.CreatedTask
	for i := range tasks {
		o := o1
		if i%2 == 1 {
			o = o2
		}
		created = append(created, orchCreate(t, o, orchRequest("orch_multi", "diamond", fmt.Sprintf(`{"run": %d}`, i))))
	}
	orchWorker(t, pool, "orch_multi", reg)
	orchWorker(t, pool, "orch_multi", reg)
	orchRun(t, o1)
	orchRun(t, o2)
	created = append(created, ct)
	for _, c := range created {
		orchWaitTask(t, pool, c.TaskUUID, 30*time.Second, state.TaskComplete)
	}
	for _, c := range created {
		trail := orchTaskTrail(t, pool, c.TaskUUID)
		// pending, initializing, enqueuing, in process; start: evaluating, enqueuing, in
		// process; first of left/right: evaluating (the other is still in flight); second:
		// enqueuing, in process; end: evaluating, complete.
		if len(trail) != 12 || trail[11] != "complete:AllStepsSuccessful" {
			t.Errorf("task %s trail (%d) %v", c.TaskUUID, len(trail), trail)
		}
		for name, s := range orchStepsByName(t, pool, c.TaskUUID) {
			if got := orchStepTrail(t, pool, s); !slices.Equal(got, []string{"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}) {
				t.Errorf("task %s step %s trail %v", c.TaskUUID, name, got)
			}
		}
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.a_orchestration_step_results`); n != int64(len(created)*4) {
		t.Fatalf("%d archived results, want %d", n, len(created)*4)
	}
	processors := orchScalar[int64](t, pool, `SELECT count(DISTINCT processor_uuid) FROM tasker.task_transitions WHERE processor_uuid IS NOT NULL`)
	if processors != 2 {
		t.Logf("transitions written by %d processors", processors)
	}
}

const orchRecoverYAML = `
name: recover
namespace_name: orch_recover
version: 1.0.0
steps:
  - name: orc_step
    handler: {callable: orch.ok}
    timeout_seconds: 2
`

func TestOrchestrationRecoversAbandonedStep(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchRecoverYAML)
	o := orchNew(t, pool, func(c *orchestration.Config) { c.StaleGrace = time.Second })
	ct := orchCreate(t, o, orchRequest("orch_recover", "recover", `{}`))
	step := ct.Steps["orc_step"]

	// A worker read the message, claimed the step and died: the message stays invisible for an
	// hour and the step stays in_progress.
	if _, err := queue.NewClient(pool).Read(ctx, queue.WorkerQueue("orch_recover"), 3600, 10); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventStart), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 1,
		last_attempted_at = timezone('UTC', clock_timestamp()) - interval '2 seconds' WHERE workflow_step_uuid = $1`, step); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Not yet past timeout (2s) + grace (1s): nothing happens.
	rep, err := o.RecoverySweep(ctx)
	if err != nil || rep.AbandonedSteps != 0 {
		t.Fatalf("early sweep: %+v %v", rep, err)
	}
	time.Sleep(1500 * time.Millisecond)

	reg := handlers.NewRegistry()
	reg.MustRegister("orch.ok", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return map[string]any{"ok": true}, nil
	}))
	orchWorker(t, pool, "orch_recover", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, ct.TaskUUID, 30*time.Second, state.TaskComplete)

	want := []string{"pending", "enqueued", "in_progress", "enqueued_as_error_for_orchestration", "waiting_for_retry",
		"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}
	if got := orchStepTrail(t, pool, step); !slices.Equal(got, want) {
		t.Fatalf("step trail %v", got)
	}
	if n := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step); n != 2 {
		t.Fatalf("attempts %d, want 2", n)
	}
	trs, _ := state.StepTransitions(ctx, pool, step)
	var meta map[string]string
	_ = json.Unmarshal(trs[3].Metadata, &meta)
	var ev state.StepEvent
	if err := json.Unmarshal([]byte(meta["event"]), &ev); err != nil {
		t.Fatal(err)
	}
	res, err := protocol.DecodeStepExecutionResultStrict(ev.Data)
	if err != nil || res.Error == nil || res.Error.ErrorType == nil || *res.Error.ErrorType != handlers.ErrorTypeHandlerTimeout ||
		!res.Error.Retryable || !res.Metadata.Retryable || !strings.Contains(res.Error.Message, "presumed dead") {
		t.Fatalf("recovery result %+v (%v)", res, err)
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = $1 AND NOT success`, step); n != 1 {
		t.Fatalf("%d failure audit rows, want 1", n)
	}
}

func TestOrchestrationRecoversCrashedOrchestration(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchLinearYAML)
	o := orchNew(t, pool, func(c *orchestration.Config) { c.StuckThreshold = 500 * time.Millisecond })

	// (c) A worker wrote its result but crashed before notifying orchestration.
	orphan := orchCreate(t, o, orchRequest("orch_linear", "linear", `{"n": 3}`))
	s1 := orphan.Steps["ol_step_1"]
	orchSimulateWorker(t, pool, orphan.TaskUUID, s1, orphan.CorrelationID,
		protocol.Success(s1, json.RawMessage(`{"value":9}`), 1, nil), false)

	// (b) Another orchestrator processed step 1's result, moved the task to enqueuing_steps and
	// crashed before enqueueing step 2 (tasker-core commits each of these separately).
	stuck := orchCreate(t, o, orchRequest("orch_linear", "linear", `{"n": 4}`))
	t1, t2 := stuck.Steps["ol_step_1"], stuck.Steps["ol_step_2"]
	orchSimulateWorker(t, pool, stuck.TaskUUID, t1, stuck.CorrelationID,
		protocol.Success(t1, json.RawMessage(`{"value":16}`), 1, nil), false)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionStep(ctx, tx, t1, state.StepEventWithData(state.StepEventComplete, nil), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []state.TaskEvent{state.StepCompleted(t1), state.ReadyStepsFound(1)} {
		if _, err := state.TransitionTask(ctx, tx, stuck.TaskUUID, ev, state.TaskTransitionOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	orchRun(t, o)
	orchWaitStep(t, pool, orphan.Steps["ol_step_2"], 10*time.Second, state.StepEnqueued)
	orchWaitStep(t, pool, t2, 10*time.Second, state.StepEnqueued)

	if got := orchStepTrail(t, pool, s1); !slices.Equal(got, []string{"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}) {
		t.Fatalf("orphan step trail %v", got)
	}
	trail := orchTaskTrail(t, pool, orphan.TaskUUID)
	if trail[len(trail)-3] != "evaluating_results:StepCompleted("+s1.String()+")" ||
		trail[len(trail)-1] != "steps_in_process:StepsEnqueued(["+orphan.Steps["ol_step_2"].String()+"])" {
		t.Fatalf("orphan task trail %v", trail)
	}
	trs, _ := state.TaskTransitions(ctx, pool, stuck.TaskUUID)
	last := trs[len(trs)-1]
	var meta map[string]any
	_ = json.Unmarshal(last.Metadata, &meta)
	if last.From != state.TaskEnqueuingSteps || last.To != state.TaskStepsInProcess || meta["event"] != "StepsEnqueued(["+t2.String()+"])" ||
		last.ProcessorUUID != o.Config().ProcessorUUID {
		t.Fatalf("stuck task last transition %+v %v", last, meta)
	}
	n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.q_worker_orch_linear_queue WHERE message->>'step_uuid' = ANY($1)`,
		[]string{t2.String(), orphan.Steps["ol_step_2"].String()})
	if n != 2 {
		t.Fatalf("%d messages for the recovered steps, want 2", n)
	}
}

func TestOrchestrationCancelAndStatus(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, orchLinearYAML)
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("orch_linear", "linear", `{"n": 5}`))
	if _, err := o.TaskStatus(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, orchestration.ErrTaskNotFound) {
		t.Fatalf("unknown task status: %v", err)
	}
	n, err := o.Cancel(ctx, ct.TaskUUID)
	if err != nil || n != 3 {
		t.Fatalf("Cancel: %d %v", n, err)
	}
	if _, err := o.Cancel(ctx, ct.TaskUUID); !errors.Is(err, orchestration.ErrTaskTerminal) {
		t.Fatalf("second Cancel: %v", err)
	}
	st, err := o.TaskStatus(ctx, ct.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != state.TaskCancelled || len(st.Steps) != 3 || st.Namespace != "orch_linear" || st.Name != "linear" ||
		st.CorrelationID != ct.CorrelationID || !orchJSONEqual(string(st.Context), `{"n":5}`) {
		t.Fatalf("status %+v", st)
	}
	for _, s := range st.Steps {
		if s.State != state.StepCancelled || !s.Processed || s.ReadyForExecution {
			t.Errorf("step %s: %+v", s.Name, s)
		}
	}
	if got := orchStepTrail(t, pool, ct.Steps["ol_step_1"]); !slices.Equal(got, []string{"pending", "enqueued", "cancelled"}) {
		t.Fatalf("step 1 trail %v", got)
	}
	// A worker finding the queued message later archives it as not claimable; orchestration
	// never enqueues cancelled steps.
	if n, err := o.ReadinessSweep(ctx); err != nil || n != 0 {
		t.Fatalf("readiness sweep on a cancelled task: %d %v", n, err)
	}
}

// ---- small utilities ----

func orchPtr[T any](v T) *T { return &v }

func orchDeref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func orchDerefAll(ps []*int32) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = orchDeref(p)
	}
	return out
}

func orchJSONEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func orchUUIDList(ids []uuid.UUID) string {
	s := slices.Clone(ids)
	slices.SortFunc(s, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	parts := make([]string, len(s))
	for i, id := range s {
		parts[i] = id.String()
	}
	return strings.Join(parts, ", ")
}

// Bad messages in orchestration_step_results reach a running orchestrator: each is archived
// with its reason, and the orchestrator keeps working (a real task completes afterwards).
func TestOrchestrationArchivesBadResultMessages(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	reg := orchLinearSetup(t, pool)
	o := orchNew(t, pool, nil)
	if err := o.EnsureQueues(ctx); err != nil {
		t.Fatal(err)
	}
	other := orchCreate(t, o, orchRequest("orch_linear", "linear", `{"n": 3}`))
	q := queue.NewClient(pool)
	send := func(body string) int64 {
		t.Helper()
		id, err := q.SendWithNotify(ctx, pool, queue.StepResultsQueue, json.RawMessage(body), 0)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	want := map[int64]string{
		send(`{}`):        "malformed_message",
		send(`[1, 2, 3]`): "malformed_message",
		send(`{"task_uuid": "not-a-uuid", "step_uuid": "x"}`):                                                                               "malformed_message",
		send(fmt.Sprintf(`{"task_uuid": %q, "step_uuid": %q, "correlation_id": %q}`, uuid.New(), uuid.New(), uuid.New())):                   "task_not_found",
		send(fmt.Sprintf(`{"task_uuid": %q, "step_uuid": %q, "correlation_id": %q}`, other.TaskUUID, uuid.New(), other.CorrelationID)):      "step_not_found",
		send(fmt.Sprintf(`{"task_uuid": %q, "step_uuid": %q, "correlation_id": %q}`, other.TaskUUID, other.Steps["ol_step_1"], uuid.New())): "duplicate_result",
	}
	orchRun(t, o)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[int64]string{}
		rows, err := pool.Query(ctx, `SELECT msg_id, COALESCE(headers->>'x-tasker-archive-reason', '') FROM pgmq.a_orchestration_step_results`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			var reason string
			if err := rows.Scan(&id, &reason); err != nil {
				t.Fatal(err)
			}
			got[id] = reason
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		missing := 0
		for id, reason := range want {
			if got[id] != reason {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archived %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	orchWorker(t, pool, "orch_linear", reg)
	orchWaitTask(t, pool, other.TaskUUID, 20*time.Second, state.TaskComplete)
}

// orchWaitListening waits until n sessions LISTEN on the orchestration results channel.
func orchWaitListening(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for orchScalar[int64](t, pool, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN "pgmq_message_ready.orchestration"'`) < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d orchestrators listen", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An idle orchestrator takes each step result from the notification that carries it: no queue
// read (the archived messages were never read), and everything applied exactly once, also with
// two orchestrators receiving every notification.
func TestOrchestrationResultsFromNotifications(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, orchDiamondYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("orch.ok", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return map[string]any{"ok": true}, nil
	}))
	// No polling during the test: a result the notification did not deliver would wait a minute.
	slow := func(c *orchestration.Config) { c.PollInterval = time.Minute }
	o1 := orchNew(t, pool, slow)
	orchRun(t, o1)
	orchWaitListening(t, pool, 1)
	orchWorker(t, pool, "orch_multi", reg)

	ct := orchCreate(t, o1, orchRequest("orch_multi", "diamond", `{"run": "one"}`))
	orchWaitTask(t, pool, ct.TaskUUID, 15*time.Second, state.TaskComplete)
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.a_orchestration_step_results`); n != 4 {
		t.Fatalf("%d results archived, want 4", n)
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.a_orchestration_step_results WHERE read_ct > 0`); n != 0 {
		t.Errorf("%d of 4 results were read from the queue, want all 4 taken from their notifications", n)
	}

	o2 := orchNew(t, pool, slow)
	orchRun(t, o2)
	orchWaitListening(t, pool, 2)
	var tasks []*orchestration.CreatedTask
	for i := range 5 {
		tasks = append(tasks, orchCreate(t, o2, orchRequest("orch_multi", "diamond", fmt.Sprintf(`{"run": %d}`, i))))
	}
	for _, ct := range tasks {
		orchWaitTask(t, pool, ct.TaskUUID, 30*time.Second, state.TaskComplete)
		for name, step := range ct.Steps {
			if got := orchStepTrail(t, pool, step); !slices.Equal(got, []string{"pending", "enqueued", "in_progress", "enqueued_for_orchestration", "complete"}) {
				t.Errorf("task %s step %s trail %v", ct.TaskUUID, name, got)
			}
		}
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 0 {
		t.Errorf("%d results left in the queue", n)
	}
}
