package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/state"
)

// stStepResult is a small StepExecutionResult-shaped payload, distinct per call.
func stStepResult(step uuid.UUID, success bool, n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"step_uuid":%q,"success":%t,"status":%q,"result":{"n":%d}}`,
		step, success, map[bool]string{true: "completed", false: "failed"}[success], n))
}

// stStepEventFor builds an event of type typ with a payload where the variant carries one.
func stStepEventFor(typ state.StepEventType, step uuid.UUID, n int) state.StepEvent {
	switch typ {
	case state.StepEventEnqueueForOrchestration, state.StepEventComplete, state.StepEventCompleteManually:
		return state.StepEventWithData(typ, stStepResult(step, true, n))
	case state.StepEventEnqueueAsErrorForOrchestration:
		return state.StepEventWithData(typ, stStepResult(step, false, n))
	case state.StepEventFail:
		return state.StepEventWithMessage(typ, fmt.Sprintf("Step failed: boom %d", n))
	case state.StepEventWaitForRetry:
		return state.StepEventWithMessage(typ, fmt.Sprintf("boom %d - retryable", n))
	}
	return state.StepEventOf(typ)
}

// stStepPaths gives, for every step state, events that lead there from pending.
var stStepPaths = map[state.StepState][]state.StepEventType{
	state.StepPending:                         nil,
	state.StepEnqueued:                        {state.StepEventEnqueue},
	state.StepInProgress:                      {state.StepEventEnqueue, state.StepEventStart},
	state.StepEnqueuedForOrchestration:        {state.StepEventEnqueue, state.StepEventStart, state.StepEventEnqueueForOrchestration},
	state.StepEnqueuedAsErrorForOrchestration: {state.StepEventEnqueue, state.StepEventStart, state.StepEventEnqueueAsErrorForOrchestration},
	state.StepWaitingForRetry:                 {state.StepEventEnqueue, state.StepEventStart, state.StepEventEnqueueAsErrorForOrchestration, state.StepEventWaitForRetry},
	state.StepComplete:                        {state.StepEventEnqueue, state.StepEventStart, state.StepEventEnqueueForOrchestration, state.StepEventComplete},
	state.StepError:                           {state.StepEventEnqueue, state.StepEventStart, state.StepEventEnqueueAsErrorForOrchestration, state.StepEventFail},
	state.StepCancelled:                       {state.StepEventCancel},
	state.StepResolvedManually:                {state.StepEventResolveManually},
}

// stTaskPaths gives, for every non-terminal task state, events that lead there from pending.
func stTaskPaths(step uuid.UUID) map[state.TaskState][]state.TaskEvent {
	start := state.TaskEventOf(state.TaskEventStart)
	ready := state.ReadyStepsFound(1)
	enq := state.StepsEnqueued([]uuid.UUID{step})
	done := state.StepCompleted(step)
	return map[state.TaskState][]state.TaskEvent{
		state.TaskPending:                nil,
		state.TaskInitializing:           {start},
		state.TaskEnqueuingSteps:         {start, ready},
		state.TaskStepsInProcess:         {start, ready, enq},
		state.TaskEvaluatingResults:      {start, ready, enq, done},
		state.TaskWaitingForDependencies: {start, state.TaskEventOf(state.TaskEventNoDependenciesReady)},
		state.TaskWaitingForRetry:        {start, ready, enq, {Type: state.TaskEventStepFailed, StepUUID: step}},
		state.TaskBlockedByFailures:      {start, ready, enq, done, state.TaskEventWithMessage(state.TaskEventPermanentFailure, "Steps in error state")},
	}
}

func stTaskEventFor(typ state.TaskEventType, step uuid.UUID) state.TaskEvent {
	switch typ {
	case state.TaskEventReadyStepsFound:
		return state.ReadyStepsFound(2)
	case state.TaskEventStepsEnqueued:
		return state.StepsEnqueued([]uuid.UUID{step})
	case state.TaskEventStepCompleted, state.TaskEventStepFailed:
		return state.TaskEvent{Type: typ, StepUUID: step}
	case state.TaskEventEnqueueFailed, state.TaskEventPermanentFailure, state.TaskEventFail:
		return state.TaskEventWithMessage(typ, `it "failed"`)
	}
	return state.TaskEventOf(typ)
}

// stInTx runs fn in a transaction, committing when it returns nil.
func stInTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

func stMoveStep(ctx context.Context, t *testing.T, pool *pgxpool.Pool, step uuid.UUID, ev state.StepEvent, opts state.TransitionOptions) *state.StepTransition {
	t.Helper()
	var tr *state.StepTransition
	err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		var err error
		tr, err = state.TransitionStep(ctx, tx, step, ev, opts)
		return err
	})
	if err != nil {
		t.Fatalf("TransitionStep(%s): %v", ev.Type, err)
	}
	return tr
}

func stMoveTask(ctx context.Context, t *testing.T, pool *pgxpool.Pool, task uuid.UUID, ev state.TaskEvent, opts state.TaskTransitionOptions) *state.TaskTransition {
	t.Helper()
	var tr *state.TaskTransition
	err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		var err error
		tr, err = state.TransitionTask(ctx, tx, task, ev, opts)
		return err
	})
	if err != nil {
		t.Fatalf("TransitionTask(%s): %v", ev, err)
	}
	return tr
}

type stStepFlags struct {
	InProcess, Processed, HasProcessedAt bool
	Attempts                             *int32
	Results                              *string
}

func stReadStepFlags(ctx context.Context, t *testing.T, q state.Querier, step uuid.UUID) stStepFlags {
	t.Helper()
	var f stStepFlags
	if err := q.QueryRow(ctx, `SELECT in_process, processed, processed_at IS NOT NULL, attempts, results::text
		FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, step).
		Scan(&f.InProcess, &f.Processed, &f.HasProcessedAt, &f.Attempts, &f.Results); err != nil {
		t.Fatalf("read workflow_steps: %v", err)
	}
	return f
}

