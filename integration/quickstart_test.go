package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/worker"
)

// TestQuickstartWorkerEndToEnd builds examples/quickstart (worker.Main with the environment's
// configuration) and runs it as a process against a real database, with an in-process
// orchestrator: the worker registers the linear template from TASKER_TEMPLATE_PATH, takes its
// namespace from it, squares through the four steps, fails an odd number permanently, and
// exits 0 on SIGTERM after draining.
func TestQuickstartWorkerEndToEnd(t *testing.T) {
	url, pool := testdb.New(t)
	bin := filepath.Join(t.TempDir(), "quickstart")
	build := exec.Command("go", "build", "-o", bin, "../examples/quickstart")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Only the linear template: the worker must derive its namespace from it.
	tmplDir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "examples", "templates", "linear_workflow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmplDir, "linear_workflow.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "TASKER_TEMPLATE_PATH="+tmplDir,
		"TASKER_NAMESPACES=", "TASKER_POLL_INTERVAL=100ms", "TASKER_CONCURRENCY=4")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("quickstart output:\n%s", logs.String())
		}
	})

	o := orchNew(t, pool, nil)
	orchRun(t, o)

	// The worker registers the template when it starts.
	deadline := time.Now().Add(30 * time.Second)
	for orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.named_tasks WHERE name = 'mathematical_sequence'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the quickstart worker did not register linear_workflow.yaml")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasker-worker'`); n == 0 {
		t.Error("no connection with application_name tasker-worker")
	}

	run := func(evenNumber int) *orchestration.TaskStatus {
		t.Helper()
		key := uuid.NewString()
		created, err := o.CreateTask(context.Background(), orchestration.TaskRequest{
			Namespace: "rust_e2e_linear", Name: "mathematical_sequence", Version: "1.0.0",
			Context:   json.RawMessage(fmt.Sprintf(`{"even_number":%d}`, evenNumber)),
			Initiator: "integration-test", SourceSystem: "test", Reason: t.Name(), IdempotencyKey: &key,
		})
		if err != nil {
			t.Fatal(err)
		}
		orchWaitTask(t, pool, created.TaskUUID, 30*time.Second, state.TaskComplete, state.TaskError, state.TaskBlockedByFailures)
		st, err := o.TaskStatus(context.Background(), created.TaskUUID)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	st := run(6)
	if st.State != state.TaskComplete {
		t.Fatalf("task %s, want complete", st.State)
	}
	steps := scSteps(st)
	for name, want := range map[string]int64{"linear_step_1": 36, "linear_step_2": 1296, "linear_step_3": 1679616, "linear_step_4": 2821109907456} {
		var got int64
		scResult(t, steps[name], &got)
		if got != want || steps[name].Attempts != 1 {
			t.Errorf("%s = %d after %d attempts, want %d after 1", name, got, steps[name].Attempts, want)
		}
	}

	// 7 passes the template's input_schema, but square refuses it: a validation error, never
	// retried although the step is retryable, and nothing downstream runs.
	st = run(7)
	if st.State == state.TaskComplete {
		t.Fatal("an odd even_number completed")
	}
	steps = scSteps(st)
	first := steps["linear_step_1"]
	var res protocol.StepExecutionResult
	if err := json.Unmarshal(first.Results, &res); err != nil {
		t.Fatal(err)
	}
	if first.State != state.StepError || first.Attempts != 1 || res.Metadata.Retryable || res.Error == nil ||
		res.Error.ErrorType == nil || *res.Error.ErrorType != handlers.ErrorTypeValidation ||
		res.Metadata.ErrorCode == nil || *res.Metadata.ErrorCode != "VALIDATION_ERROR" {
		t.Errorf("linear_step_1 for 7: %s after %d attempts, result %s", first.State, first.Attempts, first.Results)
	}
	if s2, ok := steps["linear_step_2"]; ok && s2.State != state.StepPending {
		t.Errorf("linear_step_2 ran after a permanent failure: %s", s2.State)
	}

	// SIGTERM: a graceful drain and exit code 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("quickstart exited with %v, want %d", err, worker.ExitOK)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("quickstart did not stop within 40s of SIGTERM")
	}
}
