package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/web"
)

const omFlowYAML = `
name: metrics_flow
namespace_name: orch_metrics
version: 1.0.0
steps:
  - name: om_start
    handler: {callable: om.flaky}
    retry: {retryable: true, max_attempts: 3}
  - name: om_route
    type: decision
    dependencies: [om_start]
    handler: {callable: om.route}
  - name: om_a
    dependencies: [om_route]
    handler: {callable: om.ok}
  - name: om_b
    dependencies: [om_route]
    handler: {callable: om.ok}
`

const omIdleYAML = `
name: idle
namespace_name: orch_metrics_idle
version: 1.0.0
steps:
  - name: om_wait
    handler: {callable: om.never}
`

// omServe serves o's metrics as the orchestrator's server does and returns its base URL.
func omServe(t *testing.T, o *orchestration.Orchestrator, pool *pgxpool.Pool) string {
	t.Helper()
	srv := web.New(web.Config{
		Addr:       "127.0.0.1:0",
		IDKey:      "processor_uuid",
		InstanceID: o.Config().ProcessorUUID.String(),
		Collectors: []prometheus.Collector{web.NewOrchestratorCollector(web.ForOrchestrator(o, pool, queue.NewClient(pool)))},
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "http://" + srv.Addr()
}

// omScrapeUntil scrapes base's /metrics until ok accepts the samples (10s at most) and returns
// the last samples.
func omScrapeUntil(t *testing.T, base string, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := webGet(t, base, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics = %d %s", code, body)
		}
		_, m := webParseMetrics(t, string(body))
		if ok(m) || time.Now().After(deadline) {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOrchestratorMetrics runs two decision workflows (one step fails once and is retried)
// through a real orchestrator and worker, cancels a third task, sends a duplicate and a
// malformed result, and checks the counters on the orchestrator's scraped /metrics.
func TestOrchestratorMetrics(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, omFlowYAML)
	orchRegister(t, pool, omIdleYAML)
	var failedOnce atomic.Bool
	reg := handlers.NewRegistry()
	reg.MustRegister("om.flaky", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		if failedOnce.CompareAndSwap(false, true) {
			return handlers.ErrorResult(handlers.RetryableError("transient glitch"))
		}
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	reg.MustRegister("om.route", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.DecisionSuccess([]string{"om_a"}, nil)
	}))
	reg.MustRegister("om.ok", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return map[string]any{"ok": true}, nil
	}))

	o := orchNew(t, pool, nil)
	base := omServe(t, o, pool)

	t1 := orchCreate(t, o, orchRequest("orch_metrics", "metrics_flow", `{"n": 1}`))
	t2 := orchCreate(t, o, orchRequest("orch_metrics", "metrics_flow", `{"n": 2}`))
	if _, err := o.CreateTask(ctx, orchRequest("orch_metrics", "metrics_flow", `{"n": 1}`)); !errors.Is(err, orchestration.ErrDuplicateTask) {
		t.Fatalf("second identical request: %v, want a duplicate", err)
	}
	idle := orchCreate(t, o, orchRequest("orch_metrics_idle", "idle", `{}`))
	if _, err := o.Cancel(ctx, idle.TaskUUID); err != nil {
		t.Fatal(err)
	}
	orchWorker(t, pool, "orch_metrics", reg)
	orchRun(t, o)
	orchWaitTask(t, pool, t1.TaskUUID, 30*time.Second, state.TaskComplete)
	orchWaitTask(t, pool, t2.TaskUUID, 30*time.Second, state.TaskComplete)

	// A second result message for a step already complete, and one that is not a step message.
	q := queue.NewClient(pool)
	if _, err := q.SendWithNotify(ctx, pool, queue.StepResultsQueue,
		protocol.StepMessage{TaskUUID: t1.TaskUUID, StepUUID: t1.Steps["om_start"], CorrelationID: t1.CorrelationID}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendWithNotify(ctx, pool, queue.StepResultsQueue, json.RawMessage(`{"nope": true}`), 0); err != nil {
		t.Fatal(err)
	}

	ok := func(m map[string]float64) bool {
		return m[`tasker_orchestrator_step_results_total{outcome="duplicate",result="duplicate"}`] == 1 &&
			m[`tasker_orchestrator_step_results_total{outcome="malformed",result="rejected"}`] == 1 &&
			m[`tasker_orchestrator_queue_depth{queue="orchestration_step_results"}`] == 0
	}
	m := omScrapeUntil(t, base, ok)

	// Per task: om_start (twice for the task whose first attempt failed), om_route, om_a.
	want := map[string]float64{
		`tasker_orchestrator_tasks_created_total{name="metrics_flow",namespace="orch_metrics"}`: 2,
		`tasker_orchestrator_tasks_created_total{name="idle",namespace="orch_metrics_idle"}`:    1,
		`tasker_orchestrator_tasks_finalized_total{state="complete"}`:                           2,
		`tasker_orchestrator_tasks_finalized_total{state="cancelled"}`:                          1,
		`tasker_orchestrator_tasks_finalized_total{state="error"}`:                              0,
		`tasker_orchestrator_tasks_finalized_total{state="blocked_by_failures"}`:                0,
		`tasker_orchestrator_step_results_total{outcome="completed",result="applied"}`:          6,
		`tasker_orchestrator_step_results_total{outcome="waiting_for_retry",result="applied"}`:  1,
		`tasker_orchestrator_step_results_total{outcome="failed",result="applied"}`:             0,
		`tasker_orchestrator_step_results_total{outcome="duplicate",result="duplicate"}`:        1,
		`tasker_orchestrator_step_results_total{outcome="malformed",result="rejected"}`:         1,
		`tasker_orchestrator_step_results_total{outcome="unknown_step",result="rejected"}`:      0,
		`tasker_orchestrator_steps_enqueued_total{namespace="orch_metrics"}`:                    7,
		`tasker_orchestrator_steps_enqueued_total{namespace="orch_metrics_idle"}`:               1,
		`tasker_orchestrator_expansions_total{kind="decision"}`:                                 2,
		`tasker_orchestrator_expansions_total{kind="batch"}`:                                    0,
		`tasker_orchestrator_sweep_found_total{kind="abandoned_steps",sweep="recovery"}`:        0,
		`tasker_orchestrator_sweep_found_total{kind="stuck_tasks",sweep="recovery"}`:            0,
		`tasker_orchestrator_sweep_found_total{kind="orphan_results",sweep="recovery"}`:         0,
		`tasker_orchestrator_queue_depth{queue="orchestration_step_results"}`:                   0,
		`tasker_orchestrator_queue_visible_depth{queue="orchestration_step_results"}`:           0,
		`tasker_orchestrator_queue_metrics_up`:                                                  1,
		`tasker_orchestrator_info{processor_uuid="` + o.Config().ProcessorUUID.String() + `"}`:  1,
		`tasker_orchestrator_db_pool_max`:                                                       float64(pool.Config().MaxConns),
	}
	for _, kind := range orchestration.ErrorKinds {
		want[fmt.Sprintf(`tasker_orchestrator_errors_total{kind=%q}`, kind)] = 0
	}
	for series, v := range want {
		got, present := m[series]
		if !present || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, present, v)
		}
	}
	// The retry became ready only through the readiness sweep, after its backoff.
	if n := m[`tasker_orchestrator_sweep_found_total{kind="tasks_advanced",sweep="readiness"}`]; n < 1 {
		t.Errorf("readiness sweep advanced %v tasks, want the retried one at least", n)
	}
	for _, sweep := range []string{"readiness", "recovery"} {
		runs := m[`tasker_orchestrator_sweeps_total{sweep="`+sweep+`"}`]
		if runs < 1 || m[`tasker_orchestrator_sweep_duration_seconds_count{sweep="`+sweep+`"}`] != runs {
			t.Errorf("%s sweep: %v runs, %v durations", sweep, runs, m[`tasker_orchestrator_sweep_duration_seconds_count{sweep="`+sweep+`"}`])
		}
	}
	// Every processed result message is timed (a message taken by its notification after a
	// read had processed it counts as taken).
	total := 0.0
	for _, outcome := range orchestration.ResultOutcomes {
		total += m[fmt.Sprintf(`tasker_orchestrator_step_results_total{outcome=%q,result=%q}`, outcome, outcome.Disposition())]
	}
	if got := m[`tasker_orchestrator_result_processing_seconds_count`]; got != total || total < 9 {
		t.Errorf("result latency count %v, results %v (want >= 9)", got, total)
	}
	if m[`tasker_orchestrator_result_processing_seconds_sum`] <= 0 {
		t.Error("result latency sum is 0")
	}
	if _, ok := m[`tasker_orchestrator_queue_oldest_message_age_seconds{queue="orchestration_task_requests"}`]; !ok {
		t.Error("no oldest message age for orchestration_task_requests")
	}
}

