package integration

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

var apiStepResponseFields = []apiField{
	{"step_uuid", "string", srcOrch + ":StepResponse.step_uuid String", false},
	{"task_uuid", "string", srcOrch + ":StepResponse.task_uuid String", false},
	{"name", "string", srcOrch + ":StepResponse.name String", false},
	{"created_at", "string", srcOrch + ":StepResponse.created_at String", false},
	{"updated_at", "string", srcOrch + ":StepResponse.updated_at String", false},
	{"completed_at", "string|null", srcOrch + ":StepResponse.completed_at Option<String>", false},
	{"results", "any", srcOrch + ":StepResponse.results Option<serde_json::Value>", false},
	{"current_state", "string", srcOrch + ":StepResponse.current_state String", false},
	{"dependencies_satisfied", "boolean", srcOrch + ":StepResponse.dependencies_satisfied bool", false},
	{"retry_eligible", "boolean", srcOrch + ":StepResponse.retry_eligible bool", false},
	{"ready_for_execution", "boolean", srcOrch + ":StepResponse.ready_for_execution bool", false},
	{"total_parents", "integer", srcOrch + ":StepResponse.total_parents i32", false},
	{"completed_parents", "integer", srcOrch + ":StepResponse.completed_parents i32", false},
	{"attempts", "integer", srcOrch + ":StepResponse.attempts i32", false},
	{"max_attempts", "integer", srcOrch + ":StepResponse.max_attempts i32", false},
	{"last_failure_at", "string|null", srcOrch + ":StepResponse.last_failure_at Option<String>", false},
	{"next_retry_at", "string|null", srcOrch + ":StepResponse.next_retry_at Option<String>", false},
	{"last_attempted_at", "string|null", srcOrch + ":StepResponse.last_attempted_at Option<String>", false},
}

var apiStepAuditFields = []apiField{
	{"audit_uuid", "string", srcOrch + ":StepAuditResponse.audit_uuid String", false},
	{"workflow_step_uuid", "string", srcOrch + ":StepAuditResponse.workflow_step_uuid String", false},
	{"transition_uuid", "string", srcOrch + ":StepAuditResponse.transition_uuid String", false},
	{"task_uuid", "string", srcOrch + ":StepAuditResponse.task_uuid String", false},
	{"recorded_at", "string", srcOrch + ":StepAuditResponse.recorded_at String", false},
	{"worker_uuid", "string", srcOrch + ":StepAuditResponse.worker_uuid Option<String> (skip if none)", true},
	{"correlation_id", "string", srcOrch + ":StepAuditResponse.correlation_id Option<String> (skip if none)", true},
	{"success", "boolean", srcOrch + ":StepAuditResponse.success bool", false},
	{"execution_time_ms", "integer", srcOrch + ":StepAuditResponse.execution_time_ms Option<i64> (skip if none)", true},
	{"result", "any", srcOrch + ":StepAuditResponse.result Option<serde_json::Value> (skip if none)", true},
	{"step_name", "string", srcOrch + ":StepAuditResponse.step_name String", false},
	{"from_state", "string", srcOrch + ":StepAuditResponse.from_state Option<String> (skip if none)", true},
	{"to_state", "string", srcOrch + ":StepAuditResponse.to_state String", false},
}

const apiChainYAML = `
name: api_chain
namespace_name: api_steps
version: 1.0.0
steps:
  - name: s_a
    handler: {callable: api.a}
    retry: {retryable: false, max_attempts: 1}
  - name: s_b
    dependencies: [s_a]
    handler: {callable: api.b}
  - name: s_c
    dependencies: [s_b]
    handler: {callable: api.c}
`

// apiCheckStep checks a StepResponse object against the golden table and its time formats.
func apiCheckStep(t *testing.T, what string, s map[string]any) {
	t.Helper()
	apiCheckFields(t, what, s, apiStepResponseFields)
	for _, k := range []string{"created_at", "updated_at", "completed_at", "last_failure_at", "next_retry_at", "last_attempted_at"} {
		if v, ok := s[k].(string); ok && !apiMicroZ.MatchString(v) {
			t.Errorf("%s: %s %q is not tasker-core's %%.6fZ form", what, k, v)
		}
	}
}

