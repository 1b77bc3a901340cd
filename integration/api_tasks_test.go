package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/web"
)

// ---- helpers (prefixed api) ----

// apiServer serves the API mounted on the real web server (body limit, templates) for o.
func apiServer(t *testing.T, pool *pgxpool.Pool, o *orchestration.Orchestrator) *httptest.Server {
	t.Helper()
	a, err := api.New(o, pool, api.Options{Logger: orchLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s := web.New(web.Config{Routes: a.Mount, Templates: web.DBTemplates{DB: pool}, Logger: orchLogger()})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// apiDo sends method path with body (nil: none; []byte or string: as is; else JSON) and returns
// the status and body.
func apiDo(t *testing.T, srv *httptest.Server, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// apiDecode decodes a JSON body keeping numbers as json.Number (integers stay integers).
func apiDecode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, b)
	}
	return v
}

// apiOK requires status 200 and returns the body as an object.
func apiOK(t *testing.T, status int, b []byte) map[string]any {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", status, b)
	}
	return apiDecode[map[string]any](t, b)
}

// apiWantError requires tasker-core's error body {"error":{"code","message"}} with exactly
// these keys; msg "" accepts any message.
func apiWantError(t *testing.T, what string, status int, b []byte, wantStatus int, code, msg string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, status, wantStatus, b)
	}
	var body map[string]map[string]any
	if err := json.Unmarshal(b, &body); err != nil || len(body) != 1 || len(body["error"]) != 2 {
		t.Fatalf("%s: body is not tasker-core's error body: %s", what, b)
	}
	if body["error"]["code"] != code || (msg != "" && body["error"]["message"] != msg) {
		t.Fatalf("%s: error %v, want code %s message %q", what, body["error"], code, msg)
	}
}

// apiField is one field of a tasker-core serde type: its JSON name, JSON type(s) ("string",
// "integer", "number", "boolean", "object", "array", "null", "any"; "|" separates
// alternatives), and where it comes from in tasker-core. Optional fields
// (skip_serializing_if) may be absent.
type apiField struct {
	name, typ, source string
	optional          bool
}

func apiJSONType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "number"
		}
		return "integer"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "unknown"
}

// apiCheckFields requires obj to have exactly the fields of table, each with an allowed type.
func apiCheckFields(t *testing.T, what string, obj map[string]any, table []apiField) {
	t.Helper()
	known := map[string]bool{}
	for _, f := range table {
		known[f.name] = true
		v, ok := obj[f.name]
		if !ok {
			if !f.optional {
				t.Errorf("%s: missing field %s (%s)", what, f.name, f.source)
			}
			continue
		}
		got := apiJSONType(v)
		allowed := strings.Split(f.typ, "|")
		// serde writes an f64 with a fraction even when it is whole; Go may not: both are numbers.
		if got == "integer" && slices.Contains(allowed, "number") {
			got = "number"
		}
		if !slices.Contains(allowed, "any") && !slices.Contains(allowed, got) {
			t.Errorf("%s: field %s is %s, want %s (%s)", what, f.name, got, f.typ, f.source)
		}
	}
	for k := range obj {
		if !known[k] {
			t.Errorf("%s: unexpected field %s", what, k)
		}
	}
}

const (
	srcOrch = "tasker-shared/src/types/api/orchestration.rs"
	srcSQL  = "tasker-shared/src/database/sql_functions.rs"
)

