package exhandlers

import (
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/handlers/handlertest"
	"github.com/tasker-go/tasker/template"
)

// The math tests run each handler on the step its example template defines (handler.callable,
// initialization, retry), as the orchestrator would create it, through the handlertest kit.

var exampleTemplates sync.Map // file name → *template.TaskTemplate

// templateStep is step name of examples/templates/<file>, resolved through Register's registry
// when run.
func templateStep(t *testing.T, file, name string) *handlertest.Step {
	t.Helper()
	v, ok := exampleTemplates.Load(file)
	if !ok {
		tmpl, err := template.LoadFile(filepath.Join(templatesDir, file))
		if err != nil {
			t.Fatal(err)
		}
		v, _ = exampleTemplates.LoadOrStore(file, tmpl)
	}
	return handlertest.FromTemplate(v.(*template.TaskTemplate), name)
}

// withDeps adds finished ancestors by name and output JSON.
func withDeps(s *handlertest.Step, deps ...string) *handlertest.Step {
	for i := 0; i+1 < len(deps); i += 2 {
		s.Dependency(deps[i], json.RawMessage(deps[i+1]))
	}
	return s
}

// runChain runs the named steps of a template in order on the task context ctx, feeding every
// earlier output to later steps as an ancestor (all transitive ancestors are visible, as in
// tasker-core), and returns each step's output JSON.
func runChain(t *testing.T, file, ctx string, names []string) map[string]string {
	t.Helper()
	reg := testRegistry(t)
	results := map[string]string{}
	for _, name := range names {
		step := templateStep(t, file, name).Context(json.RawMessage(ctx))
		for dep, out := range results {
			step.Dependency(dep, json.RawMessage(out))
		}
		results[name] = string(step.RunRegistered(t, reg).RequireSuccess())
	}
	return results
}

var (
	linearSteps  = []string{"linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"}
	diamondSteps = []string{"diamond_start", "diamond_branch_b", "diamond_branch_c", "diamond_end"}
	treeSteps    = []string{"tree_root", "tree_branch_left", "tree_branch_right", "tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g", "tree_final_convergence"}
	dagSteps     = []string{"dag_init", "dag_process_left", "dag_process_right", "dag_validate", "dag_transform", "dag_analyze", "dag_finalize"}
)

func TestLinearWorkflowValues(t *testing.T) {
	for n, want := range map[int][]string{
		6:  {"36", "1296", "1679616", "2821109907456"},
		8:  {"64", "4096", "16777216", "281474976710656"},
		10: {"100", "10000", "100000000", "10000000000000000"},
		14: {"196", "38416", "1475789056", "2177953337809371136"},
	} {
		got := runChain(t, "linear_workflow.yaml", fmt.Sprintf(`{"even_number": %d}`, n), linearSteps)
		for i, name := range linearSteps {
			if got[name] != want[i] {
				t.Errorf("n=%d %s = %s, want %s", n, name, got[name], want[i])
			}
		}
	}
}

func TestLinearBeyondInt64IsExact(t *testing.T) {
	// 16¹⁶ = 2⁶⁴ is the first linear result past int64 (tasker-core's i64 wraps it to 0): it is
	// the exact decimal string; step_3 still fits and stays a JSON integer.
	got := runChain(t, "linear_workflow.yaml", `{"even_number": 16}`, linearSteps)
	if got["linear_step_3"] != "4294967296" || got["linear_step_4"] != `"18446744073709551616"` {
		t.Errorf("n=16: step_3 %s step_4 %s, want 4294967296 and \"18446744073709551616\"", got["linear_step_3"], got["linear_step_4"])
	}
	// 18⁸ squared = 18¹⁶.
	want := new(big.Int).Exp(big.NewInt(18), big.NewInt(16), nil)
	out := withDeps(templateStep(t, "linear_workflow.yaml", "linear_step_4"), "linear_step_3", "11019960576").RunRegistered(t, testRegistry(t))
	if got := handlertest.DecodeOutput[string](out); got != want.String() {
		t.Errorf("18⁸ squared = %s, want %s", got, want)
	}
}

