package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// Tests of the size limits (protocol.Max*Bytes): an oversized input is refused before it is
// decoded, with an error naming its size and the limit, and nothing of it is written.

const limitsYAML = `
name: sizes
namespace_name: limits
version: 1.0.0
steps:
  - name: produce
    handler: {callable: limits.produce}
  - name: consume
    handler: {callable: limits.consume}
    dependencies: [produce]
`

// limitsRegistry registers produce (running fn) and a consume that succeeds.
func limitsRegistry(fn handlers.HandlerFunc) *handlers.Registry {
	reg := handlers.NewRegistry()
	reg.MustRegister("limits.produce", fn)
	reg.MustRegister("limits.consume", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(nil, nil)
	}))
	return reg
}

// TestLimitsOversizedTaskRequest: CreateTask refuses a context, or a request, over
// protocol.MaxTaskRequestBytes with a *ValidationError that matches protocol.ErrTooLarge and names
// the size and the limit, and writes nothing; a valid request afterwards is created.
func TestLimitsOversizedTaskRequest(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, limitsYAML)
	o := badOrchestrator(t, pool)
	ctx := context.Background()
	if err := o.EnsureQueues(ctx); err != nil {
		t.Fatal(err)
	}
	if err := queue.NewClient(pool).EnsureQueue(ctx, queue.WorkerQueue("limits")); err != nil {
		t.Fatal(err)
	}
	before := badCount(t, pool)

	bigContext := `{"blob": "` + strings.Repeat("x", protocol.MaxTaskRequestBytes) + `"}`
	manyTags := badRequest("limits", "sizes", `{}`)
	for range 64 {
		manyTags.Tags = append(manyTags.Tags, strings.Repeat("t", protocol.MaxTaskRequestBytes/64))
	}
	for _, tc := range []struct {
		name  string
		req   orchestration.TaskRequest
		field string
		size  int64
	}{
		{"context", badRequest("limits", "sizes", bigContext), "context", int64(len(bigContext))},
		{"request", manyTags, "request", 0},
	} {
		_, err := o.CreateTask(ctx, tc.req)
		if err == nil {
			t.Fatalf("%s: CreateTask accepted an oversized %s", tc.name, tc.field)
		}
		var ve *orchestration.ValidationError
		var se *protocol.SizeError
		if !errors.As(err, &ve) || !errors.Is(err, orchestration.ErrInvalidRequest) || !errors.As(err, &se) || !errors.Is(err, protocol.ErrTooLarge) {
			t.Fatalf("%s: error %T %v is not a *ValidationError with a *protocol.SizeError", tc.name, err, err)
		}
		if len(ve.Problems) != 1 || ve.Problems[0].Field != tc.field {
			t.Errorf("%s: problems %+v, want one for field %q", tc.name, ve.Problems, tc.field)
		}
		if se.Limit != protocol.MaxTaskRequestBytes || (tc.size > 0 && se.Size != tc.size) || se.Size <= se.Limit {
			t.Errorf("%s: size error %+v, want size %d and limit %d", tc.name, se, tc.size, protocol.MaxTaskRequestBytes)
		}
		want := fmt.Sprintf("task %s is %d bytes; the limit is %d", tc.field, se.Size, protocol.MaxTaskRequestBytes)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, want)
		}
		badUnchanged(t, pool, before, "an oversized task "+tc.field)
	}

	// The same request encoded, as an HTTP body or a file carries it, is refused unparsed.
	data, err := json.Marshal(badRequest("limits", "sizes", bigContext))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orchestration.DecodeTaskRequest(data); !errors.Is(err, protocol.ErrTooLarge) ||
		!strings.Contains(err.Error(), fmt.Sprintf("task request is %d bytes; the limit is %d", len(data), protocol.MaxTaskRequestBytes)) {
		t.Errorf("DecodeTaskRequest of %d bytes: %v", len(data), err)
	}

	if _, err := o.CreateTask(ctx, badRequest("limits", "sizes", `{"blob": "`+strings.Repeat("x", 1000)+`"}`)); err != nil {
		t.Fatalf("a valid request after the oversized ones: %v", err)
	}
}

