package exhandlers

import (
	"context"
	"math/big"

	"github.com/tasker-go/tasker/handlers"
)

// The linear, diamond, tree and mixed-DAG workflows (README "Linear" … "Mixed DAG"): a root
// squares the context's even_number and every later step squares or multiplies its parents'
// results. Results are bare JSON integers in int64, whose multiplication wraps on overflow as
// release-mode Rust does; the tree and DAG finals are decimal strings.

// inputInt64 reads an integer context field the way serde reads an i64: a missing, null,
// fractional or out-of-range value is absent.
func inputInt64(step *handlers.StepContext, key string) (int64, bool) {
	v, ok := inputValue(step, key)
	if !ok {
		return 0, false
	}
	return asInt64(v)
}

// dependencyInt64 reads an ancestor's integer result.
func dependencyInt64(step *handlers.StepContext, name string) (int64, bool) {
	raw, ok := step.DependencyValue(name)
	if !ok {
		return 0, false
	}
	v, ok := decodeValue(raw)
	if !ok {
		return 0, false
	}
	return asInt64(v)
}

// dependencyInt64s reads several ancestors' integer results; failed names the first missing one.
func dependencyInt64s(step *handlers.StepContext, names ...string) (values []int64, failed string) {
	values = make([]int64, len(names))
	for i, name := range names {
		v, ok := dependencyInt64(step, name)
		if !ok {
			return nil, name
		}
		values[i] = v
	}
	return values, ""
}

// squareEvenInput is a root step: the context's even_number squared.
func squareEvenInput(meta map[string]any) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		n, ok := inputInt64(step, "even_number")
		if !ok {
			return fail("Task context must contain an even number", errTypeValidation, "MISSING_CONTEXT_FIELD", false,
				map[string]any{"field": "even_number"})
		}
		if n%2 != 0 {
			return fail("Number must be even", errTypeValidation, "VALIDATION_ERROR", false,
				map[string]any{"input": n})
		}
		return handlers.Success(n*n, meta)
	}
}

// squareDependency squares one parent's result.
func squareDependency(parent string, meta map[string]any) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		v, ok := dependencyInt64(step, parent)
		if !ok {
			return missingDependency(parent)
		}
		return handlers.Success(v*v, meta)
	}
}

// multiplyAndSquare multiplies the parents' results and squares the product, all in int64;
// metadata.custom.multiplied is the product.
func multiplyAndSquare(meta map[string]any, parents ...string) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		values, missing := dependencyInt64s(step, parents...)
		if missing != "" {
			return missingDependency(missing)
		}
		product := int64(1)
		for _, v := range values {
			product *= v
		}
		return handlers.Success(product*product, meta, handlers.WithMetadata(map[string]any{"multiplied": product}))
	}
}

// treeFinalConvergence multiplies the four leaves as unbounded integers and squares the
// product, returning it as a decimal string (tasker-core uses BigUint, which cannot hold a
// negative leaf; that fails here without retry).
func treeFinalConvergence(_ context.Context, step *handlers.StepContext) handlers.Result {
	leaves := []string{"tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"}
	values, missing := dependencyInt64s(step, leaves...)
	if missing != "" {
		return missingDependency(missing)
	}
	product := big.NewInt(1)
	for i, v := range values {
		if v < 0 {
			return fail("Leaf result "+leaves[i]+" is negative", errTypePermanent, "NEGATIVE_LEAF_RESULT", false,
				map[string]any{"step": leaves[i], "value": v})
		}
		product.Mul(product, big.NewInt(v))
	}
	result := new(big.Int).Mul(product, product)
	return handlers.Success(result.String(), map[string]any{
		"operation":  "multiply_all_and_square",
		"step_type":  "multiple_parent_final",
		"multiplied": product.String(),
	})
}