// stCheckStepHistory asserts the transition-table invariants of one step and returns its rows.
func stCheckStepHistory(ctx context.Context, t *testing.T, q state.Lister, step uuid.UUID) []state.StepTransition {
	t.Helper()
	rows, err := state.StepTransitions(ctx, q, step)
	if err != nil {
		t.Fatal(err)
	}
	mostRecent := 0
	for i, r := range rows {
		if r.SortKey != i+1 {
			t.Errorf("row %d has sort_key %d (keys not contiguous from 1)", i, r.SortKey)
		}
		if r.MostRecent {
			mostRecent++
			if i != len(rows)-1 {
				t.Errorf("most_recent row is %d of %d, not the last", i+1, len(rows))
			}
		}
		if i > 0 && r.From != rows[i-1].To {
			t.Errorf("row %d from_state %q, previous to_state %q", i+1, r.From, rows[i-1].To)
		}
	}
	if len(rows) > 0 && mostRecent != 1 {
		t.Errorf("%d most_recent rows, want 1", mostRecent)
	}
	return rows
}

func stCheckTaskHistory(ctx context.Context, t *testing.T, q state.Lister, task uuid.UUID) []state.TaskTransition {
	t.Helper()
	rows, err := state.TaskTransitions(ctx, q, task)
	if err != nil {
		t.Fatal(err)
	}
	mostRecent := 0
	for i, r := range rows {
		if r.SortKey != i+1 {
			t.Errorf("row %d has sort_key %d (keys not contiguous from 1)", i, r.SortKey)
		}
		if r.MostRecent {
			mostRecent++
			if i != len(rows)-1 {
				t.Errorf("most_recent row is %d of %d, not the last", i+1, len(rows))
			}
		}
		if i > 0 && r.From != rows[i-1].To {
			t.Errorf("row %d from_state %q, previous to_state %q", i+1, r.From, rows[i-1].To)
		}
	}
	if len(rows) > 0 && mostRecent != 1 {
		t.Errorf("%d most_recent rows, want 1", mostRecent)
	}
	return rows
}

func stDecodeMeta(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("metadata %s: %v", raw, err)
	}
	return m
}

func stCheckTimestamp(t *testing.T, m map[string]any) {
	t.Helper()
	ts, _ := m["timestamp"].(string)
	parsed, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || !strings.HasSuffix(ts, "+00:00") {
		t.Errorf("timestamp %q: want RFC 3339 with +00:00 (%v)", ts, err)
	} else if d := time.Since(parsed); d < -time.Minute || d > 5*time.Minute {
		t.Errorf("timestamp %q is not recent", ts)
	}
}

