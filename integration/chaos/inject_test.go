package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
)

// injected is one message the test put into a queue, and the archive reason it expects (any
// reason in want is acceptable; empty want means "consumed or archived, any reason").
type injected struct {
	Queue string
	MsgID int64
	Kind  string // duplicate_step, duplicate_result, malformed, unknown_step, task_mismatch
	Want  []string
	Body  string
}

type injector struct {
	pool *pgxpool.Pool
	q    *queue.Client

	mu   sync.Mutex
	msgs []injected
	errs int
}

func newInjector(pool *pgxpool.Pool) *injector {
	return &injector{pool: pool, q: queue.NewClient(pool)}
}

func (in *injector) send(ctx context.Context, q, kind string, body json.RawMessage, want ...string) {
	id, err := in.q.SendWithNotify(ctx, nil, q, body, 0)
	in.mu.Lock()
	defer in.mu.Unlock()
	if err != nil {
		in.errs++ // the database may be restarting; injection is best effort
		return
	}
	in.msgs = append(in.msgs, injected{Queue: q, MsgID: id, Kind: kind, Want: want, Body: string(body)})
}

func (in *injector) all() []injected {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]injected(nil), in.msgs...)
}

func (in *injector) count(kind string) int {
	n := 0
	for _, m := range in.all() {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

// duplicates injects n duplicates over the run, one every interval: a copy of the step message
// of a random existing step (any state) into its worker queue, and every third time a copy of
// a step result notification into orchestration_step_results.
func (in *injector) duplicates(ctx context.Context, n int, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < n; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var step, task, corr uuid.UUID
		var ns string
		err := in.pool.QueryRow(ctx, `
			SELECT ws.workflow_step_uuid, ws.task_uuid, t.correlation_id, tn.name
			  FROM tasker.workflow_steps ws
			  JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid
			  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
			  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
			 ORDER BY random() LIMIT 1`).Scan(&step, &task, &corr, &ns)
		if err != nil {
			continue
		}
		body, _ := json.Marshal(protocol.StepMessage{TaskUUID: task, StepUUID: step, CorrelationID: corr})
		if i%3 == 2 {
			in.send(ctx, queue.StepResultsQueue, "duplicate_result", body)
		} else {
			in.send(ctx, queue.WorkerQueue(ns), "duplicate_step", body)
		}
		i++
	}
}

// malformedRound puts, into every worker queue of the load and into orchestration_step_results:
// bodies that are not step messages (archived as malformed_message), a message for a step that
// does not exist, and a message whose task does not own its step.
func (in *injector) malformedRound(ctx context.Context) {
	bodies := []string{
		`{}`,
		`[1, 2, 3]`,
		`"a string"`,
		`{"task_uuid": "not-a-uuid", "step_uuid": "x'; DROP TABLE tasker.tasks; --"}`,
		`{"task_uuid": 42, "step_uuid": null, "correlation_id": {"nested": [true]}}`,
		fmt.Sprintf(`{"task_uuid": %q}`, uuid.New()),
	}
	var step, task, otherTask, corr uuid.UUID
	_ = in.pool.QueryRow(ctx, `SELECT ws.workflow_step_uuid, ws.task_uuid, t.correlation_id FROM tasker.workflow_steps ws
		JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid ORDER BY ws.created_at DESC LIMIT 1`).Scan(&step, &task, &corr)
	_ = in.pool.QueryRow(ctx, `SELECT task_uuid FROM tasker.tasks WHERE task_uuid <> $1 LIMIT 1`, task).Scan(&otherTask)
	unknown, _ := json.Marshal(protocol.StepMessage{TaskUUID: task, StepUUID: uuid.New(), CorrelationID: corr})
	mismatch, _ := json.Marshal(protocol.StepMessage{TaskUUID: otherTask, StepUUID: step, CorrelationID: corr})
	queues := []string{queue.StepResultsQueue}
	for _, ns := range namespaces {
		queues = append(queues, queue.WorkerQueue(ns))
	}
	for _, q := range queues {
		for _, b := range bodies {
			in.send(ctx, q, "malformed", json.RawMessage(b), "malformed_message")
		}
		if task != uuid.Nil {
			in.send(ctx, q, "unknown_step", unknown, "step_not_found")
		}
		if otherTask != uuid.Nil {
			// The orchestrator locks the message's task first, then finds that the step is not
			// one of its own; the worker reads the step first. Both archive as task_mismatch.
			in.send(ctx, q, "task_mismatch", mismatch, "task_mismatch")
		}
	}
}