var apiTaskResponseFields = []apiField{
	{"task_uuid", "string", srcOrch + ":TaskResponse.task_uuid String", false},
	{"name", "string", srcOrch + ":TaskResponse.name String", false},
	{"namespace", "string", srcOrch + ":TaskResponse.namespace String", false},
	{"version", "string", srcOrch + ":TaskResponse.version String", false},
	{"status", "string", srcOrch + ":TaskResponse.status String", false},
	{"created_at", "string", srcOrch + ":TaskResponse.created_at DateTime<Utc>", false},
	{"updated_at", "string", srcOrch + ":TaskResponse.updated_at DateTime<Utc>", false},
	{"completed_at", "string|null", srcOrch + ":TaskResponse.completed_at Option<DateTime<Utc>>", false},
	{"context", "any", srcOrch + ":TaskResponse.context serde_json::Value", false},
	{"initiator", "string", srcOrch + ":TaskResponse.initiator String", false},
	{"source_system", "string", srcOrch + ":TaskResponse.source_system String", false},
	{"reason", "string", srcOrch + ":TaskResponse.reason String", false},
	{"priority", "integer|null", srcOrch + ":TaskResponse.priority Option<i32>", false},
	{"tags", "array|null", srcOrch + ":TaskResponse.tags Option<Vec<String>>", false},
	{"correlation_id", "string", srcOrch + ":TaskResponse.correlation_id Uuid", false},
	{"parent_correlation_id", "string|null", srcOrch + ":TaskResponse.parent_correlation_id Option<Uuid>", false},
	{"total_steps", "integer", srcOrch + ":TaskResponse.total_steps i64", false},
	{"pending_steps", "integer", srcOrch + ":TaskResponse.pending_steps i64", false},
	{"in_progress_steps", "integer", srcOrch + ":TaskResponse.in_progress_steps i64", false},
	{"completed_steps", "integer", srcOrch + ":TaskResponse.completed_steps i64", false},
	{"failed_steps", "integer", srcOrch + ":TaskResponse.failed_steps i64", false},
	{"ready_steps", "integer", srcOrch + ":TaskResponse.ready_steps i64", false},
	{"execution_status", "string", srcOrch + ":TaskResponse.execution_status String", false},
	{"recommended_action", "string", srcOrch + ":TaskResponse.recommended_action String", false},
	{"completion_percentage", "number", srcOrch + ":TaskResponse.completion_percentage f64", false},
	{"health_status", "string", srcOrch + ":TaskResponse.health_status String", false},
	{"steps", "array", srcOrch + ":TaskResponse.steps Vec<StepReadinessStatus>", false},
}

var apiStepReadinessFields = []apiField{
	{"workflow_step_uuid", "string", srcSQL + ":StepReadinessStatus.workflow_step_uuid Uuid", false},
	{"task_uuid", "string", srcSQL + ":StepReadinessStatus.task_uuid Uuid", false},
	{"named_step_uuid", "string", srcSQL + ":StepReadinessStatus.named_step_uuid Uuid", false},
	{"name", "string", srcSQL + ":StepReadinessStatus.name String", false},
	{"current_state", "string", srcSQL + ":StepReadinessStatus.current_state String", false},
	{"dependencies_satisfied", "boolean", srcSQL + ":StepReadinessStatus.dependencies_satisfied bool", false},
	{"retry_eligible", "boolean", srcSQL + ":StepReadinessStatus.retry_eligible bool", false},
	{"ready_for_execution", "boolean", srcSQL + ":StepReadinessStatus.ready_for_execution bool", false},
	{"last_failure_at", "string|null", srcSQL + ":StepReadinessStatus.last_failure_at Option<NaiveDateTime>", false},
	{"next_retry_at", "string|null", srcSQL + ":StepReadinessStatus.next_retry_at Option<NaiveDateTime>", false},
	{"total_parents", "integer", srcSQL + ":StepReadinessStatus.total_parents i32", false},
	{"completed_parents", "integer", srcSQL + ":StepReadinessStatus.completed_parents i32", false},
	{"attempts", "integer", srcSQL + ":StepReadinessStatus.attempts i32", false},
	{"max_attempts", "integer", srcSQL + ":StepReadinessStatus.max_attempts i32", false},
	{"backoff_request_seconds", "integer|null", srcSQL + ":StepReadinessStatus.backoff_request_seconds Option<i32>", false},
	{"last_attempted_at", "string|null", srcSQL + ":StepReadinessStatus.last_attempted_at Option<NaiveDateTime>", false},
}

var apiPaginationFields = []apiField{
	{"page", "integer", "tasker-shared/src/models/core/task.rs:PaginationInfo.page u32", false},
	{"per_page", "integer", "tasker-shared/src/models/core/task.rs:PaginationInfo.per_page u32", false},
	{"total_count", "integer", "tasker-shared/src/models/core/task.rs:PaginationInfo.total_count u64", false},
	{"total_pages", "integer", "tasker-shared/src/models/core/task.rs:PaginationInfo.total_pages u32", false},
	{"has_next", "boolean", "tasker-shared/src/models/core/task.rs:PaginationInfo.has_next bool", false},
	{"has_previous", "boolean", "tasker-shared/src/models/core/task.rs:PaginationInfo.has_previous bool", false},
}