func TestRootStepValidation(t *testing.T) {
	reg := testRegistry(t)
	for file, root := range map[string]string{"linear_workflow.yaml": "linear_step_1", "diamond_workflow.yaml": "diamond_start",
		"tree_workflow.yaml": "tree_root", "mixed_dag_workflow.yaml": "dag_init"} {
		run := func(ctx string) *handlertest.Outcome {
			return templateStep(t, file, root).Context(json.RawMessage(ctx)).RunRegistered(t, reg)
		}
		odd := run(`{"even_number": 7}`).RequireFailure("ValidationError", false).RequireCode("VALIDATION_ERROR")
		if got := handlertest.ErrorContext[int](odd, "input"); got != 7 {
			t.Errorf("%s: context input %d", root, got)
		}
		for _, ctx := range []string{`{}`, `{"even_number": null}`, `{"even_number": "6"}`, `{"even_number": 6.5}`, `{"even_number": 1e-400}`} {
			run(ctx).RequireFailure("ValidationError", false).RequireCode("MISSING_CONTEXT_FIELD")
		}
		// input_schema's "integer" accepts 6.0, so the handler reads any integral spelling exactly.
		for _, ctx := range []string{`{"even_number": 6.0}`, `{"even_number": 6e0}`, `{"even_number": 600e-2}`, `{"even_number": 0.6E1}`, `{"even_number": -6}`} {
			if out := string(run(ctx).RequireSuccess()); out != "36" {
				t.Errorf("%s(%s) = %s, want 36", root, ctx, out)
			}
		}
	}
}

func TestMissingDependencyIsRetryable(t *testing.T) {
	reg := testRegistry(t)
	type step struct{ file, name string }
	cases := map[step][]string{
		{"linear_workflow.yaml", "linear_step_2"}:        {"linear_step_1"},
		{"diamond_workflow.yaml", "diamond_end"}:         {"diamond_branch_b", "diamond_branch_c"},
		{"tree_workflow.yaml", "tree_final_convergence"}: {"tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"},
		{"mixed_dag_workflow.yaml", "dag_finalize"}:      {"dag_validate", "dag_transform", "dag_analyze"},
		{"mixed_dag_workflow.yaml", "dag_validate"}:      {"dag_process_left", "dag_process_right"},
		{"mixed_dag_workflow.yaml", "dag_transform"}:     {"dag_process_left"},
		{"mixed_dag_workflow.yaml", "dag_analyze"}:       {"dag_process_right"},
		{"tree_workflow.yaml", "tree_leaf_g"}:            {"tree_branch_right"},
		{"diamond_workflow.yaml", "diamond_branch_c"}:    {"diamond_start"},
		{"mixed_dag_workflow.yaml", "dag_process_right"}: {"dag_init"},
	}
	for st, deps := range cases {
		// Each parent missing in turn (the others present), and a non-integer parent result.
		for skip := range deps {
			s := templateStep(t, st.file, st.name)
			for i, d := range deps {
				if i != skip {
					s.Dependency(d, 4)
				}
			}
			out := s.RunRegistered(t, reg).RequireFailure("DependencyError", true).RequireCode("MISSING_DEPENDENCY")
			if got := handlertest.ErrorContext[string](out, "required_step"); got != deps[skip] {
				t.Errorf("%s: required_step %s, want %s", st.name, got, deps[skip])
			}
		}
		for _, bad := range []string{`"four"`, `"4.0"`, `"+4"`, `""`, `4.5`, `true`, `{"result": 4}`} {
			s := templateStep(t, st.file, st.name)
			for _, d := range deps {
				s.Dependency(d, json.RawMessage(bad))
			}
			s.RunRegistered(t, reg).RequireFailure("DependencyError", true).RequireCode("MISSING_DEPENDENCY")
		}
	}
}

// metadata runs a step of file with ancestors (name, output JSON pairs) and returns its
// success's metadata.custom.
func metadata(t *testing.T, file, name string, deps ...string) map[string]any {
	t.Helper()
	out := withDeps(templateStep(t, file, name), deps...).RunRegistered(t, testRegistry(t))
	out.RequireSuccess()
	return out.Result.Metadata
}

func TestDiamondValues(t *testing.T) {
	got := runChain(t, "diamond_workflow.yaml", `{"even_number": 6}`, diamondSteps)
	for name, want := range map[string]string{"diamond_start": "36", "diamond_branch_b": "1296", "diamond_branch_c": "1296", "diamond_end": "2821109907456"} {
		if got[name] != want {
			t.Errorf("%s = %s, want %s", name, got[name], want)
		}
	}
	if md := metadata(t, "diamond_workflow.yaml", "diamond_end", "diamond_branch_b", "1296", "diamond_branch_c", "1296"); md["multiplied"] != int64(1679616) {
		t.Errorf("multiplied = %v", md["multiplied"])
	}
	if md := metadata(t, "diamond_workflow.yaml", "diamond_branch_b", "diamond_start", "36"); md["branch"] != "left" {
		t.Errorf("branch_b metadata %v", md)
	}
	if md := metadata(t, "diamond_workflow.yaml", "diamond_branch_c", "diamond_start", "36"); md["branch"] != "right" {
		t.Errorf("branch_c metadata %v", md)
	}
	if got := runChain(t, "diamond_workflow.yaml", `{"even_number": 8}`, diamondSteps)["diamond_end"]; got != "281474976710656" {
		t.Errorf("n=8 end = %s", got)
	}
}

