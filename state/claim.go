package state

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StepRef names a step and the task a message says it belongs to.
type StepRef struct{ StepUUID, TaskUUID uuid.UUID }

// claimQuery builds one statement that claims the enqueued steps of refs (distinct steps, each
// of the task given with it), and selects the hydrated step (stepColumns over each claimed step
// row, aliased ws, joined with stepJoins) for the steps it claimed: lock the step rows, retire
// each head that is enqueued, insert the in_progress heads, and set in_process, attempts + 1 and
// last_attempted_at. The hydrated row is the step as it was before the claim; four columns
// follow it: attempts after the claim, the new head's sort_key and created_at, and the index of
// the step in refs. trs[i] is the transition refs[i]'s claim writes. A ref without a row wrote
// nothing (the step is not enqueued, is not the task's, is not in opts.TaskNamespace, or does
// not exist); the caller decides why with a locking read (LoadStep).
//
// Invariant kept: as TransitionStep, per step, in one statement. Step rows are locked in uuid
// order, so concurrent claims cannot deadlock; under concurrent claims of a step the losers
// block on its row lock and then find the head already retired (the UPDATE re-checks the row
// version it waited for), so exactly one claim inserts an in_progress head.
func claimQuery(refs []StepRef, opts TransitionOptions) (sql string, args []any, trs []*StepTransition, err error) {
	ev := StepEvent{Type: StepEventStart}
	eventJSON, err := json.Marshal(ev)
	if err != nil {
		return "", nil, nil, fmt.Errorf("state: encode step event: %w", err)
	}
	metaJSON, err := stepMetadata(eventJSON, opts)
	if err != nil {
		return "", nil, nil, err
	}
	n := len(refs)
	steps, tasks, ids := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	seen := make(map[uuid.UUID]bool, n)
	trs = make([]*StepTransition, n)
	for i, r := range refs {
		if seen[r.StepUUID] {
			return "", nil, nil, fmt.Errorf("state: step %s claimed twice in one statement", r.StepUUID)
		}
		seen[r.StepUUID] = true
		if ids[i], err = newTransitionID(); err != nil {
			return "", nil, nil, err
		}
		steps[i], tasks[i] = r.StepUUID, r.TaskUUID
		trs[i] = &StepTransition{UUID: ids[i], StepUUID: r.StepUUID, From: StepEnqueued, To: StepInProgress, MostRecent: true, Metadata: metaJSON}
	}
	sql = `
WITH i AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS i(step_uuid, task_uuid, tr_uuid, ord)),
ws AS (
    SELECT * FROM tasker.workflow_steps
     WHERE workflow_step_uuid = ANY($1::uuid[])
     ORDER BY workflow_step_uuid
       FOR NO KEY UPDATE),
retired AS (
    UPDATE tasker.workflow_step_transitions t
       SET most_recent = false, updated_at = NOW()
      FROM ws JOIN i ON i.step_uuid = ws.workflow_step_uuid AND i.task_uuid = ws.task_uuid
     WHERE t.workflow_step_uuid = ws.workflow_step_uuid AND t.most_recent AND t.to_state = 'enqueued'
       AND ($5::text = '' OR EXISTS (
           SELECT 1 FROM tasker.tasks ck_t
             JOIN tasker.named_tasks ck_nt ON ck_nt.named_task_uuid = ck_t.named_task_uuid
             JOIN tasker.task_namespaces ck_ns ON ck_ns.task_namespace_uuid = ck_nt.task_namespace_uuid
            WHERE ck_t.task_uuid = ws.task_uuid AND ck_ns.name = $5::text))
    RETURNING t.workflow_step_uuid, i.tr_uuid, i.ord),
head AS (
    INSERT INTO tasker.workflow_step_transitions
           (workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata,
            sort_key, most_recent, created_at, updated_at)
    SELECT r.tr_uuid, r.workflow_step_uuid, 'in_progress', 'enqueued', $4::jsonb,
           (SELECT max(sort_key) FROM tasker.workflow_step_transitions t WHERE t.workflow_step_uuid = r.workflow_step_uuid) + 1,
           true, NOW(), NOW()
      FROM retired r
    RETURNING workflow_step_uuid, sort_key, created_at),
claimed AS (
    UPDATE tasker.workflow_steps s
       SET in_process = true, attempts = COALESCE(s.attempts, 0) + 1,
           last_attempted_at = timezone('UTC', clock_timestamp()), updated_at = NOW()
      FROM head h
     WHERE s.workflow_step_uuid = h.workflow_step_uuid
    RETURNING s.workflow_step_uuid, s.attempts)
SELECT ` + stepColumns + `, claimed.attempts, head.sort_key, head.created_at, r.ord - 1
  FROM retired r
  JOIN ws ON ws.workflow_step_uuid = r.workflow_step_uuid
  JOIN claimed ON claimed.workflow_step_uuid = r.workflow_step_uuid
  JOIN head ON head.workflow_step_uuid = r.workflow_step_uuid ` + stepJoins
	return sql, []any{steps, tasks, ids, string(metaJSON), opts.TaskNamespace}, trs, nil
}

