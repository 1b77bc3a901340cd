package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/worker"
)

// wkTemplate writes a template configuration for the fixture's named task: one step definition
// per name, all handled by callable, with an optional timeout.
func wkTemplate(t *testing.T, pool *pgxpool.Pool, f taskFixture, callable string, timeoutSeconds int) {
	t.Helper()
	var steps []map[string]any
	for _, n := range f.StepNames {
		s := map[string]any{"name": n, "handler": map[string]any{"callable": callable, "initialization": map[string]any{"factor": 3}}}
		if timeoutSeconds > 0 {
			s["timeout_seconds"] = timeoutSeconds
		}
		steps = append(steps, s)
	}
	cfg, _ := json.Marshal(map[string]any{"name": "t", "namespace_name": "ns", "version": "0.1.0", "steps": steps})
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.named_tasks SET configuration = $2, updated_at = clock_timestamp() WHERE named_task_uuid = $1`, f.NamedTaskUUID, cfg); err != nil {
		t.Fatal(err)
	}
}

// wkEnqueue moves the step pending -> enqueued and sends its message, as orchestration does.
func wkEnqueue(t *testing.T, pool *pgxpool.Pool, ns string, f taskFixture, step string) int64 {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := state.TransitionStep(ctx, tx, f.Step(t, step), state.StepEvent{Type: state.StepEventEnqueue}, state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := queue.NewClient(pool).SendWithNotify(ctx, tx, queue.WorkerQueue(ns), protocol.StepMessage{
		TaskUUID: f.TaskUUID, StepUUID: f.Step(t, step), CorrelationID: f.CorrelationID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

type wkRunning struct {
	w    *worker.Worker
	stop func()
}

// wkStart runs a worker for ns until the test ends (or stop is called).
func wkStart(t *testing.T, pool *pgxpool.Pool, ns string, reg *handlers.Registry, mod func(*worker.Config)) *wkRunning {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.Namespaces = []string{ns}
	cfg.PollInterval = 100 * time.Millisecond
	cfg.VisibilityTimeout = 3 * time.Second
	cfg.StepTimeout = 5 * time.Second
	cfg.StaleGrace = time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("TASKER_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	w, err := worker.New(cfg, pool, reg, worker.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, "worker", w.Run)
	return &wkRunning{w: w, stop: stop}
}

func wkStepState(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) state.StepState {
	t.Helper()
	s, err := state.CurrentStepState(context.Background(), pool, step)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wkWaitState polls until the step reaches want.
func wkWaitState(t *testing.T, pool *pgxpool.Pool, step uuid.UUID, want state.StepState, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := wkStepState(t, pool, step)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s is %s after %s, want %s", step, got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wkResult(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) protocol.StepExecutionResult {
	t.Helper()
	var raw []byte
	if err := pool.QueryRow(context.Background(), `SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := protocol.ValidateStepExecutionResultJSON(raw); err != nil {
		t.Fatalf("results are not what tasker-core's strict parser accepts: %v\n%s", err, raw)
	}
	var r protocol.StepExecutionResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func wkCount(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestWorkerOneStepEndToEnd(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_e2e"
	f := newTaskWithSteps(t, pool, ns, []string{"square"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "square_handler", 0)
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.tasks SET context = '{"even_number": 6}' WHERE task_uuid = $1`, f.TaskUUID); err != nil {
		t.Fatal(err)
	}

	var calls atomic.Int32
	var seen struct {
		attempts, retry int
		input, factor   int
		corr            uuid.UUID
	}
	reg := handlers.NewRegistry()
	reg.MustRegister("square_handler", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		calls.Add(1)
		n, err := handlers.DecodeContextField[int](s, "even_number")
		if err != nil {
			return handlers.ErrorResult(err)
		}
		seen.input, seen.attempts, seen.retry, seen.corr = n, s.Attempts(), s.RetryCount(), s.CorrelationID()
		seen.factor = handlers.ConfigOr(s, "factor", 0)
		return handlers.Success(map[string]any{"result": n * n}, map[string]any{"note": "squared"})
	}))
	wkStart(t, pool, ns, reg, nil)
	if err := queue.NewClient(pool).EnsureQueue(context.Background(), queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	msgID := wkEnqueue(t, pool, ns, f, "square")
	step := f.Step(t, "square")
	wkWaitState(t, pool, step, state.StepEnqueuedForOrchestration, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a duplicate run would show up here

	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", calls.Load())
	}
	if seen.input != 6 || seen.attempts != 0 || seen.retry != 0 || seen.corr != f.CorrelationID || seen.factor != 3 {
		t.Fatalf("handler saw %+v", seen)
	}
	res := wkResult(t, pool, step)
	if !res.Success || res.Status != protocol.StatusCompleted || res.StepUUID != step || string(res.Result) != `{"result": 36}` && string(res.Result) != `{"result":36}` {
		t.Fatalf("result = %+v (%s)", res, res.Result)
	}
	if string(res.Metadata.Custom["note"]) != `"squared"` || res.Metadata.Retryable || res.Error != nil || res.OrchestrationMetadata == nil {
		t.Fatalf("metadata = %+v", res.Metadata)
	}
	// Step row: attempts 1, in_process false, processed false (orchestration's job).
	var attempts int
	var inProcess, processed bool
	if err := pool.QueryRow(context.Background(), `SELECT attempts, in_process, processed FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step).
		Scan(&attempts, &inProcess, &processed); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || inProcess || processed {
		t.Fatalf("attempts=%d in_process=%v processed=%v", attempts, inProcess, processed)
	}
	// Transitions: pending -> enqueued -> in_progress -> enqueued_for_orchestration, with
	// tasker-core's metadata on the completion row.
	trs, err := state.StepTransitions(context.Background(), pool, step)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.StepState{state.StepPending, state.StepEnqueued, state.StepInProgress, state.StepEnqueuedForOrchestration}
	if len(trs) != len(want) {
		t.Fatalf("%d transitions, want %d", len(trs), len(want))
	}
	for i, tr := range trs {
		if tr.To != want[i] || tr.SortKey != i+1 || tr.MostRecent != (i == len(want)-1) {
			t.Fatalf("transition %d = %+v", i, tr)
		}
	}
	var m map[string]string
	if err := json.Unmarshal(trs[3].Metadata, &m); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type string                       `json:"type"`
		Data protocol.StepExecutionResult `json:"data"`
	}
	if err := json.Unmarshal([]byte(m["event"]), &ev); err != nil || ev.Type != "EnqueueForOrchestration" || ev.Data.StepUUID != step {
		t.Fatalf("completion event = %q (%v)", m["event"], err)
	}
	if m["correlation_id"] != f.CorrelationID.String() || m["worker_uuid"] == "" || m["timestamp"] == "" {
		t.Fatalf("completion metadata = %v", m)
	}
	// Audit row written by the trigger, with success and worker uuid.
	if n := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = $1 AND success AND worker_uuid::text = $2`, step, m["worker_uuid"]); n != 1 {
		t.Fatalf("audit rows = %d", n)
	}
	// Orchestration got exactly the 3-uuid message; the consumed message is gone.
	msgs, err := queue.NewClient(pool).Read(context.Background(), queue.StepResultsQueue, 30, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d orchestration messages", len(msgs))
	}
	var om map[string]string
	_ = json.Unmarshal(msgs[0].Body, &om)
	if len(om) != 3 || om["task_uuid"] != f.TaskUUID.String() || om["step_uuid"] != step.String() || om["correlation_id"] != f.CorrelationID.String() {
		t.Fatalf("orchestration message = %s", msgs[0].Body)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_`+queue.WorkerQueue(ns)+` WHERE msg_id = $1`, msgID); n != 0 {
		t.Fatal("consumed message still queued")
	}
}

