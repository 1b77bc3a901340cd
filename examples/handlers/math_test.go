package exhandlers

import (
	"fmt"
	"math/big"
	"strconv"
	"testing"
)

// runChain runs callables in order, feeding every earlier result to later steps as an ancestor
// named by stepNames (all transitive ancestors are visible, as in tasker-core).
func runChain(t *testing.T, ctx string, callables, stepNames []string) map[string]string {
	t.Helper()
	results := map[string]string{}
	for i, c := range callables {
		opts := []stepOpt{withContext(ctx), withName(stepNames[i])}
		for name, res := range results {
			opts = append(opts, withDep(name, res))
		}
		results[stepNames[i]] = string(output(t, call(t, c, opts...)))
	}
	return results
}

func TestLinearWorkflowValues(t *testing.T) {
	callables := []string{"linear_workflow.step_1", "linear_workflow.step_2", "linear_workflow.step_3", "linear_workflow.step_4"}
	names := []string{"linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"}
	for n, want := range map[int][]string{
		6:  {"36", "1296", "1679616", "2821109907456"},
		8:  {"64", "4096", "16777216", "281474976710656"},
		10: {"100", "10000", "100000000", "10000000000000000"},
		14: {"196", "38416", "1475789056", "2177953337809371136"},
	} {
		got := runChain(t, fmt.Sprintf(`{"even_number": %d}`, n), callables, names)
		for i, name := range names {
			if got[name] != want[i] {
				t.Errorf("n=%d %s = %s, want %s", n, name, got[name], want[i])
			}
		}
	}
}

func TestLinearBeyondInt64IsExact(t *testing.T) {
	// 16¹⁶ = 2⁶⁴ is the first linear result past int64 (tasker-core's i64 wraps it to 0): it is
	// the exact decimal string; step_3 still fits and stays a JSON integer.
	got := runChain(t, `{"even_number": 16}`, []string{"linear_workflow.step_1", "linear_workflow.step_2", "linear_workflow.step_3", "linear_workflow.step_4"},
		[]string{"linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"})
	if got["linear_step_3"] != "4294967296" || got["linear_step_4"] != `"18446744073709551616"` {
		t.Errorf("n=16: step_3 %s step_4 %s, want 4294967296 and \"18446744073709551616\"", got["linear_step_3"], got["linear_step_4"])
	}
	// 18⁸ squared = 18¹⁶.
	want := new(big.Int).Exp(big.NewInt(18), big.NewInt(16), nil)
	r := call(t, "linear_workflow.step_4", withDep("linear_step_3", "11019960576"))
	if out := string(output(t, r)); out != strconv.Quote(want.String()) {
		t.Errorf("18⁸ squared = %s, want %q", out, want)
	}
}

func TestRootStepValidation(t *testing.T) {
	for _, callable := range []string{"linear_workflow.step_1", "diamond_workflow.start", "tree_workflow.root", "mixed_dag_workflow.init"} {
		ser := assertFailure(t, call(t, callable, withContext(`{"even_number": 7}`)), "VALIDATION_ERROR", "ValidationError", false)
		if string(ser.Metadata.Context["input"]) != "7" {
			t.Errorf("%s: context %v", callable, ser.Metadata.Context)
		}
		for _, ctx := range []string{`{}`, `{"even_number": null}`, `{"even_number": "6"}`, `{"even_number": 6.5}`, `{"even_number": 1e-400}`} {
			assertFailure(t, call(t, callable, withContext(ctx)), "MISSING_CONTEXT_FIELD", "ValidationError", false)
		}
		// input_schema's "integer" accepts 6.0, so the handler reads any integral spelling exactly.
		for _, ctx := range []string{`{"even_number": 6.0}`, `{"even_number": 6e0}`, `{"even_number": 600e-2}`, `{"even_number": 0.6E1}`} {
			if out := string(output(t, call(t, callable, withContext(ctx)))); out != "36" {
				t.Errorf("%s(%s) = %s, want 36", callable, ctx, out)
			}
		}
		if out := string(output(t, call(t, callable, withContext(`{"even_number": -4}`)))); out != "16" {
			t.Errorf("%s(-4) = %s", callable, out)
		}
	}
}