var apiSummaryTaskFields = []apiField{
	{"task_uuid", "string", srcOrch + ":TaskSummaryMetadata.task_uuid String", false},
	{"name", "string", srcOrch + ":TaskSummaryMetadata.name String", false},
	{"namespace", "string", srcOrch + ":TaskSummaryMetadata.namespace String", false},
	{"version", "string", srcOrch + ":TaskSummaryMetadata.version String", false},
	{"status", "string", srcOrch + ":TaskSummaryMetadata.status String", false},
	{"created_at", "string", srcOrch + ":TaskSummaryMetadata.created_at DateTime<Utc>", false},
	{"updated_at", "string", srcOrch + ":TaskSummaryMetadata.updated_at DateTime<Utc>", false},
	{"completed_at", "string|null", srcOrch + ":TaskSummaryMetadata.completed_at Option<DateTime<Utc>>", false},
	{"initiator", "string", srcOrch + ":TaskSummaryMetadata.initiator String", false},
	{"source_system", "string", srcOrch + ":TaskSummaryMetadata.source_system String", false},
	{"reason", "string", srcOrch + ":TaskSummaryMetadata.reason String", false},
	{"correlation_id", "string", srcOrch + ":TaskSummaryMetadata.correlation_id Uuid", false},
	{"total_steps", "integer", srcOrch + ":TaskSummaryMetadata.total_steps i64", false},
	{"pending_steps", "integer", srcOrch + ":TaskSummaryMetadata.pending_steps i64", false},
	{"in_progress_steps", "integer", srcOrch + ":TaskSummaryMetadata.in_progress_steps i64", false},
	{"completed_steps", "integer", srcOrch + ":TaskSummaryMetadata.completed_steps i64", false},
	{"failed_steps", "integer", srcOrch + ":TaskSummaryMetadata.failed_steps i64", false},
	{"completion_percentage", "number", srcOrch + ":TaskSummaryMetadata.completion_percentage f64", false},
	{"health_status", "string", srcOrch + ":TaskSummaryMetadata.health_status String", false},
	{"execution_status", "string", srcOrch + ":TaskSummaryMetadata.execution_status String", false},
	{"recommended_action", "string|null", srcOrch + ":TaskSummaryMetadata.recommended_action Option<String>", false},
}

var apiTemplateStepFields = []apiField{
	{"name", "string", srcOrch + ":TemplateStepSummary.name String", false},
	{"step_type", "string", srcOrch + ":TemplateStepSummary.step_type String", false},
	{"handler", "string", srcOrch + ":TemplateStepSummary.handler String", false},
	{"dependencies", "array", srcOrch + ":TemplateStepSummary.dependencies Vec<String>", false},
	{"retryable", "boolean", srcOrch + ":TemplateStepSummary.retryable bool", false},
	{"max_attempts", "integer", srcOrch + ":TemplateStepSummary.max_attempts u32", false},
}

var apiStepSummaryFields = []apiField{
	{"step_uuid", "string", srcOrch + ":StepSummaryInfo.step_uuid String", false},
	{"name", "string", srcOrch + ":StepSummaryInfo.name String", false},
	{"current_state", "string", srcOrch + ":StepSummaryInfo.current_state String", false},
	{"created_at", "string|null", srcOrch + ":StepSummaryInfo.created_at Option<String>", false},
	{"completed_at", "string|null", srcOrch + ":StepSummaryInfo.completed_at Option<String>", false},
	{"last_attempted_at", "string|null", srcOrch + ":StepSummaryInfo.last_attempted_at Option<String>", false},
	{"attempts", "integer", srcOrch + ":StepSummaryInfo.attempts i32", false},
	{"max_attempts", "integer", srcOrch + ":StepSummaryInfo.max_attempts i32", false},
	{"dependencies_satisfied", "boolean", srcOrch + ":StepSummaryInfo.dependencies_satisfied bool", false},
	{"retry_eligible", "boolean", srcOrch + ":StepSummaryInfo.retry_eligible bool", false},
	{"error", "object|null", srcOrch + ":StepSummaryInfo.error Option<StepErrorSummary>", false},
}