// Every legal step transition, applied from a state reached by legal transitions, is persisted
// with the right row, metadata and workflow_steps flags.
func TestStateStepEveryLegalTransition(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	worker := uuid.MustParse("01960000-0000-7000-8000-00000000beef")
	for i, rule := range state.StepTransitionTable() {
		t.Run(fmt.Sprintf("%s--%s", rule.From, rule.Event), func(t *testing.T) {
			f := newTaskWithSteps(t, pool, "state_legal", []string{"only"}, nil)
			if i%2 == 0 {
				initTransitions(t, pool, f) // half the cases start from an explicit pending row
			}
			step := f.Step(t, "only")
			var lastData *string
			workerOpts := state.TransitionOptions{WorkerUUID: worker, CorrelationID: f.CorrelationID}
			for j, typ := range stStepPaths[rule.From] {
				ev := stStepEventFor(typ, step, 100+j)
				opts := state.TransitionOptions{}
				if typ == state.StepEventEnqueueForOrchestration || typ == state.StepEventEnqueueAsErrorForOrchestration {
					opts = workerOpts
				}
				stMoveStep(ctx, t, pool, step, ev, opts)
				if r := ev.Results(); r != nil {
					s := string(r)
					lastData = &s
				}
			}
			if _, err := pool.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = 5 WHERE workflow_step_uuid = $1`, step); err != nil {
				t.Fatal(err)
			}
			before := stReadStepFlags(ctx, t, pool, step)
			nBefore := len(stCheckStepHistory(ctx, t, pool, step))

			ev := stStepEventFor(rule.Event, step, i)
			tr := stMoveStep(ctx, t, pool, step, ev, workerOpts)
			if r := ev.Results(); r != nil {
				s := string(r)
				lastData = &s
			}

			if tr.From != rule.From || tr.To != rule.To || !tr.MostRecent || tr.StepUUID != step {
				t.Fatalf("returned transition %+v, want %s→%s", tr, rule.From, rule.To)
			}
			cur, err := state.CurrentStepState(ctx, pool, step)
			if err != nil || cur != rule.To {
				t.Fatalf("CurrentStepState = %s, %v; want %s", cur, err, rule.To)
			}
			rows := stCheckStepHistory(ctx, t, pool, step)
			if len(rows) != nBefore+1 {
				t.Fatalf("%d transition rows, want %d", len(rows), nBefore+1)
			}
			last := rows[len(rows)-1]
			if last.UUID != tr.UUID || last.SortKey != tr.SortKey || last.From != rule.From || last.To != rule.To {
				t.Fatalf("stored row %+v differs from returned %+v", last, tr)
			}
			if tr.UUID.Version() != 7 {
				t.Errorf("transition uuid %s is not v7", tr.UUID)
			}

			// Metadata: {"event": <StepEvent JSON as a string>, "timestamp", "worker_uuid", "correlation_id"}.
			m := stDecodeMeta(t, last.Metadata)
			evStr, ok := m["event"].(string)
			if !ok {
				t.Fatalf("metadata event is %T, want a JSON string", m["event"])
			}
			wantJSON, _ := json.Marshal(ev)
			var gotEv, wantEv any
			_ = json.Unmarshal([]byte(evStr), &gotEv)
			_ = json.Unmarshal(wantJSON, &wantEv)
			if fmt.Sprint(gotEv) != fmt.Sprint(wantEv) {
				t.Errorf("metadata event %s, want %s", evStr, wantJSON)
			}
			var decoded state.StepEvent
			if err := json.Unmarshal([]byte(evStr), &decoded); err != nil || decoded.Type != rule.Event {
				t.Errorf("metadata event does not decode as %s: %v", rule.Event, err)
			}
			stCheckTimestamp(t, m)
			if m["worker_uuid"] != worker.String() || m["correlation_id"] != f.CorrelationID.String() || len(m) != 4 {
				t.Errorf("metadata %v: want exactly event, timestamp, worker_uuid, correlation_id", m)
			}

			// Flags.
			after := stReadStepFlags(ctx, t, pool, step)
			switch {
			case lastData == nil && after.Results != nil:
				t.Errorf("results = %s, want NULL", *after.Results)
			case lastData != nil && (after.Results == nil || !stJSONEqual(*after.Results, *lastData)):
				t.Errorf("results = %v, want %s", after.Results, *lastData)
			}
			switch rule.To {
			case state.StepInProgress:
				if !after.InProcess || after.Processed {
					t.Errorf("in_progress flags %+v", after)
				}
			case state.StepEnqueuedForOrchestration, state.StepEnqueuedAsErrorForOrchestration,
				state.StepError, state.StepWaitingForRetry:
				if after.InProcess || after.Processed {
					t.Errorf("%s flags %+v", rule.To, after)
				}
			case state.StepComplete, state.StepCancelled, state.StepResolvedManually:
				if after.InProcess || !after.Processed || !after.HasProcessedAt {
					t.Errorf("%s flags %+v", rule.To, after)
				}
			case state.StepPending, state.StepEnqueued:
				if after.InProcess != before.InProcess || after.Processed != before.Processed {
					t.Errorf("%s changed flags %+v → %+v", rule.To, before, after)
				}
			}
			wantAttempts := int32(5)
			if rule.Event == state.StepEventResetForRetry {
				wantAttempts = 0
			}
			if after.Attempts == nil || *after.Attempts != wantAttempts {
				t.Errorf("attempts = %v, want %d", after.Attempts, wantAttempts)
			}
		})
	}
}

func stJSONEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

type stDBSnapshot struct {
	stepTransitions, taskTransitions, audits int
	stepRow, taskRow                         string
}

func stSnapshot(ctx context.Context, t *testing.T, q state.Querier, f taskFixture, step uuid.UUID) stDBSnapshot {
	t.Helper()
	var s stDBSnapshot
	if err := q.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1),
		       (SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $2),
		       (SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = $1),
		       (SELECT row_to_json(ws)::text FROM tasker.workflow_steps ws WHERE workflow_step_uuid = $1),
		       (SELECT row_to_json(tk)::text FROM tasker.tasks tk WHERE task_uuid = $2)`,
		step, f.TaskUUID).Scan(&s.stepTransitions, &s.taskTransitions, &s.audits, &s.stepRow, &s.taskRow); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// Illegal step transitions are refused with *InvalidTransitionError before anything is written:
// inside the same transaction nothing changed and the transaction is still usable.
func TestStateStepIllegalRejected(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	cases := []struct {
		from   state.StepState
		ev     state.StepEventType
		expect []state.StepState
	}{
		{state.StepEnqueued, state.StepEventEnqueue, nil},
		{state.StepInProgress, state.StepEventStart, nil},
		{state.StepComplete, state.StepEventStart, nil},
		{state.StepComplete, state.StepEventCancel, nil},
		{state.StepCancelled, state.StepEventRetry, nil},
		{state.StepPending, state.StepEventEnqueueForOrchestration, nil},
		{state.StepEnqueued, state.StepEventComplete, nil},
		{state.StepError, state.StepEventStart, nil},
		{state.StepWaitingForRetry, state.StepEventEnqueue, nil},
		{state.StepEnqueuedForOrchestration, state.StepEventWaitForRetry, nil},
		{state.StepResolvedManually, state.StepEventResetForRetry, nil},
		// Allowed by the table but not from the state the caller expects.
		{state.StepPending, state.StepEventStart, []state.StepState{state.StepEnqueued}},
		{state.StepInProgress, state.StepEventCancel, []state.StepState{state.StepPending, state.StepEnqueued}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s--%s", c.from, c.ev), func(t *testing.T) {
			f := newTaskWithSteps(t, pool, "state_illegal", []string{"only"}, nil)
			step := f.Step(t, "only")
			for j, typ := range stStepPaths[c.from] {
				stMoveStep(ctx, t, pool, step, stStepEventFor(typ, step, j), state.TransitionOptions{})
			}
			before := stSnapshot(ctx, t, pool, f, step)

			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			_, err = state.TransitionStep(ctx, tx, step, stStepEventFor(c.ev, step, 1), state.TransitionOptions{ExpectFrom: c.expect})
			var ite *state.InvalidTransitionError
			if !errors.As(err, &ite) {
				t.Fatalf("err = %v, want *InvalidTransitionError", err)
			}
			if ite.Entity != state.EntityStep || ite.ID != step || ite.From != string(c.from) || ite.Event != string(c.ev) ||
				len(ite.Expected) != len(c.expect) {
				t.Errorf("error fields %+v", ite)
			}
			if !state.IsRejected(err) {
				t.Error("IsRejected = false")
			}
			// Same transaction: still usable, and nothing was written.
			if within := stSnapshot(ctx, t, tx, f, step); within != before {
				t.Errorf("inside the transaction: %+v, before %+v", within, before)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if after := stSnapshot(ctx, t, pool, f, step); after != before {
				t.Errorf("after rollback: %+v, before %+v", after, before)
			}
			if cur, _ := state.CurrentStepState(ctx, pool, step); cur != c.from {
				t.Errorf("state moved to %s", cur)
			}
		})
	}
}

// pending→enqueued (and legacy pending→in_progress) wait for every parent to be complete or
// resolved_manually; a refusal writes nothing.
func TestStateStepDependencyGuard(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_guard", []string{"a", "b", "c"}, [][2]string{{"a", "c"}, {"b", "c"}})
	a, b, c := f.Step(t, "a"), f.Step(t, "b"), f.Step(t, "c")

	refused := func(ev state.StepEventType) {
		t.Helper()
		before := stSnapshot(ctx, t, pool, f, c)
		err := stInTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := state.TransitionStep(ctx, tx, c, state.StepEventOf(ev), state.TransitionOptions{})
			return err
		})
		var ge *state.GuardError
		if !errors.As(err, &ge) || ge.ID != c || !state.IsRejected(err) {
			t.Fatalf("%s on c: err = %v, want *GuardError", ev, err)
		}
		if after := stSnapshot(ctx, t, pool, f, c); after != before {
			t.Fatalf("guard refusal wrote something: %+v → %+v", before, after)
		}
	}
	refused(state.StepEventEnqueue)
	refused(state.StepEventStart)

	for _, typ := range stStepPaths[state.StepComplete] {
		stMoveStep(ctx, t, pool, a, stStepEventFor(typ, a, 1), state.TransitionOptions{})
	}
	refused(state.StepEventEnqueue) // b still pending
	stMoveStep(ctx, t, pool, b, state.StepEventOf(state.StepEventResolveManually), state.TransitionOptions{})
	stMoveStep(ctx, t, pool, c, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	if cur, _ := state.CurrentStepState(ctx, pool, c); cur != state.StepEnqueued {
		t.Fatalf("c is %s, want enqueued", cur)
	}
	// Enqueued→in_progress is not guarded by dependencies.
	stMoveStep(ctx, t, pool, c, state.StepEventOf(state.StepEventStart), state.TransitionOptions{})
}

func TestStateNotFound(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	missing := newV7(t)
	err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := state.TransitionStep(ctx, tx, missing, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
		return err
	})
	if !errors.Is(err, state.ErrStepNotFound) || state.IsRejected(err) {
		t.Errorf("TransitionStep on a missing step: %v", err)
	}
	err = stInTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := state.TransitionTask(ctx, tx, missing, state.TaskEventOf(state.TaskEventStart), state.TaskTransitionOptions{})
		return err
	})
	if !errors.Is(err, state.ErrTaskNotFound) {
		t.Errorf("TransitionTask on a missing task: %v", err)
	}
	if _, err := state.CurrentStepState(ctx, pool, missing); !errors.Is(err, state.ErrStepNotFound) {
		t.Errorf("CurrentStepState: %v", err)
	}
	if _, err := state.CurrentTaskState(ctx, pool, missing); !errors.Is(err, state.ErrTaskNotFound) {
		t.Errorf("CurrentTaskState: %v", err)
	}
	f := newTaskWithSteps(t, pool, "state_missing", []string{"only"}, nil)
	if s, err := state.CurrentStepState(ctx, pool, f.Step(t, "only")); err != nil || s != state.StepPending {
		t.Errorf("step without transitions: %s, %v; want pending", s, err)
	}
	if s, err := state.CurrentTaskState(ctx, pool, f.TaskUUID); err != nil || s != state.TaskPending {
		t.Errorf("task without transitions: %s, %v; want pending", s, err)
	}
}