func TestWorkerDuplicatesAndBadMessages(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_dup"
	f := newTaskWithSteps(t, pool, ns, []string{"once"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "once_handler", 0)
	q := queue.NewClient(pool)
	ctx := context.Background()
	if err := q.EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	reg := handlers.NewRegistry()
	reg.MustRegister("once_handler", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		calls.Add(1)
		time.Sleep(200 * time.Millisecond)
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	// Same step delivered three times before the worker starts, plus bad messages.
	wkEnqueue(t, pool, ns, f, "once")
	body := protocol.StepMessage{TaskUUID: f.TaskUUID, StepUUID: f.Step(t, "once"), CorrelationID: f.CorrelationID}
	for range 2 {
		if _, err := q.Send(ctx, nil, queue.WorkerQueue(ns), body, 0); err != nil {
			t.Fatal(err)
		}
	}
	bad := []any{
		json.RawMessage(`{"task_uuid": "nope"}`),
		json.RawMessage(`[1,2,3]`),
		protocol.StepMessage{TaskUUID: f.TaskUUID, StepUUID: uuid.Must(uuid.NewV7()), CorrelationID: f.CorrelationID},
	}
	for _, b := range bad {
		if _, err := q.Send(ctx, nil, queue.WorkerQueue(ns), b, 0); err != nil {
			t.Fatal(err)
		}
	}
	r := wkStart(t, pool, ns, reg, nil)
	wkWaitState(t, pool, f.Step(t, "once"), state.StepEnqueuedForOrchestration, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	// Duplicates of an in-progress step wait for their visibility timeout, then are archived.
	for wkCount(t, pool, `SELECT count(*) FROM pgmq.q_worker_wk_dup_queue`) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %d left", wkCount(t, pool, `SELECT count(*) FROM pgmq.q_worker_wk_dup_queue`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", calls.Load())
	}
	reasons := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT headers->>'`+queue.ArchiveReasonHeader+`' FROM pgmq.a_worker_wk_dup_queue`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s *string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != nil {
			reasons[*s]++
		}
	}
	if reasons[worker.ReasonMalformed] != 2 || reasons[worker.ReasonStepNotFound] != 1 || reasons[worker.ReasonNotClaimable] != 2 {
		t.Fatalf("archive reasons = %v", reasons)
	}
	snap := r.w.Metrics().Snapshot()
	if snap.Malformed != 2 || snap.Claimed != 1 || snap.Completed != 1 {
		t.Fatalf("metrics = %+v", snap)
	}
}

func TestWorkerFailureResults(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_fail"
	f := newTaskWithSteps(t, pool, ns, []string{"retryable", "permanent", "panics", "slow", "unknown"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "dispatch", 1)
	// "unknown" gets a callable nobody registered.
	if _, err := pool.Exec(context.Background(), `UPDATE tasker.named_tasks SET configuration = jsonb_set(configuration, '{steps,4,handler,callable}', '"nobody_home"') WHERE named_task_uuid = $1`, f.NamedTaskUUID); err != nil {
		t.Fatal(err)
	}
	reg := handlers.NewRegistry()
	reg.MustRegister("dispatch", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		switch s.StepName() {
		case "retryable":
			return handlers.ErrorResult(handlers.RetryableError("upstream busy").WithRetryAfter(7 * time.Second).WithCode("BUSY"))
		case "permanent":
			return handlers.Failure("card declined", handlers.ErrorTypePermanent, false, handlers.WithCode("DECLINED"))
		case "panics":
			var m map[string]int
			m["boom"]++
		case "slow":
			<-ctx.Done()
			return handlers.ErrorResult(ctx.Err())
		}
		return handlers.Success(nil, nil)
	}))
	wkStart(t, pool, ns, reg, nil)
	if err := queue.NewClient(pool).EnsureQueue(context.Background(), queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.StepNames {
		wkEnqueue(t, pool, ns, f, s)
	}
	for _, s := range f.StepNames {
		wkWaitState(t, pool, f.Step(t, s), state.StepEnqueuedAsErrorForOrchestration, 15*time.Second)
	}
	cases := []struct {
		step, errType, msgPrefix string
		retryable                bool
	}{
		{"retryable", handlers.ErrorTypeRetryable, "upstream busy", true},
		{"permanent", handlers.ErrorTypePermanent, "card declined", false},
		{"panics", handlers.ErrorTypeHandlerPanic, "Handler panicked: assignment to entry in nil map", false},
		{"slow", handlers.ErrorTypeHandlerTimeout, "Handler timed out after 1000ms", true},
		{"unknown", handlers.ErrorTypeHandlerNotFound, "Handler not found: nobody_home", false},
	}
	for _, c := range cases {
		t.Run(c.step, func(t *testing.T) {
			r := wkResult(t, pool, f.Step(t, c.step))
			if r.Success || r.Status != protocol.StatusFailed || r.Error == nil {
				t.Fatalf("result %+v", r)
			}
			if r.Error.Retryable != c.retryable || r.Metadata.Retryable != c.retryable {
				t.Fatalf("retryable error=%v metadata=%v, want %v", r.Error.Retryable, r.Metadata.Retryable, c.retryable)
			}
			if r.Error.ErrorType == nil || *r.Error.ErrorType != c.errType || r.Metadata.ErrorType == nil || *r.Metadata.ErrorType != c.errType {
				t.Fatalf("error_type = %v / %v, want %s", r.Error.ErrorType, r.Metadata.ErrorType, c.errType)
			}
			if len(r.Error.Message) < len(c.msgPrefix) || r.Error.Message[:len(c.msgPrefix)] != c.msgPrefix {
				t.Fatalf("message %q, want prefix %q", r.Error.Message, c.msgPrefix)
			}
			if string(r.Result) != "{}" {
				t.Fatalf("failure result = %s, want {}", r.Result)
			}
		})
	}
	r := wkResult(t, pool, f.Step(t, "retryable"))
	if r.OrchestrationMetadata.Headers["Retry-After"] != "7" || r.Metadata.ErrorCode == nil || *r.Metadata.ErrorCode != "BUSY" {
		t.Fatalf("retry-after / code: %+v %+v", r.OrchestrationMetadata, r.Metadata)
	}
}

func TestWorkerConcurrencyBound(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_conc"
	names := make([]string, 200)
	for i := range names {
		names[i] = fmt.Sprintf("c_%03d", i)
	}
	f := newTaskWithSteps(t, pool, ns, names, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "counted", 0)
	var running, peak, calls atomic.Int32
	perStep := sync.Map{}
	reg := handlers.NewRegistry()
	reg.MustRegister("counted", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		calls.Add(1)
		if _, dup := perStep.LoadOrStore(s.StepUUID(), true); dup {
			return handlers.Failure("ran twice", "duplicate", false)
		}
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return handlers.Success(map[string]any{"n": 1}, nil)
	}))
	if err := queue.NewClient(pool).EnsureQueue(context.Background(), queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		wkEnqueue(t, pool, ns, f, n)
	}
	r := wkStart(t, pool, ns, reg, func(c *worker.Config) { c.Concurrency = 8; c.BatchSize = 10 })
	deadline := time.Now().Add(60 * time.Second)
	for wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_transitions WHERE most_recent AND to_state = 'enqueued_for_orchestration' AND workflow_step_uuid IN (SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1)`, f.TaskUUID) < 200 {
		if time.Now().After(deadline) {
			t.Fatal("200 steps did not complete in 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if calls.Load() != 200 {
		t.Fatalf("%d handler calls, want 200", calls.Load())
	}
	if p := peak.Load(); p > 8 || p < 2 {
		t.Fatalf("peak concurrency %d, want 2..8", p)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_worker_wk_conc_queue`); n != 0 {
		t.Fatalf("%d messages left", n)
	}
	if s := r.w.Metrics().Snapshot(); s.Completed != 200 || s.Claimed != 200 {
		t.Fatalf("metrics %+v", s)
	}
	t.Logf("peak concurrency %d", peak.Load())
}

// A worker whose shutdown deadline passes while a handler runs hands the step back at once: a
// retryable worker_shutdown failure through the legal path (one attempt counted, the result
// sent to orchestration, the message consumed), nothing left in_progress for recovery. A
// handler that ignores its cancelled context does not hold up the exit.
func TestWorkerShutdownHandsStepsBack(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_shutdown"
	f := newTaskWithSteps(t, pool, ns, []string{"polite", "deaf"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "slow", 0)
	ctx := context.Background()
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 10)
	reg := handlers.NewRegistry()
	reg.MustRegister("slow", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		started <- s.StepName()
		if s.StepName() == "deaf" {
			time.Sleep(5 * time.Minute) // ignores its context
			return handlers.Success(nil, nil)
		}
		<-ctx.Done()
		return handlers.ErrorResult(ctx.Err())
	}))
	for _, name := range f.StepNames {
		wkEnqueue(t, pool, ns, f, name)
	}
	const deadline = 200 * time.Millisecond
	w := wkStart(t, pool, ns, reg, func(c *worker.Config) { c.ShutdownTimeout = deadline; c.StepTimeout = time.Hour })
	<-started
	<-started
	begin := time.Now()
	w.stop()
	// Bound: the drain deadline, the grace for handlers that ignore cancellation, the writes.
	if took := time.Since(begin); took > deadline+10*time.Second {
		t.Fatalf("Run returned %s after shutdown began; a handler ignoring its context held it up", took)
	}
	t.Logf("Run returned %s after shutdown began (drain deadline %s)", time.Since(begin).Round(time.Millisecond), deadline)
	for _, name := range f.StepNames {
		step := f.Step(t, name)
		if got := wkStepState(t, pool, step); got != state.StepEnqueuedAsErrorForOrchestration {
			t.Fatalf("%s: after shutdown the step is %s, want enqueued_as_error_for_orchestration", name, got)
		}
		r := wkResult(t, pool, step)
		if r.Success || !r.Metadata.Retryable || r.Error == nil || r.Error.ErrorType == nil || *r.Error.ErrorType != handlers.ErrorTypeWorkerShutdown {
			t.Fatalf("%s: result %+v; want a retryable worker_shutdown failure", name, r)
		}
		if n := wkCount(t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step); n != 1 {
			t.Errorf("%s: attempts = %d, want 1 (the interrupted run counts)", name, n)
		}
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 2 {
		t.Fatalf("%d orchestration messages, want 2", n)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_worker_wk_shutdown_queue`); n != 0 {
		t.Fatalf("%d step messages left in the queue, want 0", n)
	}
	if s := w.w.Metrics().Snapshot(); s.Interrupted != 2 {
		t.Errorf("interrupted = %d, want 2", s.Interrupted)
	}
}

// A step left in_progress by a worker that died (claimed, never completed, message still
// queued) is left alone by another worker while it is young (within timeout + grace) and
// reported as a retryable handler_timeout once older; its handler never runs again in the same
// attempt.
func TestWorkerRecoversAbandonedStep(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_crash"
	f := newTaskWithSteps(t, pool, ns, []string{"stuck"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "never", 2) // step timeout 2s
	ctx := context.Background()
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	reg := handlers.NewRegistry()
	reg.MustRegister("never", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		calls.Add(1)
		return handlers.Success(nil, nil)
	}))
	step := f.Step(t, "stuck")
	msgID := wkEnqueue(t, pool, ns, f, "stuck")
	// The dead worker's claim: in_progress, one attempt, the message kept.
	if err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := state.TransitionStep(ctx, tx, step, state.StepEvent{Type: state.StepEventStart}, state.TransitionOptions{}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 1, last_attempted_at = timezone('UTC', now()) WHERE workflow_step_uuid = $1`, step)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	second := wkStart(t, pool, ns, reg, func(c *worker.Config) { c.VisibilityTimeout = time.Second; c.StaleGrace = 2 * time.Second })
	wkWaitState(t, pool, step, state.StepEnqueuedAsErrorForOrchestration, 20*time.Second)
	if calls.Load() != 0 {
		t.Fatalf("handler ran %d times; a recovered step must not run again in the same attempt", calls.Load())
	}
	if s := second.w.Metrics().Snapshot(); s.InProgressElsewhere < 1 || s.Recovered != 1 {
		t.Fatalf("second worker metrics %+v: want it to leave the live step alone at least once, then recover it once", s)
	}
	r := wkResult(t, pool, step)
	if r.Success || !r.Metadata.Retryable || r.Error == nil || *r.Error.ErrorType != handlers.ErrorTypeHandlerTimeout {
		t.Fatalf("recovered result %+v", r)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 1 {
		t.Fatalf("%d orchestration messages, want 1", n)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT headers->>'`+queue.ArchiveReasonHeader+`' FROM pgmq.a_worker_wk_crash_queue WHERE msg_id = $1`, msgID).Scan(&reason); err != nil || reason != worker.ReasonRecoveredStep {
		t.Fatalf("archived reason %q (%v)", reason, err)
	}
}

func wkResult0(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) []byte {
	var raw []byte
	if err := pool.QueryRow(context.Background(), `SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

// wkSupersedeClaim moves an in_progress step through recovery and a new claim (attempts + 1),
// as happens to a worker cut off for longer than the step's timeout: the first claim's head is
// no longer the step's.
func wkSupersedeClaim(t *testing.T, pool *pgxpool.Pool, step uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	res, _ := json.Marshal(protocol.Failure(step, "presumed dead", handlers.ErrorTypeHandlerTimeout, "", true, 0, nil))
	err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		for _, ev := range []state.StepEvent{
			{Type: state.StepEventEnqueueAsErrorForOrchestration, Data: res},
			{Type: state.StepEventWaitForRetry, Message: "retry"},
			{Type: state.StepEventRetry}, {Type: state.StepEventEnqueue}, {Type: state.StepEventStart},
		} {
			if _, err := state.TransitionStep(ctx, tx, step, ev, state.TransitionOptions{}); err != nil {
				return fmt.Errorf("%s: %w", ev.Type, err)
			}
		}
		_, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = attempts + 1 WHERE workflow_step_uuid = $1`, step)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWorkerLateCompletionRejected(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_late"
	f := newTaskWithSteps(t, pool, ns, []string{"partitioned"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "slowpoke", 0)
	ctx := context.Background()
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	reg := handlers.NewRegistry()
	reg.MustRegister("slowpoke", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		started <- struct{}{}
		<-release
		return handlers.Success(map[string]any{"late": true}, nil)
	}))
	step := f.Step(t, "partitioned")
	wkEnqueue(t, pool, ns, f, "partitioned")
	wkStart(t, pool, ns, reg, nil)
	<-started
	// Meanwhile the step is recovered and claimed again (attempts moves on), as happens when a
	// worker is cut off for longer than its timeout.
	wkSupersedeClaim(t, pool, step)
	close(release)
	time.Sleep(time.Second)
	if got := wkStepState(t, pool, step); got != state.StepInProgress {
		t.Fatalf("late completion was applied: step is %s", got)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); n != 0 {
		t.Fatalf("late completion notified orchestration (%d messages)", n)
	}
}

// wkEnqueuedSteps creates a task of n independent steps named prefix0, prefix1, …, handled by
// callable, and enqueues them all (the worker queue is created first).
func wkEnqueuedSteps(t *testing.T, pool *pgxpool.Pool, ns, prefix string, n int, callable string) (taskFixture, []string) {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	f := newTaskWithSteps(t, pool, ns, names, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, callable, 0)
	if err := queue.NewClient(pool).EnsureQueue(context.Background(), queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		wkEnqueue(t, pool, ns, f, name)
	}
	return f, names
}

// wkGate registers handler "gate": each call signals started, waits for release to be closed,
// then returns result(step name).
func wkGate(n int, result func(name string) handlers.Result) (reg *handlers.Registry, started chan struct{}, release chan struct{}) {
	started, release = make(chan struct{}, n), make(chan struct{})
	reg = handlers.NewRegistry()
	reg.MustRegister("gate", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		started <- struct{}{}
		<-release
		return result(s.StepName())
	}))
	return reg, started, release
}

