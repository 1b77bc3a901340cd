package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// Group commit of completions. A completion without durable events or an archive reason is
// handed to a flusher goroutine, which takes every completion waiting (up to
// maxCompletionGroup) and writes them with ONE statement. Nothing waits for a group to fill: an
// idle flusher writes a lone completion at once, and groups form while a flush runs. Under load
// this divides PostgreSQL's per-statement work (planning, opening and locking three tables and
// their ~30 indexes, the commit) among the group. One flusher per 32 handler slots: with fewer,
// larger groups form (measured with 10 slots: one flusher gave 0.48-0.56 of the PGMQ floor, two
// gave 0.37-0.47).
const maxCompletionGroup = 32

// completionFlushers is the number of flushers for concurrency handler slots.
func completionFlushers(concurrency int) int { return 1 + concurrency/32 }

// pendingCompletion is one completion waiting for a flusher; done receives its outcome.
type pendingCompletion struct {
	c    *claim
	res  protocol.StepExecutionResult
	done chan error
	// Filled in by prepare for a group statement:
	tr      *state.StepTransition
	results json.RawMessage // workflow_steps.results (nil keeps the stored value)
	body    json.RawMessage // the message to orchestration_step_results
}

// groupCompletionSQL applies a group of completions in one statement, so in one implicit
// transaction, each fenced on the in_progress head its claim wrote.
//
// Invariant kept (as state.QueueStepTransition, per step): a completion whose head is still the
// step's most_recent transition locks the step row, retires the head, inserts the next head with
// the result in its metadata (the audit trigger fires), sets in_process = false and results,
// sends the result to orchestration with its notification and deletes the consumed message —
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
    SELECT tasker.pgmq_send_with_notify($11::text, result_msg::jsonb, 0) FROM retired),
deleted AS (
    SELECT d FROM (SELECT queue_name, array_agg(msg_id) AS ids FROM retired GROUP BY queue_name) g,
                  LATERAL pgmq.delete(g.queue_name, g.ids) AS d)
SELECT i.tr_uuid, head.created_at,  -- the counts make flags, sent and deleted run
       (SELECT count(*) FROM flags) + (SELECT count(*) FROM sent) + (SELECT count(*) FROM deleted)
  FROM i LEFT JOIN head ON head.workflow_step_transition_uuid = i.tr_uuid`

// prepare validates the transition the completion makes and encodes what it writes.
func (p *pendingCompletion) prepare(w *Worker) error {
	ev, opts, err := w.resultEvent(p.c.seq, p.res)
	if err != nil {
		return err
	}
	if p.tr, err = state.PrepareStepTransition(p.c.head, ev, opts); err != nil {
		return err
	}
	task := p.c.seq.Task.Task
	p.body, err = json.Marshal(protocol.StepMessage{TaskUUID: task.TaskUUID, StepUUID: p.res.StepUUID, CorrelationID: task.CorrelationID})
	if err != nil {
		return fmt.Errorf("encode result message: %w", err)
	}
	p.results = ev.Results()
	return nil
}

// completeGrouped hands the completion to a flusher and waits for its outcome. Once queued, the
// handler frees its slot: the write no longer needs it, and the next message can start.
func (w *Worker) completeGrouped(c *claim, res protocol.StepExecutionResult) error {
	p := &pendingCompletion{c: c, res: res, done: make(chan error, 1)}
	w.completions <- p
	c.slot.free()
	return <-p.done
}

// runCompletionFlushers starts the flushers; they stop once completions is closed and drained.
func (w *Worker) runCompletionFlushers() (stop func()) {
	ch := make(chan *pendingCompletion, w.cfg.Concurrency)
	w.completions = ch
	finished := make(chan struct{})
	flushers := completionFlushers(w.cfg.Concurrency)
	for range flushers {
		go func() {
			defer func() { finished <- struct{}{} }()
			group := make([]*pendingCompletion, 0, maxCompletionGroup)
			for p := range ch {
				group = append(group[:0], p)
			gather:
				for len(group) < maxCompletionGroup {
					select {
					case q, ok := <-ch:
						if !ok {
							break gather
						}
						group = append(group, q)
					default:
						break gather
					}
				}
				w.flushCompletions(group)
			}
		}()
	}
	return func() {
		w.completions = nil
		close(ch)
		for range flushers {
			<-finished
		}
	}
}

// flushCompletions writes group with groupCompletionSQL and tells each completion its outcome.
// When the statement fails, nothing was written for any of them; each is then written alone, so
// one completion the database refuses (a result it cannot store) cannot fail the others.
func (w *Worker) flushCompletions(group []*pendingCompletion) {
	n := len(group)
	if n > 1 {
		// A completion that cannot be encoded is answered now and left out.
		kept := group[:0]
		for _, p := range group {
			if err := p.prepare(w); err != nil {
				p.done <- err
				continue
			}
			kept = append(kept, p)
		}
		group, n = kept, len(kept)
	}
	if n <= 1 {
		// Alone, the pipelined statements of finishOne cost less than the group statement
		// (measured 0.72 against 0.92 ms of server time).
		for _, p := range group {
			p.done <- w.finishOne(context.Background(), p.c, p.res, "")
		}
		return
	}
	steps, heads, trs := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	toStates, metas, sortKeys := make([]string, n), make([]string, n), make([]int32, n)
	results, queues, msgIDs, msgs := make([]*string, n), make([]string, n), make([]int64, n), make([]string, n)
	index := make(map[uuid.UUID]int, n)
	for i, p := range group {
		steps[i], heads[i], trs[i] = p.c.head.StepUUID, p.c.head.TransitionUUID, p.tr.UUID
		toStates[i], metas[i], sortKeys[i] = string(p.tr.To), string(p.tr.Metadata), int32(p.tr.SortKey)
		if p.results != nil {
			r := string(p.results)
			results[i] = &r
		}
		queues[i], msgIDs[i], msgs[i] = p.c.queue, p.c.msgID, string(p.body)
		index[p.tr.UUID] = i
	}
	ctx, cancel := w.dbCtx(context.Background())
	defer cancel()
	applied := make([]bool, n)
	rows, err := w.pool.Query(ctx, groupCompletionSQL, steps, heads, trs, toStates, metas, sortKeys,
		results, queues, msgIDs, msgs, w.resultsQueue)
	if err == nil {
		var (
			id      uuid.UUID
			created *time.Time
			writes  int64
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &created, &writes}, func() error {
			if i, ok := index[id]; ok && created != nil {
				applied[i] = true
				group[i].tr.CreatedAt = *created
			}
			return nil
		})
	}
	if err != nil {
		w.metrics.groupsSplit.Add(1)
		w.log.Warn("grouped completion failed; writing each completion alone", "completions", n, "error", err)
		for _, p := range group {
			p.done <- w.finishOne(ctx, p.c, p.res, "")
		}
		return
	}
	w.metrics.completionGroups.Add(1)
	w.metrics.groupedCompletions.Add(int64(n))
	for i, p := range group {
		if applied[i] {
			p.done <- nil
		} else {
			p.done <- fmt.Errorf("%w: head %s of step %s is no longer most_recent", errLateCompletion, p.c.head.TransitionUUID, p.c.head.StepUUID)
		}
	}
}
