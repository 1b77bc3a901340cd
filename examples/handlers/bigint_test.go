package exhandlers

import (
	"fmt"
	"math/big"
	"strconv"
	"testing"

	"github.com/tasker-go/tasker/template"
)

// pow is n^k, computed independently of the handlers.
func pow(n *big.Int, k int64) *big.Int { return new(big.Int).Exp(n, big.NewInt(k), nil) }

// wantJSON is the result encoding of v: a bare integer when it fits in int64, else a JSON
// string; always a string when asString.
func wantJSON(v *big.Int, asString bool) string {
	if v.IsInt64() && !asString {
		return v.String()
	}
	return strconv.Quote(v.String())
}

// mathWorkflow is one arithmetic template: each step's result is n^exp; finals are strings.
type mathWorkflow struct {
	key    string
	exps   map[string]int64
	finals map[string]bool
	// multiplied is, per step with metadata.custom.multiplied, that value's exponent.
	multiplied map[string]int64
}

var mathWorkflows = []mathWorkflow{
	{key: "rust_e2e_linear/mathematical_sequence",
		exps: map[string]int64{"linear_step_1": 2, "linear_step_2": 4, "linear_step_3": 8, "linear_step_4": 16}},
	{key: "rust_e2e_diamond/diamond_pattern",
		exps:       map[string]int64{"diamond_start": 2, "diamond_branch_b": 4, "diamond_branch_c": 4, "diamond_end": 16},
		multiplied: map[string]int64{"diamond_end": 8}},
	{key: "rust_e2e_tree/hierarchical_tree",
		exps: map[string]int64{"tree_root": 2, "tree_branch_left": 4, "tree_branch_right": 4, "tree_leaf_d": 8, "tree_leaf_e": 8,
			"tree_leaf_f": 8, "tree_leaf_g": 8, "tree_final_convergence": 64},
		finals:     map[string]bool{"tree_final_convergence": true},
		multiplied: map[string]int64{"tree_final_convergence": 32}},
	{key: "rust_e2e_mixed_dag/complex_dag",
		exps: map[string]int64{"dag_init": 2, "dag_process_left": 4, "dag_process_right": 4, "dag_validate": 16,
			"dag_transform": 8, "dag_analyze": 8, "dag_finalize": 64},
		finals:     map[string]bool{"dag_finalize": true},
		multiplied: map[string]int64{"dag_validate": 8, "dag_finalize": 32}},
}

// TestArithmeticWorkflowsExact runs every arithmetic template, through its input_schema and the
// in-memory orchestrator, for the schema's bounds (2, 100) and inputs whose results pass int64
// (16 is the first: 16¹⁶ = 2⁶⁴), and checks every step against n^k computed here.
func TestArithmeticWorkflowsExact(t *testing.T) {
	ts := loadTemplates(t)
	for _, wf := range mathWorkflows {
		for _, in := range []string{"2", "14", "16", "18", "98", "100", "100.0"} {
			t.Run(fmt.Sprintf("%s/n=%s", wf.key, in), func(t *testing.T) {
				ctx := `{"even_number":` + in + `}`
				if err := template.ValidateContext(ts[wf.key], []byte(ctx)); err != nil {
					t.Fatalf("input_schema refuses %s: %v", ctx, err)
				}
				n, _ := new(big.Float).SetString(in)
				nInt, _ := n.Int(nil)
				s := simulate(t, ts[wf.key], ctx)
				s.allComplete()
				if len(s.names()) != len(wf.exps) {
					t.Fatalf("steps %v", s.names())
				}
				for step, k := range wf.exps {
					want := wantJSON(pow(nInt, k), wf.finals[step])
					if got := string(s.out(step)); got != want {
						t.Errorf("%s = %s, want %s (n^%d)", step, got, want, k)
					}
				}
				for step, k := range wf.multiplied {
					want := wantJSON(pow(nInt, k), wf.finals[step])
					if got := string(s.results[step].Metadata.Custom["multiplied"]); got != want {
						t.Errorf("%s metadata multiplied = %s, want %s (n^%d)", step, got, want, k)
					}
				}
			})
		}
	}
}

// TestArithmeticSchemaRefusesUncomputable: inputs outside 2..100 (which includes everything past
// int64 and every spelling of it) are refused before a task exists.
func TestArithmeticSchemaRefusesUncomputable(t *testing.T) {
	ts := loadTemplates(t)
	for _, wf := range mathWorkflows {
		for _, in := range []string{"0", "-2", "102", "1e30", "9223372036854775808", "123456789012345678901234567890", `"16"`, "null"} {
			if err := template.ValidateContext(ts[wf.key], []byte(`{"even_number":`+in+`}`)); err == nil {
				t.Errorf("%s: input_schema accepts even_number %s", wf.key, in)
			}
		}
	}
}

