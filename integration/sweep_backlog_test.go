package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/internal/bench"
	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// The sweeps' queries as they were before they were driven from indexes: a scan of every
// incomplete task (or step). The optimized sweeps must find what these find.
const (
	swbRefReadySQL = `
SELECT t.task_uuid
  FROM tasker.tasks t
  JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
 WHERE NOT t.complete
   AND (tt.to_state IN ('waiting_for_dependencies', 'waiting_for_retry')
        OR (tt.to_state IN ('evaluating_results', 'steps_in_process', 'pending')
            AND tt.created_at <= now() - make_interval(secs => $1)))
   AND EXISTS (SELECT 1 FROM tasker.get_step_readiness_status(t.task_uuid) r WHERE r.ready_for_execution)`
	swbRefAbandonedSQL = `
SELECT ws.workflow_step_uuid
  FROM tasker.workflow_steps ws
  JOIN tasker.workflow_step_transitions st
    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent AND st.to_state = 'in_progress'
  JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
 WHERE NOT t.complete
   AND COALESCE(ws.last_attempted_at, st.created_at) < timezone('UTC', clock_timestamp()) - make_interval(secs => $1)`
	swbRefStuckSQL = `
SELECT t.task_uuid
  FROM tasker.tasks t
  JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
 WHERE NOT t.complete
   AND tt.to_state IN ('pending', 'initializing', 'enqueuing_steps', 'evaluating_results')
   AND tt.created_at < now() - make_interval(secs => $1)
   AND (tt.to_state <> 'evaluating_results'
        OR NOT EXISTS (SELECT 1
                         FROM tasker.workflow_steps ws
                         JOIN tasker.workflow_step_transitions st
                           ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
                        WHERE ws.task_uuid = t.task_uuid
                          AND st.to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                              'enqueued_as_error_for_orchestration')))`
	swbRefOrphanSQL = `
SELECT ws.workflow_step_uuid
  FROM tasker.workflow_steps ws
  JOIN tasker.workflow_step_transitions st
    ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
 WHERE st.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
   AND st.created_at < now() - make_interval(secs => $1)`
	swbRefStaleSQL = `SELECT task_uuid FROM tasker.get_stale_tasks_for_dlq(60, 30, 30, 24, 1000)`
)

// swbSweepIndexes are the optional indexes of migration 0005.
var swbSweepIndexes = []string{
	"idx_task_transitions_sweep_transitional", "idx_task_transitions_sweep_waiting", "idx_task_transitions_sweep_active",
	"idx_workflow_step_transitions_sweep_in_flight", "idx_workflow_steps_sweep_in_process",
	"idx_workflow_steps_sweep_retry_due", "idx_tasks_sweep_active_created_at",
}