var apiStepErrorSummaryFields = []apiField{
	{"error_type", "string|null", srcOrch + ":StepErrorSummary.error_type Option<String>", false},
	{"retryable", "boolean", srcOrch + ":StepErrorSummary.retryable bool", false},
	{"status_code", "integer|null", srcOrch + ":StepErrorSummary.status_code Option<u16>", false},
}

var apiDlqSummaryFields = []apiField{
	{"in_dlq", "boolean", srcOrch + ":DlqSummaryInfo.in_dlq bool", false},
	{"dlq_reason", "string|null", srcOrch + ":DlqSummaryInfo.dlq_reason Option<String>", false},
	{"resolution_status", "string|null", srcOrch + ":DlqSummaryInfo.resolution_status Option<String>", false},
}

var apiSummaryLinksFields = []apiField{
	{"task", "string", srcOrch + ":TaskSummaryLinks.task String", false},
	{"steps", "string", srcOrch + ":TaskSummaryLinks.steps String", false},
	{"dlq", "string", srcOrch + ":TaskSummaryLinks.dlq String", false},
}

// chrono's DateTime<Utc> (RFC 3339, Z, 0/3/6/9 fraction digits) and NaiveDateTime forms.
var (
	apiUTCTime   = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$`)
	apiNaiveTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?$`)
	apiMicroZ    = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

// apiCheckTask checks a TaskResponse object and its steps against the golden tables.
func apiCheckTask(t *testing.T, what string, task map[string]any) {
	t.Helper()
	apiCheckFields(t, what, task, apiTaskResponseFields)
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := task[k].(string); !apiUTCTime.MatchString(s) {
			t.Errorf("%s: %s %q is not chrono's DateTime<Utc> form", what, k, s)
		}
	}
	steps, _ := task["steps"].([]any)
	for i, s := range steps {
		step := s.(map[string]any)
		apiCheckFields(t, what+" step "+strconv.Itoa(i), step, apiStepReadinessFields)
		for _, k := range []string{"last_failure_at", "next_retry_at", "last_attempted_at"} {
			if v, ok := step[k].(string); ok && !apiNaiveTime.MatchString(v) {
				t.Errorf("%s: step %s %q is not chrono's NaiveDateTime form", what, k, v)
			}
		}
	}
}

const apiFlowYAML = `
name: api_flow
namespace_name: api_tasks
version: 1.0.0
steps:
  - name: api_a
    handler: {callable: api.a}
  - name: api_b
    dependencies: [api_a]
    handler: {callable: api.b}
    retry: {retryable: false, max_attempts: 1}
`

const apiOtherYAML = `
name: api_single
namespace_name: api_other
version: 1.0.0
steps:
  - name: api_only
    handler: {callable: api.only}
`

func apiTaskBody(ns, name string, ctx map[string]any, initiator, source string) map[string]any {
	return map[string]any{"name": name, "namespace": ns, "version": "1.0.0", "context": ctx,
		"initiator": initiator, "source_system": source, "reason": "api test", "tags": []string{"x", "y"},
		"priority": 7}
}

// ---- tests ----