// The worker's claim and completion write the rows worker-protocol.md §3.4 and §7.2 describe, and
// the audit trigger sees worker_uuid and correlation_id.
func TestStateClaimAndCompletionRows(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_claim", []string{"only"}, nil)
	initTransitions(t, pool, f)
	step := f.Step(t, "only")
	worker := newV7(t)

	stMoveStep(ctx, t, pool, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	claim := stMoveStep(ctx, t, pool, step, state.StepEventOf(state.StepEventStart),
		state.TransitionOptions{ExpectFrom: []state.StepState{state.StepEnqueued, state.StepPending}})
	m := stDecodeMeta(t, claim.Metadata)
	if m["event"] != `{"type":"Start"}` || len(m) != 2 {
		t.Errorf("claim metadata %v, want exactly event {\"type\":\"Start\"} and timestamp", m)
	}
	stCheckTimestamp(t, m)
	if claim.From != state.StepEnqueued || claim.SortKey != 3 {
		t.Errorf("claim row %+v", claim)
	}

	res := stStepResult(step, true, 42)
	done := stMoveStep(ctx, t, pool, step, state.StepEventWithData(state.StepEventEnqueueForOrchestration, res),
		state.TransitionOptions{WorkerUUID: worker, CorrelationID: f.CorrelationID})
	m = stDecodeMeta(t, done.Metadata)
	var ev state.StepEvent
	if err := json.Unmarshal([]byte(m["event"].(string)), &ev); err != nil || ev.Type != state.StepEventEnqueueForOrchestration ||
		!stJSONEqual(string(ev.Results()), string(res)) {
		t.Errorf("completion event %v (%v)", m["event"], err)
	}
	var (
		auditWorker, auditCorr uuid.NullUUID
		success                bool
	)
	if err := pool.QueryRow(ctx, `SELECT worker_uuid, correlation_id, success FROM tasker.workflow_step_result_audit
		WHERE workflow_step_transition_uuid = $1`, done.UUID).Scan(&auditWorker, &auditCorr, &success); err != nil {
		t.Fatalf("audit row: %v", err)
	}
	if auditWorker.UUID != worker || auditCorr.UUID != f.CorrelationID || !success {
		t.Errorf("audit row worker=%v corr=%v success=%v", auditWorker, auditCorr, success)
	}
}

// The initial-row helpers write sort_key 1 with from_state NULL, once.
func TestStateInitRows(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_init", []string{"only"}, nil)
	step := f.Step(t, "only")
	processor := newV7(t)
	err := stInTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := state.InitTaskState(ctx, tx, f.TaskUUID, processor, nil); err != nil {
			return err
		}
		_, err := state.InitStepState(ctx, tx, step, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := stCheckStepHistory(ctx, t, pool, step)
	tasks := stCheckTaskHistory(ctx, t, pool, f.TaskUUID)
	if len(steps) != 1 || steps[0].From != "" || steps[0].To != state.StepPending || steps[0].SortKey != 1 {
		t.Fatalf("step rows %+v", steps)
	}
	if len(tasks) != 1 || tasks[0].From != "" || tasks[0].To != state.TaskPending || tasks[0].ProcessorUUID != processor {
		t.Fatalf("task rows %+v", tasks)
	}
	if m := stDecodeMeta(t, steps[0].Metadata); m["initial_state"] != "pending" || m["from_service"] != "task_initializer" {
		t.Errorf("initial metadata %v", m)
	}
	err = stInTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := state.InitStepState(ctx, tx, step, nil)
		return err
	})
	var ite *state.InvalidTransitionError
	if !errors.As(err, &ite) {
		t.Errorf("second InitStepState: %v", err)
	}
	// The next transition continues at sort_key 2.
	if tr := stMoveStep(ctx, t, pool, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{}); tr.SortKey != 2 || tr.From != state.StepPending {
		t.Errorf("after init: %+v", tr)
	}
}

