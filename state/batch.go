package state

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// StepHead is a step's most_recent transition as a caller knows it: the row its claim wrote, or
// the head it read under the step row lock.
type StepHead struct {
	StepUUID uuid.UUID
	// TransitionUUID is the head row; uuid.Nil means "whatever row is most_recent", which is
	// only right while the caller holds the step row lock.
	TransitionUUID uuid.UUID
	State          StepState
	SortKey        int
}

// Head is the StepHead this transition made.
func (t *StepTransition) Head() StepHead {
	return StepHead{StepUUID: t.StepUUID, TransitionUUID: t.UUID, State: t.To, SortKey: t.SortKey}
}

// QueueStepTransition queues on b the writes that move a step from head on ev: lock the step row,
// retire head, insert the new head, update the step's flags. Nothing is read first, so the
// transition travels in one round trip with whatever else b carries, in the caller's transaction
// or in the implicit transaction of a batch sent outside one. The returned transition is filled
// in (CreatedAt, Attempts) when b's results are read.
//
// Invariant kept: as TransitionStep. head works as a fencing token: when head is no longer the
// step's most_recent transition as b runs (another writer moved the step), nothing is retired and
// the insert meets the one-head-per-step unique index, so b fails with ErrConcurrentTransition
// and everything else in its transaction is rolled back with it.
//
// Transitions guarded by the parents' states (pending → enqueued / in_progress) need a read;
// they are refused here (use TransitionStep) unless opts.DependenciesChecked.
func QueueStepTransition(b *pgx.Batch, head StepHead, ev StepEvent, opts TransitionOptions) (*StepTransition, error) {
	tr, err := PrepareStepTransition(head, ev, opts)
	if err != nil {
		return nil, err
	}
	b.Queue(lockStepSQL, head.StepUUID).Fn = func(br pgx.BatchResults) error {
		var one int
		if err := br.QueryRow().Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrStepNotFound, head.StepUUID)
		} else if err != nil {
			return fmt.Errorf("state: lock step %s: %w", head.StepUUID, err)
		}
		return nil
	}
	queueStepWrites(b, head, tr, ev, opts)
	return tr, nil
}

// PrepareStepTransition checks the move from head on ev as QueueStepTransition does and returns
// the row that move writes (uuid, to state, metadata, sort key), touching no database: for a
// caller that writes the transition with statements of its own.
func PrepareStepTransition(head StepHead, ev StepEvent, opts TransitionOptions) (*StepTransition, error) {
	if !ev.Type.Valid() {
		return nil, fmt.Errorf("state: unknown step event type %q", ev.Type)
	}
	if !expectOK(opts.ExpectFrom, head.State) {
		return nil, &InvalidTransitionError{Entity: EntityStep, ID: head.StepUUID, From: string(head.State),
			Event: string(ev.Type), Expected: stateStrings(opts.ExpectFrom)}
	}
	to, err := NextStepState(head.State, ev)
	if err != nil {
		return nil, &InvalidTransitionError{Entity: EntityStep, ID: head.StepUUID, From: string(head.State), Event: string(ev.Type)}
	}
	if stepNeedsDependencies(head.State, ev.Type) && !opts.DependenciesChecked {
		return nil, fmt.Errorf("state: %s on a %s step checks its dependencies; use TransitionStep", ev.Type, head.State)
	}
	return newStepTransition(head, to, ev, opts)
}

// newStepTransition is the row a validated transition from head to to writes.
func newStepTransition(head StepHead, to StepState, ev StepEvent, opts TransitionOptions) (*StepTransition, error) {
	eventJSON, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("state: encode step event: %w", err)
	}
	metaJSON, err := stepMetadata(eventJSON, opts)
	if err != nil {
		return nil, err
	}
	id, err := newTransitionID()
	if err != nil {
		return nil, err
	}
	return &StepTransition{UUID: id, StepUUID: head.StepUUID, From: head.State, To: to, SortKey: head.SortKey + 1,
		MostRecent: true, Metadata: metaJSON}, nil
}