// Eight steps read together are claimed with one statement and, released at once, completed in
// groups: every live completion is written in full, and the one whose claim was superseded
// meanwhile writes nothing, without affecting the others in its group.
func TestWorkerGroupedClaimsAndCompletions(t *testing.T) {
	_, pool := testdb.New(t)
	const ns, n = "wk_group", 8
	f, names := wkEnqueuedSteps(t, pool, ns, "g", n, "gate")
	ctx := context.Background()
	reg, started, release := wkGate(n, func(name string) handlers.Result {
		return handlers.Success(map[string]any{"step": name}, nil)
	})
	r := wkStart(t, pool, ns, reg, func(c *worker.Config) { c.Concurrency = n; c.BatchSize = n })
	for range n {
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the handlers did not all start")
		}
	}
	if got := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_transitions tr JOIN tasker.workflow_steps ws USING (workflow_step_uuid)
		WHERE ws.task_uuid = $1 AND tr.to_state = 'in_progress' AND tr.metadata->>'event' = '{"type":"Start"}'`, f.TaskUUID); got != n {
		t.Fatalf("%d claims written, want %d", got, n)
	}
	// g0's claim is superseded while its handler runs (recovered and claimed again elsewhere).
	stale := f.Step(t, "g0")
	wkSupersedeClaim(t, pool, stale)
	auditBefore := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_result_audit WHERE task_uuid = $1`, f.TaskUUID)
	close(release)
	for _, name := range names[1:] {
		wkWaitState(t, pool, f.Step(t, name), state.StepEnqueuedForOrchestration, 20*time.Second)
		got := wkResult(t, pool, f.Step(t, name))
		var body map[string]string
		if err := json.Unmarshal(got.Result, &body); err != nil || !got.Success || body["step"] != name {
			t.Errorf("%s: result %s (success %v, %v)", name, got.Result, got.Success, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.w.Metrics().Snapshot().LateRejected == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := wkStepState(t, pool, stale); got != state.StepInProgress {
		t.Fatalf("the superseded claim's completion was applied: %s is %s", stale, got)
	}
	if got := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); got != n-1 {
		t.Errorf("%d orchestration messages, want %d", got, n-1)
	}
	if got := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_step_result_audit WHERE task_uuid = $1`, f.TaskUUID) - auditBefore; got != n-1 {
		t.Errorf("%d audit rows written, want %d", got, n-1)
	}
	if got := wkCount(t, pool, `SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = $1 AND in_process`, f.TaskUUID); got != 1 {
		t.Errorf("%d steps in_process, want 1 (the superseded one)", got)
	}
	var left []int64
	rows, _ := pool.Query(ctx, `SELECT msg_id FROM pgmq.q_worker_wk_group_queue`)
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	if rows.Err() != nil || len(left) != 1 {
		t.Errorf("worker queue holds %v (%v), want only the superseded step's message", left, rows.Err())
	}
	s := r.w.Metrics().Snapshot()
	if s.LateRejected != 1 || s.Completed != n-1 {
		t.Errorf("metrics: late %d, completed %d; want 1, %d", s.LateRejected, s.Completed, n-1)
	}
	if s.CompletionGroups < 1 || s.GroupedCompletions < 2 {
		t.Errorf("%d completions released at once: %d written by %d group statements, want a group", n, s.GroupedCompletions, s.CompletionGroups)
	}
	t.Logf("%d of %d completions written by %d group statements", s.GroupedCompletions, n, s.CompletionGroups)
}

// A completion the database refuses (U+0000 in a jsonb result) fails the statement of the group
// it is in (unless the flusher took it alone); the group is then written one completion at a
// time, so the others complete and the refused one is reported as a serialization failure.
func TestWorkerGroupedCompletionRefusedByDatabase(t *testing.T) {
	_, pool := testdb.New(t)
	const ns, n = "wk_group_bad", 6
	f, names := wkEnqueuedSteps(t, pool, ns, "b", n, "gate")
	reg, started, release := wkGate(n, func(name string) handlers.Result {
		if name == "b3" {
			return handlers.Success(map[string]any{"text": "a\x00b"}, nil)
		}
		return handlers.Success(map[string]any{"ok": true}, nil)
	})
	r := wkStart(t, pool, ns, reg, func(c *worker.Config) { c.Concurrency = n; c.BatchSize = n })
	for range n {
		<-started
	}
	close(release)
	for _, name := range names {
		want := state.StepEnqueuedForOrchestration
		if name == "b3" {
			want = state.StepEnqueuedAsErrorForOrchestration
		}
		wkWaitState(t, pool, f.Step(t, name), want, 20*time.Second)
	}
	bad := wkResult(t, pool, f.Step(t, "b3"))
	if bad.Success || bad.Metadata.Retryable || bad.Metadata.ErrorType == nil || *bad.Metadata.ErrorType != handlers.ErrorTypeSerialization {
		t.Errorf("refused result reported as %+v, want a non-retryable serialization failure", bad)
	}
	if got := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results`); got != n {
		t.Errorf("%d orchestration messages, want %d", got, n)
	}
	s := r.w.Metrics().Snapshot()
	if s.Completed != n-1 || s.Failed != 1 {
		t.Errorf("metrics: completed %d, failed %d; want %d, 1", s.Completed, s.Failed, n-1)
	}
	t.Logf("%d completions written in %d group statements; %d group statements failed and were split", s.GroupedCompletions, s.CompletionGroups, s.GroupsSplit)
}

