package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/worker"
)

// scCounter counts handler invocations per step: it wraps the registry the worker resolves from.
type scCounter struct {
	reg *handlers.Registry
	mu  sync.Mutex
	n   map[uuid.UUID]int
}

func (c *scCounter) ResolveWithFallback(def protocol.HandlerDefinition, fallbacks ...string) (handlers.Handler, error) {
	h, err := c.reg.ResolveWithFallback(def, fallbacks...)
	if err != nil {
		return nil, err
	}
	return handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		c.mu.Lock()
		c.n[s.StepUUID()]++
		c.mu.Unlock()
		return h.Call(ctx, s)
	}), nil
}

func (c *scCounter) calls(step uuid.UUID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[step]
}

type scSystem struct {
	pool  *pgxpool.Pool
	orchs []*orchestration.Orchestrator
	count *scCounter
}

// scStart registers the example templates and runs `workers` workers and `orchs`
// orchestrators (all namespaces) in this process until the test ends.
func scStart(t *testing.T, workers, orchs int) *scSystem {
	t.Helper()
	_, pool := testdb.New(t)
	ctx := context.Background()
	_, nss, err := worker.LoadAndRegisterTemplates(ctx, pool, filepath.Join("..", "examples", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	reg := handlers.NewRegistry()
	if err := exhandlers.Register(reg); err != nil {
		t.Fatal(err)
	}
	sys := &scSystem{pool: pool, count: &scCounter{reg: reg, n: map[uuid.UUID]int{}}}
	for range orchs {
		sys.orchs = append(sys.orchs, orchNew(t, pool, func(c *orchestration.Config) {
			c.ReadinessInterval = 100 * time.Millisecond
			c.PollInterval = 200 * time.Millisecond
			c.Backoff.Max = 2 * time.Second
		}))
		orchRun(t, sys.orchs[len(sys.orchs)-1])
	}
	for range workers {
		wkStartResolver(t, pool, nss, sys.count, func(c *worker.Config) { c.Concurrency = 8 })
	}
	return sys
}

// wkStartResolver runs a worker with an explicit resolver until the test ends.
func wkStartResolver(t *testing.T, pool *pgxpool.Pool, nss []string, res worker.Resolver, mod func(*worker.Config)) {
	t.Helper()
	cfg := worker.DefaultConfig()
	cfg.Namespaces = nss
	cfg.PollInterval = 100 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	w, err := worker.New(cfg, pool, res, worker.WithLogger(orchLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, "worker", w.Run)
}

// scRun creates a task and waits until it is final or blocked; it returns the task status.
func (s *scSystem) scRun(t *testing.T, ns, name, ctxJSON string, within time.Duration) *orchestration.TaskStatus {
	t.Helper()
	key := uuid.Must(uuid.NewV7()).String()
	created, err := s.orchs[0].CreateTask(context.Background(), orchestration.TaskRequest{
		Namespace: ns, Name: name, Version: "1.0.0", Context: json.RawMessage(ctxJSON),
		Initiator: "integration-test", SourceSystem: "test", Reason: t.Name(), IdempotencyKey: &key,
	})
	if err != nil {
		t.Fatalf("create %s/%s: %v", ns, name, err)
	}
	orchWaitTask(t, s.pool, created.TaskUUID, within, state.TaskComplete, state.TaskBlockedByFailures, state.TaskError)
	st, err := s.orchs[0].TaskStatus(context.Background(), created.TaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// scSteps indexes a task's steps by name.
func scSteps(st *orchestration.TaskStatus) map[string]orchestration.StepStatus {
	m := map[string]orchestration.StepStatus{}
	for _, s := range st.Steps {
		m[s.Name] = s
	}
	return m
}

// scResult decodes a step's results.result into v.
func scResult(t *testing.T, s orchestration.StepStatus, v any) {
	t.Helper()
	var r protocol.StepExecutionResult
	if err := json.Unmarshal(s.Results, &r); err != nil {
		t.Fatalf("%s results: %v", s.Name, err)
	}
	if err := json.Unmarshal(r.Result, v); err != nil {
		t.Fatalf("%s result %s: %v", s.Name, r.Result, err)
	}
}

// scAllComplete asserts the task completed with exactly the named steps, each complete after
// one attempt and run exactly once.
func (s *scSystem) scAllComplete(t *testing.T, st *orchestration.TaskStatus, names ...string) map[string]orchestration.StepStatus {
	t.Helper()
	if st.State != state.TaskComplete {
		t.Fatalf("task %s, want complete", st.State)
	}
	steps := scSteps(st)
	var got []string
	for n := range steps {
		got = append(got, n)
	}
	sort.Strings(got)
	sort.Strings(names)
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("steps %v, want %v", got, names)
	}
	for _, sp := range st.Steps {
		if sp.State != state.StepComplete || sp.Attempts != 1 || s.count.calls(sp.StepUUID) != 1 {
			t.Fatalf("step %s: %s, attempts %d, handler calls %d; want complete, 1, 1", sp.Name, sp.State, sp.Attempts, s.count.calls(sp.StepUUID))
		}
	}
	return steps
}

func TestScenarios(t *testing.T) {
	sys := scStart(t, 1, 1)
	const wait = 60 * time.Second
	t.Run("linear", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_linear", "mathematical_sequence", `{"even_number":6}`, wait)
		steps := sys.scAllComplete(t, st, "linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4")
		for name, want := range map[string]int64{"linear_step_1": 36, "linear_step_2": 1296, "linear_step_3": 1679616, "linear_step_4": 2821109907456} {
			var got int64
			scResult(t, steps[name], &got)
			if got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
		// Task states in tasker-core's order: 3 rounds of evaluate/enqueue, then complete.
		trail := orchTaskTrail(t, sys.pool, st.TaskUUID)
		if !strings.HasPrefix(trail[0], "pending:") || !strings.HasPrefix(trail[len(trail)-1], "complete:") || len(trail) != 15 {
			t.Errorf("task trail %v", trail)
		}
	})
	t.Run("diamond", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_diamond", "diamond_pattern", `{"even_number":6}`, wait)
		steps := sys.scAllComplete(t, st, "diamond_start", "diamond_branch_b", "diamond_branch_c", "diamond_end")
		for name, want := range map[string]int64{"diamond_start": 36, "diamond_branch_b": 1296, "diamond_branch_c": 1296, "diamond_end": 2821109907456} {
			var got int64
			scResult(t, steps[name], &got)
			if got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
	})
	t.Run("tree", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_tree", "hierarchical_tree", `{"even_number":6}`, wait)
		steps := sys.scAllComplete(t, st, "tree_root", "tree_branch_left", "tree_branch_right", "tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g", "tree_final_convergence")
		var final string
		scResult(t, steps["tree_final_convergence"], &final)
		if final != "63340286662973277706162286946811886609896461828096" {
			t.Errorf("tree final = %s", final)
		}
		var leaf int64
		scResult(t, steps["tree_leaf_g"], &leaf)
		if leaf != 1679616 {
			t.Errorf("leaf = %d", leaf)
		}
	})
	t.Run("mixed_dag", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_mixed_dag", "complex_dag", `{"even_number":2}`, wait)
		steps := sys.scAllComplete(t, st, "dag_init", "dag_process_left", "dag_process_right", "dag_validate", "dag_transform", "dag_analyze", "dag_finalize")
		var validate, transform int64
		var final string
		scResult(t, steps["dag_validate"], &validate)
		scResult(t, steps["dag_transform"], &transform)
		scResult(t, steps["dag_finalize"], &final)
		if validate != 65536 || transform != 256 || final != "18446744073709551616" {
			t.Errorf("validate %d transform %d finalize %s", validate, transform, final)
		}
	})
	t.Run("order_fulfillment", func(t *testing.T) {
		t.Parallel()
		order := `{"customer":{"id":12345,"name":"John Doe","email":"john.doe@example.com"},
			"items":[{"sku":"WIDGET-001","quantity":2,"price":29.99},{"sku":"GADGET-002","quantity":1,"price":149.99}],
			"payment":{"method":"credit_card","token":"tok_1234567890abcdef"},
			"shipping":{"method":"standard","address":{"street":"123 Main St","city":"Anytown","state":"CA","zip":"12345","country":"US"}}}`
		st := sys.scRun(t, "rust_e2e_order_fulfillment", "business_workflow", order, wait)
		steps := sys.scAllComplete(t, st, "validate_order", "reserve_inventory", "process_payment", "ship_order")
		var v struct {
			OrderTotal     float64 `json:"order_total"`
			ValidatedItems []struct {
				LineTotal float64 `json:"line_total"`
			} `json:"validated_items"`
		}
		scResult(t, steps["validate_order"], &v)
		var r struct {
			Total float64 `json:"total_reserved_value"`
		}
		scResult(t, steps["reserve_inventory"], &r)
		var p struct {
			Gateway struct {
				Fee float64 `json:"gateway_fee"`
			} `json:"gateway_response"`
		}
		scResult(t, steps["process_payment"], &p)
		var s struct {
			Carrier string  `json:"carrier"`
			Cost    float64 `json:"shipping_cost"`
		}
		scResult(t, steps["ship_order"], &s)
		if v.OrderTotal != 209.97 || len(v.ValidatedItems) != 2 || v.ValidatedItems[0].LineTotal != 59.98 ||
			v.ValidatedItems[1].LineTotal != 149.99 || r.Total != 209.97 || p.Gateway.Fee != 6.09 || s.Carrier != "UPS" || s.Cost != 0.09 {
			t.Errorf("order: %+v reserve %+v payment %+v ship %+v", v, r, p, s)
		}
	})
	for _, c := range []struct {
		amount   int
		branches []string
		chain    []string
		path     string
	}{
		{500, []string{"auto_approve"}, []string{"automatic"}, "auto"},
		{3000, []string{"manager_approval"}, []string{"manager"}, "manager_only"},
		{10000, []string{"manager_approval", "finance_review"}, []string{"finance", "manager"}, "dual_approval"},
	} {
		t.Run(fmt.Sprintf("approval_%d", c.amount), func(t *testing.T) {
			t.Parallel()
			st := sys.scRun(t, "conditional_approval_rust", "approval_routing",
				fmt.Sprintf(`{"amount":%d,"requester":"jane.smith","purpose":"Equipment upgrade"}`, c.amount), wait)
			names := append([]string{"validate_request", "routing_decision", "finalize_approval"}, c.branches...)
			steps := sys.scAllComplete(t, st, names...)
			var dec struct {
				Outcome protocol.DecisionPointOutcome `json:"decision_point_outcome"`
			}
			scResult(t, steps["routing_decision"], &dec)
			if fmt.Sprint(dec.Outcome.StepNames) != fmt.Sprint(c.branches) {
				t.Errorf("decision %v, want %v", dec.Outcome.StepNames, c.branches)
			}
			var fin struct {
				Chain []string `json:"approval_chain"`
				Path  string   `json:"approval_path"`
			}
			scResult(t, steps["finalize_approval"], &fin)
			if fmt.Sprint(fin.Chain) != fmt.Sprint(c.chain) || fin.Path != c.path {
				t.Errorf("finalize %+v, want %v %s", fin, c.chain, c.path)
			}
			// The convergence step depends only on the branches that exist.
			edges := orchEdges(t, sys.pool, st.TaskUUID)
			for _, b := range c.branches {
				if !contains(edges, b+"->finalize_approval:provides") {
					t.Errorf("edges %v lack %s->finalize_approval", edges, b)
				}
			}
		})
	}
	t.Run("batch_csv", func(t *testing.T) {
		t.Parallel()
		path, _ := json.Marshal(filepath.Join(exhandlers.DataDir(), "products.csv"))
		st := sys.scRun(t, "csv_processing_rust", "csv_product_inventory_analyzer", `{"csv_file_path":`+string(path)+`,"analysis_mode":"inventory"}`, wait)
		steps := sys.scAllComplete(t, st, "analyze_csv", "process_csv_batch_001", "process_csv_batch_002", "process_csv_batch_003",
			"process_csv_batch_004", "process_csv_batch_005", "aggregate_csv_results")
		var agg struct {
			TotalProcessed int            `json:"total_processed"`
			WorkerCount    int            `json:"worker_count"`
			Value          float64        `json:"total_inventory_value"`
			MaxPrice       float64        `json:"max_price"`
			MaxProduct     string         `json:"max_price_product"`
			Categories     map[string]int `json:"category_counts"`
		}
		scResult(t, steps["aggregate_csv_results"], &agg)
		if agg.TotalProcessed != 1000 || agg.WorkerCount != 5 || agg.Value != 35588046.99999999 || agg.MaxPrice != 13999.99 ||
			agg.MaxProduct != "Rolex Submariner Watch" || agg.Categories["groceries"] != 270 || agg.Categories["kitchen-accessories"] != 300 {
			t.Errorf("aggregate %+v", agg)
		}
		var in protocol.BatchWorkerInputs
		if err := json.Unmarshal(steps["process_csv_batch_003"].Inputs, &in); err != nil || in.Cursor.BatchID != "003" ||
			string(in.Cursor.StartCursor) != "401" || string(in.Cursor.EndCursor) != "601" || in.TemplateStepName != "process_csv_batch" {
			t.Errorf("worker 003 inputs %s (%v)", steps["process_csv_batch_003"].Inputs, err)
		}
	})
	t.Run("batch_no_batches", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "data_processing", "large_dataset_processor", `{"dataset_size":500}`, wait)
		steps := sys.scAllComplete(t, st, "analyze_dataset", "process_batch_000", "aggregate_results")
		var in protocol.BatchWorkerInputs
		if err := json.Unmarshal(steps["process_batch_000"].Inputs, &in); err != nil || !in.IsNoOp {
			t.Errorf("placeholder inputs %s (%v)", steps["process_batch_000"].Inputs, err)
		}
		var agg struct {
			Total   int `json:"total_processed"`
			Workers int `json:"worker_count"`
		}
		scResult(t, steps["aggregate_results"], &agg)
		if agg.Total != 500 || agg.Workers != 0 {
			t.Errorf("aggregate %+v", agg)
		}
	})
	t.Run("retry_then_succeed", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_retry", "retry_mechanics_test", `{"test_id":"retry"}`, wait)
		s := scSteps(st)["fail_twice_then_succeed"]
		var r struct {
			AttemptsBeforeSuccess int `json:"attempts_before_success"`
		}
		scResult(t, s, &r)
		// tasker-core's handler sees the pre-claim attempts with NULL as 1: 1, 1, 2, 3 — so the
		// fourth execution succeeds and reports 3 (e2e-scenarios §2.10).
		if st.State != state.TaskComplete || s.State != state.StepComplete || s.Attempts != 4 || r.AttemptsBeforeSuccess != 3 || sys.count.calls(s.StepUUID) != 4 {
			t.Errorf("task %s step %s attempts %d calls %d result %+v", st.State, s.State, s.Attempts, sys.count.calls(s.StepUUID), r)
		}
		trail := orchStepTrail(t, sys.pool, s.StepUUID)
		if n := countOf(trail, "waiting_for_retry"); n != 3 {
			t.Errorf("step trail %v: %d waits, want 3", trail, n)
		}
	})
	t.Run("retry_exhausted", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_retry", "retry_exhaustion_test", `{}`, wait)
		s := scSteps(st)["always_fail"]
		if st.State != state.TaskBlockedByFailures || s.State != state.StepError || s.Attempts != 3 || sys.count.calls(s.StepUUID) != 3 {
			t.Errorf("task %s step %s attempts %d calls %d", st.State, s.State, s.Attempts, sys.count.calls(s.StepUUID))
		}
	})
	t.Run("permanent_failure", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "test_errors", "permanent_error_only", `{}`, wait)
		s := scSteps(st)["permanent_error_step"]
		var r protocol.StepExecutionResult
		_ = json.Unmarshal(s.Results, &r)
		if st.State != state.TaskBlockedByFailures || s.State != state.StepError || s.Attempts != 1 || r.Metadata.Retryable ||
			r.Metadata.ErrorCode == nil || *r.Metadata.ErrorCode != "INVALID_PAYMENT_METHOD" {
			t.Errorf("task %s step %s attempts %d result %s", st.State, s.State, s.Attempts, s.Results)
		}
	})
}

