// Package probe instruments a worker for the chaos tests: a handler wrapper that records every
// handler invocation (outside any transaction) and sleeps long enough to be killed mid-flight,
// and an EventPublisher that writes a ledger row inside each completion transaction, so that
// "effects applied" can be counted against "executions" after the run.
//
// The tables live in schema chaos (see Schema); the test creates them before the workers start,
// and workers create them too (idempotently) so the binary can be used on its own.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/worker"
)

// Schema creates the chaos tables. chaos.ledger holds one row per committed completion (step,
// attempt); its partial unique index allows one successful completion per step, so a second
// successful application of a step's effect cannot commit. chaos.invocations holds one row per
// handler call, written outside the completion transaction. chaos.violations records completions
// refused by the ledger's constraints (none are expected).
const Schema = `
CREATE SCHEMA IF NOT EXISTS chaos;
CREATE TABLE IF NOT EXISTS chaos.invocations (
    id          bigserial PRIMARY KEY,
    step_uuid   uuid NOT NULL,
    task_uuid   uuid NOT NULL,
    step_name   text NOT NULL,
    attempt     integer NOT NULL,
    worker_id   text NOT NULL,
    planned_ms  integer NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text
);
CREATE INDEX IF NOT EXISTS invocations_step ON chaos.invocations (step_uuid, attempt);
CREATE INDEX IF NOT EXISTS invocations_open ON chaos.invocations (worker_id) WHERE finished_at IS NULL;
CREATE TABLE IF NOT EXISTS chaos.ledger (
    step_uuid   uuid NOT NULL,
    attempt     integer NOT NULL,
    task_uuid   uuid NOT NULL,
    step_name   text NOT NULL,
    worker_id   text NOT NULL,
    success     boolean NOT NULL,
    status      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (step_uuid, attempt)
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_success ON chaos.ledger (step_uuid) WHERE success;
CREATE TABLE IF NOT EXISTS chaos.violations (
    id        bigserial PRIMARY KEY,
    step_uuid uuid NOT NULL,
    attempt   integer NOT NULL,
    worker_id text NOT NULL,
    detail    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);`

// EnsureSchema creates the chaos tables if they do not exist. A transaction-level advisory lock
// serializes concurrent callers (CREATE ... IF NOT EXISTS alone races on the catalog).
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727274)`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("probe: create chaos schema: %w", err)
	}
	return tx.Commit(ctx)
}

// Sleeps configures how long wrapped handlers sleep before running: Min..Max, except that a
// SlowPermille share of invocations sleep Slow instead (so that faults find handlers in flight).
type Sleeps struct {
	Min, Max     time.Duration
	Slow         time.Duration
	SlowPermille int
}

func (s Sleeps) pick() time.Duration {
	if s.SlowPermille > 0 && rand.IntN(1000) < s.SlowPermille {
		return s.Slow
	}
	return s.Min + randDuration(s.Max-s.Min)
}

// Recorder writes invocation records on its own pool (never the worker's transactions).
type Recorder struct {
	pool     *pgxpool.Pool
	workerID string
	sleeps   Sleeps
	log      *slog.Logger
}

// NewRecorder returns a recorder for workerID whose wrapped handlers first sleep as sleeps says.
func NewRecorder(pool *pgxpool.Pool, workerID string, sleeps Sleeps, log *slog.Logger) *Recorder {
	if sleeps.Max < sleeps.Min {
		sleeps.Max = sleeps.Min
	}
	return &Recorder{pool: pool, workerID: workerID, sleeps: sleeps, log: log}
}

// ErrorTypeProbe is the error_type of a failure the probe itself causes (it could not record
// the invocation before the step's deadline).
const ErrorTypeProbe = "chaos_probe_error"

// Wrap returns h instrumented: record the invocation, sleep, run h, record how it ended.
func (r *Recorder) Wrap(h handlers.Handler) handlers.Handler {
	return handlers.HandlerFunc(func(ctx context.Context, sc *handlers.StepContext) handlers.Result {
		sleep := r.sleeps.pick()
		id, err := r.start(ctx, sc, sleep)
		if err != nil {
			return handlers.Failure("chaos probe: invocation not recorded: "+err.Error(), ErrorTypeProbe, true)
		}
		outcome := "cancelled"
		defer func() { r.finish(id, outcome) }()
		if !sleepCtx(ctx, sleep) {
			return handlers.Failure("chaos probe: interrupted before the handler ran: "+context.Cause(ctx).Error(), ErrorTypeProbe, true)
		}
		res := handlers.Run(ctx, h, sc)
		outcome = "failure"
		if res.IsSuccess() {
			outcome = "success"
		}
		return res
	})
}

// start inserts the invocation row, retrying (the database may be restarting) until ctx ends.
func (r *Recorder) start(ctx context.Context, sc *handlers.StepContext, sleep time.Duration) (int64, error) {
	backoff := 50 * time.Millisecond
	for {
		var id int64
		err := r.pool.QueryRow(ctx, `INSERT INTO chaos.invocations (step_uuid, task_uuid, step_name, attempt, worker_id, planned_ms)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			sc.StepUUID(), sc.TaskUUID(), sc.StepName(), sc.Attempts()+1, r.workerID, sleep.Milliseconds()).Scan(&id)
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		r.log.Warn("chaos probe: invocation insert failed; retrying", "step_uuid", sc.StepUUID(), "error", err)
		if !sleepCtx(ctx, backoff) {
			return 0, err
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// finish marks the invocation ended, best effort and bounded: a worker that cannot reach the
// database leaves it open, which the test counts as an execution without a known end.
func (r *Recorder) finish(id int64, outcome string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, err := r.pool.Exec(ctx, `UPDATE chaos.invocations SET finished_at = clock_timestamp(), outcome = $2 WHERE id = $1`, id, outcome)
		if err == nil || !sleepCtx(ctx, 200*time.Millisecond) {
			if err != nil {
				r.log.Warn("chaos probe: invocation end not recorded", "id", id, "error", err)
			}
			return
		}
	}
}

