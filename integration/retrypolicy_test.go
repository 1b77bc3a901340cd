package integration

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
)

// Three independent roots: one with its own 50 ms / 200 ms exponential policy, one whose retry
// block sets no backoff (the configured backoff applies), one with a policy whose handler asks
// for a delay (Retry-After wins).
const retryPolicyYAML = `
name: policy
namespace_name: rp_policy
version: 1.0.0
steps:
  - name: rp_fast
    handler: {callable: rp.fail}
    retry: {retryable: true, max_attempts: 5, backoff: exponential, backoff_base_ms: 50, max_backoff_ms: 200}
  - name: rp_plain
    handler: {callable: rp.fail}
    retry: {retryable: true, max_attempts: 5}
  - name: rp_asks
    handler: {callable: rp.fail}
    retry: {retryable: true, max_attempts: 5, backoff: linear, backoff_base_ms: 50, max_backoff_ms: 200}
`

// rpBackoff is what the readiness function makes of a step's stored backoff.
type rpBackoff struct {
	seconds   int32         // workflow_steps.backoff_request_seconds
	delay     time.Duration // next_retry_at − the moment the failure was processed
	ready     bool          // ready_for_execution
	nextRetry time.Time
}

// rpReadBackoff reads the step's backoff through tasker.get_step_readiness_status; the failure
// was processed at workflow_steps.updated_at (NOW() of the result's transaction).
func rpReadBackoff(t *testing.T, pool *pgxpool.Pool, task, step uuid.UUID) rpBackoff {
	t.Helper()
	var b rpBackoff
	var processed time.Time
	if err := pool.QueryRow(context.Background(), `
		SELECT r.backoff_request_seconds, r.next_retry_at, ws.updated_at, r.ready_for_execution
		  FROM tasker.get_step_readiness_status($1, ARRAY[$2::uuid]) r
		  JOIN tasker.workflow_steps ws USING (workflow_step_uuid)`, task, step).Scan(&b.seconds, &b.nextRetry, &processed, &b.ready); err != nil {
		t.Fatalf("readiness of %s: %v", step, err)
	}
	b.delay = b.nextRetry.Sub(processed)
	return b
}

// rpProcessResults hands every visible result message to o, as its result loop would.
func rpProcessResults(t *testing.T, pool *pgxpool.Pool, o *orchestration.Orchestrator, want int) {
	t.Helper()
	ctx := context.Background()
	msgs, err := queue.NewClient(pool).Read(ctx, queue.StepResultsQueue, 30, 10)
	if err != nil || len(msgs) != want {
		t.Fatalf("result messages %d (%v), want %d", len(msgs), err, want)
	}
	for _, m := range msgs {
		if err := o.ProcessResultMessage(ctx, m); err != nil {
			t.Fatalf("ProcessResultMessage: %v", err)
		}
	}
}