// queueStepWrites queues retire + insert + flags for tr, a validated transition from head.
func queueStepWrites(b *pgx.Batch, head StepHead, tr *StepTransition, ev StepEvent, opts TransitionOptions) {
	stepUUID, from, to := head.StepUUID, head.State, tr.To
	if head.TransitionUUID == uuid.Nil {
		b.Queue(`UPDATE tasker.workflow_step_transitions SET most_recent = false, updated_at = NOW()
			 WHERE workflow_step_uuid = $1 AND most_recent`, stepUUID).Fn = wrapExec("retire step %s transition", stepUUID)
	} else {
		b.Queue(`UPDATE tasker.workflow_step_transitions SET most_recent = false, updated_at = NOW()
			 WHERE workflow_step_transition_uuid = $1 AND most_recent`, head.TransitionUUID).Fn = wrapExec("retire step %s transition", stepUUID)
	}
	b.Queue(insertStepTransitionSQL, tr.UUID, stepUUID, string(to), string(from), string(tr.Metadata), tr.SortKey).Fn = func(br pgx.BatchResults) error {
		return insertErr(br.QueryRow().Scan(&tr.CreatedAt), stepMostRecentIndex, "step", stepUUID)
	}
	if opts.ClaimAttempt && to == StepInProgress {
		b.Queue(claimFlagsSQL, stepUUID).Fn = func(br pgx.BatchResults) error {
			if err := br.QueryRow().Scan(&tr.Attempts); err != nil {
				return fmt.Errorf("state: claim step %s: %w", stepUUID, err)
			}
			return nil
		}
	} else if sql, args := stepActionSQL(stepUUID, from, to, ev); sql != "" {
		b.Queue(sql, args...).Fn = wrapExec("update step %s flags", stepUUID)
	}
}

// newTransitionID is a new transition row's uuid (v7, so rows sort by creation).
func newTransitionID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.Nil, fmt.Errorf("state: new transition uuid: %w", err)
	}
	return id, nil
}

// claimFlagsSQL is a worker's claim of a step entering in_progress: in_process, attempts + 1 and
// last_attempted_at in one row update.
const claimFlagsSQL = `UPDATE tasker.workflow_steps
    SET in_process = true, attempts = COALESCE(attempts, 0) + 1,
        last_attempted_at = timezone('UTC', clock_timestamp()), updated_at = NOW()
  WHERE workflow_step_uuid = $1 RETURNING attempts`

func wrapExec(what string, id uuid.UUID) func(pgx.BatchResults) error {
	return func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("state: "+what+": %w", id, err)
		}
		return nil
	}
}

// stepMetadata is tasker-core's step transition metadata: the event (its JSON as a string),
// an RFC 3339 timestamp, and the worker and correlation ids when given.
func stepMetadata(eventJSON []byte, opts TransitionOptions) ([]byte, error) {
	meta := map[string]any{
		"event":     string(eventJSON),
		"timestamp": rfc3339(opts.Timestamp),
	}
	if opts.WorkerUUID != uuid.Nil {
		meta["worker_uuid"] = opts.WorkerUUID.String()
	}
	if opts.CorrelationID != uuid.Nil {
		meta["correlation_id"] = opts.CorrelationID.String()
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("state: encode step transition metadata: %w", err)
	}
	return b, nil
}

// QueueInitialStepTransition queues the first transition of a step created in the caller's
// transaction (pending, from_state NULL, sort_key 1; metadata nil means tasker-core's
// task_initializer metadata). No other transaction can see the step yet, so nothing is locked or
// read; use InitStepState for a step that may already have transitions.
func QueueInitialStepTransition(b *pgx.Batch, stepUUID uuid.UUID, metadata map[string]any) (*StepTransition, error) {
	meta, err := initialMetadata(metadata)
	if err != nil {
		return nil, err
	}
	id, err := newTransitionID()
	if err != nil {
		return nil, err
	}
	tr := &StepTransition{UUID: id, StepUUID: stepUUID, To: StepPending, SortKey: 1, MostRecent: true, Metadata: meta}
	b.Queue(insertStepTransitionSQL, id, stepUUID, string(StepPending), "", string(meta), 1).Fn = func(br pgx.BatchResults) error {
		return insertErr(br.QueryRow().Scan(&tr.CreatedAt), stepMostRecentIndex, "step", stepUUID)
	}
	return tr, nil
}

// QueueInitialTaskTransition is QueueInitialStepTransition for a task created in the caller's
// transaction.
func QueueInitialTaskTransition(b *pgx.Batch, taskUUID, processorUUID uuid.UUID, metadata map[string]any) (*TaskTransition, error) {
	meta, err := initialMetadata(metadata)
	if err != nil {
		return nil, err
	}
	id, err := newTransitionID()
	if err != nil {
		return nil, err
	}
	tr := &TaskTransition{UUID: id, TaskUUID: taskUUID, To: TaskPending, SortKey: 1, MostRecent: true,
		ProcessorUUID: processorUUID, Metadata: meta}
	b.Queue(insertTaskTransitionSQL, id, taskUUID, string(TaskPending), "", nullableUUID(processorUUID), string(meta), 1).Fn =
		func(br pgx.BatchResults) error {
			return insertErr(br.QueryRow().Scan(&tr.CreatedAt), taskMostRecentIndex, "task", taskUUID)
		}
	return tr, nil
}