// apiPatch sends a manual action and returns the status and body.
func apiPatch(t *testing.T, do func(string, string, any) (int, []byte), task, step string, body any) (int, []byte) {
	t.Helper()
	return do("PATCH", "/v1/tasks/"+task+"/workflow_steps/"+step, body)
}

func TestAPIStepsReadAuditAndErrors(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	srv := apiServer(t, pool, o)
	ct := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{}`))
	other := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"other":true}`))
	id, a := ct.TaskUUID.String(), ct.Steps["s_a"].String()

	status, b := apiDo(t, srv, "GET", "/v1/tasks/"+id+"/workflow_steps", nil)
	if status != 200 {
		t.Fatalf("list steps: %d %s", status, b)
	}
	steps := apiDecode[[]map[string]any](t, b)
	var names []string
	for _, s := range steps {
		apiCheckStep(t, "list", s)
		names = append(names, s["name"].(string))
	}
	if !slices.Equal(names, []string{"s_a", "s_b", "s_c"}) {
		t.Fatalf("steps in order %v", names)
	}
	if steps[0]["current_state"] != "enqueued" || steps[1]["total_parents"] != json.Number("1") ||
		steps[1]["completed_parents"] != json.Number("0") || steps[0]["max_attempts"] != json.Number("1") {
		t.Errorf("steps %v", steps)
	}

	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id+"/workflow_steps/"+a, nil)
	step := apiOK(t, status, b)
	apiCheckStep(t, "get", step)
	if step["step_uuid"] != a || step["task_uuid"] != id || step["results"] != nil || step["completed_at"] != nil {
		t.Errorf("step %v", step)
	}

	// Errors, as tasker-core's step handlers answer them.
	for _, c := range []struct {
		method, path string
		status       int
		code, msg    string
	}{
		{"GET", "/v1/tasks/bad/workflow_steps", 400, "BAD_REQUEST", "Invalid task UUID format"},
		{"GET", "/v1/tasks/" + id + "/workflow_steps/bad", 400, "BAD_REQUEST", "Invalid step UUID format"},
		{"GET", "/v1/tasks/bad/workflow_steps/" + a + "/audit", 400, "BAD_REQUEST", "Invalid task UUID format"},
		{"PATCH", "/v1/tasks/" + id + "/workflow_steps/bad", 400, "BAD_REQUEST", "Invalid step UUID format"},
		{"GET", "/v1/tasks/" + uuid.NewString() + "/workflow_steps", 404, "NOT_FOUND", "Resource not found"},
		{"GET", "/v1/tasks/" + id + "/workflow_steps/" + uuid.NewString(), 404, "NOT_FOUND", "Resource not found"},
		{"GET", "/v1/tasks/" + id + "/workflow_steps/" + uuid.NewString() + "/audit", 404, "NOT_FOUND", "Resource not found"},
		{"GET", "/v1/tasks/" + other.TaskUUID.String() + "/workflow_steps/" + a, 404, "NOT_FOUND", "Step does not belong to the specified task"},
		{"GET", "/v1/tasks/" + other.TaskUUID.String() + "/workflow_steps/" + a + "/audit", 404, "NOT_FOUND", "Step does not belong to the specified task"},
	} {
		status, b := apiDo(t, srv, c.method, c.path, map[string]any{"action_type": "resolve_manually", "reason": "r", "resolved_by": "op"})
		apiWantError(t, c.method+" "+c.path, status, b, c.status, c.code, c.msg)
	}
	// A step of another task is refused before anything is written.
	status, b = apiDo(t, srv, "PATCH", "/v1/tasks/"+other.TaskUUID.String()+"/workflow_steps/"+a,
		map[string]any{"action_type": "resolve_manually", "reason": "r", "resolved_by": "op"})
	apiWantError(t, "patch other task's step", status, b, 404, "NOT_FOUND", "Step does not belong to the specified task")
	if st, _ := state.CurrentStepState(t.Context(), pool, ct.Steps["s_a"]); st != state.StepEnqueued {
		t.Fatalf("step moved by a refused PATCH: %s", st)
	}

	// Bodies serde would not deserialize, and an action the state does not allow.
	for _, c := range []struct {
		body any
		msg  string
	}{
		{`{`, ""},
		{map[string]any{}, "missing field `action_type`"},
		{map[string]any{"action_type": "explode", "reason": "r"}, "unknown variant `explode`, expected one of `reset_for_retry`, `resolve_manually`, `complete_manually`"},
		{map[string]any{"action_type": "resolve_manually", "reason": "r"}, "missing field `resolved_by`"},
		{map[string]any{"action_type": "reset_for_retry", "reset_by": "op"}, "missing field `reason`"},
		{map[string]any{"action_type": "complete_manually", "reason": "r", "completed_by": "op"}, "missing field `completion_data`"},
		{map[string]any{"action_type": "complete_manually", "reason": "r", "completed_by": "op", "completion_data": map[string]any{}}, "completion_data: missing field `result`"},
		{map[string]any{"action_type": "reset_for_retry", "reason": "r", "reset_by": "op"}, "Cannot manually resolve step: invalid transition from enqueued to ResetForRetry"},
	} {
		status, b := apiDo(t, srv, "PATCH", "/v1/tasks/"+id+"/workflow_steps/"+a, c.body)
		apiWantError(t, "PATCH body", status, b, 400, "BAD_REQUEST", c.msg)
	}

	// Audit: empty until a result is recorded; then one record as tasker-core returns it.
	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id+"/workflow_steps/"+a+"/audit", nil)
	if status != 200 || string(b) != "[]\n" {
		t.Fatalf("audit before any result: %d %s", status, b)
	}
	res := protocol.Success(ct.Steps["s_a"], json.RawMessage(`{"v":42}`), 15, nil)
	orchSimulateWorker(t, pool, ct.TaskUUID, ct.Steps["s_a"], ct.CorrelationID, res, false)
	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id+"/workflow_steps/"+a+"/audit", nil)
	if status != 200 {
		t.Fatalf("audit: %d %s", status, b)
	}
	audit := apiDecode[[]map[string]any](t, b)
	if len(audit) != 1 {
		t.Fatalf("audit records %s", b)
	}
	rec := audit[0]
	apiCheckFields(t, "audit", rec, apiStepAuditFields)
	if rec["workflow_step_uuid"] != a || rec["task_uuid"] != id || rec["step_name"] != "s_a" || rec["success"] != true ||
		rec["from_state"] != "in_progress" || rec["to_state"] != "enqueued_for_orchestration" ||
		rec["execution_time_ms"] != json.Number("15") || rec["correlation_id"] != ct.CorrelationID.String() {
		t.Errorf("audit record %v", rec)
	}
	if s, _ := rec["recorded_at"].(string); !apiMicroZ.MatchString(s) {
		t.Errorf("recorded_at %q", s)
	}
	ev, _ := rec["result"].(map[string]any)
	data, _ := ev["data"].(map[string]any)
	if ev["type"] != "EnqueueForOrchestration" || data["result"].(map[string]any)["v"] != json.Number("42") {
		t.Errorf("audit result (the transition's event) %v", rec["result"])
	}
}