func TestAPITaskCreateGetCancelGolden(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiFlowYAML)
	srv := apiServer(t, pool, orchNew(t, pool, nil))

	status, b := apiDo(t, srv, "POST", "/v1/tasks", apiTaskBody("api_tasks", "api_flow", map[string]any{"n": 1}, "alice", "billing"))
	created := apiOK(t, status, b)
	apiCheckTask(t, "POST /v1/tasks", created)
	id := created["task_uuid"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("task_uuid %q: %v", id, err)
	}
	want := map[string]any{"name": "api_flow", "namespace": "api_tasks", "version": "1.0.0",
		"status": "steps_in_process", "initiator": "alice", "source_system": "billing", "reason": "api test",
		"priority": json.Number("7"), "total_steps": json.Number("2"), "pending_steps": json.Number("1"),
		"ready_steps": json.Number("0"), "failed_steps": json.Number("0"), "execution_status": "processing",
		"recommended_action": "wait_for_completion", "health_status": "healthy", "completed_at": nil,
		"parent_correlation_id": nil}
	for k, v := range want {
		if created[k] != v {
			t.Errorf("created %s = %#v, want %#v", k, created[k], v)
		}
	}
	if ctx, _ := json.Marshal(created["context"]); string(ctx) != `{"n":1}` {
		t.Errorf("context %s", ctx)
	}
	if tags, _ := json.Marshal(created["tags"]); string(tags) != `["x","y"]` {
		t.Errorf("tags %s", tags)
	}
	steps := created["steps"].([]any)
	if len(steps) != 2 || steps[0].(map[string]any)["name"] != "api_a" || steps[0].(map[string]any)["current_state"] != "enqueued" ||
		steps[1].(map[string]any)["current_state"] != "pending" || steps[1].(map[string]any)["total_parents"] != json.Number("1") {
		t.Errorf("steps %v", steps)
	}

	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id, nil)
	got := apiOK(t, status, b)
	apiCheckTask(t, "GET /v1/tasks/{uuid}", got)
	if got["task_uuid"] != id || got["correlation_id"] != created["correlation_id"] || got["created_at"] != created["created_at"] {
		t.Errorf("GET differs from POST: %v", got)
	}

	// The same identity again: 409, tasker-core's duplicate message.
	status, b = apiDo(t, srv, "POST", "/v1/tasks", apiTaskBody("api_tasks", "api_flow", map[string]any{"n": 1}, "bob", "other"))
	apiWantError(t, "duplicate", status, b, http.StatusConflict, "CONFLICT", "A task with this identity already exists")

	// Rejected requests.
	status, b = apiDo(t, srv, "POST", "/v1/tasks", `{"name":`)
	apiWantError(t, "bad JSON", status, b, http.StatusBadRequest, "BAD_REQUEST", "")
	status, b = apiDo(t, srv, "POST", "/v1/tasks", map[string]any{"namespace": "api_tasks", "version": "1.0.0", "context": map[string]any{}})
	apiWantError(t, "no name", status, b, http.StatusBadRequest, "BAD_REQUEST", "")
	if !strings.Contains(string(b), "name") {
		t.Errorf("no-name error does not name the field: %s", b)
	}
	status, b = apiDo(t, srv, "POST", "/v1/tasks", apiTaskBody("api_tasks", "nope", map[string]any{}, "a", "b"))
	apiWantError(t, "unknown template", status, b, http.StatusNotFound, "NOT_FOUND", "Task template not found: api_tasks/nope/1.0.0")
	status, b = apiDo(t, srv, "POST", "/v1/tasks", `{"name":"api_flow","namespace":"api_tasks","version":"1.0.0","priority":1000}`)
	apiWantError(t, "priority out of range", status, b, http.StatusBadRequest, "BAD_REQUEST", "")

	// UUIDs: INVALID_UUID carries the value; unknown tasks are 404 "Resource not found".
	status, b = apiDo(t, srv, "GET", "/v1/tasks/not-a-uuid", nil)
	apiWantError(t, "bad uuid", status, b, http.StatusBadRequest, "INVALID_UUID", "not-a-uuid")
	for _, p := range []string{"/v1/tasks/", "/v1/tasks/%s/summary"} {
		path := p + uuid.NewString()
		if strings.Contains(p, "%s") {
			path = strings.Replace(p, "%s", uuid.NewString(), 1)
		}
		status, b = apiDo(t, srv, "GET", path, nil)
		apiWantError(t, "unknown task "+p, status, b, http.StatusNotFound, "NOT_FOUND", "Resource not found")
	}
	status, b = apiDo(t, srv, "DELETE", "/v1/tasks/"+uuid.NewString(), nil)
	apiWantError(t, "cancel unknown", status, b, http.StatusNotFound, "NOT_FOUND", "Resource not found")
	status, b = apiDo(t, srv, "DELETE", "/v1/tasks/xyz", nil)
	apiWantError(t, "cancel bad uuid", status, b, http.StatusBadRequest, "INVALID_UUID", "xyz")

	// Summary of the live task.
	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id+"/summary", nil)
	sum := apiOK(t, status, b)
	apiCheckFields(t, "summary", sum, []apiField{
		{"task", "object", srcOrch + ":TaskSummaryResponse.task TaskSummaryMetadata", false},
		{"template", "object", srcOrch + ":TaskSummaryResponse.template TemplateSummary", false},
		{"steps", "array", srcOrch + ":TaskSummaryResponse.steps Vec<StepSummaryInfo>", false},
		{"dlq", "object", srcOrch + ":TaskSummaryResponse.dlq DlqSummaryInfo", false},
		{"links", "object", srcOrch + ":TaskSummaryResponse.links TaskSummaryLinks", false},
	})
	apiCheckFields(t, "summary.task", sum["task"].(map[string]any), apiSummaryTaskFields)
	apiCheckFields(t, "summary.template", sum["template"].(map[string]any),
		[]apiField{{"steps", "array", srcOrch + ":TemplateSummary.steps Vec<TemplateStepSummary>", false}})
	tsteps := sum["template"].(map[string]any)["steps"].([]any)
	if len(tsteps) != 2 {
		t.Fatalf("template steps %v", tsteps)
	}
	for _, s := range tsteps {
		apiCheckFields(t, "summary.template.steps", s.(map[string]any), apiTemplateStepFields)
	}
	if tb, _ := json.Marshal(tsteps[1]); string(tb) != `{"dependencies":["api_a"],"handler":"api.b","max_attempts":1,"name":"api_b","retryable":false,"step_type":"standard"}` {
		t.Errorf("template step api_b: %s", tb)
	}
	for _, s := range sum["steps"].([]any) {
		apiCheckFields(t, "summary.steps", s.(map[string]any), apiStepSummaryFields)
	}
	apiCheckFields(t, "summary.dlq", sum["dlq"].(map[string]any), apiDlqSummaryFields)
	apiCheckFields(t, "summary.links", sum["links"].(map[string]any), apiSummaryLinksFields)
	if sum["links"].(map[string]any)["steps"] != "/v1/tasks/"+id+"/workflow_steps" || sum["dlq"].(map[string]any)["in_dlq"] != false {
		t.Errorf("summary links/dlq: %v %v", sum["links"], sum["dlq"])
	}
	if sum["task"].(map[string]any)["status"] != "steps_in_process" || sum["task"].(map[string]any)["recommended_action"] != "wait_for_completion" {
		t.Errorf("summary task %v", sum["task"])
	}

	// Cancel: 200 with the cancelled task; every unfinished step cancelled; twice is 400.
	status, b = apiDo(t, srv, "DELETE", "/v1/tasks/"+id, nil)
	cancelled := apiOK(t, status, b)
	apiCheckTask(t, "DELETE /v1/tasks/{uuid}", cancelled)
	if cancelled["status"] != "cancelled" {
		t.Errorf("status after cancel %v", cancelled["status"])
	}
	for _, s := range cancelled["steps"].([]any) {
		if st := s.(map[string]any)["current_state"]; st != "cancelled" {
			t.Errorf("step %v after cancel", st)
		}
	}
	status, b = apiDo(t, srv, "DELETE", "/v1/tasks/"+id, nil)
	apiWantError(t, "cancel twice", status, b, http.StatusBadRequest, "BAD_REQUEST", "Cannot cancel a completed task")

	// A summary of a step failure reads the error object of the stored results.
	if _, err := pool.Exec(t.Context(), `UPDATE tasker.workflow_steps SET results = $2
		WHERE workflow_step_uuid = $1`, uuid.MustParse(steps[0].(map[string]any)["workflow_step_uuid"].(string)),
		`{"success":false,"error":{"message":"boom","error_type":"PermanentError","retryable":false,"status_code":502}}`); err != nil {
		t.Fatal(err)
	}
	status, b = apiDo(t, srv, "GET", "/v1/tasks/"+id+"/summary", nil)
	sum = apiOK(t, status, b)
	e, _ := sum["steps"].([]any)[0].(map[string]any)["error"].(map[string]any)
	apiCheckFields(t, "summary.steps.error", e, apiStepErrorSummaryFields)
	if e["error_type"] != "PermanentError" || e["status_code"] != json.Number("502") || e["retryable"] != false {
		t.Errorf("step error summary %v", e)
	}
}