// TestSweepsOnBacklog builds a backlog of active tasks, a few of each kind due for one sweep,
// and checks that every sweep acts on exactly its due tasks (those the full-scan queries find)
// and leaves every other task as it was; with migration 0005's indexes and, as on a database
// migrated by tasker-core, without them.
func TestSweepsOnBacklog(t *testing.T) {
	for _, c := range []struct {
		name    string
		indexes bool
	}{{"with sweep indexes", true}, {"without sweep indexes", false}} {
		t.Run(c.name, func(t *testing.T) {
			_, pool := testdb.New(t)
			if !c.indexes {
				swbDropIndexes(t, pool)
			} else if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'tasker' AND indexname = ANY($1)`,
				swbSweepIndexes); n != int64(len(swbSweepIndexes)) {
				t.Fatalf("%d of the %d sweep indexes exist", n, len(swbSweepIndexes))
			}
			swbCheckBacklog(t, pool)
		})
	}
}

func swbDropIndexes(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, idx := range swbSweepIndexes {
		if _, err := pool.Exec(context.Background(), "DROP INDEX tasker."+idx); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrations.Check(context.Background(), pool); err != nil {
		t.Fatalf("check without the sweep indexes: %v", err)
	}
}

func swbCheckBacklog(t *testing.T, pool *pgxpool.Pool) {
	ctx := context.Background()
	o := swbOrchestrator(t, pool)
	const due = 4
	b, err := bench.BuildBacklog(ctx, pool, o, bench.FindSourceDir(), bench.BacklogSpec{
		Active: 600, Completed: 50, Due: due, RetryPercent: 5, RunningPercent: 20})
	if err != nil {
		t.Fatal(err)
	}
	// Three tasks waiting for a worker past the maximum task lifetime (24h).
	old := b.Tasks[bench.BacklogEnqueued][1:4]
	if _, err := pool.Exec(ctx, `UPDATE tasker.tasks SET created_at = created_at - interval '25 hours' WHERE task_uuid = ANY($1)`, old); err != nil {
		t.Fatal(err)
	}
	cfg := o.Config()
	settle := max(2*cfg.ReadinessInterval, time.Second).Seconds()

	ref := map[string][]uuid.UUID{
		"readiness": swbIDs(t, pool, swbRefReadySQL, settle),
		"abandoned": swbIDs(t, pool, swbRefAbandonedSQL, cfg.StaleGrace.Seconds()),
		"stuck":     swbIDs(t, pool, swbRefStuckSQL, cfg.StuckThreshold.Seconds()),
		"orphan":    swbIDs(t, pool, swbRefOrphanSQL, cfg.StuckThreshold.Seconds()),
		"stale":     swbIDs(t, pool, swbRefStaleSQL),
	}
	// The full scans find exactly the due tasks (and steps) the backlog was built with.
	firstSteps := func(class string) []uuid.UUID {
		return swbIDs(t, pool, `SELECT ws.workflow_step_uuid FROM tasker.workflow_steps ws
			JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
			WHERE ws.task_uuid = ANY($1) AND ns.name = 'linear_step_1'`, b.Tasks[class])
	}
	want := map[string][]uuid.UUID{
		"readiness": b.Tasks[bench.BacklogReady],
		"abandoned": firstSteps(bench.BacklogAbandoned),
		"stuck":     b.Tasks[bench.BacklogStuck],
		"orphan":    firstSteps(bench.BacklogOrphan),
		"stale":     append(slices.Clone(b.Tasks[bench.BacklogStale]), old...),
	}
	for name, ids := range want {
		if len(ids) != due && name != "stale" {
			t.Fatalf("%s: backlog has %d due, want %d", name, len(ids), due)
		}
		if !swbSame(ref[name], ids) {
			t.Fatalf("%s: the full scan finds %v, the backlog was built with %v due", name, ref[name], ids)
		}
	}

	before := swbHeads(t, pool)
	n, err := o.ReadinessSweep(ctx)
	swbExpect(t, "readiness", n, err, due)
	swbChanged(t, pool, before, want["readiness"])

	dry, err := o.DetectStaleTasks(ctx, orchestration.StalenessConfig{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var dryIDs []uuid.UUID
	for _, s := range dry {
		dryIDs = append(dryIDs, s.TaskUUID)
	}
	if !swbSame(dryIDs, want["stale"]) {
		t.Fatalf("staleness (dry run) found %v, want %v", dryIDs, want["stale"])
	}

	for _, s := range []struct {
		name string
		run  func(context.Context) (int, error)
		// tasks whose state the sweep changes
		tasks []uuid.UUID
	}{
		{"abandoned", o.RecoverAbandonedSteps, b.Tasks[bench.BacklogAbandoned]},
		{"stuck", o.RecoverStuckTasks, b.Tasks[bench.BacklogStuck]},
		{"orphan", o.RecoverOrphanResults, b.Tasks[bench.BacklogOrphan]},
		{"stale", func(ctx context.Context) (int, error) {
			found, err := o.DetectStaleTasks(ctx, cfg.Staleness)
			for _, f := range found {
				if f.Action != orchestration.StaleTransitioned {
					t.Errorf("stale task %s: %s", f.TaskUUID, f.Action)
				}
			}
			return len(found), err
		}, want["stale"]},
	} {
		before := swbHeads(t, pool)
		n, err := s.run(ctx)
		swbExpect(t, s.name, n, err, len(s.tasks))
		swbChanged(t, pool, before, s.tasks)
	}
	// Nothing else is due: a second pass changes nothing but the recovered steps, whose retry
	// may be due by now.
	before = swbHeads(t, pool)
	if _, err := o.RecoverySweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := o.ReadinessSweep(ctx); err != nil {
		t.Fatal(err)
	}
	swbChangedWithin(t, pool, before, b.Tasks[bench.BacklogAbandoned])

	// A task left in steps_in_process with a ready step by an orchestrator that crashed after
	// completing the step's parent: the readiness sweep, which examines about 256 of the 600
	// waiting and active tasks per pass, in turn, finds it within a few passes.
	crashed := b.Tasks[bench.BacklogEnqueued][0]
	step1 := orchStepsByName(t, pool, crashed)["linear_step_1"]
	step2 := orchStepsByName(t, pool, crashed)["linear_step_2"]
	swbCompleteStep(t, pool, crashed, step1)
	if !slices.Contains(swbIDs(t, pool, swbRefReadySQL, settle), crashed) {
		t.Fatal("the full scan does not find the crashed task")
	}
	for i := 0; ; i++ {
		if _, err := o.ReadinessSweep(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := state.CurrentStepState(ctx, pool, step2); err != nil || st == state.StepEnqueued {
			break
		}
		if i == 10 {
			t.Fatal("the readiness sweep did not find the crashed task in 10 passes")
		}
	}
}

// TestSweepsOnSmallBacklog checks that with few waiting and active tasks (at most 256) the
// readiness sweep examines all of them at every pass: the crashed task is found at once.
func TestSweepsOnSmallBacklog(t *testing.T) {
	ctx := context.Background()
	_, pool := testdb.New(t)
	o := swbOrchestrator(t, pool)
	b, err := bench.BuildBacklog(ctx, pool, o, bench.FindSourceDir(), bench.BacklogSpec{Active: 100, Due: 2, RunningPercent: 20})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := o.ReadinessSweep(ctx); err != nil || n != 2 {
		t.Fatalf("readiness sweep: %d, %v; want the 2 ready tasks", n, err)
	}
	crashed := b.Tasks[bench.BacklogEnqueued][0]
	steps := orchStepsByName(t, pool, crashed)
	swbCompleteStep(t, pool, crashed, steps["linear_step_1"])
	before := swbHeads(t, pool)
	if _, err := o.ReadinessSweep(ctx); err != nil {
		t.Fatal(err)
	}
	swbChanged(t, pool, before, []uuid.UUID{crashed})
	if st, err := state.CurrentStepState(ctx, pool, steps["linear_step_2"]); err != nil || st != state.StepEnqueued {
		t.Fatalf("step 2 of the crashed task is %s (%v), want enqueued", st, err)
	}
}

func swbOrchestrator(t *testing.T, pool *pgxpool.Pool) *orchestration.Orchestrator {
	t.Helper()
	cfg := orchestration.Config{}
	bench.BacklogConfig(&cfg)
	o, err := orchestration.New(cfg, pool, orchestration.WithLogger(orchLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// swbCompleteStep moves step 1 of a task whose worker has not claimed it yet to complete, as a
// worker and an orchestrator that crashed before advancing the task would leave it, and ages the
// task's last transition past the readiness sweep's settle time.
func swbCompleteStep(t *testing.T, pool *pgxpool.Pool, task, step uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	res, err := json.Marshal(protocol.Success(step, json.RawMessage(`{"result":36}`), 5, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []state.StepEvent{state.StepEventOf(state.StepEventStart),
		state.StepEventWithData(state.StepEventEnqueueForOrchestration, res),
		state.StepEventWithData(state.StepEventComplete, res)} {
		if _, err := state.TransitionStep(ctx, tx, step, ev, state.TransitionOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.task_transitions SET created_at = created_at - interval '1 minute'
		WHERE task_uuid = $1 AND most_recent`, task); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func swbIDs(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []uuid.UUID {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", orchFirstLine(sql), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// swbHeads maps every task to its current transition and those of its steps.
func swbHeads(t *testing.T, pool *pgxpool.Pool) map[uuid.UUID]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT t.task_uuid, tt.task_transition_uuid::text || ' ' ||
		       COALESCE((SELECT string_agg(st.workflow_step_transition_uuid::text, ' ' ORDER BY st.workflow_step_uuid)
		                   FROM tasker.workflow_steps ws
		                   JOIN tasker.workflow_step_transitions st ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
		                  WHERE ws.task_uuid = t.task_uuid), '')
		  FROM tasker.tasks t JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]string{}
	for rows.Next() {
		var id uuid.UUID
		var h string
		if err := rows.Scan(&id, &h); err != nil {
			t.Fatal(err)
		}
		out[id] = h
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// swbChangedWithin fails if a task outside allowed had a task or step transition since before.
func swbChangedWithin(t *testing.T, pool *pgxpool.Pool, before map[uuid.UUID]string, allowed []uuid.UUID) {
	t.Helper()
	for id, h := range swbHeads(t, pool) {
		if before[id] != h && !slices.Contains(allowed, id) {
			t.Fatalf("task %s changed", id)
		}
	}
}

// swbChanged fails unless exactly the tasks want had a task or step transition since before.
func swbChanged(t *testing.T, pool *pgxpool.Pool, before map[uuid.UUID]string, want []uuid.UUID) {
	t.Helper()
	var changed []uuid.UUID
	for id, h := range swbHeads(t, pool) {
		if before[id] != h {
			changed = append(changed, id)
		}
	}
	if !swbSame(changed, want) {
		t.Fatalf("tasks changed: %s; want %s", swbList(changed), swbList(want))
	}
}

func swbExpect(t *testing.T, name string, n int, err error, want int) {
	t.Helper()
	if err != nil || n != want {
		t.Fatalf("%s sweep acted on %d (%v), want %d", name, n, err, want)
	}
}

func swbSame(a, b []uuid.UUID) bool {
	set := func(ids []uuid.UUID) map[uuid.UUID]bool {
		m := map[uuid.UUID]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	return maps.Equal(set(a), set(b)) && len(set(a)) == len(a)
}

func swbList(ids []uuid.UUID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	sort.Strings(s)
	return fmt.Sprintf("%d [%s]", len(s), strings.Join(s, " "))
}