// Resolver wraps every handler a base resolver returns with the recorder.
type Resolver struct {
	Base     worker.Resolver
	Recorder *Recorder
}

// ResolveWithFallback resolves through Base and wraps the handler.
func (r Resolver) ResolveWithFallback(def protocol.HandlerDefinition, fallbacks ...string) (handlers.Handler, error) {
	h, err := r.Base.ResolveWithFallback(def, fallbacks...)
	if err != nil {
		return nil, err
	}
	return r.Recorder.Wrap(h), nil
}

// Ledger is a worker.EventPublisher that writes chaos.ledger inside the completion transaction,
// then delegates to Inner (may be nil).
type Ledger struct {
	Inner    worker.EventPublisher
	Side     *pgxpool.Pool // for violation records, outside the failing transaction
	WorkerID string
	Log      *slog.Logger
}

var (
	_ worker.EventPublisher = (*Ledger)(nil)
	_ worker.DurableDecider = (*Ledger)(nil)
)

// PublishDurable records (step, attempt) with the result's success on tx. The attempt is read
// under the completion's fence lock, so it is the claim being completed.
func (l *Ledger) PublishDurable(ctx context.Context, tx pgx.Tx, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) error {
	step := seq.WorkflowStep
	var attempt int32
	if err := tx.QueryRow(ctx, `SELECT COALESCE(attempts, 0) FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`,
		step.WorkflowStepUUID).Scan(&attempt); err != nil {
		return fmt.Errorf("chaos ledger: read attempts: %w", err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO chaos.ledger (step_uuid, attempt, task_uuid, step_name, worker_id, success, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		step.WorkflowStepUUID, attempt, step.TaskUUID, step.Name, l.WorkerID, res.Success, string(res.NormalizedStatus()))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		l.violation(step.WorkflowStepUUID.String(), attempt, pgErr.ConstraintName+": "+pgErr.Detail)
	}
	if err != nil {
		return fmt.Errorf("chaos ledger: %w", err)
	}
	if l.Inner != nil {
		return l.Inner.PublishDurable(ctx, tx, seq, res)
	}
	return nil
}

// NeedsDurable is true for every step: the ledger row is written in every completion's
// transaction (worker.DurableDecider).
func (l *Ledger) NeedsDurable(protocol.TaskSequenceStep) bool { return true }

// PublishAfterCommit delegates to Inner.
func (l *Ledger) PublishAfterCommit(ctx context.Context, seq protocol.TaskSequenceStep, res protocol.StepExecutionResult) {
	if l.Inner != nil {
		l.Inner.PublishAfterCommit(ctx, seq, res)
	}
}

func (l *Ledger) violation(step string, attempt int32, detail string) {
	l.Log.Error("chaos ledger: a second completion of a step was attempted", "step_uuid", step, "attempt", attempt, "detail", detail)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.Side.Exec(ctx, `INSERT INTO chaos.violations (step_uuid, attempt, worker_id, detail) VALUES ($1, $2, $3, $4)`,
		step, attempt, l.WorkerID, detail); err != nil {
		l.Log.Error("chaos ledger: violation not recorded", "error", err)
	}
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// sleepCtx sleeps d and reports whether it was not interrupted by ctx.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