// stRacePool opens a pool large enough for every racer to hold its own connection.
func stRacePool(t *testing.T, url string, n int) *pgxpool.Pool {
	t.Helper()
	cfg, err := db.Config(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = int32(n)
	pool, err := db.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// stRace runs fn in n goroutines released together and returns their errors.
func stRace(n int, fn func() error) []error {
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			errs[i] = fn()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// 50 workers claim one enqueued step at once: one wins, 49 get *InvalidTransitionError from
// in_progress, and the history stays a clean chain.
func TestStateStepConcurrentClaim(t *testing.T) {
	const racers = 50
	url, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_race", []string{"only"}, nil)
	initTransitions(t, pool, f)
	step := f.Step(t, "only")
	stMoveStep(ctx, t, pool, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
	rp := stRacePool(t, url, racers)

	errs := stRace(racers, func() error {
		return stInTx(ctx, rp, func(tx pgx.Tx) error {
			_, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventStart), state.TransitionOptions{})
			return err
		})
	})
	wins := 0
	for _, err := range errs {
		var ite *state.InvalidTransitionError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ite) && ite.From == string(state.StepInProgress):
		default:
			t.Errorf("racer error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners, want exactly 1", wins)
	}
	rows := stCheckStepHistory(ctx, t, pool, step)
	if len(rows) != 3 || rows[2].To != state.StepInProgress {
		t.Fatalf("history %+v, want pending, enqueued, in_progress", rows)
	}
	var mostRecent int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.workflow_step_transitions
		WHERE workflow_step_uuid = $1 AND most_recent`, step).Scan(&mostRecent); err != nil || mostRecent != 1 {
		t.Fatalf("most_recent rows = %d, %v", mostRecent, err)
	}
	if fl := stReadStepFlags(ctx, t, pool, step); !fl.InProcess {
		t.Errorf("in_process = false after the claim")
	}
}

// 50 orchestrators race the same task transition: one wins.
func TestStateTaskConcurrentTransition(t *testing.T) {
	const racers = 50
	url, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_race_task", []string{"only"}, nil)
	initTransitions(t, pool, f)
	rp := stRacePool(t, url, racers)

	errs := stRace(racers, func() error {
		return stInTx(ctx, rp, func(tx pgx.Tx) error {
			_, err := state.TransitionTask(ctx, tx, f.TaskUUID, state.TaskEventOf(state.TaskEventStart),
				state.TaskTransitionOptions{ProcessorUUID: uuid.New()})
			return err
		})
	})
	wins := 0
	for _, err := range errs {
		var ite *state.InvalidTransitionError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ite) && ite.From == string(state.TaskInitializing):
		default:
			t.Errorf("racer error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners, want exactly 1", wins)
	}
	rows := stCheckTaskHistory(ctx, t, pool, f.TaskUUID)
	if len(rows) != 2 || rows[1].To != state.TaskInitializing {
		t.Fatalf("history %+v, want pending, initializing", rows)
	}
	var mostRecent int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $1 AND most_recent`,
		f.TaskUUID).Scan(&mostRecent); err != nil || mostRecent != 1 {
		t.Fatalf("most_recent rows = %d, %v", mostRecent, err)
	}
}