// Claim is what a claim statement (QueueClaim) did, filled in when its batch has run.
type Claim struct {
	// Steps[i] is refs[i]'s step, hydrated as it was before the claim, when the statement
	// claimed it; nil when it wrote nothing for refs[i].
	Steps []*StepRow
	// Transitions[i] is the in_progress transition refs[i]'s claim wrote (its Attempts are the
	// step's attempts after the claim); meaningful only where Steps[i] is set.
	Transitions []*StepTransition
}

// QueueClaim queues on b the one statement that claims the enqueued steps of refs (see
// claimQuery for what it writes and the invariant it keeps). The returned Claim is filled in when
// b has run; refs must name distinct steps.
func QueueClaim(b *pgx.Batch, refs []StepRef, opts TransitionOptions) (*Claim, error) {
	sql, args, trs, err := claimQuery(refs, opts)
	if err != nil {
		return nil, err
	}
	n := len(refs)
	cl := &Claim{Steps: make([]*StepRow, n), Transitions: trs}
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		rs, err := br.Query()
		if err != nil {
			return fmt.Errorf("state: claim steps: %w", err)
		}
		defer rs.Close()
		for rs.Next() {
			var (
				attempts int32
				sortKey  int
				created  time.Time
				i        int
			)
			row, err := scanStep(rs, &attempts, &sortKey, &created, &i)
			if err != nil {
				return fmt.Errorf("state: claim steps: %w", err)
			}
			if i < 0 || i >= n {
				return fmt.Errorf("state: claim steps: row for step %d of %d", i, n)
			}
			row.Current = StepEnqueued // only enqueued heads are claimed; Head stays unset
			cl.Steps[i] = row
			trs[i].Attempts, trs[i].SortKey, trs[i].CreatedAt = attempts, sortKey, created
		}
		if err := rs.Err(); err != nil {
			return fmt.Errorf("state: claim steps: %w", err)
		}
		return nil
	}
	return cl, nil
}

// BatchSender sends a batch; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ClaimSteps runs QueueClaim's statement alone on q (outside a transaction: its own implicit
// one).
func ClaimSteps(ctx context.Context, q BatchSender, refs []StepRef, opts TransitionOptions) (*Claim, error) {
	b := &pgx.Batch{}
	cl, err := QueueClaim(b, refs, opts)
	if err != nil {
		return nil, err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return cl, nil
}

// SaveCheckpoint stores a checkpoint yield's record (appending cursor to its history) while head
// is still the step's most_recent transition, in one implicit transaction; held is false (and
// nothing is written) when the claim that wrote head was superseded.
func SaveCheckpoint(ctx context.Context, q BatchSender, head StepHead, record []byte, cursor json.RawMessage) (held bool, err error) {
	// The step row lock comes first, so the check below reads after any transition that held it.
	b := &pgx.Batch{}
	b.Queue(lockStepSQL, head.StepUUID)
	var ct pgconn.CommandTag
	b.Queue(`UPDATE tasker.workflow_steps
	   SET checkpoint = jsonb_set($2::jsonb, '{history}',
	         COALESCE(checkpoint->'history', '[]'::jsonb)
	           || jsonb_build_array(jsonb_build_object('cursor', $3::jsonb, 'timestamp', to_jsonb(now())))),
	       updated_at = NOW()
	 WHERE workflow_step_uuid = $1
	   AND EXISTS (SELECT 1 FROM tasker.workflow_step_transitions
	                WHERE workflow_step_transition_uuid = $4 AND most_recent)`,
		head.StepUUID, record, []byte(cursor), head.TransitionUUID).Exec(func(tag pgconn.CommandTag) error {
		ct = tag
		return nil
	})
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("state: save checkpoint of step %s: %w", head.StepUUID, err)
	}
	return ct.RowsAffected() > 0, nil
}

