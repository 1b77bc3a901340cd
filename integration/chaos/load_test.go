package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
)

// The namespaces of the workflows the load uses; workers consume only these.
var namespaces = []string{
	"rust_e2e_linear", "rust_e2e_diamond", "conditional_approval_rust", "data_processing",
	"csv_processing_rust", "test_errors",
}

// taskSpec is one task of the load and what it must end as.
type taskSpec struct {
	Kind      string
	Namespace string
	Name      string
	Context   string
	Key       string // idempotency key
	Want      state.TaskState
	Steps     int // steps the finished task has
	// check verifies the final step results (step name -> the result's "result" value).
	check func(results map[string]json.RawMessage) error

	TaskUUID uuid.UUID
	Created  time.Time
}

// wrapPow16 is n^16 computed as the example handlers do: repeated int64 squaring that wraps.
func wrapPow16(n int64) int64 {
	s := n * n
	s = s * s
	s = s * s
	return s * s
}

// diamondEnd is the diamond's final value: s = n², b = c = s², (b·c)², all in wrapping int64.
func diamondEnd(n int64) int64 {
	s := n * n
	b, c := s*s, s*s
	p := b * c
	return p * p
}

func wantInt(results map[string]json.RawMessage, step string, want int64) error {
	raw, ok := results[step]
	if !ok {
		return fmt.Errorf("no result for %s", step)
	}
	var got int64
	if err := json.Unmarshal(raw, &got); err != nil || got != want {
		return fmt.Errorf("%s = %s, want %d", step, raw, want)
	}
	return nil
}

func wantFields(results map[string]json.RawMessage, step string, want map[string]any) error {
	raw, ok := results[step]
	if !ok {
		return fmt.Errorf("no result for %s", step)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		return fmt.Errorf("%s: %v", step, err)
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			return fmt.Errorf("%s.%s = %v, want %v", step, k, got[k], v)
		}
	}
	return nil
}

// makeLoad builds n task specs: ~28% linear, 24% diamond, 24% conditional approval (all three
// routes), 14% dataset batch (no-batches, 3 and 5 workers), 8% CSV batch, 2% permanent failure
// (the only tasks meant to end blocked_by_failures).
func makeLoad(n int, rng *rand.Rand) []*taskSpec {
	specs := make([]*taskSpec, 0, n)
	evens := []int64{2, 4, 6, 8, 10, 12, 14}
	for i := 0; i < n; i++ {
		s := &taskSpec{Key: "chaos-" + uuid.Must(uuid.NewV7()).String(), Want: state.TaskComplete}
		switch r := rng.IntN(100); {
		case r < 28:
			v := evens[rng.IntN(len(evens))]
			s.Kind, s.Namespace, s.Name, s.Steps = "linear", "rust_e2e_linear", "mathematical_sequence", 4
			s.Context = fmt.Sprintf(`{"even_number":%d}`, v)
			s.check = func(r map[string]json.RawMessage) error { return wantInt(r, "linear_step_4", wrapPow16(v)) }
		case r < 52:
			v := evens[rng.IntN(len(evens))]
			s.Kind, s.Namespace, s.Name, s.Steps = "diamond", "rust_e2e_diamond", "diamond_pattern", 4
			s.Context = fmt.Sprintf(`{"even_number":%d}`, v)
			s.check = func(r map[string]json.RawMessage) error { return wantInt(r, "diamond_end", diamondEnd(v)) }
		case r < 76:
			routes := []struct {
				amount int
				path   string
				steps  int
			}{{500, "auto", 4}, {3000, "manager_only", 4}, {10000, "dual_approval", 5}}
			rt := routes[rng.IntN(len(routes))]
			s.Kind, s.Namespace, s.Name, s.Steps = "approval", "conditional_approval_rust", "approval_routing", rt.steps
			s.Context = fmt.Sprintf(`{"amount":%d,"requester":"chaos-%d","purpose":"chaos test purchase"}`, rt.amount, i)
			s.check = func(r map[string]json.RawMessage) error {
				return wantFields(r, "finalize_approval", map[string]any{"approved": true, "approval_path": rt.path, "final_amount": rt.amount})
			}
		case r < 90:
			sizes := []struct{ size, workers int }{{500, 0}, {2500, 3}, {5000, 5}}
			sz := sizes[rng.IntN(len(sizes))]
			s.Kind, s.Namespace, s.Name = "batch_dataset", "data_processing", "large_dataset_processor"
			s.Steps = 2 + max(sz.workers, 1)
			s.Context = fmt.Sprintf(`{"dataset_size":%d}`, sz.size)
			s.check = func(r map[string]json.RawMessage) error {
				return wantFields(r, "aggregate_results", map[string]any{"total_processed": sz.size, "worker_count": sz.workers})
			}
		case r < 98:
			s.Kind, s.Namespace, s.Name, s.Steps = "batch_csv", "csv_processing_rust", "csv_product_inventory_analyzer", 7
			s.Context = `{"csv_file_path":"/app/data/products.csv","analysis_mode":"inventory"}`
			s.check = func(r map[string]json.RawMessage) error {
				return wantFields(r, "aggregate_csv_results", map[string]any{"total_processed": 1000, "worker_count": 5})
			}
		default:
			s.Kind, s.Namespace, s.Name, s.Steps = "permanent_failure", "test_errors", "permanent_error_only", 1
			s.Context = `{"scenario_type":"chaos"}`
			s.Want = state.TaskBlockedByFailures
		}
		specs = append(specs, s)
	}
	return specs
}

// submitter creates the load's tasks through orchestration.CreateTask on the host connection,
// spread over a duration, retrying through database outages (the idempotency key makes a retry
// after an ambiguous commit find the task instead of creating a second one).
type submitter struct {
	o       *orchestration.Orchestrator
	pool    *pgxpool.Pool
	retries atomic.Int64
	done    atomic.Int64
}

func (s *submitter) run(ctx context.Context, specs []*taskSpec, over time.Duration) error {
	interval := over / time.Duration(max(len(specs), 1))
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	sem := make(chan struct{}, 8)
	start := time.Now()
	for i, spec := range specs {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.create(ctx, spec); err != nil {
				errs <- fmt.Errorf("task %d (%s): %w", i, spec.Kind, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (s *submitter) create(ctx context.Context, spec *taskSpec) error {
	key := spec.Key
	req := orchestration.TaskRequest{
		Namespace: spec.Namespace, Name: spec.Name, Version: "1.0.0", Context: json.RawMessage(spec.Context),
		Initiator: "chaos-test", SourceSystem: "tasker-go-chaos", Reason: "chaos " + spec.Kind, IdempotencyKey: &key,
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		created, err := s.o.CreateTask(ctx, req)
		if err == nil {
			spec.TaskUUID, spec.Created = created.TaskUUID, time.Now()
			s.done.Add(1)
			return nil
		}
		var dup *orchestration.DuplicateTaskError
		if errors.As(err, &dup) {
			// An earlier attempt committed although its answer was lost.
			if err := s.pool.QueryRow(ctx, `SELECT task_uuid FROM tasker.tasks WHERE identity_hash = $1`, dup.IdentityHash).Scan(&spec.TaskUUID); err != nil {
				return fmt.Errorf("find task after duplicate: %w", err)
			}
			spec.Created = time.Now()
			s.done.Add(1)
			return nil
		}
		var ve *orchestration.ValidationError
		var nf *orchestration.TemplateNotFoundError
		if errors.As(err, &ve) || errors.As(err, &nf) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		s.retries.Add(1)
		time.Sleep(500 * time.Millisecond)
	}
}