func TestMissingDependencyIsRetryable(t *testing.T) {
	cases := map[string][]string{
		"linear_workflow.step_2":           {"linear_step_1"},
		"diamond_workflow.end":             {"diamond_branch_b", "diamond_branch_c"},
		"tree_workflow.final_convergence":  {"tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"},
		"mixed_dag_workflow.finalize":      {"dag_validate", "dag_transform", "dag_analyze"},
		"mixed_dag_workflow.validate":      {"dag_process_left", "dag_process_right"},
		"mixed_dag_workflow.transform":     {"dag_process_left"},
		"mixed_dag_workflow.analyze":       {"dag_process_right"},
		"tree_workflow.leaf_g":             {"tree_branch_right"},
		"diamond_workflow.branch_c":        {"diamond_start"},
		"mixed_dag_workflow.process_right": {"dag_init"},
	}
	for callable, deps := range cases {
		// Each parent missing in turn (the others present), and a non-integer parent result.
		for skip := range deps {
			var opts []stepOpt
			for i, d := range deps {
				if i != skip {
					opts = append(opts, withDep(d, "4"))
				}
			}
			ser := assertFailure(t, call(t, callable, opts...), "MISSING_DEPENDENCY", "DependencyError", true)
			if got := string(ser.Metadata.Context["required_step"]); got != strconv.Quote(deps[skip]) {
				t.Errorf("%s: required_step %s, want %s", callable, got, deps[skip])
			}
		}
		for _, bad := range []string{`"four"`, `"4.0"`, `"+4"`, `""`, `4.5`, `true`, `{"result": 4}`} {
			opts := []stepOpt{}
			for _, d := range deps {
				opts = append(opts, withDep(d, bad))
			}
			assertFailure(t, call(t, callable, opts...), "MISSING_DEPENDENCY", "DependencyError", true)
		}
	}
}

func TestDiamondValues(t *testing.T) {
	names := []string{"diamond_start", "diamond_branch_b", "diamond_branch_c", "diamond_end"}
	callables := []string{"diamond_workflow.start", "diamond_workflow.branch_b", "diamond_workflow.branch_c", "diamond_workflow.end"}
	got := runChain(t, `{"even_number": 6}`, callables, names)
	for name, want := range map[string]string{"diamond_start": "36", "diamond_branch_b": "1296", "diamond_branch_c": "1296", "diamond_end": "2821109907456"} {
		if got[name] != want {
			t.Errorf("%s = %s, want %s", name, got[name], want)
		}
	}
	end := call(t, "diamond_workflow.end", withDep("diamond_branch_b", "1296"), withDep("diamond_branch_c", "1296"))
	if end.Metadata["multiplied"] != int64(1679616) {
		t.Errorf("multiplied = %v", end.Metadata["multiplied"])
	}
	if b := call(t, "diamond_workflow.branch_b", withDep("diamond_start", "36")); b.Metadata["branch"] != "left" {
		t.Errorf("branch_b metadata %v", b.Metadata)
	}
	if c := call(t, "diamond_workflow.branch_c", withDep("diamond_start", "36")); c.Metadata["branch"] != "right" {
		t.Errorf("branch_c metadata %v", c.Metadata)
	}
	if got := runChain(t, `{"even_number": 8}`, callables, names)["diamond_end"]; got != "281474976710656" {
		t.Errorf("n=8 end = %s", got)
	}
}

