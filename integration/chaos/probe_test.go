package chaos

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/chaos/probe"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// probeStep creates a one-step task and returns its step as a TaskSequenceStep.
func probeStep(t *testing.T, pool *pgxpool.Pool) protocol.TaskSequenceStep {
	t.Helper()
	ctx := context.Background()
	tt, err := template.Parse([]byte("name: probe\nnamespace_name: probe_ns\nversion: 1.0.0\nsteps:\n  - name: only\n    handler: {callable: probe.only}\n"), "probe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { _, err := template.Register(ctx, tx, tt); return err }); err != nil {
		t.Fatal(err)
	}
	o, err := orchestration.New(orchestration.Config{}, pool, orchestration.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := o.CreateTask(ctx, orchestration.TaskRequest{Namespace: "probe_ns", Name: "probe", Version: "1.0.0", Context: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var seq protocol.TaskSequenceStep
	seq.WorkflowStep.WorkflowStepUUID = ct.Steps["only"]
	seq.WorkflowStep.TaskUUID = ct.TaskUUID
	seq.WorkflowStep.Name = "only"
	if _, err := pool.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 2 WHERE workflow_step_uuid = $1`, ct.Steps["only"]); err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestLedgerRefusesSecondSuccess checks the detector behind the exactly-once invariant: the
// ledger row is written on the completion transaction with the step's current attempt, a
// rolled-back completion leaves no row, and a second successful completion of one step cannot
// commit and is recorded as a violation.
func TestLedgerRefusesSecondSuccess(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	if err := probe.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := probe.EnsureSchema(ctx, pool); err != nil {
		t.Fatalf("EnsureSchema is not idempotent: %v", err)
	}
	seq := probeStep(t, pool)
	led := &probe.Ledger{Side: pool, WorkerID: "worker_test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ok := protocol.Success(seq.WorkflowStep.WorkflowStepUUID, json.RawMessage(`1`), 1, nil)
	publish := func(commit bool) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
		if err := led.PublishDurable(ctx, tx, seq, ok); err != nil {
			return err
		}
		if commit {
			return tx.Commit(ctx)
		}
		return nil
	}
	if err := publish(false); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int {
		var n int
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM chaos.ledger`); n != 0 {
		t.Fatalf("a rolled-back completion left %d ledger rows", n)
	}
	if err := publish(true); err != nil {
		t.Fatal(err)
	}
	var attempt int
	var success bool
	if err := pool.QueryRow(ctx, `SELECT attempt, success FROM chaos.ledger`).Scan(&attempt, &success); err != nil || attempt != 2 || !success {
		t.Fatalf("ledger row: attempt %d success %v (%v), want attempt 2, success", attempt, success, err)
	}
	// Another attempt completing the same step successfully must not commit.
	if _, err := pool.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 3 WHERE workflow_step_uuid = $1`, seq.WorkflowStep.WorkflowStepUUID); err != nil {
		t.Fatal(err)
	}
	err := publish(true)
	if err == nil || !strings.Contains(err.Error(), "ledger_one_success") {
		t.Fatalf("second success: %v, want the ledger_one_success violation", err)
	}
	if n := count(`SELECT count(*) FROM chaos.violations`); n != 1 {
		t.Fatalf("%d violations recorded, want 1", n)
	}
	if n := count(`SELECT count(*) FROM chaos.ledger`); n != 1 {
		t.Fatalf("%d ledger rows after the refused completion, want 1", n)
	}
}

// TestRecorderWrapsHandlers checks that a wrapped handler is recorded before it runs (attempt =
// attempts + 1), sleeps, runs, and records how it ended.
func TestRecorderWrapsHandlers(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	if err := probe.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	seq := probeStep(t, pool)
	two := int32(2)
	seq.WorkflowStep.Attempts = &two
	rec := probe.NewRecorder(pool, "worker_test", probe.Sleeps{Min: 20 * time.Millisecond, Max: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ran := false
	h := rec.Wrap(handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		ran = true
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	start := time.Now()
	res := handlers.Run(ctx, h, handlers.NewStepContext(seq))
	if !res.IsSuccess() || !ran || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("wrapped handler: success %v ran %v after %s", res.IsSuccess(), ran, time.Since(start))
	}
	var attempt, planned int
	var outcome string
	var finished bool
	if err := pool.QueryRow(ctx, `SELECT attempt, planned_ms, outcome, finished_at IS NOT NULL FROM chaos.invocations`).
		Scan(&attempt, &planned, &outcome, &finished); err != nil {
		t.Fatal(err)
	}
	if attempt != 3 || planned != 20 || outcome != "success" || !finished {
		t.Fatalf("invocation: attempt %d planned %d outcome %q finished %v", attempt, planned, outcome, finished)
	}
	// A cancelled invocation (the step timed out while sleeping) is recorded as cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	res = handlers.Run(cctx, h, handlers.NewStepContext(seq))
	if res.IsSuccess() {
		t.Fatal("a cancelled invocation succeeded")
	}
}
