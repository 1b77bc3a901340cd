package exhandlers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/handlers/handlertest"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

const templatesDir = "../templates"

func loadTemplates(t *testing.T) map[string]*template.TaskTemplate {
	t.Helper()
	ts, err := template.LoadDir(templatesDir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	out := map[string]*template.TaskTemplate{}
	for _, tt := range ts {
		out[tt.NamespaceName+"/"+tt.Name] = tt
	}
	return out
}

func TestEveryTemplateCallableIsRegistered(t *testing.T) {
	reg := testRegistry(t)
	used := map[string]bool{}
	for key, tt := range loadTemplates(t) {
		for _, s := range tt.Steps {
			used[s.Handler.Callable] = true
			def := protocol.HandlerDefinition{Callable: s.Handler.Callable}
			if s.Handler.Method != nil {
				def.Method = *s.Handler.Method
			}
			if _, err := reg.Resolve(def); err != nil {
				t.Errorf("%s step %s: %v", key, s.Name, err)
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("no callables found in the templates")
	}
	// Nothing registered that no template uses, and Callables matches the registry.
	names := Callables()
	if got, want := slices.Sorted(slices.Values(names)), reg.List(); !slices.Equal(got, want) {
		t.Errorf("Callables() = %v, registry = %v", got, want)
	}
	for _, n := range names {
		if !used[n] {
			t.Errorf("%s is registered but no template uses it", n)
		}
	}
	if len(names) != 45 {
		t.Errorf("%d callables, want 45", len(names))
	}
	if err := Register(reg); err == nil {
		t.Error("registering twice should fail")
	}
}

// ---- a minimal in-memory orchestrator over the real templates ----

type simStep struct {
	name, templateName string
	deps               []string
	inputs             json.RawMessage
	attempts           *int32
	executions         int
	state              string // "", "complete", "error"
}

type simulation struct {
	t       *testing.T
	tmpl    *template.TaskTemplate
	defs    map[string]protocol.StepDefinition
	context json.RawMessage
	reg     *handlers.Registry
	steps   map[string]*simStep
	order   []string
	results map[string]protocol.StepExecutionResult
}

func simulate(t *testing.T, tmpl *template.TaskTemplate, ctx string) *simulation {
	t.Helper()
	s := &simulation{t: t, tmpl: tmpl, defs: map[string]protocol.StepDefinition{}, context: json.RawMessage(ctx),
		reg: testRegistry(t), steps: map[string]*simStep{}, results: map[string]protocol.StepExecutionResult{}}
	for _, sd := range tmpl.Steps {
		def, err := handlertest.StepDefinition(sd)
		if err != nil {
			t.Fatal(err)
		}
		s.defs[sd.Name] = def
	}
	for _, sd := range tmpl.InitialStepSet() {
		s.create(sd.Name, sd.Name, sd.Dependencies, nil)
	}
	s.run()
	return s
}

func (s *simulation) create(name, templateName string, deps []string, inputs json.RawMessage) {
	if _, dup := s.steps[name]; dup {
		return
	}
	if inputs == nil {
		inputs = mustMarshal(s.t, s.defs[templateName].Handler.Initialization)
	}
	s.steps[name] = &simStep{name: name, templateName: templateName, deps: slices.Clone(deps), inputs: inputs}
	s.order = append(s.order, name)
}

// ancestors are every step reachable through dependencies (tasker-core hydrates them all).
func (s *simulation) ancestors(name string, into map[string]bool) {
	for _, d := range s.steps[name].deps {
		if !into[d] {
			into[d] = true
			s.ancestors(d, into)
		}
	}
}

func (s *simulation) ready(st *simStep) bool {
	if st.state != "" {
		return false
	}
	for _, d := range st.deps {
		if s.steps[d] == nil || s.steps[d].state != "complete" {
			return false
		}
	}
	return true
}

func (s *simulation) run() {
	for progress := true; progress; {
		progress = false
		for _, name := range slices.Clone(s.order) {
			if st := s.steps[name]; s.ready(st) {
				s.execute(st)
				progress = true
			}
		}
	}
}

func (s *simulation) execute(st *simStep) {
	def := s.defs[st.templateName]
	anc := map[string]bool{}
	s.ancestors(st.name, anc)
	deps := map[string]protocol.StepExecutionResult{}
	for a := range anc {
		deps[a] = s.results[a]
	}
	stepUUID := uuid.NewSHA1(uuid.NameSpaceOID, []byte(st.name))
	for {
		seq := protocol.TaskSequenceStep{
			Task: protocol.TaskForOrchestration{Task: protocol.Task{TaskUUID: uuid.New(), Context: s.context},
				TaskName: s.tmpl.Name, TaskVersion: s.tmpl.Version, NamespaceName: s.tmpl.NamespaceName},
			WorkflowStep: protocol.WorkflowStepWithName{WorkflowStepUUID: stepUUID, Name: st.name, TemplateStepName: st.templateName,
				Attempts: st.attempts, Inputs: st.inputs},
			DependencyResults: deps,
			StepDefinition:    def,
		}
		h, err := s.reg.Resolve(def.Handler)
		if err != nil {
			s.t.Fatalf("%s: %v", st.name, err)
		}
		res := handlers.ToExecutionResult(stepUUID, handlers.Run(context.Background(), h, handlers.NewStepContext(seq)), 0)
		// Claiming increments attempts after the handler was hydrated (tasker-core's order).
		next := int32(1)
		if st.attempts != nil {
			next = *st.attempts + 1
		}
		st.attempts = &next
		st.executions++
		s.results[st.name] = res
		if res.Success {
			st.state = "complete"
			s.afterSuccess(st, res)
			return
		}
		step := s.tmpl.Step(st.templateName)
		if !(step.Retry.Retryable && res.Metadata.Retryable && next < int32(step.Retry.MaxAttempts)) {
			st.state = "error"
			return
		}
	}
}

// afterSuccess creates the steps a decision or batchable outcome asks for, and their
// convergence steps (declared dependencies ∩ created steps).
func (s *simulation) afterSuccess(st *simStep, res protocol.StepExecutionResult) {
	var created []string
	sourceTemplates := map[string]bool{}
	switch s.defs[st.templateName].EffectiveStepType() {
	case protocol.StepTypeDecision:
		o, found, err := protocol.DecisionOutcomeFromResult(res.Result)
		if !found || err != nil {
			s.t.Fatalf("%s: decision outcome %v %v", st.name, found, err)
		}
		for _, n := range o.StepNames {
			s.create(n, n, s.tmpl.Step(n).Dependencies, nil)
			created = append(created, n)
			sourceTemplates[n] = true
		}
	case protocol.StepTypeBatchable:
		o, found, err := protocol.BatchOutcomeFromResult(res.Result)
		if !found || err != nil {
			s.t.Fatalf("%s: batch outcome %v %v", st.name, found, err)
		}
		workerTemplate := o.WorkerTemplateName
		configs := o.CursorConfigs
		noOp := o.Type == protocol.BatchNoBatches
		if noOp {
			if err := json.Unmarshal(s.defs[st.templateName].Handler.Initialization["worker_template_name"], &workerTemplate); err != nil {
				s.t.Fatalf("%s: no worker_template_name: %v", st.name, err)
			}
			configs = []protocol.CursorConfig{protocol.NoOpCursorConfig()}
		}
		wt := s.tmpl.Step(workerTemplate)
		for _, cfg := range configs {
			in := protocol.BatchWorkerInputs{Cursor: cfg, IsNoOp: noOp, TemplateStepName: workerTemplate,
				BatchMetadata: protocol.BatchMetadata{CursorField: wt.BatchConfig.CursorField, FailureStrategy: protocol.FailureStrategy(wt.BatchConfig.FailureStrategy)}}
			merged, err := in.MergeInto(s.defs[workerTemplate].Handler.Initialization)
			if err != nil {
				s.t.Fatal(err)
			}
			name := workerTemplate + "_" + cfg.BatchID
			s.create(name, workerTemplate, []string{st.name}, mustMarshal(s.t, merged))
			created = append(created, name)
		}
		sourceTemplates[workerTemplate] = true
	default:
		return
	}
	for _, sd := range s.tmpl.Steps {
		if sd.Type != template.StepDeferredConvergence {
			continue
		}
		var deps []string
		for _, d := range sd.Dependencies {
			if !sourceTemplates[d] {
				continue
			}
			for _, c := range created {
				if s.steps[c].templateName == d {
					deps = append(deps, c)
				}
			}
		}
		if len(deps) > 0 {
			s.create(sd.Name, sd.Name, deps, nil)
		}
	}
}

// names lists the created steps, sorted.
func (s *simulation) names() []string { return slices.Sorted(maps.Keys(s.steps)) }

// out is a completed step's result JSON.
func (s *simulation) out(name string) []byte {
	s.t.Helper()
	st := s.steps[name]
	if st == nil || st.state != "complete" {
		s.t.Fatalf("step %s not complete (%v); steps %v", name, st, s.names())
	}
	return s.results[name].Result
}

func (s *simulation) allComplete() {
	s.t.Helper()
	for _, n := range s.order {
		if st := s.steps[n]; st.state != "complete" {
			r := s.results[n]
			msg := ""
			if r.Error != nil {
				msg = r.Error.Message
			}
			s.t.Errorf("step %s state %q: %s", n, st.state, msg)
		}
	}
}

func TestWorkflowsEndToEnd(t *testing.T) {
	ts := loadTemplates(t)

	t.Run("linear", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_linear/mathematical_sequence"], `{"even_number":6,"_test_run_id":"x"}`)
		s.allComplete()
		if got := string(s.out("linear_step_4")); got != "2821109907456" || len(s.names()) != 4 {
			t.Errorf("linear_step_4 = %s, steps %v", got, s.names())
		}
	})
	t.Run("diamond", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_diamond/diamond_pattern"], `{"even_number":6}`)
		s.allComplete()
		if got := string(s.out("diamond_end")); got != "2821109907456" {
			t.Errorf("diamond_end = %s", got)
		}
	})
	t.Run("tree", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_tree/hierarchical_tree"], `{"even_number":6}`)
		s.allComplete()
		if got := string(s.out("tree_final_convergence")); got != `"63340286662973277706162286946811886609896461828096"` || len(s.names()) != 8 {
			t.Errorf("tree final = %s, %d steps", got, len(s.names()))
		}
	})
	t.Run("mixed_dag", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_mixed_dag/complex_dag"], `{"even_number":2}`)
		s.allComplete()
		if got := string(s.out("dag_finalize")); got != `"18446744073709551616"` || len(s.names()) != 7 {
			t.Errorf("dag_finalize = %s, %d steps", got, len(s.names()))
		}
	})
	t.Run("order_fulfillment", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_order_fulfillment/business_workflow"], e2eOrder)
		s.allComplete()
		if num(t, s.out("validate_order"), "order_total") != "209.97" ||
			num(t, s.out("reserve_inventory"), "total_reserved_value") != "209.97" ||
			num(t, s.out("process_payment"), "gateway_response", "gateway_fee") != "6.09" ||
			path(t, s.out("ship_order"), "carrier") != "UPS" || num(t, s.out("ship_order"), "shipping_cost") != "0.09" {
			t.Error("order fulfillment values differ from README")
		}
	})
	t.Run("conditional_approval", func(t *testing.T) {
		for _, c := range []struct {
			ctx   string
			steps []string
			final string
		}{
			{`{"amount":500,"requester":"john.doe","purpose":"Office supplies purchase"}`,
				[]string{"auto_approve", "finalize_approval", "routing_decision", "validate_request"},
				`{"chain":["automatic"],"by":["system"],"path":"auto"}`},
			{`{"amount":3000,"requester":"jane.smith","purpose":"Equipment upgrade"}`,
				[]string{"finalize_approval", "manager_approval", "routing_decision", "validate_request"},
				`{"chain":["manager"],"by":["manager_rust_example"],"path":"manager_only"}`},
			{`{"amount":10000,"requester":"bob.johnson","purpose":"Major infrastructure investment"}`,
				[]string{"finalize_approval", "finance_review", "manager_approval", "routing_decision", "validate_request"},
				`{"chain":["finance","manager"],"by":["manager_rust_example","finance_rust_example"],"path":"dual_approval"}`},
		} {
			s := simulate(t, ts["conditional_approval_rust/approval_routing"], c.ctx)
			s.allComplete()
			if !slices.Equal(s.names(), c.steps) {
				t.Errorf("%s: steps %v, want %v", c.ctx, s.names(), c.steps)
			}
			f := s.out("finalize_approval")
			assertJSON(t, mustMarshal(t, map[string]any{"chain": path(t, f, "approval_chain"), "by": path(t, f, "approved_by"),
				"path": path(t, f, "approval_path")}), c.final)
		}
		if n := len(ts["conditional_approval_rust/approval_routing"].InitialStepSet()); n != 2 {
			t.Errorf("steps at creation = %d, want 2", n)
		}
	})
	t.Run("batch_csv", func(t *testing.T) {
		s := simulate(t, ts["csv_processing_rust/csv_product_inventory_analyzer"],
			fmt.Sprintf(`{"csv_file_path":%q,"analysis_mode":"inventory"}`, productsPath(t, "products.csv")))
		s.allComplete()
		want := []string{"aggregate_csv_results", "analyze_csv", "process_csv_batch_001", "process_csv_batch_002",
			"process_csv_batch_003", "process_csv_batch_004", "process_csv_batch_005"}
		if !slices.Equal(s.names(), want) {
			t.Errorf("steps %v", s.names())
		}
		agg := s.out("aggregate_csv_results")
		if num(t, agg, "total_processed") != "1000" || num(t, agg, "worker_count") != "5" ||
			num(t, agg, "total_inventory_value") != "35588046.99999999" || path(t, agg, "max_price_product") != "Rolex Submariner Watch" {
			t.Errorf("aggregate %s", agg)
		}
		assertJSON(t, mustMarshal(t, path(t, agg, "category_counts")), wantCategoryCounts)

		empty := simulate(t, ts["csv_processing_rust/csv_product_inventory_analyzer"],
			fmt.Sprintf(`{"csv_file_path":%q}`, productsPath(t, "products_empty.csv")))
		empty.allComplete()
		if !slices.Equal(empty.names(), []string{"aggregate_csv_results", "analyze_csv", "process_csv_batch_000"}) {
			t.Errorf("empty CSV steps %v", empty.names())
		}
	})
	t.Run("batch_dataset", func(t *testing.T) {
		for n, want := range map[int]struct {
			workers int
			agg     string
		}{
			50:   {0, `{"total_processed":50,"worker_count":0,"total_checkpoints":0,"aggregation_type":"sum","validation_passed":true}`},
			500:  {0, `{"total_processed":500,"worker_count":0,"total_checkpoints":0,"aggregation_type":"sum","validation_passed":true}`},
			1500: {2, `{"total_processed":1500,"worker_count":2,"total_checkpoints":16,"aggregation_type":"sum","validation_passed":true}`},
			5000: {5, `{"total_processed":5000,"worker_count":5,"total_checkpoints":50,"aggregation_type":"sum","validation_passed":true}`},
		} {
			s := simulate(t, ts["data_processing/large_dataset_processor"], fmt.Sprintf(`{"dataset_size":%d}`, n))
			s.allComplete()
			assertJSON(t, s.out("aggregate_results"), want.agg)
			steps := 2 + max(want.workers, 1) // analyzer, aggregator, workers or the placeholder
			if len(s.names()) != steps {
				t.Errorf("N=%d: steps %v", n, s.names())
			}
		}
	})
	t.Run("retry_mechanics", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_retry/retry_mechanics_test"], `{"test_id":"retry-1"}`)
		s.allComplete()
		st := s.steps["fail_twice_then_succeed"]
		if got := num(t, s.out("fail_twice_then_succeed"), "attempts_before_success"); got != "3" || st.executions != 4 || *st.attempts != 4 {
			t.Errorf("attempts_before_success %s after %d executions (attempts %d)", got, st.executions, *st.attempts)
		}
	})
	t.Run("retry_exhaustion", func(t *testing.T) {
		s := simulate(t, ts["rust_e2e_retry/retry_exhaustion_test"], `{}`)
		st := s.steps["always_fail"]
		if st.state != "error" || st.executions != 3 || *s.results["always_fail"].Metadata.ErrorCode != "SIMULATED_FAILURE" {
			t.Errorf("always_fail state %q after %d executions", st.state, st.executions)
		}
	})
	t.Run("permanent_failure", func(t *testing.T) {
		s := simulate(t, ts["test_errors/permanent_error_only"], `{}`)
		st := s.steps["permanent_error_step"]
		if st.state != "error" || st.executions != 1 || *s.results["permanent_error_step"].Metadata.ErrorCode != "INVALID_PAYMENT_METHOD" {
			t.Errorf("permanent_error_step state %q after %d executions", st.state, st.executions)
		}
	})
	t.Run("domain_events", func(t *testing.T) {
		s := simulate(t, ts["domain_events_rust/domain_event_publishing"],
			`{"order_id":"0195b6a0-1111-7000-8000-00000000abcd","customer_id":"cust-1","amount":199.99,"simulate_failure":false}`)
		s.allComplete()
		if len(s.names()) != 4 || path(t, s.out("domain_events_send_notification"), "recipient") != "cust-1" {
			t.Errorf("steps %v", s.names())
		}
		failing := simulate(t, ts["domain_events_rust/domain_event_publishing"],
			`{"order_id":"0195b6a0-1111-7000-8000-00000000abcd","customer_id":"cust-1","amount":5,"simulate_failure":true}`)
		if st := failing.steps["domain_events_process_payment"]; st.state != "error" || st.executions != 3 {
			t.Errorf("payment with simulate_failure: state %q after %d executions", st.state, st.executions)
		}
	})
}
