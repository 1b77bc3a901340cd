package integration

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
)

// The orchestrator decides from its own summary of get_step_readiness_status; it must agree
// with get_task_execution_context for every combination of step states: steps a → b and c,
// with a and c in every state (b pending), and b in every state once a is complete.
func TestExecutionStatusMatchesSQL(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	drive := func(f taskFixture, name string, to state.StepState) {
		t.Helper()
		step := f.Step(t, name)
		for i, ev := range stStepPaths[to] {
			stMoveStep(ctx, t, pool, step, stStepEventFor(ev, step, i), state.TransitionOptions{})
		}
	}
	type combo struct{ a, b, c state.StepState }
	var combos []combo
	for a := range stStepPaths {
		for c := range stStepPaths {
			combos = append(combos, combo{a, state.StepPending, c})
		}
	}
	for b := range stStepPaths {
		combos = append(combos, combo{state.StepComplete, b, state.StepComplete})
	}
	seen := map[string]bool{}
	for _, cb := range combos {
		f := newTaskWithSteps(t, pool, "execstatus", []string{"a", "b", "c"}, [][2]string{{"a", "b"}})
		initTransitions(t, pool, f)
		drive(f, "a", cb.a)
		drive(f, "b", cb.b)
		drive(f, "c", cb.c)
		var want string
		var wantReady int64
		if err := pool.QueryRow(ctx, `SELECT execution_status, ready_steps FROM tasker.get_task_execution_context($1)`,
			f.TaskUUID).Scan(&want, &wantReady); err != nil {
			t.Fatal(err)
		}
		var got string
		var gotReady int
		err := stInTx(ctx, pool, func(tx pgx.Tx) error {
			var err error
			got, gotReady, err = orchestration.ExecutionStatusOf(ctx, tx, f.TaskUUID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got != want || int64(gotReady) != wantReady {
			t.Errorf("a=%s b=%s c=%s: orchestrator %s/%d ready, SQL %s/%d", cb.a, cb.b, cb.c, got, gotReady, want, wantReady)
		}
		seen[want] = true
	}
	for _, st := range []string{orchestration.ExecHasReadySteps, orchestration.ExecProcessing, orchestration.ExecBlockedByFailures,
		orchestration.ExecAllComplete, orchestration.ExecWaitingForDependencies} {
		if !seen[st] {
			t.Errorf("no combination produced %s (the table does not cover it)", st)
		}
	}
	t.Logf("%d combinations compared", len(combos))
}