func TestTreeValues(t *testing.T) {
	callables := []string{"tree_workflow.root", "tree_workflow.branch_left", "tree_workflow.branch_right",
		"tree_workflow.leaf_d", "tree_workflow.leaf_e", "tree_workflow.leaf_f", "tree_workflow.leaf_g", "tree_workflow.final_convergence"}
	names := []string{"tree_root", "tree_branch_left", "tree_branch_right", "tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g", "tree_final_convergence"}
	got := runChain(t, `{"even_number": 6}`, callables, names)
	for _, leaf := range names[3:7] {
		if got[leaf] != "1679616" {
			t.Errorf("%s = %s, want 1679616", leaf, got[leaf])
		}
	}
	if want := `"63340286662973277706162286946811886609896461828096"`; got["tree_final_convergence"] != want {
		t.Errorf("final = %s, want %s", got["tree_final_convergence"], want)
	}
	final := call(t, "tree_workflow.final_convergence", withDep("tree_leaf_d", "1679616"), withDep("tree_leaf_e", "1679616"),
		withDep("tree_leaf_f", "1679616"), withDep("tree_leaf_g", "1679616"))
	if final.Metadata["multiplied"] != "7958661109946400884391936" {
		t.Errorf("multiplied = %v", final.Metadata["multiplied"])
	}
	if got := runChain(t, `{"even_number": 4}`, callables, names)["tree_final_convergence"]; got != `"340282366920938463463374607431768211456"` {
		t.Errorf("n=4 final = %s, want 2^128", got)
	}
	neg := call(t, "tree_workflow.final_convergence", withDep("tree_leaf_d", "-1"), withDep("tree_leaf_e", "1"),
		withDep("tree_leaf_f", "1"), withDep("tree_leaf_g", "1"))
	assertFailure(t, neg, "NEGATIVE_LEAF_RESULT", "PermanentError", false)
}

func TestMixedDAGValues(t *testing.T) {
	callables := []string{"mixed_dag_workflow.init", "mixed_dag_workflow.process_left", "mixed_dag_workflow.process_right",
		"mixed_dag_workflow.validate", "mixed_dag_workflow.transform", "mixed_dag_workflow.analyze", "mixed_dag_workflow.finalize"}
	names := []string{"dag_init", "dag_process_left", "dag_process_right", "dag_validate", "dag_transform", "dag_analyze", "dag_finalize"}
	for n, want := range map[int]map[string]string{
		2: {"dag_init": "4", "dag_process_left": "16", "dag_process_right": "16", "dag_validate": "65536",
			"dag_transform": "256", "dag_analyze": "256", "dag_finalize": `"18446744073709551616"`},
		6: {"dag_init": "36", "dag_process_left": "1296", "dag_process_right": "1296", "dag_validate": "2821109907456",
			"dag_transform": "1679616", "dag_analyze": "1679616", "dag_finalize": `"63340286662973277706162286946811886609896461828096"`},
		4: {"dag_finalize": `"340282366920938463463374607431768211456"`},
	} {
		got := runChain(t, fmt.Sprintf(`{"even_number": %d}`, n), callables, names)
		for name, w := range want {
			if got[name] != w {
				t.Errorf("n=%d %s = %s, want %s", n, name, got[name], w)
			}
		}
	}
	v := call(t, "mixed_dag_workflow.validate", withDep("dag_process_left", "1296"), withDep("dag_process_right", "1296"))
	if v.Metadata["multiplied"] != int64(1679616) {
		t.Errorf("validate multiplied = %v", v.Metadata["multiplied"])
	}
	// n = 2: the product 2³² is exact; its metadata is a decimal string.
	f := call(t, "mixed_dag_workflow.finalize", withDep("dag_validate", "65536"), withDep("dag_transform", "256"), withDep("dag_analyze", "256"))
	if f.Metadata["multiplied"] != "4294967296" {
		t.Errorf("finalize multiplied = %v", f.Metadata["multiplied"])
	}
	// Exact arithmetic: no u128 saturation (tasker-core reports 2¹²⁸−1 here) and no sign tricks.
	f = call(t, "mixed_dag_workflow.finalize", withDep("dag_validate", "-1"), withDep("dag_transform", "1"), withDep("dag_analyze", "1"))
	if out := string(output(t, f)); out != `"1"` {
		t.Errorf("finalize(-1,1,1) = %s, want \"1\"", out)
	}
}