// limitsArchived waits until message msgID of queue q is archived and returns its reason and
// detail headers.
func limitsArchived(t *testing.T, pool *pgxpool.Pool, q string, msgID int64, within time.Duration) (reason, why string) {
	t.Helper()
	archive := pgx.Identifier{"pgmq", "a_" + q}.Sanitize()
	deadline := time.Now().Add(within)
	for {
		var r, w *string
		err := pool.QueryRow(context.Background(), `SELECT headers->>'x-tasker-archive-reason', headers->>'x-tasker-archive-reason-why'
			FROM `+archive+` WHERE msg_id = $1`, msgID).Scan(&r, &w)
		if err == nil {
			if r == nil || w == nil {
				t.Fatalf("message %d of %s archived without reason headers", msgID, q)
			}
			return *r, *w
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %d of %s not archived after %s", msgID, q, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLimitsOversizedQueueMessages: a message over protocol.MaxStepMessageBytes on the worker's
// queue and one on orchestration_step_results are archived as malformed_message with the size
// and the limit in the reason's detail, although both name a real task and step (so they are
// refused for their size, not their content); the worker and the orchestrator keep going.
func TestLimitsOversizedQueueMessages(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, limitsYAML)
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "limits", limitsRegistry(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	ctx := context.Background()
	first, err := o.CreateTask(ctx, badRequest("limits", "sizes", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, first.TaskUUID, 20*time.Second); st != state.TaskComplete {
		t.Fatalf("first task ended %s, want complete", st)
	}

	pad := strings.Repeat("p", protocol.MaxStepMessageBytes)
	oversized := map[string]any{"task_uuid": first.TaskUUID, "step_uuid": first.Steps["produce"], "correlation_id": first.CorrelationID, "pad": pad}
	qc := queue.NewClient(pool)
	stepMsg, err := qc.SendWithNotify(ctx, nil, queue.WorkerQueue("limits"), oversized, 0)
	if err != nil {
		t.Fatal(err)
	}
	resultMsg, err := qc.SendWithNotify(ctx, nil, queue.StepResultsQueue, oversized, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		q  string
		id int64
	}{{queue.WorkerQueue("limits"), stepMsg}, {queue.StepResultsQueue, resultMsg}} {
		reason, why := limitsArchived(t, pool, m.q, m.id, 15*time.Second)
		// The size is the body as PostgreSQL returns the jsonb (", " and ": " separators).
		var size int
		if err := pool.QueryRow(ctx, `SELECT octet_length(message::text) FROM `+pgx.Identifier{"pgmq", "a_" + m.q}.Sanitize()+
			` WHERE msg_id = $1`, m.id).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("step message is %d bytes; the limit is %d", size, protocol.MaxStepMessageBytes); reason != "malformed_message" || !strings.Contains(why, want) {
			t.Errorf("%s: archived as %q (%q), want malformed_message saying %q", m.q, reason, why, want)
		}
	}
	// The refused messages touched nothing: the first task's steps ran once each.
	for _, name := range []string{"produce", "consume"} {
		if st, attempts, _, _ := badStep(t, pool, first.TaskUUID, name); st != state.StepComplete || attempts != 1 {
			t.Errorf("step %s is %s after %d attempts, want complete after 1", name, st, attempts)
		}
	}
	second, err := o.CreateTask(ctx, badRequest("limits", "sizes", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, second.TaskUUID, 20*time.Second); st != state.TaskComplete {
		t.Fatalf("a task after the oversized messages ended %s, want complete", st)
	}
}

// TestLimitsOversizedHandlerResult: a result over protocol.MaxStepResultBytes is not written; the
// step fails at once (not retried) with a serialization_error naming the size and the limit, and
// the dependent step never runs.
func TestLimitsOversizedHandlerResult(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, limitsYAML)
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "limits", limitsRegistry(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(strings.Repeat("r", protocol.MaxStepResultBytes), nil) // +2 quotes once encoded
	}))
	ct, err := o.CreateTask(context.Background(), badRequest("limits", "sizes", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, ct.TaskUUID, 30*time.Second); st != state.TaskBlockedByFailures {
		t.Fatalf("task ended %s, want blocked_by_failures", st)
	}
	st, attempts, res, raw := badStep(t, pool, ct.TaskUUID, "produce")
	want := fmt.Sprintf("step result is %d bytes; the limit is %d", protocol.MaxStepResultBytes+2, protocol.MaxStepResultBytes)
	if st != state.StepError || attempts != 1 || res.Error == nil || res.Error.Retryable || res.Metadata.Retryable ||
		res.Metadata.ErrorType == nil || *res.Metadata.ErrorType != handlers.ErrorTypeSerialization || !strings.Contains(res.Error.Message, want) {
		t.Errorf("produce is %s after %d attempts with error %+v, want error after 1: non-retryable %s saying %q",
			st, attempts, res.Error, handlers.ErrorTypeSerialization, want)
	}
	if len(raw) > 64<<10 {
		t.Errorf("workflow_steps.results holds %d bytes: the oversized result was written", len(raw))
	}
	if cst, _, _, _ := badStep(t, pool, ct.TaskUUID, "consume"); cst != state.StepPending {
		t.Errorf("consume is %s, want pending (never run)", cst)
	}
}

// TestLimitsOversizedCheckpoint: a checkpoint yield over protocol.MaxCheckpointBytes is not
// persisted; the step fails at once (not retried) with a checkpoint_error naming the limit.
func TestLimitsOversizedCheckpoint(t *testing.T) {
	_, pool := testdb.New(t)
	badRegister(t, pool, limitsYAML)
	o := badOrchestrator(t, pool)
	badRun(t, pool, o, "limits", limitsRegistry(func(_ context.Context, sc *handlers.StepContext) handlers.Result {
		if sc.HasCheckpoint() {
			return handlers.Success(map[string]any{"resumed": true}, nil)
		}
		return handlers.Yield(1, 1, strings.Repeat("c", protocol.MaxCheckpointBytes))
	}))
	ct, err := o.CreateTask(context.Background(), badRequest("limits", "sizes", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if st := badWaitTask(t, pool, ct.TaskUUID, 30*time.Second); st != state.TaskBlockedByFailures {
		t.Fatalf("task ended %s, want blocked_by_failures", st)
	}
	st, attempts, res, _ := badStep(t, pool, ct.TaskUUID, "produce")
	want := fmt.Sprintf("the limit is %d", protocol.MaxCheckpointBytes)
	if st != state.StepError || attempts != 1 || res.Error == nil || res.Error.Retryable ||
		res.Metadata.ErrorType == nil || *res.Metadata.ErrorType != handlers.ErrorTypeCheckpoint || !strings.Contains(res.Error.Message, want) {
		t.Errorf("produce is %s after %d attempts with error %+v, want error after 1: non-retryable %s saying %q",
			st, attempts, res.Error, handlers.ErrorTypeCheckpoint, want)
	}
	var checkpoint []byte
	if err := pool.QueryRow(context.Background(), `SELECT checkpoint::text FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`,
		ct.Steps["produce"]).Scan(&checkpoint); err != nil {
		t.Fatal(err)
	}
	if checkpoint != nil {
		t.Errorf("workflow_steps.checkpoint holds %d bytes, want NULL (never persisted)", len(checkpoint))
	}
}