// A writer that does not lock the step row (as tasker-core's) inserts a most_recent row while our
// transition waits: ours fails with ErrConcurrentTransition, not a raw unique violation.
func TestStateStepUnlockedWriterConflict(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_unlocked", []string{"only"}, nil)
	initTransitions(t, pool, f)
	step := f.Step(t, "only")

	foreign, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Rollback(ctx)
	// tasker-core's WorkflowStepTransition::create, without a row lock.
	if _, err := foreign.Exec(ctx, `UPDATE tasker.workflow_step_transitions SET most_recent = false, updated_at = NOW()
		WHERE workflow_step_uuid = $1 AND most_recent`, step); err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Exec(ctx, `INSERT INTO tasker.workflow_step_transitions
		(workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, 'enqueued', 'pending', '{"event":"{\"type\":\"Enqueue\"}"}', 2, true, NOW(), NOW())`, newV7(t), step); err != nil {
		t.Fatal(err)
	}

	result := make(chan error, 1)
	go func() {
		result <- stInTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{})
			return err
		})
	}()
	// Wait until our transition is blocked on the foreign transaction's row lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("our transition never blocked on the foreign writer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := foreign.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-result
	if !errors.Is(err, state.ErrConcurrentTransition) || !state.IsRejected(err) {
		t.Fatalf("err = %v, want ErrConcurrentTransition", err)
	}
	rows := stCheckStepHistory(ctx, t, pool, step)
	if len(rows) != 2 || rows[1].To != state.StepEnqueued {
		t.Fatalf("history %+v", rows)
	}
}