// TestRootStepOutsideSchema covers contexts that reach a root step without schema validation
// (tasker-core's orchestrator does not validate input_schema): anything in int64 is exact,
// anything past it fails without retry, nothing is rounded through float64.
func TestRootStepOutsideSchema(t *testing.T) {
	for _, callable := range []string{"linear_workflow.step_1", "diamond_workflow.start", "tree_workflow.root", "mixed_dag_workflow.init"} {
		for _, in := range []string{"1e30", "1E19", "9223372036854775808", "-9223372036854775810", "123456789012345678901234567890",
			"1e999999999999", "2.0e400"} {
			ser := assertFailure(t, call(t, callable, withContext(`{"even_number":`+in+`}`)), "INPUT_OUT_OF_RANGE", "ValidationError", false)
			if string(ser.Metadata.Context["maximum"]) != "9223372036854775807" {
				t.Errorf("%s(%s): context %v", callable, in, ser.Metadata.Context)
			}
		}
		// 2⁵³+1 is odd; a float64 reading would have rounded it to the even 2⁵³.
		ser := assertFailure(t, call(t, callable, withContext(`{"even_number":9007199254740993}`)), "VALIDATION_ERROR", "ValidationError", false)
		if got := string(ser.Metadata.Context["input"]); got != "9007199254740993" {
			t.Errorf("%s: input %s", callable, got)
		}
		for _, in := range []string{"9007199254740994", "9223372036854775806", "-9223372036854775808", "4294967296", "3037000500"} {
			n, _ := new(big.Int).SetString(in, 10)
			if got, want := string(output(t, call(t, callable, withContext(`{"even_number":`+in+`}`)))), wantJSON(pow(n, 2), false); got != want {
				t.Errorf("%s(%s) = %s, want %s", callable, in, got, want)
			}
		}
		// 3037000498² still fits in int64 and stays a JSON integer.
		if got := string(output(t, call(t, callable, withContext(`{"even_number":3037000498}`)))); got != "9223372024852248004" {
			t.Errorf("%s(3037000498) = %s", callable, got)
		}
	}
	// The most negative int64 through the tree: the largest value any math step produces, 2⁴⁰³².
	got := runChain(t, "tree_workflow.yaml", `{"even_number": -9223372036854775808}`, treeSteps)
	if want := strconv.Quote(new(big.Int).Lsh(big.NewInt(1), 4032).String()); got["tree_final_convergence"] != want {
		t.Errorf("tree final for -2⁶³ = %s, want 2⁴⁰³²", got["tree_final_convergence"])
	}
}

// TestRootStepRefusedInputNeverSucceeds runs the linear template on contexts its schema would
// refuse: the first step fails once, without retry, and nothing downstream runs.
func TestRootStepRefusedInputNeverSucceeds(t *testing.T) {
	ts := loadTemplates(t)
	for _, in := range []string{"1e30", "18446744073709551616"} {
		s := simulate(t, ts["rust_e2e_linear/mathematical_sequence"], `{"even_number":`+in+`}`)
		st := s.steps["linear_step_1"]
		if st.state != "error" || st.executions != 1 || *s.results["linear_step_1"].Metadata.ErrorCode != "INPUT_OUT_OF_RANGE" || len(s.names()) != 4 {
			t.Errorf("n=%s: linear_step_1 %q after %d executions", in, st.state, st.executions)
		}
		for _, later := range []string{"linear_step_2", "linear_step_3", "linear_step_4"} {
			if s.steps[later].executions != 0 {
				t.Errorf("n=%s: %s ran", in, later)
			}
		}
	}
}

// TestIntegerTooLargeIsPermanent: a parent result or product past maxIntegerBits (which no
// int64 input produces) fails without retry instead of growing without bound.
func TestIntegerTooLargeIsPermanent(t *testing.T) {
	two := func(k uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), k) }
	q := func(v *big.Int) string { return strconv.Quote(v.String()) }
	largest := new(big.Int).Sub(two(2048), big.NewInt(1)) // 2048 bits: its square has 4096

	if got := string(output(t, call(t, "linear_workflow.step_2", withDep("linear_step_1", q(largest))))); got != q(pow(largest, 2)) {
		t.Errorf("(2²⁰⁴⁸−1)² = %s", got)
	}
	for _, parent := range []string{q(two(2048)), q(two(4096)), "1e5000", q(new(big.Int).Neg(two(3000)))} {
		assertFailure(t, call(t, "linear_workflow.step_2", withDep("linear_step_1", parent)), "INTEGER_TOO_LARGE", "PermanentError", false)
	}

	end := call(t, "diamond_workflow.end", withDep("diamond_branch_b", q(two(1023))), withDep("diamond_branch_c", q(two(1024))))
	if got := string(output(t, end)); got != q(two(4094)) || end.Metadata["multiplied"] != two(2047).String() {
		t.Errorf("diamond end = %s, multiplied %v", got, end.Metadata["multiplied"])
	}
	assertFailure(t, call(t, "diamond_workflow.end", withDep("diamond_branch_b", q(two(1024))), withDep("diamond_branch_c", q(two(1024)))),
		"INTEGER_TOO_LARGE", "PermanentError", false)

	leaves := func(v string) []stepOpt {
		return []stepOpt{withDep("tree_leaf_d", v), withDep("tree_leaf_e", v), withDep("tree_leaf_f", v), withDep("tree_leaf_g", v)}
	}
	if got := string(output(t, call(t, "tree_workflow.final_convergence", leaves(q(two(511)))...))); got != q(two(4088)) {
		t.Errorf("tree final of 2⁵¹¹ leaves = %s", got)
	}
	assertFailure(t, call(t, "tree_workflow.final_convergence", leaves(q(two(512)))...), "INTEGER_TOO_LARGE", "PermanentError", false)

	assertFailure(t, call(t, "mixed_dag_workflow.finalize", withDep("dag_validate", q(two(1500))), withDep("dag_transform", q(two(1500))),
		withDep("dag_analyze", "2")), "INTEGER_TOO_LARGE", "PermanentError", false)
}