// groupCompletionSQL applies a group of completions in one statement, so in one implicit
// transaction, each fenced on the in_progress head its claim wrote.
//
// Invariant kept (as state.QueueStepTransition, per step): a completion whose head is still the
// step's most_recent transition locks the step row, retires the head, inserts the next head with
// the result in its metadata (the audit trigger fires), sets in_process = false and results,
// sends the result to orchestration (the caller notifies it once committed: queue.Notices) and
// deletes the consumed message —
// all of it or, if the statement fails, none of it for any step. A completion whose head was
// superseded (its claim was recovered) writes nothing and leaves its message alone; it does not
// affect the others. Step rows are locked in uuid order before their heads are touched, so
// concurrent groups cannot deadlock with each other.
const groupCompletionSQL = `
WITH i AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int[],
                         $7::text[], $8::text[], $9::bigint[], $10::text[])
        AS i(step_uuid, head_uuid, tr_uuid, to_state, metadata, sort_key, results, queue_name, msg_id, result_msg)),
locked AS (
    SELECT workflow_step_uuid FROM tasker.workflow_steps
     WHERE workflow_step_uuid = ANY($1::uuid[])
     ORDER BY workflow_step_uuid
       FOR NO KEY UPDATE),
retired AS (
    UPDATE tasker.workflow_step_transitions t
       SET most_recent = false, updated_at = NOW()
      FROM i
     WHERE t.workflow_step_transition_uuid = i.head_uuid AND t.workflow_step_uuid = i.step_uuid
       AND t.most_recent AND i.step_uuid IN (SELECT workflow_step_uuid FROM locked)
    RETURNING i.*),
head AS (
    INSERT INTO tasker.workflow_step_transitions
           (workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata,
            sort_key, most_recent, created_at, updated_at)
    SELECT tr_uuid, step_uuid, to_state, 'in_progress', metadata::jsonb, sort_key, true, NOW(), NOW()
      FROM retired
    RETURNING workflow_step_transition_uuid, created_at),
flags AS (
    UPDATE tasker.workflow_steps ws
       SET in_process = false, results = COALESCE(r.results::jsonb, ws.results), updated_at = NOW()
      FROM retired r
     WHERE ws.workflow_step_uuid = r.step_uuid
    RETURNING 1),
sent AS (
    SELECT pgmq.send($11::text, result_msg::jsonb, 0) AS msg_id FROM retired),
deleted AS (
    SELECT d FROM (SELECT queue_name, array_agg(msg_id) AS ids FROM retired GROUP BY queue_name) g,
                  LATERAL pgmq.delete(g.queue_name, g.ids) AS d)
SELECT i.tr_uuid, head.created_at,  -- the count makes flags and deleted run
       (SELECT count(*) FROM flags) + (SELECT count(*) FROM deleted), (SELECT array_agg(msg_id) FROM sent)
  FROM i LEFT JOIN head ON head.workflow_step_transition_uuid = i.tr_uuid`

// GroupCompletion is one completion of a group written by CompleteGroup.
type GroupCompletion struct {
	// Head is the in_progress transition the step's claim wrote: the fencing token.
	Head StepHead
	// Transition is the next head (PrepareStepTransition from Head); its CreatedAt is set when
	// it is written.
	Transition *StepTransition
	// Results is written to workflow_steps.results; nil keeps the stored value.
	Results json.RawMessage
	// Queue and MsgID name the step message the completion consumes (deleted).
	Queue string
	MsgID int64
	// ResultMessage is sent to the results queue with tasker's notification.
	ResultMessage json.RawMessage
}

// CompleteGroup writes completions with one statement, sending each result message to
// resultsQueue (see groupCompletionSQL for the invariant). applied[i] is false for a completion
// whose head was no longer most_recent: nothing was written for it, and its message is left. When
// err is set nothing was written for any of them.
func CompleteGroup(ctx context.Context, q Lister, completions []GroupCompletion, resultsQueue string) (applied []bool, sent []int64, err error) {
	n := len(completions)
	steps, heads, trs := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	toStates, metas, sortKeys := make([]string, n), make([]string, n), make([]int32, n)
	results, queues, msgIDs, msgs := make([]*string, n), make([]string, n), make([]int64, n), make([]string, n)
	index := make(map[uuid.UUID]int, n)
	for i, c := range completions {
		steps[i], heads[i], trs[i] = c.Head.StepUUID, c.Head.TransitionUUID, c.Transition.UUID
		toStates[i], metas[i], sortKeys[i] = string(c.Transition.To), string(c.Transition.Metadata), int32(c.Transition.SortKey)
		if c.Results != nil {
			r := string(c.Results)
			results[i] = &r
		}
		queues[i], msgIDs[i], msgs[i] = c.Queue, c.MsgID, string(c.ResultMessage)
		index[c.Transition.UUID] = i
	}
	rows, err := q.Query(ctx, groupCompletionSQL, steps, heads, trs, toStates, metas, sortKeys,
		results, queues, msgIDs, msgs, resultsQueue)
	if err != nil {
		return nil, nil, fmt.Errorf("state: complete %d steps: %w", n, err)
	}
	applied = make([]bool, n)
	var (
		id      uuid.UUID
		created *time.Time
		writes  int64
		ids     []int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &created, &writes, &ids}, func() error {
		if i, ok := index[id]; ok && created != nil {
			applied[i] = true
			completions[i].Transition.CreatedAt = *created
		}
		sent = ids
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("state: complete %d steps: %w", n, err)
	}
	return applied, sent, nil
}

// TransitionExistsSQL is a boolean SQL expression of one parameter, $3: whether the step
// transition with that uuid exists. A statement later in the claim's batch gates on it to act
// only when the claim happened (queue.Client.QueueTakeIf).
const TransitionExistsSQL = `EXISTS (SELECT 1 FROM tasker.workflow_step_transitions WHERE workflow_step_transition_uuid = $3::uuid)`