func TestTreeValues(t *testing.T) {
	got := runChain(t, "tree_workflow.yaml", `{"even_number": 6}`, treeSteps)
	for _, leaf := range treeSteps[3:7] {
		if got[leaf] != "1679616" {
			t.Errorf("%s = %s, want 1679616", leaf, got[leaf])
		}
	}
	if want := `"63340286662973277706162286946811886609896461828096"`; got["tree_final_convergence"] != want {
		t.Errorf("final = %s, want %s", got["tree_final_convergence"], want)
	}
	md := metadata(t, "tree_workflow.yaml", "tree_final_convergence", "tree_leaf_d", "1679616", "tree_leaf_e", "1679616",
		"tree_leaf_f", "1679616", "tree_leaf_g", "1679616")
	if md["multiplied"] != "7958661109946400884391936" {
		t.Errorf("multiplied = %v", md["multiplied"])
	}
	if got := runChain(t, "tree_workflow.yaml", `{"even_number": 4}`, treeSteps)["tree_final_convergence"]; got != `"340282366920938463463374607431768211456"` {
		t.Errorf("n=4 final = %s, want 2^128", got)
	}
	withDeps(templateStep(t, "tree_workflow.yaml", "tree_final_convergence"), "tree_leaf_d", "-1", "tree_leaf_e", "1",
		"tree_leaf_f", "1", "tree_leaf_g", "1").RunRegistered(t, testRegistry(t)).
		RequireFailure("PermanentError", false).RequireCode("NEGATIVE_LEAF_RESULT")
}

func TestMixedDAGValues(t *testing.T) {
	for n, want := range map[int]map[string]string{
		2: {"dag_init": "4", "dag_process_left": "16", "dag_process_right": "16", "dag_validate": "65536",
			"dag_transform": "256", "dag_analyze": "256", "dag_finalize": `"18446744073709551616"`},
		6: {"dag_init": "36", "dag_process_left": "1296", "dag_process_right": "1296", "dag_validate": "2821109907456",
			"dag_transform": "1679616", "dag_analyze": "1679616", "dag_finalize": `"63340286662973277706162286946811886609896461828096"`},
		4: {"dag_finalize": `"340282366920938463463374607431768211456"`},
	} {
		got := runChain(t, "mixed_dag_workflow.yaml", fmt.Sprintf(`{"even_number": %d}`, n), dagSteps)
		for name, w := range want {
			if got[name] != w {
				t.Errorf("n=%d %s = %s, want %s", n, name, got[name], w)
			}
		}
	}
	if md := metadata(t, "mixed_dag_workflow.yaml", "dag_validate", "dag_process_left", "1296", "dag_process_right", "1296"); md["multiplied"] != int64(1679616) {
		t.Errorf("validate multiplied = %v", md["multiplied"])
	}
	// n = 2: the product 2³² is exact; its metadata is a decimal string.
	if md := metadata(t, "mixed_dag_workflow.yaml", "dag_finalize", "dag_validate", "65536", "dag_transform", "256", "dag_analyze", "256"); md["multiplied"] != "4294967296" {
		t.Errorf("finalize multiplied = %v", md["multiplied"])
	}
	// Exact arithmetic: no u128 saturation (tasker-core reports 2¹²⁸−1 here) and no sign tricks.
	out := withDeps(templateStep(t, "mixed_dag_workflow.yaml", "dag_finalize"), "dag_validate", "-1", "dag_transform", "1", "dag_analyze", "1").
		RunRegistered(t, testRegistry(t))
	if got := handlertest.DecodeOutput[string](out); got != "1" {
		t.Errorf("finalize(-1,1,1) = %q, want \"1\"", got)
	}
}

// The template's retry block reaches the handler: the root of the linear workflow may be retried
// three times.
func TestTemplateRetryReachesHandler(t *testing.T) {
	step := templateStep(t, "linear_workflow.yaml", "linear_step_1").Attempts(2).Build(t)
	if !step.Retryable() || step.MaxAttempts() != 3 || !step.IsLastRetry() || step.Callable() != "linear_workflow.step_1" {
		t.Errorf("retryable %v max %d last %v callable %s", step.Retryable(), step.MaxAttempts(), step.IsLastRetry(), step.Callable())
	}
	if op, err := handlers.DecodeStepInputs[struct{ Operation string }](step); err != nil || op.Operation != "square" {
		t.Errorf("step inputs %s: %v", step.StepInputs(), err)
	}
}
