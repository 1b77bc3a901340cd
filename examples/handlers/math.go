package exhandlers

import (
	"context"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/tasker-go/tasker/handlers"
)

// The linear, diamond, tree and mixed-DAG workflows (README "Linear" … "Mixed DAG"): a root
// squares the context's even_number and every later step squares or multiplies its parents'
// results. Unlike tasker-core's handlers (i64 that wraps in release builds, u128 that saturates
// in dag_finalize) the arithmetic here is exact. As the tree already did, a result that fits in
// int64 is a bare JSON integer (what tasker-core writes for it) and a larger one is its exact
// decimal string; the tree and DAG finals are always decimal strings, as in tasker-core.
// Parents' results are read in either form.

// maxIntegerBits bounds every integer a math step reads or produces. Roots accept an int64 n,
// so the largest legitimate value, n⁶⁴ (tree and DAG finals), has at most 4033 bits; anything
// larger can only come from a result these handlers did not write.
const maxIntegerBits = 4096

// maxIntegerDigits is the most decimal digits a maxIntegerBits integer has; maxInt64Digits
// the most an int64 has.
const (
	maxIntegerDigits = 1234
	maxInt64Digits   = 19
)

// intStatus classifies a JSON value read as an exact integer.
type intStatus int

const (
	intOK         intStatus = iota
	intNotInteger           // absent, not a number, or a number with a fractional part
	intTooLarge             // an integer with more digits than allowed
)

// exactInteger reads v as an exact integer of at most maxDigits decimal digits: a JSON number
// whose value is integral in any spelling (6, 6.0, 6e0, 600e-2), or, with allowString, a string
// of decimal digits with an optional leading '-'. The text is never converted through float64,
// and a huge exponent is refused before any digits are expanded.
func exactInteger(v any, allowString bool, maxDigits int) (*big.Int, intStatus) {
	var text string
	switch x := v.(type) {
	case string:
		if !allowString || !isDecimalString(x) {
			return nil, intNotInteger
		}
		text = x
	case json.Number:
		text = string(x)
	default:
		return nil, intNotInteger
	}
	neg := strings.HasPrefix(text, "-")
	text = strings.TrimPrefix(text, "-")
	mantissa, expText, hasExp := strings.Cut(strings.ToLower(text), "e")
	intPart, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return new(big.Int), intOK
	}
	if !isDigits(digits) || (hasExp && expText == "") {
		return nil, intNotInteger
	}
	exp := int64(0)
	if hasExp {
		e, err := strconv.ParseInt(expText, 10, 32)
		if err != nil {
			if strings.HasPrefix(expText, "-") {
				return nil, intNotInteger // 0 < |value| < 1
			}
			return nil, intTooLarge
		}
		exp = e
	}
	exp -= int64(len(frac))
	if exp < 0 {
		trimmed := strings.TrimRight(digits, "0")
		drop := min(int64(len(digits)-len(trimmed)), -exp)
		digits = digits[:len(digits)-int(drop)]
		exp += drop
		if exp < 0 {
			return nil, intNotInteger
		}
	}
	if int64(len(digits))+exp > int64(maxDigits) {
		return nil, intTooLarge
	}
	n, ok := new(big.Int).SetString(digits+strings.Repeat("0", int(exp)), 10)
	if !ok {
		return nil, intNotInteger
	}
	if neg {
		n.Neg(n)
	}
	return n, intOK
}

// isDecimalString reports whether s is an optional '-' followed by one or more digits.
func isDecimalString(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && isDigits(s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// jsonInteger is n as a result value: an int64 (a bare JSON integer) when it fits, else its
// decimal string.
func jsonInteger(n *big.Int) any {
	if n.IsInt64() {
		return n.Int64()
	}
	return n.String()
}

// integerTooLarge is the permanent failure for a value beyond maxIntegerBits.
func integerTooLarge(what string) handlers.Result {
	return fail(what+" exceeds "+strconv.Itoa(maxIntegerBits)+" bits", errTypePermanent, "INTEGER_TOO_LARGE", false,
		map[string]any{"max_bits": maxIntegerBits})
}

// dependencyInteger reads an ancestor's result exactly. When ok is false, failure is
// MISSING_DEPENDENCY (retryable, as in tasker-core) for an absent or non-integer result, or
// INTEGER_TOO_LARGE (permanent) for one beyond maxIntegerBits.
func dependencyInteger(step *handlers.StepContext, name string) (n *big.Int, failure handlers.Result, ok bool) {
	raw, present := step.DependencyValue(name)
	if !present {
		return nil, missingDependency(name), false
	}
	v, decoded := decodeValue(raw)
	if !decoded {
		return nil, missingDependency(name), false
	}
	n, st := exactInteger(v, true, maxIntegerDigits)
	switch {
	case st == intNotInteger:
		return nil, missingDependency(name), false
	case st == intTooLarge || n.BitLen() > maxIntegerBits:
		return nil, integerTooLarge("Result of " + name), false
	}
	return n, handlers.Result{}, true
}

// dependencyIntegers reads several ancestors' results; the first failure wins.
func dependencyIntegers(step *handlers.StepContext, names ...string) ([]*big.Int, handlers.Result, bool) {
	values := make([]*big.Int, len(names))
	for i, name := range names {
		v, failure, ok := dependencyInteger(step, name)
		if !ok {
			return nil, failure, false
		}
		values[i] = v
	}
	return values, handlers.Result{}, true
}

// square is n² as a new integer.
func square(n *big.Int) *big.Int { return new(big.Int).Mul(n, n) }

// squareEvenInput is a root step: the context's even_number squared. The number must be an
// integer in int64 range (any JSON spelling of an integral value); a larger one fails
// INPUT_OUT_OF_RANGE without retry (the templates' input_schema maximum keeps it out).
func squareEvenInput(meta map[string]any) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		n, st := (*big.Int)(nil), intNotInteger
		if v, ok := inputValue(step, "even_number"); ok {
			n, st = exactInteger(v, false, maxInt64Digits)
		}
		switch {
		case st == intNotInteger:
			return fail("Task context must contain an even number", errTypeValidation, "MISSING_CONTEXT_FIELD", false,
				map[string]any{"field": "even_number"})
		case st == intTooLarge || !n.IsInt64():
			return fail("even_number is outside the 64-bit integer range", errTypeValidation, "INPUT_OUT_OF_RANGE", false,
				map[string]any{"field": "even_number", "minimum": int64(math.MinInt64), "maximum": int64(math.MaxInt64)})
		case n.Bit(0) != 0:
			return fail("Number must be even", errTypeValidation, "VALIDATION_ERROR", false,
				map[string]any{"input": n.Int64()})
		}
		return handlers.Success(jsonInteger(square(n)), meta)
	}
}