// Every legal task transition is persisted with the Rust Debug event string, processor_uuid and,
// on complete, tasks.complete/completed_at.
func TestStateTaskEveryLegalTransition(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	processor := uuid.MustParse("01960000-0000-7000-8000-0000000000cc")
	for i, rule := range state.TaskTransitionTable() {
		t.Run(fmt.Sprintf("%s--%s", rule.From, rule.Event), func(t *testing.T) {
			f := newTaskWithSteps(t, pool, "state_task_legal", []string{"only"}, nil)
			if i%2 == 0 {
				initTransitions(t, pool, f)
			}
			step := f.Step(t, "only")
			path, ok := stTaskPaths(step)[rule.From]
			if !ok {
				t.Fatalf("no path to %s", rule.From)
			}
			for _, ev := range path {
				stMoveTask(ctx, t, pool, f.TaskUUID, ev, state.TaskTransitionOptions{})
			}
			nBefore := len(stCheckTaskHistory(ctx, t, pool, f.TaskUUID))
			ev := stTaskEventFor(rule.Event, step)
			tr := stMoveTask(ctx, t, pool, f.TaskUUID, ev, state.TaskTransitionOptions{
				ProcessorUUID: processor, Metadata: map[string]any{"atomic_finalization": true}})
			if tr.From != rule.From || tr.To != rule.To {
				t.Fatalf("returned %+v", tr)
			}
			cur, err := state.CurrentTaskState(ctx, pool, f.TaskUUID)
			if err != nil || cur != rule.To {
				t.Fatalf("CurrentTaskState = %s, %v; want %s", cur, err, rule.To)
			}
			rows := stCheckTaskHistory(ctx, t, pool, f.TaskUUID)
			if len(rows) != nBefore+1 {
				t.Fatalf("%d rows, want %d", len(rows), nBefore+1)
			}
			last := rows[len(rows)-1]
			if last.UUID != tr.UUID || last.ProcessorUUID != processor || last.To != rule.To {
				t.Fatalf("stored %+v", last)
			}
			m := stDecodeMeta(t, last.Metadata)
			if m["event"] != ev.String() || m["atomic_finalization"] != true {
				t.Errorf("metadata %v, want event %q", m, ev.String())
			}
			stCheckTimestamp(t, m)
			var (
				complete     bool
				hasCompleted bool
				transMeta    string
			)
			if err := pool.QueryRow(ctx, `SELECT complete, completed_at IS NOT NULL FROM tasker.tasks WHERE task_uuid = $1`,
				f.TaskUUID).Scan(&complete, &hasCompleted); err != nil {
				t.Fatal(err)
			}
			if want := rule.To == state.TaskComplete; complete != want || hasCompleted != want {
				t.Errorf("tasks.complete=%v completed_at set=%v, want %v", complete, hasCompleted, want)
			}
			if err := pool.QueryRow(ctx, `SELECT transition_metadata::text FROM tasker.task_transitions
				WHERE task_transition_uuid = $1`, tr.UUID).Scan(&transMeta); err != nil || transMeta != "{}" {
				t.Errorf("transition_metadata = %q, %v; want the '{}' default", transMeta, err)
			}
		})
	}
}