// rpWaitEnqueued moves the step's retry along as the readiness sweep would once its backoff elapsed
// (waiting_for_retry → pending → enqueued), waiting for the sweep to do it.
func rpWaitEnqueued(t *testing.T, pool *pgxpool.Pool, o *orchestration.Orchestrator, step uuid.UUID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := o.ReadinessSweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := orchScalar[string](t, pool, `SELECT to_state FROM tasker.workflow_step_transitions
			WHERE workflow_step_uuid = $1 AND most_recent`, step); st == "enqueued" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s not re-enqueued", step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRetryPolicyFromTemplate(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, retryPolicyYAML)
	o := orchNew(t, pool, nil) // configured backoff: 1s × 2^attempts, max 10s, no jitter
	ct := orchCreate(t, o, orchRequest("rp_policy", "policy", `{}`))
	fast, plain, asks := ct.Steps["rp_fast"], ct.Steps["rp_plain"], ct.Steps["rp_asks"]

	fail := func(step uuid.UUID, headers map[string]string) {
		res := protocol.Failure(step, "flaky", "RetryableError", "", true, 1, nil)
		res.OrchestrationMetadata.Headers = headers
		orchSimulateWorker(t, pool, ct.TaskUUID, step, ct.CorrelationID, res, true)
	}
	// One at a time, rp_fast last: processing a result also enqueues the task's ready steps,
	// which rp_fast is 50 ms after its own failure.
	fail(plain, nil)
	rpProcessResults(t, pool, o, 1)
	fail(asks, map[string]string{"Retry-After": "3"})
	rpProcessResults(t, pool, o, 1)
	fail(fast, nil)
	rpProcessResults(t, pool, o, 1)

	for name, step := range map[string]uuid.UUID{"rp_fast": fast, "rp_plain": plain, "rp_asks": asks} {
		if got := orchStepTrail(t, pool, step); got[len(got)-1] != "waiting_for_retry" {
			t.Fatalf("%s trail %v, want waiting_for_retry", name, got)
		}
	}
	// The template's 50 ms: stored as 1 whole second from a last_attempted_at set 950 ms back,
	// so the readiness function retries it exactly 50 ms after the failure was processed.
	if b := rpReadBackoff(t, pool, ct.TaskUUID, fast); b.seconds != 1 || b.delay != 50*time.Millisecond {
		t.Fatalf("rp_fast backoff %d s, next retry %s after the failure; want 1 s and 50ms", b.seconds, b.delay)
	}
	// No backoff in the retry block: the configured 1s × 2^1.
	if b := rpReadBackoff(t, pool, ct.TaskUUID, plain); b.seconds != 2 || b.delay != 2*time.Second {
		t.Fatalf("rp_plain backoff %d s, next retry %s; want the configured 2s", b.seconds, b.delay)
	}
	// The handler's Retry-After wins over the template's 50 ms.
	if b := rpReadBackoff(t, pool, ct.TaskUUID, asks); b.seconds != 3 || b.delay != 3*time.Second {
		t.Fatalf("rp_asks backoff %d s, next retry %s; want the requested 3s", b.seconds, b.delay)
	}

	// Once its 50 ms passed the fast step is ready (the plain one, 2 s, is not yet).
	b := rpReadBackoff(t, pool, ct.TaskUUID, fast)
	time.Sleep(time.Until(b.nextRetry.Add(20 * time.Millisecond)))
	if b = rpReadBackoff(t, pool, ct.TaskUUID, fast); !b.ready {
		t.Fatalf("rp_fast not ready after its backoff (next retry %s)", b.nextRetry)
	}

	// Second failure of the fast step: the policy doubles to 100 ms; the third hits the 200 ms cap.
	rpWaitEnqueued(t, pool, o, fast)
	fail(fast, nil)
	rpProcessResults(t, pool, o, 1)
	if b := rpReadBackoff(t, pool, ct.TaskUUID, fast); b.seconds != 1 || b.delay != 100*time.Millisecond {
		t.Fatalf("rp_fast 2nd backoff %d s / %s, want 1 s / 100ms", b.seconds, b.delay)
	}
	rpWaitEnqueued(t, pool, o, fast)
	fail(fast, nil)
	rpProcessResults(t, pool, o, 1)
	if b := rpReadBackoff(t, pool, ct.TaskUUID, fast); b.delay != 200*time.Millisecond {
		t.Fatalf("rp_fast 3rd backoff %s, want the 200ms cap", b.delay)
	}
	var lastAttempt, processed time.Time
	if err := pool.QueryRow(context.Background(), `SELECT last_attempted_at, updated_at FROM tasker.workflow_steps
		WHERE workflow_step_uuid = $1`, fast).Scan(&lastAttempt, &processed); err != nil {
		t.Fatal(err)
	}
	if d := processed.Sub(lastAttempt); d != 800*time.Millisecond {
		t.Fatalf("last_attempted_at %s before the failure was processed, want 800ms", d)
	}
}