// squareDependency squares one parent's result.
func squareDependency(parent string, meta map[string]any) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		v, failure, ok := dependencyInteger(step, parent)
		if !ok {
			return failure
		}
		if v.BitLen() > maxIntegerBits/2 {
			return integerTooLarge("The square of " + parent + "'s result")
		}
		return handlers.Success(jsonInteger(square(v)), meta)
	}
}

// product multiplies values; ok is false once the running product exceeds maxIntegerBits.
func product(values []*big.Int) (*big.Int, bool) {
	p := big.NewInt(1)
	for _, v := range values {
		if p.Mul(p, v); p.BitLen() > maxIntegerBits {
			return nil, false
		}
	}
	return p, true
}

// multiplyAndSquare multiplies the parents' results and squares the product;
// metadata.custom.multiplied is the product. Both are encoded like every other result.
func multiplyAndSquare(meta map[string]any, parents ...string) handlers.HandlerFunc {
	return func(_ context.Context, step *handlers.StepContext) handlers.Result {
		values, failure, ok := dependencyIntegers(step, parents...)
		if !ok {
			return failure
		}
		p, ok := product(values)
		if !ok || p.BitLen() > maxIntegerBits/2 {
			return integerTooLarge("The squared product of " + strings.Join(parents, ", "))
		}
		return handlers.Success(jsonInteger(square(p)), meta, handlers.WithMetadata(map[string]any{"multiplied": jsonInteger(p)}))
	}
}

// treeFinalConvergence multiplies the four leaves and squares the product, returning it as a
// decimal string (tasker-core uses BigUint, which cannot hold a negative leaf; that fails here
// without retry).
func treeFinalConvergence(_ context.Context, step *handlers.StepContext) handlers.Result {
	leaves := []string{"tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"}
	values, failure, ok := dependencyIntegers(step, leaves...)
	if !ok {
		return failure
	}
	for i, v := range values {
		if v.Sign() < 0 {
			return fail("Leaf result "+leaves[i]+" is negative", errTypePermanent, "NEGATIVE_LEAF_RESULT", false,
				map[string]any{"step": leaves[i], "value": jsonInteger(v)})
		}
	}
	return squaredProductString(values, "tree leaves", map[string]any{
		"operation": "multiply_all_and_square",
		"step_type": "multiple_parent_final",
	})
}

// dagFinalize computes (validate·transform·analyze)² exactly, as a decimal string. tasker-core
// uses u128 arithmetic that saturates at 2¹²⁸−1, so its result is wrong for every n ≥ 4.
func dagFinalize(_ context.Context, step *handlers.StepContext) handlers.Result {
	values, failure, ok := dependencyIntegers(step, "dag_validate", "dag_transform", "dag_analyze")
	if !ok {
		return failure
	}
	return squaredProductString(values, "dag_validate, dag_transform, dag_analyze", map[string]any{
		"operation": "multiply_three_and_square",
		"step_type": "multiple_parent_final",
	})
}

// squaredProductString is a final step's success: the product's square as a decimal string,
// with metadata.custom.multiplied the product as a decimal string.
func squaredProductString(values []*big.Int, what string, meta map[string]any) handlers.Result {
	p, ok := product(values)
	if !ok || p.BitLen() > maxIntegerBits/2 {
		return integerTooLarge("The squared product of " + what)
	}
	meta["multiplied"] = p.String()
	return handlers.Success(square(p).String(), meta)
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