const omRecoverYAML = `
name: recover
namespace_name: orch_metrics_rec
version: 1.0.0
steps:
  - name: omr_abandoned
    handler: {callable: om.never}
    timeout_seconds: 1
    retry: {retryable: true, max_attempts: 3}
  - name: omr_orphan
    handler: {callable: om.never}
`

// TestOrchestratorMetricsRecovery leaves a step abandoned in_progress and a result without its
// message, and checks that the recovery sweep's counters report each once.
func TestOrchestratorMetricsRecovery(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, omRecoverYAML)
	o := orchNew(t, pool, func(c *orchestration.Config) {
		c.StaleGrace = time.Second
		c.StuckThreshold = 500 * time.Millisecond
	})
	base := omServe(t, o, pool)
	ct := orchCreate(t, o, orchRequest("orch_metrics_rec", "recover", `{}`))

	// A worker claimed omr_abandoned 5s ago and died.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionStep(ctx, tx, ct.Steps["omr_abandoned"], state.StepEventOf(state.StepEventStart), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 1,
		last_attempted_at = timezone('UTC', clock_timestamp()) - interval '5 seconds' WHERE workflow_step_uuid = $1`, ct.Steps["omr_abandoned"]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A worker finished omr_orphan but its result message was never sent.
	orchSimulateWorker(t, pool, ct.TaskUUID, ct.Steps["omr_orphan"], ct.CorrelationID,
		protocol.Success(ct.Steps["omr_orphan"], json.RawMessage(`{"ok":true}`), 1, nil), false)

	orchRun(t, o)
	orchWaitStep(t, pool, ct.Steps["omr_orphan"], 10*time.Second, state.StepComplete)
	abandoned := `tasker_orchestrator_sweep_found_total{kind="abandoned_steps",sweep="recovery"}`
	orphans := `tasker_orchestrator_sweep_found_total{kind="orphan_results",sweep="recovery"}`
	m := omScrapeUntil(t, base, func(m map[string]float64) bool { return m[abandoned] == 1 && m[orphans] == 1 })
	if m[abandoned] != 1 || m[orphans] != 1 {
		t.Fatalf("recovery found %v abandoned steps and %v orphan results, want 1 and 1", m[abandoned], m[orphans])
	}
	// Later sweeps find nothing more.
	runs := m[`tasker_orchestrator_sweeps_total{sweep="recovery"}`]
	m = omScrapeUntil(t, base, func(m map[string]float64) bool {
		return m[`tasker_orchestrator_sweeps_total{sweep="recovery"}`] >= runs+3
	})
	if m[abandoned] != 1 || m[orphans] != 1 || m[`tasker_orchestrator_errors_total{kind="step_recovery"}`] != 0 {
		t.Fatalf("after more sweeps: %v abandoned, %v orphans", m[abandoned], m[orphans])
	}
	// The abandoned step's timeout was applied as a retry: a result, though it came from no message.
	if got := m[`tasker_orchestrator_step_results_total{outcome="waiting_for_retry",result="applied"}`]; got != 0 {
		t.Fatalf("results counted from recovery: %v, want 0 (only result messages are counted)", got)
	}
}
