package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// badSQL is the name a hostile or careless user gives to a queue, namespace or step.
const badSQL = `x'; DROP TABLE tasker.tasks; --`

// badCounts are the row counts that must not move when bad input is refused.
type badCounts struct {
	Namespaces, NamedTasks, NamedSteps, Tasks, Steps, TaskTransitions, StepTransitions, Edges, Queues, Messages int
}

func badCount(t *testing.T, pool *pgxpool.Pool) badCounts {
	t.Helper()
	ctx := context.Background()
	var c badCounts
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tasker.task_namespaces), (SELECT count(*) FROM tasker.named_tasks),
		(SELECT count(*) FROM tasker.named_steps), (SELECT count(*) FROM tasker.tasks),
		(SELECT count(*) FROM tasker.workflow_steps), (SELECT count(*) FROM tasker.task_transitions),
		(SELECT count(*) FROM tasker.workflow_step_transitions), (SELECT count(*) FROM tasker.workflow_step_edges),
		(SELECT count(*) FROM pgmq.meta)`).Scan(&c.Namespaces, &c.NamedTasks, &c.NamedSteps, &c.Tasks, &c.Steps,
		&c.TaskTransitions, &c.StepTransitions, &c.Edges, &c.Queues); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT queue_name FROM pgmq.meta`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range names {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{"pgmq", "q_" + q}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		c.Messages += n
	}
	return c
}

// badUnchanged fails the test when the counts moved.
func badUnchanged(t *testing.T, pool *pgxpool.Pool, before badCounts, what string) {
	t.Helper()
	if after := badCount(t, pool); after != before {
		t.Errorf("%s wrote rows: before %+v, after %+v", what, before, after)
	}
}

func badLogger() *slog.Logger {
	if os.Getenv("TASKER_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// badRegister parses and registers a template given as YAML.
func badRegister(t *testing.T, pool *pgxpool.Pool, yaml string) *template.TaskTemplate {
	t.Helper()
	tt, err := template.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("parse template: %v", err)
	}
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := template.Register(ctx, tx, tt)
		return err
	}); err != nil {
		t.Fatalf("register template: %v", err)
	}
	return tt
}

