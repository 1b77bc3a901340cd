package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/state"
)

// stClaim runs one claim statement outside a transaction (its implicit transaction) and
// reports whether it claimed, with the pre-claim attempts and the transition it wrote.
func stClaim(ctx context.Context, q state.BatchSender, step, task uuid.UUID) (claimed bool, before *int32, tr *state.StepTransition, err error) {
	cl, err := state.ClaimSteps(ctx, q, []state.StepRef{{StepUUID: step, TaskUUID: task}}, state.TransitionOptions{})
	if err != nil || cl.Steps[0] == nil {
		return false, nil, nil, err
	}
	if got := cl.Steps[0].Seq.WorkflowStep.WorkflowStepUUID; got != step {
		return false, nil, nil, fmt.Errorf("claimed step %s, asked for %s", got, step)
	}
	return true, cl.Steps[0].Seq.WorkflowStep.Attempts, cl.Transitions[0], nil
}

// A claim statement claims an enqueued step exactly as TransitionStep(Start, ClaimAttempt)
// does, hydrates it, and writes nothing for a step that is not enqueued or not the given task's.
func TestStateClaimQuery(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_claimq", []string{"a", "b"}, [][2]string{{"a", "b"}})
	initTransitions(t, pool, f)
	a, b := f.Step(t, "a"), f.Step(t, "b")

	// b is pending: nothing claimed, nothing written.
	before := stSnapshot(ctx, t, pool, f, b)
	if claimed, _, _, err := stClaim(ctx, pool, b, f.TaskUUID); err != nil || claimed {
		t.Fatalf("claim of a pending step: claimed=%v err=%v", claimed, err)
	}
	if after := stSnapshot(ctx, t, pool, f, b); after != before {
		t.Fatalf("pending step changed by a refused claim:\n%+v\n%+v", before, after)
	}

	stMoveStep(ctx, t, pool, a, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	// The wrong task: nothing.
	if claimed, _, _, err := stClaim(ctx, pool, a, uuid.New()); err != nil || claimed {
		t.Fatalf("claim under another task: claimed=%v err=%v", claimed, err)
	}
	claimed, pre, tr, err := stClaim(ctx, pool, a, f.TaskUUID)
	if err != nil || !claimed {
		t.Fatalf("claim of an enqueued step: claimed=%v err=%v", claimed, err)
	}
	if pre != nil || tr.Attempts != 1 || tr.SortKey != 3 {
		t.Errorf("claim returned attempts before %v, after %d, sort_key %d; want nil, 1, 3", pre, tr.Attempts, tr.SortKey)
	}
	rows := stCheckStepHistory(ctx, t, pool, a)
	if len(rows) != 3 || rows[2].UUID != tr.UUID || rows[2].From != state.StepEnqueued || rows[2].To != state.StepInProgress {
		t.Fatalf("history after claim: %+v", rows)
	}
	if m := stDecodeMeta(t, rows[2].Metadata); m["event"] != `{"type":"Start"}` {
		t.Errorf("claim metadata event %v", m["event"])
	}
	if fl := stReadStepFlags(ctx, t, pool, a); !fl.InProcess || fl.Attempts == nil || *fl.Attempts != 1 {
		t.Errorf("flags after claim: %+v", fl)
	}
	// A second claim finds the step in_progress.
	if claimed, _, _, err := stClaim(ctx, pool, a, f.TaskUUID); err != nil || claimed {
		t.Fatalf("second claim: claimed=%v err=%v", claimed, err)
	}
}

// 50 claimers race ClaimQuery on one enqueued step: exactly one claims it.
func TestStateClaimQueryConcurrent(t *testing.T) {
	const racers = 50
	url, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_claimq_race", []string{"only"}, nil)
	initTransitions(t, pool, f)
	step := f.Step(t, "only")
	stMoveStep(ctx, t, pool, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	rp := stRacePool(t, url, racers)
	var wins atomic.Int32
	errs := stRace(racers, func() error {
		claimed, _, _, err := stClaim(ctx, rp, step, f.TaskUUID)
		if claimed {
			wins.Add(1)
		}
		return err
	})
	for k, err := range errs {
		if err != nil {
			t.Errorf("racer %d: %v", k, err)
		}
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d claims succeeded, want exactly 1", n)
	}
	rows := stCheckStepHistory(ctx, t, pool, step)
	if len(rows) != 3 || rows[2].To != state.StepInProgress {
		t.Fatalf("history %+v, want pending, enqueued, in_progress", rows)
	}
	if fl := stReadStepFlags(ctx, t, pool, step); fl.Attempts == nil || *fl.Attempts != 1 {
		t.Errorf("attempts after the race: %v", fl.Attempts)
	}
}

// QueueStepTransition from the claim's head completes the step in one batch; from a head that
// is no longer the step's, the batch fails with ErrConcurrentTransition and everything it
// carried is rolled back.
func TestStateQueueStepTransitionFence(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_fence", []string{"a"}, nil)
	initTransitions(t, pool, f)
	a := f.Step(t, "a")
	stMoveStep(ctx, t, pool, a, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	claim := stMoveStep(ctx, t, pool, a, state.StepEventOf(state.StepEventStart), state.TransitionOptions{ClaimAttempt: true})

	// A stale head: the claim was superseded (recovered: in_progress → error-for-orchestration
	// by someone else). The batch also carries an unrelated write that must roll back.
	stale := claim.Head()
	stMoveStep(ctx, t, pool, a, stStepEventFor(state.StepEventEnqueueAsErrorForOrchestration, a, 1), state.TransitionOptions{})
	before := stSnapshot(ctx, t, pool, f, a)
	b := &pgx.Batch{}
	if _, err := state.QueueStepTransition(b, stale, stStepEventFor(state.StepEventEnqueueForOrchestration, a, 7), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Queue(`UPDATE tasker.tasks SET reason = 'must roll back' WHERE task_uuid = $1`, f.TaskUUID)
	err := pool.SendBatch(ctx, b).Close()
	if !errors.Is(err, state.ErrConcurrentTransition) {
		t.Fatalf("stale head: err = %v, want ErrConcurrentTransition", err)
	}
	if after := stSnapshot(ctx, t, pool, f, a); after != before {
		t.Fatalf("a fenced-off batch wrote:\n%+v\n%+v", before, after)
	}
	var reason *string
	if err := pool.QueryRow(ctx, `SELECT reason FROM tasker.tasks WHERE task_uuid = $1`, f.TaskUUID).Scan(&reason); err != nil || (reason != nil && *reason == "must roll back") {
		t.Fatalf("the batch's other write survived: %v %v", reason, err)
	}

	// The live head: one batch completes the step, inside a caller's transaction too.
	g := newTaskWithSteps(t, pool, "state_fence", []string{"b"}, nil)
	initTransitions(t, pool, g)
	bs := g.Step(t, "b")
	stMoveStep(ctx, t, pool, bs, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	live := stMoveStep(ctx, t, pool, bs, state.StepEventOf(state.StepEventStart), state.TransitionOptions{ClaimAttempt: true})
	var tr *state.StepTransition
	err = stInTx(ctx, pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		var err error
		if tr, err = state.QueueStepTransition(b, live.Head(), stStepEventFor(state.StepEventEnqueueForOrchestration, bs, 7), state.TransitionOptions{}); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := stCheckStepHistory(ctx, t, pool, bs)
	if len(rows) != 4 || rows[3].UUID != tr.UUID || rows[3].To != state.StepEnqueuedForOrchestration || tr.CreatedAt.IsZero() {
		t.Fatalf("history %+v (transition %+v)", rows, tr)
	}
	if fl := stReadStepFlags(ctx, t, pool, bs); fl.InProcess || fl.Results == nil || !stJSONEqual(*fl.Results, string(stStepResult(bs, true, 7))) {
		t.Errorf("flags after completion: %+v", fl)
	}

	// Transitions that read the parents' states are refused.
	if _, err := state.QueueStepTransition(&pgx.Batch{}, state.StepHead{StepUUID: bs, State: state.StepPending, SortKey: 1},
		state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{}); err == nil {
		t.Error("pending → enqueued queued without a dependency check")
	}
}

// QueueTaskTransitions writes a chain of hops as one retire and one insert: the history is what
// the same hops one by one would leave (contiguous keys, from = previous to, one most_recent),
// completion marks the task, and an illegal hop is refused before anything is queued.
func TestStateQueueTaskTransitions(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_hops", []string{"a"}, nil)
	initTransitions(t, pool, f)
	head := state.TaskHead{TaskUUID: f.TaskUUID, State: state.TaskPending, SortKey: 1}
	a := f.Step(t, "a")
	hops := []state.TaskHop{
		{Event: state.TaskEventOf(state.TaskEventStart)},
		{Event: state.ReadyStepsFound(1)},
		{Event: state.StepsEnqueued([]uuid.UUID{a})},
		{Event: state.TaskEventOf(state.TaskEventAllStepsCompleted)},
		{Event: state.TaskEventOf(state.TaskEventAllStepsSuccessful), Opts: state.TaskTransitionOptions{Metadata: map[string]any{"atomic_finalization": true}}},
	}
	if _, err := state.QueueTaskTransitions(&pgx.Batch{}, head, []state.TaskHop{{Event: state.TaskEventOf(state.TaskEventAllStepsSuccessful)}}); err == nil {
		t.Fatal("pending → AllStepsSuccessful was queued")
	}
	b := &pgx.Batch{}
	trs, err := state.QueueTaskTransitions(b, head, hops)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	rows := stCheckTaskHistory(ctx, t, pool, f.TaskUUID)
	want := []state.TaskState{state.TaskPending, state.TaskInitializing, state.TaskEnqueuingSteps, state.TaskStepsInProcess,
		state.TaskEvaluatingResults, state.TaskComplete}
	if len(rows) != len(want) {
		t.Fatalf("%d transitions, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		if r.To != want[i] {
			t.Errorf("transition %d to %s, want %s", i+1, r.To, want[i])
		}
	}
	if trs[4].UUID != rows[5].UUID || trs[4].CreatedAt.IsZero() {
		t.Errorf("returned transitions do not match the rows: %+v", trs[4])
	}
	if m := stDecodeMeta(t, rows[5].Metadata); m["atomic_finalization"] != true {
		t.Errorf("last hop metadata %v", m)
	}
	var complete bool
	if err := pool.QueryRow(ctx, `SELECT complete FROM tasker.tasks WHERE task_uuid = $1`, f.TaskUUID).Scan(&complete); err != nil || !complete {
		t.Errorf("tasks.complete = %v, %v", complete, err)
	}
}

// One ClaimQuery over several steps claims exactly the enqueued steps of their tasks and says
// which; a step named twice is refused before anything is sent.
func TestStateClaimQueryGroup(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_claimq_group", []string{"a", "b", "c", "d"}, nil)
	initTransitions(t, pool, f)
	a, b, c, d := f.Step(t, "a"), f.Step(t, "b"), f.Step(t, "c"), f.Step(t, "d")
	for _, s := range []uuid.UUID{a, c, d} {
		stMoveStep(ctx, t, pool, s, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	}
	refs := []state.StepRef{
		{StepUUID: a, TaskUUID: f.TaskUUID},
		{StepUUID: b, TaskUUID: f.TaskUUID},          // pending
		{StepUUID: c, TaskUUID: uuid.New()},          // another task's message
		{StepUUID: uuid.New(), TaskUUID: f.TaskUUID}, // no such step
		{StepUUID: d, TaskUUID: f.TaskUUID},
	}
	before := map[uuid.UUID]stDBSnapshot{b: stSnapshot(ctx, t, pool, f, b), c: stSnapshot(ctx, t, pool, f, c)}
	cl, err := state.ClaimSteps(ctx, pool, refs, state.TransitionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trs := cl.Transitions
	claimed := map[int]uuid.UUID{}
	for index, row := range cl.Steps {
		if row == nil {
			continue
		}
		id := row.Seq.WorkflowStep.WorkflowStepUUID
		if tr := trs[index]; tr.Attempts != 1 || tr.SortKey != 3 || tr.CreatedAt.IsZero() {
			t.Errorf("step %s: attempts %d, sort_key %d, created %v; want 1, 3, set", id, tr.Attempts, tr.SortKey, tr.CreatedAt)
		}
		if row.Seq.Task.NamespaceName != "state_claimq_group" || row.Seq.WorkflowStep.TaskUUID != f.TaskUUID || row.Current != state.StepEnqueued {
			t.Errorf("step %s hydrated as namespace %q, task %s, state %s", id, row.Seq.Task.NamespaceName, row.Seq.WorkflowStep.TaskUUID, row.Current)
		}
		claimed[index] = id
	}
	if len(claimed) != 2 || claimed[0] != a || claimed[4] != d {
		t.Fatalf("claimed %v, want index 0 = %s and 4 = %s", claimed, a, d)
	}
	for i, s := range map[int]uuid.UUID{0: a, 4: d} {
		hist := stCheckStepHistory(ctx, t, pool, s)
		if len(hist) != 3 || hist[2].UUID != trs[i].UUID || hist[2].To != state.StepInProgress {
			t.Errorf("history of claimed step %s: %+v", s, hist)
		}
		if fl := stReadStepFlags(ctx, t, pool, s); !fl.InProcess || fl.Attempts == nil || *fl.Attempts != 1 {
			t.Errorf("flags of claimed step %s: %+v", s, fl)
		}
	}
	for s, snap := range before {
		if after := stSnapshot(ctx, t, pool, f, s); after != snap {
			t.Errorf("unclaimed step %s changed:\n%+v\n%+v", s, snap, after)
		}
	}
	if _, err := state.QueueClaim(&pgx.Batch{}, []state.StepRef{{StepUUID: a, TaskUUID: f.TaskUUID}, {StepUUID: a, TaskUUID: f.TaskUUID}}, state.TransitionOptions{}); err == nil {
		t.Fatal("a step named twice was accepted")
	}
}

// Claimers race group claims over the same steps, each listing them in another order: every
// step is claimed exactly once and nobody deadlocks (rows are locked in uuid order).
func TestStateClaimQueryGroupConcurrent(t *testing.T) {
	const racers, steps = 20, 12
	url, pool := testdb.New(t)
	ctx := context.Background()
	names := make([]string, steps)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i)
	}
	f := newTaskWithSteps(t, pool, "state_claimq_group_race", names, nil)
	initTransitions(t, pool, f)
	refs := make([]state.StepRef, steps)
	for i, n := range names {
		refs[i] = state.StepRef{StepUUID: f.Step(t, n), TaskUUID: f.TaskUUID}
		stMoveStep(ctx, t, pool, refs[i].StepUUID, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	}
	rp := stRacePool(t, url, racers)
	var mu sync.Mutex
	wins := map[uuid.UUID]int{}
	var next atomic.Int32
	errs := stRace(racers, func() error {
		// Each racer lists the steps in another order (stride 7 is coprime with 12).
		k := int(next.Add(1))
		mine := make([]state.StepRef, steps)
		for i := range mine {
			mine[i] = refs[(i*7+k)%steps]
		}
		cl, err := state.ClaimSteps(ctx, rp, mine, state.TransitionOptions{})
		if err != nil {
			return err
		}
		for _, row := range cl.Steps {
			if row != nil {
				mu.Lock()
				wins[row.Seq.WorkflowStep.WorkflowStepUUID]++
				mu.Unlock()
			}
		}
		return nil
	})
	for k, err := range errs {
		if err != nil {
			t.Errorf("racer %d: %v", k, err)
		}
	}
	for _, r := range refs {
		if wins[r.StepUUID] != 1 {
			t.Errorf("step %s claimed %d times, want 1", r.StepUUID, wins[r.StepUUID])
		}
		if hist := stCheckStepHistory(ctx, t, pool, r.StepUUID); len(hist) != 3 || hist[2].To != state.StepInProgress {
			t.Errorf("history of %s: %+v", r.StepUUID, hist)
		}
	}
}
