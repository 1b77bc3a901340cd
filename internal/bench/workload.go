package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
)

// workload is one example workflow submitted end to end.
type workload struct {
	key       string
	file      string // template file under examples/templates
	namespace string
	name      string
	version   string
	context   json.RawMessage
}

func workloads(sourceDir string) map[string]workload {
	csv, _ := json.Marshal(filepath.Join(sourceDir, "examples", "data", "products.csv"))
	return map[string]workload{
		WorkflowLinear: {WorkflowLinear, "linear_workflow.yaml", "rust_e2e_linear", "mathematical_sequence", "1.0.0",
			json.RawMessage(`{"even_number":6}`)},
		WorkflowDiamond: {WorkflowDiamond, "diamond_workflow.yaml", "rust_e2e_diamond", "diamond_pattern", "1.0.0",
			json.RawMessage(`{"even_number":6}`)},
		WorkflowBatch: {WorkflowBatch, "batch_processing_csv.yaml", "csv_processing_rust", "csv_product_inventory_analyzer", "1.0.0",
			json.RawMessage(`{"csv_file_path":` + string(csv) + `,"analysis_mode":"inventory"}`)},
	}
}

// templateDir copies the templates of the selected workflows into a new directory under tmp, so
// workers register (and poll) only the namespaces the benchmark uses.
func templateDir(tmp, sourceDir string, wls []workload) (string, error) {
	dir := filepath.Join(tmp, "templates")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, wl := range wls {
		b, err := os.ReadFile(filepath.Join(sourceDir, "examples", "templates", wl.file))
		if err != nil {
			return "", fmt.Errorf("bench: example template: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, wl.file), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// submit creates one task of wl with a fresh idempotency key (the context repeats).
func submit(ctx context.Context, client *orchestration.Orchestrator, wl workload) (uuid.UUID, error) {
	key := uuid.NewString()
	created, err := client.CreateTask(ctx, orchestration.TaskRequest{
		Namespace: wl.namespace, Name: wl.name, Version: wl.version, Context: wl.context,
		Initiator: "tasker-bench", SourceSystem: "tasker-bench", Reason: "benchmark " + wl.key, IdempotencyKey: &key,
	})
	if err != nil {
		return uuid.Nil, err
	}
	return created.TaskUUID, nil
}

// submitWhenRegistered retries submit while the template is not registered yet (a worker child
// registers it at start), up to wait.
func submitWhenRegistered(ctx context.Context, client *orchestration.Orchestrator, wl workload, wait time.Duration) (uuid.UUID, error) {
	deadline := time.Now().Add(wait)
	for {
		id, err := submit(ctx, client, wl)
		if err == nil || !errors.Is(err, orchestration.ErrTemplateNotFound) || time.Now().After(deadline) {
			return id, err
		}
		select {
		case <-ctx.Done():
			return uuid.Nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stuckStates are task states a benchmark task must never reach.
var stuckStates = []string{"blocked_by_failures", "error", "cancelled", "resolved_manually"}

// waitTask polls one task until it is complete, every 2ms at first and then backing off to
// 50ms, so a long wait costs few queries. The latency is taken from the database afterwards,
// so the poll period only delays the next submission.
func waitTask(ctx context.Context, q *pgxpool.Pool, id uuid.UUID) error {
	every := 2 * time.Millisecond
	for {
		var complete bool
		var st *string
		if err := q.QueryRow(ctx, `SELECT t.complete,
			       (SELECT tt.to_state FROM tasker.task_transitions tt WHERE tt.task_uuid = t.task_uuid AND tt.most_recent)
			  FROM tasker.tasks t WHERE t.task_uuid = $1`, id).Scan(&complete, &st); err != nil {
			return fmt.Errorf("bench: poll task %s: %w", id, err)
		}
		if complete {
			return nil
		}
		if st != nil && slices.Contains(stuckStates, *st) {
			return fmt.Errorf("bench: task %s ended %s", id, *st)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: task %s not complete (state %v): %w", id, deref(st), ctx.Err())
		case <-time.After(every):
			every = min(every*3/2, 50*time.Millisecond)
		}
	}
}

// waitTasks polls every 50ms until every task is complete. Each poll asks only about the tasks
// not seen complete yet, by index, so that the measurement's own reads stay a small part of the
// server's work it measures.
func waitTasks(ctx context.Context, q *pgxpool.Pool, ids []uuid.UUID) error {
	left := slices.Clone(ids)
	for {
		rows, err := q.Query(ctx, `SELECT t.task_uuid, t.complete, COALESCE(tt.to_state = ANY($2), false)
			  FROM unnest($1::uuid[]) AS i(task_uuid)
			  JOIN LATERAL (SELECT task_uuid, complete FROM tasker.tasks WHERE task_uuid = i.task_uuid OFFSET 0) t ON true
			  LEFT JOIN LATERAL (SELECT to_state FROM tasker.task_transitions
			                      WHERE task_uuid = i.task_uuid AND most_recent OFFSET 0) tt ON true
			 WHERE t.complete OR tt.to_state = ANY($2)`, left, stuckStates)
		if err != nil {
			return fmt.Errorf("bench: poll tasks: %w", err)
		}
		finished := map[uuid.UUID]bool{}
		var (
			id              uuid.UUID
			complete, stuck bool
			stuckN          int
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &complete, &stuck}, func() error {
			finished[id] = true
			if stuck && !complete {
				stuckN++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bench: poll tasks: %w", err)
		}
		if stuckN > 0 {
			return fmt.Errorf("bench: %d tasks ended blocked, in error or cancelled", stuckN)
		}
		left = slices.DeleteFunc(left, func(id uuid.UUID) bool { return finished[id] })
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d tasks complete: %w", len(ids)-len(left), len(ids), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// latencyStats summarizes task latencies (ms) from CreateTask's first transition to the
// transition to complete, both timestamped by the database.
type latencyStats struct {
	N           int
	P50         float64
	P95         float64
	P99         float64
	Mean        float64
	Max         float64
	Span        time.Duration // first task created → last task complete
	Steps       int64
	TasksPerSec float64
	StepsPerSec float64
}

func taskLatencies(ctx context.Context, q *pgxpool.Pool, ids []uuid.UUID) (latencyStats, error) {
	var ls latencyStats
	rows, err := q.Query(ctx, `
		SELECT (SELECT min(tt.created_at) FROM tasker.task_transitions tt WHERE tt.task_uuid = t.task_uuid),
		       (SELECT max(tt.created_at) FROM tasker.task_transitions tt WHERE tt.task_uuid = t.task_uuid AND tt.to_state = 'complete'),
		       (SELECT count(*) FROM tasker.workflow_steps ws WHERE ws.task_uuid = t.task_uuid)
		  FROM tasker.tasks t WHERE t.task_uuid = ANY($1)`, ids)
	if err != nil {
		return ls, fmt.Errorf("bench: task latencies: %w", err)
	}
	defer rows.Close()
	var ms []float64
	var first, last time.Time
	for rows.Next() {
		var start, done *time.Time
		var steps int64
		if err := rows.Scan(&start, &done, &steps); err != nil {
			return ls, err
		}
		if start == nil || done == nil {
			return ls, errors.New("bench: a measured task has no creation or completion transition")
		}
		ms = append(ms, float64(done.Sub(*start))/1e6)
		if first.IsZero() || start.Before(first) {
			first = *start
		}
		if done.After(last) {
			last = *done
		}
		ls.Steps += steps
	}
	if err := rows.Err(); err != nil {
		return ls, err
	}
	if len(ms) != len(ids) {
		return ls, fmt.Errorf("bench: found %d of %d tasks", len(ms), len(ids))
	}
	slices.Sort(ms)
	ls.N = len(ms)
	ls.P50, ls.P95, ls.P99, ls.Max = percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), ms[len(ms)-1]
	for _, v := range ms {
		ls.Mean += v
	}
	ls.Mean /= float64(len(ms))
	ls.Span = last.Sub(first)
	if ls.Span > 0 {
		ls.TasksPerSec = float64(ls.N) / ls.Span.Seconds()
		ls.StepsPerSec = float64(ls.Steps) / ls.Span.Seconds()
	}
	return ls, nil
}

// runSerial submits n tasks one at a time, each after the previous one completed.
func runSerial(ctx context.Context, client *orchestration.Orchestrator, q *pgxpool.Pool, wl workload, n int) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, 0, n)
	for range n {
		id, err := submit(ctx, client, wl)
		if err != nil {
			return ids, fmt.Errorf("bench: submit %s: %w", wl.key, err)
		}
		ids = append(ids, id)
		if err := waitTask(ctx, q, id); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// runBurst submits n tasks from submitters goroutines as fast as CreateTask allows, then waits
// for all of them.
func runBurst(ctx context.Context, client *orchestration.Orchestrator, q *pgxpool.Pool, wl workload, n, submitters int) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id, err := submit(ctx, client, wl)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: submit %s: %w", wl.key, err)
					}
					mu.Unlock()
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return ids, waitTasks(ctx, q, ids)
}

func deref(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}

// workflowList returns the selected workloads in AllWorkflows order.
func workflowList(all map[string]workload, keys []string) []workload {
	var out []workload
	for _, k := range AllWorkflows {
		if slices.Contains(keys, k) {
			out = append(out, all[k])
		}
	}
	return out
}

func joinKeys(ws []workload) string {
	ks := make([]string, len(ws))
	for i, w := range ws {
		ks[i] = w.key
	}
	return strings.Join(ks, ",")
}