func TestWorkerCheckpointYield(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_ckpt"
	f := newTaskWithSteps(t, pool, ns, []string{"long_batch"}, nil)
	initTransitions(t, pool, f)
	wkTemplate(t, pool, f, "chunked", 0)
	ctx := context.Background()
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	reg := handlers.NewRegistry()
	reg.MustRegister("chunked", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		runs.Add(1)
		cursor, _, err := handlers.DecodeCheckpointCursor[int](s)
		if err != nil {
			return handlers.ErrorResult(err)
		}
		sum, _, _ := handlers.DecodeAccumulatedResults[int](s)
		for i := cursor; i < cursor+100 && i < 250; i++ {
			sum += i
		}
		next := cursor + 100
		if next < 250 {
			return handlers.Yield(next, uint64(next), sum)
		}
		return handlers.Success(map[string]any{"sum": sum, "checkpoints_used": runs.Load() - 1}, nil)
	}))
	wkEnqueue(t, pool, ns, f, "long_batch")
	wkStart(t, pool, ns, reg, nil)
	step := f.Step(t, "long_batch")
	wkWaitState(t, pool, step, state.StepEnqueuedForOrchestration, 10*time.Second)
	r := wkResult(t, pool, step)
	var out struct {
		Sum             int `json:"sum"`
		CheckpointsUsed int `json:"checkpoints_used"`
	}
	if err := json.Unmarshal(r.Result, &out); err != nil || out.Sum != 249*250/2 || out.CheckpointsUsed != 2 {
		t.Fatalf("result %s (%v)", r.Result, err)
	}
	var hist int
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT jsonb_array_length(checkpoint->'history'), attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step).Scan(&hist, &attempts); err != nil {
		t.Fatal(err)
	}
	if hist != 2 || attempts != 1 {
		t.Fatalf("checkpoint history %d entries, attempts %d; want 2 and 1", hist, attempts)
	}
}