// TestScenarioTwoWorkersTwoOrchestrators runs 100 diamond tasks through 2 workers and 2
// orchestrators on one database: every task completes and every step's handler runs once.
func TestScenarioTwoWorkersTwoOrchestrators(t *testing.T) {
	sys := scStart(t, 2, 2)
	const n = 100
	tasks := make([]uuid.UUID, n)
	for i := range n {
		key := uuid.Must(uuid.NewV7()).String()
		created, err := sys.orchs[i%2].CreateTask(context.Background(), orchestration.TaskRequest{
			Namespace: "rust_e2e_diamond", Name: "diamond_pattern", Version: "1.0.0",
			Context: json.RawMessage(fmt.Sprintf(`{"even_number":%d}`, 2+2*(i%6))), IdempotencyKey: &key,
		})
		if err != nil {
			t.Fatal(err)
		}
		tasks[i] = created.TaskUUID
	}
	for _, task := range tasks {
		orchWaitTask(t, sys.pool, task, 120*time.Second, state.TaskComplete)
	}
	var steps, complete int
	rows, err := sys.pool.Query(context.Background(), `SELECT ws.workflow_step_uuid,
		(SELECT count(*) FROM tasker.workflow_step_transitions tr WHERE tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.to_state = 'complete')
		FROM tasker.workflow_steps ws WHERE ws.task_uuid = ANY($1)`, tasks)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uuid.UUID
		var completions int
		if err := rows.Scan(&id, &completions); err != nil {
			t.Fatal(err)
		}
		steps++
		if completions == 1 && sys.count.calls(id) == 1 {
			complete++
		} else {
			t.Errorf("step %s: %d complete transitions, %d handler calls", id, completions, sys.count.calls(id))
		}
	}
	if steps != 4*n || complete != 4*n {
		t.Fatalf("%d steps, %d completed exactly once; want %d", steps, complete, 4*n)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func countOf(xs []string, s string) int {
	n := 0
	for _, x := range xs {
		if x == s {
			n++
		}
	}
	return n
}