func TestAPITaskListFiltersPagination(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiFlowYAML)
	orchRegister(t, pool, apiOtherYAML)
	srv := apiServer(t, pool, orchNew(t, pool, nil))

	create := func(ns, name string, n int, initiator, source string) string {
		t.Helper()
		status, b := apiDo(t, srv, "POST", "/v1/tasks", apiTaskBody(ns, name, map[string]any{"n": n}, initiator, source))
		return apiOK(t, status, b)["task_uuid"].(string)
	}
	t1 := create("api_tasks", "api_flow", 1, "alice", "billing")
	t2 := create("api_tasks", "api_flow", 2, "bob", "billing")
	t3 := create("api_tasks", "api_flow", 3, "alice", "crm")
	t4 := create("api_other", "api_single", 4, "alice", "billing")
	t5 := create("api_other", "api_single", 5, "carol", "crm")
	// t5 completes (its only step completed by an operator), t2 is cancelled.
	status, b := apiDo(t, srv, "GET", "/v1/tasks/"+t5+"/workflow_steps", nil)
	only := apiDecode[[]map[string]any](t, b)
	if status != 200 || len(only) != 1 {
		t.Fatalf("steps of t5: %d %s", status, b)
	}
	status, b = apiDo(t, srv, "PATCH", "/v1/tasks/"+t5+"/workflow_steps/"+only[0]["step_uuid"].(string),
		map[string]any{"action_type": "complete_manually", "completion_data": map[string]any{"result": 1}, "reason": "r", "completed_by": "op"})
	apiOK(t, status, b)
	if status, b = apiDo(t, srv, "DELETE", "/v1/tasks/"+t2, nil); status != 200 {
		t.Fatalf("cancel t2: %d %s", status, b)
	}

	list := func(query string) ([]string, map[string]any, []map[string]any) {
		t.Helper()
		status, b := apiDo(t, srv, "GET", "/v1/tasks"+query, nil)
		body := apiOK(t, status, b)
		apiCheckFields(t, "list "+query, body, []apiField{
			{"tasks", "array", srcOrch + ":TaskListResponse.tasks Vec<TaskResponse>", false},
			{"pagination", "object", srcOrch + ":TaskListResponse.pagination PaginationInfo", false},
		})
		pag := body["pagination"].(map[string]any)
		apiCheckFields(t, "pagination "+query, pag, apiPaginationFields)
		var ids []string
		var tasks []map[string]any
		for _, x := range body["tasks"].([]any) {
			task := x.(map[string]any)
			apiCheckTask(t, "list item "+query, task)
			if len(task["steps"].([]any)) != 0 {
				t.Errorf("list %s: steps in a list item", query)
			}
			ids = append(ids, task["task_uuid"].(string))
			tasks = append(tasks, task)
		}
		return ids, pag, tasks
	}
	wantPage := func(query string, ids []string, page, perPage, total, pages int, next, prev bool) {
		t.Helper()
		got, pag, _ := list(query)
		if !slices.Equal(got, ids) {
			t.Errorf("%s: tasks %v, want %v", query, got, ids)
		}
		wantPag := map[string]any{"page": json.Number(strconv.Itoa(page)), "per_page": json.Number(strconv.Itoa(perPage)),
			"total_count": json.Number(strconv.Itoa(total)), "total_pages": json.Number(strconv.Itoa(pages)), "has_next": next, "has_previous": prev}
		for k, v := range wantPag {
			if pag[k] != v {
				t.Errorf("%s: pagination %s = %v, want %v", query, k, pag[k], v)
			}
		}
	}
	all := []string{t5, t4, t3, t2, t1} // newest first
	wantPage("", all, 1, 25, 5, 1, false, false)
	wantPage("?per_page=2", all[:2], 1, 2, 5, 3, true, false)
	wantPage("?per_page=2&page=2", all[2:4], 2, 2, 5, 3, true, true)
	wantPage("?per_page=2&page=3", all[4:], 3, 2, 5, 3, false, true)
	wantPage("?per_page=2&page=4", nil, 4, 2, 5, 3, false, true)
	wantPage("?namespace=api_other", []string{t5, t4}, 1, 25, 2, 1, false, false)
	wantPage("?initiator=alice", []string{t4, t3, t1}, 1, 25, 3, 1, false, false)
	wantPage("?source_system=crm", []string{t5, t3}, 1, 25, 2, 1, false, false)
	wantPage("?namespace=api_tasks&initiator=alice&per_page=1", []string{t3}, 1, 1, 2, 2, true, false)
	wantPage("?status=completed", []string{t5}, 1, 25, 1, 1, false, false)
	wantPage("?status=pending", []string{t4, t3, t2, t1}, 1, 25, 4, 1, false, false)
	wantPage("?status=cancelled", []string{t2}, 1, 25, 1, 1, false, false)
	wantPage("?status=steps_in_process&source_system=billing", []string{t4, t1}, 1, 25, 2, 1, false, false)
	wantPage("?namespace=", nil, 1, 25, 0, 0, false, false)
	wantPage("?unknown_param=1", all, 1, 25, 5, 1, false, false)

	_, _, tasks := list("")
	if tasks[0]["status"] != "complete" || tasks[0]["completed_at"] == nil || tasks[3]["status"] != "cancelled" || tasks[4]["status"] != "steps_in_process" {
		t.Errorf("list statuses: %v %v %v", tasks[0]["status"], tasks[3]["status"], tasks[4]["status"])
	}

	for q, msg := range map[string]string{
		"?per_page=0":   "per_page must be between 1 and 100",
		"?per_page=101": "per_page must be between 1 and 100",
		"?page=0":       "page must be >= 1",
		"?status=bogus": "",
		"?status=":      "",
		"?page=-1":      "",
		"?per_page=abc": "",
	} {
		status, b := apiDo(t, srv, "GET", "/v1/tasks"+q, nil)
		apiWantError(t, q, status, b, http.StatusBadRequest, "BAD_REQUEST", msg)
	}
}