// badOrchestrator returns an orchestrator with test-speed intervals, not running.
func badOrchestrator(t *testing.T, pool *pgxpool.Pool) *orchestration.Orchestrator {
	t.Helper()
	o, err := orchestration.New(orchestration.Config{
		PollInterval: 100 * time.Millisecond, ReadinessInterval: 100 * time.Millisecond,
		RecoveryInterval: 200 * time.Millisecond, VisibilityTimeout: 5 * time.Second,
		DefaultStepTimeout: 2 * time.Second, StaleGrace: time.Second,
		Backoff: orchestration.BackoffConfig{Base: time.Second, Max: 2 * time.Second, Multiplier: 2, JitterPercent: orchestration.NoJitter},
	}, pool, orchestration.WithLogger(badLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// badRun runs o and a worker for ns with reg until the test ends.
func badRun(t *testing.T, pool *pgxpool.Pool, o *orchestration.Orchestrator, ns string, reg *handlers.Registry) {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.Namespaces = []string{ns}
	cfg.PollInterval = 50 * time.Millisecond
	cfg.VisibilityTimeout = 2 * time.Second
	cfg.StepTimeout = 2 * time.Second
	cfg.StaleGrace = time.Second
	cfg.ShutdownTimeout = 2 * time.Second
	w, err := worker.New(cfg, pool, reg, worker.WithLogger(badLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = o.Run(ctx) }()
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// badWaitTask polls until the task rests in a final state and returns it.
func badWaitTask(t *testing.T, pool *pgxpool.Pool, task uuid.UUID, within time.Duration) state.TaskState {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := state.CurrentTaskState(context.Background(), pool, task)
		if err != nil {
			t.Fatal(err)
		}
		if st.IsTerminal() || st == state.TaskBlockedByFailures {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is still %s after %s", task, st, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// badStep reads one step of a task by name: state, attempts and results.
func badStep(t *testing.T, pool *pgxpool.Pool, task uuid.UUID, name string) (state.StepState, int, protocol.StepExecutionResult, []byte) {
	t.Helper()
	var st string
	var attempts *int32
	var raw []byte
	err := pool.QueryRow(context.Background(), `
		SELECT tr.to_state, ws.attempts, ws.results FROM tasker.workflow_steps ws
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		  JOIN tasker.workflow_step_transitions tr ON tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.most_recent
		 WHERE ws.task_uuid = $1 AND ns.name = $2`, task, name).Scan(&st, &attempts, &raw)
	if err != nil {
		t.Fatalf("step %s: %v", name, err)
	}
	var res protocol.StepExecutionResult
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("step %s results: %v", name, err)
		}
	}
	n := 0
	if attempts != nil {
		n = int(*attempts)
	}
	return state.StepState(st), n, res, raw
}

func badRequest(ns, name, ctxJSON string) orchestration.TaskRequest {
	key := uuid.NewString()
	return orchestration.TaskRequest{Namespace: ns, Name: name, Version: "1.0.0", Context: json.RawMessage(ctxJSON),
		Initiator: "badinput-test", SourceSystem: "test", Reason: "bad input", IdempotencyKey: &key}
}

// TestBadTemplatesRefused: a template directory with invalid files is refused as a whole; the
// error names every bad file and the field at fault, and nothing is registered (not even the
// valid template next to them).
func TestBadTemplatesRefused(t *testing.T) {
	_, pool := testdb.New(t)
	dir := t.TempDir()
	files := map[string]string{
		"good.yaml": `name: good
namespace_name: bad_input
version: 1.0.0
steps:
  - name: only
    handler: {callable: bad.only}
`,
		"no_callable.yaml": `name: no_callable
namespace_name: bad_input
version: 1.0.0
steps:
  - name: a
    handler: {}
`,
		"unknown_dependency.yaml": `name: unknown_dependency
namespace_name: bad_input
version: 1.0.0
steps:
  - name: a
    handler: {callable: bad.a}
    dependencies: [nowhere]
`,
		"cycle.yaml": `name: cycle
namespace_name: bad_input
version: 1.0.0
steps:
  - name: a
    handler: {callable: bad.a}
    dependencies: [b]
  - name: b
    handler: {callable: bad.b}
    dependencies: [a]
`,
		"sql_namespace.yaml": `name: sql_namespace
namespace_name: "` + badSQL + `"
version: 1.0.0
steps:
  - name: a
    handler: {callable: bad.a}
`,
		"broken_yaml.yaml": "name: [unclosed\nsteps: {\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := badCount(t, pool)
	_, _, err := worker.LoadAndRegisterTemplates(context.Background(), pool, dir)
	if err == nil {
		t.Fatal("LoadAndRegisterTemplates accepted invalid templates")
	}
	var le *template.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error is %T, want *template.LoadError: %v", err, err)
	}
	msg := err.Error()
	for file, field := range map[string]string{
		"no_callable.yaml":        "steps[0].handler.callable",
		"unknown_dependency.yaml": "steps[0].dependencies",
		"cycle.yaml":              "dependencies",
		"sql_namespace.yaml":      "namespace_name",
		"broken_yaml.yaml":        "",
	} {
		found := false
		for _, line := range strings.Split(msg, "\n") {
			if strings.Contains(line, filepath.Join(dir, file)) && strings.Contains(line, field) {
				found = true
			}
		}
		if !found {
			t.Errorf("error does not name %s (field %q):\n%s", file, field, msg)
		}
	}
	if strings.Contains(msg, "good.yaml") {
		t.Errorf("error blames the valid file:\n%s", msg)
	}
	badUnchanged(t, pool, before, "a refused template directory")

	// Registering one invalid template directly is refused by Register too.
	tt, perr := template.Parse([]byte(files["good.yaml"]), "good.yaml")
	if perr != nil {
		t.Fatal(perr)
	}
	tt.Steps[0].Handler.Callable = ""
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { _, err := template.Register(ctx, tx, tt); return err })
	var ve *template.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "steps[0].handler.callable") {
		t.Errorf("Register of a template without callable: %v", err)
	}
	badUnchanged(t, pool, before, "a refused Register")
}

const badSchemaYAML = `
name: schema_checked
namespace_name: bad_input
version: 1.0.0
input_schema:
  type: object
  required: [even_number]
  properties:
    even_number: {type: integer, minimum: 2, maximum: 100}
    label: {type: string, maxLength: 8}
steps:
  - name: only
    handler: {callable: bad.only}
`

// TestBadTaskRequestsRefused: task requests for unknown templates, violating the template's
// input_schema, oversized, or with SQL-looking names fail with errors naming the problem, and
// write nothing (no task, step, transition or message).
func TestBadTaskRequestsRefused(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, badSchemaYAML)
	o := badOrchestrator(t, pool)
	ctx := context.Background()
	if err := o.EnsureQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue("bad_input")); err != nil {
		t.Fatal(err)
	}
	before := badCount(t, pool)

	huge := `{"even_number": 4, "blob": "` + strings.Repeat("x", 9000) + `", "more": [` +
		strings.TrimSuffix(strings.Repeat(`"`+strings.Repeat("y", 9000)+`",`, 120), ",") + `]}`
	if len(huge) <= orchestration.MaxJSONBytes {
		t.Fatalf("test context is only %d bytes", len(huge))
	}
	cases := []struct {
		name  string
		req   orchestration.TaskRequest
		field string // ValidationError field, or "" for template not found
		text  string // must appear in the error
	}{
		{"unknown namespace", badRequest("no_such_namespace", "schema_checked", `{"even_number": 4}`), "", "no_such_namespace/schema_checked"},
		{"unknown name", badRequest("bad_input", "no_such_task", `{"even_number": 4}`), "", "bad_input/no_such_task"},
		{"unknown version", func() orchestration.TaskRequest {
			r := badRequest("bad_input", "schema_checked", `{"even_number": 4}`)
			r.Version = "9.9.9"
			return r
		}(), "", "9.9.9"},
		{"SQL namespace", badRequest(badSQL, "schema_checked", `{"even_number": 4}`), "namespace", ""},
		{"SQL name", badRequest("bad_input", badSQL, `{"even_number": 4}`), "", "not found"},
		{"missing required field", badRequest("bad_input", "schema_checked", `{}`), "context.even_number", "required"},
		{"wrong type", badRequest("bad_input", "schema_checked", `{"even_number": "six"}`), "context.even_number", ""},
		{"out of range", badRequest("bad_input", "schema_checked", `{"even_number": 102}`), "context.even_number", ""},
		{"string too long", badRequest("bad_input", "schema_checked", `{"even_number": 4, "label": "much too long"}`), "context.label", ""},
		{"not an object", badRequest("bad_input", "schema_checked", `[1, 2]`), "context", ""},
		{"invalid JSON", badRequest("bad_input", "schema_checked", `{"even_number": `), "context", "invalid JSON"},
		{"context over 1 MiB", badRequest("bad_input", "schema_checked", huge), "context", "too large"},
		{"priority out of range", func() orchestration.TaskRequest {
			r := badRequest("bad_input", "schema_checked", `{"even_number": 4}`)
			r.Priority = 1000
			return r
		}(), "priority", ""},
		{"initiator too long", func() orchestration.TaskRequest {
			r := badRequest("bad_input", "schema_checked", `{"even_number": 4}`)
			r.Initiator = strings.Repeat("i", 200)
			return r
		}(), "initiator", ""},
	}
	for _, tc := range cases {
		_, err := o.CreateTask(ctx, tc.req)
		switch {
		case err == nil:
			t.Errorf("%s: CreateTask accepted the request", tc.name)
		case tc.field == "":
			if !errors.Is(err, orchestration.ErrTemplateNotFound) {
				t.Errorf("%s: error %v is not ErrTemplateNotFound", tc.name, err)
			}
		default:
			var ve *orchestration.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, orchestration.ErrInvalidRequest) {
				t.Errorf("%s: error %T %v is not a *ValidationError", tc.name, err, err)
				break
			}
			hit := false
			for _, p := range ve.Problems {
				// A problem with the context as a whole is reported as "context." today (a
				// cosmetic trailing dot, reported); accept both spellings.
				hit = hit || strings.TrimSuffix(p.Field, ".") == tc.field
			}
			if !hit {
				t.Errorf("%s: problems %v do not name field %q", tc.name, ve.Problems, tc.field)
			}
		}
		if err != nil && tc.text != "" && !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.text)
		}
		badUnchanged(t, pool, before, tc.name)
	}
	// The table the SQL-looking names tried to drop is intact and usable.
	if _, err := o.CreateTask(ctx, badRequest("bad_input", "schema_checked", `{"even_number": 4, "label": "ok"}`)); err != nil {
		t.Fatalf("a valid request after the bad ones: %v", err)
	}
}