func TestStateTaskIllegalRejected(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	cases := []struct {
		path   []state.TaskEventType // from pending
		ev     state.TaskEventType
		from   state.TaskState
		expect []state.TaskState
	}{
		{nil, state.TaskEventReadyStepsFound, state.TaskPending, nil},
		{[]state.TaskEventType{state.TaskEventStart}, state.TaskEventStart, state.TaskInitializing, nil},
		{[]state.TaskEventType{state.TaskEventStart, state.TaskEventNoStepsFound}, state.TaskEventCancel, state.TaskComplete, nil},
		{[]state.TaskEventType{state.TaskEventStart, state.TaskEventNoStepsFound}, state.TaskEventResolveManually, state.TaskComplete, nil},
		{[]state.TaskEventType{state.TaskEventCancel}, state.TaskEventStart, state.TaskCancelled, nil},
		{[]state.TaskEventType{state.TaskEventStart, state.TaskEventReadyStepsFound, state.TaskEventEnqueueFailed}, state.TaskEventReset, state.TaskError, nil},
		{[]state.TaskEventType{state.TaskEventStart}, state.TaskEventTimeout, state.TaskInitializing, nil},
		{nil, state.TaskEventStart, state.TaskPending, []state.TaskState{state.TaskWaitingForDependencies}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s--%s", c.from, c.ev), func(t *testing.T) {
			f := newTaskWithSteps(t, pool, "state_task_illegal", []string{"only"}, nil)
			step := f.Step(t, "only")
			for _, typ := range c.path {
				stMoveTask(ctx, t, pool, f.TaskUUID, stTaskEventFor(typ, step), state.TaskTransitionOptions{})
			}
			before := stSnapshot(ctx, t, pool, f, step)
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			_, err = state.TransitionTask(ctx, tx, f.TaskUUID, stTaskEventFor(c.ev, step), state.TaskTransitionOptions{ExpectFrom: c.expect})
			var ite *state.InvalidTransitionError
			if !errors.As(err, &ite) || ite.Entity != state.EntityTask || ite.From != string(c.from) || ite.ID != f.TaskUUID {
				t.Fatalf("err = %v, want *InvalidTransitionError from %s", err, c.from)
			}
			if within := stSnapshot(ctx, t, tx, f, step); within != before {
				t.Errorf("inside the transaction: %+v, before %+v", within, before)
			}
			_ = tx.Rollback(ctx)
			if after := stSnapshot(ctx, t, pool, f, step); after != before {
				t.Errorf("after rollback: %+v, before %+v", after, before)
			}
		})
	}
}

// A transition and other writes share the caller's transaction: rolling back undoes both.
func TestStateTransitionJoinsCallerTransaction(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_tx", []string{"only"}, nil)
	step := f.Step(t, "only")
	before := stSnapshot(ctx, t, pool, f, step)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionStep(ctx, tx, step, state.StepEventOf(state.StepEventStart), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.workflow_steps SET attempts = COALESCE(attempts, 0) + 1 WHERE workflow_step_uuid = $1`, step); err != nil {
		t.Fatal(err)
	}
	if s, _ := state.CurrentStepState(ctx, tx, step); s != state.StepInProgress {
		t.Fatalf("inside the transaction: %s", s)
	}
	if s, _ := state.CurrentStepState(ctx, pool, step); s != state.StepPending {
		t.Fatalf("outside before commit: %s, want pending", s)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if after := stSnapshot(ctx, t, pool, f, step); after != before {
		t.Fatalf("rollback left %+v, before %+v", after, before)
	}
}

// The row lock TransitionStep holds does not block foreign-key checks of other writers (which
// take FOR KEY SHARE on the step row), so a writer that does not lock the step, such as
// tasker-core inserting a transition row, cannot deadlock with an open transition of ours.
func TestStateLockDoesNotBlockForeignKeyChecks(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	f := newTaskWithSteps(t, pool, "state_fk", []string{"a", "b"}, nil)
	a, b := f.Step(t, "a"), f.Step(t, "b")

	ours, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Rollback(ctx)
	if _, err := state.TransitionStep(ctx, ours, a, state.StepEventOf(state.StepEventEnqueue), state.TransitionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := state.TransitionTask(ctx, ours, f.TaskUUID, state.TaskEventOf(state.TaskEventStart), state.TaskTransitionOptions{}); err != nil {
		t.Fatal(err)
	}

	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		t.Fatal(err)
	}
	// A history row (most_recent = false, so no unique conflict) and an edge both reference the
	// locked step row; a task transition row references the locked task row.
	if _, err := other.Exec(ctx, `INSERT INTO tasker.workflow_step_transitions
		(workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, 'pending', NULL, '{}', 99, false, NOW(), NOW())`, newV7(t), a); err != nil {
		t.Fatalf("foreign transition insert blocked or failed: %v", err)
	}
	if _, err := other.Exec(ctx, `INSERT INTO tasker.workflow_step_edges
		(workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at)
		VALUES ($1, $2, $3, 'provides', NOW(), NOW())`, newV7(t), a, b); err != nil {
		t.Fatalf("foreign edge insert blocked or failed: %v", err)
	}
	if _, err := other.Exec(ctx, `INSERT INTO tasker.task_transitions
		(task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at)
		VALUES ($1, $2, 'pending', NULL, '{}', 99, false, NOW(), NOW())`, newV7(t), f.TaskUUID); err != nil {
		t.Fatalf("foreign task transition insert blocked or failed: %v", err)
	}
}
