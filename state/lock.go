package state

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// LockedStep is a step locked (FOR NO KEY UPDATE) with the columns the orchestrator's result
// processing reads, and its head.
type LockedStep struct {
	StepUUID         uuid.UUID
	TaskUUID         uuid.UUID
	Name             string // named_steps.name
	TemplateStepName string // inputs.__template_step_name, else Name
	Retryable        bool
	MaxAttempts      int    // NULL reads as 3
	Attempts         int    // NULL reads as 0
	Results          []byte // nil when NULL
	State            StepState
	Head             StepHead
	AgeSeconds       float64 // since last_attempted_at by the database clock; -1 when never attempted
}

// StepLock is QueueLockStep's statements queued on a batch; Result reads them once it was sent.
type StepLock struct {
	id       uuid.UUID
	row      LockedStep
	found    bool
	max, att *int32
	cur      *string
	headID   uuid.NullUUID
	headKey  *int
}

// QueueLockStep queues on b the lock of a step row and, in a second statement (which reads after
// the lock was granted, see LoadStep), the read of its head.
func QueueLockStep(b *pgx.Batch, stepUUID uuid.UUID) *StepLock {
	l := &StepLock{id: stepUUID}
	s := &l.row
	b.Queue(`
		SELECT ws.workflow_step_uuid, ws.task_uuid, ns.name::text,
		       COALESCE(ws.inputs->>'__template_step_name', ns.name::text),
		       ws.retryable, ws.max_attempts, ws.attempts, ws.results,
		       COALESCE(EXTRACT(EPOCH FROM (timezone('UTC', clock_timestamp()) - ws.last_attempted_at))::float8, -1)
		  FROM tasker.workflow_steps ws
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		 WHERE ws.workflow_step_uuid = $1
		   FOR NO KEY UPDATE OF ws`, stepUUID).Fn = func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&s.StepUUID, &s.TaskUUID, &s.Name, &s.TemplateStepName, &s.Retryable, &l.max, &l.att, &s.Results, &s.AgeSeconds)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("state: lock step %s: %w", stepUUID, err)
		}
		l.found = true
		return nil
	}
	b.Queue(`SELECT tr.to_state, tr.workflow_step_transition_uuid, tr.sort_key
	           FROM (SELECT 1) one
	           LEFT JOIN LATERAL (SELECT to_state, workflow_step_transition_uuid, sort_key
	                                FROM tasker.workflow_step_transitions
	                               WHERE workflow_step_uuid = $1 AND most_recent
	                               ORDER BY sort_key DESC LIMIT 1) tr ON true`, stepUUID).Fn =
		func(br pgx.BatchResults) error { return br.QueryRow().Scan(&l.cur, &l.headID, &l.headKey) }
	return l
}

// Result is the locked step; ErrStepNotFound when there is no such step.
func (l *StepLock) Result() (*LockedStep, error) {
	if !l.found {
		return nil, fmt.Errorf("%w: %s", ErrStepNotFound, l.id)
	}
	s := &l.row
	s.MaxAttempts = 3
	if l.max != nil {
		s.MaxAttempts = int(*l.max)
	}
	if l.att != nil {
		s.Attempts = int(*l.att)
	}
	s.State = StepPending
	if l.cur != nil {
		var err error
		if s.State, err = ParseStepState(*l.cur); err != nil {
			return nil, err
		}
	}
	s.Head = StepHead{StepUUID: l.id, TransitionUUID: l.headID.UUID, State: s.State}
	if l.headKey != nil {
		s.Head.SortKey = *l.headKey
	}
	return s, nil
}