func TestAPIOpenAPIDocument(t *testing.T) {
	_, pool := testdb.New(t)
	srv := apiServer(t, pool, orchNew(t, pool, nil))
	resp, err := http.Get(srv.URL + api.OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	doc := apiDecode[map[string]any](t, b)
	if doc["openapi"] != "3.0.3" || doc["info"].(map[string]any)["title"] != "Tasker Web API" || doc["info"].(map[string]any)["version"] != "1.0.0" {
		t.Fatalf("document head: %v %v", doc["openapi"], doc["info"])
	}
	paths := doc["paths"].(map[string]any)

	// Our routes, with tasker-core's permissions (routes.rs authorize(Resource, Action)).
	want := map[string]string{
		"post /v1/tasks": "tasks:create", "get /v1/tasks": "tasks:list", "get /v1/tasks/{uuid}": "tasks:read",
		"delete /v1/tasks/{uuid}": "tasks:cancel", "get /v1/tasks/{uuid}/summary": "tasks:read",
		"get /v1/tasks/{uuid}/workflow_steps":                   "steps:list",
		"get /v1/tasks/{uuid}/workflow_steps/{step_uuid}":       "steps:read",
		"patch /v1/tasks/{uuid}/workflow_steps/{step_uuid}":     "steps:resolve",
		"get /v1/tasks/{uuid}/workflow_steps/{step_uuid}/audit": "steps:read",
	}
	var ops []string
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			key := m + " " + p
			ops = append(ops, key)
			if perm, ok := want[key]; ok {
				if got := op.(map[string]any)["x-required-permission"]; got != perm {
					t.Errorf("%s: permission %v, want %s", key, got, perm)
				}
				delete(want, key)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("routes missing from the document: %v", want)
	}

	// Honest: every documented operation is routed. An unrouted one would get the mux's
	// plain-text 404/405; ours answer JSON (an error body for the dummy uuids at most).
	sort.Strings(ops)
	for _, key := range ops {
		method, p, _ := strings.Cut(key, " ")
		path := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(p, uuid.Nil.String())
		req, _ := http.NewRequest(strings.ToUpper(method), srv.URL+path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusMethodNotAllowed || (resp.StatusCode == 404 && strings.HasPrefix(string(body), "404 page not found")) {
			t.Errorf("documented %s is not routed: %d %s", key, resp.StatusCode, body)
		}
	}

	// The TaskResponse schema names exactly tasker-core's fields.
	schema := doc["components"].(map[string]any)["schemas"].(map[string]any)["TaskResponse"].(map[string]any)
	var names, wantNames []string
	for k := range schema["properties"].(map[string]any) {
		names = append(names, k)
	}
	for _, f := range apiTaskResponseFields {
		wantNames = append(wantNames, f.name)
	}
	sort.Strings(names)
	sort.Strings(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("TaskResponse schema properties %v, want %v", names, wantNames)
	}
}