// TestBadNULInContextRefused: PostgreSQL's jsonb cannot hold U+0000, so a context containing it
// must be refused as a request problem, with nothing written.
func TestBadNULInContextRefused(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, badSchemaYAML)
	o := badOrchestrator(t, pool)
	ctx := context.Background()
	if err := o.EnsureQueues(ctx); err != nil {
		t.Fatal(err)
	}
	before := badCount(t, pool)
	_, err := o.CreateTask(ctx, badRequest("bad_input", "schema_checked", `{"even_number": 4, "note": "a\u0000b"}`))
	if err == nil {
		t.Fatal("CreateTask accepted a context holding U+0000")
	}
	t.Logf("U+0000 in the context: %v", err)
	badUnchanged(t, pool, before, "a context holding U+0000")
	var ve *orchestration.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("U+0000 in a context gave %v, want a *ValidationError naming the field", err)
	}
}

const badUnknownHandlerYAML = `
name: unknown_handler
namespace_name: bad_input
version: 1.0.0
steps:
  - name: first
    handler: {callable: bad.known}
  - name: second
    handler: {callable: bad.not_registered_anywhere}
    dependencies: [first]
`

// TestBadUnknownHandlerFailsStep: a step whose handler no worker registered fails at once with
// handler_not_found (not retried), the task is blocked, and the successful step before it keeps
// its result.
func TestBadUnknownHandlerFailsStep(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, badUnknownHandlerYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("bad.known", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "bad_input", reg)
	ct, err := o.CreateTask(context.Background(), badRequest("bad_input", "unknown_handler", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, ct.TaskUUID, 20*time.Second); st != state.TaskBlockedByFailures {
		t.Fatalf("task ended %s, want blocked_by_failures", st)
	}
	st, attempts, res, _ := badStep(t, pool, ct.TaskUUID, "second")
	if st != state.StepError || attempts != 1 {
		t.Errorf("second step is %s after %d attempts, want error after 1", st, attempts)
	}
	if res.Error == nil || res.Metadata.ErrorType == nil || *res.Metadata.ErrorType != handlers.ErrorTypeHandlerNotFound ||
		!strings.Contains(res.Error.Message, "bad.not_registered_anywhere") || res.Error.Retryable {
		t.Errorf("second step result = %+v (error %+v), want a non-retryable handler_not_found naming the callable", res.Metadata, res.Error)
	}
	if st, _, _, _ := badStep(t, pool, ct.TaskUUID, "first"); st != state.StepComplete {
		t.Errorf("first step is %s, want complete", st)
	}
}

const badResultYAML = `
name: result_sizes
namespace_name: bad_input
version: 1.0.0
steps:
  - name: produce
    handler: {callable: bad.produce}
  - name: consume
    handler: {callable: bad.consume}
    dependencies: [produce]
`

// TestBadHandlerResults: what a handler returns is stored whole or refused whole. A 4 MiB result
// is stored intact and reaches the dependent step; a result that is not JSON-encodable (NaN)
// fails the step with a serialization error; nothing is half-written in either case.
func TestBadHandlerResults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   func() any
		want    state.TaskState
		errType string
	}{
		{"4 MiB result", func() any { return map[string]any{"blob": strings.Repeat("z", 4<<20)} }, state.TaskComplete, ""},
		{"NaN result", func() any { return map[string]any{"x": math.NaN()} }, state.TaskBlockedByFailures, handlers.ErrorTypeSerialization},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, pool := testdb.New(t)
			badRegister(t, pool, badResultYAML)
			var consumed sync.Map
			reg := handlers.NewRegistry()
			reg.MustRegister("bad.produce", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
				return handlers.Success(tc.value(), nil)
			}))
			reg.MustRegister("bad.consume", handlers.HandlerFunc(func(_ context.Context, sc *handlers.StepContext) handlers.Result {
				raw, ok := sc.DependencyValue("produce")
				consumed.Store("len", len(raw))
				if !ok {
					return handlers.Failure("no dependency result", "test", false)
				}
				return handlers.Success(map[string]any{"received_bytes": len(raw)}, nil)
			}))
			o := badOrchestrator(t, pool)
			badRun(t, pool, o, "bad_input", reg)
			ct, err := o.CreateTask(context.Background(), badRequest("bad_input", "result_sizes", `{}`))
			if err != nil {
				t.Fatal(err)
			}
			if st := badWaitTask(t, pool, ct.TaskUUID, 60*time.Second); st != tc.want {
				pst, attempts, res, _ := badStep(t, pool, ct.TaskUUID, "produce")
				t.Fatalf("task ended %s, want %s (produce %s after %d attempts: %+v)", st, tc.want, pst, attempts, res.Error)
			}
			st, attempts, res, raw := badStep(t, pool, ct.TaskUUID, "produce")
			if tc.errType == "" {
				var out struct {
					Blob string `json:"blob"`
				}
				if err := json.Unmarshal(res.Result, &out); err != nil || len(out.Blob) != 4<<20 || st != state.StepComplete {
					t.Errorf("produce is %s with a %d-byte blob (%v), want complete with %d bytes", st, len(out.Blob), err, 4<<20)
				}
				if n, _ := consumed.Load("len"); n == nil || n.(int) < 4<<20 {
					t.Errorf("consume received %v bytes of the dependency result", n)
				}
				return
			}
			if st != state.StepError || attempts != 1 || res.Error == nil || res.Metadata.ErrorType == nil ||
				*res.Metadata.ErrorType != tc.errType || !strings.Contains(res.Error.Message, "JSON") {
				t.Errorf("produce is %s after %d attempts with %s, want error after 1 with %s", st, attempts, raw, tc.errType)
			}
			if cst, _, _, _ := badStep(t, pool, ct.TaskUUID, "consume"); cst != state.StepPending {
				t.Errorf("consume is %s, want pending (never run)", cst)
			}
		})
	}
}