// A step its template does not describe cannot run anywhere: the worker claims it, reports a
// permanent handler_not_found failure through the normal completion (so the task does not hang)
// and archives the message with its reason; no handler runs.
func TestWorkerStepWithoutTemplateDefinition(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "wk_notmpl"
	f := newTaskWithSteps(t, pool, ns, []string{"described", "missing"}, nil)
	initTransitions(t, pool, f)
	// The template describes only "described".
	cfg, _ := json.Marshal(map[string]any{"name": "t", "namespace_name": ns, "version": "0.1.0",
		"steps": []map[string]any{{"name": "described", "handler": map[string]any{"callable": "never"}}}})
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `UPDATE tasker.named_tasks SET configuration = $2, updated_at = clock_timestamp() WHERE named_task_uuid = $1`, f.NamedTaskUUID, cfg); err != nil {
		t.Fatal(err)
	}
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue(ns)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	reg := handlers.NewRegistry()
	reg.MustRegister("never", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		calls.Add(1)
		return handlers.Success(nil, nil)
	}))
	msgID := wkEnqueue(t, pool, ns, f, "missing")
	wkStart(t, pool, ns, reg, nil)
	step := f.Step(t, "missing")
	wkWaitState(t, pool, step, state.StepEnqueuedAsErrorForOrchestration, 10*time.Second)
	res := wkResult(t, pool, step)
	if res.Success || res.Error == nil || res.Metadata.ErrorType == nil || *res.Metadata.ErrorType != handlers.ErrorTypeHandlerNotFound ||
		res.Metadata.Retryable || !strings.Contains(res.Error.Message, "missing") {
		t.Fatalf("result %+v", res)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT headers->>'`+queue.ArchiveReasonHeader+`' FROM pgmq.a_worker_wk_notmpl_queue WHERE msg_id = $1`, msgID).Scan(&reason); err != nil || reason != worker.ReasonNoTemplate {
		t.Fatalf("archive reason %q, %v", reason, err)
	}
	if n := wkCount(t, pool, `SELECT count(*) FROM pgmq.q_orchestration_step_results WHERE message->>'step_uuid' = $1`, step.String()); n != 1 {
		t.Fatalf("%d orchestration messages for the step, want 1", n)
	}
	if calls.Load() != 0 {
		t.Fatalf("a handler ran %d times", calls.Load())
	}
}