// apiStep returns a step's StepResponse through GET.
func apiStep(t *testing.T, do func(string, string, any) (int, []byte), task, step string) map[string]any {
	t.Helper()
	status, b := do("GET", "/v1/tasks/"+task+"/workflow_steps/"+step, nil)
	return apiOK(t, status, b)
}

func apiTaskStatus(t *testing.T, do func(string, string, any) (int, []byte), task string) string {
	t.Helper()
	status, b := do("GET", "/v1/tasks/"+task, nil)
	return apiOK(t, status, b)["status"].(string)
}

func TestAPIStepsManualActionsLeaveBlockedByFailures(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	srv := apiServer(t, pool, o)
	do := func(m, p string, body any) (int, []byte) { return apiDo(t, srv, m, p, body) }
	ct := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{}`))
	orchRun(t, o)
	id, a, sb, c := ct.TaskUUID.String(), ct.Steps["s_a"].String(), ct.Steps["s_b"].String(), ct.Steps["s_c"].String()

	// s_a fails permanently: the task is blocked by failures.
	fail := protocol.Failure(ct.Steps["s_a"], "card declined", "PermanentError", "DECLINED", false, 5, nil)
	orchSimulateWorker(t, pool, ct.TaskUUID, ct.Steps["s_a"], ct.CorrelationID, fail, true)
	orchWaitStep(t, pool, ct.Steps["s_a"], 10*time.Second, state.StepError)
	orchWaitTask(t, pool, ct.TaskUUID, 10*time.Second, state.TaskBlockedByFailures)

	// reset_for_retry: error → pending, attempts back to 0. The task has no legal way back to
	// processing (tasker-core's task state machine), so it stays blocked.
	status, b := apiPatch(t, do, id, a, map[string]any{"action_type": "reset_for_retry", "reason": "db back", "reset_by": "op@example.com"})
	s := apiOK(t, status, b)
	apiCheckStep(t, "reset_for_retry", s)
	if s["current_state"] != "pending" || s["attempts"] != json.Number("0") {
		t.Errorf("after reset_for_retry: %v", s)
	}
	if st := apiTaskStatus(t, do, id); st != "blocked_by_failures" {
		t.Errorf("task after reset_for_retry: %s", st)
	}
	// reset_for_retry is only for steps in error.
	status, b = apiPatch(t, do, id, a, map[string]any{"action_type": "reset_for_retry", "reason": "again", "reset_by": "op"})
	apiWantError(t, "reset pending step", status, b, 400, "BAD_REQUEST", "Cannot manually resolve step: invalid transition from pending to ResetForRetry")

	// resolve_manually: → resolved_manually, no results; s_b's dependency is now satisfied.
	status, b = apiPatch(t, do, id, a, map[string]any{"action_type": "resolve_manually", "reason": "bypass", "resolved_by": "op"})
	s = apiOK(t, status, b)
	apiCheckStep(t, "resolve_manually", s)
	if s["current_state"] != "resolved_manually" || s["completed_at"] == nil {
		t.Errorf("after resolve_manually: %v", s)
	}
	if sbv := apiStep(t, do, id, sb); sbv["dependencies_satisfied"] != true || sbv["completed_parents"] != json.Number("1") {
		t.Errorf("s_b after its parent was resolved: %v", sbv)
	}
	if st := apiTaskStatus(t, do, id); st != "blocked_by_failures" {
		t.Errorf("task with steps still to run: %s", st)
	}

	// complete_manually with an object metadata: tasker-core's StepExecutionResult::success.
	status, b = apiPatch(t, do, id, sb, map[string]any{"action_type": "complete_manually",
		"completion_data": map[string]any{"result": map[string]any{"validated": true}, "metadata": map[string]any{"ticket": "T-1"}},
		"reason":          "verified by hand", "completed_by": "op@example.com"})
	s = apiOK(t, status, b)
	apiCheckStep(t, "complete_manually", s)
	results, _ := s["results"].(map[string]any)
	custom, _ := results["metadata"].(map[string]any)["custom"].(map[string]any)
	if s["current_state"] != "complete" || results["success"] != true || results["status"] != "completed" || results["error"] != nil ||
		results["step_uuid"] != sb || results["result"].(map[string]any)["validated"] != true ||
		custom["ticket"] != "T-1" || custom["manually_completed"] != true || custom["completed_by"] != "op@example.com" ||
		custom["completion_reason"] != "verified by hand" {
		t.Errorf("complete_manually results %v", s["results"])
	}
	// The dependent step reads the operator's results as its parent's.
	deps, err := state.DependencyResults(t.Context(), pool, ct.Steps["s_c"])
	if err != nil || !orchJSONEqual(string(deps["s_b"].Result), `{"validated":true}`) {
		t.Errorf("s_c's view of s_b: %v %v", deps, err)
	}

	// The last step, with a non-object metadata: kept under operator_metadata. No step is in
	// error and every step is done: the task leaves blocked_by_failures on ManualResolution.
	status, b = apiPatch(t, do, id, c, map[string]any{"action_type": "complete_manually",
		"completion_data": map[string]any{"result": nil, "metadata": "see ticket"}, "reason": "r", "completed_by": "op"})
	s = apiOK(t, status, b)
	custom, _ = s["results"].(map[string]any)["metadata"].(map[string]any)["custom"].(map[string]any)
	if s["current_state"] != "complete" || custom["operator_metadata"] != "see ticket" || s["results"].(map[string]any)["result"] != nil {
		t.Errorf("complete_manually with scalar metadata: %v", s["results"])
	}
	if st := apiTaskStatus(t, do, id); st != "resolved_manually" {
		t.Fatalf("task after the last step was done: %s", st)
	}
	trail := orchTaskTrail(t, pool, ct.TaskUUID)
	if trail[len(trail)-2] != `blocked_by_failures:PermanentFailure("Steps in error state")` || trail[len(trail)-1] != "resolved_manually:ManualResolution" {
		t.Errorf("task trail %v", trail)
	}

	// Operator actions stay allowed on steps of a finished task; the task does not move.
	status, b = apiPatch(t, do, id, c, map[string]any{"action_type": "resolve_manually", "reason": "r", "resolved_by": "op"})
	if s = apiOK(t, status, b); s["current_state"] != "resolved_manually" {
		t.Errorf("resolve a complete step: %v", s["current_state"])
	}
	if st := apiTaskStatus(t, do, id); st != "resolved_manually" {
		t.Errorf("finished task moved: %s", st)
	}
}

func TestAPIStepsCompleteManuallyAdvancesTask(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	srv := apiServer(t, pool, o)
	do := func(m, p string, body any) (int, []byte) { return apiDo(t, srv, m, p, body) }
	ct := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{}`))
	id := ct.TaskUUID.String()
	complete := func(step string) map[string]any {
		t.Helper()
		status, b := apiPatch(t, do, id, ct.Steps[step].String(), map[string]any{"action_type": "complete_manually",
			"completion_data": map[string]any{"result": map[string]any{"step": step}}, "reason": "r", "completed_by": "op"})
		return apiOK(t, status, b)
	}
	// A running task is advanced at once, as a step result would advance it: the next step is
	// enqueued (worker message included) in the same transaction.
	complete("s_a")
	if s := apiStep(t, do, id, ct.Steps["s_b"].String()); s["current_state"] != "enqueued" {
		t.Fatalf("s_b after s_a was completed by hand: %v", s["current_state"])
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM pgmq.q_worker_api_steps_queue WHERE message->>'step_uuid' = $1`, ct.Steps["s_b"].String()); n != 1 {
		t.Errorf("worker messages for s_b: %d", n)
	}
	if st := apiTaskStatus(t, do, id); st != "steps_in_process" {
		t.Errorf("task %s", st)
	}
	complete("s_b")
	complete("s_c")
	status, b := do("GET", "/v1/tasks/"+id, nil)
	task := apiOK(t, status, b)
	if task["status"] != "complete" || task["completed_at"] == nil || task["execution_status"] != "all_complete" || task["completion_percentage"] != json.Number("100") {
		t.Errorf("task after every step was completed by hand: %v %v %v %v", task["status"], task["completed_at"], task["execution_status"], task["completion_percentage"])
	}
	if !orchScalar[bool](t, pool, `SELECT complete FROM tasker.tasks WHERE task_uuid = $1`, ct.TaskUUID) {
		t.Error("tasks.complete not set")
	}
}