// TestBadNULInHandlerResult: a handler result holding U+0000 cannot be stored in jsonb. The
// step must end (as a failure naming the problem) instead of being retried as a dead worker's.
func TestBadNULInHandlerResult(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, badResultYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("bad.produce", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"text": "a\x00b"}, nil)
	}))
	reg.MustRegister("bad.consume", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(nil, nil)
	}))
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "bad_input", reg)
	ct, err := o.CreateTask(context.Background(), badRequest("bad_input", "result_sizes", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	st := badWaitTask(t, pool, ct.TaskUUID, 60*time.Second)
	pst, attempts, res, _ := badStep(t, pool, ct.TaskUUID, "produce")
	msg := ""
	if res.Error != nil {
		msg = res.Error.Message
	}
	t.Logf("U+0000 in a result: task %s, produce %s after %d attempts: %s", st, pst, attempts, msg)
	if st != state.TaskBlockedByFailures || pst != state.StepError {
		t.Fatalf("task %s, produce %s; want blocked_by_failures and error", st, pst)
	}
	if strings.Contains(msg, "abandoned") {
		t.Fatalf("the refused result was recovered as a dead worker's step (%d attempts: %s), want a serialization error", attempts, msg)
	}
}

// TestBadSQLLookingNames: names that look like SQL are data. Queue operations refuse them as
// invalid names before reaching the database; a worker refuses such a namespace in its config;
// a step may carry such a name (it is only ever a bound parameter) and runs normally.
func TestBadSQLLookingNames(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	q := queue.NewClient(pool)
	before := badCount(t, pool)
	checks := map[string]error{}
	checks["EnsureQueue"] = q.EnsureQueue(ctx, badSQL)
	_, checks["Send"] = q.Send(ctx, nil, badSQL, map[string]any{"a": 1}, 0)
	_, checks["Read"] = q.Read(ctx, badSQL, 30, 1)
	_, checks["Archive"] = q.Archive(ctx, badSQL, 1)
	_, checks["Delete"] = q.Delete(ctx, badSQL, 1)
	_, checks["Metrics"] = q.Metrics(ctx, badSQL)
	checks["AnnotateTx"] = q.AnnotateTx(ctx, pool, badSQL, 1, map[string]string{"k": "v"})
	checks["EnsureQueue(worker queue of the name)"] = q.EnsureQueue(ctx, queue.WorkerQueue(badSQL))
	for op, err := range checks {
		if !errors.Is(err, queue.ErrInvalidName) || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s(%q): %v, want queue.ErrInvalidName", op, badSQL, err)
		}
	}
	badUnchanged(t, pool, before, "queue operations on an SQL-looking name")

	cfg := worker.DefaultConfig()
	cfg.Namespaces = []string{badSQL}
	_, err := worker.New(cfg, pool, handlers.NewRegistry())
	var ce *worker.ConfigError
	if !errors.As(err, &ce) || ce.Key != "TASKER_NAMESPACES" {
		t.Errorf("worker.New with namespace %q: %v, want a ConfigError for TASKER_NAMESPACES", badSQL, err)
	}

	// A step named like an injection runs like any other.
	badRegister(t, pool, fmt.Sprintf(`
name: sql_step
namespace_name: bad_input
version: 1.0.0
steps:
  - name: %q
    handler: {callable: bad.sql_step}
`, badSQL))
	reg := handlers.NewRegistry()
	var sawName sync.Map
	reg.MustRegister("bad.sql_step", handlers.HandlerFunc(func(_ context.Context, sc *handlers.StepContext) handlers.Result {
		sawName.Store("name", sc.StepName())
		return handlers.Success(map[string]any{"step": sc.StepName()}, nil)
	}))
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "bad_input", reg)
	ct, err := o.CreateTask(ctx, badRequest("bad_input", "sql_step", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, ct.TaskUUID, 20*time.Second); st != state.TaskComplete {
		t.Fatalf("task ended %s", st)
	}
	if n, _ := sawName.Load("name"); n != badSQL {
		t.Errorf("handler saw step name %v, want %q", n, badSQL)
	}
	var tasks int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.tasks`).Scan(&tasks); err != nil || tasks != 1 {
		t.Errorf("tasker.tasks after the run: %d rows, %v", tasks, err)
	}
}

const badPendingYAML = `
name: pending_target
namespace_name: bad_input
version: 1.0.0
steps:
  - name: fails
    handler: {callable: bad.fails}
    retry: {retryable: false, max_attempts: 1}
  - name: after
    handler: {callable: bad.after}
    dependencies: [fails]
`

// TestBadStepMessageForPendingStep: a stray (duplicate or forged) step message for a step that
// is still pending with unmet dependencies must not stay in the queue for ever: when the task
// ends blocked, that step never becomes ready, so the message must be archived with a reason.
func TestBadStepMessageForPendingStep(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, badPendingYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("bad.fails", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Failure("always fails", "test", false)
	}))
	reg.MustRegister("bad.after", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(nil, nil)
	}))
	o := badOrchestrator(t, pool)
	ctx := context.Background()
	ct, err := o.CreateTask(ctx, badRequest("bad_input", "pending_target", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	after := ct.Steps["after"]
	msgID, err := queue.NewClient(pool).SendWithNotify(ctx, nil, queue.WorkerQueue("bad_input"),
		protocol.StepMessage{TaskUUID: ct.TaskUUID, StepUUID: after, CorrelationID: ct.CorrelationID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	badRun(t, pool, o, "bad_input", reg)
	if st := badWaitTask(t, pool, ct.TaskUUID, 20*time.Second); st != state.TaskBlockedByFailures {
		t.Fatalf("task ended %s, want blocked_by_failures", st)
	}
	if st, attempts, _, _ := badStep(t, pool, ct.TaskUUID, "after"); st != state.StepPending || attempts != 0 {
		t.Fatalf("the stray message ran the step: %s after %d attempts", st, attempts)
	}
	// Give the worker a few visibility timeouts (2s) to deal with the message.
	deadline := time.Now().Add(8 * time.Second)
	var queued bool
	var reads int
	for time.Now().Before(deadline) {
		err := pool.QueryRow(ctx, `SELECT true, read_ct FROM pgmq.q_worker_bad_input_queue WHERE msg_id = $1`, msgID).Scan(&queued, &reads)
		if errors.Is(err, pgx.ErrNoRows) {
			queued = false
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if queued {
		t.Fatalf("the message for pending step %s is still queued after %d reads, want it archived", after, reads)
	}
	var reason *string
	if err := pool.QueryRow(ctx, `SELECT headers->>'x-tasker-archive-reason' FROM pgmq.a_worker_bad_input_queue WHERE msg_id = $1`, msgID).Scan(&reason); err != nil {
		t.Fatalf("the message left the queue without being archived: %v", err)
	}
	if reason == nil || *reason == "" {
		t.Errorf("archived without a reason header")
	}
}