// u128Max is 2¹²⁸−1, the value Rust's u128 arithmetic in dag_finalize saturates to.
var u128Max = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// toU128 converts like Rust's `i64 as u128`: negative values sign-extend (v + 2¹²⁸).
func toU128(v int64) *big.Int {
	b := big.NewInt(v)
	if v < 0 {
		b.Add(b, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	return b
}

// mulU128Saturating is checked u128 multiplication that yields 2¹²⁸−1 on overflow.
func mulU128Saturating(a, b *big.Int) *big.Int {
	p := new(big.Int).Mul(a, b)
	if p.Cmp(u128Max) > 0 {
		return new(big.Int).Set(u128Max)
	}
	return p
}

// dagFinalize computes (validate·transform·analyze)² in u128 arithmetic that saturates at
// 2¹²⁸−1, as a decimal string.
func dagFinalize(_ context.Context, step *handlers.StepContext) handlers.Result {
	values, missing := dependencyInt64s(step, "dag_validate", "dag_transform", "dag_analyze")
	if missing != "" {
		return missingDependency(missing)
	}
	product := mulU128Saturating(mulU128Saturating(toU128(values[0]), toU128(values[1])), toU128(values[2]))
	result := mulU128Saturating(product, product)
	return handlers.Success(result.String(), map[string]any{
		"operation":  "multiply_three_and_square",
		"step_type":  "multiple_parent_final",
		"multiplied": product.String(),
	})
}

func squareMeta(stepType string, extra ...string) map[string]any {
	m := map[string]any{"operation": "square", "step_type": stepType}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func mathHandlers() []entry {
	return []entry{
		{"linear_workflow.step_1", squareEvenInput(squareMeta("initial"))},
		{"linear_workflow.step_2", squareDependency("linear_step_1", squareMeta("intermediate"))},
		{"linear_workflow.step_3", squareDependency("linear_step_2", squareMeta("single_parent"))},
		{"linear_workflow.step_4", squareDependency("linear_step_3", squareMeta("final"))},

		{"diamond_workflow.start", squareEvenInput(squareMeta("initial"))},
		{"diamond_workflow.branch_b", squareDependency("diamond_start", squareMeta("single_parent", "branch", "left"))},
		{"diamond_workflow.branch_c", squareDependency("diamond_start", squareMeta("single_parent", "branch", "right"))},
		{"diamond_workflow.end", multiplyAndSquare(map[string]any{"operation": "multiply_and_square", "step_type": "multiple_parent"},
			"diamond_branch_b", "diamond_branch_c")},

		{"tree_workflow.root", squareEvenInput(squareMeta("initial"))},
		{"tree_workflow.branch_left", squareDependency("tree_root", squareMeta("single_parent", "branch", "left_main"))},
		{"tree_workflow.branch_right", squareDependency("tree_root", squareMeta("single_parent", "branch", "right_main"))},
		{"tree_workflow.leaf_d", squareDependency("tree_branch_left", squareMeta("single_parent", "branch", "left", "leaf", "d"))},
		{"tree_workflow.leaf_e", squareDependency("tree_branch_left", squareMeta("single_parent", "branch", "left", "leaf", "e"))},
		{"tree_workflow.leaf_f", squareDependency("tree_branch_right", squareMeta("single_parent", "branch", "right", "leaf", "f"))},
		{"tree_workflow.leaf_g", squareDependency("tree_branch_right", squareMeta("single_parent", "branch", "right", "leaf", "g"))},
		{"tree_workflow.final_convergence", handlers.HandlerFunc(treeFinalConvergence)},

		{"mixed_dag_workflow.init", squareEvenInput(squareMeta("initial"))},
		{"mixed_dag_workflow.process_left", squareDependency("dag_init", squareMeta("single_parent", "branch", "left"))},
		{"mixed_dag_workflow.process_right", squareDependency("dag_init", squareMeta("single_parent", "branch", "right"))},
		{"mixed_dag_workflow.validate", multiplyAndSquare(map[string]any{"operation": "multiply_and_square", "step_type": "multiple_parent", "convergence_type": "dual_branch"},
			"dag_process_left", "dag_process_right")},
		{"mixed_dag_workflow.transform", squareDependency("dag_process_left", squareMeta("single_parent", "transform_type", "left_branch_square"))},
		{"mixed_dag_workflow.analyze", squareDependency("dag_process_right", squareMeta("single_parent", "analysis_type", "right_branch_square"))},
		{"mixed_dag_workflow.finalize", handlers.HandlerFunc(dagFinalize)},
	}
}
