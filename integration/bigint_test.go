package integration

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
)

// bigPow is n^k as a decimal string, computed independently of the handlers.
func bigPow(n, k int64) string {
	return new(big.Int).Exp(big.NewInt(n), big.NewInt(k), nil).String()
}

// bigRawResult is a step's stored results.result, as JSON text.
func bigRawResult(t *testing.T, s orchestration.StepStatus) string {
	t.Helper()
	var r protocol.StepExecutionResult
	if err := json.Unmarshal(s.Results, &r); err != nil {
		t.Fatalf("%s results: %v", s.Name, err)
	}
	if !r.Success {
		t.Fatalf("%s: success false in %s", s.Name, s.Results)
	}
	return string(r.Result)
}

// TestBigIntegerResults runs the arithmetic examples through a real worker, orchestrator and
// PostgreSQL with inputs whose results pass int64: every task completes and every stored result
// is exact (a JSON integer while it fits in int64, a decimal string beyond).
func TestBigIntegerResults(t *testing.T) {
	sys := scStart(t, 1, 1)
	const wait = 60 * time.Second
	quoted := func(n, k int64) string { return strconv.Quote(bigPow(n, k)) }

	t.Run("linear_100", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_linear", "mathematical_sequence", `{"even_number":100}`, wait)
		steps := sys.scAllComplete(t, st, "linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4")
		for name, want := range map[string]string{"linear_step_1": "10000", "linear_step_2": "100000000",
			"linear_step_3": "10000000000000000", "linear_step_4": quoted(100, 16)} {
			if got := bigRawResult(t, steps[name]); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
	})
	t.Run("linear_16", func(t *testing.T) {
		t.Parallel()
		// 16¹⁶ = 2⁶⁴: tasker-core's i64 wraps it to 0.
		st := sys.scRun(t, "rust_e2e_linear", "mathematical_sequence", `{"even_number":16}`, wait)
		steps := sys.scAllComplete(t, st, "linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4")
		if got := bigRawResult(t, steps["linear_step_4"]); got != `"18446744073709551616"` {
			t.Errorf("linear_step_4 = %s, want \"18446744073709551616\"", got)
		}
	})
	t.Run("diamond_100", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_diamond", "diamond_pattern", `{"even_number":100}`, wait)
		steps := sys.scAllComplete(t, st, "diamond_start", "diamond_branch_b", "diamond_branch_c", "diamond_end")
		if got := bigRawResult(t, steps["diamond_end"]); got != quoted(100, 16) {
			t.Errorf("diamond_end = %s", got)
		}
	})
	t.Run("tree_100", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_tree", "hierarchical_tree", `{"even_number":100}`, wait)
		steps := sys.scAllComplete(t, st, "tree_root", "tree_branch_left", "tree_branch_right", "tree_leaf_d", "tree_leaf_e",
			"tree_leaf_f", "tree_leaf_g", "tree_final_convergence")
		if got := bigRawResult(t, steps["tree_final_convergence"]); got != quoted(100, 64) {
			t.Errorf("tree_final_convergence = %s", got)
		}
	})
	t.Run("mixed_dag_100", func(t *testing.T) {
		t.Parallel()
		st := sys.scRun(t, "rust_e2e_mixed_dag", "complex_dag", `{"even_number":100}`, wait)
		steps := sys.scAllComplete(t, st, "dag_init", "dag_process_left", "dag_process_right", "dag_validate", "dag_transform",
			"dag_analyze", "dag_finalize")
		if got := bigRawResult(t, steps["dag_validate"]); got != quoted(100, 16) {
			t.Errorf("dag_validate = %s", got)
		}
		if got := bigRawResult(t, steps["dag_finalize"]); got != quoted(100, 64) {
			t.Errorf("dag_finalize = %s (tasker-core saturates at 2¹²⁸−1)", got)
		}
	})
	t.Run("refused_inputs", func(t *testing.T) {
		t.Parallel()
		for _, in := range []string{"102", "1e30", "18446744073709551616"} {
			key := uuid.Must(uuid.NewV7()).String()
			_, err := sys.orchs[0].CreateTask(context.Background(), orchestration.TaskRequest{
				Namespace: "rust_e2e_linear", Name: "mathematical_sequence", Version: "1.0.0",
				Context: json.RawMessage(`{"even_number":` + in + `}`), Initiator: "integration-test", SourceSystem: "test",
				Reason: t.Name(), IdempotencyKey: &key,
			})
			if !errors.Is(err, orchestration.ErrInvalidRequest) {
				t.Errorf("even_number %s: CreateTask error %v, want ErrInvalidRequest", in, err)
			}
		}
	})
}
